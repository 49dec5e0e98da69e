//! Room requests: list, create, join, leave, members, and the room admin's tools.
//!
//! Wire forms (see PROTOCOL.md): `"list_rooms"`,
//! `{"create_room": {"name": str, "topic": str, "password": str|nil}}`,
//! `{"join_room": {"name": str, "password": str|nil}}`, `{"leave_room": {"name": str}}`,
//! `{"room_members": {"name": str}}`, `{"kick"|"ban"|"unban"|"hand_over_admin": {"room": str, "user": str}}`,
//! `{"list_bans": {"room": str}}`, `{"set_topic": {"room": str, "topic": str}}`,
//! `{"set_room_password": {"room": str, "password": str|nil}}`.

use std::collections::{BTreeSet, HashMap};

use classchat_wire::room_record::RoomKey;
use classchat_wire::{
    AuditAction, Body, DEFAULT_ROOM, ErrorCode, Event, Member, Response, RoomInfo, SystemEvent,
};

use super::{ApiError, ApiResult, commit, me};
use crate::keys::SecretHash;
use crate::session::Session;
use crate::state::{FastMap, Inner, Room, State, room_conv};
use crate::store::Write;

/// Longest room password, bytes.
const MAX_PASSWORD_LEN: usize = 256;
/// Longest topic, bytes.
const MAX_TOPIC_LEN: usize = 512;

/// The room as `viewer` sees it.
pub fn info(inner: &Inner, room_lc: &str, viewer: &str) -> RoomInfo {
    let Some(room) = inner.rooms.get(room_lc) else {
        return RoomInfo {
            name: room_lc.to_owned(),
            topic: String::new(),
            members: 0,
            locked: false,
            admin: String::new(),
            joined: false,
            settings: Default::default(),
        };
    };
    RoomInfo {
        name: room.name.clone(),
        topic: room.topic.clone(),
        members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
        locked: room.password.is_some(),
        admin: if room.admin.is_empty() { String::new() } else { State::display_name(inner, &room.admin) },
        joined: room.members.contains_key(viewer),
        settings: room.settings.clone(),
    }
}

/// The key of room `name`, if `me` is a member of it.
pub fn member_room(inner: &Inner, me: &str, name: &str) -> ApiResult<String> {
    let lc = name.to_ascii_lowercase();
    let room = inner.rooms.get(&lc).ok_or_else(|| no_room(name))?;
    if !room.members.contains_key(me) {
        return Err(not_member(&room.name));
    }
    Ok(lc)
}

fn no_room(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room called {name}"))
}

fn not_member(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotMember, format!("you are not in {name}"))
}

/// Room admins and server admins may moderate.
fn check_admin(inner: &Inner, room_lc: &str, user: &str, name: &str) -> ApiResult<()> {
    let room = inner.rooms.get(room_lc).ok_or_else(|| no_room(name))?;
    let server_admin = inner.users.get(user).is_some_and(|u| u.server_admin);
    if room.admin == user || server_admin {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotRoomAdmin, format!("only the admin of {} can do that", room.name)))
    }
}

fn system(room_lc: &str, sender: &str, event: SystemEvent) -> Write {
    Write::Message {
        conv: room_conv(room_lc),
        sender: sender.to_owned(),
        body: Body::System { event },
        reply_to: None,
    }
}

fn check_password(password: &Option<String>) -> ApiResult<()> {
    match password {
        Some(p) if p.is_empty() => {
            Err(ApiError::new(ErrorCode::BadRequest, "an empty password: send none instead"))
        }
        Some(p) if p.len() > MAX_PASSWORD_LEN => {
            Err(ApiError::new(ErrorCode::TooLong, "room passwords are at most 256 bytes"))
        }
        _ => Ok(()),
    }
}

async fn hash_password(state: &State, password: Option<String>) -> ApiResult<Option<SecretHash>> {
    let Some(p) = password else { return Ok(None) };
    let (m, t) = (state.config.argon2_m_kib, state.config.argon2_t);
    tokio::task::spawn_blocking(move || SecretHash::new(p.as_bytes(), m, t))
        .await
        .map_err(ApiError::internal)?
        .map(Some)
        .map_err(ApiError::internal)
}

