//! Shared files: the registry (quotas, tokens, offers), the content store on disk, bulk
//! connections, and the retention sweep. PROTOCOL.md section 15 is the contract.
//!
//! On disk, under `DATA_DIR/files/`: complete files named by the hex SHA-256 of their
//! content (identical uploads share one copy), and unfinished uploads as
//! `tmp/ID.part`. Names from the network are never part of a path. An upload is renamed
//! to its final name only after the hash of what arrived matches the uploader's.
//! With a PostgreSQL store the content is also written there before the upload is
//! acknowledged, and a node that lacks a file on disk fetches it from there into
//! `files/` before serving it (`Store::put_blob`, `Store::fetch_blob`).
//!
//! The registry is one std `Mutex` (never held across `.await`). An upload in progress
//! also has an async mutex around its open file and running hash, held by the bulk
//! connection attached to it, so a reattachment takes over exactly where the previous
//! one stopped.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use classchat_wire::chunk::{ChunkRecord, SEAL_BATCH, SEND_CHUNK_LEN};
use classchat_wire::connection::{Received, SecureReader, SecureWriter};
use classchat_wire::{
    ClientMsg, ErrorCode, Event, FileId, FileInfo, MAX_CHUNK_LEN, Request, RequestId, Response, ServerMsg,
};
use sha2::{Digest, Sha256};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::handlers::ApiError;
use crate::state::{Lc, State};
use crate::store::{FileRow, Write as StoreWrite, now_ms};

/// Folder of the content store inside the data dir.
pub const FILES_DIR: &str = "files";
/// Unfinished uploads, inside [`FILES_DIR`].
const TMP_DIR: &str = "tmp";
/// Chunks between the network and the disk of an upload (4 × 512 KiB).
const PIPELINE_DEPTH: usize = 4;
/// Batches of [`SEAL_BATCH`] chunks of [`SEND_CHUNK_LEN`] between the disk and the network
/// of a download (a batch is sealed at once: their CBC chains run in lockstep). With the
/// batch being read and the one being sealed, a download holds at most 3 × 8 × 256 KiB =
/// 6 MiB.
const BATCHES_IN_FLIGHT: usize = 1;
/// How long a download that follows an upload in progress holds chunks it has read while
/// it waits for a whole batch: a stalled uploader delays the downloader by no more.
const FOLLOW_WAIT: Duration = Duration::from_millis(20);
/// How long a download token stays valid, and how many one user may hold.
const GRANT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const GRANTS_PER_USER: usize = 64;
/// How long a new attachment to an upload waits for an older one to let go.
const TAKEOVER_GRACE: Duration = Duration::from_secs(2);

pub type TokenHash = [u8; 32];

fn hash_token(token: &[u8]) -> TokenHash {
    Sha256::digest(token).into()
}

/// How far an upload in progress has got, for downloads that follow it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes written to the temporary file.
    pub written: u64,
    /// Set when the upload ends: the content's hash, or why it failed.
    pub outcome: Option<Result<[u8; 32], ErrorCode>>,
}

/// An upload in progress.
pub struct Upload {
    /// The open file and running hash, held by the attached bulk connection.
    io: tokio::sync::Mutex<Option<UploadIo>>,
    /// Cancels the attached connection (a newer attachment, a decline, a removal).
    attached: Mutex<CancellationToken>,
    progress: watch::Sender<Progress>,
}

struct UploadIo {
    file: std::fs::File,
    hasher: Sha256,
    received: u64,
}

pub struct Entry {
    pub row: FileRow,
    /// `Some` while uploading.
    pub upload: Option<Arc<Upload>>,
}

impl Entry {
    pub fn info(&self) -> FileInfo {
        FileInfo {
            id: self.row.id,
            from: self.row.sender.clone(),
            name: self.row.name.clone(),
            size: self.row.size,
            sha256: self.row.sha256.clone().unwrap_or_default(),
            meta: self.row.meta.clone(),
        }
    }
}

struct Grant {
    file: FileId,
    expires: Instant,
}

