//! The net task's half of sharing, on `classchat_wire::peer`: the user's shared files as
//! a [`SharedIndex`], the [`Sharer`] (the peer listener, registered with the server) while
//! sharing is on, searches and their answers, fetches with their progress.
//!
//! `net.rs` hands this module its sharing commands and every server event first
//! ([`PeerTasks::on_server_event`]): the sharer answers classmates' searches from the
//! index and accepts their fetch tickets; the answers to our own searches become
//! [`SharingEvent::Hits`]. Peer events are never shown as such.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use classchat_wire::e2e::Identity;
use classchat_wire::peer::{
    FetchOptions, FetchProgress, FetchRequest, PeerError, PeerRefusal, Route, SearchId, SearchQuery,
    SharedEntry, SharedFile, SharedIndex, Sharer, SharerConfig, SharerEvent,
};
use classchat_wire::{Client, Error as WireError, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Hit, IndexedFile, SharingCommand, SharingEvent};
use crate::e2e::E2e;
use crate::files::{PROGRESS_PER_SECOND, TransferId, TransferUpdate};
use crate::net::{NetEvent, refusal_text};

/// Where the net task's events go (the UI's channel, which wakes it).
pub type Send = Arc<dyn Fn(NetEvent) + std::marker::Send + Sync>;

/// Answers to a search that came before the search's own reply (events and replies
/// travel apart), kept until it does; past this the oldest are dropped.
const MAX_EARLY_EVENTS: usize = 256;
/// Searches of ours remembered (only the latest is shown; older answers are dropped).
const MAX_SEARCHES: usize = 16;
/// How long a sharer start waits for the user's identity key (made or fetched right
/// after the login).
const IDENTITY_WAIT: Duration = Duration::from_secs(60);

/// What the user shares, as last published.
#[derive(Debug, Clone, Default)]
struct Published {
    enabled: bool,
    max_uploads: u32,
}

/// Our searches: the server's id → ours, and answers that came too early.
#[derive(Debug, Default)]
struct Searches {
    ids: VecDeque<(SearchId, u64)>,
    early: VecDeque<Event>,
}

impl Searches {
    fn ours(&self, server: SearchId) -> Option<u64> {
        self.ids.iter().find(|(s, _)| *s == server).map(|(_, o)| *o)
    }
}

/// The running sharer of this session, or the task starting it.
enum Listener {
    Off,
    Starting(JoinHandle<()>),
    On(Sharer),
}

/// The sharing state of the net task.
pub struct PeerTasks {
    published: Published,
    index: SharedIndex,
    /// The chat connection, the user's name and keys, while logged in.
    online: Option<(Client, String, Option<E2e>)>,
    listener: Arc<Mutex<Listener>>,
    searches: Arc<Mutex<Searches>>,
    fetches: HashMap<TransferId, (JoinHandle<()>, CancellationToken)>,
}

impl Default for PeerTasks {
    fn default() -> Self {
        Self {
            published: Published::default(),
            index: SharedIndex::new(),
            online: None,
            listener: Arc::new(Mutex::new(Listener::Off)),
            searches: Arc::default(),
            fetches: HashMap::new(),
        }
    }
}

