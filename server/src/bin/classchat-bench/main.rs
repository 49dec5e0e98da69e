//! `classchat-bench`: the load tool behind BENCHMARKS.md.
//!
//! Every connection is the real `classchat_wire::Client`: TCP, the RSA handshake, then
//! `Resume` with a token seeded into the server's database (so Argon2 is not what is
//! measured). The server runs as a child process (`classchat-server`, next to this binary)
//! on a temporary data dir, so its CPU time and memory are read from /proc apart from the
//! load generator's. All traffic stays on 127.0.0.0/8; every loop is bounded in count and
//! time, and the tool stops by itself.
//!
//! Each run prints one JSON line (machine-readable) and, at the end, a table.
//!
//! # Layout
//! - `target`: data dirs seeded in the server's schema; starting and stopping the server.
//! - `conn`: logging seeded accounts in with the real client.
//! - `procstat`: CPU and RSS of a process from /proc.
//! - `stats`: latency histograms, the shared clock, the table.
//! - `load`: what fan-out receivers record (shared by ClassChat and IRC).
//! - `lean`: the fan-out receivers' lean receive path (the real handshake and login, then
//!   frames decoded into just what is recorded).
//! - `connect`, `fanout`, `dm`, `durable`, `history`, `search`, `siege`, `kill9`, `file`,
//!   `peer`, `cluster`: the scenarios.
//! - `irc`: InspIRCd and plain IRC clients for the fan-out comparison.

mod cluster;
mod conn;
mod connect;
mod dm;
mod durable;
mod fanout;
mod file;
mod history;
mod irc;
mod kill9;
mod lean;
mod load;
mod peer;
mod procstat;
mod search;
mod siege;
mod stats;
mod target;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use stats::Row;
use target::{Mode, ServerOpts};

#[derive(Parser, Debug)]
#[command(name = "classchat-bench", about = "Load tool for classchat-server (loopback only)")]
struct Cli {
    /// Run the server as a child process (measured apart) or in this process.
    #[arg(long, value_enum, default_value = "child", global = true)]
    server: Mode,
    /// The server binary for `--server child` (default: next to this binary).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// Pin the server (ClassChat or InspIRCd) to these CPUs (`taskset -c` list).
    #[arg(long, global = true)]
    server_cpus: Option<String>,
    /// Pin this load generator to these CPUs (`taskset -c` list).
    #[arg(long, global = true)]
    bench_cpus: Option<String>,
    /// Size of the server's RSA key (the handshake's cost); 3072 is the default.
    #[arg(long, default_value_t = 3072, global = true)]
    rsa_bits: usize,
    /// Where temporary data dirs are made (its filesystem is what `durable` measures).
    #[arg(long, global = true)]
    data_root: Option<PathBuf>,
    /// Run the ClassChat server with `room_records = false` (every delivery sealed for its
    /// connection alone), to compare with room records (PROTOCOL.md section 4.1).
    #[arg(long, global = true)]
    no_room_records: bool,
    /// InspIRCd binary for `fanout --irc`.
    #[arg(long, default_value = "/usr/sbin/inspircd", global = true)]
    inspircd: PathBuf,
    /// InspIRCd config for `fanout --irc`.
    #[arg(long, global = true)]
    inspircd_config: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N clients connect, log in and stay idle: connects/s, server RSS per connection.
    Connect(connect::Args),
    /// Room fan-out with a rising rate: max deliveries/s at p99 <= limit, nothing dropped.
    Fanout(fanout::Args),
    /// Direct-message round trip at light load.
    Dm(dm::Args),
    /// Acknowledged (durable) messages per second.
    Durable(durable::Args),
    /// Newest-100 history fetch from a room of N messages.
    History(history::Args),
    /// One-word message searches in a store of N messages (kept between runs).
    Search(search::Args),
    /// One file (1 GiB by default) from one client through the server to another.
    File(file::Args),
    /// A real client's login while thousands of connections never log in.
    Siege(siege::Args),
    /// Senders, the server killed with SIGKILL and restarted: no acknowledged message
    /// lost or stored twice (exits non-zero if one is).
    Kill9(kill9::Args),
    /// One shared file (1 GiB by default) fetched straight from its sharer (peer to peer),
    /// on loopback or between two network namespaces.
    Peer(peer::Args),
    /// One peer of `peer --netns` (run inside its namespace): shares a file.
    #[command(hide = true)]
    PeerShare(peer::RoleArgs),
    /// One peer of `peer --netns` (run inside its namespace): fetches it.
    #[command(hide = true)]
    PeerFetch(peer::RoleArgs),
    /// Two nodes on a throwaway PostgreSQL and NATS against one node on SQLite, alternated:
    /// durable acks/s and fan-out deliveries/s, with the CPU of nodes, PostgreSQL and NATS.
    Cluster(cluster::Args),
    /// A short version of every scenario (what `make bench` runs), then the table.
    Suite,
}

/// Pins every thread of this process to `cpus`.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(std::process::Stdio::null())
        .status()?
        .success();
    anyhow::ensure!(ok, "taskset -a -p -c {cpus} failed");
    Ok(())
}

fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    serde_json::json!({ "machine": { "cpus": cpus, "model": model, "load1": procstat::loadavg() } })
}

