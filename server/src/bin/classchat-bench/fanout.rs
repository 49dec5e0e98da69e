//! `fanout`: U users spread over M rooms, K of them sending. The message rate ramps up
//! step by step until a step fails: p99 delivery latency over the limit, or anything
//! dropped. Reports the highest sustained deliveries per second, with latency and the CPU
//! of the server and of the load generator. With `--irc` the same load runs against
//! InspIRCd in the same run and the ratio ClassChat/InspIRCd is printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use classchat_wire::{Body, Client, Event, Request, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::conn;
use crate::irc::{self, IrcOpts};
use crate::lean;
use crate::load::{self, Recorder};
use crate::procstat;
use crate::stats::{Row, now_ns, round3};
use crate::target::{DataDir, ServerOpts, Target, seed_room, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Users (each one connection), spread evenly over the rooms.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Users who send (user k sends to room k mod rooms).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Deliveries per second of the first step.
    #[arg(long, default_value_t = 50_000.0)]
    pub start: f64,
    /// Each step's rate is the previous one times this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Seconds each step sends for.
    #[arg(long, default_value_t = 3.0)]
    pub step_secs: f64,
    /// Most steps (bounds the run).
    #[arg(long, default_value_t = 14)]
    pub max_steps: u32,
    /// A step fails when its p99 delivery latency is above this.
    #[arg(long, default_value_t = 100.0)]
    pub p99_ms: f64,
    /// Bytes of message text.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// Also run the same load against InspIRCd.
    #[arg(long)]
    pub irc: bool,
    /// Only run against InspIRCd.
    #[arg(long)]
    pub irc_only: bool,
    /// Receive with the full `Client` on every connection, not only the senders' (the
    /// default reads the other receivers' frames with the lean path in `lean`).
    #[arg(long)]
    pub full_client: bool,
}

/// How one side's senders send.
pub enum Senders {
    Chat { clients: Vec<(Client, String)>, ok: Arc<AtomicU64>, err: Arc<AtomicU64> },
    Irc { conns: Vec<(mpsc::Sender<Vec<u8>>, String)>, err: u64 },
}

impl Senders {
    fn len(&self) -> usize {
        match self {
            Senders::Chat { clients, .. } => clients.len(),
            Senders::Irc { conns, .. } => conns.len(),
        }
    }

    fn send(&mut self, k: usize, step: u32, text_len: usize) {
        match self {
            Senders::Chat { clients, ok, err } => {
                let (client, room) = &clients[k];
                let (client, room, ok, err) = (client.clone(), room.clone(), ok.clone(), err.clone());
                let text = load::text(step, text_len);
                tokio::spawn(async move {
                    match client.request(Request::SendRoom { room, text, reply_to: None }).await {
                        Ok(Response::Sent { .. }) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => err.fetch_add(1, Ordering::Relaxed),
                    };
                });
            }
            Senders::Irc { conns, err } => {
                let (tx, chan) = &conns[k];
                let line = format!("PRIVMSG {chan} :{}\r\n", load::text(step, text_len));
                if tx.try_send(line.into_bytes()).is_err() {
                    *err += 1;
                }
            }
        }
    }