#[derive(Default)]
pub struct Registry {
    pub by_id: HashMap<FileId, Entry>,
    by_token: HashMap<TokenHash, FileId>,
    usage: HashMap<Lc, u64>,
    total: u64,
    next_id: FileId,
    grants: HashMap<TokenHash, Grant>,
    grants_by_user: HashMap<Lc, VecDeque<TokenHash>>,
}

/// The file registry and the content store.
pub struct Files {
    dir: PathBuf,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn new_upload(written: u64) -> Arc<Upload> {
    Arc::new(Upload {
        io: tokio::sync::Mutex::new(None),
        attached: Mutex::new(CancellationToken::new()),
        progress: watch::channel(Progress { written, outcome: None }).0,
    })
}

impl Files {
    /// The registry of `rows` (from the database) over the content store in `data_dir`.
    /// The registry of `rows`, with their content in `dir`.
    pub fn new(dir: PathBuf, rows: Vec<FileRow>) -> Self {
        if let Err(e) = std::fs::create_dir_all(dir.join(TMP_DIR)) {
            tracing::error!(error = %e, dir = %dir.display(), "cannot create the file store");
        }
        let mut reg = Registry { next_id: 1, ..Registry::default() };
        for row in rows {
            reg.next_id = reg.next_id.max(row.id + 1);
            *reg.usage.entry(row.owner_lc.clone()).or_default() += row.size;
            reg.total += row.size;
            let upload = if row.sha256.is_none() {
                if let Ok(hash) = TokenHash::try_from(row.token_hash.as_slice()) {
                    reg.by_token.insert(hash, row.id);
                }
                let written = std::fs::metadata(tmp_path(&dir, row.id)).map(|m| m.len()).unwrap_or(0);
                Some(new_upload(written))
            } else {
                None
            };
            reg.by_id.insert(row.id, Entry { row, upload });
        }
        Self { dir, registry: Mutex::new(reg) }
    }

    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Another node of the cluster registered a file (its upload runs there).
    pub fn remote_created(&self, row: FileRow) {
        let mut reg = self.lock();
        if reg.by_id.contains_key(&row.id) {
            return;
        }
        *reg.usage.entry(row.owner_lc.clone()).or_default() += row.size;
        reg.total += row.size;
        let upload = row.sha256.is_none().then(|| new_upload(0));
        reg.by_id.insert(row.id, Entry { row, upload });
    }

    /// Another node stored a file's content: downloads here may start or go on.
    pub fn remote_completed(&self, id: FileId, sha256: Vec<u8>, completed: classchat_wire::Timestamp) {
        let mut reg = self.lock();
        let Some(entry) = reg.by_id.get_mut(&id) else { return };
        if let (Some(upload), Ok(hash)) = (entry.upload.take(), <[u8; 32]>::try_from(sha256.as_slice())) {
            upload.progress.send_modify(|p| p.outcome = Some(Ok(hash)));
        }
        entry.row.sha256 = Some(sha256);
        entry.row.completed = Some(completed);
    }

    /// Another node's recipient accepted an offer.
    pub fn remote_accepted(&self, id: FileId) {
        if let Some(e) = self.lock().by_id.get_mut(&id) {
            e.row.accepted = true;
        }
    }

