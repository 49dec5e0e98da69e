//! Admission of new connections: bounds on what an unauthenticated peer can hold.
//!
//! Three named limits (config keys, PROTOCOL.md section 10):
//! - `max_pre_login`: connections that have not logged in (or attached a transfer) yet,
//!   in total;
//! - `max_pre_login_per_address`: the same, per source address;
//! - `max_connections_per_address`: every connection from one source address.
//!
//! When a new connection would pass a pre-login bound, the **oldest** connection that has
//! not logged in yet (from that address, for the per-address bounds) is closed to make
//! room, rather than the new one refused. Holding thousands of idle or trickling
//! connections open therefore keeps nobody out: a real client's handshake and login take
//! milliseconds, and each of its connections is the newest until then. Only when an
//! address's connections are all logged in is a further one from it refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

#[derive(Debug, Default)]
struct PerAddress {
    total: usize,
    /// Tickets of this address not logged in yet, oldest first.
    pre_login: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Every ticket not logged in yet, oldest first: its address and eviction token.
    pre_login: BTreeMap<u64, (IpAddr, CancellationToken)>,
    addresses: HashMap<IpAddr, PerAddress>,
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

    /// A place for a new connection from `addr`, closing the oldest connections not logged
    /// in yet where a bound requires it; `None` when `addr` holds
    /// `max_connections_per_address` logged-in connections already.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Ticket> {
        let mut inner = self.lock();
        loop {
            let slot = inner.addresses.get(&addr);
            let (total, pre_login) = slot.map_or((0, 0), |s| (s.total, s.pre_login.len()));
            if total < self.max_per_address && pre_login < self.max_pre_login_per_address {
                break;
            }
            match slot.and_then(|s| s.pre_login.first().copied()) {
                Some(oldest) => evict(&mut inner, oldest),
                // Every connection of the address is logged in.
                None => return None,
            }
        }
        while inner.pre_login.len() >= self.max_pre_login {
            let Some((&oldest, _)) = inner.pre_login.first_key_value() else { break };
            evict(&mut inner, oldest);
        }
        inner.next += 1;
        let id = inner.next;
        let evict_token = CancellationToken::new();
        inner.pre_login.insert(id, (addr, evict_token.clone()));
        let slot = inner.addresses.entry(addr).or_default();
        slot.total += 1;
        slot.pre_login.insert(id);
        Some(Ticket { gate: Arc::clone(self), id, addr, evict: evict_token, logged_in: false })
    }

    /// Connections not logged in yet.
    #[cfg(test)]
    fn pre_login(&self) -> usize {
        self.lock().pre_login.len()
    }
}

/// Closes (cancels) a ticket that has not logged in and frees its place at once.
fn evict(inner: &mut Inner, id: u64) {
    let Some((addr, token)) = inner.pre_login.remove(&id) else { return };
    token.cancel();
    release(inner, addr, id);
    tracing::debug!(%addr, "closed the oldest connection still logging in to admit a new one");
}

fn release(inner: &mut Inner, addr: IpAddr, id: u64) {
    if let Some(slot) = inner.addresses.get_mut(&addr) {
        slot.total = slot.total.saturating_sub(1);
        slot.pre_login.remove(&id);
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

    #[cfg(test)]
    fn is_evicted(&self) -> bool {
        self.evict.is_cancelled()
    }

    /// The connection logged in (or attached a transfer): it can no longer be evicted.
    /// `false` if it was evicted first.
    pub fn log_in(&mut self) -> bool {
        if self.logged_in {
            return true;
        }
        let mut inner = self.gate.lock();
        if inner.pre_login.remove(&self.id).is_none() {
            return false;
        }
        if let Some(slot) = inner.addresses.get_mut(&self.addr) {
            slot.pre_login.remove(&self.id);
        }
        self.logged_in = true;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        // An evicted ticket's place was freed at the eviction.
        if self.logged_in || inner.pre_login.remove(&self.id).is_some() {
            release(&mut inner, self.addr, self.id);
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
