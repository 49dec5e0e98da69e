//! `peer_fetch` and `peer_relay` (PROTOCOL.md 17.3 and 17.6).
//!
//! Wire forms: `{"peer_fetch": {"room": str, "sharer": str, "sha256": bin}}`,
//! `{"peer_relay": {"ticket": bin}}`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use classchat_wire::peer::{PeerTicket, SHA256_LEN, TICKET_LEN};
use classchat_wire::{ErrorCode, Event, Response, ServerMsg};

use super::{MAX_TICKETS, MAX_TICKETS_PER_USER, Ticket, TicketKey};
use crate::handlers::{ApiError, ApiResult, me};
use crate::session::Session;
use crate::state::State;

fn not_sharing(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotSharing, format!("{name} is not online with sharing on"))
}

/// `peer_fetch`: checks both are in the room and the sharer shares, issues the ticket,
/// tells the sharer, and returns the ticket with the sharer's candidate addresses.
pub fn fetch(state: &State, session: &Session, room: String, sharer: String, sha256: Vec<u8>) -> ApiResult {
    let user = me(session)?;
    if sha256.len() != SHA256_LEN {
        return Err(ApiError::new(ErrorCode::BadRequest, "a SHA-256 is 32 bytes"));
    }
    let sharer_lc = sharer.to_ascii_lowercase();
    if sharer_lc == user {
        return Err(ApiError::new(ErrorCode::BadRequest, "that file is already yours"));
    }
    let room_lc = room.to_ascii_lowercase();
    let (sessions, sharer_name, asker_name, room_name) = {
        let inner = state.lock();
        let Some(r) = inner.rooms.get(&room_lc) else {
            return Err(ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room {room}")));
        };
        if !r.members.contains_key(&user) {
            return Err(ApiError::new(ErrorCode::NotMember, format!("join #{} first", r.name)));
        }
        let Some(u) = inner.users.get(&sharer_lc) else {
            return Err(ApiError::new(ErrorCode::NoSuchUser, format!("there is no user {sharer}")));
        };
        if !r.members.contains_key(&sharer_lc) {
            return Err(ApiError::new(ErrorCode::NotMember, format!("{} is not in #{}", u.name, r.name)));
        }
        (u.sessions.clone(), u.name.clone(), State::display_name(&inner, &user), r.name.clone())
    };
    let mut ticket = [0u8; TICKET_LEN];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut ticket);
    let lifetime_ms = state.config.peer_ticket_ms;
    let now = Instant::now();
    let (sharer_session, candidates) = {
        let mut peers = state.peers.lock();
        // The sharer's newest session with sharing on.
        let Some((&sid, l)) = sessions.iter().rev().find_map(|s| peers.listeners.get_key_value(s)) else {
            return Err(not_sharing(&sharer_name));
        };
        let mut ips: Vec<IpAddr> = vec![l.seen];
        ips.extend(l.addrs.iter().copied());
        let mut seen = HashSet::new();
        let candidates: Vec<String> = ips
            .into_iter()
            .filter(|ip| seen.insert(*ip))
            .map(|ip| SocketAddr::new(ip, l.port).to_string())
            .collect();
        peers.tickets.retain(|_, t| t.expires > now);
        let mine: Vec<TicketKey> =
            peers.tickets.iter().filter(|(_, t)| t.asker == user).map(|(k, _)| *k).collect();
        if mine.len() >= MAX_TICKETS_PER_USER || peers.tickets.len() >= MAX_TICKETS {
            return Err(ApiError::new(ErrorCode::RateLimited, "too many fetches at once; wait a little"));
        }
        peers.tickets.insert(
            ticket,
            Ticket {
                asker: user.clone(),
                sharer_session: sid,
                expires: now + Duration::from_millis(u64::from(lifetime_ms)),
                relay_requested: false,
                attached: HashSet::new(),
            },
        );
        (sid, candidates)
    };
    let event = Event::FetchRequest {
        ticket: ticket.to_vec(),
        asker: asker_name,
        room: room_name,
        sha256,
        expires_in_ms: lifetime_ms,
    };
    if let Some(frame) = State::encode(&ServerMsg::Event { event }) {
        State::push(&state.lock(), sharer_session, frame);
    }
    Ok(Response::PeerTicket(PeerTicket {
        ticket: ticket.to_vec(),
        sharer: sharer_name,
        candidates,
        expires_in_ms: lifetime_ms,
    }))
}

fn no_ticket() -> ApiError {
    ApiError::new(ErrorCode::NoSuchTransfer, "that ticket is unknown or has expired; fetch again")
}

/// `peer_relay`: the asker of a live ticket asks for the relay; the sharer's session is
/// told to attach.
pub fn relay(state: &State, session: &Session, ticket: Vec<u8>) -> ApiResult {
    let user = me(session)?;
    if !state.config.peer_relay {
        return Err(ApiError::new(ErrorCode::Forbidden, "this server does not relay peer transfers"));
    }
    let key: TicketKey = ticket.as_slice().try_into().map_err(|_| no_ticket())?;
    let sharer_session = {
        let mut peers = state.peers.lock();
        let Some(t) = peers.tickets.get_mut(&key) else { return Err(no_ticket()) };
        if t.asker != user || t.expires <= Instant::now() {
            return Err(no_ticket());
        }
        t.relay_requested = true;
        t.sharer_session
    };
    let event = Event::RelayRequest { ticket };
    let inner = state.lock();
    if !inner.sessions.contains_key(&sharer_session) {
        return Err(ApiError::new(ErrorCode::NotSharing, "the sharer went offline"));
    }
    if let Some(frame) = State::encode(&ServerMsg::Event { event }) {
        State::push(&inner, sharer_session, frame);
    }
    Ok(Response::Done)
}

/// Whether `side` may attach to the relay of `key` now (once per side, only after the
/// asker asked for the relay, before the ticket expires).
pub fn may_attach(state: &State, key: &TicketKey, side: classchat_wire::peer::RelaySide) -> bool {
    let mut peers = state.peers.lock();
    match peers.tickets.get_mut(key) {
        Some(t) if t.relay_requested && t.expires > Instant::now() => t.attached.insert(side),
        _ => false,
    }
}