    fn blob_path(&self, sha256: &[u8]) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    /// Checks the size limit and quotas and reserves the file (as `shared_id` when the
    /// store gave one, `Store::next_file_id`): the row to commit and the upload token. The caller commits the row, or calls [`Files::forget`] on failure.
    #[expect(clippy::too_many_arguments, reason = "the fields of one new file")]
    pub fn reserve(
        &self,
        config: &crate::Config,
        owner_lc: &str,
        sender: String,
        conv: String,
        recipient_lc: Option<String>,
        name: String,
        size: u64,
        meta: Option<Vec<u8>>,
        shared_id: Option<FileId>,
    ) -> Result<(FileRow, Vec<u8>), ApiError> {
        if size > config.max_file_size {
            return Err(ApiError::new(
                ErrorCode::FileTooLarge,
                format!("the file is {size} bytes; this server accepts at most {}", config.max_file_size),
            ));
        }
        let mut token = vec![0u8; classchat_wire::TRANSFER_TOKEN_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut token);
        let mut reg = self.lock();
        let used = reg.usage.get(owner_lc).copied().unwrap_or(0);
        if used.saturating_add(size) > config.user_file_quota {
            return Err(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "your files take {used} bytes; with this one they would pass your quota of {} bytes",
                    config.user_file_quota
                ),
            ));
        }
        if reg.total.saturating_add(size) > config.total_file_quota {
            return Err(ApiError::new(ErrorCode::QuotaExceeded, "the server's file storage is full"));
        }
        // A store several nodes share gives the id; otherwise this node counts.
        let id = shared_id.unwrap_or(reg.next_id);
        reg.next_id = reg.next_id.max(id + 1);
        let token_hash = hash_token(&token);
        let row = FileRow {
            id,
            owner_lc: owner_lc.to_owned(),
            sender,
            conv,
            recipient_lc,
            name,
            size,
            meta,
            sha256: None,
            token_hash: token_hash.to_vec(),
            accepted: false,
            created: now_ms(),
            completed: None,
        };
        *reg.usage.entry(owner_lc.to_owned()).or_default() += size;
        reg.total += size;
        reg.by_token.insert(token_hash, id);
        reg.by_id.insert(id, Entry { row: row.clone(), upload: Some(new_upload(0)) });
        Ok((row, token))
    }

    /// Drops `id` from the registry and the disk (not from the database). Uploads and
    /// downloads following it stop.
    pub fn forget(&self, id: FileId) -> Option<Entry> {
        let (entry, shared) = {
            let mut reg = self.lock();
            let entry = reg.by_id.remove(&id)?;
            reg.by_token.retain(|_, f| *f != id);
            if let Some(u) = reg.usage.get_mut(&entry.row.owner_lc) {
                *u = u.saturating_sub(entry.row.size);
            }
            reg.total = reg.total.saturating_sub(entry.row.size);
            let shared = entry
                .row
                .sha256
                .as_ref()
                .is_some_and(|h| reg.by_id.values().any(|e| e.row.sha256.as_ref() == Some(h)));
            (entry, shared)
        };
        if let Some(upload) = &entry.upload {
            lock(&upload.attached).cancel();
            upload.progress.send_modify(|p| {
                p.outcome.get_or_insert(Err(ErrorCode::NoSuchFile));
            });
            let _ = std::fs::remove_file(tmp_path(&self.dir, id));
        }
        if let Some(hash) = &entry.row.sha256
            && !shared
            && let Err(e) = std::fs::remove_file(self.blob_path(hash))
        {
            tracing::warn!(error = %e, file = id, "could not delete a stored file");
        }
        Some(entry)
    }

    /// A download token for `user`, valid for [`GRANT_LIFETIME`]; the user's oldest is
    /// dropped beyond [`GRANTS_PER_USER`].
    pub fn grant(&self, user: &str, file: FileId) -> Vec<u8> {
        let mut token = vec![0u8; classchat_wire::TRANSFER_TOKEN_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut token);
        let hash = hash_token(&token);
        let mut reg = self.lock();
        reg.grants.insert(hash, Grant { file, expires: Instant::now() + GRANT_LIFETIME });
        let mine = reg.grants_by_user.entry(user.to_owned()).or_default();
        mine.push_back(hash);
        let dropped = if mine.len() > GRANTS_PER_USER { mine.pop_front() } else { None };
        if let Some(old) = dropped {
            reg.grants.remove(&old);
        }
        token
    }

    /// Stored files, oldest first: for the admin's `files` command.
    pub fn list(&self) -> Vec<(FileRow, bool)> {
        let reg = self.lock();
        let mut rows: Vec<_> = reg.by_id.values().map(|e| (e.row.clone(), e.upload.is_some())).collect();
        rows.sort_by_key(|(r, _)| r.id);
        rows
    }

    /// Pending offers to `user`, oldest first.
    pub fn offers_to(&self, user: &str) -> Vec<FileInfo> {
        let reg = self.lock();
        let mut v: Vec<&Entry> = reg
            .by_id
            .values()
            .filter(|e| !e.row.accepted && e.row.recipient_lc.as_deref() == Some(user))
            .collect();
        v.sort_by_key(|e| e.row.id);
        v.into_iter().map(Entry::info).collect()
    }

    /// Ids of files past the retention period.
    fn expired(&self, retention: Duration) -> Vec<FileId> {
        let cutoff = now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let reg = self.lock();
        reg.by_id
            .values()
            .filter(|e| e.row.completed.unwrap_or(e.row.created) < cutoff)
            .map(|e| e.row.id)
            .collect()
    }

    /// Deletes unfinished-upload files that no upload owns (left by a crash).
    fn remove_strays(&self) {
        let Ok(dir) = std::fs::read_dir(self.dir.join(TMP_DIR)) else { return };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| n.strip_suffix(".part")).and_then(|n| n.parse::<u64>().ok());
            let owned = id.is_some_and(|id| self.lock().by_id.get(&id).is_some_and(|e| e.upload.is_some()));
            if !owned {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn tmp_path(dir: &Path, id: FileId) -> PathBuf {
    dir.join(TMP_DIR).join(format!("{id}.part"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes a file everywhere: registry, disk, database.
pub async fn delete(state: &State, id: FileId) -> Option<Entry> {
    let entry = state.files.forget(id)?;
    if let Err(e) = state.store.commit(vec![StoreWrite::DeleteFile { id }]).await {
        tracing::error!(error = %e, file = id, "could not delete a file's record");
    }
    Some(entry)
}

/// Deletes every file past the retention period; returns how many.
pub async fn sweep(state: &State) -> usize {
    let expired = state.files.expired(state.config.file_retention());
    let mut n = 0;
    for id in expired {
        if delete(state, id).await.is_some() {
            n += 1;
        }
    }
    state.files.remove_strays();
    if n > 0 {
        tracing::info!(files = n, "deleted expired files");
    }
    n
}

/// Sweeps now and then every tenth of the retention period (1 s to 1 h) until shutdown.
pub async fn sweep_task(state: State) {
    let every = (state.config.file_retention() / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        sweep(&state).await;
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

type Reader = SecureReader<OwnedReadHalf>;
type Writer = SecureWriter<OwnedWriteHalf>;

fn err(id: RequestId, e: ApiError) -> ServerMsg {
    ServerMsg::Err { id, code: e.code, message: e.message }
}

/// Serves a bulk connection whose first request was `attach_upload` or `attach_download`.
pub async fn serve_bulk(state: &State, reader: Reader, mut writer: Writer, id: RequestId, req: Request) {
    let result = match req {
        Request::AttachUpload { token } => upload(state, reader, &mut writer, id, &token).await,
        Request::AttachDownload { token, offset } => {
            download(state, reader, &mut writer, id, &token, offset).await
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "bulk connection ended");
    }
    let _ = writer.shutdown().await;
}

/// How an attached upload stopped.
enum Stop {
    Finish(RequestId, Vec<u8>),
    /// The client left, went silent, broke the protocol, or was replaced.
    Detach(Option<String>),
}

async fn upload(
    state: &State,
    mut reader: Reader,
    writer: &mut Writer,
    id: RequestId,
    token: &[u8],
) -> classchat_wire::Result<()> {
    let found = {
        let reg = state.files.lock();
        reg.by_token
            .get(&hash_token(token))
            .and_then(|fid| reg.by_id.get(fid))
            .and_then(|e| e.upload.clone().map(|u| (e.row.id, e.row.size, u)))
    };
    let Some((file_id, size, upload)) = found else {
        let e = ApiError::new(ErrorCode::NoSuchTransfer, "no upload has this token (finished or expired?)");
        return writer.send(&err(id, e)).await;
    };
    // An older attachment hands the file and hash back through the mutex. One whose
    // client has gone reads what is already buffered and stops by itself; one still
    // alive after a grace period (a half-open connection) is told to stop.
    let older = lock(&upload.attached).clone();
    let mut slot = tokio::select! {
        g = upload.io.lock() => g,
        () = tokio::time::sleep(TAKEOVER_GRACE) => {
            older.cancel();
            upload.io.lock().await
        }
    };
    let mine = CancellationToken::new();
    *lock(&upload.attached) = mine.clone();
    if state.files.lock().by_id.get(&file_id).is_none_or(|e| e.upload.is_none()) {
        let e = ApiError::new(ErrorCode::NoSuchTransfer, "the upload was cancelled or finished");
        return writer.send(&err(id, e)).await;
    }
    let io = match slot.take() {
        Some(io) => io,
        None => {
            let path = tmp_path(&state.files.dir, file_id);
            match tokio::task::spawn_blocking(move || open_upload(&path)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => return writer.send(&err(id, ApiError::internal(e))).await,
                Err(e) => return writer.send(&err(id, ApiError::internal(e))).await,
            }
        }
    };
    let mut received = io.received;
    writer.send(&ServerMsg::Ok { id, body: Response::Attached { offset: received } }).await?;

    let (tx, rx) = mpsc::channel::<Bytes>(PIPELINE_DEPTH);
    let disk_upload = Arc::clone(&upload);
    let disk = tokio::task::spawn_blocking(move || write_chunks(io, rx, &disk_upload));
    let idle = state.config.heartbeat_timeout();
    let stop = loop {
        let msg = tokio::select! {
            biased;
            () = mine.cancelled() => break Stop::Detach(Some("the transfer was taken over or cancelled".into())),
            () = state.shutdown.cancelled() => break Stop::Detach(Some("the server is shutting down".into())),
            m = tokio::time::timeout(idle, reader.recv_chunk_or::<ClientMsg>()) => m,
        };
        let msg = match msg {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None) | Err(_)) => break Stop::Detach(None),
            Err(_) => break Stop::Detach(Some(format!("no data for {idle:?}"))),
        };
        // A chunk comes out of the frame's buffer as it is; one encoded some other way
        // (serde still reads it) is taken as well.
        let data = match msg {
            Received::Chunk(data) => data,
            Received::Msg(ClientMsg::Chunk { data }) => Bytes::from(data),
            Received::Msg(ClientMsg::Request { id, body: Request::FinishUpload { sha256 } }) => {
                break Stop::Finish(id, sha256);
            }
            Received::Msg(ClientMsg::Pong { .. }) => continue,
            Received::Msg(_) => break Stop::Detach(Some("unexpected message on an upload".into())),
        };
        let len = data.len() as u64;
        if data.len() > MAX_CHUNK_LEN || received + len > size {
            break Stop::Detach(Some(format!("more than the announced {size} bytes, or a chunk too large")));
        }
        received += len;
        state.peers.traffic.add_bulk(len);
        if tx.send(data).await.is_err() {
            break Stop::Detach(Some("the server could not write the file".into()));
        }
    };
    drop(tx);
    let (io, written) = match disk.await {
        Ok(r) => r,
        Err(e) => (None, Err(std::io::Error::other(e))),
    };
    if let Err(e) = &written {
        tracing::error!(error = %e, file = file_id, "writing an upload failed");
    }
    match stop {
        Stop::Detach(reason) => {
            *slot = io;
            if let Some(reason) = reason {
                let _ = writer.send(&ServerMsg::Event { event: Event::Disconnect { reason } }).await;
            }
            Ok(())
        }
        Stop::Finish(fid, sha256) => {
            let reply = match (io, written) {
                (Some(io), Ok(())) => finish(state, file_id, size, io, &sha256, &mut slot).await,
                _ => Err(ApiError::internal("the upload could not be written")),
            };
            let msg = match reply {
                Ok(file) => ServerMsg::Ok { id: fid, body: Response::File { file } },
                Err(e) => err(fid, e),
            };
            writer.send(&msg).await
        }
    }
}

/// Opens (or creates) an upload's temporary file and hashes what it already holds.
fn open_upload(path: &Path) -> std::io::Result<UploadIo> {
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MAX_CHUNK_LEN];
    let mut received = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        received += n as u64;
    }
    file.seek(SeekFrom::Start(received))?;
    Ok(UploadIo { file, hasher, received })
}

/// The disk side of an upload: hash and write each chunk, publishing progress. Returns
/// the state to continue from, or `None` after a failed write (the next attachment
/// reopens the file and hashes what really got there).
fn write_chunks(
    mut io: UploadIo,
    mut rx: mpsc::Receiver<Bytes>,
    upload: &Upload,
) -> (Option<UploadIo>, std::io::Result<()>) {
    while let Some(data) = rx.blocking_recv() {
        if let Err(e) = io.file.write_all(&data) {
            return (None, Err(e));
        }
        io.hasher.update(&data);
        io.received += data.len() as u64;
        let received = io.received;
        upload.progress.send_modify(|p| p.written = received);
    }
    (Some(io), Ok(()))
}

/// Checks the hash and stores a complete upload; a room file is announced in the room.
async fn finish(
    state: &State,
    file_id: FileId,
    size: u64,
    io: UploadIo,
    claimed: &[u8],
    slot: &mut Option<UploadIo>,
) -> Result<FileInfo, ApiError> {
    if io.received != size {
        let msg = format!("only {} of {size} bytes arrived; send the rest", io.received);
        *slot = Some(io);
        return Err(ApiError::new(ErrorCode::BadRequest, msg));
    }
    let actual: [u8; 32] = io.hasher.clone().finalize().into();
    if claimed != actual {
        publish(state, file_id, Err(ErrorCode::HashMismatch));
        delete(state, file_id).await;
        return Err(ApiError::new(
            ErrorCode::HashMismatch,
            "the bytes that arrived do not have the SHA-256 you sent; nothing was kept, upload it again",
        ));
    }
    let tmp = tmp_path(&state.files.dir, file_id);
    let blob = state.files.blob_path(&actual);
    let file = io.file;
    let stored = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        file.sync_all()?;
        drop(file);
        if blob.exists() { std::fs::remove_file(&tmp) } else { std::fs::rename(&tmp, &blob) }
    })
    .await
    .map_err(ApiError::internal)?;
    stored.map_err(ApiError::internal)?;
    // On a store other nodes share (PostgreSQL), the content goes there too, before the
    // upload is acknowledged: any node can then serve it.
    state
        .store
        .put_blob(actual.to_vec(), state.files.blob_path(&actual))
        .await
        .map_err(ApiError::internal)?;
    let completed = now_ms();
    let (info, conv) = {
        let mut reg = state.files.lock();
        let Some(entry) = reg.by_id.get_mut(&file_id) else {
            return Err(ApiError::new(ErrorCode::NoSuchFile, "the file was removed meanwhile"));
        };
        entry.row.sha256 = Some(actual.to_vec());
        entry.row.completed = Some(completed);
        let info = entry.info();
        let conv = entry.row.conv.clone();
        reg.by_token.retain(|_, f| *f != file_id);
        (info, conv)
    };
    let mut writes = vec![StoreWrite::CompleteFile { id: file_id, sha256: actual.to_vec(), completed }];
    if conv.starts_with("r:") {
        writes.push(StoreWrite::Message {
            conv,
            sender: info.from.clone(),
            body: classchat_wire::Body::File { file: info.clone() },
            reply_to: None,
        });
    }
    crate::handlers::commit(state, writes, None).await?;
    publish(state, file_id, Ok(actual));
    if let Some(entry) = state.files.lock().by_id.get_mut(&file_id) {
        entry.upload = None;
    }
    Ok(info)
}

