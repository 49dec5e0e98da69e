//! The sharer: listens for peers, answers searches from the [`SharedIndex`], accepts the
//! server's tickets once each, and serves files within its upload limit.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::channel::{self, RecordOpener, RecordSealer};
use super::fetch::Route;
use super::handshake::SharerHandshake;
use super::index::{SharedEntry, SharedIndex};
use super::proto::{
    MAX_LISTEN_ADDRS, PEER_RECORD_LEN, PeerChallenge, PeerHello, PeerKey, PeerListener, PeerMsg, PeerRefusal,
    RelaySide, SearchId, SearchQuery, TICKET_LEN, TICKET_LIFETIME_MS,
};
use super::relay::open_relay;
use super::{PeerError, lookup_key};
use crate::client::Client;
use crate::crypto::Role;
use crate::e2e::Identity;
use crate::error::{Error, Result};
use crate::message::{Event, Request};

/// Handshakes (and transfers) a sharer runs at once; more connections wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// How long a peer has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tickets remembered (pending and used, until they expire); the oldest go first.
const MAX_TICKETS: usize = 1024;
/// Sealed records waiting between the file-reading thread and the socket (4 × 1 MiB).
const PIPELINE_DEPTH: usize = 4;
/// Events waiting for the app; progress events are dropped when it is full.
const EVENT_BUFFER: usize = 256;
/// How long an unknown ticket is given to arrive from the server before it is refused.
const TICKET_WAIT: Duration = Duration::from_secs(2);
/// How long a stopped upload may take to tell the asker before its connection is cut.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Id of one upload, for [`Sharer::stop_upload`].
pub type UploadId = u64;

/// How a sharer runs.
#[derive(Debug, Clone)]
pub struct SharerConfig {
    /// The user's name, as logged in.
    pub username: String,
    /// The user's identity key: the private half of what the key directory lists.
    pub identity: Identity,
    /// Where to listen. Default `0.0.0.0:0` (every interface, an ephemeral port).
    pub listen: SocketAddr,
    /// The addresses to register besides the one the server sees. `None`: the machine's
    /// interface addresses, loopback and IPv6 link-local left out.
    pub advertise: Option<Vec<IpAddr>>,
    /// Uploads at once; one more is refused as busy. Default 3.
    pub max_uploads: usize,
    /// An upload the asker stops reading for this long ends. Default 30 s.
    pub stall_timeout: Duration,
}

impl SharerConfig {
    pub fn new(username: impl Into<String>, identity: Identity) -> Self {
        Self {
            username: username.into(),
            identity,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            advertise: None,
            max_uploads: 3,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub id: UploadId,
    /// Who is fetching.
    pub asker: String,
    pub name: String,
    pub size: u64,
    /// Where the asker resumed from.
    pub offset: u64,
    /// Bytes of content sent so far (from `offset`).
    pub sent: u64,
    pub route: Route,
}

/// What the sharer tells the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharerEvent {
    /// "ada is fetching lab3.csv from you".
    Started(UploadInfo),
    /// More was sent (at most one event per record; dropped when the app lags).
    Progress { id: UploadId, sent: u64 },
    /// The upload ended: `Ok` when every byte was sent, else why not.
    Finished { id: UploadId, result: Result<(), String> },
    /// A peer was turned away before any content (busy, bad ticket, bad identity…).
    Refused { asker: String, code: PeerRefusal },
}

struct Ticket {
    asker: String,
    sha256: Vec<u8>,
    expires: Instant,
    used: bool,
}

struct Active {
    info: UploadInfo,
    stop: CancellationToken,
}

struct Shared {
    client: Client,
    config: SharerConfig,
    index: SharedIndex,
    max_uploads: AtomicUsize,
    tickets: Mutex<HashMap<Vec<u8>, Ticket>>,
    active: Mutex<HashMap<UploadId, Active>>,
    next_id: AtomicU64,
    events: mpsc::Sender<SharerEvent>,
    shutdown: CancellationToken,
    port: u16,
    ticket_added: tokio::sync::Notify,
}

/// A running sharer. Cheap to clone; [`Sharer::stop`] ends it.
#[derive(Clone)]
pub struct Sharer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sharer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharer").field("port", &self.shared.port).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sharer {
    /// Binds the listener, registers it with the server (`set_sharing`) and starts
    /// accepting peers. The index's own switch still decides what is answered and served.
    pub async fn start(
        client: Client,
        index: SharedIndex,
        config: SharerConfig,
    ) -> Result<(Sharer, mpsc::Receiver<SharerEvent>)> {
        let listener = TcpListener::bind(config.listen).await?;
        let port = listener.local_addr()?.port();
        let addrs = match &config.advertise {
            Some(a) => a.clone(),
            None => interface_addresses(),
        };
        let addrs = addrs.into_iter().take(MAX_LISTEN_ADDRS).map(|a| a.to_string()).collect();
        client.request(Request::SetSharing { listener: Some(PeerListener { port, addrs }) }).await?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            client,
            max_uploads: AtomicUsize::new(config.max_uploads),
            config,
            index,
            tickets: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            events: tx,
            shutdown: CancellationToken::new(),
            port,
            ticket_added: tokio::sync::Notify::new(),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        Ok((Sharer { shared }, rx))
    }

