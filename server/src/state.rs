//! Shared server state: accounts, rooms and online sessions, kept in memory and mirrored
//! to the store. One std `Mutex` guards it; it is never held across an `.await`, and the
//! work done under it is bounded by the size of one room or one user's sessions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use classchat_wire::crypto::ServerKey;
use classchat_wire::room_record::{RoomKey, RoomRecord};
use classchat_wire::{Body, Conv, Event, Limits, ServerMsg};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::keys::SecretHash;
use crate::outbound::{self, TrySendError};
use crate::store::{Snapshot, Store, StoredMessage};

/// Lowercased name: the key of users and rooms.
pub type Lc = String;

/// A `HashMap` with a fast hash (foldhash, seeded at random per process) for the maps the
/// fan-out reads for every member of every message.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type SessionId = u64;

/// Conversation key of the announcements in the database.
pub const ANNOUNCEMENTS: &str = "a";

pub fn room_conv(room_lc: &str) -> String {
    format!("r:{room_lc}")
}

/// DM conversation key: both names lowercased and sorted (names cannot contain ':').
pub fn dm_conv(a: &str, b: &str) -> String {
    if a <= b { format!("d:{a}:{b}") } else { format!("d:{b}:{a}") }
}

/// What a session's writer task sends.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded `ServerMsg`, sealed by the writer with the connection's keys.
    Frame(Bytes),
    /// A room's message sealed once under the room's key; the writer adds the connection's
    /// tag (or sends its plaintext as a `Frame` to a client that does not take room
    /// records).
    Room(Arc<RoomRecord>),
    /// The client takes room records from now on (`ClientMsg::RoomRecords`).
    TakeRoomRecords,
    /// Send `Event::Disconnect` with this reason, then close.
    Close(String),
}

impl Outgoing {
    /// About how many bytes of plaintext it becomes when sealed.
    pub fn encoded_len(&self) -> usize {
        match self {
            Outgoing::Frame(bytes) => bytes.len(),
            // A room record travels in a frame of its own; this is its whole frame.
            Outgoing::Room(record) => record.frame_body_len() + 4,
            Outgoing::TakeRoomRecords => 0,
            // The reason plus roughly the `Disconnect` event encoded around it.
            Outgoing::Close(reason) => reason.len() + 32,
        }
    }
}

#[derive(Debug)]
pub struct SessionHandle {
    pub user: Lc,
    pub device: String,
    pub tx: outbound::Sender<Outgoing>,
    pub kill: CancellationToken,
}

#[derive(Debug)]
pub struct User {
    pub name: String,
    pub auth: SecretHash,
    pub server_admin: bool,
    pub banned: bool,
    pub rooms: BTreeSet<Lc>,
    pub dm_peers: BTreeSet<Lc>,
    /// This node's sessions of the user.
    pub sessions: Vec<SessionId>,
    /// The user's sessions on the other nodes of a cluster (`crate::bus`).
    pub remote: u32,
    pub bucket: TokenBucket,
}

impl User {
    /// Online on this node or another.
    pub fn online(&self) -> bool {
        !self.sessions.is_empty() || self.remote > 0
    }
}

#[derive(Debug)]
pub struct Room {
    pub name: String,
    pub topic: String,
    pub password: Option<SecretHash>,
    pub admin: Lc,
    /// Member → id of the first message they are delivered (their `Joined`).
    pub members: FastMap<Lc, u64>,
    pub bans: BTreeSet<Lc>,
    /// Announce-only, slow mode, Q&A.
    pub settings: classchat_wire::RoomSettings,
    /// When each student last posted, for slow mode (bounded by the members).
    pub last_post: HashMap<Lc, Instant>,
    /// The transport key of this node's room records (PROTOCOL.md section 4.1). Replaced
    /// whenever a member goes ([`Room::remove_member`]), so a removed member never gets
    /// the key of a later record. Each node has its own.
    pub key: Arc<RoomKey>,
}

impl Room {
    /// Takes `user` out of the members and gives the room a new transport key: records
    /// sealed from now on are under a key the removed user's connections are never sent.
    pub fn remove_member(&mut self, user: &str) {
        if self.members.remove(user).is_some() {
            self.key = RoomKey::generate();
        }
    }