/// Tells downloads following an upload how it ended.
fn publish(state: &State, file_id: FileId, outcome: Result<[u8; 32], ErrorCode>) {
    if let Some(upload) = state.files.lock().by_id.get(&file_id).and_then(|e| e.upload.as_ref()) {
        upload.progress.send_modify(|p| p.outcome = Some(outcome));
    }
}

/// What the disk side of a download hands the network side.
enum Out {
    /// Up to [`SEAL_BATCH`] chunks, to be sealed together.
    Chunks(Vec<ChunkRecord>),
    Done([u8; 32]),
    Failed(ErrorCode),
}

async fn download(
    state: &State,
    mut reader: Reader,
    writer: &mut Writer,
    id: RequestId,
    token: &[u8],
    offset: u64,
) -> classchat_wire::Result<()> {
    let found = {
        let mut reg = state.files.lock();
        let hash = hash_token(token);
        match reg.grants.get(&hash) {
            Some(g) if g.expires > Instant::now() => {
                let file = g.file;
                reg.by_id
                    .get(&file)
                    .map(|e| (e.info(), e.upload.as_ref().map(|u| u.progress.subscribe())))
                    .ok_or_else(|| ApiError::new(ErrorCode::NoSuchFile, "the file was removed or expired"))
            }
            Some(_) => {
                reg.grants.remove(&hash);
                Err(ApiError::new(ErrorCode::NoSuchTransfer, "the download token expired; ask again"))
            }
            None => Err(ApiError::new(ErrorCode::NoSuchTransfer, "no download has this token")),
        }
    };
    let (info, progress) = match found {
        Ok(f) => f,
        Err(e) => return writer.send(&err(id, e)).await,
    };
    if offset > info.size {
        let e =
            ApiError::new(ErrorCode::BadRequest, format!("offset {offset} is past the end ({})", info.size));
        return writer.send(&err(id, e)).await;
    }
    let source = match &progress {
        Some(_) => tmp_path(&state.files.dir, info.id),
        None => state.files.blob_path(&info.sha256),
    };
    // A file another node received: fetched from the shared store into this node's
    // cache first (a store no other node shares has none to give).
    if progress.is_none() && !tokio::fs::try_exists(&source).await.unwrap_or(false) {
        match state.store.fetch_blob(info.sha256.clone(), source.clone()).await {
            Ok(true) => tracing::debug!(file = info.id, "fetched a file's content from the store"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, file = info.id, "could not fetch a file's content"),
        }
    }
    let (tx, mut rx) = mpsc::channel::<Out>(BATCHES_IN_FLIGHT);
    let handle = tokio::runtime::Handle::current();
    let (size, known) = (info.size, info.sha256.clone());
    let blob_dir = state.files.dir.clone();
    let store = state.store.clone();
    let disk = tokio::task::spawn_blocking(move || {
        read_chunks(&handle, &store, &source, &blob_dir, offset, size, &known, progress, &tx);
    });
    let mut ping = tokio::time::interval(state.config.heartbeat_timeout() / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut nonce = 0;
    let result = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Chunks(mut batch)) => {
                    state.peers.traffic.add_bulk(batch.iter().map(|c| c.len() as u64).sum());
                    writer.send_chunks(&mut batch).await?;
                }
                Some(Out::Done(sha256)) => {
                    let file = FileInfo { sha256: sha256.to_vec(), ..info };
                    break writer.send(&ServerMsg::Ok { id, body: Response::File { file } }).await;
                }
                Some(Out::Failed(code)) => {
                    let e = match code {
                        ErrorCode::HashMismatch => ApiError::new(code, "the upload arrived damaged and was discarded"),
                        ErrorCode::NoSuchFile => ApiError::new(code, "the file was removed or expired"),
                        _ => ApiError::new(code, "the file could not be read"),
                    };
                    break writer.send(&err(id, e)).await;
                }
                None => break Ok(()),
            },
            // The client has nothing to say on a download: anything, or a close, ends it.
            _ = reader.recv::<ClientMsg>() => break Ok(()),
            () = state.shutdown.cancelled() => break Ok(()),
            _ = ping.tick() => {
                nonce += 1;
                writer.send(&ServerMsg::Ping { nonce }).await?;
            }
        }
    };
    drop(rx);
    let _ = disk.await;
    result
}

