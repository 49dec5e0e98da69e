//! Peer-to-peer file search and fetch (PROTOCOL.md section 17): who shares, searches in
//! flight, fetch tickets, the relay, and the byte counters that show what the server
//! carried.
//!
//! The server never sees what people share beyond the answers they choose to send, and it
//! stays out of the data path unless the peers cannot reach each other; even then the
//! bytes it pipes are the peers' own end-to-end sealed session.
//!
//! - [`search`]: `set_sharing`, `who_has`, `answer_search` and the deadline.
//! - [`tickets`]: `peer_fetch` and `peer_relay`.
//! - [`relay`]: bulk connections attached by ticket, paired and piped.
//!
//! One std `Mutex` guards the registry; it is never held across an `.await`, and the work
//! under it is bounded by one room's members or one search's answer.

pub mod relay;
pub mod search;
pub mod tickets;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use classchat_wire::peer::{RelaySide, SearchId, TICKET_LEN};

use crate::state::{Lc, SessionId};

/// Searches one user may have in flight.
const MAX_SEARCHES_PER_USER: usize = 4;
/// Searches in flight on the whole server.
const MAX_SEARCHES: usize = 4096;
/// Tickets one asker may hold, and the server in all (the oldest give way).
const MAX_TICKETS_PER_USER: usize = 16;
const MAX_TICKETS: usize = 16_384;

pub type TicketKey = [u8; TICKET_LEN];

/// What the server carried, in bytes, since it started.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes piped between the two ends of peer relays (each byte counted once).
    pub relayed: AtomicU64,
    /// File content on bulk connections (uploads received plus downloads sent).
    pub bulk: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficCounts {
    pub relayed_bytes: u64,
    pub bulk_bytes: u64,
}

impl Traffic {
    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            relayed_bytes: self.relayed.load(Ordering::Relaxed),
            bulk_bytes: self.bulk.load(Ordering::Relaxed),
        }
    }

    pub fn add_relayed(&self, n: u64) {
        self.relayed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bulk(&self, n: u64) {
        self.bulk.fetch_add(n, Ordering::Relaxed);
    }
}

/// A session with sharing on.
#[derive(Debug)]
struct Listener {
    user: Lc,
    /// The address the chat connection comes from.
    seen: IpAddr,
    port: u16,
    addrs: Vec<IpAddr>,
}

#[derive(Debug)]
struct Search {
    asker: Lc,
    asker_session: SessionId,
    asked: HashSet<SessionId>,
    answered: HashSet<SessionId>,
    results: usize,
    truncated: bool,
}

#[derive(Debug)]
struct Ticket {
    asker: Lc,
    sharer_session: SessionId,
    expires: Instant,
    relay_requested: bool,
    /// Relay ends that attached (each may attach once).
    attached: HashSet<RelaySide>,
}

/// Token bucket for searches (fractional rates).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, per_second: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * per_second).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    listeners: HashMap<SessionId, Listener>,
    searches: HashMap<SearchId, Search>,
    tickets: HashMap<TicketKey, Ticket>,
    buckets: HashMap<Lc, Bucket>,
}

/// The peer-to-peer registry and counters.
#[derive(Debug, Default)]
pub struct Peers {
    registry: Mutex<Registry>,
    next_search: AtomicU64,
    pub traffic: Traffic,
    relays: relay::Pairing,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets what a closed session registered (its listener; its searches end at their
    /// deadline with nobody to tell).
    pub fn session_ended(&self, session: SessionId) {
        let mut reg = self.lock();
        reg.listeners.remove(&session);
        reg.searches.retain(|_, s| s.asker_session != session);
    }
}
