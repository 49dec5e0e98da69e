//! Files in the app: the transfers the net task runs (uploads, downloads, thumbnails),
//! the list the transfers panel shows (progress, speed, time left), file offers, and
//! image thumbnails.
//!
//! Transfers run on the tokio runtime as tasks of their own, over bulk connections
//! (`classchat_wire::files`), so chat never waits behind a file. They report through
//! [`NetEvent::Transfer`] at most [`PROGRESS_PER_SECOND`] times a second each, so a
//! 1 GiB transfer costs the UI a handful of repaints a second. An interrupted transfer
//! resumes on retry: an upload keeps its ticket (the server says how much it already
//! holds), a download continues its `.part` file.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use classchat_wire::files::{UploadTicket, sanitize_file_name};
use classchat_wire::sealed_file::{FileKey, FileSecret, sealed_size};
use classchat_wire::{Client, Conv, Error as WireError, ErrorCode, FileId, FileInfo};
use tokio::task::JoinHandle;

use crate::e2e::E2e;
use crate::net::{NetEvent, refusal_text};

/// Progress events per transfer per second, at most.
pub const PROGRESS_PER_SECOND: u32 = 4;
/// Transfers kept in the panel; past this the oldest finished ones are forgotten.
pub const MAX_TRANSFERS: usize = 200;
/// Offers kept (incoming and outgoing); past this the oldest answered ones are forgotten.
pub const MAX_OFFERS: usize = 500;
/// Thumbnail textures kept; past this the least recently added is dropped (and decoded
/// again if it comes back into view).
pub const MAX_THUMBS: usize = 64;
/// Images larger than this get no thumbnail (it would mean downloading them).
pub const MAX_THUMB_SOURCE: u64 = 16 * 1024 * 1024;
/// The images downloaded for thumbnails are kept on disk up to this total; past it the
/// least recently used go (and are downloaded again if they come back into view).
pub const MAX_THUMB_CACHE: u64 = 128 * 1024 * 1024;
/// Thumbnails fit in a square this many pixels wide.
pub const THUMB_SIZE: u32 = 160;
/// Images whose width or height is over this are not decoded (a decompression bomb).
const MAX_IMAGE_SIDE: u32 = 12_000;

/// The app's number for one transfer (not the server's file id).
pub type TransferId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// What a transfer tells the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferUpdate {
    /// An upload was accepted: the server's id for it, and its size.
    Started {
        file: FileId,
        total: u64,
    },
    /// Bytes moved so far, counted from the start of the file.
    Progress {
        done: u64,
        total: u64,
    },
    Done(FileInfo),
    /// Complete, with no file of the server's behind it (a transfer between classmates).
    Finished,
    Failed(String),
    /// Stopped because the connection went; it resumes by itself after the reconnect.
    Interrupted(String),
    /// A download's destination exists: ask before replacing it.
    Exists,
    Cancelled,
}

/// File work for the net task.
#[derive(Debug, Clone)]
pub enum FileCommand {
    /// Upload `path` to a room (announced there) or to a person (an offer).
    Upload {
        id: TransferId,
        conv: Conv,
        path: PathBuf,
    },
    /// Download `file` of `conv` to `dest`; with `replace` false an existing `dest` is
    /// left alone and reported as [`TransferUpdate::Exists`].
    Download {
        id: TransferId,
        conv: Conv,
        file: FileInfo,
        dest: PathBuf,
        replace: bool,
    },
    Cancel {
        id: TransferId,
    },
    /// Fetch a small image into the thumbnail cache and decode it to a thumbnail.
    Thumbnail {
        file: FileInfo,
        cache: PathBuf,
    },
    /// Open a file or a folder with the desktop's default application.
    Open {
        path: PathBuf,
    },
}

/// An upload the server accepted, kept for a retry: its ticket and, for a file sent to
/// a person, the key it is sealed with (a resume must seal with the same key).
#[derive(Debug, Clone)]
struct Kept {
    ticket: UploadTicket,
    secret: Option<FileSecret>,
}