pub fn list(state: &State, session: &Session) -> ApiResult {
    let me = me(session)?;
    let inner = state.lock();
    let mut rooms: Vec<RoomInfo> = inner.rooms.keys().map(|r| info(&inner, r, &me)).collect();
    rooms.sort_by_key(|r| r.name.to_ascii_lowercase());
    Ok(Response::Rooms { rooms })
}

fn room_count_ok(state: &State, inner: &Inner, user: &str) -> ApiResult<()> {
    let count = inner.users.get(user).map_or(0, |u| u.rooms.len());
    if count >= state.config.max_rooms_per_user {
        return Err(ApiError::new(
            ErrorCode::TooManyRooms,
            format!("you are in {count} rooms, the most allowed; leave one first"),
        ));
    }
    Ok(())
}

pub async fn create(
    state: &State,
    session: &Session,
    name: String,
    topic: String,
    password: Option<String>,
) -> ApiResult {
    let me = me(session)?;
    if !classchat_wire::message::valid_name(&name) {
        return Err(ApiError::new(
            ErrorCode::InvalidRoomName,
            "a room name is 1 to 32 letters, digits, '_', '.' or '-'",
        ));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(ApiError::new(ErrorCode::TooLong, "topics are at most 512 bytes"));
    }
    check_password(&password)?;
    let lc = name.to_ascii_lowercase();
    {
        let inner = state.lock();
        if inner.rooms.contains_key(&lc) {
            return Err(ApiError::new(ErrorCode::RoomExists, format!("a room called {name} already exists")));
        }
        room_count_ok(state, &inner, &me)?;
    }
    let hash = hash_password(state, password).await?;
    let sender = {
        let mut inner = state.lock();
        if inner.rooms.contains_key(&lc) {
            return Err(ApiError::new(ErrorCode::RoomExists, format!("a room called {name} already exists")));
        }
        inner.rooms.insert(
            lc.clone(),
            Room {
                name: name.clone(),
                topic: topic.clone(),
                password: hash.clone(),
                admin: me.clone(),
                members: FastMap::from_iter([(me.clone(), 0)]),
                bans: BTreeSet::new(),
                settings: Default::default(),
                last_post: HashMap::new(),
                key: RoomKey::generate(),
            },
        );
        if let Some(u) = inner.users.get_mut(&me) {
            u.rooms.insert(lc.clone());
        }
        State::display_name(&inner, &me)
    };
    let writes = vec![
        Write::CreateRoom {
            name: name.clone(),
            topic,
            password: hash.map(|h| h.to_bytes()),
            admin: me.clone(),
        },
        Write::AddMember { room: lc.clone(), user: me.clone() },
        system(&lc, &sender, SystemEvent::Created),
    ];
    match commit(state, writes, None).await {
        Ok(ids) => {
            let mut inner = state.lock();
            if let (Some(room), Some((first, _))) = (inner.rooms.get_mut(&lc), ids.first()) {
                room.members.insert(me.clone(), *first);
            }
            Ok(Response::Room { room: info(&inner, &lc, &me) })
        }
        Err(e) => {
            let mut inner = state.lock();
            inner.rooms.remove(&lc);
            if let Some(u) = inner.users.get_mut(&me) {
                u.rooms.remove(&lc);
            }
            Err(e)
        }
    }
}

