//! Replies, edits, deletes, reactions and the full-text index in the store (PROTOCOL.md
//! section 18).
//!
//! - `messages.reply_to`, `messages.edited` (when the text last changed) and
//!   `messages.deleted_by`: an edit replaces `body`; a delete replaces it with
//!   `Body::Deleted`, so the text or envelope is gone from the row (and, with
//!   `secure_delete`, from the file's free space).
//! - `reactions`: one row per (message, emoji, user), in the order they came.
//! - `message_updates`: every edit, delete and reaction change of a message, numbered from
//!   the message id sequence, so a device whose delivered cursor is past the message but
//!   not past the update gets the message's new state at its next login.
//! - `message_text`: a contentless FTS5 index of room and announcement text. Each word is
//!   indexed joined to its conversation ([`terms`]: `k<conversation in hex>x<word>`), so
//!   "this word in these rooms" is a few exact terms whose postings FTS5 reads lazily,
//!   newest first, and stops after a page: the cost follows the hits, not how common the
//!   word is elsewhere. (A word term ANDed with a conversation term was measured first: a
//!   rare word then cost a seek in each of the user's rooms' huge postings per match,
//!   p99 28 ms at 10 million messages; BENCHMARKS.md, search.)

use std::collections::HashMap;

use classchat_wire::{Body, MessageId, Reaction};
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::{Writer, row_to_message};
use super::{StoredMessage, now_ms};

/// The migration that adds this (run by `super::migrate`, which then calls [`backfill`]).
pub const MIGRATION: &str = "ALTER TABLE messages ADD COLUMN reply_to INTEGER;
    ALTER TABLE messages ADD COLUMN edited INTEGER;
    ALTER TABLE messages ADD COLUMN deleted_by TEXT;
    CREATE TABLE reactions(
        n INTEGER PRIMARY KEY,
        msg INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        user_lc TEXT NOT NULL,
        user TEXT NOT NULL,
        UNIQUE(msg, emoji, user_lc)
    );
    CREATE TABLE message_updates(
        id INTEGER PRIMARY KEY,
        conv TEXT NOT NULL,
        msg INTEGER NOT NULL,
        kind INTEGER NOT NULL
    );
    CREATE INDEX message_updates_by_conv ON message_updates(conv, id);
    CREATE VIRTUAL TABLE message_text USING fts5(terms, content='', contentless_delete=1);";

/// The columns every message read selects, in `row_to_message`'s order.
pub const COLUMNS: &str = "id, conv, sender, ts, body, reply_to, edited";

/// What changed in a `message_updates` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Edit = 1,
    Delete = 2,
    React = 3,
}

/// The FTS5 token of a conversation key (`r:room`, `a`): `k` and the key in hex, one
/// token the unicode61 tokenizer keeps whole.
pub fn conv_token(key: &str) -> String {
    let mut s = String::with_capacity(1 + 2 * key.len());
    s.push('k');
    for b in key.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What the index holds for `text` in conversation `conv` (a database key): each word of
/// the text (`crate::search::words`), stemmed (`crate::search::stem`), as the term
/// `<conv_token(conv)>x<stem>`. Every term
/// is letters and digits only, so the `unicode61` tokenizer keeps it whole and folds its
/// case and accents, the same on both sides.
pub fn terms(conv: &str, text: &str) -> String {
    let token = conv_token(conv);
    let mut out = String::with_capacity(text.len() * 2);
    for (_, w) in crate::search::words(text) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&token);
        out.push('x');
        out.push_str(&crate::search::stem(w));
    }
    out
}

/// Whether messages of `conv` are indexed: rooms and announcements (direct messages are
/// end-to-end encrypted).
pub fn indexed(conv: &str) -> bool {
    conv.starts_with("r:") || conv == crate::state::ANNOUNCEMENTS
}

/// Adds a message's text to the index.
pub fn index(tx: &Connection, id: MessageId, conv: &str, body: &Body) -> rusqlite::Result<()> {
    if let Body::Text { text } = body
        && indexed(conv)
    {
        tx.prepare_cached("INSERT INTO message_text(rowid, terms) VALUES (?1, ?2)")?
            .execute(params![id as i64, terms(conv, text)])?;
    }
    Ok(())
}

