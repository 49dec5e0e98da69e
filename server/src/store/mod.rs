//! Persistent storage behind one handle, [`Store`], with two backends: the embedded
//! SQLite file in the data dir (`sqlite`, the default) or a PostgreSQL database that
//! several nodes share (`postgres`, `store = "postgres://…"`).
//!
//! Writers hand a [`Job`] (a list of [`Write`]s and a completion) to the backend's writer
//! thread, which applies every queued job in one transaction, commits, and then runs the
//! completions in order. Message ids and timestamps are assigned inside the writer, so
//! within a conversation they increase in commit order, and a completion only ever sees
//! durable data: this is where messages are acknowledged and fanned out. Reads are named
//! methods of [`Store`] that run the backend's blocking query on a pooled connection
//! through `spawn_blocking`, never on the async workers.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use classchat_wire::{Body, MessageId, Reaction, Timestamp};

pub mod postgres;
pub mod rich;
mod sqlite;
mod write;

pub use write::{Committed, FileRow, Job, Write};

/// A stored message as read back.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: MessageId,
    pub conv: String,
    pub sender: String,
    pub ts: Timestamp,
    pub body: Body,
    pub reply_to: Option<MessageId>,
    /// When the text was last edited.
    pub edited: Option<Timestamp>,
    pub reactions: Vec<Reaction>,
}

impl StoredMessage {
    /// A message from its stored columns (`rich::COLUMNS`, without the reactions);
    /// `None` when the body does not decode (logged: the page skips it rather than fail).
    fn from_columns(
        id: i64,
        conv: String,
        sender: String,
        ts: i64,
        body: &[u8],
        reply_to: Option<i64>,
        edited: Option<i64>,
    ) -> Option<StoredMessage> {
        let Ok(body) = classchat_wire::decode::<Body>(body) else {
            tracing::warn!(id, "skipping a stored message whose body does not decode");
            return None;
        };
        Some(StoredMessage {
            id: id as u64,
            conv,
            sender,
            ts: ts as u64,
            body,
            reply_to: reply_to.map(|v| v as u64),
            edited: edited.map(|v| v as u64),
            reactions: Vec::new(),
        })
    }

    /// The message as `conv` names its conversation for the receiver.
    pub fn to_chat(&self, conv: classchat_wire::Conv) -> classchat_wire::ChatMessage {
        classchat_wire::ChatMessage {
            id: self.id,
            conv,
            from: self.sender.clone(),
            ts: self.ts,
            body: self.body.clone(),
            reply_to: self.reply_to,
            edited: self.edited,
            reactions: self.reactions.clone(),
        }
    }
}

/// Everything loaded into memory at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub rooms: Vec<RoomRow>,
    pub members: Vec<(String, String, MessageId)>,
    pub bans: Vec<(String, String)>,
    pub dm_pairs: Vec<(String, String)>,
    pub files: Vec<FileRow>,
    /// Class records: (kind, key, value).
    pub objects: Vec<(String, String, Vec<u8>)>,
    pub last_message_id: MessageId,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub auth: Vec<u8>,
    pub server_admin: bool,
    pub banned: bool,
}

