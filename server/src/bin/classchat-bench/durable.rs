//! `durable`: acknowledged messages per second. K senders, each alone in its own room (so
//! nothing is fanned out), keep W messages in flight; a message counts once its `Sent`
//! reply arrives, which the server sends only after the commit (`synchronous=FULL`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use classchat_wire::{Client, Request, Response};
use serde_json::{Value, json};

use crate::conn;
use crate::procstat;
use crate::stats::{Hist, Row, round3};
use crate::target::{DataDir, ServerOpts, Target, seed_room, seed_room_pg, seed_users, seed_users_pg};
use classchat_server::services::postgres::Postgres;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sending connections.
    #[arg(long, default_value_t = 32)]
    pub senders: usize,
    /// Messages in flight per sender.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Seconds measured (after one unmeasured second).
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Bytes of message text.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// Store on a throwaway PostgreSQL cluster (`store = "postgres://…"`) instead of the
    /// SQLite file in the data dir.
    #[arg(long)]
    pub postgres: bool,
}

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    let data = DataDir::new(opts)?;
    let pg = match a.postgres {
        true => Some(tokio::task::spawn_blocking(Postgres::start).await??),
        false => None,
    };
    let solo = |k: usize| format!("solo{k}");
    let mut accounts = match &pg {
        None => {
            let db = data.db()?;
            let accounts = seed_users(&db, "w", a.senders)?;
            for (k, acc) in accounts.iter().enumerate() {
                seed_room(&db, &solo(k), &[acc.name.as_str()])?;
            }
            accounts
        }
        Some(pg) => {
            let (url, senders) = (pg.url(), a.senders);
            tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<_>> {
                let mut db = classchat_server::open_postgres(&url)?;
                let accounts = seed_users_pg(&mut db, "w", senders)?;
                for (k, acc) in accounts.iter().enumerate() {
                    seed_room_pg(&mut db, &solo(k), &[acc.name.as_str()])?;
                }
                Ok(accounts)
            })
            .await??
        }
    };
    let store = pg.as_ref().map(Postgres::url);
    let target = Target::start_with(opts, &data, |c| c.store = store).await?;
    let clients = conn::login_all(&target.addr_string(), &mut accounts, 1, 32, 64, conn::discard).await?;
    let rooms: Vec<String> = (0..clients.len()).map(solo).collect();
    let watch = procstat::Watch {
        postgres: pg.as_ref().and_then(|pg| procstat::find_listener("postgres", pg.port())),
        ..procstat::Watch::one(target.pid)
    };
    let m = measure(&clients, &rooms, a.window, a.secs, a.text_len, &watch).await;
    let (n, rate, hist, server_cores, bench_cores) =
        (m.acked, m.rate, m.hist, m.cores.servers, m.bench_cores);
    let result = json!({
        "scenario": "durable",
        "store": if a.postgres { "postgres" } else { "sqlite" },
        "senders": a.senders,
        "window": a.window,
        "secs": a.secs,
        "acked": n,
        "failed": m.failed,
        "acked_per_s": rate.round(),
        "ack_latency": hist.json(),
        "server_cores": round3(server_cores),
        "postgres_cores": round3(m.cores.postgres),
        "bench_cores": round3(bench_cores),
        "load1": procstat::loadavg(),
    });
    let rows = vec![
        Row::new(
            "durable",
            &format!("acknowledged msgs/s ({} senders x {} in flight)", a.senders, a.window),
            format!("{rate:.0}"),
        )
        .target(">= 100,000", rate >= 100_000.0),
        Row::new(
            "durable",
            "ack latency p50 / p99",
            format!("{:.2} / {:.2} ms", hist.quantile_ms(0.5), hist.quantile_ms(0.99)),
        ),
        Row::new(
            "durable",
            "server / load-generator CPU (cores)",
            format!("{server_cores:.2} / {bench_cores:.2}"),
        ),
    ];
    target.stop().await?;
    drop(clients);
    if let Some(pg) = pg {
        tokio::task::spawn_blocking(move || drop(pg)).await?;
    }
    Ok((result, rows))
}

/// What [`measure`] saw.
#[derive(Debug)]
pub struct Measured {
    pub acked: u64,
    pub failed: u64,
    /// Acknowledged messages per second.
    pub rate: f64,
    pub hist: Hist,
    pub cores: procstat::Cores,
    pub bench_cores: f64,
}

/// Client `k` keeps `window` messages in flight to `rooms[k]` for one unmeasured second
/// and `secs` measured ones; counts the `Sent` replies of the measured seconds.
pub async fn measure(
    clients: &[Client],
    rooms: &[String],
    window: usize,
    secs: f64,
    text_len: usize,
    server: &procstat::Watch,
) -> Measured {
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(std::sync::Mutex::new(Hist::default()));
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let text: String = "d".repeat(text_len.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for (client, room) in clients.iter().zip(rooms) {
        for _ in 0..window {
            let (client, acked, failed, hist, text, room) =
                (client.clone(), acked.clone(), failed.clone(), hist.clone(), text.clone(), room.clone());
            tasks.spawn(async move {
                let mut local = Hist::default();
                while started.elapsed() < warmup + measure {
                    let t0 = Instant::now();
                    let r = client
                        .request(Request::SendRoom { room: room.clone(), text: text.clone(), reply_to: None })
                        .await;
                    let in_window = t0 >= started + warmup && started.elapsed() <= warmup + measure;
                    match r {
                        Ok(Response::Sent { .. }) if in_window => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            local.record(t0.elapsed());
                        }
                        Ok(Response::Sent { .. }) => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                hist.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(&local);
            });
        }
    }
    tokio::time::sleep(warmup).await;
    let s0 = server.sample();
    let b0 = procstat::own();
    tokio::time::sleep(measure).await;
    let s1 = server.sample();
    let b1 = procstat::own();
    while tasks.join_next().await.is_some() {}
    let n = acked.load(Ordering::Relaxed);
    let cores = match (s0, s1) {
        (Some(s0), Some(s1)) => s1.cores_since(&s0),
        _ => procstat::Cores::default(),
    };
    let bench_cores = match (b0, b1) {
        (Some(b0), Some(b1)) => procstat::cores(&b0, &b1),
        _ => 0.0,
    };
    let hist = hist.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Measured {
        acked: n,
        failed: failed.load(Ordering::Relaxed),
        rate: n as f64 / secs,
        hist,
        cores,
        bench_cores,
    }
}