    /// The port peers connect to.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Changes the upload limit (running uploads are not stopped).
    pub fn set_max_uploads(&self, n: usize) {
        self.shared.max_uploads.store(n.max(1), Ordering::Relaxed);
    }

    /// Handles the peer events of the chat connection: answers `search_request`, accepts
    /// `fetch_request` tickets, serves `relay_request`. Returns `true` for those (the app
    /// need not show them), `false` for every other event. Never waits: the work runs in
    /// tasks of the current runtime.
    pub fn handle_event(&self, event: &Event) -> bool {
        if self.shared.shutdown.is_cancelled() {
            return false;
        }
        match event {
            Event::SearchRequest { search, query, .. } => {
                self.answer(*search, query);
                true
            }
            Event::FetchRequest { ticket, asker, sha256, expires_in_ms, .. } => {
                self.accept_ticket(ticket, asker, sha256, *expires_in_ms);
                true
            }
            Event::RelayRequest { ticket } => {
                let shared = Arc::clone(&self.shared);
                let ticket = ticket.clone();
                tokio::spawn(async move {
                    match open_relay(shared.client.bulk_config(), &ticket, RelaySide::Sharer).await {
                        Ok((r, w)) => serve_peer(shared, r, w, Route::Relayed).await,
                        Err(e) => tracing::debug!(error = %e, "could not join the relay"),
                    }
                });
                true
            }
            _ => false,
        }
    }