/// The disk side of a download: reads from `offset` to the end, following an upload in
/// progress through `progress` (and its final name once it is stored).
#[expect(clippy::too_many_arguments, reason = "one thread's whole context")]
fn read_chunks(
    handle: &tokio::runtime::Handle,
    store: &crate::store::Store,
    source: &Path,
    blob_dir: &Path,
    offset: u64,
    size: u64,
    known: &[u8],
    mut progress: Option<watch::Receiver<Progress>>,
    tx: &mpsc::Sender<Out>,
) {
    // The upload may be stored (renamed to its hash) before this opens it: then wait
    // for the outcome and open the stored file.
    let opened = loop {
        match std::fs::File::open(source) {
            Ok(f) => break Ok(f),
            Err(e) => {
                let Some(p) = progress.as_mut() else { break Err(e) };
                let outcome = p.borrow().outcome;
                match outcome {
                    Some(Ok(hash)) => {
                        let blob = blob_dir.join(hex::encode(hash));
                        // Uploaded through another node of a cluster: its content is in
                        // the shared store, not here yet.
                        if !blob.exists()
                            && let Err(e) = handle.block_on(store.fetch_blob(hash.to_vec(), blob.clone()))
                        {
                            tracing::warn!(error = %e, "could not fetch a file's content");
                        }
                        break std::fs::File::open(blob);
                    }
                    Some(Err(_)) => break Err(e),
                    None => {
                        let waiting = handle.block_on(async {
                            tokio::select! {
                                r = p.changed() => r.is_ok(),
                                () = tx.closed() => false,
                            }
                        });
                        if !waiting && p.borrow().outcome.is_none() {
                            break Err(e);
                        }
                    }
                }
            }
        }
    };
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, path = %source.display(), "cannot open a file to send");
            let _ = tx.blocking_send(Out::Failed(ErrorCode::NoSuchFile));
            return;
        }
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        let _ = tx.blocking_send(Out::Failed(ErrorCode::Internal));
        return;
    }
    let mut pos = offset;
    let mut batch: Vec<ChunkRecord> = Vec::with_capacity(SEAL_BATCH);
    let send = |batch: &mut Vec<ChunkRecord>| tx.blocking_send(Out::Chunks(std::mem::take(batch))).is_ok();
    loop {
        let (available, outcome) = match &progress {
            None => (size, known.try_into().map_err(|_| ErrorCode::Internal).map(Some)),
            Some(p) => {
                let p = p.borrow();
                match p.outcome {
                    Some(Err(code)) => (0, Err(code)),
                    Some(Ok(hash)) => (size, Ok(Some(hash))),
                    None => (p.written, Ok(None)),
                }
            }
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(code) => {
                let _ = tx.blocking_send(Out::Failed(code));
                return;
            }
        };
        while pos < available {
            let want =
                usize::try_from((available - pos).min(SEND_CHUNK_LEN as u64)).unwrap_or(SEND_CHUNK_LEN);
            match ChunkRecord::read_from(&mut file, want) {
                Ok(record) if record.len() == want => batch.push(record),
                Ok(_) => {
                    tracing::warn!("a file to send ended early");
                    let _ = tx.blocking_send(Out::Failed(ErrorCode::Internal));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading a file to send failed");
                    let _ = tx.blocking_send(Out::Failed(ErrorCode::Internal));
                    return;
                }
            }
            pos += want as u64;
            if batch.len() == SEAL_BATCH && !send(&mut batch) {
                return;
            }
        }
        if let Some(hash) = outcome {
            if !batch.is_empty() && !send(&mut batch) {
                return;
            }
            let _ = tx.blocking_send(Out::Done(hash));
            return;
        }
        // Wait for the uploader (or for our client to leave). Chunks already read wait for
        // the rest of their batch, but no longer than FOLLOW_WAIT.
        let Some(p) = progress.as_mut() else { return };
        let holding = !batch.is_empty();
        let more = handle.block_on(async {
            let change = async {
                tokio::select! {
                    r = p.changed() => Some(r.is_ok()),
                    () = tx.closed() => Some(false),
                }
            };
            if holding {
                tokio::time::timeout(FOLLOW_WAIT, change).await.unwrap_or(None)
            } else {
                change.await
            }
        });
        let Some(more) = more else {
            // Nothing new for FOLLOW_WAIT: send what was read.
            if !send(&mut batch) {
                return;
            }
            continue;
        };
        if !more && p.borrow().outcome.is_none() {
            if !tx.is_closed() {
                let _ = tx.blocking_send(Out::Failed(ErrorCode::NoSuchFile));
            }
            return;
        }
    }
}