fn unindex(tx: &Connection, id: MessageId) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM message_text WHERE rowid = ?1")?.execute(params![id as i64])?;
    Ok(())
}

/// Indexes the text of every room and announcement message already stored (run once, by
/// the migration that creates the index).
pub fn backfill(tx: &Connection) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM messages WHERE conv = 'a' OR conv >= 'r:' AND conv < 'r;'"
    ))?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        if let Some(m) = row_to_message(row)? {
            index(tx, m.id, &m.conv, &m.body)?;
            n += 1;
        }
    }
    tracing::info!(messages = n, "indexed stored messages for search");
    Ok(())
}

/// Forgets a removed room's reactions, updates and index rows (before its messages go).
pub fn forget_conv(tx: &Connection, conv: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM message_text WHERE rowid IN (SELECT id FROM messages WHERE conv = ?1)",
        params![conv],
    )?;
    tx.execute(
        "DELETE FROM reactions WHERE msg IN (SELECT id FROM messages WHERE conv = ?1)",
        params![conv],
    )?;
    tx.execute("DELETE FROM message_updates WHERE conv = ?1", params![conv])?;
    Ok(())
}

/// Records an update of message `msg`, numbered from the message sequence; returns its
/// id and time.
fn log_update(
    tx: &Connection,
    w: &mut Writer,
    msg: MessageId,
    kind: UpdateKind,
) -> rusqlite::Result<(u64, u64)> {
    let id = w.next_id;
    let ts = now_ms().max(w.last_ts);
    tx.prepare_cached(
        "INSERT INTO message_updates(id, conv, msg, kind) SELECT ?1, conv, ?2, ?3 FROM messages WHERE id = ?2",
    )?
    .execute(params![id as i64, msg as i64, kind as i64])?;
    w.next_id += 1;
    w.last_ts = ts;
    Ok((id, ts))
}

