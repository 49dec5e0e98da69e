//! What a node does with what the others publish: state changes applied to its memory,
//! frames pushed to its own sessions, other nodes' online users counted.

use std::collections::{BTreeSet, HashMap};

use classchat_wire::room_record::RoomKey;
use classchat_wire::{MessageId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{BusMsg, NodeId};
use crate::keys::SecretHash;
use crate::state::{FastMap, Inner, Lc, Room, State, TokenBucket, User};
use crate::store::{FileRow, Write};

/// A committed write that changes what nodes keep in memory (the rest, such as messages,
/// cursors and keys, live in the store only; their events travel as frames).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    CreateUser {
        name: String,
        auth: Vec<u8>,
    },
    SetServerAdmin {
        user: Lc,
        admin: bool,
    },
    SetBanned {
        user: Lc,
        banned: bool,
    },
    SetAuth {
        user: Lc,
        auth: Vec<u8>,
    },
    CreateRoom {
        name: String,
        topic: String,
        password: Option<Vec<u8>>,
        admin: Lc,
    },
    DeleteRoom {
        room: Lc,
    },
    SetTopic {
        room: Lc,
        topic: String,
    },
    SetRoomPassword {
        room: Lc,
        password: Option<Vec<u8>>,
    },
    SetRoomAdmin {
        room: Lc,
        admin: Lc,
    },
    /// `joined`: the member's first message (the job's first id, as on the node that
    /// committed it).
    AddMember {
        room: Lc,
        user: Lc,
        joined: MessageId,
    },
    RemoveMember {
        room: Lc,
        user: Lc,
    },
    AddBan {
        room: Lc,
        user: Lc,
    },
    RemoveBan {
        room: Lc,
        user: Lc,
    },
    AddDmPair {
        a: Lc,
        b: Lc,
    },
    PutObject {
        kind: String,
        key: String,
        value: Vec<u8>,
    },
    DeleteObject {
        kind: String,
        key: String,
    },
    CreateFile {
        row: FileRow,
    },
    CompleteFile {
        id: u64,
        sha256: Vec<u8>,
        completed: Timestamp,
    },
    AcceptOffer {
        id: u64,
    },
    DeleteFile {
        id: u64,
    },
}

impl Change {
    /// The changes of a committed job (`first_id`: the first id the job took).
    pub fn of_job(writes: &[Write], first_id: MessageId) -> Vec<Change> {
        writes.iter().filter_map(|w| Self::of(w, first_id)).collect()
    }

    fn of(w: &Write, first_id: MessageId) -> Option<Change> {
        Some(match w {
            Write::CreateUser { name, auth } => Change::CreateUser { name: name.clone(), auth: auth.clone() },
            Write::SetServerAdmin { user, admin } => {
                Change::SetServerAdmin { user: user.clone(), admin: *admin }
            }
            Write::SetBanned { user, banned } => Change::SetBanned { user: user.clone(), banned: *banned },
            Write::SetAuth { user, auth } => Change::SetAuth { user: user.clone(), auth: auth.clone() },
            Write::CreateRoom { name, topic, password, admin } => Change::CreateRoom {
                name: name.clone(),
                topic: topic.clone(),
                password: password.clone(),
                admin: admin.clone(),
            },
            Write::DeleteRoom { room } => Change::DeleteRoom { room: room.clone() },
            Write::SetTopic { room, topic } => Change::SetTopic { room: room.clone(), topic: topic.clone() },
            Write::SetRoomPassword { room, password } => {
                Change::SetRoomPassword { room: room.clone(), password: password.clone() }
            }
            Write::SetRoomAdmin { room, admin } => {
                Change::SetRoomAdmin { room: room.clone(), admin: admin.clone() }
            }
            Write::AddMember { room, user } => {
                Change::AddMember { room: room.clone(), user: user.clone(), joined: first_id }
            }
            Write::RemoveMember { room, user } => {
                Change::RemoveMember { room: room.clone(), user: user.clone() }
            }
            Write::AddBan { room, user } => Change::AddBan { room: room.clone(), user: user.clone() },
            Write::RemoveBan { room, user } => Change::RemoveBan { room: room.clone(), user: user.clone() },
            Write::AddDmPair { a, b } => Change::AddDmPair { a: a.clone(), b: b.clone() },
            Write::PutObject { kind, key, value, .. } => {
                Change::PutObject { kind: (*kind).to_owned(), key: key.clone(), value: value.clone() }
            }
            Write::DeleteObject { kind, key } => {
                Change::DeleteObject { kind: (*kind).to_owned(), key: key.clone() }
            }
            Write::CreateFile { row } => Change::CreateFile { row: row.clone() },
            Write::CompleteFile { id, sha256, completed } => {
                Change::CompleteFile { id: *id, sha256: sha256.clone(), completed: *completed }
            }
            Write::AcceptOffer { id } => Change::AcceptOffer { id: *id },
            Write::DeleteFile { id } => Change::DeleteFile { id: *id },
            _ => return None,
        })
    }
}

