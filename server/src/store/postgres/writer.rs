//! The PostgreSQL writer thread: group commit, conversation locks, savepoints, and
//! reconnection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use classchat_wire::{MessageId, Reaction, Timestamp};
use postgres::{Statement, Transaction};
use sha2::Digest as _;

use super::read::{reactions, terms_of};
use super::{Conn, describe, error_text, prepared};
use crate::store::rich::UpdateKind;
use crate::store::{Committed, Job, Write, now_ms};

/// The first wait before connecting again after the database was lost; it doubles up to
/// [`MAX_BACKOFF`]. Jobs that come meanwhile fail at once.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("{}", error_text(.0))]
    Db(#[from] postgres::Error),
    #[error("{0}")]
    Refused(String),
    #[error("cannot encode a message: {0}")]
    Encode(#[from] classchat_wire::Error),
}

/// Why a whole batch failed; `committing`: the commit was sent, so it may have applied.
struct BatchError {
    error: postgres::Error,
    committing: bool,
}

struct Outage {
    error: String,
    backoff: Duration,
    next_try: Instant,
}

struct Writer {
    config: postgres::Config,
    conn: Option<Conn>,
    last_ts: Timestamp,
    outage: Option<Outage>,
}

pub(super) fn run(config: postgres::Config, conn: Conn, rx: std::sync::mpsc::Receiver<Job>, batch: usize) {
    let mut w = Writer { config, conn: Some(conn), last_ts: 0, outage: None };
    crate::store::serve_jobs(&rx, batch, |jobs| w.apply(jobs));
    tracing::debug!("store writer stopped");
}

/// Whether `e` means the connection is gone (rather than this statement failing).
fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Not from the database: the socket failed, or a value did not convert (this
        // statement's problem, not the connection's).
        None => std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>()),
        // Class 08: connection exception; 57P01-57P03: shutdown, crash, not accepting.
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
    }
}

/// What jobs fail with while the database cannot be reached (nothing of them was saved).
const DATABASE_DOWN: &str = "unavailable: the server cannot reach its database (PostgreSQL); nothing was saved, \
                             try again in a moment";

impl Writer {
    fn apply(&mut self, jobs: &mut [Job]) -> Vec<Committed> {
        let mut retried = false;
        let mut savepoints = false;
        loop {
            let up = self.connected();
            let Some(conn) = self.conn.as_mut().filter(|_| up) else {
                // The details are in the log (once per outage); clients learn what to do.
                return fail_all(jobs, DATABASE_DOWN);
            };
            let saved_ts = self.last_ts;
            match apply_batch(conn, &mut self.last_ts, jobs, savepoints) {
                Ok(Some(results)) => return results,
                // A job failed, so the transaction was rolled back: again, with a
                // savepoint per job this time, so that only that job fails.
                Ok(None) => {
                    self.last_ts = saved_ts;
                    savepoints = true;
                }
                Err(BatchError { error, committing }) => {
                    self.last_ts = saved_ts;
                    let broken = is_connection_error(&error) || conn.client.is_closed();
                    if broken {
                        self.conn = None;
                        // A connection found dead before anything was committed (the
                        // database restarted since the last batch) costs nothing: try once
                        // more on a fresh one.
                        if !committing && !retried {
                            retried = true;
                            continue;
                        }
                        self.lost(error_text(&error));
                        if !committing {
                            return fail_all(jobs, DATABASE_DOWN);
                        }
                    } else {
                        tracing::error!(error = %error_text(&error), "store commit failed");
                    }
                    let what = if committing { "may not have been saved" } else { "could not save" };
                    return fail_all(jobs, &format!("{what}: {}", error_text(&error)));
                }
            }
        }
    }

    /// Whether there is a connection, made again when lost (not before the backoff
    /// allows).
    fn connected(&mut self) -> bool {
        if self.conn.is_none() {
            if self.outage.as_ref().is_some_and(|o| Instant::now() < o.next_try) {
                return false;
            }
            match Conn::connect(&self.config) {
                Ok(c) => {
                    if self.outage.take().is_some() {
                        tracing::info!(database = %describe(&self.config), "PostgreSQL is back");
                    }
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.lost(error_text(&e));
                    return false;
                }
            }
        }
        true
    }