pub async fn join(state: &State, session: &Session, name: String, password: Option<String>) -> ApiResult {
    let me = me(session)?;
    let lc = name.to_ascii_lowercase();
    let hash = {
        let inner = state.lock();
        let room = inner.rooms.get(&lc).ok_or_else(|| no_room(&name))?;
        if room.bans.contains(&me) {
            return Err(ApiError::new(ErrorCode::Banned, format!("you are banned from {}", room.name)));
        }
        if room.members.contains_key(&me) {
            return Err(ApiError::new(ErrorCode::AlreadyMember, format!("you are already in {}", room.name)));
        }
        room_count_ok(state, &inner, &me)?;
        room.password.clone()
    };
    if let Some(hash) = hash {
        let Some(given) = password else {
            return Err(ApiError::new(
                ErrorCode::WrongPassword,
                format!("{name} is locked: it needs a password"),
            ));
        };
        if given.len() > MAX_PASSWORD_LEN {
            return Err(ApiError::new(ErrorCode::WrongPassword, "wrong password"));
        }
        let ok = tokio::task::spawn_blocking(move || hash.verify(given.as_bytes()))
            .await
            .map_err(ApiError::internal)?;
        if !ok {
            return Err(ApiError::new(ErrorCode::WrongPassword, format!("wrong password for {name}")));
        }
    }
    let (sender, mut writes) = {
        let mut inner = state.lock();
        let sender = State::display_name(&inner, &me);
        let room = inner.rooms.get_mut(&lc).ok_or_else(|| no_room(&name))?;
        if room.bans.contains(&me) {
            return Err(ApiError::new(ErrorCode::Banned, format!("you are banned from {}", room.name)));
        }
        if room.members.insert(me.clone(), 0).is_some() {
            return Err(ApiError::new(ErrorCode::AlreadyMember, format!("you are already in {}", room.name)));
        }
        let mut writes = Vec::new();
        // An abandoned room (its last member left) belongs to whoever comes back first.
        if room.members.len() == 1 && lc != DEFAULT_ROOM {
            room.admin = me.clone();
            writes.push(Write::SetRoomAdmin { room: lc.clone(), admin: me.clone() });
        }
        if let Some(u) = inner.users.get_mut(&me) {
            u.rooms.insert(lc.clone());
        }
        (sender, writes)
    };
    writes.push(Write::AddMember { room: lc.clone(), user: me.clone() });
    writes.push(system(&lc, &sender, SystemEvent::Joined));
    match commit(state, writes, None).await {
        Ok(ids) => {
            let mut inner = state.lock();
            if let (Some(room), Some((first, _))) = (inner.rooms.get_mut(&lc), ids.first()) {
                room.members.insert(me.clone(), *first);
            }
            Ok(Response::Room { room: info(&inner, &lc, &me) })
        }
        Err(e) => {
            let mut inner = state.lock();
            if let Some(room) = inner.rooms.get_mut(&lc) {
                room.remove_member(&me);
            }
            if let Some(u) = inner.users.get_mut(&me) {
                u.rooms.remove(&lc);
            }
            Err(e)
        }
    }
}

/// Removes `user` from the room in memory; the caller commits.
fn remove_member(inner: &mut Inner, room_lc: &str, user: &str) {
    if let Some(room) = inner.rooms.get_mut(room_lc) {
        room.remove_member(user);
    }
    if let Some(u) = inner.users.get_mut(user) {
        u.rooms.remove(room_lc);
    }
}

pub async fn leave(state: &State, session: &Session, name: String) -> ApiResult {
    let me = me(session)?;
    let lc = name.to_ascii_lowercase();
    if lc == DEFAULT_ROOM {
        return Err(ApiError::new(ErrorCode::Forbidden, format!("everyone stays in {DEFAULT_ROOM}")));
    }
    let sender = {
        let mut inner = state.lock();
        let room = inner.rooms.get(&lc).ok_or_else(|| no_room(&name))?;
        if !room.members.contains_key(&me) {
            return Err(not_member(&name));
        }
        if room.admin == me && room.members.len() > 1 {
            return Err(ApiError::new(
                ErrorCode::AdminMustHandOver,
                format!("you are the admin of {}: hand the role to another member before leaving", room.name),
            ));
        }
        remove_member(&mut inner, &lc, &me);
        State::display_name(&inner, &me)
    };
    let writes =
        vec![Write::RemoveMember { room: lc.clone(), user: me }, system(&lc, &sender, SystemEvent::Left)];
    commit(state, writes, None).await?;
    Ok(Response::Done)
}

