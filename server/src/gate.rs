//! Admission of new connections: bounds on what an unauthenticated peer can hold.
//!
//! Three named limits (config keys, PROTOCOL.md section 10):
//! - `max_pre_login`: connections that have not logged in (or attached a transfer) yet,
//!   in total;
//! - `max_pre_login_per_address`: the same, per source address;
//! - `max_connections_per_address`: every connection from one source address.
//!
//! When a new connection would pass a pre-login bound, the **oldest** connection that has
//! not logged in yet (from that address, for the per-address bounds; one still in its
//! handshake before one that finished it) is closed to make room, rather than the new one
//! refused. For the total bound it is the oldest of the address holding the most
//! connections not logged in (the globally oldest only when no address holds more than
//! one), so a flood from other machines makes room among its own connections, not with a
//! student's. Holding thousands of idle or trickling
//! connections open therefore keeps nobody out: a real client's handshake and login take
//! milliseconds, and each of its connections is the newest until then. Only when an
//! address's connections are all logged in is a further one from it refused.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Where a connection that has not logged in is: eviction takes the oldest still in the
/// handshake first, and only then the oldest that finished it. A real client is in the
/// handshake for a few milliseconds; connections that never send their key exchange
/// (idle or trickling) thus make room for each other, and not for it, however fast they
/// churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake = 0,
    Login = 1,
}

/// Tickets not logged in yet, by stage, oldest first.
type Stages = [BTreeSet<u64>; 2];

fn oldest(stages: &Stages) -> Option<u64> {
    stages[0].first().or_else(|| stages[1].first()).copied()
}

#[derive(Debug, Default)]
struct PerAddress {
    total: usize,
    pre_login: Stages,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Every ticket not logged in yet: its address, eviction token and stage.
    pending: HashMap<u64, (IpAddr, CancellationToken, Stage)>,
    stages: Stages,
    addresses: HashMap<IpAddr, PerAddress>,
    /// Addresses by how many of their connections have not logged in (0 not listed).
    by_load: BTreeSet<(usize, IpAddr)>,
}

impl PerAddress {
    fn load(&self) -> usize {
        self.pre_login[0].len() + self.pre_login[1].len()
    }
}

/// Moves `addr` in `by_load` from `before` to `after` connections not logged in.
fn relist(by_load: &mut BTreeSet<(usize, IpAddr)>, addr: IpAddr, before: usize, after: usize) {
    if before > 0 {
        by_load.remove(&(before, addr));
    }
    if after > 0 {
        by_load.insert((after, addr));
    }
}

/// The connection to close for the total bound: the oldest of the address holding the
/// most not logged in, or the oldest of all when no address holds more than one.
fn victim(inner: &Inner) -> Option<u64> {
    match inner.by_load.last() {
        Some(&(load, addr)) if load > 1 => inner.addresses.get(&addr).and_then(|s| oldest(&s.pre_login)),
        _ => oldest(&inner.stages),
    }
}

/// The limits and who holds them.
#[derive(Debug)]
pub struct Gate {
    max_pre_login: usize,
    max_pre_login_per_address: usize,
    max_per_address: usize,
    inner: Mutex<Inner>,
}

/// One admitted connection's place. Dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    addr: IpAddr,
    evict: CancellationToken,
    logged_in: bool,
}