    /// (acknowledged, failed) sends so far. IRC has no acknowledgement: a queued line counts.
    fn outcome(&self, sent: u64) -> (u64, u64) {
        match self {
            Senders::Chat { ok, err, .. } => (ok.load(Ordering::Relaxed), err.load(Ordering::Relaxed)),
            Senders::Irc { err, .. } => (sent - *err, *err),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub json: Value,
    pub passed: bool,
    pub achieved: f64,
    pub p50: f64,
    pub p99: f64,
    pub server_cores: f64,
    /// The servers' cores, and PostgreSQL's and NATS's for a cluster.
    pub cores: procstat::Cores,
    pub bench_cores: f64,
    pub per_cpu_s: f64,
}

pub fn chat_receiver(rec: Arc<Recorder>) -> impl Fn(usize, mpsc::Receiver<Event>) + Clone + Send + 'static {
    move |who, mut events| {
        let rec = rec.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while events.recv_many(&mut batch, 256).await > 0 {
                rec.record(
                    who,
                    batch.iter().filter_map(|e| match e {
                        Event::Message { message } => match &message.body {
                            Body::Text { text } => Some(text.as_str()),
                            _ => None,
                        },
                        _ => None,
                    }),
                );
                batch.clear();
            }
            rec.closed.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Waits until the server and this load generator have both been nearly idle (under
/// [`SETTLED_CORES`] each) for [`SETTLED_WINDOWS`] windows in a row, at most
/// [`SETTLE_LIMIT`]; returns how long it took. Joining a room makes traffic to everyone
/// in it (IRC sends each member a `JOIN` line for each later joiner, ClassChat a presence
/// event for each member who logs in): with 5,000 in one room that is 12.5 million lines
/// or events, which can take many seconds to drain after the last client has joined. A
/// ramp that started meanwhile would measure the drain, not the messages.
async fn settle(server: &procstat::Watch) -> Duration {
    let started = Instant::now();
    let mut quiet = 0;
    let mut last = (server.sample(), procstat::own());
    while quiet < SETTLED_WINDOWS && started.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(SETTLE_WINDOW).await;
        let now = (server.sample(), procstat::own());
        let server_busy = match (&last.0, &now.0) {
            (Some(a), Some(b)) => b.cores_since(a).total() >= SETTLED_CORES,
            _ => false,
        };
        let bench_busy = match (&last.1, &now.1) {
            (Some(a), Some(b)) => procstat::cores(a, b) >= SETTLED_CORES,
            _ => false,
        };
        quiet = if server_busy || bench_busy { 0 } else { quiet + 1 };
        last = now;
    }
    started.elapsed()
}

const SETTLE_WINDOW: Duration = Duration::from_millis(500);
const SETTLED_WINDOWS: u32 = 2;
const SETTLED_CORES: f64 = 0.1;
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Runs the ramp against one server (or the nodes of a cluster), once the traffic of
/// joining has drained; returns every step, and how long the draining took.
pub async fn ramp(
    name: &str,
    a: &Args,
    senders: &mut Senders,
    rec: &Recorder,
    room_size: usize,
    server: &procstat::Watch,
) -> (Vec<Step>, Duration) {
    let waited = settle(server).await;
    eprintln!("{name}: the traffic of joining drained {:.1} s after the last join", waited.as_secs_f64());
    let mut steps = Vec::new();
    let fanout = room_size.saturating_sub(1).max(1) as f64;
    // A step that fails on latency alone is run once more at the same rate before the
    // ramp stops: on a shared machine one unlucky scheduling spike should not end it.
    let mut retried = false;
    // A rate that failed twice on latency alone while every message still arrived at the
    // offered rate looks like noise, not capacity (a server that is out of capacity falls
    // behind the offered rate): the ramp goes on to the next rate, at most this often.
    const NOISE_SKIPS: u32 = 2;
    let mut skips = 0;
    let mut rate_step = 0;
    for step in 0..2 * a.max_steps + 2 {
        if rate_step >= a.max_steps {
            break;
        }
        let target = a.start * a.factor.powi(rate_step as i32);
        let msg_rate = target / fanout;
        rec.begin(step);
        let (before_ok, before_err) = senders.outcome(0);
        let s0 = server.sample();
        let b0 = procstat::own();
        let t0 = now_ns();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let n = senders.len();
        while started.elapsed().as_secs_f64() < a.step_secs {
            tick.tick().await;
            let due = (msg_rate * started.elapsed().as_secs_f64().min(a.step_secs)) as u64;
            while sent < due {
                senders.send((sent as usize) % n, step, a.text_len);
                sent += 1;
            }
        }
        // Wait for the acknowledgements, then for the deliveries.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut ok, mut err) = senders.outcome(sent);
        if let Senders::Chat { .. } = senders {
            while (ok - before_ok) + (err - before_err) < sent && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                (ok, err) = senders.outcome(sent);
            }
            ok -= before_ok;
            err -= before_err;
        }
        let expected = ok * (room_size as u64 - 1);
        let mut last = (rec.delivered(), Instant::now());
        loop {
            let got = rec.delivered();
            if got >= expected {
                break;
            }
            if got != last.0 {
                last = (got, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s1 = server.sample();
        let b1 = procstat::own();
        let tally = rec.tally();
        let secs = (tally.last_ns.saturating_sub(t0) as f64 / 1e9).max(a.step_secs);
        let achieved = tally.count as f64 / secs;
        let (cores, server_cpu) = match (s0, s1) {
            (Some(a), Some(b)) => (b.cores_since(&a), b.servers - a.servers),
            _ => (procstat::Cores::default(), 0.0),
        };
        let server_cores = cores.servers;
        let bench_cores = match (b0, b1) {
            (Some(a), Some(b)) => procstat::cores(&a, &b),
            _ => 0.0,
        };
        let dropped = expected.saturating_sub(tally.count);
        let closed = rec.closed.load(Ordering::Relaxed);
        let p99 = tally.hist.quantile_ms(0.99);
        let passed = dropped == 0 && err == 0 && closed == 0 && p99 <= a.p99_ms;
        let per_cpu_s = if server_cpu > 0.0 { tally.count as f64 / server_cpu } else { 0.0 };
        let mut json = json!({
            "step": step,
            "target_deliveries_per_s": target.round(),
            "messages_sent": sent,
            "send_errors": err,
            "expected": expected,
            "delivered": tally.count,
            "dropped": dropped,
            "closed_connections": closed,
            "deliveries_per_s": achieved.round(),
            "latency": tally.hist.json(),
            "server_cores": round3(server_cores),
            "bench_cores": round3(bench_cores),
            "deliveries_per_server_cpu_s": per_cpu_s.round(),
            "passed": passed,
        });
        if server.postgres.is_some() || server.nats.is_some() {
            json["postgres_cores"] = json!(round3(cores.postgres));
            json["nats_cores"] = json!(round3(cores.nats));
        }
        eprintln!(
            "{name} step {step}: target {target:.0}/s, delivered {:.0}/s, p50 {:.2} ms, p99 {p99:.2} ms, \
             dropped {dropped}, errors {err}, server {server_cores:.2} cores, bench {bench_cores:.2} cores{}",
            achieved,
            tally.hist.quantile_ms(0.5),
            if passed { "" } else { "  <- fails" }
        );
        let p50 = tally.hist.quantile_ms(0.5);
        steps.push(Step { json, passed, achieved, p50, p99, server_cores, cores, bench_cores, per_cpu_s });
        let latency_only = dropped == 0 && err == 0 && closed == 0;
        if passed {
            rate_step += 1;
        } else if !retried && latency_only {
            retried = true;
        } else if latency_only && achieved >= 0.97 * target && skips < NOISE_SKIPS {
            eprintln!(
                "{name}: kept up with {target:.0}/s but missed the latency twice; trying the next rate"
            );
            skips += 1;
            retried = false;
            rate_step += 1;
        } else {
            break;
        }
    }
    (steps, waited)
}

/// The best passing step: the highest deliveries per second.
pub fn best(steps: &[Step]) -> Option<&Step> {
    steps.iter().filter(|s| s.passed).max_by(|a, b| a.achieved.total_cmp(&b.achieved))
}

fn summary(side: &str, a: &Args, steps: &[Step], pinned: &Option<String>, settled: Duration) -> Value {
    let b = best(steps);
    json!({
        "scenario": "fanout",
        "server": side,
        "users": a.users,
        "rooms": a.rooms,
        "senders": a.senders,
        "room_size": a.users / a.rooms.max(1),
        "server_cpus": pinned,
        "settle_s": round3(settled.as_secs_f64()),
        "max_sustained_deliveries_per_s": b.map_or(0.0, |s| s.achieved.round()),
        "p50_ms": b.map_or(0.0, |s| round3(s.p50)),
        "p99_ms": b.map_or(0.0, |s| round3(s.p99)),
        "server_cores": b.map_or(0.0, |s| round3(s.server_cores)),
        "bench_cores": b.map_or(0.0, |s| round3(s.bench_cores)),
        "deliveries_per_server_cpu_s": b.map_or(0.0, |s| s.per_cpu_s.round()),
        "steps": steps.iter().map(|s| s.json.clone()).collect::<Vec<_>>(),
        "load1": procstat::loadavg(),
    })
}

pub async fn run(opts: &ServerOpts, irc_opts: &IrcOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    anyhow::ensure!(a.rooms >= 1 && a.users >= 2 * a.rooms, "every room needs at least two users");
    anyhow::ensure!(a.senders >= 1 && a.senders <= a.users, "1 to --users senders");
    let room_size = a.users / a.rooms;
    let users = room_size * a.rooms;
    let label = format!("{users} users in {} room(s) of {room_size}, {} senders", a.rooms, a.senders);
    let pinned = opts.cpus.clone();
    let mut out = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut chat_best = None;
    if !a.irc_only {
        let data = DataDir::new(opts)?;
        let mut accounts = {
            let db = data.db()?;
            let accounts = seed_users(&db, "f", users)?;
            for r in 0..a.rooms {
                let members: Vec<&str> =
                    accounts.iter().skip(r).step_by(a.rooms).map(|acc| acc.name.as_str()).collect();
                seed_room(&db, &format!("room{r}"), &members)?;
            }
            accounts
        };
        let target = Target::start(opts, &data).await?;
        let rec = Recorder::new();
        let setup = Instant::now();
        // Senders need the full client (requests and replies); the other receivers use the
        // lean path unless told otherwise.
        let full = if a.full_client { users } else { a.senders };
        let (with_client, lean_only) = accounts.split_at_mut(full);
        let clients =
            conn::login_all(&target.addr_string(), with_client, 1, 32, 4096, chat_receiver(rec.clone()))
                .await?;
        let rooms = a.rooms;
        lean::login_all(&target.addr_string(), lean_only, full, 32, |i| format!("room{}", i % rooms), &rec)
            .await?;
        eprintln!("fanout (classchat): {users} clients logged in in {:.1} s", setup.elapsed().as_secs_f64());
        let mut senders = Senders::Chat {
            clients: (0..a.senders).map(|k| (clients[k].clone(), format!("room{}", k % a.rooms))).collect(),
            ok: Arc::default(),
            err: Arc::default(),
        };
        // Room records (PROTOCOL.md section 4.1) are on unless `--no-room-records`.
        let side = if opts.no_room_records { "classchat, room records off" } else { "classchat" };
        let (steps, waited) =
            ramp(side, a, &mut senders, &rec, room_size, &procstat::Watch::one(target.pid)).await;
        let mut v = summary(side, a, &steps, &pinned, waited);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("room_records".into(), json!(!opts.no_room_records));
        }
        chat_best = best(&steps).map(|s| (s.achieved, s.per_cpu_s));
        push_rows(&mut rows, side, &label, &steps, &pinned);
        out.insert("classchat".into(), v);
        target.stop().await?;
        drop(clients);
    }
    if a.irc || a.irc_only {
        let irc_opts = IrcOpts { cpus: opts.cpus.clone(), ..irc_opts.clone() };
        let mut ircd = irc::Ircd::start(&irc_opts).await?;
        let rec = Recorder::new();
        let setup = Instant::now();
        let mut conns = Vec::with_capacity(users);
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..users {
            let (addr, rec, sem) = (ircd.addr.clone(), rec.clone(), sem.clone());
            let chan = format!("#room{}", i % a.rooms);
            tasks.spawn(async move {
                let _p = sem.acquire_owned().await?;
                let tx = irc::client(&addr, i, &chan, rec).await?;
                anyhow::Ok((i, tx, chan))
            });
        }
        while let Some(r) = tasks.join_next().await {
            conns.push(r??);
        }
        conns.sort_by_key(|(i, _, _)| *i);
        eprintln!("fanout (inspircd): {users} clients joined in {:.1} s", setup.elapsed().as_secs_f64());
        let mut senders = Senders::Irc {
            conns: conns.iter().take(a.senders).map(|(_, tx, chan)| (tx.clone(), chan.clone())).collect(),
            err: 0,
        };
        let (steps, waited) =
            ramp("inspircd", a, &mut senders, &rec, room_size, &procstat::Watch::one(ircd.pid)).await;
        let v = summary("inspircd", a, &steps, &pinned, waited);
        push_rows(&mut rows, "inspircd", &label, &steps, &pinned);
        out.insert("inspircd".into(), v);
        if let (Some((chat, chat_cpu)), Some(irc)) = (chat_best, best(&steps)) {
            let ratio = chat / irc.achieved;
            let cpu_ratio = if irc.per_cpu_s > 0.0 { chat_cpu / irc.per_cpu_s } else { 0.0 };
            out.insert("ratio_classchat_over_inspircd".into(), json!(round3(ratio)));
            out.insert("ratio_per_server_cpu_s".into(), json!(round3(cpu_ratio)));
            rows.push(
                Row::new("fanout", &format!("ClassChat/InspIRCd, {label}"), format!("{ratio:.2}"))
                    .target(">= 1.0", ratio >= 1.0),
            );
            rows.push(Row::new(
                "fanout",
                &format!("ClassChat/InspIRCd per server CPU-second, {label}"),
                format!("{cpu_ratio:.2}"),
            ));
        }
        drop(conns);
        ircd.kill();
    }
    let mut result = json!({ "scenario": "fanout", "users": users, "rooms": a.rooms, "senders": a.senders,
        "room_size": room_size, "server_cpus": pinned });
    if let Some(obj) = result.as_object_mut() {
        obj.extend(out);
    }
    Ok((result, rows))
}

fn push_rows(rows: &mut Vec<Row>, side: &str, label: &str, steps: &[Step], pinned: &Option<String>) {
    let pin = pinned.as_ref().map(|c| format!(", server on CPU {c}")).unwrap_or_default();
    match best(steps) {
        Some(b) => {
            rows.push(Row::new(
                "fanout",
                &format!("{side}: max deliveries/s, {label}{pin}"),
                format!("{:.0}", b.achieved),
            ));
            rows.push(Row::new(
                "fanout",
                &format!("{side}: p50 / p99 at that rate"),
                format!("{:.2} / {:.2} ms", b.p50, b.p99),
            ));
            rows.push(Row::new(
                "fanout",
                &format!("{side}: server / load-generator CPU (cores)"),
                format!("{:.2} / {:.2}", b.server_cores, b.bench_cores),
            ));
            rows.push(Row::new(
                "fanout",
                &format!("{side}: deliveries per server CPU-second"),
                format!("{:.0}", b.per_cpu_s),
            ));
        }
        None => rows.push(Row::new("fanout", &format!("{side}: {label}{pin}"), "no step passed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_returns_once_the_processes_are_idle() {
        // This test process stands for both the server and the load generator: it is idle,
        // so the wait ends after the quiet windows rather than at the limit.
        let waited = settle(&procstat::Watch::one(std::process::id())).await;
        assert!(waited >= SETTLE_WINDOW * SETTLED_WINDOWS, "it watched at least the quiet windows");
        assert!(waited < SETTLE_LIMIT, "an idle pair is recognized as settled: {waited:?}");
    }
}
