//! `history`: time to fetch the newest 100 messages of a room holding N messages (and a
//! page at a random depth). The room is written directly into the server's schema with
//! rusqlite, then the server starts on it.

use std::time::Instant;

use classchat_wire::{Body, Conv, Request, Response};
use rusqlite::params;
use serde_json::{Value, json};

use crate::conn;
use crate::procstat;
use crate::stats::{Hist, Row, round3};
use crate::target::{DEVICE, DataDir, ServerOpts, Target, seed_room, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Messages in the room.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// Fetches of each kind measured.
    #[arg(long, default_value_t = 200)]
    pub fetches: usize,
}

const ROOM: &str = "hist";

fn build(dir: &std::path::Path, messages: u64) -> anyhow::Result<crate::target::Account> {
    let db = crate::target::db(dir)?;
    let account = seed_users(&db, "h", 1)?.remove(0);
    seed_room(&db, ROOM, &[account.name.as_str()])?;
    let conv = format!("r:{ROOM}");
    let tx = db.unchecked_transaction()?;
    {
        let mut insert =
            tx.prepare("INSERT INTO messages(id, conv, sender, ts, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let ts0 = 1_700_000_000_000i64;
        for id in 1..=messages as i64 {
            let body = classchat_wire::message::encode(&Body::Text {
                text: format!("history message {id}: the quick brown fox jumps over the lazy dog"),
            })?;
            insert.execute(params![id, conv, account.name, ts0 + id / 10, body])?;
        }
    }
    // The reader has seen everything: no catch-up at login.
    tx.execute(
        "INSERT INTO cursors(user_lc, device, conv, up_to) VALUES (?1, ?2, ?3, ?4)",
        params![account.name, DEVICE, conv, messages as i64],
    )?;
    tx.commit()?;
    Ok(account)
}

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    let data = DataDir::new(opts)?;
    let t = Instant::now();
    let messages = a.messages.max(200);
    let dir = data.path().to_owned();
    let mut account = tokio::task::spawn_blocking(move || build(&dir, messages)).await??;
    let build_secs = t.elapsed().as_secs_f64();
    let db_bytes =
        std::fs::metadata(data.path().join(classchat_server::DB_FILE)).map(|m| m.len()).unwrap_or(0);
    eprintln!("history: {messages} messages written in {build_secs:.1} s ({} MiB)", db_bytes >> 20);
    let target = Target::start(opts, &data).await?;
    let (client, _events, _) = conn::login(&target.addr_string(), None, &mut account, 64).await?;
    let conv = Conv::room(ROOM);
    let fetch = |before: Option<u64>| {
        let (client, conv) = (client.clone(), conv.clone());
        async move {
            let t0 = Instant::now();
            let r = client.request(Request::History { conv, before, limit: 100 }).await?;
            let took = t0.elapsed();
            match r {
                Response::History { messages, .. } if messages.len() == 100 => Ok(took),
                other => anyhow::bail!("unexpected history reply: {other:?}"),
            }
        }
    };
    let first = fetch(None).await?;
    let mut newest = Hist::default();
    let mut deep = Hist::default();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..a.fetches {
        newest.record(fetch(None).await?);
        // xorshift: a page anywhere in the room.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        deep.record(fetch(Some(101 + x % (messages - 101))).await?);
    }
    let p99 = newest.quantile_ms(0.99);
    let result = json!({
        "scenario": "history",
        "messages": messages,
        "db_mib": db_bytes >> 20,
        "build_secs": round3(build_secs),
        "first_fetch_ms": round3(first.as_secs_f64() * 1000.0),
        "newest_100": newest.json(),
        "random_page_100": deep.json(),
        "load1": procstat::loadavg(),
    });
    let mut newest_row = Row::new(
        "history",
        &format!("newest 100 of {messages}: p50 / p99"),
        format!("{:.2} / {p99:.2} ms", newest.quantile_ms(0.5)),
    );
    // The target is stated at 10,000,000 messages; a shorter run gets no verdict.
    if messages >= 10_000_000 {
        newest_row = newest_row.target("p99 < 5 ms at 10,000,000", p99 < 5.0);
    }
    let rows = vec![
        newest_row,
        Row::new(
            "history",
            "random-depth page of 100: p50 / p99",
            format!("{:.2} / {:.2} ms", deep.quantile_ms(0.5), deep.quantile_ms(0.99)),
        ),
        Row::new("history", "first fetch after start", format!("{:.2} ms", first.as_secs_f64() * 1000.0)),
    ];
    target.stop().await?;
    Ok((result, rows))
}
