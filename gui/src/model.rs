//! The client-side model: what the app knows about the server, kept apart from the views.
//!
//! Everything that changes it comes from the server (through the net task) or from the
//! user's own actions; the views only read it. Messages are kept per conversation, sorted
//! by their server id, so catch-up after a reconnect, history pages and live events can
//! arrive in any order and overlap without showing anything twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use classchat_wire::{
    Body, ChatMessage, Conv, FileInfo, Limits, Member, MessageId, Reaction, RoomInfo, SystemEvent, Timestamp,
    UserInfo, Welcome,
};

use crate::e2e::{KeyStatus, PeerInfo, PendingCheck, UNVERIFIED};

/// Messages from one sender less than this far apart share one header line.
pub const GROUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// The logged-in user and what the server told them at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub name: String,
    pub server_name: String,
    pub server_admin: bool,
    pub can_broadcast: bool,
    pub limits: Limits,
}

/// A message ready for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: MessageId,
    pub from: String,
    pub ts: Timestamp,
    pub content: Content,
    pub meta: Meta,
}

impl Msg {
    pub fn new(id: MessageId, from: impl Into<String>, ts: Timestamp, content: Content) -> Self {
        Msg { id, from: from.into(), ts, content, meta: Meta::default() }
    }
}

/// What a message carries besides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The message of the same conversation this one answers.
    pub reply_to: Option<MessageId>,
    /// When its text was last edited.
    pub edited: Option<Timestamp>,
    pub reactions: Vec<Reaction>,
    /// For a direct message: the key id and sequence number of the envelope whose text is
    /// shown. An edit applies only with a later one under the same key (or a new key), so
    /// the server cannot replay an older edit over a newer one (PROTOCOL.md 18.3).
    pub envelope: Option<([u8; 16], u64)>,
}

impl Meta {
    pub fn of(m: &ChatMessage) -> Self {
        Meta { reply_to: m.reply_to, edited: m.edited, reactions: m.reactions.clone(), envelope: None }
    }

    /// Whether the message gets a line under it (for "edited" and the reactions).
    pub fn has_footer(&self) -> bool {
        self.edited.is_some() || !self.reactions.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A room event, already in words ("bob joined").
    System(String),
    /// A server-wide broadcast.
    Announcement(String),
    /// A body the app could not read or verify; shown as such, never as text.
    Unreadable(String),
    /// A direct message that decrypted and passed its MAC, but whose signature has not
    /// been checked yet: laid out with its text, shown only as "verifying" until the
    /// check (run for the rows about to be shown) turns it into `Text` or `Unreadable`.
    Sealed {
        text: String,
        check: Arc<PendingCheck>,
        requested: bool,
    },
    /// A file shared in a room: the conversation shows its name, size and buttons.
    File(Box<FileInfo>),
    /// The message was deleted; the text says by whom, in words.
    Deleted(String),
}

impl Content {
    /// The text to lay out. For `Sealed` that is the text not yet shown.
    pub fn text(&self) -> &str {
        match self {
            Content::Text(t)
            | Content::System(t)
            | Content::Announcement(t)
            | Content::Unreadable(t)
            | Content::Deleted(t)
            | Content::Sealed { text: t, .. } => t,
            Content::File(f) => &f.name,
        }
    }
}

/// One of the user's own messages the server has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub local_id: u64,
    pub text: String,
    pub state: PendingState,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingState {
    /// Handed to the net task; waiting for the server's acknowledgement.
    Sending,
    /// The connection dropped; it goes out again after the reconnect.
    WaitingForConnection,
    /// The server refused it; the string says why. The user may retry or discard it.
    Failed(String),
}

/// Where a message came from; decides whether it counts as unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Sent while we were connected.
    Live,
    /// Sent while we were away, delivered after login.
    CatchUp,
    /// Older messages the user scrolled up to.
    History,
}

/// What the app may want to tell the user about a new message (an OS notification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub conv: Conv,
    pub from: String,
    pub text: String,
    pub reason: NoticeReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeReason {
    DirectMessage,
    Mention,
    Announcement,
    FileOffer,
    /// An instructor took the user off their office-hours queue: it is their turn.
    Called,
    /// A classmate started fetching one of the user's shared files.
    Fetching,
}

/// A conversation: a room, a DM, or the announcements.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub conv: Conv,
    /// Sorted by id, no duplicates.
    messages: Vec<Msg>,
    pub pending: Vec<Pending>,
    pub unread: u32,
    /// An unread message mentions the user.
    pub mentioned: bool,
    /// Whether older messages may exist on the server (unknown counts as yes).
    pub more_history: bool,
    /// A history request is on its way.
    pub loading_older: bool,
    /// Set when the user is no longer in this room; says why.
    pub removed: Option<String>,
    /// The first message that arrived while the user was elsewhere: the "New messages"
    /// line goes above it until the user leaves the conversation.
    pub unread_from: Option<MessageId>,
    /// Who is typing here, and when they last said so.
    pub typing: Vec<(String, std::time::Instant)>,
    /// Bumped by every change except appending at the end, so a view can tell a cheap
    /// append from a change that needs a fresh layout.
    generation: u64,
}