/// Handles what another node published (but `Leaving`, which the bus handles).
pub(super) fn receive(state: &State, node: NodeId, msg: BusMsg) {
    match msg {
        BusMsg::Changes(changes) => {
            // The file registry has a lock of its own, never taken under the state's.
            let (files, others): (Vec<Change>, Vec<Change>) = changes.into_iter().partition(|c| {
                matches!(
                    c,
                    Change::CreateFile { .. }
                        | Change::CompleteFile { .. }
                        | Change::AcceptOffer { .. }
                        | Change::DeleteFile { .. }
                )
            });
            {
                let mut inner = state.lock();
                for c in others {
                    apply(state, &mut inner, c);
                }
            }
            for c in files {
                apply_file(state, c);
            }
        }
        BusMsg::ToUsers { users, frame } => {
            let inner = state.lock();
            let frame = bytes::Bytes::from(frame.into_vec());
            for u in &users {
                State::push_user_local(&inner, u, &frame);
            }
        }
        BusMsg::ToRoom { room, skip, frame } => {
            let inner = state.lock();
            let frame = bytes::Bytes::from(frame.into_vec());
            if let Some(r) = inner.rooms.get(&room) {
                State::send_to_room_local(&inner, r, skip.as_deref(), &frame);
            }
        }
        BusMsg::ToAll { frame } => {
            let inner = state.lock();
            let frame = bytes::Bytes::from(frame.into_vec());
            for s in inner.sessions.values() {
                crate::state::push_to(s, frame.clone());
            }
        }
        BusMsg::Online { user, sessions } => {
            let mut inner = state.lock();
            set_remote(&mut inner, node, &user, sessions);
        }
        BusMsg::Disconnect { user, reason } => {
            let inner = state.lock();
            State::disconnect_user_local(&inner, &user, &reason);
        }
        BusMsg::Heartbeat(info) => {
            let mut inner = state.lock();
            // The heartbeat is the whole truth: users it no longer lists are offline there.
            let listed: HashMap<Lc, u32> = info.online.into_iter().collect();
            let known: Vec<Lc> =
                inner.remote_online.get(&node).map(|m| m.keys().cloned().collect()).unwrap_or_default();
            for user in known {
                if !listed.contains_key(&user) {
                    set_remote(&mut inner, node, &user, 0);
                }
            }
            for (user, n) in listed {
                set_remote(&mut inner, node, &user, n);
            }
        }
        BusMsg::Leaving => {}
    }
}

/// Another node is gone: its sessions no longer count.
pub(super) fn node_gone(state: &State, node: NodeId) {
    let mut inner = state.lock();
    let users: Vec<Lc> =
        inner.remote_online.get(&node).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for u in users {
        set_remote(&mut inner, node, &u, 0);
    }
    inner.remote_online.remove(&node);
}

/// Records that `user` has `n` sessions on `node`; when that takes the user on- or
/// offline as a whole, tells this node's related sessions (each node tells its own).
fn set_remote(inner: &mut Inner, node: NodeId, user: &str, n: u32) {
    let per_node = inner.remote_online.entry(node).or_default();
    let old = if n == 0 { per_node.remove(user) } else { per_node.insert(user.to_owned(), n) }.unwrap_or(0);
    if old == n {
        return;
    }
    let Some(u) = inner.users.get_mut(user) else { return };
    let was_online = u.online();
    u.remote = u.remote.saturating_sub(old).saturating_add(n);
    let now_online = u.online();
    if was_online != now_online {
        State::announce_presence(inner, user, now_online);
    }
}