    fn answer(&self, search: SearchId, query: &SearchQuery) {
        let busy = self.busy();
        let files = self.shared.index.search(query, busy);
        // Nothing to report: no answer at all, so the asker learns nothing of this user.
        if files.is_empty() {
            return;
        }
        let client = self.shared.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.request(Request::AnswerSearch { search, files }).await {
                tracing::debug!(error = %e, "search answer refused");
            }
        });
    }

    fn accept_ticket(&self, ticket: &[u8], asker: &str, sha256: &[u8], expires_in_ms: u32) {
        if ticket.len() != TICKET_LEN {
            return;
        }
        let now = Instant::now();
        let mut tickets = lock(&self.shared.tickets);
        tickets.retain(|_, t| t.expires > now);
        if tickets.len() >= MAX_TICKETS {
            // The one expiring first goes.
            if let Some(oldest) = tickets.iter().min_by_key(|(_, t)| t.expires).map(|(k, _)| k.clone()) {
                tickets.remove(&oldest);
            }
        }
        tickets.entry(ticket.to_vec()).or_insert(Ticket {
            asker: asker.to_owned(),
            sha256: sha256.to_vec(),
            // The server's lifetime, but never longer than the protocol's.
            expires: now + Duration::from_millis(u64::from(expires_in_ms.min(TICKET_LIFETIME_MS))),
            used: false,
        });
        drop(tickets);
        self.shared.ticket_added.notify_waiters();
    }

    /// Whether the upload limit is reached.
    pub fn busy(&self) -> bool {
        lock(&self.shared.active).len() >= self.shared.max_uploads.load(Ordering::Relaxed)
    }

    /// The uploads running now.
    pub fn uploads(&self) -> Vec<UploadInfo> {
        let mut v: Vec<_> = lock(&self.shared.active).values().map(|a| a.info.clone()).collect();
        v.sort_by_key(|u| u.id);
        v
    }

    /// Stops an upload; the asker is told [`PeerRefusal::Stopped`]. `false` if no such
    /// upload runs.
    pub fn stop_upload(&self, id: UploadId) -> bool {
        match lock(&self.shared.active).get(&id) {
            Some(a) => {
                a.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Turns sharing off: tells the server (`set_sharing` with no listener), closes the
    /// listener and stops every upload.
    pub async fn stop(&self) -> Result<()> {
        self.shared.shutdown.cancel();
        for a in lock(&self.shared.active).values() {
            a.stop.cancel();
        }
        self.shared.client.request(Request::SetSharing { listener: None }).await?;
        Ok(())
    }
}

/// The machine's addresses worth registering: not loopback, not IPv6 link-local (which
/// needs an interface to mean anything).
fn interface_addresses() -> Vec<IpAddr> {
    let Ok(ifs) = if_addrs::get_if_addrs() else { return Vec::new() };
    ifs.into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect()
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    serve_peer(shared, r, w, Route::Direct(addr)).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What the ticket check found.
fn take_ticket(shared: &Shared, hello: &PeerHello) -> std::result::Result<Vec<u8>, PeerRefusal> {
    if !hello.sharer.eq_ignore_ascii_case(&shared.config.username) {
        return Err(PeerRefusal::WrongPeer);
    }
    let mut tickets = lock(&shared.tickets);
    let Some(t) = tickets.get_mut(&hello.ticket) else { return Err(PeerRefusal::BadTicket) };
    if t.used {
        return Err(PeerRefusal::TicketUsed);
    }
    if t.expires <= Instant::now() {
        return Err(PeerRefusal::TicketExpired);
    }
    if !t.asker.eq_ignore_ascii_case(&hello.asker) {
        return Err(PeerRefusal::WrongPeer);
    }
    // Used from now on, whatever happens next: a ticket works once.
    t.used = true;
    Ok(t.sha256.clone())
}

/// [`take_ticket`], giving the server's `fetch_request` a moment to arrive: the asker
/// may connect before the sharer's app has read it.
async fn wait_ticket(shared: &Shared, hello: &PeerHello) -> std::result::Result<Vec<u8>, PeerRefusal> {
    let deadline = tokio::time::Instant::now() + TICKET_WAIT;
    loop {
        let added = shared.ticket_added.notified();
        match take_ticket(shared, hello) {
            Err(PeerRefusal::BadTicket) if tokio::time::Instant::now() < deadline => {
                if tokio::time::timeout_at(deadline, added).await.is_err() {
                    return take_ticket(shared, hello);
                }
            }
            other => return other,
        }
    }
}

fn refuse(shared: &Shared, asker: &str, code: PeerRefusal) {
    let _ = shared.events.try_send(SharerEvent::Refused { asker: asker.to_owned(), code });
}

/// Serves one peer connection (direct or relayed) to its end.
async fn serve_peer<R, W>(shared: Arc<Shared>, mut r: R, mut w: W, route: Route)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&shared, &mut r, &mut w)).await;
    let (asker, sha256, sealer, opener) = match handshake {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "peer handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("peer handshake timed out");
            return;
        }
    };
    if let Err(e) = transfer(&shared, r, w, &asker, &sha256, sealer, opener, route).await {
        tracing::debug!(error = %e, %asker, "upload ended");
    }
}

type Session = (String, Vec<u8>, RecordSealer, RecordOpener);

/// The handshake; `None` when the peer was refused (and told why).
async fn handshake<R, W>(shared: &Shared, r: &mut R, w: &mut W) -> Result<Option<Session>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello: PeerHello = channel::read_plain(r, "hello").await?;
    SharerHandshake::check_hello(&hello)?;
    let refusal = if shared.shutdown.is_cancelled() || !shared.index.enabled() {
        Err(PeerRefusal::NotSharing)
    } else {
        wait_ticket(shared, &hello).await
    };
    let sha256 = match refusal {
        Ok(h) => h,
        Err(code) => {
            refuse(shared, &hello.asker, code);
            let message = code.describe().to_owned();
            channel::write_plain(w, &PeerChallenge::Refused { code, message }).await?;
            return Ok(None);
        }
    };
    let asker = hello.asker.clone();
    let asker_key = lookup_key(&shared.client, &asker).await?;
    let (state, proof) = SharerHandshake::prove(hello, &shared.config.identity);
    channel::write_plain(w, &proof).await?;
    let key: PeerKey = channel::read_plain(r, "key").await?;
    let keys = state.session_keys(&key, &shared.config.identity)?;
    let (sealer, opener) = keys.split(Role::Server);
    if let Err(e) = state.verify_asker(&key, &asker_key) {
        // The refusal is all that is sealed for a peer that did not prove who it is.
        refuse(shared, &asker, PeerRefusal::BadIdentity);
        let mut buf = BytesMut::new();
        let code = PeerRefusal::BadIdentity;
        let message = format!("{asker}'s identity key does not match the server's key directory");
        RecordSealer::new(sealer).control(&PeerMsg::Refused { code, message }, &mut buf)?;
        w.write_all(&buf).await?;
        let _ = w.shutdown().await;
        return Err(e.into());
    }
    Ok(Some((asker, sha256, RecordSealer::new(sealer), RecordOpener::new(opener))))
}

