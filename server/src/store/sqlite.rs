//! The SQLite backend: WAL mode, written by one thread with group commit.
//!
//! The writer applies every queued job in one transaction, commits, and then runs the
//! completions in order. Message ids and timestamps are assigned inside the writer, so
//! they increase in commit order. Reads run on a small pool of read-only connections
//! (through `spawn_blocking`, [`super::Store`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use classchat_wire::{MessageId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::rich;
use super::{
    Backend, Committed, DeviceRow, FileRow, Job, RoomRow, Snapshot, StoredMessage, UserRow, Write, now_ms,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    "CREATE TABLE users(
        name_lc TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        auth BLOB NOT NULL,
        server_admin INTEGER NOT NULL DEFAULT 0,
        banned INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    );
    CREATE TABLE devices(
        user_lc TEXT NOT NULL,
        device TEXT NOT NULL,
        token_hash BLOB,
        baseline INTEGER NOT NULL,
        PRIMARY KEY(user_lc, device)
    );
    CREATE TABLE rooms(
        name_lc TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        topic TEXT NOT NULL,
        password BLOB,
        admin_lc TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE room_members(
        room_lc TEXT NOT NULL,
        user_lc TEXT NOT NULL,
        joined_id INTEGER NOT NULL,
        PRIMARY KEY(room_lc, user_lc)
    );
    CREATE TABLE room_bans(room_lc TEXT NOT NULL, user_lc TEXT NOT NULL, PRIMARY KEY(room_lc, user_lc));
    CREATE TABLE dm_pairs(a_lc TEXT NOT NULL, b_lc TEXT NOT NULL, PRIMARY KEY(a_lc, b_lc));
    CREATE TABLE messages(
        id INTEGER PRIMARY KEY,
        conv TEXT NOT NULL,
        sender TEXT NOT NULL,
        ts INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX messages_by_conv ON messages(conv, id);
    CREATE TABLE cursors(
        user_lc TEXT NOT NULL,
        device TEXT NOT NULL,
        conv TEXT NOT NULL,
        up_to INTEGER NOT NULL,
        PRIMARY KEY(user_lc, device, conv)
    );",
    // 2: end-to-end keys: the identity-key directory with password-sealed backups, and
    // the signed conversation-key grants of direct conversations (opaque to the server).
    "CREATE TABLE identity_keys(
        user_lc TEXT PRIMARY KEY,
        public_key BLOB NOT NULL,
        backup BLOB NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE TABLE dm_keys(
        conv TEXT NOT NULL,
        key_id BLOB NOT NULL,
        grant BLOB NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY(conv, key_id)
    );",
    // 3: shared files. `sha256` is NULL while the upload is in progress; the content
    // lives in the data dir under files/, named by its SHA-256.
    "CREATE TABLE files(
        id INTEGER PRIMARY KEY,
        owner_lc TEXT NOT NULL,
        sender TEXT NOT NULL,
        conv TEXT NOT NULL,
        recipient_lc TEXT,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        meta BLOB,
        sha256 BLOB,
        token_hash BLOB NOT NULL,
        accepted INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        completed INTEGER
    );",
    // 4: the instructor tools. Their records (room settings, mutes, exam mode, questions,
    // polls, office-hours queues) are small MessagePack values loaded into memory at
    // startup (`crate::class`); `room_lc` lets a removed room take its records along.
    // The audit log is append-only and read in pages.
    "CREATE TABLE class_objects(
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        room_lc TEXT,
        value BLOB NOT NULL,
        PRIMARY KEY(kind, key)
    );
    CREATE INDEX class_objects_by_room ON class_objects(room_lc);
    CREATE TABLE audit(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 6: the token a device held before its last rotation, accepted for a short grace
    // (a connection lost between the rotation and the `welcome` must not cost the password).
    "ALTER TABLE devices ADD COLUMN prev_token_hash BLOB;
    ALTER TABLE devices ADD COLUMN prev_until INTEGER NOT NULL DEFAULT 0;",
    // user_version 6 (the comment above says 6, but it is the fifth entry, so databases
    // that ran it are at 5): replies, edits, deletes, reactions, and the search index
    // (`rich`). The text already stored is indexed right after, in the same transaction.
    rich::MIGRATION,
];