    /// Gives the room a new transport key without removing anyone: for a member whose
    /// account is banned ([`ban_account`]).
    pub fn rotate_key(&mut self) {
        self.key = RoomKey::generate();
    }

    /// What to queue for one member's session: the room's record of `frame` (sealed on
    /// first use into `record`, shared by every member after), or, with room records off,
    /// the frame itself.
    fn item_for_member(
        &self,
        room_records: bool,
        frame: &Bytes,
        record: &mut Option<Arc<RoomRecord>>,
    ) -> Outgoing {
        if !room_records {
            return Outgoing::Frame(frame.clone());
        }
        let r =
            record.get_or_insert_with(|| Arc::new(RoomRecord::seal(&self.name, &self.key, frame.clone())));
        Outgoing::Room(Arc::clone(r))
    }
}

/// Token bucket for the per-user message rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: u32) -> Self {
        Self { tokens: f64::from(burst), last: Instant::now() }
    }

    /// Takes a token if one is available.
    pub fn take(&mut self, per_second: u32, burst: u32) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed logins within a window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Most login-failure records kept; beyond this, expired ones are pruned.
const MAX_FAILURE_RECORDS: usize = 100_000;

#[derive(Debug, Default)]
pub struct Inner {
    pub users: FastMap<Lc, User>,
    pub rooms: FastMap<Lc, Room>,
    pub sessions: FastMap<SessionId, SessionHandle>,
    /// Mutes, exam mode, questions, polls, office-hours queues.
    pub class: crate::class::ClassState,
    failures: HashMap<String, Failures>,
    /// Addresses each account last logged in from successfully, newest last (at most
    /// `KNOWN_ADDRESSES`): there the account's failed-login budget does not apply, so
    /// wrong passwords tried elsewhere cannot lock the owner out of their usual machine.
    known_addresses: HashMap<Lc, Vec<IpAddr>>,
    /// In a cluster: where this node publishes, and each other node's online users.
    pub outbox: Option<crate::bus::Outbox>,
    pub remote_online: HashMap<crate::bus::NodeId, HashMap<Lc, u32>>,
    /// `Config::room_records`: rooms' messages go out as room records.
    pub room_records: bool,
}

/// Addresses remembered per account as its usual machines.
const KNOWN_ADDRESSES: usize = 8;

pub struct Shared {
    pub config: Config,
    pub files: crate::files::Files,
    pub key: ServerKey,
    pub store: Store,
    /// Delivery cursors waiting to be written.
    pub cursors: crate::cursors::Cursors,
    pub shutdown: CancellationToken,
    /// The address the server listens on, once it does (for invite links).
    pub local_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Peer-to-peer sharing: listeners, searches, tickets, relays, byte counters.
    pub peers: crate::peer::Peers,
    /// When each user's `typing` was last passed on.
    pub typing: crate::handlers::rich::TypingGate,
    /// The cluster bus, when this node is one of several.
    pub bus: Option<Arc<crate::bus::Bus>>,
    inner: Mutex<Inner>,
    next_session: AtomicU64,
}

/// Cheap-to-clone handle to the shared state.
#[derive(Clone)]
pub struct State(Arc<Shared>);

impl std::ops::Deref for State {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl State {
    /// What the server carried since it started (relayed peer bytes, file content).
    pub fn traffic(&self) -> crate::peer::TrafficCounts {
        self.peers.traffic.counts()
    }

    pub fn new(
        config: Config,
        key: ServerKey,
        store: Store,
        mut snapshot: Snapshot,
        bus: Option<Arc<crate::bus::Bus>>,
    ) -> Self {
        let mut inner = Inner {
            outbox: bus.as_ref().map(|b| b.outbox.clone()),
            room_records: config.room_records,
            ..Inner::default()
        };
        let files = std::mem::take(&mut snapshot.files);
        load(&mut inner, &config, snapshot);
        let files = crate::files::Files::new(config.files_dir(), files);
        State(Arc::new(Shared {
            files,
            config,
            key,
            store,
            cursors: crate::cursors::Cursors::default(),
            shutdown: CancellationToken::new(),
            local_addr: std::sync::OnceLock::new(),
            peers: crate::peer::Peers::default(),
            typing: Default::default(),
            bus,
            inner: Mutex::new(inner),
            next_session: AtomicU64::new(1),
        }))
    }

