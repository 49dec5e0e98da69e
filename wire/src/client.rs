//! The async client used by the desktop app, the tests and the benchmark tool.
//!
//! [`Client::connect`] opens TCP, runs the handshake with the fingerprint check, and
//! spawns two tasks on the current tokio runtime: a reader that routes replies to their
//! requests and events to the returned channel, and a writer that batches outgoing frames.
//! The client answers server pings and acknowledges received messages by itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::connection::{Connection, SecureReader, SecureWriter};
use crate::crypto::ServerHello;
use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprint, KnownServers, Trust};
use crate::frame::MAX_FRAME_LEN;
use crate::message::{ClientMsg, Conv, Event, MessageId, Request, RequestId, Response, ServerMsg, Welcome};

/// Outgoing messages waiting for the writer task. A full queue makes callers wait.
const OUTGOING_QUEUE: usize = 1024;
/// Frames the writer seals before it writes them out in one go.
const WRITE_BATCH: usize = 64;
/// How often received messages are acknowledged.
const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// How the client decides whether to trust the server's key.
#[derive(Debug, Clone)]
pub enum TrustPolicy {
    /// Trust on first use: a key not in the store is [`Error::UnknownServer`], a different
    /// key is [`Error::ServerKeyChanged`]. The caller asks the user, calls
    /// [`KnownServers::trust`], and connects again.
    KnownServers(KnownServers),
    /// Accept exactly this key (e.g. from an invite link).
    Pinned(Fingerprint),
    /// Accept any key. For tests and load tools on loopback only.
    AnyKey,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port`; also the key in the known-servers store unless `known_as` says another.
    pub addr: String,
    /// The known-servers entry to check the key against (and the host named in trust
    /// errors) when it is not `addr`: the nodes of a server of several nodes share one key
    /// and are filed under one name, its invite's first address ([`crate::failover`]).
    pub known_as: Option<String>,
    pub trust: TrustPolicy,
    pub max_frame_len: usize,
    pub connect_timeout: Duration,
    /// Bounds the whole handshake: a silent or babbling server is an error, not a hang.
    pub handshake_timeout: Duration,
    /// How long a request waits for its reply.
    pub request_timeout: Duration,
    /// Silence from the server for this long closes the connection. The server pings
    /// idle connections well within it.
    pub idle_timeout: Duration,
    /// Events buffered for the application; when full, the reader waits (and the server
    /// eventually drops a client that never reads).
    pub event_buffer: usize,
    /// Local address to connect from (load tools spread over 127.0.0.0/8).
    pub bind: Option<SocketAddr>,
}

impl ClientConfig {
    pub fn new(addr: impl Into<String>, trust: TrustPolicy) -> Self {
        Self {
            addr: addr.into(),
            known_as: None,
            trust,
            max_frame_len: MAX_FRAME_LEN,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            event_buffer: 4096,
            bind: None,
        }
    }
}

type Pending = Mutex<HashMap<RequestId, oneshot::Sender<Result<Response>>>>;

struct Inner {
    tx: mpsc::Sender<ClientMsg>,
    pending: Pending,
    next_id: AtomicU32,
    acks: Mutex<HashMap<Conv, MessageId>>,
    /// Acknowledgements wait for `Event::CaughtUp`: live messages can overtake catch-up
    /// ones, and acking a newer id first would skip the older ones on the next login.
    caught_up: std::sync::atomic::AtomicBool,
    hello: ServerHello,
    fingerprint: Fingerprint,
    /// `Some(reason)` once the connection is over.
    closed: watch::Sender<Option<String>>,
    request_timeout: Duration,
    /// How to open bulk connections (file transfers) to the same server.
    bulk: ClientConfig,
}

/// A connected session. Cheap to clone; all clones share the connection, which closes
/// when the last clone is dropped ([`Client::close`] also flushes acknowledgements first).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Counts the application's handles. The reader task holds `inner` too (and answers
    /// pings through it), so without this a dropped client would stay connected forever.
    _open: Arc<CloseOnDrop>,
}

struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        mark_closed(&self.0, "client dropped".into());
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("server", &self.inner.hello.server_name).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, checks the server key and completes the handshake. Returns the client
    /// and the stream of events. Must be called inside a tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<(Client, mpsc::Receiver<Event>)> {
        let (reader, writer, hello, fingerprint) = open_session(&config).await?;

        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer.max(1));
        let inner = Arc::new(Inner {
            tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            acks: Mutex::new(HashMap::new()),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            hello,
            fingerprint,
            closed: watch::channel(None).0,
            request_timeout: config.request_timeout,
            // Bulk connections must reach the very server this session checked.
            bulk: ClientConfig { trust: TrustPolicy::Pinned(fingerprint), ..config.clone() },
        });
        tokio::spawn(write_loop(writer, rx, Arc::downgrade(&inner), inner.closed.subscribe()));
        tokio::spawn(read_loop(reader, Arc::clone(&inner), events_tx, config.idle_timeout));
        let open = Arc::new(CloseOnDrop(Arc::clone(&inner)));
        Ok((Client { inner, _open: open }, events_rx))
    }

    /// Sends a request and waits for its reply. An `Err` reply becomes [`Error::Server`].
    pub async fn request(&self, body: Request) -> Result<Response> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, tx);
        if let Some(reason) = self.close_reason() {
            lock(&self.inner.pending).remove(&id);
            return Err(Error::Closed(reason));
        }
        if self.inner.tx.send(ClientMsg::Request { id, body }).await.is_err() {
            lock(&self.inner.pending).remove(&id);
            return Err(Error::Closed(self.close_reason().unwrap_or_else(|| "writer stopped".into())));
        }
        match tokio::time::timeout(self.inner.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed(self.close_reason().unwrap_or_else(|| "connection lost".into()))),
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                Err(Error::Closed(format!("no reply within {:?}", self.inner.request_timeout)))
            }
        }
    }

    /// Tells the server the user is typing in `conv` (`ClientMsg::Typing`; no reply). The
    /// server passes on at most one per [`crate::TYPING_INTERVAL_MS`]; callers should not
    /// send more often either.
    pub async fn typing(&self, conv: Conv) -> Result<()> {
        self.inner
            .tx
            .send(ClientMsg::Typing { conv })
            .await
            .map_err(|_| Error::Closed(self.close_reason().unwrap_or_else(|| "writer stopped".into())))
    }

    /// A welcome, after telling a server that offers room records that this client takes
    /// them (PROTOCOL.md section 4.1; the reader opens them and installs their keys).
    async fn welcomed(&self, resp: Response) -> Result<Welcome> {
        let w = welcome(resp)?;
        if w.room_records {
            self.inner
                .tx
                .send(ClientMsg::RoomRecords {})
                .await
                .map_err(|_| Error::Closed(self.close_reason().unwrap_or_else(|| "writer stopped".into())))?;
        }
        Ok(w)
    }

    /// `Register`, returning the welcome.
    pub async fn register(&self, username: &str, auth_key: &[u8], device: &str) -> Result<Welcome> {
        self.welcomed(
            self.request(Request::Register {
                username: username.into(),
                auth_key: auth_key.to_vec(),
                device: device.into(),
            })
            .await?,
        )
        .await
    }

    /// `Login`, returning the welcome. Catch-up messages follow as events.
    pub async fn login(&self, username: &str, auth_key: &[u8], device: &str) -> Result<Welcome> {
        self.welcomed(
            self.request(Request::Login {
                username: username.into(),
                auth_key: auth_key.to_vec(),
                device: device.into(),
            })
            .await?,
        )
        .await
    }

    /// `Resume` with a token from an earlier welcome.
    pub async fn resume(&self, username: &str, token: &[u8], device: &str) -> Result<Welcome> {
        self.welcomed(
            self.request(Request::Resume {
                username: username.into(),
                token: token.to_vec(),
                device: device.into(),
            })
            .await?,
        )
        .await
    }

    /// Settings for a bulk connection to this client's server: the same address and
    /// timeouts, trusting exactly the key this session checked.
    pub fn bulk_config(&self) -> &ClientConfig {
        &self.inner.bulk
    }

    /// The hello the server sent (name, key, version).
    pub fn server_hello(&self) -> &ServerHello {
        &self.inner.hello
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.inner.fingerprint
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.inner.closed.borrow().clone()
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.borrow().is_some()
    }

    /// Resolves when the connection is over.
    pub async fn closed(&self) {
        wait_closed(&mut self.inner.closed.subscribe()).await;
    }

    /// Sends outstanding acknowledgements, then closes the connection cleanly.
    pub async fn close(&self) {
        flush_acks(&self.inner).await;
        mark_closed(&self.inner, "closed by client".into());
    }
}

/// A session opened with the client's own handshake and logged in with `Resume`, handed
/// over as its two halves instead of to the reader and writer tasks of a [`Client`].
///
/// For load tools that read many events: the halves skip the task hop, the owned decoding
/// and the acknowledgement bookkeeping that [`Client`] pays per event. Whoever holds them
/// answers pings and sends acknowledgements itself; the catch-up events and
/// [`Event::CaughtUp`] follow on `reader`.
#[derive(Debug)]
pub struct RawSession {
    pub reader: SecureReader<OwnedReadHalf>,
    pub writer: SecureWriter<OwnedWriteHalf>,
    pub welcome: Welcome,
}

impl RawSession {
    /// Connects (the trust check and timeouts of `config` apply, as for
    /// [`Client::connect`]) and resumes `username`'s session on `device` with `token`.
    pub async fn resume(config: &ClientConfig, username: &str, token: &[u8], device: &str) -> Result<Self> {
        let (mut reader, mut writer, _, _) = open_session(config).await?;
        const ID: RequestId = 1;
        let body =
            Request::Resume { username: username.into(), token: token.to_vec(), device: device.into() };
        writer.send(&ClientMsg::Request { id: ID, body }).await?;
        let reply = tokio::time::timeout(config.request_timeout, async {
            loop {
                match reader.recv::<ServerMsg>().await? {
                    Some(ServerMsg::Ok { id: ID, body }) => return welcome(body),
                    Some(ServerMsg::Err { id: ID, code, message }) => {
                        return Err(Error::Server { code, message });
                    }
                    Some(ServerMsg::Ping { nonce }) => writer.send(&ClientMsg::Pong { nonce }).await?,
                    Some(_) => {}
                    None => return Err(Error::Closed("server closed the connection".into())),
                }
            }
        })
        .await
        .map_err(|_| Error::Closed(format!("no reply within {:?}", config.request_timeout)))?;
        let welcome = reply?;
        if welcome.room_records {
            writer.send(&ClientMsg::RoomRecords {}).await?;
        }
        Ok(Self { reader, writer, welcome })
    }
}

/// The reader and writer of a new session: TCP, then the handshake with the trust check,
/// each bounded by its timeout. Used for the chat connection and for bulk connections.
pub(crate) async fn open_session(
    config: &ClientConfig,
) -> Result<(SecureReader<OwnedReadHalf>, SecureWriter<OwnedWriteHalf>, ServerHello, Fingerprint)> {
    let stream = tokio::time::timeout(config.connect_timeout, open_tcp(config))
        .await
        .map_err(|_| Error::ConnectTimeout(config.connect_timeout))??;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let conn = Connection::from_parts(r, w, config.max_frame_len);
    let host = config.known_as.clone().unwrap_or_else(|| config.addr.clone());
    let trust = config.trust.clone();
    let (secure, hello, fingerprint) = tokio::time::timeout(
        config.handshake_timeout,
        conn.connect(move |_, fp| check_trust(&trust, &host, fp)),
    )
    .await
    .map_err(|_| Error::HandshakeTimeout(config.handshake_timeout))??;
    let (reader, writer) = secure.split();
    Ok((reader, writer, hello, fingerprint))
}

fn welcome(resp: Response) -> Result<Welcome> {
    match resp {
        Response::Welcome(w) => Ok(w),
        other => Err(Error::Protocol(format!("expected welcome, got {other:?}"))),
    }
}

async fn open_tcp(config: &ClientConfig) -> Result<TcpStream> {
    let Some(bind) = config.bind else {
        return Ok(TcpStream::connect(&config.addr).await?);
    };
    let target: SocketAddr =
        tokio::net::lookup_host(&config.addr).await?.find(|a| a.is_ipv4() == bind.is_ipv4()).ok_or_else(
            || Error::Protocol(format!("{} has no address of the bind address's family", config.addr)),
        )?;
    let socket = if bind.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(bind)?;
    Ok(socket.connect(target).await?)
}

fn check_trust(trust: &TrustPolicy, host: &str, fp: &Fingerprint) -> Result<()> {
    match trust {
        TrustPolicy::AnyKey => Ok(()),
        TrustPolicy::Pinned(pin) if pin == fp => Ok(()),
        TrustPolicy::Pinned(pin) => {
            Err(Error::ServerKeyChanged { host: host.to_owned(), expected: *pin, actual: *fp })
        }
        TrustPolicy::KnownServers(store) => match store.check(host, fp) {
            Trust::Known => Ok(()),
            Trust::Unknown => Err(Error::UnknownServer { host: host.to_owned(), fingerprint: *fp }),
            Trust::Changed { expected } => {
                Err(Error::ServerKeyChanged { host: host.to_owned(), expected, actual: *fp })
            }
        },
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data that is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resolves once the connection is marked closed. Drops the watch guard before returning,
/// so callers stay `Send`.
async fn wait_closed(rx: &mut watch::Receiver<Option<String>>) {
    let _ = rx.wait_for(Option::is_some).await;
}

fn mark_closed(inner: &Inner, reason: String) {
    inner.closed.send_if_modified(|c| {
        if c.is_none() {
            *c = Some(reason);
            true
        } else {
            false
        }
    });
}

async fn flush_acks(inner: &Inner) {
    if !inner.caught_up.load(Ordering::Relaxed) {
        return;
    }
    let acks: Vec<_> = lock(&inner.acks).drain().collect();
    for (conv, up_to) in acks {
        if inner.tx.send(ClientMsg::Ack { conv, up_to }).await.is_err() {
            return;
        }
    }
}

async fn read_loop(
    mut reader: SecureReader<OwnedReadHalf>,
    inner: Arc<Inner>,
    events: mpsc::Sender<Event>,
    idle_timeout: Duration,
) {
    let mut closed = inner.closed.subscribe();
    let mut ack_tick = tokio::time::interval(ACK_INTERVAL);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One deadline, moved only when the server is heard from: a timeout around each
    // `recv` would restart on every acknowledgement tick and never fire.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let reason = loop {
        let msg = tokio::select! {
            msg = reader.recv::<ServerMsg>() => msg,
            () = &mut idle => break Some(format!("server silent for {idle_timeout:?}")),
            _ = ack_tick.tick() => {
                flush_acks(&inner).await;
                continue;
            }
            () = wait_closed(&mut closed) => break None,
        };
        idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
        match msg {
            Ok(None) => break Some("server closed the connection".into()),
            Err(e) => break Some(e.to_string()),
            Ok(Some(msg)) => match msg {
                // File bytes belong on bulk connections only.
                ServerMsg::Chunk { .. } => {
                    break Some("protocol violation: a chunk on the chat connection".into());
                }
                ServerMsg::Ok { id, body } => reply(&inner, id, Ok(body)),
                ServerMsg::Err { id, code, message } => {
                    reply(&inner, id, Err(Error::Server { code, message }))
                }
                ServerMsg::Ping { nonce } => {
                    if inner.tx.send(ClientMsg::Pong { nonce }).await.is_err() {
                        break Some("writer stopped".into());
                    }
                }
                ServerMsg::Event { event } => {
                    if let Event::Message { message } = &event {
                        // The conversation is cloned only the first time it is seen.
                        let mut acks = lock(&inner.acks);
                        match acks.get_mut(&message.conv) {
                            Some(e) => *e = (*e).max(message.id),
                            None => {
                                acks.insert(message.conv.clone(), message.id);
                            }
                        }
                    }
                    if matches!(event, Event::CaughtUp) {
                        inner.caught_up.store(true, Ordering::Relaxed);
                    }
                    let disconnect = match &event {
                        Event::Disconnect { reason } => Some(format!("server: {reason}")),
                        _ => None,
                    };
                    // The application stopped listening: keep serving replies anyway.
                    let _ = events.send(event).await;
                    if let Some(reason) = disconnect {
                        break Some(reason);
                    }
                }
            },
        }
    };
    if let Some(reason) = reason {
        tracing::debug!(%reason, "connection closed");
        mark_closed(&inner, reason);
    }
    let reason = inner.closed.borrow().clone().unwrap_or_default();
    for (_, tx) in lock(&inner.pending).drain() {
        let _ = tx.send(Err(Error::Closed(reason.clone())));
    }
}

fn reply(inner: &Inner, id: RequestId, result: Result<Response>) {
    if let Some(tx) = lock(&inner.pending).remove(&id) {
        let _ = tx.send(result);
    }
}

/// Seals one message into the writer's buffer. A request too large for a frame fails that
/// request alone: nothing was sealed and no sequence number used, so the session goes on.
fn queue(
    writer: &mut SecureWriter<OwnedWriteHalf>,
    msg: &ClientMsg,
    inner: &std::sync::Weak<Inner>,
) -> Result<()> {
    match (writer.queue(msg), msg) {
        (Err(Error::FrameTooLarge { size, max }), ClientMsg::Request { id, .. }) => {
            if let Some(inner) = inner.upgrade() {
                reply(&inner, *id, Err(Error::FrameTooLarge { size, max }));
            }
            Ok(())
        }
        (result, _) => result,
    }
}

async fn write_loop(
    mut writer: SecureWriter<OwnedWriteHalf>,
    mut rx: mpsc::Receiver<ClientMsg>,
    inner: std::sync::Weak<Inner>,
    mut closed: watch::Receiver<Option<String>>,
) {
    let result: Result<()> = async {
        loop {
            let first = tokio::select! {
                biased;
                msg = rx.recv() => msg,
                () = wait_closed(&mut closed) => None,
            };
            let Some(first) = first else { break };
            queue(&mut writer, &first, &inner)?;
            for _ in 1..WRITE_BATCH {
                match rx.try_recv() {
                    Ok(msg) => queue(&mut writer, &msg, &inner)?,
                    Err(_) => break,
                }
            }
            writer.flush().await?;
        }
        // Send whatever is still queued (e.g. final acks) before closing.
        while let Ok(msg) = rx.try_recv() {
            queue(&mut writer, &msg, &inner)?;
        }
        writer.shutdown().await
    }
    .await;
    if let Some(inner) = inner.upgrade() {
        mark_closed(
            &inner,
            match result {
                Ok(()) => "closed".into(),
                Err(e) => e.to_string(),
            },
        );
    }
}
