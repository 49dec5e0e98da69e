//! The relay (PROTOCOL.md 17.6): two bulk connections attached to one ticket, one per
//! side, piped to each other once both are there. The server stores nothing: each
//! direction moves through one buffer of [`RELAY_BUFFER`] bytes. What it pipes is the
//! peers' own sealed session, which it cannot read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use classchat_wire::connection::{SecureReader, SecureWriter};
use classchat_wire::peer::RelaySide;
use classchat_wire::{ErrorCode, RequestId, Response, ServerMsg};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use super::TicketKey;
use crate::state::State;

/// How long the first end waits for the second.
const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);
/// Each direction's buffer: the most the server holds of a relayed connection per way.
pub const RELAY_BUFFER: usize = 256 * 1024;
/// A relay with no byte in either direction for this long is closed.
const RELAY_IDLE: Duration = Duration::from_secs(120);

type Reader = SecureReader<OwnedReadHalf>;
type Writer = SecureWriter<OwnedWriteHalf>;

/// One attached end.
pub struct End {
    id: RequestId,
    reader: Reader,
    writer: Writer,
}

type Handover = oneshot::Sender<(End, oneshot::Sender<()>)>;

/// First ends waiting for their partner, by ticket.
#[derive(Default)]
pub struct Pairing {
    waiting: Mutex<HashMap<TicketKey, Handover>>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairing").finish_non_exhaustive()
    }
}

impl Pairing {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TicketKey, Handover>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn refuse(mut writer: Writer, id: RequestId, message: &str) {
    let msg = ServerMsg::Err { id, code: ErrorCode::NoSuchTransfer, message: message.to_owned() };
    let _ = writer.send(&msg).await;
    let _ = writer.shutdown().await;
}

/// Serves a bulk connection whose first request was `attach_relay`.
pub async fn serve(
    state: &State,
    reader: Reader,
    writer: Writer,
    id: RequestId,
    ticket: Vec<u8>,
    side: RelaySide,
) {
    let Ok(key) = TicketKey::try_from(ticket.as_slice()) else {
        return refuse(writer, id, "a ticket is 32 bytes").await;
    };
    if !super::tickets::may_attach(state, &key, side) {
        return refuse(
            writer,
            id,
            "no relay was asked for with this ticket, or this side is attached already",
        )
        .await;
    }
    let me = End { id, reader, writer };
    let (tx, rx) = oneshot::channel();
    let partner = {
        let mut waiting = state.peers.relays.lock();
        match waiting.remove(&key) {
            Some(partner) => Some(partner),
            None => {
                waiting.insert(key, tx);
                None
            }
        }
    };
    if let Some(partner) = partner {
        // The first end pipes both; this task stays until it is done, so the connection's
        // permit is held for as long as the connection is.
        let (done_tx, done_rx) = oneshot::channel();
        if partner.send((me, done_tx)).is_ok() {
            let _ = done_rx.await;
        }
        return;
    }
    let got = tokio::select! {
        r = tokio::time::timeout(PAIRING_TIMEOUT, rx) => r,
        () = state.shutdown.cancelled() => {
            state.peers.relays.lock().remove(&key);
            return;
        }
    };
    state.peers.relays.lock().remove(&key);
    match got {
        Ok(Ok((other, done))) => {
            if let Err(e) = pipe(state, me, other).await {
                tracing::debug!(error = %e, "relay ended");
            }
            let _ = done.send(());
        }
        _ => refuse(me.writer, id, "the other peer did not reach the relay in time").await,
    }
}

/// Tells both ends they are paired, then pipes their raw bytes until both directions end.
async fn pipe(state: &State, mut a: End, mut b: End) -> classchat_wire::Result<()> {
    a.writer.send(&ServerMsg::Ok { id: a.id, body: Response::Done }).await?;
    b.writer.send(&ServerMsg::Ok { id: b.id, body: Response::Done }).await?;
    let (ra, rest_a) = a.reader.into_raw()?;
    let (rb, rest_b) = b.reader.into_raw()?;
    let (wa, wb) = (a.writer.into_inner()?, b.writer.into_inner()?);
    let start = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let a_to_b = copy(state, ra, rest_a, wb, start, &last);
    let b_to_a = copy(state, rb, rest_b, wa, start, &last);
    tokio::select! {
        r = async { tokio::try_join!(a_to_b, b_to_a) } => r.map(|_| ()).map_err(Into::into),
        () = state.shutdown.cancelled() => Ok(()),
    }
}

/// One direction: `rest` (read past the attach) first, then the stream, until its end.
/// `last` is when either direction last moved a byte (ms after `start`): one direction is
/// silent for a whole transfer, so only silence both ways for [`RELAY_IDLE`] ends it.
async fn copy<R, W>(
    state: &State,
    mut from: R,
    rest: BytesMut,
    mut to: W,
    start: tokio::time::Instant,
    last: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !rest.is_empty() {
        to.write_all(&rest).await?;
        state.peers.traffic.add_relayed(rest.len() as u64);
    }
    let mut buf = vec![0u8; RELAY_BUFFER];
    loop {
        let n = match tokio::time::timeout(RELAY_IDLE, from.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                let quiet = (start.elapsed().as_millis() as u64).saturating_sub(last.load(Ordering::Relaxed));
                if quiet >= RELAY_IDLE.as_millis() as u64 {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "relay idle"));
                }
                continue;
            }
        };
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        state.peers.traffic.add_relayed(n as u64);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}
