//! `kill9`: no acknowledged message is lost or stored twice when the server dies.
//!
//! Each run: a fresh data dir with S senders, all members of one room. Every sender keeps
//! W messages in flight, each text unique (`r{run} s{sender} m{n}`). At a random moment
//! between `--kill-min-ms` and `--kill-max-ms` after the first acknowledgement the server
//! gets SIGKILL. It is restarted on the same data dir; every sender logs in again and sends
//! for `--after-secs` more. Then one sender reads the room's whole history, and every
//! message that got a `Sent` reply must be in it exactly once, under the id the reply gave.
//! A message in flight at the kill (sent, no reply) may or may not be stored: it is
//! counted, not judged. The run fails (non-zero exit) if any acknowledged message is lost
//! or duplicated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use classchat_wire::{Body, Client, Conv, Request, Response};
use serde_json::{Value, json};

use crate::conn;
use crate::stats::Row;
use crate::target::{Account, DataDir, Mode, ServerOpts, Target, seed_room, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Runs, each on a fresh data dir with its own kill.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Sending connections (one user each), all in one room.
    #[arg(long, default_value_t = 20)]
    pub senders: usize,
    /// Messages in flight per sender.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Earliest kill, in ms after the first acknowledgement.
    #[arg(long, default_value_t = 200)]
    pub kill_min_ms: u64,
    /// Latest kill, in ms after the first acknowledgement.
    #[arg(long, default_value_t = 3000)]
    pub kill_max_ms: u64,
    /// Seconds every sender keeps sending after the restart.
    #[arg(long, default_value_t = 1.0)]
    pub after_secs: f64,
}

const ROOM: &str = "class";

