//! One client connection: handshake, login deadline, heartbeat, and the reader and
//! writer halves.
//!
//! The reader handles requests in order. The writer owns the receiving end of the
//! bounded outbound queue ([`crate::outbound`]) and seals what it drains in batches, so a
//! burst of deliveries costs one write.
//!
//! Every idle connection keeps two task futures for its whole life (`serve` and
//! `write_loop`), so their sizes are per-connection memory: the test `future_sizes`
//! prints them, and the comments below say what was done to keep them small.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use classchat_wire::connection::{Connection, SecureReader, SecureWriter};
use classchat_wire::{ClientMsg, ErrorCode, Event, Request, ServerMsg};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gate::Ticket;
use crate::handlers::{self, ApiError, Reply};
use crate::outbound;
use crate::state::{Lc, Outgoing, SessionId, State};

/// Sealed bytes the writer gathers before it writes them out together. Bounds the
/// writer's buffer (which keeps its capacity; see BENCHMARKS.md, connect) while letting
/// one `write` carry ~150 typical deliveries of ~210 bytes. One frame may take it past
/// this by at most `max_frame_len`.
const WRITE_BATCH_BYTES: usize = 32 * 1024;

/// Per-connection state owned by the reader.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub addr: SocketAddr,
    /// Set once logged in.
    pub user: Option<Lc>,
    pub device: String,
    pub tx: outbound::Sender<Outgoing>,
    pub kill: CancellationToken,
    /// The connection's place at the gate; `log_in` once logged in.
    pub ticket: Ticket,
}

impl Session {
    /// Queues a reply or event for this connection. A full queue means the client is not
    /// reading: it is cut off.
    pub fn send(&self, msg: &ServerMsg) {
        if let Some(frame) = State::encode(msg)
            && self.tx.try_send(Outgoing::Frame(frame)).is_err()
        {
            self.kill.cancel();
        }
    }

    /// Queues with back-pressure (for bulk sends such as the login catch-up).
    pub async fn send_wait(&self, msg: &ServerMsg) -> bool {
        match State::encode(msg) {
            Some(frame) => self.tx.send_wait(Outgoing::Frame(frame)).await.is_ok(),
            None => true,
        }
    }

    pub fn reply(&self, id: u32, result: Result<classchat_wire::Response, ApiError>) {
        self.send(&match result {
            Ok(body) => ServerMsg::Ok { id, body },
            Err(e) => ServerMsg::Err { id, code: e.code, message: e.message },
        });
    }
}

/// Serves one accepted connection to the end.
pub async fn serve(state: State, stream: TcpStream, addr: SocketAddr, mut ticket: Ticket) {
    let login_deadline = Instant::now() + state.config.login_timeout();
    // Boxed (one allocation, freed once the connection is set up): the handshake's state
    // is larger than everything that follows, and unboxed it stayed part of the
    // connection's task for its whole life (the handshake's result alone, 1,392 bytes).
    let Some((mut reader, writer, first)) =
        Box::pin(establish(&state, stream, addr, login_deadline, &mut ticket)).await
    else {
        return;
    };
    let (tx, rx) = outbound::channel(state.config.outbound_queue);
    // The gate's eviction token is the kill switch: an eviction before login ends the
    // connection like any other kill.
    let kill = ticket.token();
    let writer_task = tokio::spawn(write_loop(writer, rx, kill.clone()));
    let mut session =
        Session { id: state.next_session_id(), addr, user: None, device: String::new(), tx, kill, ticket };

    let outcome = match handle(&state, &mut session, first).await {
        Some(end) => end,
        None => read_loop(&state, &mut session, &mut reader, login_deadline).await,
    };
    match &outcome {
        End::Clean => tracing::debug!(%addr, user = ?session.user, "connection closed"),
        End::Tell(reason) | End::Silent(reason) => {
            tracing::info!(%addr, user = ?session.user, %reason, "connection dropped")
        }
    }
    handlers::account::end_session(&state, &session);
    // Its cursors go to the store now, not at the next tick (a login reads the pending
    // ones as well until they are committed). At shutdown the server writes all at once.
    if let Some(user) = &session.user
        && !state.shutdown.is_cancelled()
    {
        crate::cursors::flush(&state, Some((user, &session.device))).await;
    }
    match outcome {
        // Tell the client why, if it is still listening; then let the writer drain.
        End::Tell(reason) => {
            let _ = session.tx.try_send(Outgoing::Close(reason));
        }
        // A broken frame is not explained: no oracle for whoever forged it.
        End::Silent(_) => session.kill.cancel(),
        End::Clean => {}
    }
    let kill = session.kill.clone();
    drop(session);
    // The writer ends when its queue is drained and closed, or at once when killed.
    if tokio::time::timeout(Duration::from_secs(5), writer_task).await.is_err() {
        kill.cancel();
    }
}

