//! `siege`: thousands of connections that never log in (half idle, half trickling a byte
//! at a time, each reconnecting as soon as the server closes it), all from 127.0.0.1,
//! while a real client from the same address connects, does the full handshake and logs
//! in, again and again. Reports the real client's login times with and without the
//! siege, and how many siege connections the server closed to admit newer ones.
//!
//! The server runs with its default admission limits (`max_pre_login`,
//! `max_pre_login_per_address`, `max_connections_per_address`, `handshake_timeout_ms`),
//! not the bench's lifted ones: they are what is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn;
use crate::procstat;
use crate::stats::{Row, round3};
use crate::target::{DataDir, ServerOpts, Target, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Siege connections held open (each reopened when the server closes it).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// A trickling connection sends one byte this often (milliseconds).
    #[arg(long, default_value_t = 500)]
    pub trickle_ms: u64,
    /// Real logins measured, before and during the siege each.
    #[arg(long, default_value_t = 20)]
    pub probes: usize,
    /// Seconds the siege runs before the first probe, to reach its full size.
    #[arg(long, default_value_t = 10)]
    pub ramp_secs: u64,
    /// Source addresses the siege connects from: 1 (the default) is 127.0.0.1, the real
    /// client's own; N > 1 spreads it over 127.0.0.2 … 127.0.0.(N+1), as attackers on
    /// other machines of the network, while the real client stays on 127.0.0.1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub sources: u8,
    /// A siege connection the server closed stays closed (the "held open": what is
    /// left open is what the server let stay). Without it each one is reopened at once.
    #[arg(long)]
    pub no_reconnect: bool,
}

/// Connects to `server` from `source` (any port).
async fn connect_from(
    source: std::net::Ipv4Addr,
    server: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// The bound on a real client's login under siege.
const TARGET_MS: f64 = 1000.0;

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
    let n = a.connections.min(nofile.saturating_sub(500) as usize);
    let data = DataDir::new(opts)?;
    let mut accounts = seed_users(&data.db()?, "s", 1)?;
    let defaults = classchat_server::Config::default();
    let target = Target::start_with(opts, &data, |c| {
        c.max_pre_login = defaults.max_pre_login;
        c.max_pre_login_per_address = defaults.max_pre_login_per_address;
        c.max_connections_per_address = defaults.max_connections_per_address;
        c.handshake_timeout_ms = defaults.handshake_timeout_ms;
        c.login_timeout_ms = defaults.login_timeout_ms;
    })
    .await?;
    let addr = target.addr_string();
    let account = &mut accounts[0];

    let probe = |addr: String, mut account: crate::target::Account| async move {
        let started = Instant::now();
        let result = conn::login(&addr, None, &mut account, 16).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        (result.map(|(client, _, _)| client), ms, account)
    };
    let mut quiet = Vec::new();
    for _ in 0..a.probes {
        let (client, ms, acc) = probe(addr.clone(), account.clone()).await;
        *account = acc;
        client?.close().await;
        quiet.push(ms);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let closed_by_server = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let server_addr = target.addr;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (stop, closed, opened) = (Arc::clone(&stop), Arc::clone(&closed_by_server), Arc::clone(&opened));
        let trickle = i % 2 == 1;
        let every = Duration::from_millis(a.trickle_ms);
        let source = match a.sources {
            0 | 1 => std::net::Ipv4Addr::LOCALHOST,
            n => std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(n)) as u8), // n <= 250
        };
        let reconnect = !a.no_reconnect;
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut first = true;
            while !stop.load(Ordering::Relaxed) && (first || reconnect) {
                first = false;
                let Ok(mut s) = connect_from(source, server_addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                // Hold it until the server closes it (or the siege ends), trickling.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let wait = tokio::time::timeout(every, s.read(&mut buf)).await;
                    match wait {
                        Ok(Ok(0) | Err(_)) => {
                            closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The ServerHello: read and ignored.
                        Ok(Ok(_)) => {}
                        Err(_) if trickle => {
                            if s.write_all(&[0]).await.is_err() {
                                closed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.ramp_secs)).await;
    let s0 = procstat::sample(target.pid).ok_or_else(|| anyhow::anyhow!("server process gone"))?;
    let mut sieged = Vec::new();
    let mut failed = 0usize;
    for _ in 0..a.probes {
        let (client, ms, acc) = probe(addr.clone(), account.clone()).await;
        *account = acc;
        match client {
            Ok(c) => {
                c.close().await;
                sieged.push(ms);
            }
            Err(e) => {
                eprintln!("siege: a real login failed: {e:#}");
                failed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s1 = procstat::sample(target.pid).ok_or_else(|| anyhow::anyhow!("server process gone"))?;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    target.stop().await?;

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (quiet_med, sieged_med) = (median(&mut quiet), median(&mut sieged));
    let sieged_max = max(&sieged);
    let result = json!({
        "scenario": "siege",
        "connections": n,
        "connections_asked": a.connections,
        "trickle_ms": a.trickle_ms,
        "sources": a.sources.max(1),
        "reconnect": !a.no_reconnect,
        "probes": a.probes,
        "rsa_bits": opts.rsa_bits,
        "login_ms_quiet_median": round3(quiet_med),
        "login_ms_sieged_median": round3(sieged_med),
        "login_ms_sieged_max": round3(sieged_max),
        "logins_failed": failed,
        "siege_connections_opened": opened.load(Ordering::Relaxed),
        "siege_connections_closed_by_server": closed_by_server.load(Ordering::Relaxed),
        "server_cores_during_probes": round3(procstat::cores(&s0, &s1)),
    });
    let rows = vec![
        Row::new("siege", "real login, quiet (median ms)", format!("{quiet_med:.1}")),
        Row::new(
            "siege",
            &format!(
                "real login under {n} idle/trickling from {} address(es), {} (median / max ms)",
                a.sources.max(1),
                if a.no_reconnect { "closed ones stay closed" } else { "reopened at once" }
            ),
            format!(
                "{sieged_med:.1} / {sieged_max:.1} ({})",
                if failed == 0 && sieged_max <= TARGET_MS { "met: <= 1 s" } else { "NOT met" }
            ),
        ),
    ];
    Ok((result, rows))
}