impl std::fmt::Debug for PeerTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTasks")
            .field("enabled", &self.published.enabled)
            .field("fetches", &self.fetches.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PeerTasks {
    /// Logged in (again): a new session must be told where we listen.
    pub fn on_connected(&mut self, client: Client, user: String, e2e: Option<E2e>, send: &Send) {
        self.online = Some((client, user, e2e));
        self.stop_listener();
        self.start_listener(send);
    }

    /// The connection went: its sharer goes with it (the next login starts another).
    pub fn on_disconnected(&mut self) {
        self.online = None;
        self.stop_listener();
    }

    /// A server event: `None` if it was ours (a search asked of us, answers to ours, a
    /// ticket, a relay), else the event to pass on.
    pub fn on_server_event(&mut self, ev: Event, send: &Send) -> Option<Event> {
        match &ev {
            Event::SearchRequest { .. } | Event::FetchRequest { .. } | Event::RelayRequest { .. } => {
                // Without a running sharer nothing is answered: sharing is off.
                if let Listener::On(sharer) = &*lock(&self.listener) {
                    sharer.handle_event(&ev);
                }
                None
            }
            Event::SearchResults { search, .. } | Event::SearchDone { search, .. } => {
                let mut book = lock(&self.searches);
                match book.ours(*search) {
                    Some(ours) => send(NetEvent::Sharing(search_event(ours, &ev))),
                    None => {
                        if book.early.len() >= MAX_EARLY_EVENTS {
                            book.early.pop_front();
                        }
                        book.early.push_back(ev);
                    }
                }
                None
            }
            _ => Some(ev),
        }
    }

    pub fn on_command(&mut self, cmd: SharingCommand, send: &Send) {
        self.fetches.retain(|_, (t, _)| !t.is_finished());
        match cmd {
            SharingCommand::Publish { enabled, max_uploads, root, files } => {
                self.publish(enabled, max_uploads, root, &files, send);
            }
            SharingCommand::Search { search, room, query } => self.search(search, room, query, send),
            SharingCommand::Fetch { id, room, hit, dest, replace } => {
                self.fetch(id, room, hit, dest, replace, send)
            }
            SharingCommand::Cancel { id, upload } => {
                if let Some((task, cancel)) = self.fetches.remove(&id) {
                    // The `.part` stays: a retry resumes from it.
                    cancel.cancel();
                    drop(task);
                }
                if let Some(upload) = upload
                    && let Listener::On(sharer) = &*lock(&self.listener)
                {
                    sharer.stop_upload(upload);
                }
                send(NetEvent::Transfer { id, update: TransferUpdate::Cancelled });
            }
        }
    }

    fn publish(
        &mut self,
        enabled: bool,
        max_uploads: u32,
        root: Option<PathBuf>,
        files: &[IndexedFile],
        send: &Send,
    ) {
        let entries = match &root {
            Some(root) => files
                .iter()
                .map(|f| SharedEntry {
                    path: f.path(root),
                    name: f.name().to_owned(),
                    size: f.size,
                    sha256: f.sha256,
                    enabled: true,
                })
                .collect(),
            None => Vec::new(),
        };
        self.index.replace_all(entries);
        self.index.set_enabled(enabled);
        let was = self.published.enabled;
        self.published = Published { enabled, max_uploads };
        if let Listener::On(sharer) = &*lock(&self.listener) {
            sharer.set_max_uploads(max_uploads as usize);
        }
        match (was, enabled) {
            (false, true) => self.start_listener(send),
            (true, false) => {
                self.stop_listener();
                send(NetEvent::Sharing(SharingEvent::Listening(Err("sharing is off".into()))));
            }
            _ => {}
        }
    }

    /// Starts the sharer for this session if sharing is on (once the identity key is
    /// there: the peer handshake proves it).
    fn start_listener(&mut self, send: &Send) {
        if !self.published.enabled || !matches!(*lock(&self.listener), Listener::Off) {
            return;
        }
        let Some((client, user, Some(e2e))) = self.online.clone() else { return };
        let (index, slot, send) = (self.index.clone(), Arc::clone(&self.listener), Arc::clone(send));
        let max_uploads = self.published.max_uploads as usize;
        // Held while spawning, so the task cannot record its sharer before `Starting` is.
        let mut state = lock(&self.listener);
        let task = tokio::spawn(async move {
            let Some(identity) = wait_for_identity(&e2e).await else {
                *lock(&slot) = Listener::Off;
                send(NetEvent::Sharing(SharingEvent::Listening(Err(
                    "this computer has no identity key yet, which a fetch needs".into(),
                ))));
                return;
            };
            let mut config = SharerConfig::new(user, identity);
            config.max_uploads = max_uploads.max(1);
            match Sharer::start(client, index, config).await {
                Ok((sharer, events)) => {
                    let port = sharer.port();
                    *lock(&slot) = Listener::On(sharer);
                    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
                    send(NetEvent::Sharing(SharingEvent::Listening(Ok(vec![addr]))));
                    forward_uploads(events, &send).await;
                }
                Err(e) => {
                    *lock(&slot) = Listener::Off;
                    send(NetEvent::Sharing(SharingEvent::Listening(Err(e.to_string()))));
                }
            }
        });
        *state = Listener::Starting(task);
    }

    fn stop_listener(&mut self) {
        match std::mem::replace(&mut *lock(&self.listener), Listener::Off) {
            Listener::Off => {}
            Listener::Starting(task) => task.abort(),
            Listener::On(sharer) => {
                tokio::spawn(async move {
                    if let Err(e) = sharer.stop().await {
                        tracing::debug!("sharing off: {e}");
                    }
                });
            }
        }
    }

    fn search(&mut self, ours: u64, room: String, query: String, send: &Send) {
        let Some((client, ..)) = self.online.clone() else {
            return send(NetEvent::Sharing(SharingEvent::SearchDone {
                search: ours,
                error: Some("Not connected to the server.".into()),
            }));
        };
        let (book, send) = (Arc::clone(&self.searches), Arc::clone(send));
        tokio::spawn(async move {
            match classchat_wire::peer::whohas(&client, &room, SearchQuery::parse(&query)).await {
                Ok(results) => {
                    let early: Vec<Event> = {
                        let mut book = lock(&book);
                        if book.ids.len() >= MAX_SEARCHES {
                            book.ids.pop_front();
                        }
                        book.ids.push_back((results.search, ours));
                        let (mine, rest): (Vec<Event>, Vec<Event>) =
                            std::mem::take(&mut book.early).into_iter().partition(|e| {
                            matches!(e, Event::SearchResults { search, .. } | Event::SearchDone { search, .. }
                                if *search == results.search)
                        });
                        book.early = rest.into();
                        mine
                    };
                    for ev in early {
                        send(NetEvent::Sharing(search_event(ours, &ev)));
                    }
                    if results.asked == 0 {
                        send(NetEvent::Sharing(SharingEvent::SearchDone { search: ours, error: None }));
                    }
                }
                Err(e) => send(NetEvent::Sharing(SharingEvent::SearchDone {
                    search: ours,
                    error: Some(wire_text(&e)),
                })),
            }
        });
    }

    fn fetch(&mut self, id: TransferId, room: String, hit: Hit, dest: PathBuf, replace: bool, send: &Send) {
        let report = {
            let send = Arc::clone(send);
            move |update: TransferUpdate| send(NetEvent::Transfer { id, update })
        };
        let Some((client, user, Some(e2e))) = self.online.clone() else {
            return report(TransferUpdate::Interrupted("Offline: it goes on once connected.".into()));
        };
        let cancel = CancellationToken::new();
        let (send, token) = (Arc::clone(send), cancel.clone());
        let task = tokio::spawn(async move {
            // Downloads may not exist yet on a fresh account.
            if let Some(parent) = dest.parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            if !replace && tokio::fs::try_exists(&dest).await.unwrap_or(true) {
                return report(TransferUpdate::Exists);
            }
            let Some(identity) = wait_for_identity(&e2e).await else {
                return report(TransferUpdate::Failed(crate::e2e::NO_IDENTITY.into()));
            };
            let (tx, rx) = watch::channel(FetchProgress::default());
            let mut opts = FetchOptions::new(user, identity);
            opts.progress = Some(tx);
            opts.cancel = token;
            let req = FetchRequest {
                room,
                sharer: hit.sharer.clone(),
                name: hit.name.clone(),
                size: hit.size,
                sha256: hit.sha256.to_vec(),
                dest,
            };
            let watcher = tokio::spawn(watch_progress(id, rx, Arc::clone(&send)));
            let result = classchat_wire::peer::fetch(&client, &req, &opts).await;
            watcher.abort();
            let update = match result {
                Ok(fetched) => {
                    if fetched.route == Route::Relayed {
                        send(NetEvent::Sharing(SharingEvent::Relayed { id }));
                    }
                    TransferUpdate::Finished
                }
                Err(WireError::Peer(PeerError::Cancelled)) => TransferUpdate::Cancelled,
                Err(e) => TransferUpdate::Failed(fetch_error_text(&e, &hit.sharer)),
            };
            report(update);
        });
        self.fetches.insert(id, (task, cancel));
    }
}

/// The identity key, once the login's key setup has it.
async fn wait_for_identity(e2e: &E2e) -> Option<Identity> {
    let deadline = Instant::now() + IDENTITY_WAIT;
    loop {
        if let Some(identity) = e2e.identity().await {
            return Some((*identity).clone());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A search event of the server as the UI's.
fn search_event(ours: u64, ev: &Event) -> SharingEvent {
    match ev {
        Event::SearchResults { from, files, .. } => {
            SharingEvent::Hits { search: ours, hits: files.iter().filter_map(|f| hit(from, f)).collect() }
        }
        _ => SharingEvent::SearchDone { search: ours, error: None },
    }
}

fn hit(sharer: &str, file: &SharedFile) -> Option<Hit> {
    Some(Hit {
        sharer: sharer.to_owned(),
        name: file.name.clone(),
        size: file.size,
        sha256: file.sha256.as_slice().try_into().ok()?,
        busy: file.busy,
    })
}

/// Progress of one fetch, a few times a second, and "relayed" once known.
async fn watch_progress(id: TransferId, mut rx: watch::Receiver<FetchProgress>, send: Send) {
    let mut said_relayed = false;
    let every = Duration::from_secs(1) / PROGRESS_PER_SECOND;
    while rx.changed().await.is_ok() {
        let p = *rx.borrow_and_update();
        if p.route == Some(Route::Relayed) && !said_relayed {
            said_relayed = true;
            send(NetEvent::Sharing(SharingEvent::Relayed { id }));
        }
        send(NetEvent::Transfer { id, update: TransferUpdate::Progress { done: p.done, total: p.total } });
        tokio::time::sleep(every).await;
    }
}

/// The sharer's events as the UI's: "ada is fetching lab3.csv from you", progress, end.
async fn forward_uploads(mut events: tokio::sync::mpsc::Receiver<SharerEvent>, send: &Send) {
    let mut offsets: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut last: HashMap<u64, Instant> = HashMap::new();
    let every = Duration::from_secs(1) / PROGRESS_PER_SECOND;
    while let Some(ev) = events.recv().await {
        let ev = match ev {
            SharerEvent::Started(info) => {
                offsets.insert(info.id, (info.offset, info.size));
                SharingEvent::UploadStarted {
                    upload: info.id,
                    peer: info.asker,
                    name: info.name,
                    total: info.size,
                    relayed: info.route == Route::Relayed,
                }
            }
            SharerEvent::Progress { id, sent } => {
                let now = Instant::now();
                if last.get(&id).is_some_and(|t| now.duration_since(*t) < every) {
                    continue;
                }
                last.insert(id, now);
                let (offset, total) = offsets.get(&id).copied().unwrap_or((0, 0));
                SharingEvent::UploadProgress { upload: id, done: offset + sent, total }
            }
            SharerEvent::Finished { id, result } => {
                offsets.remove(&id);
                last.remove(&id);
                SharingEvent::UploadEnded { upload: id, error: result.err() }
            }
            SharerEvent::Refused { asker, code } => {
                tracing::debug!(%asker, ?code, "a peer was turned away");
                continue;
            }
        };
        send(NetEvent::Sharing(ev));
    }
}

fn wire_text(e: &WireError) -> String {
    match e {
        WireError::Server { code, message } => refusal_text(*code, message),
        other => other.to_string(),
    }
}

/// Why a fetch failed, for the transfers panel.
fn fetch_error_text(e: &WireError, sharer: &str) -> String {
    match e {
        WireError::HashMismatch { .. } => {
            "the content did not match its SHA-256, so it was deleted; try another sharer".into()
        }
        WireError::Peer(PeerError::Refused { code: PeerRefusal::Busy, .. }) => {
            format!("{sharer} is busy (at their upload limit); pick another sharer or retry later")
        }
        WireError::Peer(refused @ PeerError::Refused { .. }) => format!("{sharer} refused: {refused}"),
        other => wire_text(other),
    }
}