impl Conversation {
    pub fn new(conv: Conv) -> Self {
        Self {
            conv,
            messages: Vec::new(),
            pending: Vec::new(),
            unread: 0,
            mentioned: false,
            more_history: true,
            loading_older: false,
            removed: None,
            unread_from: None,
            typing: Vec::new(),
            generation: 0,
        }
    }

    pub fn messages(&self) -> &[Msg] {
        &self.messages
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, id: MessageId) -> Option<&Msg> {
        self.messages.binary_search_by_key(&id, |m| m.id).ok().map(|i| &self.messages[i])
    }

    pub fn oldest_id(&self) -> Option<MessageId> {
        self.messages.first().map(|m| m.id)
    }

    pub fn last_ts(&self) -> Option<Timestamp> {
        self.messages.last().map(|m| m.ts)
    }

    /// Replaces a message's content (a signature check finished). A different text
    /// means different rows, so the view lays the conversation out again.
    fn set_content(&mut self, id: MessageId, content: Content) {
        let Ok(i) = self.messages.binary_search_by_key(&id, |m| m.id) else { return };
        if self.messages[i].content.text() != content.text() {
            self.generation += 1;
        }
        self.messages[i].content = content;
    }

    /// Changes a message's meta; lays the conversation out again when its rows change.
    fn update_meta(&mut self, id: MessageId, f: impl FnOnce(&mut Meta)) -> bool {
        let Ok(i) = self.messages.binary_search_by_key(&id, |m| m.id) else { return false };
        let before = self.messages[i].meta.clone();
        f(&mut self.messages[i].meta);
        let after = &self.messages[i].meta;
        if before.has_footer() != after.has_footer() || before.reply_to != after.reply_to {
            self.generation += 1;
        }
        true
    }

    /// The people typing here now (not counting those whose last word is older than
    /// [`classchat_wire::TYPING_SHOW_MS`]).
    pub fn typing_now(&self, now: std::time::Instant) -> Vec<&str> {
        let show = std::time::Duration::from_millis(classchat_wire::TYPING_SHOW_MS);
        self.typing.iter().filter(|(_, at)| now.duration_since(*at) < show).map(|(u, _)| u.as_str()).collect()
    }

    /// The position of message `id` among [`Conversation::messages`].
    pub fn index_of(&self, id: MessageId) -> Option<usize> {
        self.messages.binary_search_by_key(&id, |m| m.id).ok()
    }

    /// Inserts in id order. Returns false for a message already present.
    pub fn insert(&mut self, msg: Msg) -> bool {
        match self.messages.last() {
            None => self.messages.push(msg),
            Some(last) if last.id < msg.id => self.messages.push(msg),
            Some(_) => match self.messages.binary_search_by_key(&msg.id, |m| m.id) {
                Ok(_) => return false,
                Err(at) => {
                    self.messages.insert(at, msg);
                    self.generation += 1;
                }
            },
        }
        true
    }
}

/// Everything the app knows.
#[derive(Debug, Default)]
pub struct Model {
    pub me: Option<Me>,
    conversations: BTreeMap<Conv, Conversation>,
    /// Rooms the user is a member of, by name.
    pub rooms: BTreeMap<String, RoomInfo>,
    /// Every room on the server, as last listed (the browse dialog).
    pub directory: Vec<RoomInfo>,
    /// Members of rooms, by room name, as last listed and kept up to date by room events.
    pub members: HashMap<String, Vec<Member>>,
    /// Everyone known to the server, by lowercase name.
    pub users: BTreeMap<String, UserInfo>,
    pub current: Option<Conv>,
    /// What is known about each DM contact's key, by lowercase name.
    pub peers: HashMap<String, PeerInfo>,
    /// The user's own key for direct messages.
    pub key_status: Option<KeyStatus>,
    next_local_id: u64,
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn my_name(&self) -> Option<&str> {
        self.me.as_ref().map(|m| m.name.as_str())
    }

    pub fn is_me(&self, name: &str) -> bool {
        self.my_name().is_some_and(|me| me.eq_ignore_ascii_case(name))
    }

    pub fn conversation(&self, conv: &Conv) -> Option<&Conversation> {
        self.conversations.get(conv)
    }

    pub fn conversation_mut(&mut self, conv: &Conv) -> &mut Conversation {
        self.conversations.entry(conv.clone()).or_insert_with(|| Conversation::new(conv.clone()))
    }

    pub fn current_conversation(&self) -> Option<&Conversation> {
        self.current.as_ref().and_then(|c| self.conversations.get(c))
    }

    /// The sidebar order: rooms by name, then DMs by name, then the announcements.
    pub fn ordered_conversations(&self) -> Vec<Conv> {
        // `Conv`'s derived order is exactly that: variants in declaration order, then name.
        self.conversations.keys().cloned().collect()
    }

    pub fn total_unread(&self) -> u32 {
        self.conversations.values().map(|c| c.unread).sum()
    }

    /// May the user moderate `room`? Its admin may, and so may server admins (in any room).
    pub fn is_room_admin(&self, room: &str) -> bool {
        self.me.as_ref().is_some_and(|m| m.server_admin)
            || self.rooms.get(room).is_some_and(|r| self.is_me(&r.admin))
    }