    /// Records that the database is unreachable: logged once per outage.
    fn lost(&mut self, error: String) {
        let now = Instant::now();
        match &mut self.outage {
            Some(o) => {
                o.backoff = (o.backoff * 2).min(MAX_BACKOFF);
                o.next_try = now + o.backoff;
                o.error = error;
            }
            None => {
                tracing::warn!(
                    database = %describe(&self.config), error = %error,
                    "PostgreSQL is unreachable: writes fail until it is back; reconnecting"
                );
                self.outage = Some(Outage { error, backoff: FIRST_BACKOFF, next_try: now + FIRST_BACKOFF });
            }
        }
    }
}

fn fail_all(jobs: &[Job], why: &str) -> Vec<Committed> {
    jobs.iter().map(|_| Err(why.to_owned())).collect()
}

/// The advisory lock key of a conversation: the first 8 bytes of its SHA-256.
fn lock_key(conv: &str) -> i64 {
    let digest = sha2::Sha256::digest(conv.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Applies every job in one transaction. With `savepoints`, each job has one, so a job
/// that fails is rolled back alone. Without (the usual case: jobs rarely fail, and a
/// savepoint costs two round trips per job), a job that fails rolls the whole
/// transaction back and the result is `Ok(None)`: the caller runs the batch again with
/// savepoints. `Err` when the transaction as a whole failed.
fn apply_batch(
    conn: &mut Conn,
    last_ts: &mut Timestamp,
    jobs: &mut [Job],
    savepoints: bool,
) -> Result<Option<Vec<Committed>>, BatchError> {
    let early = |error| BatchError { error, committing: false };
    let Conn { client, statements } = conn;
    let mut tx = client.transaction().map_err(early)?;
    let convs = lock_conversations(&mut tx, statements, jobs).map_err(early)?;
    let mut results = Vec::with_capacity(jobs.len());
    let alone = jobs.len() == 1;
    let mut i = 0;
    while i < jobs.len() {
        let before = *last_ts;
        if !savepoints {
            // A run of jobs that are one message each (the usual case under load): one
            // statement writes them all.
            let run: Vec<Message<'_>> = jobs[i..].iter().map_while(single_message).collect();
            let outcome = match run.len() {
                0 | 1 => {
                    apply_job(&mut tx, statements, &convs, last_ts, &mut jobs[i].writes).map(|ids| vec![ids])
                }
                _ => insert_messages(&mut tx, statements, last_ts, &run)
                    .map(|ids| ids.into_iter().map(|id| vec![id]).collect()),
            };
            match outcome {
                Ok(ids) => {
                    i += ids.len();
                    results.extend(ids.into_iter().map(Ok));
                }
                Err(JobError::Db(e)) if is_connection_error(&e) => return Err(early(e)),
                Err(e) => {
                    tx.rollback().map_err(early)?;
                    if !alone {
                        return Ok(None);
                    }
                    tracing::error!(error = %e, "a store write failed");
                    return Ok(Some(vec![Err(e.to_string())]));
                }
            }
            continue;
        }
        let mut sp = tx.savepoint("job").map_err(early)?;
        match apply_job(&mut sp, statements, &convs, last_ts, &mut jobs[i].writes) {
            Ok(ids) => {
                sp.commit().map_err(early)?;
                results.push(Ok(ids));
            }
            Err(JobError::Db(e)) if is_connection_error(&e) => return Err(early(e)),
            Err(e) => {
                sp.rollback().map_err(early)?;
                *last_ts = before;
                tracing::error!(error = %e, "a store write failed");
                results.push(Err(e.to_string()));
            }
        }
        i += 1;
    }
    tx.commit().map_err(|error| BatchError { error, committing: true })?;
    Ok(Some(results))
}

/// The fields of a job that is one `Write::Message`.
type Message<'a> = (&'a str, &'a str, &'a classchat_wire::Body, Option<MessageId>);

fn single_message(job: &Job) -> Option<Message<'_>> {
    match job.writes.as_slice() {
        [Write::Message { conv, sender, body, reply_to }] => Some((conv, sender, body, *reply_to)),
        _ => None,
    }
}