/// The net task's file state: running transfers and the upload tickets kept for a retry.
#[derive(Debug, Default)]
pub struct FileTasks {
    running: HashMap<TransferId, JoinHandle<()>>,
    tickets: Arc<Mutex<HashMap<TransferId, Kept>>>,
}

/// A decoded thumbnail, ready for a texture.
#[derive(Debug, Clone)]
pub struct Thumb {
    pub file: FileId,
    pub image: Option<egui::ColorImage>,
}

/// Calls `f` at most [`PROGRESS_PER_SECOND`] times a second (and always for the end).
struct Throttle {
    next: Instant,
}

impl Throttle {
    fn new() -> Self {
        Self { next: Instant::now() }
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next {
            self.next = now + Duration::from_secs(1) / PROGRESS_PER_SECOND;
            true
        } else {
            false
        }
    }
}

/// Why a transfer stopped, and whether a reconnect is all it needs to go on.
#[derive(Debug)]
struct Failure {
    text: String,
    interrupted: bool,
}

impl From<&WireError> for Failure {
    fn from(e: &WireError) -> Self {
        let interrupted = matches!(
            e,
            WireError::Io(_)
                | WireError::Closed(_)
                | WireError::ConnectTimeout(_)
                | WireError::HandshakeTimeout(_)
        );
        Failure { text: error_text(e), interrupted }
    }
}

impl From<Failure> for TransferUpdate {
    fn from(f: Failure) -> Self {
        if f.interrupted { TransferUpdate::Interrupted(f.text) } else { TransferUpdate::Failed(f.text) }
    }
}

/// What a transfer started while offline reports.
fn offline() -> TransferUpdate {
    TransferUpdate::Interrupted("Offline: it goes on once connected.".into())
}

fn error_text(e: &WireError) -> String {
    match e {
        WireError::Server { code, message } => refusal_text(*code, message),
        other => other.to_string(),
    }
}