    /// A fresh login (or a resume after a reconnect).
    pub fn on_welcome(&mut self, welcome: &Welcome) {
        let same_user = self.is_me(&welcome.user);
        if !same_user {
            *self = Model { next_local_id: self.next_local_id, ..Model::default() };
        }
        self.me = Some(Me {
            name: welcome.user.clone(),
            server_name: welcome.server_name.clone(),
            server_admin: welcome.server_admin,
            can_broadcast: welcome.can_broadcast,
            limits: welcome.limits,
        });
        let joined: BTreeMap<String, RoomInfo> =
            welcome.rooms.iter().map(|r| (r.name.clone(), r.clone())).collect();
        // Rooms we were in before the reconnect but are not any more: say so.
        for name in self.rooms.keys() {
            if !joined.contains_key(name)
                && let Some(c) = self.conversations.get_mut(&Conv::room(name.as_str()))
            {
                c.removed.get_or_insert_with(|| "You are no longer a member of this room.".into());
            }
        }
        for name in joined.keys() {
            let c = self.conversation_mut(&Conv::room(name.as_str()));
            c.removed = None;
        }
        self.rooms = joined;
        // Always listed, so broadcasts from before this login can be read in its history.
        self.conversation_mut(&Conv::Announcements);
        if let Some(me) = self.my_name().map(str::to_owned) {
            let key = me.to_ascii_lowercase();
            let server_admin = welcome.server_admin;
            self.users.insert(key, UserInfo { name: me, online: true, server_admin });
        }
        let current_ok = self.current.as_ref().is_some_and(|c| self.conversations.contains_key(c));
        if !current_ok {
            let lobby = Conv::room(classchat_wire::DEFAULT_ROOM);
            self.current = if self.conversations.contains_key(&lobby) {
                Some(lobby)
            } else {
                self.conversations.keys().next().cloned()
            };
        }
    }

    /// A file offered in the DM `conv`: unread there unless it is open.
    pub fn on_offer(&mut self, conv: &Conv) {
        let is_current = self.current.as_ref() == Some(conv);
        let c = self.conversation_mut(conv);
        if !is_current {
            c.unread += 1;
        }
    }

    /// Switches to `conv` (creating it, e.g. a new DM) and marks it read.
    pub fn select(&mut self, conv: Conv) {
        if let Some(prev) = self.current.clone()
            && prev != conv
            && let Some(p) = self.conversations.get_mut(&prev)
        {
            p.unread_from = None;
        }
        let c = self.conversation_mut(&conv);
        c.unread = 0;
        c.mentioned = false;
        self.current = Some(conv);
    }

    /// A message from the server. Returns a notice when it is worth telling the user
    /// about (a DM, a mention, an announcement) and it is new.
    pub fn on_message(&mut self, message: ChatMessage, source: Source) -> Option<Notice> {
        let conv = message.conv.clone();
        let meta = Meta::of(&message);
        let content = match (&conv, message.body) {
            (_, Body::System { event }) => {
                // Old events from a history page must not undo newer state.
                if source != Source::History {
                    self.apply_system_event(&conv, &message.from, &event);
                }
                Content::System(system_text(&message.from, &event))
            }
            (Conv::Announcements, Body::Text { text }) => Content::Announcement(text),
            (_, Body::Text { text }) => Content::Text(text),
            // Direct messages reach the model opened, through `on_dm`; anything opaque
            // that did not is not shown.
            (_, Body::Opaque { .. }) => Content::Unreadable(format!("{UNVERIFIED}.")),
            (_, Body::File { file }) => Content::File(Box::new(file)),
            (_, Body::Deleted { by, .. }) => Content::Deleted(deleted_text(&message.from, &by)),
        };
        self.add(conv, Msg { id: message.id, from: message.from, ts: message.ts, content, meta }, source)
    }

    /// A direct message the E2E engine opened.
    pub fn on_dm(&mut self, conv: Conv, msg: Msg, source: Source) -> Option<Notice> {
        self.add(conv, msg, source)
    }

    /// A page of older direct messages, opened.
    pub fn on_dm_history(&mut self, conv: &Conv, msgs: Vec<(Conv, Msg)>, more: bool) {
        for (c, m) in msgs {
            if &c == conv {
                self.add(c, m, Source::History);
            }
        }
        let c = self.conversation_mut(conv);
        c.more_history = more;
        c.loading_older = false;
        c.generation += 1;
    }

    /// The signature checks of these messages, not asked for yet; they are marked as
    /// asked for so each runs once.
    pub fn take_checks(&mut self, conv: &Conv, ids: &[MessageId]) -> Vec<(MessageId, Arc<PendingCheck>)> {
        let Some(c) = self.conversations.get_mut(conv) else { return Vec::new() };
        let mut out = Vec::new();
        for id in ids {
            if let Ok(i) = c.messages.binary_search_by_key(id, |m| m.id)
                && let Content::Sealed { check, requested, .. } = &mut c.messages[i].content
                && !*requested
            {
                *requested = true;
                out.push((*id, Arc::clone(check)));
            }
        }
        out
    }