impl Gate {
    pub fn new(max_pre_login: usize, max_pre_login_per_address: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self { max_pre_login, max_pre_login_per_address, max_per_address, inner: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a new connection from `addr`, closing connections not logged in yet
    /// where a bound requires it; `None` when `addr` holds `max_connections_per_address`
    /// logged-in connections already.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Ticket> {
        let mut inner = self.lock();
        if !make_room(self, &mut inner, addr) {
            return None;
        }
        inner.next += 1;
        let id = inner.next;
        let token = CancellationToken::new();
        register(&mut inner, id, addr, token.clone(), Stage::Handshake);
        Some(Ticket { gate: Arc::clone(self), id, addr, evict: token, logged_in: false })
    }

    /// Connections not logged in yet.
    #[cfg(test)]
    fn pre_login(&self) -> usize {
        self.lock().pending.len()
    }
}

/// Evicts connections not logged in yet until one more from `addr` fits every bound;
/// `false` when `addr` holds `max_connections_per_address` logged-in connections already.
fn make_room(gate: &Gate, inner: &mut Inner, addr: IpAddr) -> bool {
    loop {
        let slot = inner.addresses.get(&addr);
        let (total, pre_login) = slot.map_or((0, 0), |s| (s.total, s.load()));
        if total < gate.max_per_address && pre_login < gate.max_pre_login_per_address {
            break;
        }
        match slot.and_then(|s| oldest(&s.pre_login)) {
            Some(id) => evict(inner, id),
            // Every connection of the address is logged in.
            None => return false,
        }
    }
    while inner.pending.len() >= gate.max_pre_login {
        let Some(id) = victim(inner) else { break };
        evict(inner, id);
    }
    true
}

/// Counts a connection not logged in yet, in `stage`.
fn register(inner: &mut Inner, id: u64, addr: IpAddr, token: CancellationToken, stage: Stage) {
    inner.pending.insert(id, (addr, token, stage));
    inner.stages[stage as usize].insert(id);
    let slot = inner.addresses.entry(addr).or_default();
    slot.total += 1;
    let before = slot.load();
    slot.pre_login[stage as usize].insert(id);
    let after = slot.load();
    relist(&mut inner.by_load, addr, before, after);
}

/// Takes a pending ticket out of the stage sets; its address and token, if it was pending.
fn unpend(inner: &mut Inner, id: u64) -> Option<(IpAddr, CancellationToken)> {
    let (addr, token, stage) = inner.pending.remove(&id)?;
    inner.stages[stage as usize].remove(&id);
    if let Some(slot) = inner.addresses.get_mut(&addr) {
        let before = slot.load();
        slot.pre_login[stage as usize].remove(&id);
        let after = slot.load();
        relist(&mut inner.by_load, addr, before, after);
    }
    Some((addr, token))
}

/// Closes (cancels) a ticket that has not logged in and frees its place at once.
fn evict(inner: &mut Inner, id: u64) {
    let Some((addr, token)) = unpend(inner, id) else { return };
    token.cancel();
    release(inner, addr);
    tracing::debug!(%addr, "closed a connection still logging in to admit a new one");
}

fn release(inner: &mut Inner, addr: IpAddr) {
    if let Some(slot) = inner.addresses.get_mut(&addr) {
        slot.total = slot.total.saturating_sub(1);
        if slot.total == 0 {
            inner.addresses.remove(&addr);
        }
    }
}

impl Ticket {
    /// Resolves when the gate closes this connection to admit a newer one.
    pub fn evicted(&self) -> WaitForCancellationFutureOwned {
        self.evict.clone().cancelled_owned()
    }

    /// The token the gate cancels to evict: the session uses it as its kill switch, so an
    /// eviction ends the connection wherever it is (and after login nothing evicts).
    pub fn token(&self) -> CancellationToken {
        self.evict.clone()
    }

    /// The handshake is done: from now on connections still in theirs go first.
    pub fn handshake_done(&self) {
        let mut inner = self.gate.lock();
        let Some(entry) = inner.pending.get_mut(&self.id) else { return };
        if entry.2 == Stage::Login {
            return;
        }
        entry.2 = Stage::Login;
        let addr = entry.0;
        inner.stages[Stage::Handshake as usize].remove(&self.id);
        inner.stages[Stage::Login as usize].insert(self.id);
        if let Some(slot) = inner.addresses.get_mut(&addr) {
            slot.pre_login[Stage::Handshake as usize].remove(&self.id);
            slot.pre_login[Stage::Login as usize].insert(self.id);
        }
    }

