//! The asker's side: searching a room, and fetching a result directly from its sharer
//! (or through the server's relay), resuming and verifying.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::channel::{self, Record, RecordOpener, RecordSealer};
use super::handshake::AskerHandshake;
use super::proto::{
    PEER_MAX_FRAME_LEN, PeerChallenge, PeerMsg, PeerTicket, RelaySide, SearchId, SearchQuery, SharedFile,
};
use super::relay::open_relay;
use super::{PeerError, lookup_key};
use crate::client::Client;
use crate::crypto::Role;
use crate::e2e::{Identity, PublicIdentity};
use crate::error::{Error, Result};
use crate::files::{part_path, sanitize_file_name};
use crate::message::{Event, Request, Response};

/// Frames waiting between the socket and the thread that checks, hashes and writes them
/// (4 × 1 MiB).
const PIPELINE_DEPTH: usize = 4;

/// How a transfer's bytes travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight between the peers; the address is the sharer's (as the asker connected
    /// to it) or the asker's (as the sharer accepted it).
    Direct(SocketAddr),
    /// Through the server's relay (still end-to-end encrypted).
    Relayed,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct(_) => f.write_str("direct"),
            Route::Relayed => f.write_str("relayed"),
        }
    }
}

/// One row of search results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// Who shares it.
    pub sharer: String,
    pub file: SharedFile,
}

/// A search's results as they arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResults {
    pub search: SearchId,
    pub room: String,
    /// Sharers the server asked.
    pub asked: u32,
    pub results: Vec<SearchResult>,
    /// The deadline passed (`search_done` came).
    pub done: bool,
    /// The server dropped results over its caps.
    pub truncated: bool,
}

impl SearchResults {
    /// Takes in a `search_results` or `search_done` event of this search; `true` if it
    /// was one (the app need not show it otherwise).
    pub fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::SearchResults { search, from, files } if *search == self.search => {
                self.results.extend(
                    files.iter().map(|file| SearchResult { sharer: from.clone(), file: file.clone() }),
                );
                true
            }
            Event::SearchDone { search, truncated, .. } if *search == self.search => {
                self.done = true;
                self.truncated |= *truncated;
                true
            }
            _ => false,
        }
    }
}

/// Sends `/whohas` to `room`. Results arrive on the app's event channel; feed them to
/// [`SearchResults::apply`].
pub async fn whohas(client: &Client, room: &str, query: SearchQuery) -> Result<SearchResults> {
    match client.request(Request::WhoHas { room: room.to_owned(), query }).await? {
        Response::Search { search, asked, .. } => Ok(SearchResults {
            search,
            room: room.to_owned(),
            asked,
            results: Vec::new(),
            done: asked == 0,
            truncated: false,
        }),
        other => Err(Error::Protocol(format!("expected search, got {other:?}"))),
    }
}

/// What to fetch, and where to save it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The room the search ran in (both must be members).
    pub room: String,
    pub sharer: String,
    /// As the search reported it (sanitised again before use in messages).
    pub name: String,
    pub size: u64,
    pub sha256: Vec<u8>,
    /// The final path. The content goes to `DEST.part` first and is renamed only after
    /// its SHA-256 matched.
    pub dest: PathBuf,
}

impl FetchRequest {
    /// The request for one search result, saved as `dir/NAME` (the name sanitised).
    pub fn for_result(room: &str, result: &SearchResult, dir: &Path) -> Self {
        Self {
            room: room.to_owned(),
            sharer: result.sharer.clone(),
            name: result.file.name.clone(),
            size: result.file.size,
            sha256: result.file.sha256.clone(),
            dest: dir.join(sanitize_file_name(&result.file.name)),
        }
    }
}

/// How far a fetch has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchProgress {
    /// Bytes of the file on disk (counting a resumed part).
    pub done: u64,
    pub total: u64,
    /// Known once connected.
    pub route: Option<Route>,
}

/// Who is fetching, and how.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The user's name, as logged in.
    pub username: String,
    /// The user's identity key (what the key directory lists for them).
    pub identity: Identity,
    /// Progress, updated once per record (1 MiB).
    pub progress: Option<watch::Sender<FetchProgress>>,
    /// Cancels the fetch; the `.part` stays for a later resume.
    pub cancel: CancellationToken,
    /// How long the direct attempt (all candidates at once) may take before the relay.
    /// Default 3 s.
    pub direct_timeout: Duration,
    /// A transfer with no byte for this long fails. Default 30 s.
    pub stall_timeout: Duration,
    /// Try a direct connection (default true).
    pub direct: bool,
    /// Fall back to the server's relay (default true).
    pub relay: bool,
}

impl FetchOptions {
    pub fn new(username: impl Into<String>, identity: Identity) -> Self {
        Self {
            username: username.into(),
            identity,
            progress: None,
            cancel: CancellationToken::new(),
            direct_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(30),
            direct: true,
            relay: true,
        }
    }
}