    /// Signature checks finished: verified messages show their text, the others say
    /// they could not be verified.
    pub fn on_verified(&mut self, conv: &Conv, results: Vec<(MessageId, bool)>) {
        let Some(c) = self.conversations.get_mut(conv) else { return };
        for (id, ok) in results {
            let Some(Content::Sealed { text, .. }) = c.get(id).map(|m| &m.content) else { continue };
            let content = if ok {
                Content::Text(text.clone())
            } else {
                Content::Unreadable(format!("{UNVERIFIED} (bad signature)."))
            };
            c.set_content(id, content);
        }
    }

    /// The connection dropped before checks came back: ask again when shown.
    pub fn reset_checks(&mut self) {
        for c in self.conversations.values_mut() {
            for m in &mut c.messages {
                if let Content::Sealed { requested, .. } = &mut m.content {
                    *requested = false;
                }
            }
        }
    }

    /// Forgets a conversation's messages so they load again (after accepting a new key,
    /// messages signed with it can now be checked).
    pub fn reload(&mut self, conv: &Conv) {
        if let Some(c) = self.conversations.get_mut(conv) {
            c.messages.clear();
            c.more_history = true;
            c.loading_older = false;
            c.generation += 1;
        }
    }

    /// Is there a DM conversation with `user` (in any letter case)?
    pub fn conversations_has_dm(&self, user: &str) -> bool {
        self.conversations
            .keys()
            .any(|c| matches!(c, Conv::Direct { user: u } if u.eq_ignore_ascii_case(user)))
    }

    pub fn peer(&self, name: &str) -> Option<&PeerInfo> {
        self.peers.get(&name.to_ascii_lowercase())
    }

    fn add(&mut self, conv: Conv, msg: Msg, source: Source) -> Option<Notice> {
        let me = self.my_name().unwrap_or_default().to_owned();
        let content = &msg.content;
        let from_me = msg.from.eq_ignore_ascii_case(&me);
        let is_current = self.current.as_ref() == Some(&conv);
        // An unverified DM's text is not shown anywhere, notifications included.
        let text = match content {
            Content::Sealed { .. } => "(new direct message)".to_owned(),
            other => other.text().to_owned(),
        };
        let counts = !from_me && !matches!(content, Content::System(_)) && source != Source::History;
        let mention = counts && matches!(content, Content::Text(_)) && mentions(&text, &me);
        let from = msg.from.clone();
        let id = msg.id;
        let c = self.conversation_mut(&conv);
        if !c.insert(msg) {
            return None;
        }
        if source != Source::History {
            c.typing.retain(|(u, _)| !u.eq_ignore_ascii_case(&from));
        }
        if from_me && source == Source::Live {
            c.unread_from = None;
        }
        if !counts {
            return None;
        }
        if !is_current {
            c.unread += 1;
            c.mentioned |= mention;
            c.unread_from.get_or_insert(id);
        }
        let reason = match conv {
            Conv::Direct { .. } => NoticeReason::DirectMessage,
            Conv::Announcements => NoticeReason::Announcement,
            Conv::Room { .. } if mention => NoticeReason::Mention,
            Conv::Room { .. } => return None,
        };
        Some(Notice { conv, from, text, reason })
    }

    /// A page of older messages (newest first, as the server sends them).
    pub fn on_history(&mut self, conv: &Conv, messages: Vec<ChatMessage>, more: bool) {
        for m in messages {
            if &m.conv == conv {
                self.on_message(m, Source::History);
            }
        }
        let c = self.conversation_mut(conv);
        c.more_history = more;
        c.loading_older = false;
        c.generation += 1;
    }

    /// Keeps rooms and member lists in step with room events as they happen (live or
    /// caught up after a reconnect, both in order), so the member list need not be
    /// fetched again after every join.
    fn apply_system_event(&mut self, conv: &Conv, from: &str, event: &SystemEvent) {
        let Conv::Room { name: room } = conv else { return };
        match event {
            SystemEvent::Joined => {
                let instructor = self.users.get(&from.to_ascii_lowercase()).is_some_and(|u| u.server_admin);
                if let Some(members) = self.members.get_mut(room)
                    && !members.iter().any(|m| m.name.eq_ignore_ascii_case(from))
                {
                    members.push(Member {
                        name: from.to_owned(),
                        online: true,
                        admin: false,
                        instructor,
                        muted: false,
                        muted_until: None,
                    });
                    members.sort_by_key(|m| m.name.to_ascii_lowercase());
                }
            }
            SystemEvent::Left => {
                if let Some(members) = self.members.get_mut(room) {
                    members.retain(|m| !m.name.eq_ignore_ascii_case(from));
                }
            }
            SystemEvent::Kicked { user } | SystemEvent::Banned { user } => {
                if let Some(members) = self.members.get_mut(room) {
                    members.retain(|m| !m.name.eq_ignore_ascii_case(user));
                }
            }
            SystemEvent::AdminHandedOver { user } => {
                if let Some(members) = self.members.get_mut(room) {
                    for m in members.iter_mut() {
                        m.admin = m.name.eq_ignore_ascii_case(user);
                    }
                }
                if let Some(r) = self.rooms.get_mut(room) {
                    r.admin = user.clone();
                }
            }
            SystemEvent::Topic { topic } => {
                if let Some(r) = self.rooms.get_mut(room) {
                    r.topic = topic.clone();
                }
            }
            SystemEvent::Locked | SystemEvent::Unlocked => {
                if let Some(r) = self.rooms.get_mut(room) {
                    r.locked = matches!(event, SystemEvent::Locked);
                }
            }
            SystemEvent::Created | SystemEvent::Unbanned { .. } => {}
        }
        if let Some(r) = self.rooms.get_mut(room)
            && let Some(members) = self.members.get(room)
        {
            r.members = u32::try_from(members.len()).unwrap_or(u32::MAX);
        }
    }

