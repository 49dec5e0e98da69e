//! `set_sharing`, `who_has` and `answer_search` (PROTOCOL.md 17.2).
//!
//! Wire forms: `{"set_sharing": {"listener": {"port": u16, "addrs": [str]} | nil}}`,
//! `{"who_has": {"room": str, "query": {"name": str, "sha256": bin | nil}}}`,
//! `{"answer_search": {"search": u64, "files": [SharedFile]}}`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use classchat_wire::peer::{
    MAX_FILES_PER_ANSWER, MAX_LISTEN_ADDRS, MAX_QUERY_LEN, MAX_RESULTS_PER_SEARCH, PeerListener, SHA256_LEN,
    SearchId, SearchQuery, SharedFile,
};
use classchat_wire::{ErrorCode, Event, Response, ServerMsg, sanitize_file_name};

use super::{Bucket, Listener, MAX_SEARCHES, MAX_SEARCHES_PER_USER, Search};
use crate::handlers::{ApiError, ApiResult, Reply, me};
use crate::session::Session;
use crate::state::State;

/// `set_sharing`: this session shares (and is asked in searches) or not.
pub fn set_sharing(state: &State, session: &Session, listener: Option<PeerListener>) -> ApiResult {
    let user = me(session)?;
    let Some(l) = listener else {
        state.peers.lock().listeners.remove(&session.id);
        return Ok(Response::Done);
    };
    if l.port == 0 {
        return Err(ApiError::new(ErrorCode::BadRequest, "the listening port cannot be 0"));
    }
    if l.addrs.len() > MAX_LISTEN_ADDRS {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("at most {MAX_LISTEN_ADDRS} addresses")));
    }
    let mut addrs = Vec::with_capacity(l.addrs.len());
    for a in &l.addrs {
        match a.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => addrs.push(ip),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("{a:?} is not a usable IP address"),
                ));
            }
        }
    }
    let listener = Listener { user, seen: session.addr.ip(), port: l.port, addrs };
    state.peers.lock().listeners.insert(session.id, listener);
    Ok(Response::Done)
}

fn check_query(query: &SearchQuery) -> ApiResult<()> {
    if query.name.len() > MAX_QUERY_LEN {
        return Err(ApiError::new(ErrorCode::TooLong, format!("a search is at most {MAX_QUERY_LEN} bytes")));
    }
    match &query.sha256 {
        Some(h) if h.len() != SHA256_LEN => {
            Err(ApiError::new(ErrorCode::BadRequest, "a SHA-256 is 32 bytes"))
        }
        None if query.name.trim().is_empty() => {
            Err(ApiError::new(ErrorCode::BadRequest, "search for something"))
        }
        None if query.name.chars().any(char::is_control) => {
            Err(ApiError::new(ErrorCode::BadRequest, "a search cannot contain control characters"))
        }
        _ => Ok(()),
    }
}

/// `who_has`: fans the query out to the room's other members who share, and answers at
/// once (before any result can come back); `search_done` follows at the deadline.
pub fn who_has(state: &State, session: &Session, id: u32, room: String, query: SearchQuery) -> Reply {
    match start(state, session, room, query) {
        Ok((search, asked, frame)) => {
            let deadline_ms = state.config.peer_search_deadline_ms;
            session.reply(id, Ok(Response::Search { search, asked: asked.len() as u32, deadline_ms }));
            if let Some(frame) = frame {
                let inner = state.lock();
                for sid in &asked {
                    State::push(&inner, *sid, frame.clone());
                }
            }
            let state = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(u64::from(deadline_ms))).await;
                finish(&state, search);
            });
            Reply::Later
        }
        Err(e) => Reply::Now(Err(e)),
    }
}

type Started = (SearchId, HashSet<u64>, Option<bytes::Bytes>);

