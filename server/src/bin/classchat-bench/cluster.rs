//! `cluster`: two `classchat-server` nodes on one throwaway PostgreSQL store, joined by a
//! throwaway NATS bus, against one node on its SQLite file, in the same run, alternated.
//! Each deployment gets the same two loads:
//!
//! - durable: senders spread evenly over the nodes, each alone in its own room, `window`
//!   messages in flight each (as `durable`);
//! - fan-out: `users` members of one room, member `i` on node `i mod nodes`, a few
//!   senders on every node, the rate rising step by step (the `fanout` ramp: lean
//!   receivers, every delivery counted and checked at the receivers, p99 limit).
//!
//! The CPU of the nodes, of PostgreSQL (the postmaster with its backends) and of NATS is
//! read from /proc, so each figure comes with its cost per acknowledgement or delivery.

use std::time::Duration;

use classchat_server::services::{nats::Nats, postgres::Postgres};
use serde_json::{Value, json};

use crate::durable::{self, Measured};
use crate::fanout::{self, Senders};
use crate::load::Recorder;
use crate::procstat::{self, Cores, Watch};
use crate::stats::{Row, round3};
use crate::target::{
    Account, DataDir, ServerOpts, Target, seed_room, seed_room_pg, seed_users, seed_users_pg,
};
use crate::{conn, lean};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Nodes of the cluster.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Rounds; each runs the cluster, then the single SQLite node.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Durable: sending connections, spread evenly over the nodes.
    #[arg(long, default_value_t = 32)]
    pub senders: usize,
    /// Durable: messages in flight per sender.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Durable: seconds measured (after one unmeasured second).
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Fan-out: members of the one room, spread evenly over the nodes.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Fan-out: members who send, spread evenly over the nodes.
    #[arg(long, default_value_t = 10)]
    pub fanout_senders: usize,
    /// Fan-out: deliveries per second of the first step.
    #[arg(long, default_value_t = 20_000.0)]
    pub start: f64,
    /// Fan-out: each step's rate is the previous one times this.
    #[arg(long, default_value_t = 1.4)]
    pub factor: f64,
    /// Fan-out: seconds each step sends for.
    #[arg(long, default_value_t = 2.0)]
    pub step_secs: f64,
    /// Fan-out: most steps.
    #[arg(long, default_value_t = 12)]
    pub max_steps: u32,
    /// Fan-out: a step fails when its p99 delivery latency is above this.
    #[arg(long, default_value_t = 100.0)]
    pub p99_ms: f64,
    /// Bytes of message text.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// Fan-out: the CPU per delivery is also taken at the first step offering at least
    /// this many deliveries per second (the same offered rate for every deployment: the
    /// cost per delivery falls as the rate rises).
    #[arg(long, default_value_t = 50_000.0)]
    pub cost_at: f64,
    /// Only the cluster, without the single SQLite node.
    #[arg(long)]
    pub no_baseline: bool,
}

/// How long the nodes may take to see each other on the bus.
const JOIN_LIMIT: Duration = Duration::from_secs(30);
/// Lines of each node's log printed after a step that dropped or failed something.
const LOG_TAIL: usize = 20;
/// Logins at a time (each is an RSA handshake on the server).
const LOGIN_CONCURRENCY: usize = 32;

/// The servers of one deployment and what they run on.
struct Deployment {
    label: String,
    nodes: Vec<Target>,
    /// The nodes' data dirs (key, configuration, log, file content); removed on drop.
    dirs: Vec<DataDir>,
    pg: Option<Postgres>,
    nats: Option<Nats>,
    watch: Watch,
}

/// Accounts seeded for a round: durable senders (`w*`, each alone in `solo{k}`) and the
/// members of the fan-out room (`f*`, all in `room0`).
struct Seeded {
    writers: Vec<Account>,
    members: Vec<Account>,
}

fn solo(k: usize) -> String {
    format!("solo{k}")
}

const ROOM: &str = "room0";