/// The handshake and the first message, which must come before `login_deadline`.
/// `None` when the connection ended there, or was a bulk transfer (served to its end here).
async fn establish(
    state: &State,
    stream: TcpStream,
    addr: SocketAddr,
    login_deadline: Instant,
    ticket: &mut Ticket,
) -> Option<(SecureReader<OwnedReadHalf>, SecureWriter<OwnedWriteHalf>, ClientMsg)> {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let conn = Connection::from_parts(r, w, state.config.max_frame_len);
    let handshake_deadline = login_deadline.min(Instant::now() + state.config.handshake_timeout());
    // A peer that sent its key exchange is past the stage where idle and trickling
    // connections sit, so those give way before it (see `crate::gate`).
    let handshake = tokio::time::timeout_at(
        handshake_deadline,
        conn.accept_with(&state.key, &state.config.server_name, || ticket.handshake_done()),
    );
    let evicted = ticket.evicted();
    tokio::pin!(evicted);
    // A shutdown must not wait for a handshake that may never finish: without this, one
    // half-open connection held the drain for its full timeout. Biased towards the
    // handshake: an eviction that lands while the peer's key exchange is already waiting
    // loses to it, and the connection takes its place back below.
    let handshake = tokio::select! {
        biased;
        r = handshake => r,
        () = state.shutdown.cancelled() => {
            tracing::debug!(%addr, "shutting down during the handshake");
            return None;
        }
        () = &mut evicted => {
            tracing::debug!(%addr, "closed during the handshake to admit a newer connection");
            return None;
        }
    };
    let secure = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%addr, "handshake timed out");
            return None;
        }
    };
    if ticket.is_evicted() {
        if !ticket.readmit() {
            return None;
        }
        evicted.set(ticket.evicted());
    }
    let (mut reader, writer) = secure.split();
    // A bulk connection (file transfer) says so in its first request.
    let first = tokio::select! {
        r = tokio::time::timeout_at(login_deadline, reader.recv::<ClientMsg>()) => r,
        () = state.shutdown.cancelled() => return None,
        () = &mut evicted => return None,
    };
    let first = match first {
        Ok(Ok(Some(ClientMsg::Request {
            id,
            body:
                body @ (Request::AttachUpload { .. }
                | Request::AttachDownload { .. }
                | Request::AttachRelay { .. }),
        }))) => {
            // A transfer's token is its login: it stays for as long as the transfer runs.
            // A bad token ends the connection in `serve_bulk` at once.
            if !ticket.log_in() {
                return None;
            }
            // Boxed: unboxed, the transfer's state would be part of every chat connection's
            // handshake too.
            match body {
                Request::AttachRelay { ticket, side } => {
                    Box::pin(crate::peer::relay::serve(state, reader, writer, id, ticket, side)).await;
                }
                body => Box::pin(crate::files::serve_bulk(state, reader, writer, id, body)).await,
            }
            return None;
        }
        Ok(Ok(Some(msg))) => msg,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "bad first frame");
            return None;
        }
        Err(_) => {
            tracing::debug!(%addr, "nothing sent after the handshake");
            let mut writer = writer;
            let reason = "login did not complete in time".to_owned();
            let _ = writer.send(&ServerMsg::Event { event: Event::Disconnect { reason } }).await;
            let _ = writer.shutdown().await;
            return None;
        }
    };
    Some((reader, writer, first))
}

/// How a connection ended.
enum End {
    Clean,
    /// Said to the client in a `Disconnect` event.
    Tell(String),
    /// Logged only.
    Silent(String),
}