/// Takes an upload slot, or says why not.
fn begin_upload(
    shared: &Shared,
    asker: &str,
    entry: &SharedEntry,
    offset: u64,
    route: Route,
) -> std::result::Result<(UploadInfo, CancellationToken), PeerRefusal> {
    let mut active = lock(&shared.active);
    if active.len() >= shared.max_uploads.load(Ordering::Relaxed) {
        return Err(PeerRefusal::Busy);
    }
    let info = UploadInfo {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        asker: asker.to_owned(),
        name: entry.name.clone(),
        size: entry.size,
        offset,
        sent: 0,
        route,
    };
    let stop = shared.shutdown.child_token();
    active.insert(info.id, Active { info: info.clone(), stop: stop.clone() });
    Ok((info, stop))
}

/// Removes an upload from the active list when it ends, however it ends.
struct Slot<'a> {
    shared: &'a Shared,
    id: UploadId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.shared.active).remove(&self.id);
    }
}

#[expect(clippy::too_many_arguments, reason = "one connection's parts")]
async fn transfer<R, W>(
    shared: &Shared,
    mut r: R,
    mut w: W,
    asker: &str,
    sha256: &[u8],
    mut sealer: RecordSealer,
    mut opener: RecordOpener,
    route: Route,
) -> Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let offset = match tokio::time::timeout(HANDSHAKE_TIMEOUT, opener.recv_control(&mut r)).await {
        Ok(Ok(Some(PeerMsg::Get { offset }))) => offset,
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(PeerError::Stalled(HANDSHAKE_TIMEOUT).into()),
    };
    let entry = shared.index.serving(sha256).filter(|e| offset <= e.size);
    let started = match entry {
        None => Err(PeerRefusal::NoSuchFile),
        Some(e) => begin_upload(shared, asker, &e, offset, route).map(|s| (e, s)),
    };
    let (entry, (info, stop)) = match started {
        Ok(x) => x,
        Err(code) => {
            refuse(shared, asker, code);
            let mut buf = BytesMut::new();
            sealer.control(&PeerMsg::Refused { code, message: code.describe().to_owned() }, &mut buf)?;
            w.write_all(&buf).await?;
            w.shutdown().await?;
            return Ok(());
        }
    };
    let slot = Slot { shared, id: info.id };
    let _ = shared.events.try_send(SharerEvent::Started(info.clone()));
    let result = send_file(shared, &mut r, &mut w, &entry, &info, sealer, &mut opener, stop).await;
    let _ = w.shutdown().await;
    // The slot is free before anyone hears of the end, so a fetch started on `Finished`
    // is never refused as busy by the upload that just ended.
    drop(slot);
    let _ = shared.events.try_send(SharerEvent::Finished {
        id: info.id,
        result: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    });
    result
}