    pub fn on_presence(&mut self, user: &str, online: bool) {
        let key = user.to_ascii_lowercase();
        self.users
            .entry(key)
            .or_insert_with(|| UserInfo { name: user.to_owned(), online, server_admin: false })
            .online = online;
        for members in self.members.values_mut() {
            for m in members.iter_mut().filter(|m| m.name.eq_ignore_ascii_case(user)) {
                m.online = online;
            }
        }
    }

    /// The server says we are out of `room` (kicked, banned, or the room was removed).
    pub fn on_removed(&mut self, room: &str, reason: &str) {
        self.rooms.remove(room);
        self.members.remove(room);
        let c = self.conversation_mut(&Conv::room(room));
        c.removed = Some(if reason.is_empty() {
            format!("You were removed from #{room}.")
        } else {
            format!("You were removed from #{room}: {reason}")
        });
    }

    /// We joined or created a room.
    pub fn on_joined(&mut self, room: RoomInfo) {
        let conv = Conv::room(room.name.as_str());
        self.conversation_mut(&conv).removed = None;
        if let Some(d) = self.directory.iter_mut().find(|d| d.name == room.name) {
            *d = RoomInfo { joined: true, ..room.clone() };
        }
        self.rooms.insert(room.name.clone(), room);
    }

    /// We left a room on our own: it disappears from the sidebar.
    pub fn on_left(&mut self, room: &str) {
        self.rooms.remove(room);
        self.members.remove(room);
        let conv = Conv::room(room);
        self.conversations.remove(&conv);
        if self.current.as_ref() == Some(&conv) {
            self.current = Some(Conv::room(classchat_wire::DEFAULT_ROOM));
        }
    }

    pub fn on_members(&mut self, room: &str, mut members: Vec<Member>) {
        members.sort_by_key(|m| m.name.to_ascii_lowercase());
        for m in &members {
            if let Some(u) = self.users.get_mut(&m.name.to_ascii_lowercase()) {
                u.online = m.online;
            }
        }
        if let Some(r) = self.rooms.get_mut(room) {
            r.members = u32::try_from(members.len()).unwrap_or(u32::MAX);
            if let Some(admin) = members.iter().find(|m| m.admin) {
                r.admin = admin.name.clone();
            }
        }
        self.members.insert(room.to_owned(), members);
    }

    pub fn on_users(&mut self, users: Vec<UserInfo>) {
        self.users = users.into_iter().map(|u| (u.name.to_ascii_lowercase(), u)).collect();
    }

    pub fn on_rooms(&mut self, mut rooms: Vec<RoomInfo>) {
        rooms.sort_by_key(|r| r.name.to_ascii_lowercase());
        self.directory = rooms;
    }

    /// Adds one of our own messages as pending; returns its local id for the net task.
    pub fn queue_send(&mut self, conv: &Conv, text: String, reply_to: Option<MessageId>) -> u64 {
        self.next_local_id += 1;
        let local_id = self.next_local_id;
        self.conversation_mut(conv).pending.push(Pending {
            local_id,
            text,
            state: PendingState::Sending,
            reply_to,
        });
        local_id
    }

    fn find_pending(&mut self, local_id: u64) -> Option<(Conv, usize)> {
        self.conversations.iter().find_map(|(conv, c)| {
            c.pending.iter().position(|p| p.local_id == local_id).map(|i| (conv.clone(), i))
        })
    }

    /// The server stored our message under `id`: it stops being pending.
    pub fn on_sent(&mut self, local_id: u64, id: MessageId, ts: Timestamp) {
        let Some((conv, i)) = self.find_pending(local_id) else { return };
        let me = self.my_name().unwrap_or_default().to_owned();
        let c = self.conversation_mut(&conv);
        let p = c.pending.remove(i);
        let content =
            if conv == Conv::Announcements { Content::Announcement(p.text) } else { Content::Text(p.text) };
        c.insert(Msg { id, from: me, ts, content, meta: Meta { reply_to: p.reply_to, ..Meta::default() } });
        c.unread_from = None;
    }

    pub fn on_send_failed(&mut self, local_id: u64, reason: String) {
        if let Some((conv, i)) = self.find_pending(local_id) {
            self.conversation_mut(&conv).pending[i].state = PendingState::Failed(reason);
        }
    }

