//! Reads on PostgreSQL: the [`Backend`] queries, on a small pool of connections.

use std::path::Path;
use std::sync::Mutex;

use classchat_wire::{Body, MessageId};

use super::{Conn, describe, error_text, prepared};
use crate::store::rich::{self, Changed, UpdateKind};
use crate::store::{Backend, DeviceRow, FileRow, IdKind, RoomRow, Snapshot, StoredMessage, UserRow};

/// Connections kept open for reuse.
const READ_POOL: usize = 4;

/// The columns every message read selects, in [`to_message`]'s order.
const COLUMNS: &str = "id, conv, sender, ts, body, reply_to, edited";

/// The PostgreSQL backend's read side.
pub(in crate::store) struct Pg {
    config: postgres::Config,
    pool: Mutex<Vec<Conn>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pg {
    pub(super) fn new(config: postgres::Config) -> Pg {
        Pg { config, pool: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on a pooled connection (a new one when none is free). A connection that
    /// broke is not put back; when a pooled one turns out to have died while idle (the
    /// database restarted since), `f` runs again on the next, at worst on a new one.
    fn with<T>(&self, mut f: impl FnMut(&mut Conn) -> Result<T, postgres::Error>) -> anyhow::Result<T> {
        self.with_conn(|c| {
            f(c).map_err(|e| anyhow::anyhow!("{}: {}", describe(&self.config), error_text(&e)))
        })
    }

    /// As [`Pg::with`], for work that fails in other ways too (files).
    fn with_conn<T>(&self, mut f: impl FnMut(&mut Conn) -> anyhow::Result<T>) -> anyhow::Result<T> {
        loop {
            let pooled = lock(&self.pool).pop();
            let fresh = pooled.is_none();
            let mut conn = match pooled {
                Some(c) => c,
                None => Conn::connect(&self.config).map_err(|e| {
                    anyhow::anyhow!("{} is unreachable: {}", describe(&self.config), error_text(&e))
                })?,
            };
            let result = f(&mut conn);
            let alive = !conn.client.is_closed();
            if alive {
                let mut pool = lock(&self.pool);
                if pool.len() < READ_POOL {
                    pool.push(conn);
                }
            }
            if fresh || alive || result.is_ok() {
                return result;
            }
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Closing a client blocks on its own runtime, which panics on an async worker
        // (the last handle to the store may go there): close them on a thread of their own.
        let conns = std::mem::take(&mut *lock(&self.pool));
        if !conns.is_empty() {
            let _ = std::thread::Builder::new().name("classchat-pg-close".into()).spawn(move || drop(conns));
        }
    }
}

impl Backend for Pg {
    fn describe(&self) -> String {
        describe(&self.config)
    }

    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        self.with(load_snapshot)
    }

    fn device(&self, user: &str, device: &str) -> anyhow::Result<Option<DeviceRow>> {
        self.with(|c| {
            let sql = "SELECT token_hash, baseline, prev_token_hash, prev_until FROM devices
                       WHERE user_lc = $1 AND device = $2";
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            c.client
                .query_opt(&stmt, &[&user, &device])?
                .map(|r| {
                    Ok(DeviceRow {
                        token_hash: r.try_get(0)?,
                        baseline: r.try_get::<_, i64>(1)? as u64,
                        prev_token_hash: r.try_get(2)?,
                        prev_until: r.try_get(3)?,
                    })
                })
                .transpose()
        })
    }

    fn cursors(&self, user: &str, device: &str) -> anyhow::Result<Vec<(String, MessageId)>> {
        self.with(|c| {
            let sql = "SELECT conv, up_to FROM cursors WHERE user_lc = $1 AND device = $2";
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            let rows = c.client.query(&stmt, &[&user, &device])?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64))).collect()
        })
    }