    /// Replaces the accounts, rooms and class records in memory with `snapshot` (read
    /// from the store again), keeping this node's sessions and what is known of the other
    /// nodes' (`crate::bus`, after it may have missed changes).
    pub fn reload(&self, snapshot: Snapshot) {
        let mut inner = self.lock();
        let kept: Vec<(Lc, Vec<SessionId>, u32)> = inner
            .users
            .iter_mut()
            .filter(|(_, u)| u.online())
            .map(|(lc, u)| (lc.clone(), std::mem::take(&mut u.sessions), u.remote))
            .collect();
        inner.users.clear();
        inner.rooms.clear();
        inner.class = Default::default();
        load(&mut inner, &self.config, Snapshot { files: Vec::new(), ..snapshot });
        for (lc, sessions, remote) in kept {
            if let Some(u) = inner.users.get_mut(&lc) {
                u.sessions = sessions;
                u.remote = remote;
            }
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn limits(&self) -> Limits {
        let c = &self.config;
        Limits {
            max_message_len: u32::try_from(c.max_message_len).unwrap_or(u32::MAX),
            max_frame_len: u32::try_from(c.max_frame_len).unwrap_or(u32::MAX),
            messages_per_second: c.messages_per_second,
            heartbeat_timeout_ms: u32::try_from(c.heartbeat_timeout_ms).unwrap_or(u32::MAX),
            max_file_size: c.max_file_size,
        }
    }

    /// Whether a password login to `user` from `addr` is refused for failed attempts: the
    /// address is over its budget, or the account is and `addr` is not one the account
    /// logged in from before.
    pub fn throttled(&self, user: &str, addr: IpAddr) -> bool {
        let lc = user.to_ascii_lowercase();
        let inner = self.lock();
        let usual = inner.known_addresses.get(&lc).is_some_and(|a| a.contains(&addr));
        self.address_over(&inner, addr)
            || (!usual && self.over(&inner, &format!("u:{lc}"), self.config.max_failed_logins_per_account))
    }

    /// Whether `addr` is over its failed-login budget.
    pub fn address_throttled(&self, addr: IpAddr) -> bool {
        self.address_over(&self.lock(), addr)
    }

    fn address_over(&self, inner: &Inner, addr: IpAddr) -> bool {
        self.over(inner, &format!("a:{addr}"), self.config.max_failed_logins_per_address)
    }

    fn over(&self, inner: &Inner, key: &str, max: u32) -> bool {
        let window = Duration::from_secs(self.config.login_window_secs);
        inner.failures.get(key).is_some_and(|f| f.since.elapsed() < window && f.count >= max)
    }

    /// A failed resume: only the address is charged. A resume token cannot be guessed, so
    /// charging the account would only let anyone lock its owner out.
    pub fn record_address_failure(&self, addr: IpAddr) {
        self.record_failures(&[format!("a:{addr}")]);
    }

    /// `user` logged in from `addr`: remember it as one of their usual machines.
    pub fn remember_address(&self, user: &str, addr: IpAddr) {
        let mut inner = self.lock();
        let known = inner.known_addresses.entry(user.to_ascii_lowercase()).or_default();
        known.retain(|a| *a != addr);
        if known.len() >= KNOWN_ADDRESSES {
            known.remove(0);
        }
        known.push(addr);
    }

    pub fn record_login_failure(&self, user: &str, addr: IpAddr) {
        self.record_failures(&[format!("u:{}", user.to_ascii_lowercase()), format!("a:{addr}")]);
    }

    fn record_failures(&self, keys: &[String]) {
        let window = Duration::from_secs(self.config.login_window_secs);
        let mut inner = self.lock();
        if inner.failures.len() >= MAX_FAILURE_RECORDS {
            inner.failures.retain(|_, f| f.since.elapsed() < window);
        }
        for key in keys.iter().cloned() {
            let f = inner.failures.entry(key).or_insert(Failures { count: 0, since: Instant::now() });
            if f.since.elapsed() >= window {
                *f = Failures { count: 0, since: Instant::now() };
            }
            f.count += 1;
        }
    }

    pub fn clear_login_failures(&self, user: &str) {
        self.lock().failures.remove(&format!("u:{}", user.to_ascii_lowercase()));
    }

    /// Display name of a user, or the key itself if unknown.
    pub fn display_name(inner: &Inner, lc: &str) -> String {
        inner.users.get(lc).map_or_else(|| lc.to_owned(), |u| u.name.clone())
    }

    /// Display name of a room, or the key itself if unknown.
    pub fn display_room(inner: &Inner, lc: &str) -> String {
        inner.rooms.get(lc).map_or_else(|| lc.to_owned(), |r| r.name.clone())
    }

    /// Encodes `msg` once.
    pub fn encode(msg: &ServerMsg) -> Option<Bytes> {
        match classchat_wire::message::encode(msg) {
            Ok(v) => Some(Bytes::from(v)),
            Err(e) => {
                tracing::error!(error = %e, "could not encode a server message");
                None
            }
        }
    }

    /// Queues a frame for one session; a session whose queue is full is cut off so it
    /// never slows anybody else.
    pub fn push(inner: &Inner, session: SessionId, frame: Bytes) {
        if let Some(s) = inner.sessions.get(&session) {
            push_to(s, frame);
        }
    }

    /// Queues `event` for every session of `user`, on every node.
    pub fn event_to_user(inner: &Inner, user: &str, event: Event) {
        let Some(u) = inner.users.get(user) else { return };
        if !u.online() {
            return;
        }
        let Some(frame) = Self::encode(&ServerMsg::Event { event }) else { return };
        Self::send_to_users(inner, std::iter::once(user), &frame);
    }

    /// Queues `frame` for this node's sessions of `user`.
    pub fn push_user_local(inner: &Inner, user: &str, frame: &Bytes) {
        if let Some(u) = inner.users.get(user) {
            for sid in &u.sessions {
                Self::push(inner, *sid, frame.clone());
            }
        }
    }

    /// Queues `frame` for every session of these users: this node's, and through the
    /// bus the other nodes' (one envelope for all the users who are online elsewhere).
    pub fn send_to_users<'a>(inner: &Inner, users: impl IntoIterator<Item = &'a str>, frame: &Bytes) {
        let mut elsewhere = Vec::new();
        for user in users {
            let Some(u) = inner.users.get(user) else { continue };
            for sid in &u.sessions {
                Self::push(inner, *sid, frame.clone());
            }
            if u.remote > 0 {
                elsewhere.push(user.to_owned());
            }
        }
        if let Some(bus) = &inner.outbox {
            bus.to_users(elsewhere, frame);
        }
    }

    /// Queues `frame` for every session of every member of `room` but `skip`, on every node.
    pub fn send_to_room(inner: &Inner, room: &str, skip: Option<&str>, frame: &Bytes) {
        let Some(r) = inner.rooms.get(room) else { return };
        if Self::send_to_room_local(inner, r, skip, frame)
            && let Some(bus) = &inner.outbox
        {
            bus.to_room(room, skip, frame);
        }
    }

    /// Queues `frame` for this node's sessions of every member of `room` but `skip`, as one
    /// room record sealed for all of them when room records are on (PROTOCOL.md section
    /// 4.1). Whether a member has sessions on other nodes.
    pub fn send_to_room_local(inner: &Inner, room: &Room, skip: Option<&str>, frame: &Bytes) -> bool {
        let mut elsewhere = false;
        let mut record: Option<Arc<RoomRecord>> = None;
        for m in room.members.keys().filter(|m| Some(m.as_str()) != skip) {
            let Some(u) = inner.users.get(m) else { continue };
            for sid in &u.sessions {
                let Some(s) = inner.sessions.get(sid) else { continue };
                let item = room.item_for_member(inner.room_records, frame, &mut record);
                if let Some(waker) = push_quietly(s, item) {
                    waker.wake();
                }
            }
            elsewhere |= u.remote > 0;
        }
        elsewhere
    }

    /// Queues `frame` for every session on every node.
    pub fn send_to_all(inner: &Inner, frame: &Bytes) {
        for s in inner.sessions.values() {
            push_to(s, frame.clone());
        }
        if let Some(bus) = &inner.outbox {
            bus.to_all(frame);
        }
    }

    /// Hands a committed message to every session that should see it, except `except`
    /// (the session that sent it, which gets the `Sent` reply instead).
    pub fn deliver(&self, msg: &StoredMessage, except: Option<SessionId>) {
        let inner = self.lock();
        let gathering = GATHERED.with(|g| g.borrow().active);
        let make = |conv: Conv| {
            Self::encode(&ServerMsg::Event { event: Event::Message { message: msg.to_chat(conv) } })
        };
        // The frame is encoded on first use: when nobody but the sending session is
        // online to receive it (its `Sent` reply carries the id), nothing is encoded.
        // That was a fifth of the store thread's work per message in `durable`.
        // `sealed`: for a room's members, the room and its record of the frame (sealed once
        // on first use: `Room::item_for_member`); `None` sends the frame itself.
        let send_all = |users: &mut dyn Iterator<Item = &String>,
                        conv: &dyn Fn() -> Conv,
                        frame: &mut Option<Bytes>,
                        mut sealed: Option<(&Room, &mut Option<Arc<RoomRecord>>)>| {
            for u in users {
                let Some(user) = inner.users.get(u) else { continue };
                for sid in &user.sessions {
                    if Some(*sid) == except {
                        continue;
                    }
                    if frame.is_none() {
                        *frame = make(conv());
                    }
                    let Some(f) = frame.as_ref() else { return };
                    let item = match sealed.as_mut() {
                        Some((room, record)) => room.item_for_member(inner.room_records, f, record),
                        None => Outgoing::Frame(f.clone()),
                    };
                    // A parked writer is woken now, or, during a commit's fan-out, once
                    // at its end (see `Gather`).
                    if let Some(s) = inner.sessions.get(sid)
                        && let Some(waker) = push_quietly(s, item)
                    {
                        if gathering {
                            GATHERED.with(|g| g.borrow_mut().wakers.push(waker));
                        } else {
                            waker.wake();
                        }
                    }
                }
            }
        };
        // In a cluster, the other nodes' sessions get the same frame through the bus.
        let bus = inner.outbox.as_ref();
        if let Some(room_lc) = msg.conv.strip_prefix("r:") {
            let Some(room) = inner.rooms.get(room_lc) else { return };
            let conv = || Conv::Room { name: room.name.clone() };
            let mut frame = None;
            let mut record = None;
            send_all(&mut room.members.keys(), &conv, &mut frame, Some((room, &mut record)));
            // The target of a kick or ban is no longer a member but should see why.
            let target = match &msg.body {
                Body::System {
                    event:
                        classchat_wire::SystemEvent::Kicked { user }
                        | classchat_wire::SystemEvent::Banned { user },
                } => Some(user.to_ascii_lowercase()),
                _ => None,
            };
            // In a frame of its own connection's: the room has a new key by now, which the
            // removed member must never be sent.
            if let Some(t) = &target {
                send_all(&mut std::iter::once(t), &conv, &mut frame, None);
            }
            if let Some(bus) = bus {
                let remote = |u: &String| inner.users.get(u).is_some_and(|u| u.remote > 0);
                let target = target.filter(|t| remote(t));
                if room.members.keys().any(remote) || target.is_some() {
                    if frame.is_none() {
                        frame = make(conv());
                    }
                    if let Some(f) = &frame {
                        bus.to_room(room_lc, None, f);
                        bus.to_users(target.into_iter().collect(), f);
                    }
                }
            }
        } else if let Some(pair) = msg.conv.strip_prefix("d:") {
            let Some((a, b)) = pair.split_once(':') else { return };
            for (me, peer) in [(a, b), (b, a)] {
                let conv = || Conv::Direct { user: Self::display_name(&inner, peer) };
                let mut frame = None;
                send_all(&mut std::iter::once(&me.to_owned()), &conv, &mut frame, None);
                if let Some(bus) = bus
                    && inner.users.get(me).is_some_and(|u| u.remote > 0)
                    && let Some(f) = frame.or_else(|| make(conv()))
                {
                    bus.to_users(vec![me.to_owned()], &f);
                }
                if a == b {
                    break;
                }
            }
        } else if msg.conv == ANNOUNCEMENTS {
            let mut frame = None;
            for (sid, s) in &inner.sessions {
                if Some(*sid) != except {
                    if frame.is_none() {
                        frame = make(Conv::Announcements);
                    }
                    let Some(f) = frame.as_ref() else { return };
                    push_to(s, f.clone());
                }
            }
            if let Some(bus) = bus.filter(|b| b.has_peers())
                && let Some(f) = frame.or_else(|| make(Conv::Announcements))
            {
                bus.to_all(&f);
            }
        }
    }

    /// Online users who should hear about `user`'s presence: those sharing a room or a DM.
    /// Borrowed from `inner`: this runs at every login and logout, and in a room of
    /// thousands cloning every member's name into a set was most of a login storm's cost.
    pub fn related_users<'a>(inner: &'a Inner, user: &str) -> HashSet<&'a str> {
        let mut out = HashSet::new();
        let online = |name: &&String| inner.users.get(name.as_str()).is_some_and(|u| !u.sessions.is_empty());
        if let Some(u) = inner.users.get(user) {
            for room in &u.rooms {
                if let Some(r) = inner.rooms.get(room) {
                    out.extend(r.members.keys().filter(online).map(String::as_str));
                }
            }
            out.extend(u.dm_peers.iter().filter(online).map(String::as_str));
        }
        out.remove(user);
        out
    }