pub fn members(state: &State, session: &Session, name: String) -> ApiResult {
    let me = me(session)?;
    let lc = name.to_ascii_lowercase();
    let inner = state.lock();
    let room = inner.rooms.get(&lc).ok_or_else(|| no_room(&name))?;
    if !room.members.contains_key(&me) {
        return Err(not_member(&name));
    }
    // Who is muted is for the room's staff only.
    let staff = crate::class::is_staff(&inner, &lc, &me);
    let now = crate::store::now_ms();
    let mut members: Vec<Member> = room
        .members
        .keys()
        .filter_map(|m| inner.users.get(m).map(|u| (m, u)))
        .map(|(m, u)| {
            let mute = staff
                .then(|| {
                    let class = &inner.class;
                    let (room, server) = (class.mute_of(Some(&lc), m, now), class.mute_of(None, m, now));
                    // The one that lasts longer: `None` is until lifted.
                    match (room, server) {
                        (Some(a), Some(b)) => {
                            Some(if a.until.is_none() || b.until.is_some_and(|t| a.until > Some(t)) {
                                a
                            } else {
                                b
                            })
                        }
                        (a, b) => a.or(b),
                    }
                })
                .flatten();
            Member {
                name: u.name.clone(),
                online: u.online(),
                admin: *m == room.admin,
                instructor: u.server_admin,
                muted: mute.is_some(),
                muted_until: mute.and_then(|m| m.until),
            }
        })
        .collect();
    members.sort_by_key(|m| m.name.to_ascii_lowercase());
    Ok(Response::Members { room: room.name.clone(), members })
}

/// Kick, or ban when `ban` is set (a ban also kicks a member).
pub async fn kick(state: &State, session: &Session, room: String, user: String, ban: bool) -> ApiResult {
    let me = me(session)?;
    let lc = room.to_ascii_lowercase();
    let target = user.to_ascii_lowercase();
    let (actor, target_name, room_name, was_member) = {
        let mut inner = state.lock();
        check_admin(&inner, &lc, &me, &room)?;
        if target == me {
            return Err(ApiError::new(ErrorCode::BadRequest, "you cannot kick or ban yourself"));
        }
        let Some(target_name) = inner.users.get(&target).map(|u| u.name.clone()) else {
            return Err(ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {user}")));
        };
        let r = inner.rooms.get(&lc).ok_or_else(|| no_room(&room))?;
        let room_name = r.name.clone();
        let was_member = r.members.contains_key(&target);
        if !ban && !was_member {
            return Err(ApiError::new(ErrorCode::NotMember, format!("{target_name} is not in {room_name}")));
        }
        if r.admin == target {
            return Err(ApiError::new(ErrorCode::Forbidden, "the room admin cannot be kicked or banned"));
        }
        if ban && let Some(r) = inner.rooms.get_mut(&lc) {
            r.bans.insert(target.clone());
        }
        remove_member(&mut inner, &lc, &target);
        (State::display_name(&inner, &me), target_name, room_name, was_member)
    };
    let mut writes = Vec::new();
    if was_member {
        writes.push(Write::RemoveMember { room: lc.clone(), user: target.clone() });
    }
    let event = if ban {
        writes.push(Write::AddBan { room: lc.clone(), user: target.clone() });
        SystemEvent::Banned { user: target_name.clone() }
    } else {
        SystemEvent::Kicked { user: target_name.clone() }
    };
    writes.push(system(&lc, &actor, event));
    writes.push(Write::Audit {
        actor: actor.clone(),
        action: if ban { AuditAction::Ban } else { AuditAction::Kick },
        target: target_name.clone(),
        detail: format!("from #{room_name}"),
    });
    commit(state, writes, None).await?;
    if was_member {
        let reason = if ban {
            format!("{actor} banned you from {room_name}")
        } else {
            format!("{actor} removed you from {room_name}")
        };
        State::event_to_user(&state.lock(), &target, Event::RemovedFromRoom { room: room_name, reason });
    }
    Ok(Response::Done)
}

pub async fn unban(state: &State, session: &Session, room: String, user: String) -> ApiResult {
    let me = me(session)?;
    let lc = room.to_ascii_lowercase();
    let target = user.to_ascii_lowercase();
    let (actor, target_name) = {
        let mut inner = state.lock();
        check_admin(&inner, &lc, &me, &room)?;
        let target_name = State::display_name(&inner, &target);
        let r = inner.rooms.get_mut(&lc).ok_or_else(|| no_room(&room))?;
        if !r.bans.remove(&target) {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("{user} is not banned from {room}")));
        }
        (State::display_name(&inner, &me), target_name)
    };
    let writes = vec![
        Write::RemoveBan { room: lc.clone(), user: target },
        Write::Audit {
            actor: actor.clone(),
            action: AuditAction::Unban,
            target: target_name.clone(),
            detail: format!("from #{}", State::display_room(&state.lock(), &lc)),
        },
        system(&lc, &actor, SystemEvent::Unbanned { user: target_name }),
    ];
    commit(state, writes, None).await?;
    Ok(Response::Done)
}