/// Writes `run` (one message per job) with two statements: ids for all from the
/// sequence, in order, then one insert of every row. Returns each one's id and time.
fn insert_messages(
    tx: &mut Transaction<'_>,
    st: &mut HashMap<String, Statement>,
    last_ts: &mut Timestamp,
    run: &[Message<'_>],
) -> Result<Vec<(MessageId, Timestamp)>, JobError> {
    let stmt = prepared(tx, st, "SELECT nextval('message_ids') FROM generate_series(1, $1::bigint)")?;
    let mut ids = tx
        .query(&stmt, &[&(run.len() as i64)])?
        .iter()
        .map(|r| r.try_get::<_, i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    // The sequence hands them out increasing; sorted, they follow the jobs' order.
    ids.sort_unstable();
    let ts = now_ms().max(*last_ts);
    let mut bodies = Vec::with_capacity(run.len());
    for (_, _, body, _) in run {
        bodies.push(classchat_wire::message::encode(*body)?);
    }
    let convs: Vec<&str> = run.iter().map(|m| m.0).collect();
    let senders: Vec<&str> = run.iter().map(|m| m.1).collect();
    let replies: Vec<Option<i64>> = run.iter().map(|m| m.3.map(|r| r as i64)).collect();
    // Each row's terms as one string (an array of arrays must be rectangular); the
    // terms themselves are letters and digits, so a space splits them back.
    let terms: Vec<Option<String>> = run.iter().map(|m| terms_of(m.0, m.2).map(|t| t.join(" "))).collect();
    let sql = "INSERT INTO messages(id, conv, sender, ts, body, reply_to, terms)
               SELECT id, conv, sender, $4, body, reply_to, string_to_array(terms, ' ')
               FROM unnest($1::bigint[], $2::text[], $3::text[], $5::bytea[], $6::bigint[], $7::text[])
                   AS u(id, conv, sender, body, reply_to, terms)";
    exec(tx, st, sql, &[&ids, &convs, &senders, &(ts as i64), &bodies, &replies, &terms])?;
    *last_ts = ts;
    Ok(ids.into_iter().map(|id| (id as u64, ts)).collect())
}

/// Locks every conversation the batch takes message ids in (until the commit), in key
/// order, and returns the conversation of each message the batch updates.
fn lock_conversations(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    jobs: &[Job],
) -> Result<HashMap<MessageId, String>, postgres::Error> {
    let writes = || jobs.iter().flat_map(|j| j.writes.iter());
    let updated: Vec<i64> = writes()
        .filter_map(|w| match w {
            Write::Edit { id, .. } | Write::DeleteMessage { id, .. } | Write::React { id, .. } => {
                i64::try_from(*id).ok()
            }
            _ => None,
        })
        .collect();
    let mut convs = HashMap::new();
    if !updated.is_empty() {
        let stmt = prepared(tx, statements, "SELECT id, conv FROM messages WHERE id = ANY($1)")?;
        for r in tx.query(&stmt, &[&updated])? {
            convs.insert(r.try_get::<_, i64>(0)? as u64, r.try_get::<_, String>(1)?);
        }
    }
    let mut keys: Vec<i64> = writes()
        .filter_map(|w| match w {
            Write::Message { conv, .. } | Write::PutDmKey { conv, .. } => Some(lock_key(conv)),
            Write::AddMember { room, .. } => Some(lock_key(&crate::state::room_conv(room))),
            _ => None,
        })
        .chain(convs.values().map(|c| lock_key(c)))
        .collect();
    if !keys.is_empty() {
        keys.sort_unstable();
        keys.dedup();
        let stmt =
            prepared(tx, statements, "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k")?;
        tx.execute(&stmt, &[&keys])?;
    }
    Ok(convs)
}

/// Runs `sql` (prepared once per connection) with `params`; returns the rows changed.
fn exec(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<u64, postgres::Error> {
    let stmt = prepared(tx, statements, sql)?;
    tx.execute(&stmt, params)
}

fn apply_job(
    tx: &mut Transaction<'_>,
    st: &mut HashMap<String, Statement>,
    convs: &HashMap<MessageId, String>,
    last_ts: &mut Timestamp,
    writes: &mut [Write],
) -> Result<Vec<(MessageId, Timestamp)>, JobError> {
    let mut ids = Vec::new();
    let now = now_ms() as i64;
    for write in writes.iter_mut() {
        // The one write the writer fills in: a reaction's list after the change.
        if let Write::React { id, emoji, user_lc, user, on, now: list } = write {
            ids.push(react(tx, st, last_ts, *id, emoji, user_lc, user, *on, list)?);
            continue;
        }
        match &*write {
            Write::CreateUser { name, auth } => {
                let sql = "INSERT INTO users(name_lc, name, auth, created) VALUES ($1, $2, $3, $4)";
                exec(tx, st, sql, &[&name.to_ascii_lowercase(), name, auth, &now])?;
            }
            Write::SetServerAdmin { user, admin } => {
                exec(tx, st, "UPDATE users SET server_admin = $2 WHERE name_lc = $1", &[user, admin])?;
            }
            Write::SetBanned { user, banned } => {
                exec(tx, st, "UPDATE users SET banned = $2 WHERE name_lc = $1", &[user, banned])?;
            }
            Write::UpsertDevice { user, device, token_hash, baseline, previous } => {
                let (prev, until) = match previous {
                    Some((hash, until)) => (Some(hash), *until),
                    None => (None, 0),
                };
                let sql =
                    "INSERT INTO devices(user_lc, device, token_hash, baseline, prev_token_hash, prev_until)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT(user_lc, device) DO UPDATE SET token_hash = excluded.token_hash,
                         prev_token_hash = excluded.prev_token_hash, prev_until = excluded.prev_until";
                exec(tx, st, sql, &[user, device, token_hash, &(*baseline as i64), &prev, &until])?;
            }
            Write::CreateRoom { name, topic, password, admin } => {
                let sql = "INSERT INTO rooms(name_lc, name, topic, password, admin_lc, created)
                           VALUES ($1, $2, $3, $4, $5, $6)";
                exec(tx, st, sql, &[&name.to_ascii_lowercase(), name, topic, password, admin, &now])?;
            }
            Write::DeleteRoom { room } => {
                let conv = crate::state::room_conv(room);
                exec(tx, st, "DELETE FROM rooms WHERE name_lc = $1", &[room])?;
                exec(tx, st, "DELETE FROM room_members WHERE room_lc = $1", &[room])?;
                exec(tx, st, "DELETE FROM room_bans WHERE room_lc = $1", &[room])?;
                exec(tx, st, "DELETE FROM class_objects WHERE room_lc = $1", &[room])?;
                let sql = "DELETE FROM reactions WHERE msg IN (SELECT id FROM messages WHERE conv = $1)";
                exec(tx, st, sql, &[&conv])?;
                exec(tx, st, "DELETE FROM message_updates WHERE conv = $1", &[&conv])?;
                exec(tx, st, "DELETE FROM messages WHERE conv = $1", &[&conv])?;
                exec(tx, st, "DELETE FROM cursors WHERE conv = $1", &[&conv])?;
            }
            Write::SetTopic { room, topic } => {
                exec(tx, st, "UPDATE rooms SET topic = $2 WHERE name_lc = $1", &[room, topic])?;
            }
            Write::SetRoomPassword { room, password } => {
                exec(tx, st, "UPDATE rooms SET password = $2 WHERE name_lc = $1", &[room, password])?;
            }
            Write::SetRoomAdmin { room, admin } => {
                exec(tx, st, "UPDATE rooms SET admin_lc = $2 WHERE name_lc = $1", &[room, admin])?;
            }
            Write::AddMember { room, user } => {
                // The member's first message: the next id of the sequence, taken under the
                // room's lock, so every later message of the room is after it.
                let sql = "INSERT INTO room_members(room_lc, user_lc, joined_id) VALUES ($1, $2, nextval('message_ids'))
                           ON CONFLICT(room_lc, user_lc) DO UPDATE SET joined_id = excluded.joined_id";
                exec(tx, st, sql, &[room, user])?;
            }
            Write::RemoveMember { room, user } => {
                exec(tx, st, "DELETE FROM room_members WHERE room_lc = $1 AND user_lc = $2", &[room, user])?;
            }
            Write::AddBan { room, user } => {
                let sql = "INSERT INTO room_bans(room_lc, user_lc) VALUES ($1, $2) ON CONFLICT DO NOTHING";
                exec(tx, st, sql, &[room, user])?;
            }
            Write::RemoveBan { room, user } => {
                exec(tx, st, "DELETE FROM room_bans WHERE room_lc = $1 AND user_lc = $2", &[room, user])?;
            }
            Write::AddDmPair { a, b } => {
                let sql = "INSERT INTO dm_pairs(a_lc, b_lc) VALUES ($1, $2) ON CONFLICT DO NOTHING";
                exec(tx, st, sql, &[a, b])?;
            }
            Write::Message { conv, sender, body, reply_to } => {
                let ts = now_ms().max(*last_ts);
                let blob = classchat_wire::message::encode(body)?;
                let reply_to = reply_to.map(|r| r as i64);
                let sql = "INSERT INTO messages(id, conv, sender, ts, body, reply_to, terms)
                           VALUES (nextval('message_ids'), $1, $2, $3, $4, $5, $6) RETURNING id";
                let stmt = prepared(tx, st, sql)?;
                let row = tx.query_one(
                    &stmt,
                    &[conv, sender, &(ts as i64), &blob, &reply_to, &terms_of(conv, body)],
                )?;
                *last_ts = ts;
                ids.push((row.try_get::<_, i64>(0)? as u64, ts));
            }
            Write::SetIdentity { user, public_key, backup } => {
                let sql =
                    "INSERT INTO identity_keys(user_lc, public_key, backup, updated) VALUES ($1, $2, $3, $4)
                     ON CONFLICT(user_lc) DO UPDATE SET public_key = excluded.public_key,
                         backup = excluded.backup, updated = excluded.updated";
                exec(tx, st, sql, &[user, public_key, backup, &now])?;
            }
            Write::PutDmKey { conv, key_id, grant } => {
                let sql = r#"INSERT INTO dm_keys(conv, key_id, "grant", seq)
                     VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM dm_keys WHERE conv = $1))
                     ON CONFLICT DO NOTHING"#;
                exec(tx, st, sql, &[conv, key_id, grant])?;
            }
            Write::SetAuth { user, auth } => {
                exec(tx, st, "UPDATE users SET auth = $2 WHERE name_lc = $1", &[user, auth])?;
            }
            Write::RevokeTokens { user, keep } => {
                let sql = "UPDATE devices SET token_hash = NULL, prev_token_hash = NULL, prev_until = 0
                           WHERE user_lc = $1 AND device <> $2";
                exec(tx, st, sql, &[user, keep])?;
            }
            Write::CreateFile { row } => {
                let sql =
                    "INSERT INTO files(id, owner_lc, sender, conv, recipient_lc, name, size, meta, sha256,
                         token_hash, accepted, created, completed)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
                exec(
                    tx,
                    st,
                    sql,
                    &[
                        &(row.id as i64),
                        &row.owner_lc,
                        &row.sender,
                        &row.conv,
                        &row.recipient_lc,
                        &row.name,
                        &(row.size as i64),
                        &row.meta,
                        &row.sha256,
                        &row.token_hash,
                        &row.accepted,
                        &(row.created as i64),
                        &row.completed.map(|t| t as i64),
                    ],
                )?;
            }
            Write::CompleteFile { id, sha256, completed } => {
                let sql = "UPDATE files SET sha256 = $2, completed = $3 WHERE id = $1";
                exec(tx, st, sql, &[&(*id as i64), sha256, &(*completed as i64)])?;
            }
            Write::AcceptOffer { id } => {
                exec(tx, st, "UPDATE files SET accepted = TRUE WHERE id = $1", &[&(*id as i64)])?;
            }
            Write::PutObject { kind, key, room, value } => {
                let sql = "INSERT INTO class_objects(kind, key, room_lc, value) VALUES ($1, $2, $3, $4)
                     ON CONFLICT(kind, key) DO UPDATE SET room_lc = excluded.room_lc, value = excluded.value";
                exec(tx, st, sql, &[kind, key, room, value])?;
            }
            Write::DeleteObject { kind, key } => {
                exec(tx, st, "DELETE FROM class_objects WHERE kind = $1 AND key = $2", &[kind, key])?;
            }
            Write::Audit { actor, action, target, detail } => {
                let sql = "INSERT INTO audit(ts, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)";
                exec(tx, st, sql, &[&now, actor, &action.as_str(), target, detail])?;
            }
            Write::Edit { id, body } => {
                let (update, ts) = log_update(tx, st, last_ts, *id, UpdateKind::Edit)?;
                let conv = convs.get(id).map_or("", String::as_str);
                let sql = "UPDATE messages SET body = $2, edited = $3, terms = $4 WHERE id = $1 AND deleted_by IS NULL";
                let blob = classchat_wire::message::encode(body)?;
                let n = exec(tx, st, sql, &[&(*id as i64), &blob, &(ts as i64), &terms_of(conv, body)])?;
                if n == 0 {
                    return Err(gone(*id));
                }
                ids.push((update, ts));
            }
            Write::DeleteMessage { id, by, proof } => {
                let (update, ts) = log_update(tx, st, last_ts, *id, UpdateKind::Delete)?;
                let body = classchat_wire::Body::Deleted { by: by.clone(), proof: proof.clone() };
                let blob = classchat_wire::message::encode(&body)?;
                let sql = "UPDATE messages SET body = $2, edited = NULL, deleted_by = $3, terms = NULL
                           WHERE id = $1 AND deleted_by IS NULL";
                if exec(tx, st, sql, &[&(*id as i64), &blob, by])? == 0 {
                    return Err(gone(*id));
                }
                exec(tx, st, "DELETE FROM reactions WHERE msg = $1", &[&(*id as i64)])?;
                ids.push((update, ts));
            }
            Write::React { .. } => {}
            Write::DeleteFile { id } => {
                let stmt = prepared(tx, st, "DELETE FROM files WHERE id = $1 RETURNING sha256")?;
                let sha256: Option<Vec<u8>> = match tx.query_opt(&stmt, &[&(*id as i64)])? {
                    Some(row) => row.try_get(0)?,
                    None => None,
                };
                // The content goes with the last file that has it.
                if let Some(sha256) = sha256 {
                    let sql = "DELETE FROM file_blobs WHERE sha256 = $1
                               AND NOT EXISTS (SELECT 1 FROM files WHERE sha256 = $1)";
                    exec(tx, st, sql, &[&sha256])?;
                }
            }
            Write::Cursor { user, device, conv, up_to } => {
                let sql = "INSERT INTO cursors(user_lc, device, conv, up_to) VALUES ($1, $2, $3, $4)
                     ON CONFLICT(user_lc, device, conv) DO UPDATE SET up_to = GREATEST(cursors.up_to, excluded.up_to)";
                exec(tx, st, sql, &[user, device, conv, &(*up_to as i64)])?;
            }
        }
    }
    Ok(ids)
}