fn encode(body: &Body) -> rusqlite::Result<Vec<u8>> {
    classchat_wire::message::encode(body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Replaces the body of message `id` (not deleted); fails when there is none.
pub fn edit(tx: &Connection, w: &mut Writer, id: MessageId, body: &Body) -> rusqlite::Result<(u64, u64)> {
    let (update, ts) = log_update(tx, w, id, UpdateKind::Edit)?;
    let n = tx
        .prepare_cached("UPDATE messages SET body = ?2, edited = ?3 WHERE id = ?1 AND deleted_by IS NULL")?
        .execute(params![id as i64, encode(body)?, ts as i64])?;
    if n == 0 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    let conv: String =
        tx.query_row("SELECT conv FROM messages WHERE id = ?1", params![id as i64], |r| r.get(0))?;
    unindex(tx, id)?;
    index(tx, id, &conv, body)?;
    Ok((update, ts))
}

/// Deletes message `id`: its body becomes `Body::Deleted`, its reactions and index row go.
pub fn delete(
    tx: &Connection,
    w: &mut Writer,
    id: MessageId,
    by: &str,
    proof: &Option<Vec<u8>>,
) -> rusqlite::Result<(u64, u64)> {
    let (update, ts) = log_update(tx, w, id, UpdateKind::Delete)?;
    let body = Body::Deleted { by: by.to_owned(), proof: proof.clone() };
    let n = tx
        .prepare_cached("UPDATE messages SET body = ?2, edited = NULL, deleted_by = ?3 WHERE id = ?1 AND deleted_by IS NULL")?
        .execute(params![id as i64, encode(&body)?, by])?;
    if n == 0 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    tx.prepare_cached("DELETE FROM reactions WHERE msg = ?1")?.execute(params![id as i64])?;
    unindex(tx, id)?;
    Ok((update, ts))
}

/// Adds or takes back `user`'s `emoji` on message `id`, and fills `now` with the message's
/// reactions after the change. A new emoji past `MAX_REACTIONS` is not added (the handler
/// refuses it before; this keeps the bound when two race).
#[allow(clippy::too_many_arguments, reason = "one write's fields")]
pub fn react(
    tx: &Connection,
    w: &mut Writer,
    id: MessageId,
    emoji: &str,
    user_lc: &str,
    user: &str,
    on: bool,
    now: &mut Vec<Reaction>,
) -> rusqlite::Result<(u64, u64)> {
    let live: Option<Option<String>> = tx
        .query_row("SELECT deleted_by FROM messages WHERE id = ?1", params![id as i64], |r| r.get(0))
        .optional()?;
    if !matches!(live, Some(None)) {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    let result = log_update(tx, w, id, UpdateKind::React)?;
    if on {
        let current = reactions(tx, &[id])?.remove(&id).unwrap_or_default();
        if current.iter().any(|r| r.emoji == emoji) || current.len() < classchat_wire::MAX_REACTIONS {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO reactions(msg, emoji, user_lc, user) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id as i64, emoji, user_lc, user])?;
        }
    } else {
        tx.prepare_cached("DELETE FROM reactions WHERE msg = ?1 AND emoji = ?2 AND user_lc = ?3")?
            .execute(params![id as i64, emoji, user_lc])?;
    }
    *now = reactions(tx, &[id])?.remove(&id).unwrap_or_default();
    Ok(result)
}

/// The reactions of each of `ids` that has any: emoji in the order each was first used,
/// users in the order they reacted.
pub fn reactions(c: &Connection, ids: &[MessageId]) -> rusqlite::Result<HashMap<MessageId, Vec<Reaction>>> {
    let mut rows = Vec::new();
    let mut stmt = c.prepare_cached("SELECT emoji, user FROM reactions WHERE msg = ?1 ORDER BY n")?;
    for &id in ids {
        for row in
            stmt.query_map(params![id as i64], |r| Ok((id, r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        {
            rows.push(row?);
        }
    }
    Ok(group_reactions(rows))
}

/// Reaction rows `(message, emoji, user)` in the order they came, grouped per message:
/// emoji in the order each was first used, users in the order they reacted.
pub fn group_reactions(
    rows: impl IntoIterator<Item = (MessageId, String, String)>,
) -> HashMap<MessageId, Vec<Reaction>> {
    let mut out: HashMap<MessageId, Vec<Reaction>> = HashMap::new();
    for (id, emoji, user) in rows {
        let list = out.entry(id).or_default();
        match list.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => r.users.push(user),
            None => list.push(Reaction { emoji, users: vec![user] }),
        }
    }
    out
}

/// Fills in the reactions of `messages`.
pub fn with_reactions(
    c: &Connection,
    mut messages: Vec<StoredMessage>,
) -> rusqlite::Result<Vec<StoredMessage>> {
    // Reactions are rare: one indexed probe per message of the page.
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    let mut all = reactions(c, &ids)?;
    for m in &mut messages {
        m.reactions = all.remove(&m.id).unwrap_or_default();
    }
    Ok(messages)
}

/// One message by id, in its current state.
pub fn message(c: &Connection, id: MessageId) -> rusqlite::Result<Option<StoredMessage>> {
    let Ok(id) = i64::try_from(id) else { return Ok(None) };
    let m = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))?
        .query_row(params![id], row_to_message)
        .optional()?
        .flatten();
    match m {
        Some(m) => Ok(with_reactions(c, vec![m])?.pop()),
        None => Ok(None),
    }
}

/// What catch-up sends about a message that changed after the device's cursor.
#[derive(Debug)]
pub struct Changed {
    pub message: StoredMessage,
    pub kinds: Vec<UpdateKind>,
}

/// The messages of `conv` at or before `after` that changed after `after`, oldest change
/// first, at most `limit` (the most recently changed), each in its current state with the
/// kinds of change it had.
pub fn changed_since(
    c: &Connection,
    conv: &str,
    after: MessageId,
    limit: u32,
) -> rusqlite::Result<Vec<Changed>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut stmt = c.prepare_cached(
        "SELECT msg, MAX(id) AS last, SUM(kind = 1), SUM(kind = 2), SUM(kind = 3) FROM message_updates
         WHERE conv = ?1 AND id > ?2 AND msg <= ?2 GROUP BY msg ORDER BY last DESC LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![conv, after, limit], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(2)? > 0,
                r.get::<_, i64>(3)? > 0,
                r.get::<_, i64>(4)? > 0,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (msg, edit, delete, react) in rows.into_iter().rev() {
        let Some(message) = message(c, msg)? else { continue };
        let kinds = [(edit, UpdateKind::Edit), (delete, UpdateKind::Delete), (react, UpdateKind::React)]
            .into_iter()
            .filter_map(|(on, k)| on.then_some(k))
            .collect();
        out.push(Changed { message, kinds });
    }
    Ok(out)
}

/// One page of a full-text search: messages matching `expr` (an FTS5 expression), newest
/// first, skipping `offset`, at most `limit`.
pub fn search(c: &Connection, expr: &str, offset: u32, limit: u32) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut stmt = c.prepare_cached(
        "SELECT m.id, m.conv, m.sender, m.ts, m.body, m.reply_to, m.edited
         FROM message_text f JOIN messages m ON m.id = f.rowid
         WHERE message_text MATCH ?1 ORDER BY f.rowid DESC LIMIT ?2 OFFSET ?3",
    )?;
    let rows = stmt.query_map(params![expr, limit, offset], row_to_message)?;
    let found: Vec<StoredMessage> =
        rows.collect::<rusqlite::Result<Vec<_>>>()?.into_iter().flatten().collect();
    with_reactions(c, found)
}