impl FileTasks {
    /// Runs `cmd`. `client` is `None` while offline: transfers then fail at once (the user
    /// can retry after the reconnect).
    pub fn on_command(
        &mut self,
        cmd: FileCommand,
        client: Option<Client>,
        e2e: Option<E2e>,
        send: impl Fn(NetEvent) + Clone + Send + Sync + 'static,
    ) {
        self.running.retain(|_, t| !t.is_finished());
        let report = {
            let send = send.clone();
            move |id: TransferId, update: TransferUpdate| send(NetEvent::Transfer { id, update })
        };
        match cmd {
            FileCommand::Cancel { id } => {
                if let Some(task) = self.running.remove(&id) {
                    // Dropping the future is the cancel: the server keeps what it has.
                    task.abort();
                }
                report(id, TransferUpdate::Cancelled);
            }
            FileCommand::Open { path } => {
                tokio::task::spawn_blocking(move || open_path(&path));
            }
            FileCommand::Upload { id, conv, path } => {
                let Some(client) = client else {
                    return report(id, offline());
                };
                let tickets = Arc::clone(&self.tickets);
                let task = tokio::spawn(async move {
                    let update = match upload(&client, e2e.as_ref(), id, conv, &path, &tickets, &report).await
                    {
                        Ok(file) => {
                            lock(&tickets).remove(&id);
                            TransferUpdate::Done(file)
                        }
                        Err(e) => e.into(),
                    };
                    report(id, update);
                });
                self.running.insert(id, task);
            }
            FileCommand::Download { id, conv, file, dest, replace } => {
                let Some(client) = client else {
                    return report(id, offline());
                };
                let task =
                    tokio::spawn(async move {
                        let update =
                            match download(&client, e2e.as_ref(), id, &conv, &file, &dest, replace, &report)
                                .await
                            {
                                Ok(Some(file)) => TransferUpdate::Done(file),
                                Ok(None) => TransferUpdate::Exists,
                                Err(e) => e.into(),
                            };
                        report(id, update);
                    });
                self.running.insert(id, task);
            }
            FileCommand::Thumbnail { file, cache } => {
                let Some(client) = client else { return };
                tokio::spawn(async move {
                    let image = thumbnail(&client, &file, &cache).await;
                    send(NetEvent::Thumb(Thumb { file: file.id, image }));
                });
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Uploads `path` to `conv`. To a person the content is sealed end to end
/// ([`classchat_wire::sealed_file`]): the server gets a neutral name and the sealed
/// size, and the real ones travel in the sealed `meta`. Progress is in plaintext bytes.
async fn upload(
    client: &Client,
    e2e: Option<&E2e>,
    id: TransferId,
    conv: Conv,
    path: &Path,
    tickets: &Mutex<HashMap<TransferId, Kept>>,
    report: &(impl Fn(TransferId, TransferUpdate) + Send + Sync),
) -> Result<FileInfo, Failure> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| Failure { text: format!("{}: {e}", path.display()), interrupted: false })?
        .len();
    let kept = lock(tickets).get(&id).cloned();
    let kept = match kept {
        Some(k) => k,
        None => {
            let name = sanitize_file_name(&path.file_name().unwrap_or_default().to_string_lossy());
            let (name, sent_size, meta, secret) = match &conv {
                Conv::Direct { user } => {
                    let e2e = e2e.ok_or_else(|| Failure {
                        text: crate::e2e::NO_IDENTITY.into(),
                        interrupted: false,
                    })?;
                    let secret = FileSecret::new(&name, size, &FileKey::generate());
                    let meta = e2e
                        .seal_file(client, user, &secret)
                        .await
                        .map_err(|text| Failure { text, interrupted: false })?;
                    (String::new(), sealed_size(size), Some(meta), Some(secret))
                }
                _ => (name, size, None, None),
            };
            let ticket =
                client.upload_file(conv, &name, sent_size, meta).await.map_err(|e| Failure::from(&e))?;
            let k = Kept { ticket, secret };
            lock(tickets).insert(id, k.clone());
            k
        }
    };
    report(id, TransferUpdate::Started { file: kept.ticket.file, total: size });
    let mut throttle = Throttle::new();
    let sent_size = kept.secret.as_ref().map_or(size, |s| sealed_size(s.size));
    let progress = |done: u64| {
        if throttle.due() {
            report(id, TransferUpdate::Progress { done: plain_part(done, size, sent_size), total: size });
        }
    };
    let result = match &kept.secret {
        Some(secret) => client.upload_sealed_from(&kept.ticket, path, secret, progress).await,
        None => client.upload_from(&kept.ticket, path, progress).await,
    };
    match result {
        Ok(file) => Ok(file),
        Err(e @ WireError::Server { code: ErrorCode::NoSuchTransfer | ErrorCode::HashMismatch, .. }) => {
            // The server no longer knows this upload (expired, or it went wrong): the
            // next retry starts over with a new one.
            lock(tickets).remove(&id);
            Err(Failure::from(&e))
        }
        Err(e) => Err(Failure::from(&e)),
    }
}

/// `done` of `sent` (sealed) bytes, as plaintext bytes of a `plain`-byte file.
fn plain_part(done: u64, plain: u64, sent: u64) -> u64 {
    if sent == 0 { 0 } else { (u128::from(done) * u128::from(plain) / u128::from(sent)) as u64 }
}

/// `Ok(None)`: `dest` exists and `replace` was not given. A file a person sealed for us
/// ([`claims_sealed`]) is opened with the conversation key and decrypted on the way.
#[expect(clippy::too_many_arguments)]
async fn download(
    client: &Client,
    e2e: Option<&E2e>,
    id: TransferId,
    conv: &Conv,
    file: &FileInfo,
    dest: &Path,
    replace: bool,
    report: &(impl Fn(TransferId, TransferUpdate) + Send + Sync),
) -> Result<Option<FileInfo>, Failure> {
    if !replace && tokio::fs::try_exists(dest).await.unwrap_or(true) {
        return Ok(None);
    }
    let ticket = client.download_file(file.id).await.map_err(|e| Failure::from(&e))?;
    let sealed = matches!(conv, Conv::Direct { .. }) && claims_sealed(&ticket.file);
    let secret = match (sealed, e2e) {
        (false, _) => None,
        (true, None) => {
            return Err(Failure {
                text: "This computer has no key to decrypt it.".into(),
                interrupted: false,
            });
        }
        (true, Some(e2e)) => Some(e2e.open_file(client, &ticket.file).await.map_err(|why| Failure {
            text: format!("It could not be verified: {why}. It was not saved."),
            interrupted: false,
        })?),
    };
    let sent = ticket.file.size;
    let total = secret.as_ref().map_or(sent, |s| s.size);
    let mut throttle = Throttle::new();
    let progress = |done: u64| {
        if throttle.due() {
            report(id, TransferUpdate::Progress { done: plain_part(done, total, sent), total });
        }
    };
    let result = match &secret {
        Some(secret) => client.download_sealed_to(&ticket, dest, secret, progress).await,
        None => client.download_to(&ticket, dest, progress).await,
    };
    result.map(Some).map_err(|e| Failure::from(&e))
}

/// Downloads a small image into `cache` (unless it is there) and decodes a thumbnail.
async fn thumbnail(client: &Client, file: &FileInfo, cache: &Path) -> Option<egui::ColorImage> {
    if file.size > MAX_THUMB_SOURCE {
        return None;
    }
    let path = cache.join(format!("{}-{}", file.id, sanitize_file_name(&file.name)));
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        tokio::fs::create_dir_all(cache).await.ok()?;
        let ticket = client.download_file(file.id).await.ok()?;
        client.download_to(&ticket, &path, |_| {}).await.ok()?;
    }
    let cache = cache.to_owned();
    tokio::task::spawn_blocking(move || {
        // Touch it, so pruning sees it as recently used.
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        prune_cache(&cache, MAX_THUMB_CACHE);
        decode_thumbnail(&path)
    })
    .await
    .ok()
    .flatten()
}

/// Deletes the least recently modified files in `dir` until the rest total at most
/// `max` bytes. Blocking.
pub fn prune_cache(dir: &Path, max: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

/// Decodes an image file (png, jpeg, gif, webp only) into a thumbnail of at most
/// [`THUMB_SIZE`] pixels a side. Blocking: call it off the UI thread.
pub fn decode_thumbnail(path: &Path) -> Option<egui::ColorImage> {
    let reader = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?;
    match reader.format() {
        Some(
            image::ImageFormat::Png
            | image::ImageFormat::Jpeg
            | image::ImageFormat::Gif
            | image::ImageFormat::WebP,
        ) => {}
        _ => return None,
    }
    let (w, h) = reader.into_dimensions().ok()?;
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return None;
    }
    let img = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?.decode().ok()?;
    let small = img.thumbnail(THUMB_SIZE, THUMB_SIZE).to_rgba8();
    let size = [small.width() as usize, small.height() as usize];
    Some(egui::ColorImage::from_rgba_unmultiplied(size, small.as_raw()))
}

/// Opens `path` with the desktop's default application. No shell is involved.
pub fn open_path(path: &Path) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(program).arg(path).spawn() {
        // Reap it in the background so it leaves no zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!("{program} {}: {e}", path.display()),
    }
}