fn gone(id: MessageId) -> JobError {
    JobError::Refused(format!("message {id} is deleted or does not exist"))
}

/// Records an update of message `msg`, numbered from the message sequence; returns its
/// id and time. Fails when there is no such message.
fn log_update(
    tx: &mut Transaction<'_>,
    st: &mut HashMap<String, Statement>,
    last_ts: &mut Timestamp,
    msg: MessageId,
    kind: UpdateKind,
) -> Result<(u64, u64), JobError> {
    let ts = now_ms().max(*last_ts);
    let sql = "INSERT INTO message_updates(id, conv, msg, kind)
               SELECT nextval('message_ids'), conv, id, $2 FROM messages WHERE id = $1 RETURNING id";
    let stmt = prepared(tx, st, sql)?;
    let row = tx.query_opt(&stmt, &[&(msg as i64), &(kind as i16)])?.ok_or_else(|| gone(msg))?;
    *last_ts = ts;
    Ok((row.try_get::<_, i64>(0)? as u64, ts))
}

/// Adds or takes back `user`'s `emoji` on message `id`, and fills `now` with the message's
/// reactions after the change (as `crate::store::rich::react` does on SQLite).
#[allow(clippy::too_many_arguments, reason = "one write's fields")]
fn react(
    tx: &mut Transaction<'_>,
    st: &mut HashMap<String, Statement>,
    last_ts: &mut Timestamp,
    id: MessageId,
    emoji: &str,
    user_lc: &str,
    user: &str,
    on: bool,
    now: &mut Vec<Reaction>,
) -> Result<(u64, u64), JobError> {
    let msg = id as i64;
    let stmt = prepared(tx, st, "SELECT deleted_by FROM messages WHERE id = $1")?;
    let live = match tx.query_opt(&stmt, &[&msg])? {
        Some(r) => r.try_get::<_, Option<String>>(0)?.is_none(),
        None => false,
    };
    if !live {
        return Err(gone(id));
    }
    let result = log_update(tx, st, last_ts, id, UpdateKind::React)?;
    if on {
        let current = reactions(tx, st, &[msg])?.remove(&id).unwrap_or_default();
        if current.iter().any(|r| r.emoji == emoji) || current.len() < classchat_wire::MAX_REACTIONS {
            let sql = r#"INSERT INTO reactions(msg, emoji, user_lc, "user") VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING"#;
            exec(tx, st, sql, &[&msg, &emoji, &user_lc, &user])?;
        }
    } else {
        let sql = "DELETE FROM reactions WHERE msg = $1 AND emoji = $2 AND user_lc = $3";
        exec(tx, st, sql, &[&msg, &emoji, &user_lc])?;
    }
    *now = reactions(tx, st, &[msg])?.remove(&id).unwrap_or_default();
    Ok(result)
}