#[derive(Debug, Clone)]
pub struct RoomRow {
    pub name: String,
    pub topic: String,
    pub password: Option<Vec<u8>>,
    pub admin_lc: String,
}

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub token_hash: Option<Vec<u8>>,
    pub baseline: MessageId,
    /// The token before the last rotation, and until when (ms since the epoch) it works.
    pub prev_token_hash: Option<Vec<u8>>,
    pub prev_until: i64,
}
/// What a backend answers: every read [`Store`] offers, blocking, on a pooled connection.
/// Both backends give the same results for the same writes.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Which database this is, for logs.
    fn describe(&self) -> String;
    /// Everything loaded into memory at startup, read again.
    fn snapshot(&self) -> anyhow::Result<Snapshot>;
    fn device(&self, user: &str, device: &str) -> anyhow::Result<Option<DeviceRow>>;
    /// The device's delivered cursor for every conversation it has one for.
    fn cursors(&self, user: &str, device: &str) -> anyhow::Result<Vec<(String, MessageId)>>;
    /// Messages of `conv` after `after`, oldest first, at most `limit` (the newest ones
    /// when there are more).
    fn messages_after(&self, conv: &str, after: MessageId, limit: u32) -> anyhow::Result<Vec<StoredMessage>>;
    /// Messages of `conv` before `before` (or the newest), newest first, at most `limit`.
    fn messages_before(
        &self,
        conv: &str,
        before: Option<MessageId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>>;
    /// The messages of `conv` at or before `after` that changed after it
    /// ([`rich::changed_since`]).
    fn changed_since(&self, conv: &str, after: MessageId, limit: u32) -> anyhow::Result<Vec<rich::Changed>>;
    /// One message by id, in its current state.
    fn message(&self, id: MessageId) -> anyhow::Result<Option<StoredMessage>>;
    /// `(public_key, backup)` of `user`'s identity key, if published.
    fn identity(&self, user: &str) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// The newest `limit` grants of a direct conversation, oldest first.
    fn dm_keys(&self, conv: &str, limit: u32) -> anyhow::Result<Vec<Vec<u8>>>;
    /// The audit log, newest first: at most `limit` entries older than `before`, and
    /// whether there are more.
    fn audit_page(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> anyhow::Result<(Vec<classchat_wire::AuditEntry>, bool)>;
    /// Messages of `convs` holding every one of `words` (stemmed, `crate::search`),
    /// newest first, skipping `offset`, at most `limit`.
    fn search(
        &self,
        words: &[String],
        convs: &[String],
        offset: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>>;
    /// Whether other nodes may share this database (then file ids and file content
    /// come from it too).
    fn shared(&self) -> bool {
        false
    }
    /// A new id of `kind`, unique among every node's (only asked when
    /// [`Backend::shared`]).
    fn next_id(&self, _kind: IdKind) -> anyhow::Result<u64> {
        anyhow::bail!("ids come from the store only when it is shared")
    }
    /// Keeps the content of a complete file (named by its SHA-256, at `path` on this
    /// node's disk) where the other nodes find it. Nothing to do for a store that no
    /// other node shares.
    fn put_blob(&self, _sha256: &[u8], _path: &Path) -> anyhow::Result<()> {
        Ok(())
    }
    /// Writes the content of a file this node's disk lacks to `dest`, checked against
    /// its SHA-256; `false` when the store does not have it.
    fn fetch_blob(&self, _sha256: &[u8], _dest: &Path) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// What a node numbers in memory (files, questions, polls): on a store several nodes
/// share, each new id comes from the store instead, so that no two nodes give out the
/// same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    File,
    Question,
    Poll,
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std::sync::mpsc::SyncSender<Job>,
    backend: Arc<dyn Backend>,
    hook: Arc<std::sync::OnceLock<Arc<dyn CommitHook>>>,
}

/// Starts the text of a job's error when the job was refused because the server cannot
/// save right now (its cluster bus or database is down): `handlers` turn it into the
/// `unavailable` error code.
pub const UNAVAILABLE: &str = "unavailable: ";

/// What a node of a cluster (`crate::bus`) does around every job: it may refuse it, and
/// it hears of every job committed, in commit order, before the job's completion runs.
pub trait CommitHook: Send + Sync {
    /// Why a job of these writes may not be committed now, if so.
    fn refusal(&self, writes: &[Write]) -> Option<&'static str>;
    /// `ids`: what the writer reported for the job.
    fn committed(&self, writes: &[Write], ids: &[(MessageId, Timestamp)]);
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend.describe()).finish_non_exhaustive()
    }
}

pub fn now_ms() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
/// What catch-up sends about one conversation: the messages after the device's cursor,
/// and the older ones changed since.
pub type CatchUp = (Vec<StoredMessage>, Vec<rich::Changed>);

impl Store {
    /// Opens (creating and migrating) the SQLite database at `path` and starts the writer.
    pub fn open(path: &Path, batch: usize, queue: usize) -> anyhow::Result<(Store, Snapshot)> {
        let (tx, backend, snapshot) = sqlite::start(path, batch, queue)?;
        Ok((Store { tx, backend: Arc::new(backend), hook: Arc::default() }, snapshot))
    }