/// The `user_version` after which stored text is indexed for search ([`rich::backfill`]).
const SEARCH_INDEX_VERSION: usize = 6;

/// Read connections kept open for reuse.
const READ_POOL: usize = 4;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it is acknowledged, even across power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A deleted message's text or envelope is zeroed, not left in free space.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == SEARCH_INDEX_VERSION {
            rich::backfill(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The SQLite backend's read side: a small pool of connections to the database file.
pub(super) struct Sqlite {
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

/// Opens (creating and migrating) the database at `path` and starts the writer, which
/// stops once every sender is dropped, after draining.
pub(super) fn start(
    path: &Path,
    batch: usize,
    queue: usize,
) -> anyhow::Result<(std::sync::mpsc::SyncSender<Job>, Sqlite, Snapshot)> {
    let mut conn = open(path)?;
    migrate(&mut conn)?;
    let snapshot = load(&conn)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
    let last_id = snapshot.last_message_id;
    std::thread::Builder::new()
        .name("classchat-store".into())
        .spawn(move || writer_loop(conn, rx, batch, last_id))?;
    Ok((tx, Sqlite { readers: Mutex::new(Vec::new()), path: path.to_owned() }, snapshot))
}

impl Sqlite {
    /// Runs `f` with a read connection from the pool, on the calling thread.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = lock(&self.readers).pop();
        let conn = match conn {
            Some(c) => c,
            None => open(&self.path)?,
        };
        let result = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        Ok(result?)
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        self.with(load)
    }

    fn device(&self, user: &str, device: &str) -> anyhow::Result<Option<DeviceRow>> {
        self.with(|c| {
            c.query_row(
                "SELECT token_hash, baseline, prev_token_hash, prev_until FROM devices
                 WHERE user_lc = ?1 AND device = ?2",
                params![user, device],
                |r| {
                    Ok(DeviceRow {
                        token_hash: r.get(0)?,
                        baseline: r.get::<_, i64>(1)? as u64,
                        prev_token_hash: r.get(2)?,
                        prev_until: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    fn cursors(&self, user: &str, device: &str) -> anyhow::Result<Vec<(String, MessageId)>> {
        self.with(|c| cursors(c, user, device))
    }

    fn messages_after(&self, conv: &str, after: MessageId, limit: u32) -> anyhow::Result<Vec<StoredMessage>> {
        self.with(|c| messages_after(c, conv, after, limit))
    }

    fn messages_before(
        &self,
        conv: &str,
        before: Option<MessageId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        self.with(|c| messages_before(c, conv, before, limit))
    }

    fn changed_since(&self, conv: &str, after: MessageId, limit: u32) -> anyhow::Result<Vec<rich::Changed>> {
        self.with(|c| rich::changed_since(c, conv, after, limit))
    }

    fn message(&self, id: MessageId) -> anyhow::Result<Option<StoredMessage>> {
        self.with(|c| rich::message(c, id))
    }

    fn identity(&self, user: &str) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.with(|c| identity(c, user))
    }

    fn dm_keys(&self, conv: &str, limit: u32) -> anyhow::Result<Vec<Vec<u8>>> {
        self.with(|c| dm_keys(c, conv, limit))
    }

    fn audit_page(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> anyhow::Result<(Vec<classchat_wire::AuditEntry>, bool)> {
        self.with(|c| audit_page(c, before, limit))
    }

    fn search(
        &self,
        words: &[String],
        convs: &[String],
        offset: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        let Some(expr) = crate::search::expression_of(words, convs) else { return Ok(Vec::new()) };
        self.with(|c| rich::search(c, &expr, offset, limit))
    }
}

/// The device's delivered cursor for every conversation it has one for.
pub fn cursors(c: &Connection, user: &str, device: &str) -> rusqlite::Result<Vec<(String, MessageId)>> {
    let mut stmt = c.prepare_cached("SELECT conv, up_to FROM cursors WHERE user_lc = ?1 AND device = ?2")?;
    let rows = stmt.query_map(params![user, device], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

/// Messages of `conv` after `after`, oldest first, at most `limit` (the newest ones
/// when there are more).
pub fn messages_after(
    c: &Connection,
    conv: &str,
    after: MessageId,
    limit: u32,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM messages WHERE conv = ?1 AND id > ?2 ORDER BY id DESC LIMIT ?3",
        rich::COLUMNS
    ))?;
    let rows = stmt.query_map(params![conv, after as i64, limit], row_to_message)?;
    let mut v: Vec<StoredMessage> = rows.filter_map(Result::ok).flatten().collect();
    v.reverse();
    rich::with_reactions(c, v)
}

/// Messages of `conv` before `before` (or the newest), newest first, `limit + 1` at
/// most so the caller can tell whether more exist.
pub fn messages_before(
    c: &Connection,
    conv: &str,
    before: Option<MessageId>,
    limit: u32,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM messages WHERE conv = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        rich::COLUMNS
    ))?;
    let rows = stmt.query_map(params![conv, before, limit], row_to_message)?;
    rich::with_reactions(c, rows.filter_map(Result::ok).flatten().collect())
}

/// `(public_key, backup)` of `user`'s identity key, if published.
pub fn identity(c: &Connection, user: &str) -> rusqlite::Result<Option<(Vec<u8>, Vec<u8>)>> {
    c.query_row("SELECT public_key, backup FROM identity_keys WHERE user_lc = ?1", params![user], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// The newest `limit` grants of a direct conversation, oldest first.
pub fn dm_keys(c: &Connection, conv: &str, limit: u32) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt =
        c.prepare_cached("SELECT grant FROM dm_keys WHERE conv = ?1 ORDER BY seq DESC LIMIT ?2")?;
    let mut v: Vec<Vec<u8>> =
        stmt.query_map(params![conv, limit], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    v.reverse();
    Ok(v)
}

/// The audit log, newest first: at most `limit` entries older than `before`, and whether
/// there are more.
pub fn audit_page(
    c: &Connection,
    before: Option<u64>,
    limit: u32,
) -> rusqlite::Result<(Vec<classchat_wire::AuditEntry>, bool)> {
    let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let mut stmt = c.prepare_cached(
        "SELECT id, ts, actor, action, target, detail FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut entries = stmt
        .query_map(params![before, i64::from(limit) + 1], |r| {
            let action: String = r.get(3)?;
            Ok(classchat_wire::AuditEntry {
                id: r.get::<_, i64>(0)? as u64,
                ts: r.get::<_, i64>(1)? as u64,
                actor: r.get(2)?,
                // Stored by its wire name.
                action: super::audit_action(&action),
                target: r.get(4)?,
                detail: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    Ok((entries, more))
}

/// A row (of [`rich::COLUMNS`]) whose body does not decode is skipped (logged) rather
/// than failing the page. Reactions are filled in apart ([`rich::with_reactions`]).
pub(super) fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<StoredMessage>> {
    Ok(StoredMessage::from_columns(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get::<_, Vec<u8>>(4)?.as_slice(),
        r.get(5)?,
        r.get(6)?,
    ))
}

fn load(c: &Connection) -> rusqlite::Result<Snapshot> {
    let mut s = Snapshot::default();
    let mut stmt = c.prepare("SELECT name, auth, server_admin, banned FROM users")?;
    s.users = stmt
        .query_map([], |r| {
            Ok(UserRow { name: r.get(0)?, auth: r.get(1)?, server_admin: r.get(2)?, banned: r.get(3)? })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare("SELECT name, topic, password, admin_lc FROM rooms")?;
    s.rooms = stmt
        .query_map([], |r| {
            Ok(RoomRow { name: r.get(0)?, topic: r.get(1)?, password: r.get(2)?, admin_lc: r.get(3)? })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare("SELECT room_lc, user_lc, joined_id FROM room_members")?;
    s.members = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare("SELECT room_lc, user_lc FROM room_bans")?;
    s.bans = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare("SELECT a_lc, b_lc FROM dm_pairs")?;
    s.dm_pairs = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare(
        "SELECT id, owner_lc, sender, conv, recipient_lc, name, size, meta, sha256, token_hash, accepted,
                created, completed FROM files",
    )?;
    s.files = stmt
        .query_map([], |r| {
            Ok(FileRow {
                id: r.get::<_, i64>(0)? as u64,
                owner_lc: r.get(1)?,
                sender: r.get(2)?,
                conv: r.get(3)?,
                recipient_lc: r.get(4)?,
                name: r.get(5)?,
                size: r.get::<_, i64>(6)? as u64,
                meta: r.get(7)?,
                sha256: r.get(8)?,
                token_hash: r.get(9)?,
                accepted: r.get(10)?,
                created: r.get::<_, i64>(11)? as u64,
                completed: r.get::<_, Option<i64>>(12)?.map(|t| t as u64),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare("SELECT kind, key, value FROM class_objects")?;
    s.objects =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    // Updates take ids from the message sequence too (`rich`), and may be the newest.
    s.last_message_id =
        (c.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| r.get::<_, i64>(0))? as u64)
            .max(rich::last_update_id(c)?);
    Ok(s)
}

pub(crate) struct Writer {
    pub(super) next_id: MessageId,
    pub(super) last_ts: Timestamp,
}

fn writer_loop(mut conn: Connection, rx: std::sync::mpsc::Receiver<Job>, batch: usize, last_id: MessageId) {
    let mut w = Writer { next_id: last_id + 1, last_ts: 0 };
    super::serve_jobs(&rx, batch, |jobs| apply_batch(&mut conn, &mut w, jobs));
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "checkpoint at shutdown failed");
    }
    tracing::debug!("store writer stopped");
}

/// Applies every job in one transaction. A job that fails is rolled back on its own (a
/// savepoint per job) so one bad write does not lose the others.
fn apply_batch(conn: &mut Connection, w: &mut Writer, jobs: &mut [Job]) -> Vec<Committed> {
    let saved = (w.next_id, w.last_ts);
    let outcome = (|| -> rusqlite::Result<Vec<Committed>> {
        let mut tx = conn.transaction()?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs.iter_mut() {
            let before = w.next_id;
            // A job that is one single-statement write (the hot ones: a message, a
            // cursor) needs no savepoint: SQLite undoes a failed statement by itself.
            // SAVEPOINT and RELEASE are two more statements, parsed every time.
            if let [write @ (Write::Message { .. } | Write::Cursor { .. })] = job.writes.as_mut_slice() {
                match apply_job(&tx, w, std::slice::from_mut(write)) {
                    Ok(ids) => results.push(Ok(ids)),
                    Err(e) => {
                        w.next_id = before;
                        tracing::error!(error = %e, "a store write failed");
                        results.push(Err(e.to_string()));
                    }
                }
                continue;
            }
            let sp = tx.savepoint()?;
            match apply_job(&sp, w, &mut job.writes) {
                Ok(ids) => {
                    sp.commit()?;
                    results.push(Ok(ids));
                }
                Err(e) => {
                    drop(sp); // rolls back this job only
                    w.next_id = before;
                    tracing::error!(error = %e, "a store write failed");
                    results.push(Err(e.to_string()));
                }
            }
        }
        tx.commit()?;
        Ok(results)
    })();
    match outcome {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            (w.next_id, w.last_ts) = saved;
            jobs.iter().map(|_| Err(format!("could not save: {e}"))).collect()
        }
    }
}

fn apply_job(
    tx: &Connection,
    w: &mut Writer,
    writes: &mut [Write],
) -> rusqlite::Result<Vec<(MessageId, Timestamp)>> {
    let mut ids = Vec::new();
    for write in writes.iter_mut() {
        // The one write the writer fills in: a reaction's list after the change.
        if let Write::React { id, emoji, user_lc, user, on, now } = write {
            ids.push(rich::react(tx, w, *id, emoji, user_lc, user, *on, now)?);
            continue;
        }
        match &*write {
            Write::CreateUser { name, auth } => {
                tx.prepare_cached("INSERT INTO users(name_lc, name, auth, created) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![name.to_ascii_lowercase(), name, auth, now_ms() as i64])?;
            }
            Write::SetServerAdmin { user, admin } => {
                tx.execute("UPDATE users SET server_admin = ?2 WHERE name_lc = ?1", params![user, admin])?;
            }
            Write::SetBanned { user, banned } => {
                tx.execute("UPDATE users SET banned = ?2 WHERE name_lc = ?1", params![user, banned])?;
            }
            Write::UpsertDevice { user, device, token_hash, baseline, previous } => {
                let (prev, until) = match previous {
                    Some((hash, until)) => (Some(hash), *until),
                    None => (None, 0),
                };
                tx.prepare_cached(
                    "INSERT INTO devices(user_lc, device, token_hash, baseline, prev_token_hash, prev_until)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(user_lc, device) DO UPDATE SET token_hash = excluded.token_hash,
                         prev_token_hash = excluded.prev_token_hash, prev_until = excluded.prev_until",
                )?
                .execute(params![
                    user,
                    device,
                    token_hash,
                    *baseline as i64,
                    prev,
                    until
                ])?;
            }
            Write::CreateRoom { name, topic, password, admin } => {
                tx.execute(
                    "INSERT INTO rooms(name_lc, name, topic, password, admin_lc, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![name.to_ascii_lowercase(), name, topic, password, admin, now_ms() as i64],
                )?;
            }
            Write::DeleteRoom { room } => {
                tx.execute("DELETE FROM rooms WHERE name_lc = ?1", params![room])?;
                tx.execute("DELETE FROM room_members WHERE room_lc = ?1", params![room])?;
                tx.execute("DELETE FROM room_bans WHERE room_lc = ?1", params![room])?;
                tx.execute("DELETE FROM class_objects WHERE room_lc = ?1", params![room])?;
                let conv = format!("r:{room}");
                rich::forget_conv(tx, &conv)?;
                tx.execute("DELETE FROM messages WHERE conv = ?1", params![conv])?;
                tx.execute("DELETE FROM cursors WHERE conv = ?1", params![conv])?;
            }
            Write::SetTopic { room, topic } => {
                tx.execute("UPDATE rooms SET topic = ?2 WHERE name_lc = ?1", params![room, topic])?;
            }
            Write::SetRoomPassword { room, password } => {
                tx.execute("UPDATE rooms SET password = ?2 WHERE name_lc = ?1", params![room, password])?;
            }
            Write::SetRoomAdmin { room, admin } => {
                tx.execute("UPDATE rooms SET admin_lc = ?2 WHERE name_lc = ?1", params![room, admin])?;
            }
            Write::AddMember { room, user } => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO room_members(room_lc, user_lc, joined_id) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![room, user, w.next_id as i64])?;
            }
            Write::RemoveMember { room, user } => {
                tx.execute(
                    "DELETE FROM room_members WHERE room_lc = ?1 AND user_lc = ?2",
                    params![room, user],
                )?;
            }
            Write::AddBan { room, user } => {
                tx.execute(
                    "INSERT OR IGNORE INTO room_bans(room_lc, user_lc) VALUES (?1, ?2)",
                    params![room, user],
                )?;
            }
            Write::RemoveBan { room, user } => {
                tx.execute("DELETE FROM room_bans WHERE room_lc = ?1 AND user_lc = ?2", params![room, user])?;
            }
            Write::AddDmPair { a, b } => {
                tx.execute("INSERT OR IGNORE INTO dm_pairs(a_lc, b_lc) VALUES (?1, ?2)", params![a, b])?;
            }
            Write::Message { conv, sender, body, reply_to } => {
                let id = w.next_id;
                let ts = now_ms().max(w.last_ts);
                let blob = classchat_wire::message::encode(body)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.prepare_cached(
                    "INSERT INTO messages(id, conv, sender, ts, body, reply_to) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id as i64, conv, sender, ts as i64, blob, reply_to.map(|r| r as i64)])?;
                rich::index(tx, id, conv, body)?;
                w.next_id += 1;
                w.last_ts = ts;
                ids.push((id, ts));
            }
            Write::SetIdentity { user, public_key, backup } => {
                tx.execute(
                    "INSERT INTO identity_keys(user_lc, public_key, backup, updated) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(user_lc) DO UPDATE SET public_key = excluded.public_key,
                         backup = excluded.backup, updated = excluded.updated",
                    params![user, public_key, backup, now_ms() as i64],
                )?;
            }
            Write::PutDmKey { conv, key_id, grant } => {
                tx.execute(
                    "INSERT OR IGNORE INTO dm_keys(conv, key_id, grant, seq)
                     VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM dm_keys WHERE conv = ?1))",
                    params![conv, key_id, grant],
                )?;
            }
            Write::SetAuth { user, auth } => {
                tx.execute("UPDATE users SET auth = ?2 WHERE name_lc = ?1", params![user, auth])?;
            }
            Write::RevokeTokens { user, keep } => {
                tx.execute(
                    "UPDATE devices SET token_hash = NULL, prev_token_hash = NULL, prev_until = 0
                     WHERE user_lc = ?1 AND device != ?2",
                    params![user, keep],
                )?;
            }
            Write::CreateFile { row } => {
                tx.execute(
                    "INSERT INTO files(id, owner_lc, sender, conv, recipient_lc, name, size, meta, sha256,
                         token_hash, accepted, created, completed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        row.id as i64,
                        row.owner_lc,
                        row.sender,
                        row.conv,
                        row.recipient_lc,
                        row.name,
                        row.size as i64,
                        row.meta,
                        row.sha256,
                        row.token_hash,
                        row.accepted,
                        row.created as i64,
                        row.completed.map(|t| t as i64),
                    ],
                )?;
            }
            Write::CompleteFile { id, sha256, completed } => {
                tx.execute(
                    "UPDATE files SET sha256 = ?2, completed = ?3 WHERE id = ?1",
                    params![*id as i64, sha256, *completed as i64],
                )?;
            }
            Write::AcceptOffer { id } => {
                tx.execute("UPDATE files SET accepted = 1 WHERE id = ?1", params![*id as i64])?;
            }
            Write::PutObject { kind, key, room, value } => {
                tx.prepare_cached(
                    "INSERT INTO class_objects(kind, key, room_lc, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(kind, key) DO UPDATE SET room_lc = excluded.room_lc, value = excluded.value",
                )?
                .execute(params![kind, key, room, value])?;
            }
            Write::DeleteObject { kind, key } => {
                tx.execute("DELETE FROM class_objects WHERE kind = ?1 AND key = ?2", params![kind, key])?;
            }
            Write::Audit { actor, action, target, detail } => {
                tx.prepare_cached(
                    "INSERT INTO audit(ts, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    now_ms() as i64,
                    actor,
                    action.as_str(),
                    target,
                    detail
                ])?;
            }
            Write::Edit { id, body } => ids.push(rich::edit(tx, w, *id, body)?),
            Write::DeleteMessage { id, by, proof } => ids.push(rich::delete(tx, w, *id, by, proof)?),
            Write::React { .. } => {}
            Write::DeleteFile { id } => {
                tx.execute("DELETE FROM files WHERE id = ?1", params![*id as i64])?;
            }
            Write::Cursor { user, device, conv, up_to } => {
                tx.prepare_cached(
                    "INSERT INTO cursors(user_lc, device, conv, up_to) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(user_lc, device, conv) DO UPDATE SET up_to = MAX(up_to, excluded.up_to)",
                )?
                .execute(params![user, device, conv, *up_to as i64])?;
            }
        }
    }
    Ok(ids)
}

/// Opens the database directly (no server running) for CLI maintenance commands.
pub fn open_for_cli(path: &Path) -> anyhow::Result<Connection> {
    let mut conn = open(path)?;
    migrate(&mut conn)?;
    Ok(conn)
}
