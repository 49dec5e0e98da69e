//! `dm`: round-trip time of direct messages at light load. One user sends a direct message,
//! the other answers as soon as it arrives; the round trip ends when the answer arrives.
//! Each leg is durable (committed with `synchronous=FULL`) before it is delivered.

use std::time::{Duration, Instant};

use classchat_wire::{Body, Event, Request};
use serde_json::{Value, json};

use crate::conn;
use crate::procstat;
use crate::stats::{Hist, Row, round3};
use crate::target::{DataDir, ServerOpts, Target, seed_users};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Round trips measured (after 20 unmeasured ones).
    #[arg(long, default_value_t = 1000)]
    pub round_trips: usize,
    /// Bytes of each (opaque) direct message body.
    #[arg(long, default_value_t = 200)]
    pub body_len: usize,
}

const WARMUP: usize = 20;

pub async fn run(opts: &ServerOpts, a: &Args) -> anyhow::Result<(Value, Vec<Row>)> {
    let data = DataDir::new(opts)?;
    let mut accounts = seed_users(&data.db()?, "d", 2)?;
    let target = Target::start(opts, &data).await?;
    let addr = target.addr_string();
    let (alice, mut alice_events, _) = conn::login(&addr, None, &mut accounts[0], 64).await?;
    let (bob, mut bob_events, _) = conn::login(&addr, None, &mut accounts[1], 64).await?;
    let (alice_name, bob_name) = (accounts[0].name.clone(), accounts[1].name.clone());
    // Bob answers every direct message with the same body.
    let echo = tokio::spawn(async move {
        while let Some(ev) = bob_events.recv().await {
            if let Event::Message { message } = ev
                && let Body::Opaque { data } = message.body
            {
                let _ = bob
                    .request(Request::SendDirect { to: alice_name.clone(), body: data, reply_to: None })
                    .await;
            }
        }
    });
    let mut rtt = Hist::default();
    let mut ack = Hist::default();
    let s0 = procstat::sample(target.pid);
    let started = Instant::now();
    for i in 0..WARMUP + a.round_trips {
        let mut body = vec![0x5a; a.body_len.max(8)];
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let t0 = Instant::now();
        let sender = alice.clone();
        let to = bob_name.clone();
        let sent = tokio::spawn(async move {
            let r = sender.request(Request::SendDirect { to, body, reply_to: None }).await;
            (r, t0.elapsed())
        });
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = alice_events.recv().await {
                if let Event::Message { message } = ev
                    && matches!(message.body, Body::Opaque { .. })
                {
                    return Some(());
                }
            }
            None
        })
        .await;
        let elapsed = t0.elapsed();
        anyhow::ensure!(matches!(answer, Ok(Some(()))), "round trip {i} got no answer");
        let (r, ack_time) = sent.await?;
        r?;
        if i >= WARMUP {
            rtt.record(elapsed);
            ack.record(ack_time);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let s1 = procstat::sample(target.pid);
    echo.abort();
    let server_cores = match (s0, s1) {
        (Some(a), Some(b)) => procstat::cores(&a, &b),
        _ => 0.0,
    };
    let p99 = rtt.quantile_ms(0.99);
    let result = json!({
        "scenario": "dm",
        "round_trips": a.round_trips,
        "body_len": a.body_len,
        "rtt": rtt.json(),
        "send_ack": ack.json(),
        "round_trips_per_s": round3((WARMUP + a.round_trips) as f64 / wall),
        "server_cores": round3(server_cores),
        "load1": procstat::loadavg(),
    });
    let rows = vec![
        Row::new("dm", "round trip p50", format!("{:.2} ms", rtt.quantile_ms(0.5))),
        Row::new("dm", "round trip p99", format!("{p99:.2} ms")).target("< 2 ms", p99 < 2.0),
        Row::new(
            "dm",
            "send -> durable ack p50 / p99",
            format!("{:.2} / {:.2} ms", ack.quantile_ms(0.5), ack.quantile_ms(0.99)),
        ),
    ];
    target.stop().await?;
    Ok((result, rows))
}
