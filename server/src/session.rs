//! One client connection: handshake, login deadline, heartbeat, and the reader and
//! writer halves.
//!
//! The reader handles requests in order. The writer owns the receiving end of the
//! bounded outbound queue ([`crate::outbound`]) and seals what it drains in batches, so a
//! burst of deliveries costs one write.

use std::net::SocketAddr;
use std::time::Duration;

use classchat_wire::connection::{Connection, SecureReader, SecureWriter};
use classchat_wire::{ClientMsg, ErrorCode, Event, Request, ServerMsg};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
pub async fn serve(state: State, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let login_deadline = Instant::now() + state.config.login_timeout();
    let (r, w) = stream.into_split();
    let conn = Connection::from_parts(r, w, state.config.max_frame_len);
    let handshake =
        tokio::time::timeout_at(login_deadline, conn.accept(&state.key, &state.config.server_name));
    // A shutdown must not wait for a handshake that may never finish: without this, one
    // half-open connection held the drain for its full timeout.
    let handshake = tokio::select! {
        r = handshake => r,
        () = state.shutdown.cancelled() => {
            tracing::debug!(%addr, "shutting down during the handshake");
            return;
        }
    };
    let secure = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "handshake timed out");
            return;
        }
    };
    let (mut reader, writer) = secure.split();
    // A bulk connection (file transfer) says so in its first request.
    let first = tokio::select! {
        r = tokio::time::timeout_at(login_deadline, reader.recv::<ClientMsg>()) => r,
        () = state.shutdown.cancelled() => return,
    };
    let first = match first {
        Ok(Ok(Some(ClientMsg::Request {
            id,
            body: body @ (Request::AttachUpload { .. } | Request::AttachDownload { .. }),
        }))) => {
            // Boxed: unboxed, the transfer's state would be part of every chat connection's
            // task too (BENCHMARKS.md, connect).
            Box::pin(crate::files::serve_bulk(&state, reader, writer, id, body)).await;
            return;
        }
        Ok(Ok(Some(msg))) => Some(msg),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "bad first frame");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "nothing sent after the handshake");
            let mut writer = writer;
            let reason = "login did not complete in time".to_owned();
            let _ = writer.send(&ServerMsg::Event { event: Event::Disconnect { reason } }).await;
            let _ = writer.shutdown().await;
            return;
        }
    };
    let (tx, rx) = outbound::channel(state.config.outbound_queue);
    let kill = CancellationToken::new();
    let writer_task = tokio::spawn(write_loop(writer, rx, kill.clone()));
    let mut session =
        Session { id: state.next_session_id(), addr, user: None, device: String::new(), tx, kill };

    let outcome = read_loop(&state, &mut session, &mut reader, login_deadline, first).await;
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
    mut first: Option<ClientMsg>,
) -> End {
    let heartbeat = state.config.heartbeat_timeout();
    let ping_every = heartbeat / 3;
    let mut last_heard = Instant::now();
    let mut nonce = 0u64;
    loop {
        let logged_in = session.user.is_some();
        let msg = if let Some(msg) = first.take() {
            Ok(Some(msg))
        } else {
            tokio::select! {
            biased;
            () = session.kill.cancelled() => return End::Clean,
            () = state.shutdown.cancelled() => return End::Tell("the server is shutting down".into()),
            () = tokio::time::sleep_until(login_deadline), if !logged_in => {
                return End::Tell("login did not complete in time".into());
            }
            () = tokio::time::sleep(ping_every) => {
                if last_heard.elapsed() >= heartbeat {
                    return End::Tell(format!("no sign of life for {heartbeat:?}"));
                }
                nonce += 1;
                session.send(&ServerMsg::Ping { nonce });
                continue;
            }
            msg = reader.recv::<ClientMsg>() => msg,
            }
        };
        last_heard = Instant::now();
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => return End::Clean,
            // Bad MAC, bad padding, garbage, oversized frame, unknown message type: the
            // session is over, and the client is not told which.
            Err(e) => return End::Silent(format!("bad frame: {e}")),
        };
        match msg {
            ClientMsg::Pong { .. } => {}
            // File bytes belong on bulk connections only.
            ClientMsg::Chunk { .. } => return End::Silent("a chunk on a chat connection".into()),
            ClientMsg::Ack { conv, up_to } => handlers::messages::ack(state, session, conv, up_to).await,
            ClientMsg::Request { id, body } => {
                if state.shutdown.is_cancelled() {
                    session.reply(
                        id,
                        Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down")),
                    );
                    continue;
                }
                // Boxed (one allocation per request): unboxed, the largest handler's state
                // is part of every connection's task for its whole life, idle or not. This
                // took the task from 4,176 to 3,232 bytes (BENCHMARKS.md, connect).
                match Box::pin(handlers::dispatch(state, session, id, body)).await {
                    Reply::Now(result) => session.reply(id, result),
                    Reply::Later => {}
                    Reply::Close(result) => {
                        session.reply(id, result);
                        return End::Clean;
                    }
                }
            }
        }
    }
}

async fn write_loop(
    mut writer: SecureWriter<OwnedWriteHalf>,
    mut rx: outbound::Receiver<Outgoing>,
    kill: CancellationToken,
) {
    let result: classchat_wire::Result<()> = async {
        loop {
            let item = tokio::select! {
                biased;
                () = kill.cancelled() => return Ok(()),
                item = rx.recv() => item,
            };
            let Some(item) = item else { break };
            let mut closing = seal(&mut writer, item)?;
            if !closing {
                closing = drain(&mut writer, &mut rx)?;
            }
            // Write coalescing, the way an event loop flushes once per pass: before
            // writing, let every other runnable task run (the other writers of this
            // delivery round) and the I/O driver be polled once. A tokio `yield_now`
            // resumes only when the worker has nothing else to do, so on a busy server
            // the next commits' frames arrive meanwhile and this connection writes once
            // per round instead of once per frame; on an idle one it costs a poll.
            if !closing && writer.queued_len() < WRITE_BATCH_BYTES {
                tokio::select! {
                    biased;
                    () = kill.cancelled() => return Ok(()),
                    () = tokio::task::yield_now() => {}
                }
                closing = drain(&mut writer, &mut rx)?;
            }
            tokio::select! {
                biased;
                () = kill.cancelled() => return Ok(()),
                r = writer.flush() => r?,
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

/// Seals one queued item; `true` when it was the goodbye and nothing may follow.
fn seal(writer: &mut SecureWriter<OwnedWriteHalf>, item: Outgoing) -> classchat_wire::Result<bool> {
    match item {
        Outgoing::Frame(bytes) => writer.queue_encoded(&bytes).map(|()| false),
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
        if seal(writer, item)? {
            return Ok(true);
        }
    }
    Ok(false)
}