/// A completed, verified fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Bytes that were already in the `.part` from an earlier attempt.
    pub resumed_from: u64,
    pub route: Route,
}

/// Fetches `req` from its sharer: a ticket from the server, the direct connection (or
/// the relay), the peer session, the content into `DEST.part` from where an earlier
/// attempt stopped, the SHA-256 check, the rename. See the module docs for the errors.
pub async fn fetch(client: &Client, req: &FetchRequest, opts: &FetchOptions) -> Result<Fetched> {
    let part = part_path(&req.dest);
    let (offset, hasher) = {
        let (part, size) = (part.clone(), req.size);
        tokio::task::spawn_blocking(move || hash_part(&part, size))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??
    };
    let body =
        Request::PeerFetch { room: req.room.clone(), sharer: req.sharer.clone(), sha256: req.sha256.clone() };
    let ticket = match client.request(body).await? {
        Response::PeerTicket(t) => t,
        other => return Err(Error::Protocol(format!("expected a peer ticket, got {other:?}"))),
    };
    let sharer_key = lookup_key(client, &ticket.sharer).await?;
    let ctx = Ctx { req, opts, ticket: &ticket, sharer_key: &sharer_key, part: &part, offset, hasher };
    let mut why = String::from("no direct attempt was allowed");
    if opts.direct {
        match connect_any(&ticket.candidates, opts.direct_timeout, &opts.cancel).await {
            Ok((stream, addr)) => {
                let (r, w) = stream.into_split();
                return ctx.session(r, w, Route::Direct(addr)).await;
            }
            Err(e @ Error::Peer(PeerError::Cancelled)) => return Err(e),
            Err(e) => why = e.to_string(),
        }
    }
    if opts.relay {
        client.request(Request::PeerRelay { ticket: ticket.ticket.clone() }).await?;
        let relay = tokio::select! {
            r = open_relay(client.bulk_config(), &ticket.ticket, RelaySide::Asker) => r,
            () = opts.cancel.cancelled() => return Err(PeerError::Cancelled.into()),
        };
        let (r, w) = relay.map_err(|e| PeerError::Unreachable {
            peer: ticket.sharer.clone(),
            why: format!("{why}; and the relay: {e}"),
        })?;
        return ctx.session(r, w, Route::Relayed).await;
    }
    Err(PeerError::Unreachable { peer: ticket.sharer.clone(), why }.into())
}

/// Connects to the first of `candidates` that answers within `wait`, trying all at once.
async fn connect_any(
    candidates: &[String],
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<(TcpStream, SocketAddr)> {
    let mut attempts = tokio::task::JoinSet::new();
    for addr in candidates.iter().filter_map(|c| c.parse::<SocketAddr>().ok()) {
        attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
    }
    let mut last = String::from("the sharer registered no usable address");
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Err(PeerError::Cancelled.into()),
            () = &mut deadline => {
                return Err(Error::ConnectTimeout(wait));
            }
            next = attempts.join_next() => match next {
                Some(Ok((addr, Ok(stream)))) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Some(Ok((addr, Err(e)))) => last = format!("{addr}: {e}"),
                Some(Err(_)) => {}
                None => return Err(Error::Io(std::io::Error::other(last))),
            }
        }
    }
}

/// The length of `part` (cut to 0 when longer than the file) and the hash of what it
/// holds, to resume from.
fn hash_part(part: &Path, size: u64) -> Result<(u64, Sha256)> {
    let mut hasher = Sha256::new();
    let mut file = match std::fs::File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, hasher)),
        Err(e) => return Err(e.into()),
    };
    if file.metadata()?.len() > size {
        drop(file);
        std::fs::remove_file(part)?;
        return Ok((0, hasher));
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((len, hasher));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

struct Ctx<'a> {
    req: &'a FetchRequest,
    opts: &'a FetchOptions,
    ticket: &'a PeerTicket,
    sharer_key: &'a PublicIdentity,
    part: &'a Path,
    offset: u64,
    hasher: Sha256,
}

