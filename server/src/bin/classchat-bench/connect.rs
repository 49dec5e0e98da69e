//! `connect`: N clients connect (full handshake + resume) and stay idle. Reports connects
//! per second and the server's resident memory per connection.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::conn;
use crate::procstat;
use crate::stats::{Row, round3};
use crate::target::{DataDir, Mode, ServerOpts, Target, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Clients to connect (clamped to what the open-file limit allows).
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Source addresses in 127.0.1.0/24 to spread the clients over.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// Seconds to hold the idle connections before measuring memory.
    #[arg(long, default_value_t = 3)]
    pub hold_secs: u64,
}

/// RSS per connection the issue asks for at 100,000 connections.
const TARGET_BYTES: f64 = 8.0 * 1024.0;

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
    // This process holds one descriptor per client; in-process, the server holds another.
    let per_client = if opts.mode == Mode::Inproc { 2 } else { 1 };
    let max = (nofile.saturating_sub(200) / per_client) as usize;
    let n = a.clients.min(max);
    if n < a.clients {
        eprintln!(
            "connect: {} clients asked for, {n} possible under the open-file limit of {nofile} \
             (raising the hard limit needs CAP_SYS_RESOURCE)",
            a.clients
        );
    }
    let data = DataDir::new(opts)?;
    let mut accounts = seed_users(&data.db()?, "c", n)?;
    let target = Target::start(opts, &data).await?;
    let addr = target.addr_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s0 = procstat::sample(target.pid).ok_or_else(|| anyhow::anyhow!("server process gone"))?;
    let b0 = procstat::own();
    let started = Instant::now();
    let clients = conn::login_all(&addr, &mut accounts, a.sources, a.concurrency, 16, conn::discard).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let s1 = procstat::sample(target.pid).ok_or_else(|| anyhow::anyhow!("server process gone"))?;
    tokio::time::sleep(Duration::from_secs(a.hold_secs)).await;
    let s2 = procstat::sample(target.pid).ok_or_else(|| anyhow::anyhow!("server process gone"))?;
    let b2 = procstat::own();
    let open = clients.iter().filter(|c| !c.is_closed()).count();
    let per_conn = (s2.rss_kib.saturating_sub(s0.rss_kib) * 1024) as f64 / n.max(1) as f64;
    let bench_per_conn = match (b0, b2) {
        (Some(b0), Some(b2)) => (b2.rss_kib.saturating_sub(b0.rss_kib) * 1024) as f64 / n.max(1) as f64,
        _ => 0.0,
    };
    let rate = n as f64 / connect_secs;
    let server_cpu = s1.cpu_s - s0.cpu_s;
    let idle_cores = procstat::cores(&s1, &s2);
    let result = json!({
        "scenario": "connect",
        "clients": n,
        "clients_asked": a.clients,
        "open_after_hold": open,
        "nofile_limit": nofile,
        "sources": a.sources,
        "rsa_bits": opts.rsa_bits,
        "connect_secs": round3(connect_secs),
        "connects_per_s": round3(rate),
        "server_cpu_s_per_connect_ms": round3(server_cpu * 1000.0 / n.max(1) as f64),
        "server_rss_kib_before": s0.rss_kib,
        "server_rss_kib_idle": s2.rss_kib,
        "server_rss_bytes_per_conn": per_conn.round(),
        "bench_rss_bytes_per_conn": bench_per_conn.round(),
        "server_idle_cores": round3(idle_cores),
        "load1": procstat::loadavg(),
    });
    let rows = vec![
        Row::new(
            "connect",
            &format!("connects/s ({n} clients, RSA-{})", opts.rsa_bits),
            format!("{rate:.0}"),
        ),
        Row::new(
            "connect",
            "server CPU per connect",
            format!("{:.2} ms", server_cpu * 1000.0 / n.max(1) as f64),
        ),
        Row::new(
            "connect",
            &format!("server RSS per idle connection ({open}/{n} open)"),
            format!("{per_conn:.0} B"),
        )
        .target("< 8 KiB at 100,000", per_conn < TARGET_BYTES && open == n),
    ];
    target.stop().await?;
    drop(clients);
    Ok((result, rows))
}
