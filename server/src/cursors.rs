//! Delivery cursors (`ack`s) coalesced in memory.
//!
//! Every client acknowledges what it received once a second per conversation. Written one
//! store job per `ack`, a room of 5,000 cost 5,000 jobs and cursor commits a second, about
//! one for every two deliveries (BENCHMARKS.md, fanout). The newest cursor per (user,
//! device, conversation) is kept here instead and written in one job every
//! [`FLUSH_EVERY`], when a session ends, and at shutdown. A cursor is only a catch-up hint
//! and catch-up tolerates duplicates, so a crash costs at most that much re-sent history;
//! a login reads the pending cursors too, so a quick reconnect never sees one go back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use classchat_wire::MessageId;

use crate::state::{Lc, State};
use crate::store::{Job, Write};

/// How often pending cursors are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Pending cursors that trigger a write at once instead of at the next tick. The table
/// itself is bounded by what may be acknowledged: one entry per logged-in device and
/// conversation it is allowed to read (checked before an entry is made).
const MAX_PENDING: usize = 50_000;

/// (user, device, conversation key) → newest acknowledged id.
type Key = (Lc, String, String);

#[derive(Debug, Default)]
pub struct Cursors {
    /// Entries stay until their write is committed, so a login that reads the database
    /// and this table never misses a cursor that is on its way to disk.
    pending: Mutex<HashMap<Key, MessageId>>,
}

impl Cursors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, MessageId>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an acknowledgement; `true` when the table is full and should be written now.
    pub fn ack(&self, user: Lc, device: String, conv: String, up_to: MessageId) -> bool {
        let mut pending = self.lock();
        let e = pending.entry((user, device, conv)).or_insert(up_to);
        *e = (*e).max(up_to);
        pending.len() >= MAX_PENDING
    }

    /// The writes of what is pending (of one device, or all), left in place until
    /// committed (see [`Cursors::written`]).
    fn writes(&self, of: Option<(&str, &str)>) -> Vec<Write> {
        self.lock()
            .iter()
            .filter(|((u, d, _), _)| of.is_none_or(|(user, device)| u == user && d == device))
            .map(|((user, device, conv), up_to)| Write::Cursor {
                user: user.clone(),
                device: device.clone(),
                conv: conv.clone(),
                up_to: *up_to,
            })
            .collect()
    }

    /// Forgets the committed `writes`, except cursors that moved on meanwhile.
    fn written(&self, writes: Vec<Write>) {
        let mut pending = self.lock();
        for w in writes {
            if let Write::Cursor { user, device, conv, up_to } = w {
                let key = (user, device, conv);
                if pending.get(&key) == Some(&up_to) {
                    pending.remove(&key);
                }
            }
        }
    }

    /// The pending cursors of one device: conversation key → id.
    pub fn of_device(&self, user: &str, device: &str) -> Vec<(String, MessageId)> {
        self.lock()
            .iter()
            .filter(|((u, d, _), _)| u == user && d == device)
            .map(|((_, _, conv), id)| (conv.clone(), *id))
            .collect()
    }
}

/// Writes what is pending (of one device, or all) in one store job. Waits only when the
/// store's queue is full.
pub async fn flush(state: &State, of: Option<(&str, &str)>) {
    let writes = state.cursors.writes(of);
    if writes.is_empty() {
        return;
    }
    let st = state.clone();
    let job = Job {
        writes,
        done: Some(Box::new(move |result, writes| {
            if result.is_ok() {
                st.cursors.written(writes);
            }
        })),
    };
    if let Err(e) = state.store.submit(job).await {
        tracing::warn!(error = %e, "could not store delivery cursors");
    }
}

/// Flushes the pending cursors every [`FLUSH_EVERY`] until shutdown (which flushes them
/// once more after the last session has ended).
pub async fn flush_task(state: State) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => flush(&state, None).await,
        }
    }
}