/// Does the name say png, jpg, gif or webp?
pub fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg", ".gif", ".webp"].iter().any(|ext| lower.ends_with(ext))
}

/// 1234567 → "1.2 MB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// "1 min 5 s", "42 s".
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

// ---- the UI's side -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum TransferState {
    Running,
    Done,
    Failed(String),
    Cancelled,
    /// The destination exists; the panel asks whether to replace it.
    Exists,
}

/// One upload or download, as the transfers panel shows it.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: TransferId,
    pub dir: Direction,
    pub name: String,
    /// Upload: the file sent. Download: where it is saved.
    pub path: PathBuf,
    pub conv: Conv,
    /// Download: the file. Upload: the stored file, once done.
    pub file: Option<FileInfo>,
    /// The server's id (uploads learn it when accepted).
    pub file_id: Option<FileId>,
    pub total: u64,
    pub done: u64,
    pub state: TransferState,
    /// Stopped by a lost connection: started again after the next login.
    pub resume_on_reconnect: bool,
    /// Bytes per second, smoothed.
    pub speed: f64,
    last: Option<(Instant, u64)>,
    /// A transfer between two classmates ([`crate::sharing`]), not through the server's
    /// file store.
    pub peer: Option<crate::sharing::PeerRoute>,
}

impl Transfer {
    pub fn fraction(&self) -> f32 {
        if self.state == TransferState::Done {
            return 1.0;
        }
        if self.total == 0 { 0.0 } else { (self.done as f64 / self.total as f64).clamp(0.0, 1.0) as f32 }
    }