    /// Sends a presence change of `user` to every related online user.
    pub fn announce_presence(inner: &Inner, user: &str, online: bool) {
        let name = Self::display_name(inner, user);
        let Some(frame) = Self::encode(&ServerMsg::Event { event: Event::Presence { user: name, online } })
        else {
            return;
        };
        for other in Self::related_users(inner, user) {
            if let Some(u) = inner.users.get(other) {
                for sid in &u.sessions {
                    Self::push(inner, *sid, frame.clone());
                }
            }
        }
    }

    /// Disconnects every session of `user` with `reason`, on every node.
    pub fn disconnect_user(inner: &Inner, user: &str, reason: &str) {
        Self::disconnect_user_local(inner, user, reason);
        if let Some(bus) = &inner.outbox {
            bus.disconnect(user, reason);
        }
    }

    /// Disconnects this node's sessions of `user` with `reason`.
    pub fn disconnect_user_local(inner: &Inner, user: &str, reason: &str) {
        if let Some(u) = inner.users.get(user) {
            for sid in &u.sessions {
                if let Some(s) = inner.sessions.get(sid) {
                    close_session(s, reason);
                }
            }
        }
    }
}

/// Loads the accounts, rooms, members, bans, direct pairs and class records of
/// `snapshot` into `inner` (its files go to the file registry separately).
fn load(inner: &mut Inner, config: &Config, snapshot: Snapshot) {
    let burst = config.message_burst;
    for u in snapshot.users {
        let Some(auth) = SecretHash::from_bytes(&u.auth) else {
            tracing::error!(user = %u.name, "stored auth hash is malformed; the account cannot log in");
            continue;
        };
        let admin_by_config = config.admins.iter().any(|a| a.eq_ignore_ascii_case(&u.name));
        inner.users.insert(
            u.name.to_ascii_lowercase(),
            User {
                name: u.name,
                auth,
                server_admin: u.server_admin || admin_by_config,
                banned: u.banned,
                rooms: BTreeSet::new(),
                dm_peers: BTreeSet::new(),
                sessions: Vec::new(),
                remote: 0,
                bucket: TokenBucket::new(burst),
            },
        );
    }
    for r in snapshot.rooms {
        let password = r.password.as_deref().and_then(SecretHash::from_bytes);
        inner.rooms.insert(
            r.name.to_ascii_lowercase(),
            Room {
                name: r.name,
                topic: r.topic,
                password,
                admin: r.admin_lc,
                members: FastMap::default(),
                bans: BTreeSet::new(),
                settings: Default::default(),
                last_post: HashMap::new(),
                key: RoomKey::generate(),
            },
        );
    }
    for (room, user, joined) in snapshot.members {
        if let (Some(r), Some(u)) = (inner.rooms.get_mut(&room), inner.users.get_mut(&user)) {
            r.members.insert(user.clone(), joined);
            u.rooms.insert(room);
        }
    }
    for (room, user) in snapshot.bans {
        if let Some(r) = inner.rooms.get_mut(&room) {
            r.bans.insert(user);
        }
    }
    for (a, b) in snapshot.dm_pairs {
        if let Some(u) = inner.users.get_mut(&a) {
            u.dm_peers.insert(b.clone());
        }
        if let Some(u) = inner.users.get_mut(&b) {
            u.dm_peers.insert(a);
        }
    }
    crate::class::load(inner, snapshot.objects);
}