fn apply(state: &State, inner: &mut Inner, change: Change) {
    let burst = state.config.message_burst;
    match change {
        Change::CreateUser { name, auth } => {
            let lc = name.to_ascii_lowercase();
            let Some(auth) = SecretHash::from_bytes(&auth) else { return };
            let admin = state.config.admins.iter().any(|a| a.eq_ignore_ascii_case(&name));
            inner.users.entry(lc).or_insert_with(|| User {
                name,
                auth,
                server_admin: admin,
                banned: false,
                rooms: BTreeSet::new(),
                dm_peers: BTreeSet::new(),
                sessions: Vec::new(),
                remote: 0,
                bucket: TokenBucket::new(burst),
            });
        }
        Change::SetServerAdmin { user, admin } => {
            let by_config = state.config.admins.iter().any(|a| a.eq_ignore_ascii_case(&user));
            if let Some(u) = inner.users.get_mut(&user) {
                u.server_admin = admin || by_config;
            }
        }
        Change::SetBanned { user, banned } => {
            crate::state::ban_account(inner, &user, banned);
        }
        Change::SetAuth { user, auth } => {
            if let (Some(u), Some(auth)) = (inner.users.get_mut(&user), SecretHash::from_bytes(&auth)) {
                u.auth = auth;
            }
        }
        Change::CreateRoom { name, topic, password, admin } => {
            let lc = name.to_ascii_lowercase();
            inner.rooms.entry(lc).or_insert_with(|| Room {
                name,
                topic,
                password: password.as_deref().and_then(SecretHash::from_bytes),
                admin,
                members: FastMap::default(),
                bans: BTreeSet::new(),
                settings: Default::default(),
                last_post: HashMap::new(),
                key: RoomKey::generate(),
            });
        }
        Change::DeleteRoom { room } => {
            if let Some(r) = inner.rooms.remove(&room) {
                for m in r.members.keys() {
                    if let Some(u) = inner.users.get_mut(m) {
                        u.rooms.remove(&room);
                    }
                }
            }
            inner.class.forget_room(&room);
        }
        Change::SetTopic { room, topic } => {
            if let Some(r) = inner.rooms.get_mut(&room) {
                r.topic = topic;
            }
        }
        Change::SetRoomPassword { room, password } => {
            if let Some(r) = inner.rooms.get_mut(&room) {
                r.password = password.as_deref().and_then(SecretHash::from_bytes);
            }
        }
        Change::SetRoomAdmin { room, admin } => {
            if let Some(r) = inner.rooms.get_mut(&room) {
                r.admin = admin;
            }
        }
        Change::AddMember { room, user, joined } => {
            if let (Some(r), Some(u)) = (inner.rooms.get_mut(&room), inner.users.get_mut(&user)) {
                r.members.insert(user, joined);
                u.rooms.insert(room);
            }
        }
        Change::RemoveMember { room, user } => {
            if let Some(r) = inner.rooms.get_mut(&room) {
                r.remove_member(&user);
            }
            if let Some(u) = inner.users.get_mut(&user) {
                u.rooms.remove(&room);
            }
        }
        Change::AddBan { room, user } => {
            if let Some(r) = inner.rooms.get_mut(&room) {
                r.bans.insert(user);
            }
        }
        Change::RemoveBan { room, user } => {
            if let Some(r) = inner.rooms.get_mut(&room) {
                r.bans.remove(&user);
            }
        }
        Change::AddDmPair { a, b } => {
            if let Some(u) = inner.users.get_mut(&a) {
                u.dm_peers.insert(b.clone());
            }
            if let Some(u) = inner.users.get_mut(&b) {
                u.dm_peers.insert(a);
            }
        }
        Change::PutObject { kind, key, value } => crate::class::load(inner, vec![(kind, key, value)]),
        Change::DeleteObject { kind, key } => crate::class::forget(inner, &kind, &key),
        // `receive` hands these to `apply_file`, outside the state lock (the file
        // registry's lock is never taken under it).
        Change::CreateFile { .. }
        | Change::CompleteFile { .. }
        | Change::AcceptOffer { .. }
        | Change::DeleteFile { .. } => {}
    }
}

fn apply_file(state: &State, change: Change) {
    match change {
        Change::CreateFile { row } => state.files.remote_created(row),
        Change::CompleteFile { id, sha256, completed } => state.files.remote_completed(id, sha256, completed),
        Change::AcceptOffer { id } => state.files.remote_accepted(id),
        Change::DeleteFile { id } => {
            state.files.forget(id);
        }
        _ => {}
    }
}