impl Deployment {
    /// `a.nodes` nodes on PostgreSQL and NATS (`cluster`), or one node on SQLite.
    async fn start(opts: &ServerOpts, a: &Args, cluster: bool) -> anyhow::Result<(Deployment, Seeded)> {
        if !cluster {
            let dir = DataDir::new(opts)?;
            let seeded = {
                let db = dir.db()?;
                let writers = seed_users(&db, "w", a.senders)?;
                for (k, acc) in writers.iter().enumerate() {
                    seed_room(&db, &solo(k), &[acc.name.as_str()])?;
                }
                let members = seed_users(&db, "f", a.users)?;
                let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                seed_room(&db, ROOM, &names)?;
                Seeded { writers, members }
            };
            let node = Target::start(opts, &dir).await?;
            let watch = Watch::one(node.pid);
            let d = Deployment {
                label: "1 node, SQLite".into(),
                nodes: vec![node],
                dirs: vec![dir],
                pg: None,
                nats: None,
                watch,
            };
            return Ok((d, seeded));
        }
        let pg = tokio::task::spawn_blocking(Postgres::start).await??;
        let nats = tokio::task::spawn_blocking(Nats::start).await??;
        let (url, senders, users) = (pg.url(), a.senders, a.users);
        let seeded = tokio::task::spawn_blocking(move || -> anyhow::Result<Seeded> {
            let mut db = classchat_server::open_postgres(&url)?;
            let writers = seed_users_pg(&mut db, "w", senders)?;
            for (k, acc) in writers.iter().enumerate() {
                seed_room_pg(&mut db, &solo(k), &[acc.name.as_str()])?;
            }
            let members = seed_users_pg(&mut db, "f", users)?;
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            seed_room_pg(&mut db, ROOM, &names)?;
            Ok(Seeded { writers, members })
        })
        .await??;
        let mut dirs = Vec::with_capacity(a.nodes);
        let mut nodes = Vec::with_capacity(a.nodes);
        for n in 0..a.nodes {
            let dir = DataDir::new(opts)?;
            let (store, bus) = (pg.url(), nats.url());
            nodes.push(
                Target::start_with(opts, &dir, |c| {
                    c.store = Some(store);
                    c.bus = bus;
                    c.node_name = format!("node{n}");
                })
                .await?,
            );
            dirs.push(dir);
        }
        for dir in &dirs {
            joined(dir, a.nodes).await?;
        }
        let watch = Watch {
            servers: nodes.iter().map(|t| t.pid).collect(),
            postgres: procstat::find_listener("postgres", pg.port()),
            nats: procstat::find_listener("nats-server", nats.addr().port()),
        };
        anyhow::ensure!(
            watch.postgres.is_some() && watch.nats.is_some(),
            "cannot find the PostgreSQL or NATS process in /proc"
        );
        let d = Deployment {
            label: format!("{} nodes, PostgreSQL + NATS", a.nodes),
            nodes,
            dirs,
            pg: Some(pg),
            nats: Some(nats),
            watch,
        };
        Ok((d, seeded))
    }

    fn addr(&self, n: usize) -> String {
        self.nodes[n % self.nodes.len()].addr_string()
    }