/// Fan-out gathered on this thread while a [`Gather`] guard lives.
#[derive(Default)]
struct Gathered {
    active: bool,
    /// The writers that frames were queued for while they were parked, to wake when the
    /// commit's fan-out is all queued.
    wakers: Vec<std::task::Waker>,
    /// Work to run once the frames are out (completions' replies).
    after: Vec<Box<dyn FnOnce()>>,
}

thread_local! {
    static GATHERED: std::cell::RefCell<Gathered> = std::cell::RefCell::new(Gathered::default());
}

/// Batches the fan-out of one group commit per connection. While the guard lives,
/// [`State::deliver`] on this thread queues its frames without waking the writers; when it
/// drops, it wakes each writer that was parked, once. A connection that receives several
/// messages of one commit thus finds them all queued when its writer runs, and sends them
/// in one frame and one write instead of waking, sealing and writing once per message.
/// (Each queue keeps its own order, so nothing needs sorting: this replaced gathering the
/// frames and sorting them by session, which was 5.7% of the server's CPU in a 1,000-member
/// room.) Work registered with [`after_gather`] runs after the wakes, so a reply never
/// overtakes the events it follows.
///
/// The store's writer thread holds one around the completions of each commit.
pub struct Gather(());

impl Gather {
    pub fn begin() -> Gather {
        GATHERED.with(|g| g.borrow_mut().active = true);
        Gather(())
    }
}