fn start(state: &State, session: &Session, room: String, query: SearchQuery) -> ApiResult<Started> {
    let user = me(session)?;
    check_query(&query)?;
    let room_lc = room.to_ascii_lowercase();
    let (members, room_name, from) = {
        let inner = state.lock();
        let Some(r) = inner.rooms.get(&room_lc) else {
            return Err(ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room {room}")));
        };
        if !r.members.contains_key(&user) {
            return Err(ApiError::new(ErrorCode::NotMember, format!("join #{} to search it", r.name)));
        }
        let members: HashSet<u64> = r
            .members
            .keys()
            .filter(|m| **m != user)
            .filter_map(|m| inner.users.get(m))
            .flat_map(|u| u.sessions.iter().copied())
            .collect();
        (members, r.name.clone(), State::display_name(&inner, &user))
    };
    let c = &state.config;
    let mut peers = state.peers.lock();
    let now = Instant::now();
    let burst = f64::from(c.peer_search_burst);
    let bucket = peers.buckets.entry(user.clone()).or_insert(Bucket { tokens: burst, last: now });
    if !bucket.take(f64::from(c.peer_searches_per_minute) / 60.0, burst) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many searches; wait a little before the next",
        ));
    }
    let mine = peers.searches.values().filter(|s| s.asker == user).count();
    if mine >= MAX_SEARCHES_PER_USER || peers.searches.len() >= MAX_SEARCHES {
        return Err(ApiError::new(ErrorCode::RateLimited, "wait for your searches in progress to finish"));
    }
    let asked: HashSet<u64> =
        members.into_iter().filter(|sid| peers.listeners.get(sid).is_some_and(|l| l.user != user)).collect();
    let search = state.peers.next_search.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    peers.searches.insert(
        search,
        Search {
            asker: user,
            asker_session: session.id,
            asked: asked.clone(),
            answered: HashSet::new(),
            results: 0,
            truncated: false,
        },
    );
    // Keep the rate buckets of users who searched recently only.
    if peers.buckets.len() > 10_000 {
        peers.buckets.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(600));
    }
    drop(peers);
    let frame = if asked.is_empty() {
        None
    } else {
        State::encode(&ServerMsg::Event {
            event: Event::SearchRequest { search, from, room: room_name, query },
        })
    };
    Ok((search, asked, frame))
}

/// The deadline: `search_done` to the asker, and the search is forgotten (later answers
/// are dropped).
fn finish(state: &State, search: SearchId) {
    let Some(s) = state.peers.lock().searches.remove(&search) else { return };
    let event = Event::SearchDone {
        search,
        answered: s.answered.len() as u32,
        results: s.results as u32,
        truncated: s.truncated,
    };
    if let Some(frame) = State::encode(&ServerMsg::Event { event }) {
        State::push(&state.lock(), s.asker_session, frame);
    }
}

/// Whether a reported file may be passed on: a name that sanitising leaves as it is (so
/// no path, no control characters), a 32-byte hash.
fn acceptable(file: &SharedFile) -> bool {
    !file.name.is_empty() && sanitize_file_name(&file.name) == file.name && file.sha256.len() == SHA256_LEN
}

/// `answer_search`: checked, capped and passed to the asker. Answers to searches that are
/// over, or from sessions that were not asked or already answered, are dropped (and
/// still acknowledged: an answerer cannot tell).
pub fn answer(state: &State, session: &Session, search: SearchId, mut files: Vec<SharedFile>) -> ApiResult {
    me(session)?;
    let dropped_bad = {
        let before = files.len();
        files.retain(acceptable);
        before - files.len()
    };
    let (asker_session, files, from) = {
        let mut peers = state.peers.lock();
        let Some(s) = peers.searches.get_mut(&search) else { return Ok(Response::Done) };
        if !s.asked.contains(&session.id) || !s.answered.insert(session.id) {
            return Ok(Response::Done);
        }
        let room = MAX_RESULTS_PER_SEARCH.saturating_sub(s.results).min(MAX_FILES_PER_ANSWER);
        if files.len() > room || dropped_bad > 0 {
            s.truncated = true;
        }
        files.truncate(room);
        s.results += files.len();
        let from = session.user.clone().unwrap_or_default();
        (s.asker_session, files, from)
    };
    if files.is_empty() {
        return Ok(Response::Done);
    }
    let inner = state.lock();
    let event = Event::SearchResults { search, from: State::display_name(&inner, &from), files };
    if let Some(frame) = State::encode(&ServerMsg::Event { event }) {
        State::push(&inner, asker_session, frame);
    }
    Ok(Response::Done)
}