    fn messages_after(&self, conv: &str, after: MessageId, limit: u32) -> anyhow::Result<Vec<StoredMessage>> {
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM messages WHERE conv = $1 AND id > $2 ORDER BY id DESC LIMIT $3"
            );
            let mut v = messages(c, &sql, &[&conv, &id(after), &i64::from(limit)])?;
            v.reverse();
            with_reactions(c, v)
        })
    }

    fn messages_before(
        &self,
        conv: &str,
        before: Option<MessageId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        self.with(|c| {
            let before = before.map_or(i64::MAX, id);
            let sql = format!(
                "SELECT {COLUMNS} FROM messages WHERE conv = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            );
            let v = messages(c, &sql, &[&conv, &before, &i64::from(limit)])?;
            with_reactions(c, v)
        })
    }

    fn changed_since(&self, conv: &str, after: MessageId, limit: u32) -> anyhow::Result<Vec<Changed>> {
        self.with(|c| {
            let sql = "SELECT msg, MAX(id) AS last, COUNT(*) FILTER (WHERE kind = 1),
                           COUNT(*) FILTER (WHERE kind = 2), COUNT(*) FILTER (WHERE kind = 3)
                       FROM message_updates WHERE conv = $1 AND id > $2 AND msg <= $2
                       GROUP BY msg ORDER BY last DESC LIMIT $3";
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            let rows = c.client.query(&stmt, &[&conv, &id(after), &i64::from(limit)])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows.iter().rev() {
                let Some(message) = message(c, r.try_get::<_, i64>(0)? as u64)? else { continue };
                let kinds = [(2, UpdateKind::Edit), (3, UpdateKind::Delete), (4, UpdateKind::React)]
                    .into_iter()
                    .filter_map(|(col, k)| (r.try_get::<_, i64>(col).unwrap_or(0) > 0).then_some(k))
                    .collect();
                out.push(Changed { message, kinds });
            }
            Ok(out)
        })
    }

    fn message(&self, id: MessageId) -> anyhow::Result<Option<StoredMessage>> {
        self.with(|c| message(c, id))
    }

    fn identity(&self, user: &str) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.with(|c| {
            let sql = "SELECT public_key, backup FROM identity_keys WHERE user_lc = $1";
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            c.client.query_opt(&stmt, &[&user])?.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
        })
    }

    fn dm_keys(&self, conv: &str, limit: u32) -> anyhow::Result<Vec<Vec<u8>>> {
        self.with(|c| {
            let sql = r#"SELECT "grant" FROM dm_keys WHERE conv = $1 ORDER BY seq DESC LIMIT $2"#;
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            let mut v: Vec<Vec<u8>> = c
                .client
                .query(&stmt, &[&conv, &i64::from(limit)])?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            v.reverse();
            Ok(v)
        })
    }

    fn audit_page(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> anyhow::Result<(Vec<classchat_wire::AuditEntry>, bool)> {
        self.with(|c| {
            let before = before.map_or(i64::MAX, id);
            let sql = "SELECT id, ts, actor, action, target, detail FROM audit WHERE id < $1 ORDER BY id DESC LIMIT $2";
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            let mut entries: Vec<classchat_wire::AuditEntry> = c
                .client
                .query(&stmt, &[&before, &(i64::from(limit) + 1)])?
                .iter()
                .map(|r| {
                    Ok(classchat_wire::AuditEntry {
                        id: r.try_get::<_, i64>(0)? as u64,
                        ts: r.try_get::<_, i64>(1)? as u64,
                        actor: r.try_get(2)?,
                        action: crate::store::audit_action(r.try_get(3)?),
                        target: r.try_get(4)?,
                        detail: r.try_get(5)?,
                    })
                })
                .collect::<Result<_, postgres::Error>>()?;
            let more = entries.len() > limit as usize;
            entries.truncate(limit as usize);
            Ok((entries, more))
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn next_id(&self, kind: IdKind) -> anyhow::Result<u64> {
        let sql = match kind {
            IdKind::File => "SELECT nextval('file_ids')",
            IdKind::Question => "SELECT nextval('question_ids')",
            IdKind::Poll => "SELECT nextval('poll_ids')",
        };
        self.with(|c| {
            let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
            Ok(c.client.query_one(&stmt, &[])?.try_get::<_, i64>(0)? as u64)
        })
    }

    fn put_blob(&self, sha256: &[u8], path: &Path) -> anyhow::Result<()> {
        self.with_conn(|c| super::blobs::put(&mut c.client, sha256, path))
    }

    fn fetch_blob(&self, sha256: &[u8], dest: &Path) -> anyhow::Result<bool> {
        self.with_conn(|c| super::blobs::fetch(&mut c.client, sha256, dest))
    }

    fn search(
        &self,
        words: &[String],
        convs: &[String],
        offset: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        if words.is_empty() || convs.is_empty() {
            return Ok(Vec::new());
        }
        // Each word in any of the conversations (`&&`: the arrays overlap); every word.
        let per_word: Vec<Vec<String>> = words
            .iter()
            .map(|w| convs.iter().map(|conv| fold(&format!("{}x{w}", rich::conv_token(conv)))).collect())
            .collect();
        let clauses: Vec<String> = (1..=per_word.len()).map(|i| format!("terms && ${i}::text[]")).collect();
        let n = per_word.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE {} ORDER BY id DESC LIMIT ${} OFFSET ${}",
            clauses.join(" AND "),
            n + 1,
            n + 2
        );
        let (limit, offset) = (i64::from(limit), i64::from(offset));
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            per_word.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect();
        params.push(&limit);
        params.push(&offset);
        self.with(|c| {
            let found = messages(c, &sql, &params)?;
            with_reactions(c, found)
        })
    }
}

/// A message id as PostgreSQL stores it (ids past `i64::MAX` name nothing stored).
fn id(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The search terms of a message as stored: [`rich::terms`], with accents folded away
/// the way SQLite's `unicode61` tokenizer folds them, so both backends find the same.
pub(super) fn fold(terms: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    terms.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// What the index holds for a message of `conv`: its words' terms, or `None` when the
/// message is not searchable (not text, or not in a room or announcements).
pub(super) fn terms_of(conv: &str, body: &Body) -> Option<Vec<String>> {
    match body {
        Body::Text { text } if rich::indexed(conv) => {
            Some(rich::terms(conv, text).split(' ').filter(|t| !t.is_empty()).map(fold).collect())
        }
        _ => None,
    }
}

/// Runs a query of [`COLUMNS`]; a row whose body does not decode is skipped (logged).
fn messages(
    c: &mut Conn,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<StoredMessage>, postgres::Error> {
    let stmt = prepared(&mut c.client, &mut c.statements, sql)?;
    let rows = c.client.query(&stmt, params)?;
    Ok(rows.iter().map(to_message).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
}

/// A row of [`COLUMNS`]; `None` when its body does not decode (skipped, logged).
fn to_message(r: &postgres::Row) -> Result<Option<StoredMessage>, postgres::Error> {
    Ok(StoredMessage::from_columns(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
    ))
}

/// One message by id, in its current state.
fn message(c: &mut Conn, msg: MessageId) -> Result<Option<StoredMessage>, postgres::Error> {
    let Ok(msg) = i64::try_from(msg) else { return Ok(None) };
    let found = messages(c, &format!("SELECT {COLUMNS} FROM messages WHERE id = $1"), &[&msg])?;
    Ok(with_reactions(c, found)?.pop())
}

/// Fills in the reactions of `messages`: one query for the page.
fn with_reactions(c: &mut Conn, mut list: Vec<StoredMessage>) -> Result<Vec<StoredMessage>, postgres::Error> {
    if list.is_empty() {
        return Ok(list);
    }
    let ids: Vec<i64> = list.iter().map(|m| m.id as i64).collect();
    let mut all = reactions(&mut c.client, &mut c.statements, &ids)?;
    for m in &mut list {
        m.reactions = all.remove(&m.id).unwrap_or_default();
    }
    Ok(list)
}

/// The reactions of each of `ids` that has any ([`rich::group_reactions`]).
pub(super) fn reactions(
    client: &mut impl postgres::GenericClient,
    cache: &mut std::collections::HashMap<String, postgres::Statement>,
    ids: &[i64],
) -> Result<std::collections::HashMap<MessageId, Vec<classchat_wire::Reaction>>, postgres::Error> {
    let sql = r#"SELECT msg, emoji, "user" FROM reactions WHERE msg = ANY($1) ORDER BY n"#;
    let stmt = prepared(client, cache, sql)?;
    let rows = client.query(&stmt, &[&ids])?;
    let rows = rows
        .iter()
        .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<_>, postgres::Error>>()?;
    Ok(rich::group_reactions(rows))
}

/// Everything loaded into memory at startup.
pub(super) fn load(c: &mut Conn) -> anyhow::Result<Snapshot> {
    Ok(load_snapshot(c)?)
}

fn load_snapshot(c: &mut Conn) -> Result<Snapshot, postgres::Error> {
    // One snapshot of the database for all of it: the tables agree with each other.
    let mut tx = c
        .client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let mut rows = |sql: &str| tx.query(sql, &[]);
    let users = rows("SELECT name, auth, server_admin, banned FROM users")?
        .iter()
        .map(|r| {
            Ok(UserRow {
                name: r.try_get(0)?,
                auth: r.try_get(1)?,
                server_admin: r.try_get(2)?,
                banned: r.try_get(3)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()?;
    let rooms = rows("SELECT name, topic, password, admin_lc FROM rooms")?
        .iter()
        .map(|r| {
            Ok(RoomRow {
                name: r.try_get(0)?,
                topic: r.try_get(1)?,
                password: r.try_get(2)?,
                admin_lc: r.try_get(3)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()?;
    let members = rows("SELECT room_lc, user_lc, joined_id FROM room_members")?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)? as u64)))
        .collect::<Result<_, postgres::Error>>()?;
    let pairs = |list: Vec<postgres::Row>| {
        list.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, postgres::Error>>()
    };
    let bans = pairs(rows("SELECT room_lc, user_lc FROM room_bans")?)?;
    let dm_pairs = pairs(rows("SELECT a_lc, b_lc FROM dm_pairs")?)?;
    let files = rows(
        "SELECT id, owner_lc, sender, conv, recipient_lc, name, size, meta, sha256, token_hash, accepted,
                created, completed FROM files",
    )?
    .iter()
    .map(|r| {
        Ok(FileRow {
            id: r.try_get::<_, i64>(0)? as u64,
            owner_lc: r.try_get(1)?,
            sender: r.try_get(2)?,
            conv: r.try_get(3)?,
            recipient_lc: r.try_get(4)?,
            name: r.try_get(5)?,
            size: r.try_get::<_, i64>(6)? as u64,
            meta: r.try_get(7)?,
            sha256: r.try_get(8)?,
            token_hash: r.try_get(9)?,
            accepted: r.try_get(10)?,
            created: r.try_get::<_, i64>(11)? as u64,
            completed: r.try_get::<_, Option<i64>>(12)?.map(|t| t as u64),
        })
    })
    .collect::<Result<_, postgres::Error>>()?;
    let objects = rows("SELECT kind, key, value FROM class_objects")?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, postgres::Error>>()?;
    // The sequence's last value: updates take ids from it too. A sequence never used
    // reports `is_called = false`.
    let seq = rows("SELECT last_value, is_called FROM message_ids")?;
    let last_message_id = match seq.first() {
        Some(r) if r.try_get::<_, bool>(1)? => r.try_get::<_, i64>(0)? as u64,
        _ => 0,
    };
    tx.commit()?;
    Ok(Snapshot { users, rooms, members, bans, dm_pairs, files, objects, last_message_id })
}