async fn suite(opts: &ServerOpts, irc: &irc::IrcOpts, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let short = |users, rooms, senders| fanout::Args {
        users,
        rooms,
        senders,
        // Low enough that ClassChat passes a few steps on a busy 2-core box, with steps
        // enough for InspIRCd to reach its limit (20,000 x 1.6^9 = 1.4 million).
        start: 20_000.0,
        factor: 1.6,
        step_secs: 2.0,
        max_steps: 10,
        p99_ms: 100.0,
        text_len: 64,
        irc: true,
        irc_only: false,
        full_client: false,
    };
    let runs: Vec<(&str, Scenario)> = vec![
        (
            "connect",
            Scenario::Connect(connect::Args { clients: 2000, concurrency: 64, sources: 8, hold_secs: 3 }),
        ),
        ("fanout 1000 in 1 room", Scenario::Fanout(short(1000, 1, 10))),
        ("fanout 1000 in 10 rooms", Scenario::Fanout(short(1000, 10, 100))),
        ("fanout 5000 in 1 room", Scenario::Fanout(short(5000, 1, 10))),
        ("fanout 5000 in 50 rooms", Scenario::Fanout(short(5000, 50, 500))),
        ("dm", Scenario::Dm(dm::Args { round_trips: 500, body_len: 200 })),
        (
            "durable",
            Scenario::Durable(durable::Args {
                senders: 32,
                window: 64,
                secs: 5.0,
                text_len: 64,
                postgres: false,
            }),
        ),
        ("history", Scenario::History(history::Args { messages: 1_000_000, fetches: 200 })),
        (
            "search",
            Scenario::Search(search::Args { messages: 1_000_000, rooms: 1_000, queries: 300, store: None }),
        ),
        (
            "siege",
            Scenario::Siege(siege::Args {
                connections: 2000,
                trickle_ms: 500,
                probes: 10,
                ramp_secs: 5,
                sources: 1,
                no_reconnect: false,
            }),
        ),
        ("peer", Scenario::Peer(peer::Args { mib: 256, runs: 1, netns: false, block_direct: false })),
        (
            "peer over veth",
            Scenario::Peer(peer::Args { mib: 256, runs: 1, netns: true, block_direct: false }),
        ),
    ];
    for (name, scenario) in runs {
        eprintln!("== {name}");
        if let Err(e) = run_one(opts, irc, &scenario, rows).await {
            eprintln!("{name} failed: {e:#}");
            rows.push(Row::new(name, "failed", format!("{e}")));
        }
    }
    // What room records (PROTOCOL.md section 4.1) change: the same server with them off.
    eprintln!("== fanout 1000 in 1 room, room records off");
    let sealed_each = ServerOpts { no_room_records: true, ..opts.clone() };
    let mut alone = short(1000, 1, 10);
    alone.irc = false;
    if let Err(e) = run_one(&sealed_each, irc, &Scenario::Fanout(alone), rows).await {
        eprintln!("fanout with room records off failed: {e:#}");
    }
    // The fair comparison with single-threaded InspIRCd: each server gets one core of its
    // own, the load generator the other.
    eprintln!("== fanout 1000 in 1 room, server pinned to CPU 0, load generator to CPU 1");
    let pinned = ServerOpts { cpus: Some("0".into()), ..opts.clone() };
    pin_self("1")?;
    let r = run_one(&pinned, irc, &Scenario::Fanout(short(1000, 1, 10)), rows).await;
    pin_self(&format!("0-{}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) - 1))?;
    r
}

async fn run_one(
    opts: &ServerOpts,
    irc: &irc::IrcOpts,
    s: &Scenario,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let (json, mut r) = match s {
        Scenario::Connect(a) => connect::run(opts, a).await?,
        Scenario::Fanout(a) => fanout::run(opts, irc, a).await?,
        Scenario::Dm(a) => dm::run(opts, a).await?,
        Scenario::Durable(a) => durable::run(opts, a).await?,
        Scenario::History(a) => history::run(opts, a).await?,
        Scenario::Search(a) => search::run(opts, a).await?,
        Scenario::File(a) => file::run(opts, a).await?,
        Scenario::Siege(a) => siege::run(opts, a).await?,
        Scenario::Kill9(a) => kill9::run(opts, a).await?,
        Scenario::Peer(a) => peer::run(opts, a).await?,
        Scenario::Cluster(a) => cluster::run(opts, a).await?,
        Scenario::PeerShare(_) | Scenario::PeerFetch(_) => anyhow::bail!("a peer role is not a scenario"),
        Scenario::Suite => anyhow::bail!("the suite does not nest"),
    };
    stats::emit(&json);
    rows.append(&mut r);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The peers of `peer --netns` print only their own results.
    match &cli.scenario {
        Scenario::PeerShare(r) => return peer::share_role(r).await,
        Scenario::PeerFetch(r) => return peer::fetch_role(r).await,
        _ => {}
    }
    // Before any pinning, which narrows what this process sees.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    // Every connection is a descriptor: take all the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open-file limit: {n}"),
        Err(e) => eprintln!("could not raise the open-file limit: {e}"),
    }
    if let Some(cpus) = &cli.bench_cpus {
        pin_self(cpus)?;
    }
    let opts = ServerOpts {
        mode: cli.server,
        bin: cli.server_bin.clone().unwrap_or_else(target::default_server_bin),
        cpus: cli.server_cpus.clone(),
        rsa_bits: cli.rsa_bits,
        data_root: cli.data_root.clone().unwrap_or_else(std::env::temp_dir),
        no_room_records: cli.no_room_records,
    };
    let irc = irc::IrcOpts {
        bin: cli.inspircd.clone(),
        config: cli.inspircd_config.clone().unwrap_or_else(irc::default_config),
        cpus: None,
    };
    stats::emit(&machine());
    let mut rows = Vec::new();
    let outcome = match &cli.scenario {
        Scenario::Suite => suite(&opts, &irc, &mut rows).await,
        s => run_one(&opts, &irc, s, &mut rows).await,
    };
    stats::print_table(&rows);
    println!("(machine: {cpus} CPUs, load average now {:.2})", procstat::loadavg());
    outcome
}