    /// Connects to the PostgreSQL database at `url` (creating or migrating its schema)
    /// and starts the writer. Blocks while it connects and loads; call it outside async
    /// code (`spawn_blocking`).
    pub fn open_postgres(url: &str, batch: usize, queue: usize) -> anyhow::Result<(Store, Snapshot)> {
        let (tx, backend, snapshot) = postgres::start(url, batch, queue)?;
        Ok((Store { tx, backend: Arc::new(backend), hook: Arc::default() }, snapshot))
    }

    /// Installs the cluster's hook (once; later calls are ignored).
    pub fn set_hook(&self, hook: Arc<dyn CommitHook>) {
        let _ = self.hook.set(hook);
    }

    /// The job as the writer should run it: refused while the hook says so, and with the
    /// hook told of its commit first.
    fn hooked(&self, job: Job) -> Result<Job, String> {
        let Some(hook) = self.hook.get() else { return Ok(job) };
        if let Some(why) = hook.refusal(&job.writes) {
            return Err(format!("{UNAVAILABLE}{why}"));
        }
        let hook = Arc::clone(hook);
        let done = job.done;
        Ok(Job {
            writes: job.writes,
            done: Some(Box::new(move |result: Committed, writes: Vec<Write>| {
                if let Ok(ids) = &result {
                    hook.committed(&writes, ids);
                }
                if let Some(done) = done {
                    done(result, writes);
                }
            })),
        })
    }

    /// Queues a job. Blocks briefly when the writer's queue is full (back-pressure); call
    /// from async code through [`Store::submit`].
    pub fn submit_blocking(&self, job: Job) -> Result<(), String> {
        let job = self.hooked(job)?;
        self.tx.send(job).map_err(|_| "the store is closed".to_string())
    }

    /// Queues a job without blocking an async worker: tries first, and only when the
    /// queue is full waits on a blocking thread.
    pub async fn submit(&self, job: Job) -> Result<(), String> {
        let job = self.hooked(job)?;
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err("the store is closed".into()),
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    tx.send(job).map_err(|_| "the store is closed".to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
        }
    }