impl Ctx<'_> {
    async fn session<R, W>(self, mut r: R, mut w: W, route: Route) -> Result<Fetched>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let stall = self.opts.stall_timeout;
        let hs = AskerHandshake::new(&self.ticket.ticket, &self.opts.username, &self.ticket.sharer);
        channel::write_plain(&mut w, hs.hello()).await?;
        let challenge: PeerChallenge = within(stall, channel::read_plain(&mut r, "challenge")).await?;
        let (key, keys) = hs.on_challenge(challenge, &self.opts.identity, self.sharer_key)?;
        channel::write_plain(&mut w, &key).await?;
        let (sealer, opener) = keys.split(Role::Client);
        let (mut sealer, mut opener) = (RecordSealer::new(sealer), RecordOpener::new(opener));
        let mut buf = BytesMut::new();
        sealer.control(&PeerMsg::Get { offset: self.offset }, &mut buf)?;
        w.write_all(&buf).await?;
        let name = sanitize_file_name(&self.req.name);
        match within(stall, opener.recv_control(&mut r)).await? {
            Some(PeerMsg::Start { size, sha256, .. })
                if size == self.req.size && sha256 == self.req.sha256 => {}
            Some(PeerMsg::Start { .. }) => {
                return Err(PeerError::Protocol("the sharer offered a different file".into()).into());
            }
            Some(PeerMsg::Refused { code, message }) => {
                return Err(PeerError::Refused { code, message }.into());
            }
            Some(other) => return Err(PeerError::Protocol(format!("unexpected {other:?}")).into()),
            None => return Err(Error::Closed("the sharer closed the connection".into())),
        }
        let total = self.req.size;
        let progress = self.opts.progress.clone();
        if let Some(p) = &progress {
            p.send_replace(FetchProgress { done: self.offset, total, route: Some(route) });
        }
        let (tx, rx) = mpsc::channel::<BytesMut>(PIPELINE_DEPTH);
        let writer = {
            let (part, offset, hasher) = (self.part.to_owned(), self.offset, self.hasher.clone());
            tokio::task::spawn_blocking(move || {
                write_part(&part, offset, total, hasher, opener, rx, |done| {
                    if let Some(p) = &progress {
                        p.send_replace(FetchProgress { done, total, route: Some(route) });
                    }
                })
            })
        };
        // Frames go to the writer until the sharer closes after `end` (or the writer stops
        // taking them: it saw `end`, a refusal, or an error).
        let read: Result<()> = loop {
            let frame = tokio::select! {
                () = self.opts.cancel.cancelled() => {
                    let mut buf = BytesMut::new();
                    if sealer.control(&PeerMsg::Cancel, &mut buf).is_ok() {
                        let _ = w.write_all(&buf).await;
                    }
                    let _ = w.shutdown().await;
                    break Err(PeerError::Cancelled.into());
                }
                f = tokio::time::timeout(stall, channel::read_frame(&mut r, PEER_MAX_FRAME_LEN)) => f,
            };
            match frame {
                Err(_) => break Err(PeerError::Stalled(stall).into()),
                Ok(Err(e)) => break Err(e),
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(frame))) => {
                    if tx.send(frame).await.is_err() {
                        break Ok(());
                    }
                }
            }
        };
        drop(tx);
        let written = writer.await.map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let _ = w.shutdown().await;
        // A cancel or a stall wins over what the writer says of the frames it got.
        read?;
        let (len, hash) = written?;
        let part = self.part.to_owned();
        let dest = self.req.dest.clone();
        let ok = len == total && hash.as_slice() == self.req.sha256.as_slice();
        tokio::task::spawn_blocking(move || {
            if ok { std::fs::rename(&part, &dest) } else { std::fs::remove_file(&part) }
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        if !ok {
            return Err(Error::HashMismatch { name });
        }
        Ok(Fetched { path: self.req.dest.clone(), name, size: total, resumed_from: self.offset, route })
    }
}

/// `fut`, or a stall after `stall`.
async fn within<T>(stall: Duration, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(stall, fut).await.map_err(|_| Error::from(PeerError::Stalled(stall)))?
}

/// The blocking half of a fetch: opens each frame in place, hashes the content and
/// appends it to the part file, until `end`. Returns the file's length and hash.
fn write_part(
    part: &Path,
    offset: u64,
    total: u64,
    mut hasher: Sha256,
    mut opener: RecordOpener,
    mut rx: mpsc::Receiver<BytesMut>,
    mut progress: impl FnMut(u64),
) -> Result<(u64, [u8; 32])> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(part)?;
    if file.metadata()?.len() != offset {
        return Err(Error::Protocol("the part file changed while it was being resumed".into()));
    }
    let mut len = offset;
    let result = loop {
        let Some(mut frame) = rx.blocking_recv() else {
            break Err(Error::Closed("the sharer closed the connection before the end".into()));
        };
        match opener.open(&mut frame)? {
            Record::Data(data) => {
                if len + data.len() as u64 > total {
                    break Err(PeerError::Protocol("the sharer sent more than the file's size".into()).into());
                }
                hasher.update(data);
                file.write_all(data)?;
                len += data.len() as u64;
                progress(len);
            }
            Record::Control(PeerMsg::End) => break Ok((len, hasher.finalize().into())),
            Record::Control(PeerMsg::Refused { code, message }) => {
                break Err(PeerError::Refused { code, message }.into());
            }
            Record::Control(other) => break Err(PeerError::Protocol(format!("unexpected {other:?}")).into()),
        }
    };
    file.flush()?;
    result
}