pub fn list_bans(state: &State, session: &Session, room: String) -> ApiResult {
    let me = me(session)?;
    let lc = room.to_ascii_lowercase();
    let inner = state.lock();
    check_admin(&inner, &lc, &me, &room)?;
    let r = inner.rooms.get(&lc).ok_or_else(|| no_room(&room))?;
    let users = r.bans.iter().map(|u| State::display_name(&inner, u)).collect();
    Ok(Response::Bans { room: r.name.clone(), users })
}

pub async fn set_topic(state: &State, session: &Session, room: String, topic: String) -> ApiResult {
    let me = me(session)?;
    let lc = room.to_ascii_lowercase();
    if topic.len() > MAX_TOPIC_LEN {
        return Err(ApiError::new(ErrorCode::TooLong, "topics are at most 512 bytes"));
    }
    let actor = {
        let mut inner = state.lock();
        check_admin(&inner, &lc, &me, &room)?;
        if let Some(r) = inner.rooms.get_mut(&lc) {
            r.topic = topic.clone();
        }
        State::display_name(&inner, &me)
    };
    let writes = vec![
        Write::SetTopic { room: lc.clone(), topic: topic.clone() },
        system(&lc, &actor, SystemEvent::Topic { topic }),
    ];
    commit(state, writes, None).await?;
    Ok(Response::Done)
}

pub async fn set_password(
    state: &State,
    session: &Session,
    room: String,
    password: Option<String>,
) -> ApiResult {
    let me = me(session)?;
    let lc = room.to_ascii_lowercase();
    if lc == DEFAULT_ROOM {
        return Err(ApiError::new(ErrorCode::Forbidden, format!("{DEFAULT_ROOM} stays open to everyone")));
    }
    check_password(&password)?;
    check_admin(&state.lock(), &lc, &me, &room)?;
    let hash = hash_password(state, password).await?;
    let actor = {
        let mut inner = state.lock();
        check_admin(&inner, &lc, &me, &room)?;
        if let Some(r) = inner.rooms.get_mut(&lc) {
            r.password = hash.clone();
        }
        State::display_name(&inner, &me)
    };
    let event = if hash.is_some() { SystemEvent::Locked } else { SystemEvent::Unlocked };
    let writes = vec![
        Write::SetRoomPassword { room: lc.clone(), password: hash.map(|h| h.to_bytes()) },
        system(&lc, &actor, event),
    ];
    commit(state, writes, None).await?;
    Ok(Response::Done)
}

pub async fn hand_over(state: &State, session: &Session, room: String, user: String) -> ApiResult {
    let me = me(session)?;
    let lc = room.to_ascii_lowercase();
    let target = user.to_ascii_lowercase();
    let (actor, target_name) = {
        let mut inner = state.lock();
        check_admin(&inner, &lc, &me, &room)?;
        let target_name = State::display_name(&inner, &target);
        let r = inner.rooms.get_mut(&lc).ok_or_else(|| no_room(&room))?;
        if !r.members.contains_key(&target) {
            return Err(ApiError::new(ErrorCode::NotMember, format!("{user} is not in {}", r.name)));
        }
        r.admin = target.clone();
        (State::display_name(&inner, &me), target_name)
    };
    let writes = vec![
        Write::SetRoomAdmin { room: lc.clone(), admin: target },
        system(&lc, &actor, SystemEvent::AdminHandedOver { user: target_name }),
    ];
    commit(state, writes, None).await?;
    Ok(Response::Done)
}