    /// Queues `writes` and waits until they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Committed {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job {
            writes,
            done: Some(Box::new(move |r, _| {
                let _ = tx.send(r);
            })),
        })
        .await?;
        rx.await.map_err(|_| "the store stopped".to_string())?
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> Result<(), String> {
        self.commit(Vec::new()).await.map(drop)
    }

    /// Runs `f` with the backend on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Backend) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || f(&*backend)).await?
    }

    /// Everything [`Store::open`] loaded, read again from the database (for a node whose
    /// memory must be brought back in line with what other nodes wrote).
    pub async fn reload_snapshot(&self) -> anyhow::Result<Snapshot> {
        self.read(|b| b.snapshot()).await
    }

    pub async fn device(&self, user: String, device: String) -> anyhow::Result<Option<DeviceRow>> {
        self.read(move |b| b.device(&user, &device)).await
    }

    /// What a device missed in each of `convs` (database key and the id of the member's
    /// first message there), in order: from its stored delivered cursors, raised by
    /// `pending` (cursors acknowledged but not written yet), at most `cap` of each kind
    /// per conversation.
    pub async fn catch_up(
        &self,
        user: String,
        device: String,
        pending: Vec<(String, MessageId)>,
        convs: Vec<(String, MessageId)>,
        cap: u32,
    ) -> anyhow::Result<Vec<CatchUp>> {
        self.read(move |b| {
            let mut cursors: std::collections::HashMap<String, u64> =
                b.cursors(&user, &device)?.into_iter().collect();
            for (conv, id) in pending {
                let e = cursors.entry(conv).or_insert(id);
                *e = (*e).max(id);
            }
            let mut out = Vec::with_capacity(convs.len());
            for (key, joined) in convs {
                let after = cursors.get(&key).copied().unwrap_or(0).max(joined.saturating_sub(1));
                out.push((b.messages_after(&key, after, cap)?, b.changed_since(&key, after, cap)?));
            }
            Ok(out)
        })
        .await
    }

    /// Messages of `conv` before `before` (or the newest), newest first, at most `limit`.
    pub async fn messages_before(
        &self,
        conv: String,
        before: Option<MessageId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        self.read(move |b| b.messages_before(&conv, before, limit)).await
    }

    /// One message by id, in its current state.
    pub async fn message(&self, id: MessageId) -> anyhow::Result<Option<StoredMessage>> {
        self.read(move |b| b.message(id)).await
    }

    /// `(public_key, backup)` of `user`'s identity key, if published.
    pub async fn identity(&self, user: String) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.read(move |b| b.identity(&user)).await
    }

    /// The newest `limit` grants of a direct conversation, oldest first.
    pub async fn dm_keys(&self, conv: String, limit: u32) -> anyhow::Result<Vec<Vec<u8>>> {
        self.read(move |b| b.dm_keys(&conv, limit)).await
    }

    /// The audit log, newest first: at most `limit` entries older than `before`, and
    /// whether there are more.
    pub async fn audit_page(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> anyhow::Result<(Vec<classchat_wire::AuditEntry>, bool)> {
        self.read(move |b| b.audit_page(before, limit)).await
    }

    /// Keeps a complete file's content (at `path`, named by `sha256`) where other nodes
    /// on the same store find it ([`Backend::put_blob`]).
    pub async fn put_blob(&self, sha256: Vec<u8>, path: std::path::PathBuf) -> anyhow::Result<()> {
        if !self.backend.shared() {
            return Ok(());
        }
        self.read(move |b| b.put_blob(&sha256, &path)).await
    }

    /// Fetches a file's content this node lacks into `dest` ([`Backend::fetch_blob`]).
    pub async fn fetch_blob(&self, sha256: Vec<u8>, dest: std::path::PathBuf) -> anyhow::Result<bool> {
        if !self.backend.shared() {
            return Ok(false);
        }
        self.read(move |b| b.fetch_blob(&sha256, &dest)).await
    }

    /// A new id of `kind` when the store is shared by several nodes (`None`: the node's
    /// own count is unique, and it keeps one).
    pub async fn next_id(&self, kind: IdKind) -> anyhow::Result<Option<u64>> {
        if !self.backend.shared() {
            return Ok(None);
        }
        self.read(move |b| b.next_id(kind).map(Some)).await
    }

    /// Messages of `convs` holding every one of `words` (stemmed query words,
    /// `crate::search::query_words`), newest first, skipping `offset`, at most `limit`.
    pub async fn search(
        &self,
        words: Vec<String>,
        convs: Vec<String>,
        offset: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        self.read(move |b| b.search(&words, &convs, offset, limit)).await
    }
}

/// The writer threads' loop: takes the queued jobs, up to `batch` writes (at least one
/// job), has `apply` commit them together, then runs their completions in order. Returns
/// once every sender is dropped and the queue is drained.
fn serve_jobs(
    rx: &std::sync::mpsc::Receiver<Job>,
    batch: usize,
    mut apply: impl FnMut(&mut [Job]) -> Vec<Committed>,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        let mut writes = jobs[0].writes.len();
        while writes < batch {
            match rx.try_recv() {
                Ok(job) => {
                    writes += job.writes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let results = apply(&mut jobs);
        // The commit's fan-out goes out grouped per connection when this guard drops.
        let _gather = crate::state::Gather::begin();
        for (job, result) in jobs.drain(..).zip(results) {
            if let Some(done) = job.done {
                done(result, job.writes);
            }
        }
    }
}

/// An audit action by its stored wire name; a name this build does not know reads as
/// `other`.
pub(crate) fn audit_action(name: &str) -> classchat_wire::AuditAction {
    classchat_wire::decode(&classchat_wire::encode(&name).unwrap_or_default())
        .unwrap_or(classchat_wire::AuditAction::Other)
}

/// Opens the SQLite database directly (no server running) for CLI maintenance commands.
pub fn open_for_cli(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    sqlite::open_for_cli(path)
}