    /// The user gave up on a failed message; returns its text (back into the composer).
    pub fn take_pending(&mut self, local_id: u64) -> Option<(Conv, String)> {
        let (conv, i) = self.find_pending(local_id)?;
        let p = self.conversation_mut(&conv).pending.remove(i);
        Some((conv, p.text))
    }

    /// Message `id` of `conv` was edited at `ts` and now reads `content` (a room's text, or
    /// a direct message's opened edit, `envelope` naming it).
    pub fn on_edited(
        &mut self,
        conv: &Conv,
        id: MessageId,
        content: Content,
        ts: Timestamp,
        envelope: Option<([u8; 16], u64)>,
    ) {
        let Some(c) = self.conversations.get_mut(conv) else { return };
        let Some(m) = c.get(id) else { return };
        if matches!(m.content, Content::Deleted(_)) {
            return;
        }
        // An older edit of a direct message replayed over a newer one is ignored.
        if let (Some((key, seq)), Some((old_key, old_seq))) = (envelope, m.meta.envelope)
            && key == old_key
            && seq <= old_seq
        {
            return;
        }
        let content = match (&conv, content) {
            (Conv::Announcements, Content::Text(t)) => Content::Announcement(t),
            (_, content) => content,
        };
        c.set_content(id, content);
        c.update_meta(id, |meta| {
            meta.edited = Some(ts);
            if envelope.is_some() {
                meta.envelope = envelope;
            }
        });
    }

    /// Message `id` of `conv` was deleted; `by` in words ("you", "prof", "the server").
    pub fn on_deleted(&mut self, conv: &Conv, id: MessageId, by: &str) {
        let Some(c) = self.conversations.get_mut(conv) else { return };
        let Some(from) = c.get(id).map(|m| m.from.clone()) else { return };
        c.set_content(id, Content::Deleted(deleted_text(&from, by)));
        c.update_meta(id, |meta| {
            meta.edited = None;
            meta.reactions.clear();
        });
    }

    pub fn on_reactions(&mut self, conv: &Conv, id: MessageId, reactions: Vec<Reaction>) {
        if let Some(c) = self.conversations.get_mut(conv) {
            c.update_meta(id, |meta| meta.reactions = reactions);
        }
    }

    /// `user` is typing in `conv` (ourselves on another device does not count).
    pub fn on_typing(&mut self, conv: &Conv, user: &str, now: std::time::Instant) {
        if self.is_me(user) {
            return;
        }
        let c = self.conversation_mut(conv);
        c.typing.retain(|(u, _)| !u.eq_ignore_ascii_case(user));
        c.typing.push((user.to_owned(), now));
    }

    /// The connection dropped (or came back): every message still on its way waits.
    pub fn set_in_flight_state(&mut self, online: bool) {
        for c in self.conversations.values_mut() {
            for p in &mut c.pending {
                match (&p.state, online) {
                    (PendingState::Sending, false) => p.state = PendingState::WaitingForConnection,
                    (PendingState::WaitingForConnection, true) => p.state = PendingState::Sending,
                    _ => {}
                }
            }
        }
    }

    /// Everything still pending, in the order it was sent (for the quit warning).
    pub fn pending_count(&self) -> usize {
        self.conversations.values().map(|c| c.pending.len()).sum()
    }
}

/// "This message was deleted" in words: by its sender, or by someone else.
pub fn deleted_text(from: &str, by: &str) -> String {
    if by.eq_ignore_ascii_case(from) {
        "This message was deleted.".to_owned()
    } else {
        format!("This message was deleted by {by}.")
    }
}

/// A room event in words.
pub fn system_text(from: &str, event: &SystemEvent) -> String {
    match event {
        SystemEvent::Created => format!("{from} created the room"),
        SystemEvent::Joined => format!("{from} joined"),
        SystemEvent::Left => format!("{from} left"),
        SystemEvent::Kicked { user } => format!("{user} was removed by {from}"),
        SystemEvent::Banned { user } => format!("{user} was banned by {from}"),
        SystemEvent::Unbanned { user } => format!("{from} lifted the ban on {user}"),
        SystemEvent::Topic { topic } if topic.is_empty() => format!("{from} cleared the topic"),
        SystemEvent::Topic { topic } => format!("{from} set the topic: {topic}"),
        SystemEvent::Locked => format!("{from} set a room password"),
        SystemEvent::Unlocked => format!("{from} removed the room password"),
        SystemEvent::AdminHandedOver { user } => format!("{from} made {user} the room admin"),
    }
}

