//! The lean receive path of fan-out receivers: a session logged in with the real client's
//! handshake and `Resume` ([`classchat_wire::RawSession`]), whose frames are opened and
//! read on one task for just what the bench records (`seen`). The full client decodes every
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

use crate::conn;
use crate::load::{self, Recorder};
use crate::target::{Account, DEVICE};

/// How often a receiver acknowledges (as the real client).
const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// Logs `account` in with the real handshake and `Resume`, and reads until the catch-up
/// is over (as [`crate::conn::login`]).
pub async fn login(config: &ClientConfig, account: &mut Account) -> anyhow::Result<RawSession> {
    let mut session = RawSession::resume(config, &account.name, &account.token, DEVICE)
        .await
        .with_context(|| format!("{} could not resume", account.name))?;
    account.token.clone_from(&session.welcome.resume_token);
    loop {
        match session.reader.recv_with(seen).await? {
            Some(Seen::CaughtUp) => return Ok(session),
            Some(Seen::Ping(nonce)) => session.writer.send(&ClientMsg::Pong { nonce }).await?,
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
            msg = reader.recv_with(seen) => msg,
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
            Ok(Some(Seen::Delivery { id, stamp })) => {
                newest = newest.max(id);
                if let Some(stamp) = stamp {
                    rec.record_stamp(who, stamp);
                }
            }
            Ok(Some(Seen::Ping(nonce))) => {
                if writer.send(&ClientMsg::Pong { nonce }).await.is_err() {
                    break;
                }
            }
            Ok(Some(Seen::CaughtUp | Seen::Other)) => {}
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

/// What a receiver needs from one live message.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// `Event::Message`: its id (to acknowledge) and the stamp of a bench text.
    Delivery {
        id: u64,
        stamp: Option<(u32, u64)>,
    },
    Ping(u64),
    CaughtUp,
    Other,
}

/// Reads what [`receive`] needs straight from a message's MessagePack bytes (PROTOCOL.md
/// sections 6 and 7), the way the IRC receivers pick the text out of a line: serde's
/// decoder checks every field name and string as UTF-8 and walks every value, which was
/// a third of a receiver's time. Anything it does not expect is `Other`.
fn seen(bytes: &[u8]) -> Seen {
    let mut c = Cur { b: bytes, pos: 0 };
    c.seen().unwrap_or(Seen::Other)
}

/// A read position in one message.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    /// `{"event": {"event": {"message": {"message": {.., "id": n, .., "body": ..}}}}}` or
    /// `{"ping": {"nonce": n}}` (PROTOCOL.md section 6, the `msg_event_message` example).
    fn seen(&mut self) -> Option<Seen> {
        if self.map_len()? != 1 {
            return None;
        }
        match self.str()? {
            b"ping" => {
                let mut nonce = None;
                for _ in 0..self.map_len()? {
                    match self.str()? {
                        b"nonce" => nonce = Some(self.uint()?),
                        _ => self.skip()?,
                    }
                }
                nonce.map(Seen::Ping)
            }
            b"event" => {
                // `{"event": Event}`. Unit events are plain strings; a message is
                // `{"message": {"message": {..}}}`.
                if self.map_len()? != 1 || self.str()? != b"event" {
                    return Some(Seen::Other);
                }
                if self.b.get(self.pos).is_some_and(|m| matches!(m, 0xa0..=0xbf | 0xd9..=0xdb)) {
                    return Some(if self.str()? == b"caught_up" { Seen::CaughtUp } else { Seen::Other });
                }
                for _ in 0..2 {
                    if self.map_len()? != 1 || self.str()? != b"message" {
                        return Some(Seen::Other);
                    }
                }
                let (mut id, mut stamp) = (None, None);
                for _ in 0..self.map_len()? {
                    match self.str()? {
                        b"id" => id = Some(self.uint()?),
                        b"body" => stamp = self.text_stamp(),
                        _ => self.skip()?,
                    }
                }
                Some(Seen::Delivery { id: id?, stamp })
            }
            _ => Some(Seen::Other),
        }
    }

    /// A body: the stamp of `{"text": {"text": "b<step>:<ns>:…"}}`, else `None` (and the
    /// body skipped).
    fn text_stamp(&mut self) -> Option<(u32, u64)> {
        let start = self.pos;
        let found = (|| {
            if self.map_len()? != 1
                || self.str()? != b"text"
                || self.map_len()? != 1
                || self.str()? != b"text"
            {
                return None;
            }
            load::parse(self.str()?)
        })();
        if found.is_none() {
            self.pos = start;
            self.skip()?;
        }
        found
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let bytes = self.b.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(bytes.iter().fold(0, |v, &b| (v << 8) | u64::from(b)))
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => self.be(2).map(|n| n as usize),
            0xdf => self.be(4).map(|n| n as usize),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return None,
        };
        let s = self.b.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some(s)
    }

    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            m @ 0x00..=0x7f => Some(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    fn skip(&mut self) -> Option<()> {
        self.pos += classchat_wire::message::value_len(self.b.get(self.pos..)?).ok()?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use classchat_wire::{Body, ChatMessage, Conv, Event, ServerMsg, message};

    use super::{Seen, seen};

    fn delivery(id: u64, body: Body) -> Vec<u8> {
        let message = ChatMessage {
            id,
            conv: Conv::Room { name: "r0".into() },
            from: "u1".into(),
            ts: 1_767_225_600_000,
            body,
            reply_to: None,
            edited: None,
            reactions: Vec::new(),
        };
        message::encode(&ServerMsg::Event { event: Event::Message { message } }).expect("encode")
    }

    /// The hand reader agrees with the encoding the server sends, for every shape a
    /// receiver meets.
    #[test]
    fn seen_reads_what_the_server_encodes() {
        let text = crate::load::text(3, 64);
        let stamp = crate::load::parse(text.as_bytes());
        assert!(stamp.is_some());
        assert_eq!(
            seen(&delivery(1001, Body::Text { text: text.clone() })),
            Seen::Delivery { id: 1001, stamp }
        );
        assert_eq!(
            seen(&delivery(u64::MAX, Body::Text { text: "hello".into() })),
            Seen::Delivery { id: u64::MAX, stamp: None }
        );
        let opaque = Body::Opaque { data: vec![1, 2, 3] };
        assert_eq!(seen(&delivery(7, opaque)), Seen::Delivery { id: 7, stamp: None });
        let ping = message::encode(&ServerMsg::Ping { nonce: 70_000 }).expect("encode");
        assert_eq!(seen(&ping), Seen::Ping(70_000));
        let caught_up = message::encode(&ServerMsg::Event { event: Event::CaughtUp }).expect("encode");
        assert_eq!(seen(&caught_up), Seen::CaughtUp);
        let other =
            message::encode(&ServerMsg::Event { event: Event::Presence { user: "u2".into(), online: true } })
                .expect("encode");
        assert_eq!(seen(&other), Seen::Other);
        assert_eq!(seen(b"\xc1"), Seen::Other);
        let full = delivery(9, Body::Text { text });
        for cut in 0..full.len() {
            assert_ne!(seen(&full[..cut]), Seen::Delivery { id: 9, stamp }, "cut at {cut}");
        }
    }
}