    /// Time left at the current speed.
    pub fn eta(&self) -> Option<Duration> {
        if self.state != TransferState::Running || self.speed < 1.0 {
            return None;
        }
        Some(Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / self.speed))
    }

    pub fn is_running(&self) -> bool {
        self.state == TransferState::Running
    }

    fn progress(&mut self, done: u64, now: Instant) {
        if let Some((t, bytes)) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt >= 0.05 {
                let rate = done.saturating_sub(bytes) as f64 / dt;
                self.speed = if self.speed == 0.0 { rate } else { 0.6 * self.speed + 0.4 * rate };
                self.last = Some((now, done));
            }
        } else {
            self.last = Some((now, done));
        }
        self.done = done;
    }
}

/// An offer of a file to one person, seen by either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// For an end-to-end encrypted offer made to us, the name and size are the real
    /// ones, opened from its `meta`.
    pub file: FileInfo,
    /// The other person.
    pub peer: String,
    /// Made to us (we accept or decline) rather than by us.
    pub incoming: bool,
    pub state: OfferState,
    pub seal: OfferSeal,
}

/// Whether a file sent to a person claims to be end-to-end encrypted: it carries a sealed
/// description in `meta` (PROTOCOL.md 15.5). One whose description does not open is
/// unverified, never plain.
pub fn claims_sealed(file: &FileInfo) -> bool {
    file.meta.is_some()
}

/// Whether an offer's content is end-to-end encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferSeal {
    /// Sealed for us; its description opened and its signature checked out.
    Encrypted,
    /// Sent without end-to-end encryption (by an older app).
    Plain,
    /// Claims to be sealed but does not open or verify: it cannot be accepted.
    Unverified(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferState {
    /// Incoming: not answered yet. Outgoing: uploading or waiting for the answer.
    Pending,
    Accepted,
    Declined,
}

/// The UI's file state: transfers, offers and thumbnails. Every list is bounded.
#[derive(Default)]
pub struct Files {
    transfers: VecDeque<Transfer>,
    next_id: TransferId,
    offers: VecDeque<Offer>,
    thumbs: HashMap<FileId, Option<egui::TextureHandle>>,
    thumb_order: VecDeque<FileId>,
    /// Thumbnails asked for and not back yet.
    thumbs_loading: std::collections::HashSet<FileId>,
    pub panel_open: bool,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("transfers", &self.transfers.len())
            .field("offers", &self.offers.len())
            .field("thumbs", &self.thumbs.len())
            .finish_non_exhaustive()
    }
}