async fn read_loop(
    state: &State,
    session: &mut Session,
    reader: &mut SecureReader<OwnedReadHalf>,
    login_deadline: Instant,
) -> End {
    let heartbeat = state.config.heartbeat_timeout();
    let ping_every = heartbeat / 3;
    let mut last_heard = Instant::now();
    let mut last_ping = last_heard;
    let mut nonce = 0u64;
    // One timer for the ping tick and the login deadline, pinned once and re-armed when
    // it fires, not at every message: the `select!` used to hold two new `Sleep`s (112
    // bytes each, part of the idle task), registered and dropped for every message.
    let mut timer = pin!(tokio::time::sleep_until(login_deadline.min(last_heard + ping_every)));
    loop {
        let msg = tokio::select! {
            biased;
            () = session.kill.cancelled() => return End::Clean,
            () = state.shutdown.cancelled() => return End::Tell("the server is shutting down".into()),
            () = &mut timer => {
                let now = Instant::now();
                let logged_in = session.user.is_some();
                if !logged_in && now >= login_deadline {
                    return End::Tell("login did not complete in time".into());
                }
                // A ping goes out after `ping_every` without a word from the client or a
                // ping; at such a tick, `heartbeat` of silence ends the connection.
                let mut next_ping = last_heard.max(last_ping) + ping_every;
                if now >= next_ping {
                    if now.duration_since(last_heard) >= heartbeat {
                        return End::Tell(format!("no sign of life for {heartbeat:?}"));
                    }
                    nonce += 1;
                    session.send(&ServerMsg::Ping { nonce });
                    last_ping = now;
                    next_ping = now + ping_every;
                }
                timer.as_mut().reset(if logged_in { next_ping } else { next_ping.min(login_deadline) });
                continue;
            }
            // Matched here, where the read's result goes out of scope at once: matched
            // after the `select!`, it stayed part of the future across the handling.
            msg = reader.recv::<ClientMsg>() => match msg {
                Ok(Some(m)) => m,
                Ok(None) => return End::Clean,
                // Bad MAC, bad padding, garbage, oversized frame, unknown message type:
                // the session is over, and the client is not told which.
                Err(e) => return End::Silent(format!("bad frame: {e}")),
            },
        };
        last_heard = Instant::now();
        // Not inline: a message's handling and the idle `select!` take turns in the
        // future's memory instead of both being part of it.
        if let Some(end) = handle(state, session, msg).await {
            return end;
        }
    }
}

/// Handles one message from the client; `Some` when the connection is to end. Not an
/// `async fn`, which would keep `msg` twice (see [`write_loop`]).
#[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
fn handle(state: &State, session: &mut Session, msg: ClientMsg) -> impl Future<Output = Option<End>> {
    async move {
        match msg {
            ClientMsg::Pong { .. } => {}
            // Queued, so every room record after it in this connection's queue is sent as
            // one, and none before it.
            ClientMsg::RoomRecords {} => {
                if state.config.room_records && session.user.is_some() {
                    let _ = session.tx.try_send(Outgoing::TakeRoomRecords);
                }
            }
            ClientMsg::Typing { conv } => handlers::rich::typing(state, session, conv),
            // File bytes belong on bulk connections only.
            ClientMsg::Chunk { .. } => return Some(End::Silent("a chunk on a chat connection".into())),
            ClientMsg::Ack { conv, up_to } => handlers::messages::ack(state, session, conv, up_to).await,
            ClientMsg::Request { id, body } => {
                if state.shutdown.is_cancelled() {
                    session.reply(
                        id,
                        Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down")),
                    );
                    return None;
                }
                // Boxed (one allocation per request): unboxed, the largest handler's
                // state is part of every connection's task for its whole life, idle or
                // not. This took the task from 4,176 to 3,232 bytes (BENCHMARKS.md,
                // connect).
                match Box::pin(handlers::dispatch(state, session, id, body)).await {
                    Reply::Now(result) => session.reply(id, result),
                    Reply::Later => {}
                    Reply::Close(result) => {
                        session.reply(id, result);
                        return Some(End::Clean);
                    }
                }
            }
        }
        None
    }
}