/// Streams the file: a blocking thread reads it and seals records in place; this task
/// writes them, watching the asker (a `cancel`, or a close) and the stop switch.
#[expect(clippy::too_many_arguments, reason = "one transfer's parts")]
async fn send_file<R, W>(
    shared: &Shared,
    r: &mut R,
    w: &mut W,
    entry: &SharedEntry,
    info: &UploadInfo,
    mut sealer: RecordSealer,
    opener: &mut RecordOpener,
    stop: CancellationToken,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut start = BytesMut::new();
    let msg = PeerMsg::Start { name: entry.name.clone(), size: entry.size, sha256: entry.sha256.to_vec() };
    sealer.control(&msg, &mut start)?;
    w.write_all(&start).await?;

    let (tx, mut rx) = mpsc::channel::<Result<(BytesMut, u64)>>(PIPELINE_DEPTH);
    let stopped = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, size, offset, stopped) =
            (entry.path.clone(), entry.size, info.offset, Arc::clone(&stopped));
        tokio::task::spawn_blocking(move || read_and_seal(path, size, offset, sealer, &tx, &stopped))
    };
    let stall = shared.config.stall_timeout;
    let mut sent = 0u64;
    // One read of the asker for the whole transfer (a read dropped halfway would lose
    // bytes): the asker sends nothing but `cancel`.
    let asker = opener.recv_control(r);
    tokio::pin!(asker);
    let outcome: Result<()> = loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled(), if !stopped.load(Ordering::Relaxed) => {
                // The thread seals a `refused: stopped` next and ends.
                stopped.store(true, Ordering::Relaxed);
                continue;
            }
            msg = &mut asker => {
                // The asker sends nothing during a transfer but `cancel`; a close is a cancel too.
                match msg {
                    Ok(Some(PeerMsg::Cancel) | None) => break Err(PeerError::Cancelled.into()),
                    Ok(Some(other)) => break Err(PeerError::Protocol(format!("unexpected {other:?}")).into()),
                    Err(e) => break Err(e),
                }
            }
            next = rx.recv() => next,
        };
        let Some(item) = next else { break Ok(()) };
        let (frame, content) = match item {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        // A stop cannot wait for an asker that does not read: after a grace it cuts the
        // connection mid-record.
        let hard_stop = async {
            stop.cancelled().await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let written = tokio::select! {
            r = tokio::time::timeout(stall, w.write_all(&frame)) => r,
            () = hard_stop => break Err(PeerError::Refused { code: PeerRefusal::Stopped, message: String::new() }.into()),
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Err(e.into()),
            Err(_) => break Err(PeerError::Stalled(stall).into()),
        }
        sent += content;
        if let Some(a) = lock(&shared.active).get_mut(&info.id) {
            a.info.sent = sent;
        }
        let _ = shared.events.try_send(SharerEvent::Progress { id: info.id, sent });
    };
    stopped.store(true, Ordering::Relaxed);
    drop(rx);
    let thread = reader.await.map_err(|e| Error::Io(std::io::Error::other(e)))?;
    outcome?;
    w.flush().await?;
    match thread? {
        Finish::Sent => Ok(()),
        Finish::Stopped => {
            Err(PeerError::Refused { code: PeerRefusal::Stopped, message: String::new() }.into())
        }
    }
}

enum Finish {
    Sent,
    Stopped,
}

/// The blocking half of [`send_file`]: file → record buffer → sealed in place → channel.
fn read_and_seal(
    path: std::path::PathBuf,
    size: u64,
    offset: u64,
    mut sealer: RecordSealer,
    tx: &mpsc::Sender<Result<(BytesMut, u64)>>,
    stopped: &AtomicBool,
) -> Result<Finish> {
    let mut run = || -> Result<Finish> {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut left = size - offset;
        let chunk = (PEER_RECORD_LEN - 1) as u64;
        while left > 0 {
            if stopped.load(Ordering::Relaxed) {
                let mut buf = BytesMut::new();
                let code = PeerRefusal::Stopped;
                sealer
                    .control(&PeerMsg::Refused { code, message: "stopped by the sharer".into() }, &mut buf)?;
                let _ = tx.blocking_send(Ok((buf, 0)));
                return Ok(Finish::Stopped);
            }
            let n = left.min(chunk) as usize;
            let mut buf = RecordSealer::data_buffer(n);
            // A file that shrank since it was indexed fails here; one that changed in
            // place fails the asker's hash check.
            file.read_exact(&mut buf[RecordSealer::data_start()..])?;
            sealer.seal_data(&mut buf)?;
            if tx.blocking_send(Ok((buf, n as u64))).is_err() {
                return Ok(Finish::Stopped);
            }
            left -= n as u64;
        }
        let mut end = BytesMut::new();
        sealer.control(&PeerMsg::End, &mut end)?;
        let _ = tx.blocking_send(Ok((end, 0)));
        Ok(Finish::Sent)
    };
    let result = run();
    if let Err(e) = &result {
        let _ = tx.blocking_send(Err(Error::Io(std::io::Error::other(e.to_string()))));
    }
    result
}