/// The highest id used by updates (part of the message id sequence).
pub fn last_update_id(c: &Connection) -> rusqlite::Result<MessageId> {
    Ok(c.query_row("SELECT COALESCE(MAX(id), 0) FROM message_updates", [], |r| r.get::<_, i64>(0))? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{MIGRATIONS, messages_after, messages_before, migrate};

    /// A database made by the migrations before this one, holding messages, opens: they load
    /// with no reply, edit or reactions, and their text is searchable.
    #[test]
    fn an_older_database_migrates_and_its_messages_load_and_are_indexed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Connection::open(dir.path().join("old.db")).expect("open");
        let before = MIGRATIONS.len() - 1;
        for (i, sql) in MIGRATIONS.iter().take(before).enumerate() {
            c.execute_batch(sql).expect("an old migration");
            c.pragma_update(None, "user_version", (i + 1) as i64).expect("version");
        }
        let rows: [(i64, &str, Body); 3] = [
            (1, "r:lobby", Body::Text { text: "Old lecture notes".into() }),
            (2, "a", Body::Text { text: "old announcement".into() }),
            (3, "d:alice:bob", Body::Opaque { data: b"old envelope".to_vec() }),
        ];
        for (id, conv, body) in &rows {
            c.execute(
                "INSERT INTO messages(id, conv, sender, ts, body) VALUES (?1, ?2, 'alice', 1, ?3)",
                params![id, conv, encode(body).expect("encode")],
            )
            .expect("an old message");
        }
        migrate(&mut c).expect("migrate");
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version as usize, MIGRATIONS.len());

        let lobby = messages_before(&c, "r:lobby", None, 10).expect("history");
        assert_eq!(lobby.len(), 1);
        assert_eq!((lobby[0].reply_to, lobby[0].edited, lobby[0].reactions.len()), (None, None, 0));
        assert_eq!(lobby[0].body, rows[0].2);
        let dm = messages_after(&c, "d:alice:bob", 0, 10).expect("catch-up");
        assert_eq!(dm[0].body, rows[2].2);
        let expr = crate::search::expression("OLD", &["r:lobby".to_owned(), "a".to_owned()]).expect("words");
        let found: Vec<u64> = search(&c, &expr, 0, 10).expect("search").iter().map(|m| m.id).collect();
        assert_eq!(found, vec![2, 1], "both old texts indexed, newest first; the DM is not");
        assert!(changed_since(&c, "r:lobby", 0, 10).expect("changes").is_empty());
    }
}