/// The writer task. Not an `async fn`: those keep their arguments twice in the future
/// (as arguments, and as the locals they are moved into), and the `SecureWriter` is 704
/// bytes. An `async move` block keeps what it captures once.
#[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
fn write_loop(
    mut writer: SecureWriter<OwnedWriteHalf>,
    mut rx: outbound::Receiver<Outgoing>,
    kill: CancellationToken,
) -> impl Future<Output = ()> {
    async move {
        // One wait on the kill token for the writer's life: it registers with the token
        // once, where a `kill.cancelled()` per park registered and unregistered every time
        // (its `Notified` poll and drop were 2.4% of the server's CPU with 5,000 in 50
        // rooms, where every delivery is a park).
        let mut cancelled = pin!(kill.clone().cancelled_owned());
        let result: classchat_wire::Result<()> = async {
            loop {
                // The queue and the socket are polled before `kill`: only a writer that has
                // to wait polls the token.
                let item = tokio::select! {
                    biased;
                    item = rx.recv() => item,
                    () = cancelled.as_mut() => return Ok(()),
                };
                let Some(item) = item else { break };
                // One allocation for what was taken with this item, not a buffer grown by
                // doubling (a `realloc` and a copy per step) for every round. The buffer is let
                // go again at the flush (see `SecureWriter::flush`), so the next round's
                // allocation is likely the block another writer on this worker just freed,
                // still in the cache: keeping 1,000 busy writers' buffers instead measured no
                // faster.
                let taken: usize = rx.taken().map(Outgoing::encoded_len).sum();
                writer.reserve((item.encoded_len() + taken).min(WRITE_BATCH_BYTES));
                // Alone: nothing else was taken with it, so it would be a frame of its own
                // anyway, and a room record spares sealing it for this connection.
                let alone = rx.taken().next().is_none();
                let mut closing = seal(&mut writer, item, alone)?;
                if !closing {
                    closing = drain(&mut writer, &mut rx)?;
                }
                // Write coalescing, the way an event loop flushes once per pass: before
                // writing, let every other runnable task run (the other writers of this
                // delivery round) and the I/O driver be polled once. A tokio `yield_now`
                // resumes only when the worker has nothing else to do, so on a busy server
                // the next commits' frames arrive meanwhile and this connection writes once
                // per round instead of once per frame; on an idle one it costs a poll.
                // A kill that lands meanwhile is seen by the flush's `select!` if the
                // socket makes it wait; otherwise this round's frames still go out, which
                // is harmless. (Asking the token, which locks its node, was 2.7% of the
                // server's CPU with 1,000 in a room.)
                if !closing && writer.queued_len() < WRITE_BATCH_BYTES {
                    tokio::task::yield_now().await;
                    closing = drain(&mut writer, &mut rx)?;
                }
                tokio::select! {
                    biased;
                    r = writer.flush() => r?,
                    () = cancelled.as_mut() => return Ok(()),
                }
                if closing {
                    break;
                }
            }
            writer.shutdown().await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "writer stopped");
        }
        // Stops the reader too, whichever side ended first.
        kill.cancel();
    }
}

/// Seals one queued item; `true` when it was the goodbye and nothing may follow.
///
/// A room's message goes as its room record (PROTOCOL.md section 4.1) when it is `alone`,
/// the only item of this round so far: then it would travel in a frame of its own anyway,
/// and the record costs this connection a tag instead of an encryption. With other items
/// it joins their frame as plaintext: one frame for many deliveries costs the server less
/// than a tag for each, and the client far less than opening each (BENCHMARKS.md, "Room
/// records"). Either way the client gets the same messages in the same order.
fn seal(
    writer: &mut SecureWriter<OwnedWriteHalf>,
    item: Outgoing,
    alone: bool,
) -> classchat_wire::Result<bool> {
    match item {
        Outgoing::Frame(bytes) => writer.queue_encoded(&bytes).map(|()| false),
        Outgoing::Room(record) if alone => writer.queue_room(&record).map(|()| false),
        Outgoing::Room(record) => writer.queue_encoded(record.plaintext()).map(|()| false),
        Outgoing::TakeRoomRecords => {
            writer.take_room_records();
            Ok(false)
        }
        Outgoing::Close(reason) => {
            writer.queue(&ServerMsg::Event { event: Event::Disconnect { reason } })?;
            Ok(true)
        }
    }
}

/// Seals what is already queued, up to [`WRITE_BATCH_BYTES`]; `true` after a goodbye.
fn drain(
    writer: &mut SecureWriter<OwnedWriteHalf>,
    rx: &mut outbound::Receiver<Outgoing>,
) -> classchat_wire::Result<bool> {
    while writer.queued_len() < WRITE_BATCH_BYTES {
        let Some(item) = rx.try_recv() else { break };
        if seal(writer, item, false)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Size of the future `f` returns, without making one (the arguments would need a
    /// live connection).
    fn future_size<A, B, C, D, F: Future>(_: &impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle connection keeps its `serve` future (its task, holding `read_loop`'s)
    /// and its writer's for its whole life, so these are per-connection memory
    /// (BENCHMARKS.md, connect). The limits leave room for compiler changes; a step past
    /// them means something large became part of an idle connection again.
    #[test]
    fn future_sizes() {
        let serve = future_size(&|s: State, t: TcpStream, a: SocketAddr, k: Ticket| serve(s, t, a, k));
        let read = future_size(&|s: &'static State,
                                 sess: &'static mut Session,
                                 r: &'static mut SecureReader<OwnedReadHalf>,
                                 d| { read_loop(s, sess, r, d) });
        let write = future_size(&|w: SecureWriter<OwnedWriteHalf>,
                                  rx: outbound::Receiver<Outgoing>,
                                  k: CancellationToken,
                                  (): ()| { write_loop(w, rx, k) });
        eprintln!("serve {serve} B, read_loop {read} B, write_loop {write} B");
        assert!(serve <= 2304, "serve's future is {serve} bytes");
        assert!(write <= 1152, "write_loop's future is {write} bytes");
    }
}
