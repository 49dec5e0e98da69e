//! The lean receive path of fan-out receivers: a session logged in with the real client's
//! handshake and `Resume` ([`classchat_wire::RawSession`]), whose frames are opened and
//! decoded on one task into just what the bench records. The full client decodes every
//! event into owned strings, keeps acknowledgement bookkeeping under a mutex and hands each
//! event over a channel to another task: ~7 µs per delivery, as much as the server spends,
//! which capped what a 2-core box could measure.
//!
//! Receivers still behave like clients: they answer pings and acknowledge what they got
//! once a second, as [`classchat_wire::Client`] does.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use classchat_wire::{ClientConfig, ClientMsg, Conv, RawSession};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::conn;
use crate::load::{self, Recorder};
use crate::target::{Account, DEVICE};

/// How often a receiver acknowledges (as the real client).
const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// `ServerMsg` with only what a receiver needs; the rest is skipped without allocating.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Msg {
    Ok(IgnoredAny),
    Err(IgnoredAny),
    Event { event: Ev },
    Ping { nonce: u64 },
    Chunk(IgnoredAny),
}

/// `Event`, likewise.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ev {
    Message { message: Message },
    CaughtUp,
    Presence(IgnoredAny),
    RemovedFromRoom(IgnoredAny),
    Disconnect(IgnoredAny),
    KeyChanged(IgnoredAny),
    FileOffer(IgnoredAny),
    OfferAnswered(IgnoredAny),
}

/// `ChatMessage`: the id (to acknowledge) and the bench stamp of a text body.
#[derive(Deserialize)]
struct Message {
    id: u64,
    body: BodyStamp,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BodyStamp {
    Text { text: Stamp },
    Opaque(IgnoredAny),
    System(IgnoredAny),
    File(IgnoredAny),
}

/// A message text parsed in place into `(step, sent_ns)` (see [`load::text`]).
struct Stamp(Option<(u32, u64)>);

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Stamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a message text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Stamp, E> {
                Ok(Stamp(load::parse(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Logs `account` in with the real handshake and `Resume`, and reads until the catch-up
/// is over (as [`crate::conn::login`]).
pub async fn login(config: &ClientConfig, account: &mut Account) -> anyhow::Result<RawSession> {
    let mut session = RawSession::resume(config, &account.name, &account.token, DEVICE)
        .await
        .with_context(|| format!("{} could not resume", account.name))?;
    account.token.clone_from(&session.welcome.resume_token);
    loop {
        match session.reader.recv::<Msg>().await? {
            Some(Msg::Event { event: Ev::CaughtUp }) => return Ok(session),
            Some(Msg::Ping { nonce }) => session.writer.send(&ClientMsg::Pong { nonce }).await?,
            Some(_) => {}
            None => anyhow::bail!("{} was disconnected during catch-up", account.name),
        }
    }
}

/// Reads a caught-up `session` until it closes: records every delivery, answers pings,
/// and acknowledges `room` once a second. Counts itself in `rec.closed` when it ends.
pub async fn receive(who: usize, session: RawSession, room: String, rec: Arc<Recorder>) {
    let RawSession { mut reader, mut writer, .. } = session;
    let mut tick = tokio::time::interval(ACK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut newest, mut acked) = (0u64, 0u64);
    loop {
        // The reader first: while a frame's messages are being handed out it is ready at
        // once, and the tick's timer is only looked at when the reader has to wait.
        let msg = tokio::select! {
            biased;
            msg = reader.recv::<Msg>() => msg,
            _ = tick.tick() => {
                if newest > acked {
                    let ack = ClientMsg::Ack { conv: Conv::Room { name: room.clone() }, up_to: newest };
                    if writer.send(&ack).await.is_err() {
                        break;
                    }
                    acked = newest;
                }
                continue;
            }
        };
        match msg {
            Ok(Some(Msg::Event { event: Ev::Message { message } })) => {
                newest = newest.max(message.id);
                if let BodyStamp::Text { text: Stamp(Some(stamp)) } = message.body {
                    rec.record_stamp(who, stamp);
                }
            }
            Ok(Some(Msg::Ping { nonce })) => {
                if writer.send(&ClientMsg::Pong { nonce }).await.is_err() {
                    break;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    rec.closed.fetch_add(1, Ordering::Relaxed);
}

/// Logs every account in, `concurrency` at a time, each into a lean receiver of the room
/// `room(i)` (account `i`), updating their tokens. Returns once all are caught up.
pub async fn login_all(
    addr: &str,
    accounts: &mut [Account],
    first: usize,
    concurrency: usize,
    room: impl Fn(usize) -> String,
    rec: &Arc<Recorder>,
) -> anyhow::Result<()> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (k, account) in accounts.iter().enumerate() {
        let i = first + k;
        let (config, mut account, sem, rec, room) =
            (conn::client_config(addr, None, 1), account.clone(), sem.clone(), rec.clone(), room(i));
        tasks.spawn(async move {
            let session = {
                let _permit = sem.acquire_owned().await?;
                login(&config, &mut account).await?
            };
            tokio::spawn(receive(i, session, room, rec));
            anyhow::Ok((k, account))
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (k, account) = r??;
        accounts[k] = account;
    }
    Ok(())
}