    /// Whether the gate closed this connection to admit a newer one.
    pub fn is_evicted(&self) -> bool {
        self.evict.is_cancelled()
    }

    /// Takes back a place for a connection that was evicted while its key exchange was
    /// already waiting to be read: under a reconnecting flood the server may reach a real
    /// client's `ClientKey` only after a bound closed it, and such a peer is past the
    /// stage the flood sits in. It comes back in the login stage, with a fresh token,
    /// making room the way `admit` does. `false` when there is no room (the address's
    /// connections are all logged in): the connection then ends.
    pub fn readmit(&mut self) -> bool {
        if self.logged_in || !self.evict.is_cancelled() {
            return true;
        }
        let gate = Arc::clone(&self.gate);
        let mut inner = gate.lock();
        if inner.pending.contains_key(&self.id) {
            return true;
        }
        if !make_room(&gate, &mut inner, self.addr) {
            return false;
        }
        let token = CancellationToken::new();
        register(&mut inner, self.id, self.addr, token.clone(), Stage::Login);
        self.evict = token;
        tracing::debug!(addr = %self.addr, "a connection closed with its key exchange waiting took its place back");
        true
    }

    /// The connection logged in (or attached a transfer): it can no longer be evicted.
    /// `false` if it was evicted first.
    pub fn log_in(&mut self) -> bool {
        if self.logged_in {
            return true;
        }
        let mut inner = self.gate.lock();
        if unpend(&mut inner, self.id).is_none() {
            return false;
        }
        self.logged_in = true;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        // An evicted ticket's place was freed at the eviction.
        if self.logged_in || unpend(&mut inner, self.id).is_some() {
            release(&mut inner, self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_full_pre_login_gate_closes_the_oldest_to_admit_the_newest() {
        let gate = Gate::new(3, 100, 100);
        let tickets: Vec<Ticket> = (0..3).map(|_| gate.admit(A).expect("admitted")).collect();
        let newest = gate.admit(B).expect("the newest is admitted");
        assert!(tickets[0].is_evicted(), "the oldest made room");
        assert!(!tickets[1].is_evicted() && !tickets[2].is_evicted() && !newest.is_evicted());
        assert_eq!(gate.pre_login(), 3);
        drop(tickets);
        assert_eq!(gate.pre_login(), 1);
    }

    #[test]
    fn the_total_bound_takes_from_the_address_holding_the_most_not_a_lone_client() {
        let gate = Gate::new(4, 100, 100);
        // The student connected first, so it is the oldest of all.
        let student = gate.admit(B).expect("admitted");
        let flood: Vec<Ticket> = (0..3).map(|_| gate.admit(A).expect("admitted")).collect();
        let more: Vec<Ticket> = (0..5).map(|_| gate.admit(A).expect("admitted")).collect();
        assert!(!student.is_evicted(), "the flood's address gave up its own");
        assert!(flood.iter().all(Ticket::is_evicted));
        assert_eq!(more.iter().filter(|t| t.is_evicted()).count(), 2, "oldest first");
        assert_eq!(gate.pre_login(), 4);
        // With one connection per address, the oldest of all goes.
        let gate = Gate::new(2, 100, 100);
        let first = gate.admit(A).expect("admitted");
        let _second = gate.admit(B).expect("admitted");
        let _third = gate.admit(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3))).expect("admitted");
        assert!(first.is_evicted());
        drop(more);
        drop(flood);
        drop(student);
    }

    #[test]
    fn logged_in_connections_are_never_evicted_and_count_per_address() {
        let gate = Gate::new(2, 2, 3);
        let mut a1 = gate.admit(A).expect("admitted");
        let mut a2 = gate.admit(A).expect("admitted");
        assert!(a1.log_in() && a2.log_in());
        let a3 = gate.admit(A).expect("a third fits");
        // At the per-address total: the one not logged in makes room for the next...
        let a4 = gate.admit(A).expect("admitted by evicting a3");
        assert!(a3.is_evicted() && !a1.is_evicted() && !a2.is_evicted());
        let mut a4 = a4;
        assert!(a4.log_in());
        // ...and with all three logged in, a fourth is refused; another address is not.
        assert!(gate.admit(A).is_none());
        let b = gate.admit(B).expect("another address");
        drop(a1);
        assert!(gate.admit(A).is_some(), "a place freed");
        drop(b);
    }

    #[test]
    fn an_evicted_ticket_cannot_log_in_and_frees_its_place_once() {
        let gate = Gate::new(1, 1, 10);
        let mut first = gate.admit(A).expect("admitted");
        let _second = gate.admit(A).expect("admitted");
        assert!(first.is_evicted());
        assert!(!first.log_in());
        drop(first);
        assert_eq!(gate.pre_login(), 1, "dropping the evicted ticket frees nothing twice");
    }

    #[test]
    fn connections_still_in_the_handshake_give_way_before_one_that_finished_it() {
        let gate = Gate::new(100, 3, 100);
        let real = gate.admit(A).expect("admitted");
        real.handshake_done();
        let idle: Vec<Ticket> = (0..2).map(|_| gate.admit(A).expect("admitted")).collect();
        // Churning idle connections evict each other, never the older real one.
        let mut newer = Vec::new();
        for _ in 0..10 {
            newer.push(gate.admit(A).expect("admitted"));
        }
        assert!(!real.is_evicted());
        assert!(idle.iter().all(Ticket::is_evicted));
    }

    #[test]
    fn an_evicted_connection_with_its_key_exchange_waiting_takes_its_place_back() {
        let gate = Gate::new(100, 2, 100);
        let mut real = gate.admit(A).expect("admitted");
        let flood: Vec<Ticket> = (0..2).map(|_| gate.admit(A).expect("admitted")).collect();
        assert!(real.is_evicted(), "the flood closed the real client before its key was read");
        assert!(real.readmit(), "its key exchange was waiting: it comes back");
        assert!(!real.is_evicted(), "with a fresh token");
        assert!(flood[0].is_evicted() && !flood[1].is_evicted(), "the oldest of the flood made room");
        // Back in the login stage, the flood's newer connections give way before it.
        let more: Vec<Ticket> = (0..5).map(|_| gate.admit(A).expect("admitted")).collect();
        assert!(!real.is_evicted());
        assert!(real.log_in());
        assert_eq!(gate.pre_login(), 1, "one of the flood still logging in beside it");
        drop((flood, more));
        assert_eq!(gate.pre_login(), 0);
        drop(real);
        assert!(gate.lock().addresses.is_empty(), "every place freed once");
    }

    #[test]
    fn readmit_is_refused_when_the_address_is_full_of_logged_in_connections() {
        let gate = Gate::new(100, 5, 2);
        let mut a = gate.admit(A).expect("admitted");
        let mut b = gate.admit(A).expect("admitted");
        let mut c = gate.admit(A).expect("admitted by evicting a");
        assert!(a.is_evicted());
        assert!(b.log_in() && c.log_in());
        assert!(!a.readmit(), "no room left at this address");
        assert!(!a.log_in());
        drop(a);
        assert_eq!(gate.lock().addresses.get(&A).map(|s| s.total), Some(2));
    }

    #[test]
    fn per_address_pre_login_bound_evicts_only_that_address() {
        let gate = Gate::new(100, 2, 100);
        let b = gate.admit(B).expect("admitted");
        let a1 = gate.admit(A).expect("admitted");
        let _a2 = gate.admit(A).expect("admitted");
        let _a3 = gate.admit(A).expect("admitted");
        assert!(a1.is_evicted());
        assert!(!b.is_evicted(), "another address keeps its connection");
    }
}