impl Files {
    pub fn transfers(&self) -> impl DoubleEndedIterator<Item = &Transfer> {
        self.transfers.iter()
    }

    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        self.transfers.iter().find(|t| t.id == id)
    }

    pub fn transfer_mut(&mut self, id: TransferId) -> Option<&mut Transfer> {
        self.transfers.iter_mut().find(|t| t.id == id)
    }

    pub fn running_count(&self) -> usize {
        self.transfers.iter().filter(|t| t.is_running()).count()
    }

    /// Adds a transfer and returns its id.
    pub fn add(
        &mut self,
        dir: Direction,
        name: String,
        path: PathBuf,
        conv: Conv,
        file: Option<FileInfo>,
    ) -> TransferId {
        self.next_id += 1;
        let id = self.next_id;
        let (total, file_id) = file.as_ref().map(|f| (f.size, Some(f.id))).unwrap_or((0, None));
        self.transfers.push_back(Transfer {
            id,
            dir,
            name,
            path,
            conv,
            file,
            file_id,
            total,
            done: 0,
            state: TransferState::Running,
            resume_on_reconnect: false,
            speed: 0.0,
            last: None,
            peer: None,
        });
        while self.transfers.len() > MAX_TRANSFERS {
            match self.transfers.iter().position(|t| !t.is_running()) {
                Some(i) => {
                    self.transfers.remove(i);
                }
                None => break,
            }
        }
        id
    }

    /// Adds a transfer between classmates ([`crate::sharing`]) and returns its id.
    pub fn add_peer(
        &mut self,
        dir: Direction,
        name: String,
        path: PathBuf,
        conv: Conv,
        total: u64,
        route: crate::sharing::PeerRoute,
    ) -> TransferId {
        let id = self.add(dir, name, path, conv, None);
        if let Some(t) = self.transfer_mut(id) {
            t.total = total;
            t.peer = Some(route);
        }
        id
    }

    /// The transfer showing a classmate's fetch from us (the net task's `upload` number).
    pub fn upload_transfer(&self, upload: u64) -> Option<TransferId> {
        self.transfers
            .iter()
            .rev()
            .find(|t| t.peer.as_ref().is_some_and(|p| p.upload == Some(upload)))
            .map(|t| t.id)
    }

    /// A retry starts the transfer again (it resumes where it stopped).
    pub fn forget(&mut self, id: TransferId) {
        self.transfers.retain(|t| t.id != id || t.is_running());
    }

    /// Transfers a lost connection stopped, to start again once logged in.
    pub fn interrupted(&self) -> Vec<TransferId> {
        self.transfers.iter().filter(|t| t.resume_on_reconnect).map(|t| t.id).collect()
    }

    pub fn restart(&mut self, id: TransferId) -> Option<&Transfer> {
        let t = self.transfer_mut(id)?;
        t.state = TransferState::Running;
        t.resume_on_reconnect = false;
        t.speed = 0.0;
        t.last = None;
        Some(t)
    }

    /// Applies an update from the net task; returns the transfer for follow-ups.
    pub fn update(&mut self, id: TransferId, update: TransferUpdate) -> Option<&Transfer> {
        let t = self.transfers.iter_mut().find(|t| t.id == id)?;
        match update {
            TransferUpdate::Started { file, total } => {
                t.file_id = Some(file);
                t.total = total;
            }
            TransferUpdate::Progress { done, total } => {
                t.total = total;
                if t.state == TransferState::Running {
                    t.progress(done, Instant::now());
                }
            }
            TransferUpdate::Done(file) => {
                t.done = file.size;
                t.total = file.size;
                t.file_id = Some(file.id);
                t.file = Some(file);
                t.state = TransferState::Done;
            }
            TransferUpdate::Finished => {
                t.done = t.total;
                t.state = TransferState::Done;
            }
            TransferUpdate::Failed(why) => {
                if t.state == TransferState::Running {
                    t.state = TransferState::Failed(why);
                }
            }
            TransferUpdate::Interrupted(why) => {
                if t.state == TransferState::Running {
                    t.state = TransferState::Failed(why);
                    t.resume_on_reconnect = true;
                }
            }
            TransferUpdate::Exists => t.state = TransferState::Exists,
            TransferUpdate::Cancelled => {
                if t.state == TransferState::Running {
                    t.state = TransferState::Cancelled;
                }
            }
        }
        Some(t)
    }

    /// The latest download of `file`, if any.
    pub fn download_of(&self, file: FileId) -> Option<&Transfer> {
        self.transfers.iter().rev().find(|t| t.dir == Direction::Down && t.file_id == Some(file))
    }

    // ---- offers ----

    /// Adds an offer, or updates the one with its id. Returns whether it is new.
    pub fn add_offer(&mut self, offer: Offer) -> bool {
        if let Some(o) =
            self.offers.iter_mut().find(|o| o.file.id == offer.file.id && o.incoming == offer.incoming)
        {
            o.file = offer.file;
            o.seal = offer.seal;
            return false;
        }
        self.offers.push_back(offer);
        while self.offers.len() > MAX_OFFERS {
            match self.offers.iter().position(|o| o.state != OfferState::Pending) {
                Some(i) => {
                    self.offers.remove(i);
                }
                None => {
                    self.offers.pop_front();
                }
            }
        }
        true
    }

    pub fn set_offer_state(&mut self, file: FileId, incoming: bool, state: OfferState) {
        if let Some(o) = self.offers.iter_mut().find(|o| o.file.id == file && o.incoming == incoming) {
            o.state = state;
        }
    }

    /// Offers exchanged with `peer`, oldest first.
    pub fn offers_with<'a>(&'a self, peer: &'a str) -> impl Iterator<Item = &'a Offer> + 'a {
        self.offers.iter().filter(move |o| o.peer.eq_ignore_ascii_case(peer))
    }

    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.iter()
    }

    // ---- thumbnails ----

    /// The thumbnail of `file`: `None` if not asked for yet (the caller asks), `Some(None)`
    /// while loading or if it could not be made.
    pub fn thumb(&self, file: FileId) -> Option<Option<&egui::TextureHandle>> {
        if self.thumbs_loading.contains(&file) {
            return Some(None);
        }
        self.thumbs.get(&file).map(Option::as_ref)
    }

    pub fn thumb_requested(&mut self, file: FileId) {
        self.thumbs_loading.insert(file);
    }

    pub fn on_thumb(&mut self, ctx: &egui::Context, thumb: Thumb) {
        self.thumbs_loading.remove(&thumb.file);
        let texture = thumb
            .image
            .map(|img| ctx.load_texture(format!("thumb-{}", thumb.file), img, egui::TextureOptions::LINEAR));
        if self.thumbs.insert(thumb.file, texture).is_none() {
            self.thumb_order.push_back(thumb.file);
        }
        while self.thumb_order.len() > MAX_THUMBS {
            if let Some(old) = self.thumb_order.pop_front() {
                self.thumbs.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbnail_cache_keeps_the_newest_files_within_its_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = std::time::SystemTime::now();
        for (i, name) in ["old", "middle", "new"].iter().enumerate() {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; 1000]).expect("write");
            let f = std::fs::File::options().append(true).open(&path).expect("open");
            f.set_modified(now - Duration::from_secs(100 - 10 * i as u64)).expect("mtime");
        }
        prune_cache(dir.path(), 2500);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["middle", "new"]);
        prune_cache(dir.path(), 5000);
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 2, "under the bound nothing goes");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1_234_567), "1.2 MB");
        assert_eq!(human_size(1 << 30), "1.1 GB");
        assert_eq!(human_duration(Duration::from_secs(42)), "42 s");
        assert_eq!(human_duration(Duration::from_secs(65)), "1 min 5 s");
    }

    #[test]
    fn images_are_recognised_by_extension() {
        assert!(is_image("a.PNG") && is_image("b.jpeg") && is_image("c.webp") && is_image("d.gif"));
        assert!(!is_image("e.pdf") && !is_image("png"));
    }

    #[test]
    fn finished_transfers_are_forgotten_first_past_the_bound() {
        let mut files = Files::default();
        let first = files.add(Direction::Up, "keep".into(), PathBuf::new(), Conv::room("r"), None);
        for i in 0..MAX_TRANSFERS + 10 {
            let id = files.add(Direction::Up, format!("f{i}"), PathBuf::new(), Conv::room("r"), None);
            files.update(id, TransferUpdate::Cancelled);
        }
        assert!(files.transfers().count() <= MAX_TRANSFERS);
        assert!(files.transfer(first).is_some(), "a running transfer is never dropped");
    }
}