/// Does `text` mention `name` (as `@name` or as a whole word, ignoring case)?
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    text.split(|c: char| !is_name_char(c))
        .map(|word| word.trim_end_matches(['.', '-']))
        .any(|word| word.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use classchat_wire::Limits;

    fn welcome(user: &str, rooms: &[&str]) -> Welcome {
        Welcome {
            user: user.into(),
            server_name: "Lab".into(),
            resume_token: vec![1; 32],
            server_admin: false,
            can_broadcast: false,
            rooms: rooms.iter().map(|r| room(r, "alice")).collect(),
            dm_peers: Vec::new(),
            limits: Limits {
                max_message_len: 16384,
                max_frame_len: 1 << 20,
                messages_per_second: 20,
                heartbeat_timeout_ms: 30000,
                max_file_size: 0,
            },
            class: Default::default(),
            room_records: false,
        }
    }

    fn member(name: &str, online: bool, admin: bool) -> Member {
        Member { name: name.into(), online, admin, instructor: false, muted: false, muted_until: None }
    }

    fn room(name: &str, admin: &str) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            topic: String::new(),
            members: 1,
            locked: false,
            admin: admin.into(),
            joined: true,
            settings: Default::default(),
        }
    }

    fn text(id: MessageId, conv: Conv, from: &str, t: &str) -> ChatMessage {
        ChatMessage {
            id,
            conv,
            from: from.into(),
            ts: id * 1000,
            body: Body::Text { text: t.into() },
            reply_to: None,
            edited: None,
            reactions: Vec::new(),
        }
    }

    fn texts(model: &Model, conv: &Conv) -> Vec<String> {
        model
            .conversation(conv)
            .map(|c| c.messages().iter().map(|m| m.content.text().to_owned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn welcome_selects_the_lobby_and_lists_rooms() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby", "lab"]));
        assert_eq!(m.current, Some(Conv::room("lobby")));
        assert_eq!(
            m.ordered_conversations(),
            vec![Conv::room("lab"), Conv::room("lobby"), Conv::Announcements]
        );
        assert!(m.is_room_admin("lab"));
        assert!(m.is_me("ALICE"));
    }

    #[test]
    fn messages_are_deduplicated_and_kept_in_id_order() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby"]));
        let lobby = Conv::room("lobby");
        m.on_message(text(5, lobby.clone(), "bob", "five"), Source::Live);
        m.on_message(text(7, lobby.clone(), "bob", "seven"), Source::Live);
        // Catch-up after a reconnect repeats one and fills a gap.
        m.on_message(text(7, lobby.clone(), "bob", "seven"), Source::CatchUp);
        m.on_message(text(6, lobby.clone(), "bob", "six"), Source::CatchUp);
        // History overlaps too.
        m.on_history(
            &lobby,
            vec![text(6, lobby.clone(), "bob", "six"), text(2, lobby.clone(), "bob", "two")],
            false,
        );
        assert_eq!(texts(&m, &lobby), ["two", "five", "six", "seven"]);
        let c = m.conversation(&lobby).expect("lobby");
        assert!(!c.more_history);
        assert_eq!(c.get(6).map(|x| x.from.as_str()), Some("bob"));
    }

    #[test]
    fn generation_changes_only_when_not_appending() {
        let mut c = Conversation::new(Conv::room("x"));
        let msg = |id: MessageId| Msg::new(id, "a", id, Content::Text(id.to_string()));
        assert!(c.insert(msg(1)));
        assert!(c.insert(msg(3)));
        assert_eq!(c.generation(), 0);
        assert!(c.insert(msg(2)));
        assert_eq!(c.generation(), 1);
        assert!(!c.insert(msg(2)));
        assert_eq!(c.messages().iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn unread_counts_rise_elsewhere_and_reset_on_select() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby", "lab"]));
        let lab = Conv::room("lab");
        m.on_message(text(1, lab.clone(), "bob", "hi"), Source::Live);
        m.on_message(text(2, lab.clone(), "bob", "hello @alice"), Source::CatchUp);
        m.on_message(text(3, lab.clone(), "alice", "my own"), Source::Live);
        m.on_message(text(4, Conv::room("lobby"), "bob", "in the current room"), Source::Live);
        m.on_history(&lab, vec![text(0, lab.clone(), "bob", "old")], true);
        let c = m.conversation(&lab).expect("lab");
        assert_eq!(c.unread, 2);
        assert!(c.mentioned);
        assert_eq!(m.conversation(&Conv::room("lobby")).map(|c| c.unread), Some(0));
        m.select(lab.clone());
        assert_eq!(m.conversation(&lab).map(|c| c.unread), Some(0));
        assert_eq!(m.total_unread(), 0);
    }

    #[test]
    fn notices_for_dms_mentions_and_announcements_only() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby"]));
        let lobby = Conv::room("lobby");
        assert_eq!(m.on_message(text(1, lobby.clone(), "bob", "plain"), Source::Live), None);
        let n = m.on_message(text(2, lobby.clone(), "bob", "Alice, look"), Source::Live).expect("mention");
        assert_eq!(n.reason, NoticeReason::Mention);
        let dm = Msg::new(3, "bob", 3, Content::Text("psst".into()));
        let n = m.on_dm(Conv::direct("bob"), dm.clone(), Source::Live).expect("dm");
        assert_eq!((n.reason, n.text.as_str()), (NoticeReason::DirectMessage, "psst"));
        assert_eq!(m.on_dm(Conv::direct("bob"), dm, Source::Live), None, "a duplicate is not news");
        // Opaque bytes that did not go through the E2E engine are never shown as text.
        let raw = ChatMessage {
            id: 5,
            conv: Conv::direct("bob"),
            from: "bob".into(),
            ts: 5,
            body: Body::Opaque { data: b"\x00plain".to_vec() },
            reply_to: None,
            edited: None,
            reactions: Vec::new(),
        };
        m.on_message(raw, Source::Live);
        let shown = m.conversation(&Conv::direct("bob")).and_then(|c| c.get(5)).map(|m| m.content.clone());
        assert!(matches!(shown, Some(Content::Unreadable(t)) if t.contains("could not be verified")));
        let n = m.on_message(text(4, Conv::Announcements, "prof", "exam moved"), Source::Live).expect("ann");
        assert_eq!(n.reason, NoticeReason::Announcement);
        assert!(matches!(
            m.conversation(&Conv::Announcements).map(|c| &c.messages()[0].content),
            Some(Content::Announcement(_))
        ));
    }

    #[test]
    fn pending_messages_become_messages_when_acknowledged() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby"]));
        let lobby = Conv::room("lobby");
        let a = m.queue_send(&lobby, "first".into(), None);
        let b = m.queue_send(&lobby, "second".into(), None);
        m.set_in_flight_state(false);
        let c = m.conversation(&lobby).expect("lobby");
        assert!(c.pending.iter().all(|p| p.state == PendingState::WaitingForConnection));
        m.set_in_flight_state(true);
        m.on_sent(a, 10, 10_000);
        // The server's own copy of the message arrives too: no duplicate.
        m.on_message(text(10, lobby.clone(), "alice", "first"), Source::Live);
        m.on_send_failed(b, "too long".into());
        let c = m.conversation(&lobby).expect("lobby");
        assert_eq!(texts(&m, &lobby), ["first"]);
        assert_eq!(c.pending.len(), 1);
        assert_eq!(c.pending[0].state, PendingState::Failed("too long".into()));
        assert_eq!(m.take_pending(b), Some((lobby.clone(), "second".into())));
        assert_eq!(m.pending_count(), 0);
    }

    #[test]
    fn room_events_update_members_and_room_info() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby", "lab"]));
        m.on_members("lab", vec![member("alice", true, true), member("carol", false, false)]);
        let lab = Conv::room("lab");
        let sys = |id, from: &str, event| ChatMessage {
            id,
            conv: lab.clone(),
            from: from.into(),
            ts: id,
            body: Body::System { event },
            reply_to: None,
            edited: None,
            reactions: Vec::new(),
        };
        m.on_message(sys(1, "bob", SystemEvent::Joined), Source::Live);
        m.on_presence("carol", true);
        m.on_message(sys(2, "alice", SystemEvent::Topic { topic: "optics".into() }), Source::Live);
        m.on_message(sys(3, "alice", SystemEvent::AdminHandedOver { user: "bob".into() }), Source::Live);
        m.on_message(sys(4, "bob", SystemEvent::Kicked { user: "carol".into() }), Source::Live);
        let names: Vec<_> = m.members["lab"].iter().map(|x| (x.name.as_str(), x.admin)).collect();
        assert_eq!(names, [("alice", false), ("bob", true)]);
        assert_eq!(m.rooms["lab"].topic, "optics");
        assert_eq!(m.rooms["lab"].members, 2);
        assert!(!m.is_room_admin("lab"));
        assert_eq!(texts(&m, &lab)[3], "carol was removed by bob");
        assert_eq!(m.conversation(&lab).map(|c| c.unread), Some(0), "room events are not unread messages");
    }

    #[test]
    fn removal_is_remembered_and_leaving_drops_the_room() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby", "lab", "art"]));
        m.on_removed("lab", "kicked by bob");
        assert!(!m.rooms.contains_key("lab"));
        let removed = m.conversation(&Conv::room("lab")).and_then(|c| c.removed.clone());
        assert_eq!(removed.as_deref(), Some("You were removed from #lab: kicked by bob"));
        m.select(Conv::room("art"));
        m.on_left("art");
        assert_eq!(m.current, Some(Conv::room("lobby")));
        assert!(m.conversation(&Conv::room("art")).is_none());
        // A resume whose room list lacks a room marks it as removed too.
        m.on_welcome(&welcome("alice", &["lobby"]));
        assert!(m.conversation(&Conv::room("lab")).is_some_and(|c| c.removed.is_some()));
    }

    #[test]
    fn another_user_starts_from_scratch() {
        let mut m = Model::new();
        m.on_welcome(&welcome("alice", &["lobby", "lab"]));
        m.on_message(text(1, Conv::room("lab"), "bob", "hi"), Source::Live);
        m.on_welcome(&welcome("bob", &["lobby"]));
        assert!(m.conversation(&Conv::room("lab")).is_none());
        assert_eq!(m.my_name(), Some("bob"));
    }

    #[test]
    fn mentions_match_whole_names_only() {
        assert!(mentions("hey @alice!", "alice"));
        assert!(mentions("ALICE: look", "alice"));
        assert!(mentions("thanks alice.", "alice"));
        assert!(!mentions("malice aforethought", "alice"));
        assert!(!mentions("alice_b is here", "alice"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn system_lines_read_as_sentences() {
        assert_eq!(system_text("bob", &SystemEvent::Joined), "bob joined");
        assert_eq!(
            system_text("alice", &SystemEvent::Banned { user: "eve".into() }),
            "eve was banned by alice"
        );
    }
}