/// What the senders saw: each acknowledged message with the id its reply gave, and the
/// messages whose reply never came because the connection died.
#[derive(Default)]
struct Log {
    acked: Vec<(u64, String)>,
    in_flight: Vec<String>,
    refused: u64,
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `window` requests in flight from `client` until `until` or until the connection
/// dies. Message numbers come from `next`, so they continue across a restart.
async fn send(
    client: Client,
    run: usize,
    sender: usize,
    window: usize,
    next: Arc<AtomicU64>,
    log: Shared,
    until: Option<Instant>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..window {
        let (client, next, log) = (client.clone(), next.clone(), log.clone());
        tasks.spawn(async move {
            while until.is_none_or(|u| Instant::now() < u) {
                let text = format!("r{run} s{sender} m{}", next.fetch_add(1, Ordering::Relaxed));
                match client
                    .request(Request::SendRoom { room: ROOM.into(), text: text.clone(), reply_to: None })
                    .await
                {
                    Ok(Response::Sent { id, .. }) => lock(&log).acked.push((id, text)),
                    Ok(_) => lock(&log).refused += 1,
                    Err(_) => {
                        lock(&log).in_flight.push(text);
                        return;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Every text message of the room: text → the ids it is stored under.
async fn history(client: &Client) -> anyhow::Result<HashMap<String, Vec<u64>>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    let mut before = None;
    loop {
        let reply = client
            .request(Request::History {
                conv: Conv::room(ROOM),
                before,
                limit: classchat_wire::MAX_HISTORY_PAGE,
            })
            .await?;
        let Response::History { messages, more, .. } = reply else { bail!("history: {reply:?}") };
        before = messages.last().map(|m| m.id);
        for m in messages {
            if let Body::Text { text } = m.body {
                out.entry(text).or_default().push(m.id);
            }
        }
        if !more || before.is_none() {
            return Ok(out);
        }
    }
}

/// What one run found.
struct Outcome {
    json: Value,
    acked: usize,
    lost: usize,
    duplicated: usize,
}

async fn one_run(opts: &ServerOpts, a: &Args, run: usize) -> anyhow::Result<Outcome> {
    let data = DataDir::new(opts)?;
    let mut accounts: Vec<Account> = {
        let db = data.db()?;
        let accounts = seed_users(&db, "k", a.senders)?;
        let names: Vec<&str> = accounts.iter().map(|acc| acc.name.as_str()).collect();
        seed_room(&db, ROOM, &names)?;
        accounts
    };
    let target = Target::start(opts, &data).await?;
    let addr = target.addr_string();
    let clients = conn::login_all(&addr, &mut accounts, 1, 32, 4096, conn::discard).await?;
    let log: Shared = Arc::default();
    let counters: Vec<Arc<AtomicU64>> = (0..a.senders).map(|_| Arc::default()).collect();

    // Until the kill: senders run until their connection dies.
    let mut senders = tokio::task::JoinSet::new();
    for (s, client) in clients.iter().enumerate() {
        senders.spawn(send(client.clone(), run, s, a.window, counters[s].clone(), log.clone(), None));
    }
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        while lock(&log).acked.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Instant::now()
    })
    .await
    .context("no message was acknowledged within 60 s")?;
    let kill_after_ms = rand::random_range(a.kill_min_ms..=a.kill_max_ms.max(a.kill_min_ms));
    tokio::time::sleep_until((first + Duration::from_millis(kill_after_ms)).into()).await;
    let killed_at_ms = first.elapsed().as_millis() as u64;
    let acked_at_kill = lock(&log).acked.len();
    target.kill9().await?;
    tokio::time::timeout(Duration::from_secs(30), async { while senders.join_next().await.is_some() {} })
        .await
        .context("senders did not notice the kill within 30 s")?;
    drop(clients);
    let (acked_before, in_flight) = {
        let l = lock(&log);
        (l.acked.len(), l.in_flight.clone())
    };

    // The restart: everyone logs in again and sends some more.
    let target = Target::start(opts, &data).await?;
    let addr = target.addr_string();
    let clients = conn::login_all(&addr, &mut accounts, 1, 32, 4096, conn::discard).await?;
    let until = Instant::now() + Duration::from_secs_f64(a.after_secs);
    for (s, client) in clients.iter().enumerate() {
        senders.spawn(send(client.clone(), run, s, a.window, counters[s].clone(), log.clone(), Some(until)));
    }
    while senders.join_next().await.is_some() {}
    let stored = history(&clients[0]).await?;
    target.stop().await?;
    drop(clients);

    let log = std::mem::take(&mut *lock(&log));
    ensure!(log.in_flight.len() == in_flight.len(), "a connection died after the restart");
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    for (id, text) in &log.acked {
        match stored.get(text).map(Vec::as_slice) {
            Some([only]) if only == id => {}
            Some([]) | None => lost.push(text.clone()),
            Some([_]) => lost.push(format!("{text} (stored under another id than {id})")),
            Some(more) => duplicated.push(format!("{text} (ids {more:?})")),
        }
    }
    let in_flight_stored = in_flight.iter().filter(|t| stored.contains_key(*t)).count();
    let in_flight_twice =
        in_flight.iter().filter(|t| stored.get(*t).is_some_and(|ids| ids.len() > 1)).count();
    let known: std::collections::HashSet<&str> =
        log.acked.iter().map(|(_, t)| t.as_str()).chain(in_flight.iter().map(String::as_str)).collect();
    let strangers = stored.keys().filter(|t| !known.contains(t.as_str())).count();
    if !lost.is_empty() || !duplicated.is_empty() {
        eprintln!("run {run}: lost {lost:?}; duplicated {duplicated:?}");
    }
    let json = json!({
        "run": run,
        "kill_ms_after_first_ack": killed_at_ms,
        "acked_at_kill": acked_at_kill,
        "acked_before_kill": acked_before,
        "acked_after_restart": log.acked.len() - acked_before,
        "acked": log.acked.len(),
        "in_flight_at_kill": in_flight.len(),
        "in_flight_stored": in_flight_stored,
        "refused": log.refused,
        "lost": lost.len(),
        "duplicated": duplicated.len() + in_flight_twice,
        "unknown_in_history": strangers,
    });
    eprintln!("{json}");
    ensure!(log.refused == 0, "{} messages were refused (not Sent)", log.refused);
    ensure!(strangers == 0, "{strangers} messages in the history were never sent");
    Ok(Outcome {
        json,
        acked: log.acked.len(),
        lost: lost.len(),
        duplicated: duplicated.len() + in_flight_twice,
    })
}

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    ensure!(opts.mode == Mode::Child, "kill9 needs the server as a child process (--server child)");
    let mut runs = Vec::new();
    let (mut acked, mut lost, mut duplicated) = (0, 0, 0);
    for run in 1..=a.runs {
        let o = one_run(opts, a, run).await.with_context(|| format!("run {run}"))?;
        acked += o.acked;
        lost += o.lost;
        duplicated += o.duplicated;
        runs.push(o.json);
    }
    let kills: Vec<String> =
        runs.iter().map(|r| format!("{} ms", r["kill_ms_after_first_ack"].as_u64().unwrap_or(0))).collect();
    let result = json!({
        "scenario": "kill9",
        "runs": a.runs,
        "senders": a.senders,
        "window": a.window,
        "acked": acked,
        "lost": lost,
        "duplicated": duplicated,
        "per_run": runs,
    });
    let rows = vec![
        Row::new(
            "kill9",
            &format!("acknowledged messages, {} runs x {} senders", a.runs, a.senders),
            acked.to_string(),
        ),
        Row::new("kill9", "acknowledged and lost / stored twice", format!("{lost} / {duplicated}"))
            .target("0 / 0", lost == 0 && duplicated == 0),
        Row::new("kill9", "kill moments after the first ack", kills.join(", ")),
    ];
    if lost > 0 || duplicated > 0 {
        crate::stats::emit(&result);
        crate::stats::print_table(&rows);
        bail!("{lost} acknowledged messages lost, {duplicated} stored twice");
    }
    Ok((result, rows))
}