impl Drop for Gather {
    fn drop(&mut self) {
        let (mut wakers, after) = GATHERED.with(|g| {
            let mut g = g.borrow_mut();
            g.active = false;
            (std::mem::take(&mut g.wakers), std::mem::take(&mut g.after))
        });
        for w in wakers.drain(..) {
            w.wake();
        }
        // Hand the (empty) buffer back so the next commit does not allocate it again.
        GATHERED.with(|g| g.borrow_mut().wakers = wakers);
        for f in after {
            f();
        }
    }
}

/// Runs `f` after the current [`Gather`] on this thread has handed out its frames, or
/// now if there is none.
pub fn after_gather(f: impl FnOnce() + 'static) {
    let f: Box<dyn FnOnce()> = Box::new(f);
    let deferred = GATHERED.with(|g| {
        let mut g = g.borrow_mut();
        if g.active {
            g.after.push(f);
            None
        } else {
            Some(f)
        }
    });
    if let Some(f) = deferred {
        f();
    }
}

/// Queues `frame` for `s` without waking its writer; the waker to wake later if the writer
/// was parked. A full queue cuts the slow client off.
fn push_quietly(s: &SessionHandle, item: Outgoing) -> Option<std::task::Waker> {
    match s.tx.try_send_quiet(item) {
        Ok(waker) => waker,
        Err(TrySendError::Full(_)) => {
            tracing::info!(user = %s.user, "outbound queue full; disconnecting the slow client");
            s.kill.cancel();
            None
        }
        Err(TrySendError::Closed(_)) => None,
    }
}

pub(crate) fn push_to(s: &SessionHandle, frame: Bytes) {
    if let Some(waker) = push_quietly(s, Outgoing::Frame(frame)) {
        waker.wake();
    }
}

/// Asks a session to say goodbye and close; if its queue is full, cut it off at once.
pub fn close_session(s: &SessionHandle, reason: &str) {
    if s.tx.try_send(Outgoing::Close(reason.to_owned())).is_err() {
        s.kill.cancel();
    }
}

/// Marks `user`'s account banned (or not). A ban also replaces the transport key of every
/// room the user is a member of, as a room ban or kick does (PROTOCOL.md section 4.1): the
/// account stays a member, but its sessions are on their way out, and records sealed from
/// now on are under keys none of them is sent. `false` if there is no such user.
pub fn ban_account(inner: &mut Inner, user: &str, banned: bool) -> bool {
    let Some(u) = inner.users.get_mut(user) else { return false };
    u.banned = banned;
    if banned {
        for r in &u.rooms {
            if let Some(room) = inner.rooms.get_mut(r) {
                room.rotate_key();
            }
        }
    }
    true
}