    /// Prints the end of each node's log (the data dirs are removed with the deployment).
    fn print_log_tails(&self) {
        for (n, dir) in self.dirs.iter().enumerate() {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("{}: node {n}'s server.log, last {LOG_TAIL} lines:", self.label);
            for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                eprintln!("  {line}");
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        for node in self.nodes {
            node.stop().await?;
        }
        let (pg, nats) = (self.pg, self.nats);
        tokio::task::spawn_blocking(move || drop((nats, pg))).await?;
        Ok(())
    }
}

/// Waits until the node on `dir` lists `n` nodes in `admin nodes`.
async fn joined(dir: &DataDir, n: usize) -> anyhow::Result<()> {
    let want = format!("{n} nodes");
    let deadline = tokio::time::Instant::now() + JOIN_LIMIT;
    loop {
        let out = classchat_server::admin::send(dir.path(), "nodes").await.unwrap_or_default();
        if out.starts_with(&want) {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the nodes did not join: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The accounts of `all` whose index is `n` modulo `nodes`: node `n`'s share.
fn share(all: &[Account], n: usize, nodes: usize) -> Vec<Account> {
    all.iter().skip(n).step_by(nodes).cloned().collect()
}

/// Durable: every writer on node `k mod nodes`, in its own room.
async fn durable_load(d: &Deployment, a: &Args, writers: &[Account]) -> anyhow::Result<Measured> {
    let nodes = d.nodes.len();
    let (mut clients, mut rooms) = (Vec::new(), Vec::new());
    for n in 0..nodes {
        let mut mine = share(writers, n, nodes);
        let c = conn::login_all(&d.addr(n), &mut mine, 1, LOGIN_CONCURRENCY, 64, conn::discard).await?;
        clients.extend(c);
        rooms.extend((n..writers.len()).step_by(nodes).map(solo));
    }
    Ok(durable::measure(&clients, &rooms, a.window, a.secs, a.text_len, &d.watch).await)
}

/// The fan-out ramp's settings for this scenario.
fn ramp_args(a: &Args) -> fanout::Args {
    fanout::Args {
        users: a.users,
        rooms: 1,
        senders: a.fanout_senders,
        start: a.start,
        factor: a.factor,
        step_secs: a.step_secs,
        max_steps: a.max_steps,
        p99_ms: a.p99_ms,
        text_len: a.text_len,
        irc: false,
        irc_only: false,
        full_client: false,
    }
}

/// Fan-out: member `i` on node `i mod nodes`; each node's first members send.
async fn fanout_load(d: &Deployment, a: &Args, members: &[Account]) -> anyhow::Result<Vec<fanout::Step>> {
    let nodes = d.nodes.len();
    let rec = Recorder::new();
    let mut clients = Vec::new();
    for n in 0..nodes {
        let mut mine = share(members, n, nodes);
        let senders = (a.fanout_senders / nodes + usize::from(n < a.fanout_senders % nodes)).min(mine.len());
        let (full, rest) = mine.split_at_mut(senders);
        let c =
            conn::login_all(&d.addr(n), full, 1, LOGIN_CONCURRENCY, 4096, fanout::chat_receiver(rec.clone()))
                .await?;
        clients.extend(c.into_iter().map(|c| (c, ROOM.to_owned())));
        lean::login_all(
            &d.addr(n),
            rest,
            n * a.users + senders,
            LOGIN_CONCURRENCY,
            |_| ROOM.to_owned(),
            &rec,
        )
        .await?;
    }
    let mut senders = Senders::Chat { clients, ok: Default::default(), err: Default::default() };
    let (steps, _) = fanout::ramp(&d.label, &ramp_args(a), &mut senders, &rec, a.users, &d.watch).await;
    Ok(steps)
}

/// One deployment's figures in one round.
struct RoundResult {
    durable: Measured,
    /// The best passing step.
    fanout: Option<fanout::Step>,
    /// The first step at `--cost-at` or above that dropped nothing.
    at_cost_rate: Option<fanout::Step>,
}

async fn round(
    opts: &ServerOpts,
    a: &Args,
    cluster: bool,
    r: usize,
) -> anyhow::Result<(String, RoundResult)> {
    let (d, seeded) = Deployment::start(opts, a, cluster).await?;
    eprintln!("cluster round {r}: {}: durable", d.label);
    let durable = durable_load(&d, a, &seeded.writers).await?;
    eprintln!("cluster round {r}: {}: {:.0} acks/s; fan-out", d.label, durable.rate);
    let steps = fanout_load(&d, a, &seeded.members).await?;
    let best = fanout::best(&steps).map(|s| s.achieved);
    let json = json!({
        "scenario": "cluster",
        "round": r,
        "deployment": d.label,
        "durable": {
            "senders": a.senders,
            "window": a.window,
            "secs": a.secs,
            "acked": durable.acked,
            "failed": durable.failed,
            "acked_per_s": durable.rate.round(),
            "ack_latency": durable.hist.json(),
            "cores": cores_json(&durable.cores),
            "bench_cores": round3(durable.bench_cores),
        },
        "fanout": {
            "users": a.users,
            "senders": a.fanout_senders,
            "max_sustained_deliveries_per_s": best.map_or(0.0, f64::round),
            "steps": steps.iter().map(|s| s.json.clone()).collect::<Vec<_>>(),
        },
        "load1": procstat::loadavg(),
    });
    crate::stats::emit(&json);
    if steps
        .iter()
        .any(|s| s.json["dropped"].as_u64() != Some(0) || s.json["send_errors"].as_u64() != Some(0))
    {
        d.print_log_tails();
    }
    let label = d.label.clone();
    d.stop().await?;
    let bare = |s: &fanout::Step| fanout::Step { json: Value::Null, ..s.clone() };
    let fanout = fanout::best(&steps).map(bare);
    let at_cost_rate = steps
        .iter()
        .find(|s| {
            s.json["target_deliveries_per_s"].as_f64().is_some_and(|t| t >= a.cost_at)
                && s.json["dropped"].as_u64() == Some(0)
        })
        .map(bare);
    Ok((label, RoundResult { durable, fanout, at_cost_rate }))
}

fn cores_json(c: &Cores) -> Value {
    json!({ "nodes": round3(c.servers), "postgres": round3(c.postgres), "nats": round3(c.nats) })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Microseconds of CPU per unit (acknowledgement or delivery) at `rate` units a second.
fn per_unit_us(cores: f64, rate: f64) -> f64 {
    if rate > 0.0 { cores * 1e6 / rate } else { 0.0 }
}

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    anyhow::ensure!(a.nodes >= 2, "a cluster has at least two nodes");
    anyhow::ensure!(a.runs >= 1, "at least one run");
    anyhow::ensure!(a.senders >= a.nodes, "at least one durable sender per node");
    anyhow::ensure!(
        a.fanout_senders >= a.nodes && a.users >= 2 * a.fanout_senders,
        "at least one fan-out sender per node, and more members than senders"
    );
    let kinds: &[bool] = if a.no_baseline { &[true] } else { &[true, false] };
    let mut results: Vec<(String, Vec<RoundResult>)> = Vec::new();
    for r in 0..a.runs {
        for (k, &cluster) in kinds.iter().enumerate() {
            let (label, res) = round(opts, a, cluster, r).await?;
            if results.len() <= k {
                results.push((label, Vec::new()));
            }
            results[k].1.push(res);
        }
    }
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (label, rs) in &results {
        summary.push(summarize(label, a, rs, &mut rows));
    }
    Ok((json!({ "scenario": "cluster", "runs": a.runs, "medians": summary }), rows))
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ")
}

fn summarize(label: &str, a: &Args, rs: &[RoundResult], rows: &mut Vec<Row>) -> Value {
    let acks: Vec<f64> = rs.iter().map(|r| r.durable.rate).collect();
    let med = |f: &dyn Fn(&RoundResult) -> f64| median(rs.iter().map(f).collect());
    let ack_us = |f: fn(&Cores) -> f64| med(&|r| per_unit_us(f(&r.durable.cores), r.durable.rate));
    let ack_p99 = med(&|r| r.durable.hist.quantile_ms(0.99));
    let passed: Vec<&fanout::Step> = rs.iter().filter_map(|r| r.fanout.as_ref()).collect();
    let deliveries: Vec<f64> = rs.iter().map(|r| r.fanout.as_ref().map_or(0.0, |s| s.achieved)).collect();
    let fmed = |f: &dyn Fn(&fanout::Step) -> f64| median(passed.iter().map(|s| f(s)).collect());
    let del_us = |f: fn(&Cores) -> f64| fmed(&|s| per_unit_us(f(&s.cores), s.achieved));
    let at_rate: Vec<&fanout::Step> = rs.iter().filter_map(|r| r.at_cost_rate.as_ref()).collect();
    let rate_us =
        |f: fn(&Cores) -> f64| median(at_rate.iter().map(|s| per_unit_us(f(&s.cores), s.achieved)).collect());
    let rate_achieved = median(at_rate.iter().map(|s| s.achieved).collect());
    let v = json!({
        "deployment": label,
        "durable_acked_per_s": round3(median(acks.clone())),
        "durable_runs": acks.iter().map(|x| x.round()).collect::<Vec<_>>(),
        "ack_p99_ms": round3(ack_p99),
        "cpu_us_per_ack": { "nodes": round3(ack_us(|c| c.servers)), "postgres": round3(ack_us(|c| c.postgres)),
            "nats": round3(ack_us(|c| c.nats)) },
        "fanout_deliveries_per_s": round3(median(deliveries.clone())),
        "fanout_runs": deliveries.iter().map(|x| x.round()).collect::<Vec<_>>(),
        "fanout_p99_ms": round3(fmed(&|s| s.p99)),
        "cpu_us_per_delivery": { "nodes": round3(del_us(|c| c.servers)), "postgres": round3(del_us(|c| c.postgres)),
            "nats": round3(del_us(|c| c.nats)) },
        "cost_at_deliveries_per_s": round3(rate_achieved),
        "cpu_us_per_delivery_at_that_rate": { "nodes": round3(rate_us(|c| c.servers)),
            "postgres": round3(rate_us(|c| c.postgres)), "nats": round3(rate_us(|c| c.nats)),
            "load_generator": round3(median(at_rate.iter().map(|s| per_unit_us(s.bench_cores, s.achieved)).collect())) },
    });
    let n = rs.len();
    rows.push(Row::new(
        "cluster",
        &format!("{label}: durable acks/s ({} senders x {}), median of {n}", a.senders, a.window),
        format!("{:.0} ({})", median(acks.clone()), list(&acks)),
    ));
    rows.push(Row::new(
        "cluster",
        &format!("{label}: CPU per ack, nodes / PostgreSQL / NATS"),
        format!(
            "{:.1} / {:.1} / {:.1} us (ack p99 {ack_p99:.1} ms)",
            ack_us(|c| c.servers),
            ack_us(|c| c.postgres),
            ack_us(|c| c.nats)
        ),
    ));
    rows.push(Row::new(
        "cluster",
        &format!("{label}: fan-out deliveries/s, {} in 1 room, median of {n}", a.users),
        format!("{:.0} ({})", median(deliveries.clone()), list(&deliveries)),
    ));
    rows.push(Row::new(
        "cluster",
        &format!("{label}: CPU per delivery, nodes / PostgreSQL / NATS"),
        format!(
            "{:.2} / {:.2} / {:.2} us (p99 {:.1} ms, {} of {n} runs passed a step)",
            del_us(|c| c.servers),
            del_us(|c| c.postgres),
            del_us(|c| c.nats),
            fmed(&|s| s.p99),
            passed.len()
        ),
    ));
    rows.push(Row::new(
        "cluster",
        &format!("{label}: CPU per delivery at {rate_achieved:.0}/s, nodes / PostgreSQL / NATS"),
        format!(
            "{:.2} / {:.2} / {:.2} us",
            rate_us(|c| c.servers),
            rate_us(|c| c.postgres),
            rate_us(|c| c.nats)
        ),
    ));
    v
}
