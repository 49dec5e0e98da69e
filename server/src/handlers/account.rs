//! `Register`, `Login`, `Resume`, `Logout`, and what happens when a session starts and ends.
//!
//! Wire forms: `{"register": {"username": str, "auth_key": bin32, "device": str}}`,
//! `{"login": {...same...}}`, `{"resume": {"username": str, "token": bin32, "device": str}}`,
//! `"logout"`.

use std::collections::BTreeSet;

use classchat_wire::{Body, Conv, DEFAULT_ROOM, ErrorCode, Event, Response, ServerMsg, SystemEvent, Welcome};
use rand::Rng;

use super::{ApiError, ApiResult, Reply, commit};
use crate::keys::{SecretHash, ct_eq, token_hash};
use crate::session::Session;
use crate::state::{ANNOUNCEMENTS, Lc, SessionHandle, State, TokenBucket, User, dm_conv, room_conv};
use crate::store::Write;

/// Longest device id a client may send.
const MAX_DEVICE_LEN: usize = 64;
/// Length of `auth_key` and resume tokens.
const KEY_LEN: usize = 32;

fn check_common(session: &Session, username: &str, secret: &[u8], device: &str) -> ApiResult<Lc> {
    if session.user.is_some() {
        return Err(ApiError::new(ErrorCode::AlreadyLoggedIn, "this connection is already logged in"));
    }
    if !classchat_wire::message::valid_name(username) {
        return Err(ApiError::new(
            ErrorCode::InvalidUsername,
            "a username is 1 to 32 letters, digits, '_', '.' or '-'",
        ));
    }
    if secret.len() != KEY_LEN {
        return Err(ApiError::new(ErrorCode::BadRequest, "the key must be 32 bytes"));
    }
    if device.is_empty() || device.len() > MAX_DEVICE_LEN || !device.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the device id must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(username.to_ascii_lowercase())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

pub async fn register(
    state: &State,
    session: &mut Session,
    id: u32,
    username: String,
    auth_key: Vec<u8>,
    device: String,
) -> Reply {
    let lc = match check_common(session, &username, &auth_key, &device) {
        Ok(lc) => lc,
        Err(e) => return Reply::Now(Err(e)),
    };
    if state.lock().users.contains_key(&lc) {
        return Reply::Now(Err(taken(&username)));
    }
    let (m, t) = (state.config.argon2_m_kib, state.config.argon2_t);
    let hash = match blocking(move || SecretHash::new(&auth_key, m, t)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Reply::Now(Err(ApiError::internal(e))),
        Err(e) => return Reply::Now(Err(e)),
    };
    let lobby = DEFAULT_ROOM.to_owned();
    {
        let mut inner = state.lock();
        if inner.users.contains_key(&lc) {
            return Reply::Now(Err(taken(&username)));
        }
        let server_admin = state.config.admins.iter().any(|a| a.eq_ignore_ascii_case(&username));
        inner.users.insert(
            lc.clone(),
            User {
                name: username.clone(),
                auth: hash.clone(),
                server_admin,
                banned: false,
                rooms: BTreeSet::from([lobby.clone()]),
                dm_peers: BTreeSet::new(),
                sessions: Vec::new(),
                remote: 0,
                bucket: TokenBucket::new(state.config.message_burst),
            },
        );
        if let Some(room) = inner.rooms.get_mut(&lobby) {
            room.members.insert(lc.clone(), 0);
        }
    }
    let writes = vec![
        Write::CreateUser { name: username.clone(), auth: hash.to_bytes() },
        Write::AddMember { room: lobby.clone(), user: lc.clone() },
        Write::Message {
            conv: room_conv(&lobby),
            sender: username.clone(),
            body: Body::System { event: SystemEvent::Joined },
            reply_to: None,
        },
    ];
    match commit(state, writes, None).await {
        Ok(ids) => {
            if let (Some(room), Some((joined, _))) = (state.lock().rooms.get_mut(&lobby), ids.first()) {
                room.members.insert(lc.clone(), *joined);
            }
        }
        Err(e) => {
            let mut inner = state.lock();
            inner.users.remove(&lc);
            if let Some(room) = inner.rooms.get_mut(&lobby) {
                room.remove_member(&lc);
            }
            return Reply::Now(Err(e));
        }
    }
    tracing::info!(user = %username, addr = %session.addr, "registered");
    finish_login(state, session, id, lc, device, None).await
}

fn taken(username: &str) -> ApiError {
    ApiError::new(ErrorCode::UsernameTaken, format!("the name {username} is taken; choose another"))
}

fn throttled() -> ApiError {
    ApiError::new(ErrorCode::Throttled, "too many failed logins; wait a minute and try again")
}

pub async fn login(
    state: &State,
    session: &mut Session,
    id: u32,
    username: String,
    auth_key: Vec<u8>,
    device: String,
) -> Reply {
    let lc = match check_common(session, &username, &auth_key, &device) {
        Ok(lc) => lc,
        Err(e) => return Reply::Now(Err(e)),
    };
    let ip = session.addr.ip();
    if state.throttled(&lc, ip) {
        return Reply::Now(Err(throttled()));
    }
    let known = state.lock().users.get(&lc).map(|u| (u.auth.clone(), u.banned));
    let (m, t) = (state.config.argon2_m_kib, state.config.argon2_t);
    let verified = blocking(move || match &known {
        Some((hash, _)) => hash.verify(&auth_key),
        // Spend the same effort for an unknown name, so timing does not reveal accounts.
        None => SecretHash::new(&auth_key, m, t).map(|_| false).unwrap_or(false),
    })
    .await;
    let banned = state.lock().users.get(&lc).is_some_and(|u| u.banned);
    match verified {
        Ok(true) => {}
        Ok(false) => {
            state.record_login_failure(&lc, ip);
            tracing::info!(user = %lc, addr = %session.addr, "failed login");
            return Reply::Now(Err(ApiError::new(ErrorCode::BadCredentials, "wrong username or password")));
        }
        Err(e) => return Reply::Now(Err(e)),
    }
    if banned {
        return Reply::Now(Err(banned_error()));
    }
    state.clear_login_failures(&lc);
    finish_login(state, session, id, lc, device, None).await
}

fn banned_error() -> ApiError {
    ApiError::new(ErrorCode::AccountBanned, "this account is banned from the server")
}

pub async fn resume(
    state: &State,
    session: &mut Session,
    id: u32,
    username: String,
    token: Vec<u8>,
    device: String,
) -> Reply {
    let lc = match check_common(session, &username, &token, &device) {
        Ok(lc) => lc,
        Err(e) => return Reply::Now(Err(e)),
    };
    let ip = session.addr.ip();
    // A valid token always gets in, however many wrong passwords were tried for the
    // account: that is the owner on their usual machine. Only the address pays for bad
    // tokens.
    if state.address_throttled(ip) {
        return Reply::Now(Err(throttled()));
    }
    let row = match state.store.device(lc.clone(), device.clone()).await {
        Ok(r) => r,
        Err(e) => return Reply::Now(Err(ApiError::internal(e))),
    };
    let presented = token_hash(&token);
    // The current token, or the one before the last rotation within its grace: a client
    // whose connection died between the rotation and the `welcome` still holds that one.
    let now = crate::store::now_ms() as i64;
    let ok = row.is_some_and(|r| {
        let current = r.token_hash.is_some_and(|stored| ct_eq(&stored, &presented));
        let previous = now < r.prev_until && r.prev_token_hash.is_some_and(|prev| ct_eq(&prev, &presented));
        current || previous
    });
    let banned = state.lock().users.get(&lc).map(|u| u.banned);
    if !ok || banned.is_none() {
        state.record_address_failure(ip);
        return Reply::Now(Err(ApiError::new(
            ErrorCode::BadToken,
            "the saved login has expired; log in with your password",
        )));
    }
    if banned == Some(true) {
        return Reply::Now(Err(banned_error()));
    }
    let grace = i64::try_from(state.config.resume_grace_ms).unwrap_or(i64::MAX);
    finish_login(state, session, id, lc, device, Some((presented, now.saturating_add(grace)))).await
}

pub async fn logout(state: &State, session: &mut Session) -> Reply {
    let Some(user) = session.user.clone() else { return Reply::Close(Ok(Response::Done)) };
    let write = Write::UpsertDevice {
        user,
        device: session.device.clone(),
        token_hash: None,
        baseline: 0,
        previous: None,
    };
    match commit(state, vec![write], None).await {
        Ok(_) => Reply::Close(Ok(Response::Done)),
        Err(e) => Reply::Now(Err(e)),
    }
}

/// Issues a fresh resume token, registers the session as online, sends `Welcome`, then
/// everything the device missed, then `CaughtUp`.
async fn finish_login(
    state: &State,
    session: &mut Session,
    id: u32,
    lc: Lc,
    device: String,
    previous: Option<(Vec<u8>, i64)>,
) -> Reply {
    let mut token = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut token);
    let write = Write::UpsertDevice {
        user: lc.clone(),
        device: device.clone(),
        token_hash: Some(token_hash(&token)),
        baseline: 0,
        previous,
    };
    if let Err(e) = commit(state, vec![write], None).await {
        return Reply::Now(Err(e));
    }

    // What to catch up on: (database key, conversation as this user sees it, first id).
    let mut convs: Vec<(String, Conv, u64)> = Vec::new();
    let welcome = {
        let mut inner = state.lock();
        let Some(user) = inner.users.get_mut(&lc) else {
            return Reply::Now(Err(ApiError::internal("user vanished during login")));
        };
        let first_session = !user.online();
        user.sessions.push(session.id);
        let here = user.sessions.len();
        let name = user.name.clone();
        let server_admin = user.server_admin;
        let rooms: Vec<Lc> = user.rooms.iter().cloned().collect();
        let peers: Vec<Lc> = user.dm_peers.iter().cloned().collect();
        inner.sessions.insert(
            session.id,
            SessionHandle {
                user: lc.clone(),
                device: device.clone(),
                tx: session.tx.clone(),
                kill: session.kill.clone(),
            },
        );
        let mut infos = Vec::new();
        for r in &rooms {
            if let Some(room) = inner.rooms.get(r) {
                infos.push(super::rooms::info(&inner, r, &lc));
                let joined = room.members.get(&lc).copied().unwrap_or(0);
                convs.push((room_conv(r), Conv::Room { name: room.name.clone() }, joined));
            }
        }
        for p in &peers {
            convs.push((dm_conv(&lc, p), Conv::Direct { user: State::display_name(&inner, p) }, 0));
        }
        convs.push((ANNOUNCEMENTS.to_owned(), Conv::Announcements, 0));
        if first_session {
            State::announce_presence(&inner, &lc, true);
        }
        if let Some(bus) = &inner.outbox {
            bus.online(&lc, here);
        }
        Welcome {
            user: name,
            server_name: state.config.server_name.clone(),
            resume_token: token.to_vec(),
            server_admin,
            can_broadcast: server_admin || state.config.allow_user_broadcast,
            rooms: infos,
            dm_peers: peers.iter().map(|p| State::display_name(&inner, p)).collect(),
            limits: state.limits(),
            class: crate::class::status_for(&inner, &lc),
            room_records: state.config.room_records,
        }
    };
    session.user = Some(lc.clone());
    // Logged in: no longer one of the connections the gate may close to admit others.
    // (Evicted just before, the session's kill token has ended it already.)
    session.ticket.log_in();
    state.remember_address(&lc, session.addr.ip());
    session.device = device.clone();
    tracing::info!(user = %welcome.user, addr = %session.addr, "logged in");
    session.reply(id, Ok(Response::Welcome(welcome)));

    let cap = state.config.max_catch_up_per_conversation;
    let (user, dev) = (lc.clone(), device.clone());
    // Cursors acknowledged but not written yet count too (a quick reconnect).
    let pending = state.cursors.of_device(&lc, &device);
    let keys = convs.iter().map(|(key, _, joined)| (key.clone(), *joined)).collect();
    let missed = state.store.catch_up(user, dev, pending, keys, cap).await;
    match missed {
        Ok(per_conv) => {
            let mut events = Vec::new();
            for ((messages, changed), (_, conv, _)) in per_conv.into_iter().zip(convs) {
                for m in messages {
                    events.push(Event::Message { message: m.to_chat(conv.clone()) });
                }
                // Messages the device has that were edited, deleted or reacted to since.
                events.extend(super::rich::catch_up(changed, &conv));
            }
            for event in events {
                if !session.send_wait(&ServerMsg::Event { event }).await {
                    return Reply::Later;
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "catch-up query failed"),
    }
    for file in state.files.offers_to(&lc) {
        if !session.send_wait(&ServerMsg::Event { event: Event::FileOffer { file } }).await {
            return Reply::Later;
        }
    }
    let _ = session.send_wait(&ServerMsg::Event { event: Event::CaughtUp }).await;
    Reply::Later
}

/// Unregisters a session that ends; the user goes offline with their last session.
pub fn end_session(state: &State, session: &Session) {
    state.peers.session_ended(session.id);
    let Some(lc) = &session.user else { return };
    let mut inner = state.lock();
    inner.sessions.remove(&session.id);
    let Some(user) = inner.users.get_mut(lc) else { return };
    user.sessions.retain(|s| *s != session.id);
    let (here, online) = (user.sessions.len(), user.online());
    // At shutdown every session ends at once and every one of them is being told so:
    // announcing each departure to all the others was quadratic work (25 million frames
    // for a room of 5,000) that only delayed the exit.
    if !online && !state.shutdown.is_cancelled() {
        State::announce_presence(&inner, lc, false);
    }
    if let Some(bus) = &inner.outbox {
        bus.online(lc, here);
    }
}
