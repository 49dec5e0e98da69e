//! The messages carried inside sealed frames.
//!
//! Every frame after the handshake holds exactly one [`ClientMsg`] (client to server) or
//! [`ServerMsg`] (server to client), encoded with MessagePack using named fields
//! (`rmp_serde::to_vec_named`). Enums are externally tagged: a variant with fields is a
//! one-entry map `{ "variant_name": { field: value, … } }`, a unit variant is the string
//! `"variant_name"`. PROTOCOL.md lists every message; tests there keep it honest.

use serde::{Deserialize, Serialize};

use crate::class::{
    AuditEntry, ClassStatus, ExamInfo, MuteInfo, MuteScope, Poll, PollId, Question, QuestionId, QueueEntry,
    QueuePosition, RoomSettings,
};
use crate::error::{Error, Result};
use crate::peer::proto::{PeerListener, PeerTicket, RelaySide, SearchId, SearchQuery, SharedFile};

/// Version of the protocol spoken inside the session. Sent in the handshake.
pub const PROTOCOL_VERSION: u16 = 2;

/// Chosen by the client; echoed in the one reply to that request.
pub type RequestId = u32;
/// Server-assigned message id: unique across the server and increasing with time.
pub type MessageId = u64;
/// Milliseconds since the Unix epoch, UTC, from the server's clock.
pub type Timestamp = u64;

/// Longest username, in characters. Usernames match `[A-Za-z0-9_.-]{1,32}`.
pub const MAX_USERNAME_LEN: usize = 32;
/// Longest room name, in characters. Room names match `[A-Za-z0-9_.-]{1,32}`.
pub const MAX_ROOM_NAME_LEN: usize = 32;
/// Largest `limit` a history request may ask for.
pub const MAX_HISTORY_PAGE: u32 = 200;
/// Name of the room that every user is in.
pub const DEFAULT_ROOM: &str = "lobby";
/// Server-assigned id of a stored file.
pub type FileId = u64;
/// Largest `data` of one `chunk` on a bulk connection: half the default frame limit, so
/// a chunk and its sealing overhead always fit, and big enough that per-frame costs
/// (a MAC, a syscall) vanish against the bytes moved.
pub const MAX_CHUNK_LEN: usize = 512 * 1024;
/// Longest file name, in bytes, after [`crate::files::sanitize_file_name`].
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Largest opaque `meta` of a file (direct-message files carry their encrypted name here).
pub const MAX_FILE_META_LEN: usize = 4096;
/// Length of a transfer token.
pub const TRANSFER_TOKEN_LEN: usize = 32;
/// Longest reaction emoji, in bytes (an emoji with modifiers and joiners fits).
pub const MAX_EMOJI_LEN: usize = 32;
/// Most different emoji on one message.
pub const MAX_REACTIONS: usize = 20;
/// Largest `limit` of one `SearchMessages` page.
pub const MAX_SEARCH_PAGE: u32 = 50;
/// Longest search query, in bytes.
pub const MAX_SEARCH_QUERY_LEN: usize = 256;
/// How deep search pages go: `offset + limit` of a `SearchMessages` is at most this (each
/// page costs the server the hits it skips).
pub const MAX_SEARCH_DEPTH: u32 = 1_000;
/// The server passes on at most one `Typing` per user and conversation this often.
pub const TYPING_INTERVAL_MS: u64 = 3_000;
/// How long a client shows "… is typing" after the last `Event::Typing`.
pub const TYPING_SHOW_MS: u64 = 6_000;

/// Everything a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMsg {
    /// A request; the server answers with exactly one [`ServerMsg::Ok`] or
    /// [`ServerMsg::Err`] carrying the same `id`.
    Request { id: RequestId, body: Request },
    /// Answer to [`ServerMsg::Ping`]. Any frame from the client counts as a sign of life;
    /// this one exists so an idle client has something to send.
    Pong { nonce: u64 },
    /// "This device has received every message of `conv` up to and including `up_to`."
    /// Moves the device's delivered cursor; no reply. Clients send it lazily (the
    /// reference client at most once a second per conversation).
    Ack { conv: Conv, up_to: MessageId },
    /// File bytes, on a bulk connection attached to an upload (`attach_upload`) only; the
    /// next `data.len()` bytes of the file. At most [`MAX_CHUNK_LEN`] bytes.
    Chunk {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// "This client takes room records" (PROTOCOL.md section 4.1): from now on the server
    /// may send this connection room records and the `room_key` messages that install their
    /// keys. Sent once, after a `Welcome` that offers them (`Welcome::room_records`); no
    /// reply.
    RoomRecords {},
    /// "I am typing in `conv`." No reply, never stored; the server passes it on as
    /// `Event::Typing` to the others in `conv` who are online, at most once every
    /// [`TYPING_INTERVAL_MS`] per user and conversation (more often is dropped).
    Typing { conv: Conv },
}

/// A conversation. In anything the server sends, `Direct.user` names the *other* party as
/// seen by the receiving user (for a message you sent, the recipient).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conv {
    Room {
        name: String,
    },
    Direct {
        user: String,
    },
    /// Server-wide announcements (broadcasts).
    Announcements,
}

impl Conv {
    pub fn room(name: impl Into<String>) -> Self {
        Conv::Room { name: name.into() }
    }
    pub fn direct(user: impl Into<String>) -> Self {
        Conv::Direct { user: user.into() }
    }
}

/// The requests. Each line in PROTOCOL.md shows the reply a success produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    // ---- accounts -------------------------------------------------------------------
    /// Create an account and log in. `auth_key` is [`crate::auth::auth_key`] of the
    /// password: the password itself never leaves the client. → `Welcome`.
    Register {
        username: String,
        #[serde(with = "serde_bytes")]
        auth_key: Vec<u8>,
        device: String,
    },
    /// → `Welcome`, then the catch-up messages as events, then `Event::CaughtUp`.
    Login {
        username: String,
        #[serde(with = "serde_bytes")]
        auth_key: Vec<u8>,
        device: String,
    },
    /// Log in again with the token from an earlier `Welcome`, skipping Argon2.
    /// → `Welcome` (with a fresh token; the old one stops working).
    Resume {
        username: String,
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
        device: String,
    },
    /// Forget this device's resume token and close. → `Done`.
    Logout,

    // ---- rooms ------------------------------------------------------------------------
    /// → `Rooms` (every room on the server).
    ListRooms,
    /// The caller becomes the room's admin. → `Room`.
    CreateRoom { name: String, topic: String, password: Option<String> },
    /// `password` is required for a locked room. → `Room`.
    JoinRoom { name: String, password: Option<String> },
    /// → `Done`. Refused for the admin unless they are the last member.
    LeaveRoom { name: String },
    /// → `Members`.
    RoomMembers { name: String },
    /// Room admin only. → `Done`.
    Kick { room: String, user: String },
    /// Room admin only: kick (if a member) and refuse later joins. → `Done`.
    Ban { room: String, user: String },
    /// Room admin only. → `Done`.
    Unban { room: String, user: String },
    /// Room admin only. → `Bans`.
    ListBans { room: String },
    /// Room admin only. → `Done`.
    SetTopic { room: String, topic: String },
    /// Room admin only; `None` unlocks the room. → `Done`.
    SetRoomPassword { room: String, password: Option<String> },
    /// Room admin only: make another member the admin. → `Done`.
    HandOverAdmin { room: String, user: String },

    // ---- messages ---------------------------------------------------------------------
    /// → `Sent` once the message is durable. `reply_to` names a message of the same room
    /// this one answers (absent: not a reply).
    SendRoom {
        room: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
    },
    /// Opaque bytes for one user (end-to-end encrypted by the clients). Stored for offline
    /// delivery. `reply_to` as for `SendRoom`, a message of the same DM. → `Sent`.
    SendDirect {
        to: String,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
    },
    /// To every user, stored in `Conv::Announcements`. → `Broadcast`.
    Broadcast { text: String },
    /// Messages of `conv` older than `before` (newest first when `before` is `None`),
    /// at most `limit` (≤ 200). → `History`.
    History { conv: Conv, before: Option<MessageId>, limit: u32 },
    /// Replace the text of your own message `id`. A room or announcement message takes
    /// `Body::Text`; a direct message takes `Body::Opaque` holding an envelope whose
    /// plaintext is a [`crate::e2e::DmEdit`] naming `id`. Not allowed on a deleted
    /// message. → `Done`; `Event::Edited` goes to everyone in the conversation.
    Edit { id: MessageId, body: Body },
    /// Delete message `id`: your own anywhere, any message of a room you administer, any
    /// message at all as a server admin. For your own direct message `proof` is an
    /// envelope whose plaintext is a [`crate::e2e::DmDelete`] naming `id`. → `Done`;
    /// `Event::Deleted` goes to everyone in the conversation.
    Delete {
        id: MessageId,
        #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
        proof: Option<Vec<u8>>,
    },
    /// Add (`on`) or take back your reaction `emoji` (≤ [`MAX_EMOJI_LEN`] bytes) on
    /// message `id`. At most [`MAX_REACTIONS`] different emoji per message. → `Done`;
    /// `Event::Reactions` goes to everyone in the conversation.
    React { id: MessageId, emoji: String, on: bool },
    /// Full-text search of the room and announcement messages you may read now, best
    /// match first; `room` limits it to one room. Skips the first `offset` hits, returns
    /// at most `limit` (≤ [`MAX_SEARCH_PAGE`]). → `Found`.
    SearchMessages {
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        offset: u32,
        limit: u32,
    },

    // ---- end-to-end keys (see crate::e2e) ---------------------------------------------
    /// Publish (or replace) the caller's identity key (SPKI DER, ≤ 2 KiB) and its
    /// password-sealed backup (≤ 8 KiB). → `Done`.
    PublishKey {
        #[serde(with = "serde_bytes")]
        public_key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        backup: Vec<u8>,
    },
    /// The identity key the directory holds for `user`. → `Key`.
    GetKey { user: String },
    /// The caller's own identity key and backup, to restore them on a new machine.
    /// → `Backup`.
    GetBackup,
    /// Store a signed conversation-key grant (`e2e::KeyGrant`, MessagePack, ≤ 4 KiB) for
    /// the direct conversation with `to`. → `Done`.
    PutDmKey {
        to: String,
        #[serde(with = "serde_bytes")]
        grant: Vec<u8>,
    },
    /// Every grant stored for the direct conversation with `user`, oldest first.
    /// → `DmKeys`.
    DmKeys { user: String },
    /// Change the password: `auth_key` of the current password, `new_auth_key` of the new
    /// one, and the identity-key backup re-sealed under the new password. Other devices'
    /// resume tokens are revoked. → `Done`.
    ChangePassword {
        #[serde(with = "serde_bytes")]
        auth_key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        new_auth_key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        backup: Vec<u8>,
    },

    // ---- users and presence -----------------------------------------------------------
    /// → `Users` (users online now).
    OnlineUsers,
    /// → `Users` (every account, with presence).
    ListUsers,
    /// → `Pong`.
    Ping,

    // ---- server administration (server admins only) ------------------------------------
    /// Disconnect every session of `user`. → `Done`.
    AdminKick { user: String, reason: String },
    /// Disable the account and disconnect it. → `Done`.
    AdminBan { user: String, reason: String },
    /// → `Done`.
    AdminUnban { user: String },
    /// Delete a room and its history. The default room cannot be removed. → `Done`.
    AdminRemoveRoom { name: String },

    // ---- files (PROTOCOL.md section 15) -------------------------------------------------
    /// Announce a file of `size` bytes for a room (`Conv::Room`, members only) or a user
    /// (`Conv::Direct`: an offer). Refused up front when over the size limit or a quota.
    /// `meta` is opaque to the server and handed to whoever may download the file.
    /// → `Upload` (the token to attach a bulk connection with).
    UploadFile {
        conv: Conv,
        name: String,
        size: u64,
        #[serde(with = "serde_bytes")]
        meta: Option<Vec<u8>>,
    },
    /// A token to download `file` over a bulk connection. For the recipient of a pending
    /// offer this is also an acceptance. → `Download`.
    DownloadFile { file: FileId },
    /// The recipient accepts or declines an offer; the sender hears `OfferAnswered`.
    /// Declining deletes the file. → `Done`.
    AnswerOffer { file: FileId, accept: bool },
    /// First request of a bulk connection: continue the upload of `token`. → `Attached`
    /// (how many bytes the server already has); then `Chunk`s follow.
    AttachUpload {
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
    },
    /// After the last chunk: the SHA-256 of the whole file. The server compares it with
    /// what it received and stores the file. → `File`.
    FinishUpload {
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// First request of a bulk connection: send the file of `token` from byte `offset`.
    /// The server sends `Chunk`s up to the end, then the reply: `File` (with the SHA-256
    /// of the whole file).
    AttachDownload {
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
        offset: u64,
    },

    // ---- instructor tools (PROTOCOL.md section 16) --------------------------------------
    /// Room staff: announce-only, slow mode and Q&A for `room`. → `Room`.
    SetRoomSettings { room: String, settings: RoomSettings },
    /// Room staff (`MuteScope::Room`) or instructors (`MuteScope::Server`): `user` may not
    /// post there for `secs` seconds (1 ..= `MAX_MUTE_SECS`), or until lifted when `None`.
    /// Staff cannot be muted. Muting again replaces the earlier mute. → `Done`.
    Mute { scope: MuteScope, user: String, secs: Option<u64> },
    /// Lifts a mute early. → `Done`.
    Unmute { scope: MuteScope, user: String },
    /// The mutes in force in `scope` (room staff for a room, instructors for the server).
    /// → `Mutes`.
    ListMutes { scope: MuteScope },
    /// Instructors: turn exam mode on (with the one room where students may still post)
    /// or off. Refused when it is already in that state. → `Done`.
    SetExamMode { on: bool, questions_room: Option<String> },
    /// Instructors: moderation actions, newest first, older than `before`, at most
    /// `limit` (≤ `MAX_AUDIT_PAGE`). → `Audit`.
    AuditLog { before: Option<u64>, limit: u32 },
    /// Members of a Q&A room: ask a question (anonymous hides the author from students).
    /// → `Question`.
    AskQuestion { room: String, text: String, anonymous: bool },
    /// Upvote (`up`) a question, or take the upvote back. Not your own. → `Question`.
    Upvote { question: QuestionId, up: bool },
    /// Room staff: mark a question answered (optionally linking the answering message of
    /// the same room) or not. → `Question`.
    MarkAnswered { question: QuestionId, answered: bool, answer: Option<MessageId> },
    /// The room's questions: unanswered first, then by votes, then oldest first.
    /// → `Questions`.
    Questions { room: String },
    /// Room staff: a poll of 2 ..= 10 options, closed by staff or at `closes_at`.
    /// → `Poll`.
    CreatePoll {
        room: String,
        question: String,
        options: Vec<String>,
        multiple: bool,
        anonymous: bool,
        closes_at: Option<Timestamp>,
    },
    /// Members: vote, or change your vote while the poll is open. `choices` are option
    /// indexes, distinct, exactly one unless the poll is multiple choice. → `Poll`.
    Vote { poll: PollId, choices: Vec<u32> },
    /// Room staff. → `Poll`.
    ClosePoll { poll: PollId },
    /// The room's polls, newest first. → `Polls`.
    Polls { room: String },
    /// Join the office-hours queue of `instructor`. → `Queued`.
    JoinQueue { instructor: String },
    /// Leave it. → `Done`.
    LeaveQueue { instructor: String },
    /// Instructors: your own queue, in order. → `Queue`.
    OfficeQueue,
    /// Instructors: take the first student off your queue; they hear `Called`.
    /// → `Next` (`student` is `None` when the queue is empty).
    NextInQueue,

    // ---- peer-to-peer file search and fetch (PROTOCOL.md section 17) -------------------
    /// Sharing on (`Some`: where this session's app listens for peers) or off (`None`).
    /// Only sessions with sharing on are asked in searches and can be fetched from.
    /// → `Done`.
    SetSharing { listener: Option<PeerListener> },
    /// Ask the room's other online members who share files for `query`. Answers arrive
    /// as `search_results` events, then one `search_done` at the deadline. Never stored.
    /// → `Search`.
    WhoHas { room: String, query: SearchQuery },
    /// A sharer's answer to `search_request` (at most `MAX_FILES_PER_ANSWER` files; an
    /// empty list may be sent, or nothing at all). → `Done`, also when it came too late.
    AnswerSearch { search: SearchId, files: Vec<SharedFile> },
    /// A one-time ticket to fetch the file with `sha256` from `sharer`, both members of
    /// `room`. The sharer hears `fetch_request`. → `PeerTicket`.
    PeerFetch {
        room: String,
        sharer: String,
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// The asker could not reach the sharer: ask the sharer to meet at the server, which
    /// pipes the (still end-to-end encrypted) peer connection. The sharer hears
    /// `relay_request`. → `Done`.
    PeerRelay {
        #[serde(with = "serde_bytes")]
        ticket: Vec<u8>,
    },
    /// First request of a bulk connection: one end of the relay of `ticket`. → `Done`
    /// once the other end is attached too; from then on the connection carries the raw
    /// bytes of the peer connection, piped by the server.
    AttachRelay {
        #[serde(with = "serde_bytes")]
        ticket: Vec<u8>,
        side: RelaySide,
    },
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMsg {
    /// Success reply to request `id`.
    Ok { id: RequestId, body: Response },
    /// Failure reply to request `id`. `code` is stable; `message` is for people.
    Err { id: RequestId, code: ErrorCode, message: String },
    /// Something happened; not a reply.
    Event { event: Event },
    /// Liveness probe; the client answers with `ClientMsg::Pong` echoing `nonce`.
    Ping { nonce: u64 },
    /// File bytes of a download, on a bulk connection only.
    Chunk {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

/// Success replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Done,
    Pong,
    Welcome(Welcome),
    Rooms {
        rooms: Vec<RoomInfo>,
    },
    Room {
        room: RoomInfo,
    },
    Members {
        room: String,
        members: Vec<Member>,
    },
    Bans {
        room: String,
        users: Vec<String>,
    },
    Users {
        users: Vec<UserInfo>,
    },
    /// The message is durable and has been handed out for delivery.
    Sent {
        id: MessageId,
        ts: Timestamp,
    },
    /// The broadcast is durable; `recipients` users were online to receive it.
    Broadcast {
        id: MessageId,
        ts: Timestamp,
        recipients: u32,
    },
    /// Newest first. `more` says whether older messages exist.
    History {
        conv: Conv,
        messages: Vec<ChatMessage>,
        more: bool,
    },
    /// `public_key` is `None` when the user has published none.
    Key {
        user: String,
        #[serde(with = "serde_bytes")]
        public_key: Option<Vec<u8>>,
    },
    /// The caller's own identity key and sealed backup, if published.
    Backup {
        #[serde(with = "serde_bytes")]
        public_key: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        backup: Option<Vec<u8>>,
    },
    /// Grants of the conversation with `user`, oldest first.
    DmKeys {
        user: String,
        grants: Vec<serde_bytes::ByteBuf>,
    },
    /// `UploadFile` accepted: attach a bulk connection with `token`.
    Upload {
        file: FileId,
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
    },
    /// `DownloadFile` allowed: attach a bulk connection with `token`. `file.sha256` is
    /// empty while the file is still being uploaded.
    Download {
        file: FileInfo,
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
    },
    /// `AttachUpload`: the server holds the first `offset` bytes; send the rest.
    Attached {
        offset: u64,
    },
    /// The file as stored (`FinishUpload`), or as sent (`AttachDownload`).
    File {
        file: FileInfo,
    },
    Mutes {
        mutes: Vec<MuteInfo>,
    },
    /// Newest first. `more` says whether older entries exist.
    Audit {
        entries: Vec<AuditEntry>,
        more: bool,
    },
    Question {
        question: Question,
    },
    Questions {
        room: String,
        questions: Vec<Question>,
    },
    Poll {
        poll: Poll,
    },
    Polls {
        room: String,
        polls: Vec<Poll>,
    },
    /// `JoinQueue`: where you are now.
    Queued {
        position: QueuePosition,
    },
    Queue {
        students: Vec<QueueEntry>,
    },
    Next {
        student: Option<String>,
    },
    /// `WhoHas` sent to `asked` sharers; answers come until `deadline_ms` from now.
    Search {
        search: SearchId,
        asked: u32,
        deadline_ms: u32,
    },
    /// `PeerFetch` granted.
    PeerTicket(PeerTicket),
    /// `SearchMessages`: the hits of this page, best first; `more` when another page
    /// exists.
    Found {
        hits: Vec<SearchHit>,
        more: bool,
    },
}

/// One hit of a message search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The message as it is now (latest edit).
    pub message: ChatMessage,
    /// Byte ranges `[start, end)` of the text that matched the query, in order.
    pub highlights: Vec<(u32, u32)>,
}

/// The reactions of one emoji on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    /// Who reacted, in the order they did.
    pub users: Vec<String>,
}

/// Reply to a successful `Register`, `Login` or `Resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The username as registered (its original case).
    pub user: String,
    pub server_name: String,
    /// 32 bytes; present it in `Resume` to log in again without the password.
    #[serde(with = "serde_bytes")]
    pub resume_token: Vec<u8>,
    pub server_admin: bool,
    /// Whether this user may send `Broadcast`.
    pub can_broadcast: bool,
    /// Rooms the user is a member of.
    pub rooms: Vec<RoomInfo>,
    /// Users the user has direct-message conversations with, so a client on a new
    /// machine can list them. Absent from older servers.
    #[serde(default)]
    pub dm_peers: Vec<String>,
    /// Limits the client should respect (so it can refuse early, with a clear message).
    pub limits: Limits,
    /// Exam mode, the user's mutes and queues. Absent from older servers.
    #[serde(default)]
    pub class: ClassStatus,
    /// The server sends room records (PROTOCOL.md section 4.1) to connections that answer
    /// with `ClientMsg::RoomRecords`. Absent (false) from older servers.
    #[serde(default)]
    pub room_records: bool,
}

/// A stored (or uploading) file, as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub id: FileId,
    /// The uploader, from their session.
    pub from: String,
    /// Sanitised by the server ([`crate::files::sanitize_file_name`]); never a path.
    pub name: String,
    pub size: u64,
    /// SHA-256 of the content; empty while the upload is in progress.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    /// Opaque to the server, as the uploader sent it.
    #[serde(with = "serde_bytes")]
    pub meta: Option<Vec<u8>>,
}

/// Server limits a client is told about at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest message text or direct body, in bytes.
    pub max_message_len: u32,
    /// Largest frame body, in bytes.
    pub max_frame_len: u32,
    /// Messages per second a user may send, sustained.
    pub messages_per_second: u32,
    /// The server drops a connection it has not heard from for this long.
    pub heartbeat_timeout_ms: u32,
    /// Largest file the server accepts, in bytes (0 from servers without file sharing).
    #[serde(default)]
    pub max_file_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub topic: String,
    pub members: u32,
    /// Password-protected.
    pub locked: bool,
    pub admin: String,
    /// Whether the receiving user is a member.
    pub joined: bool,
    /// Announce-only, slow mode, Q&A. Absent from older servers.
    #[serde(default)]
    pub settings: RoomSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub online: bool,
    /// The room's admin.
    pub admin: bool,
    /// A server admin. Absent from older servers.
    #[serde(default)]
    pub instructor: bool,
    /// Muted in this room or on the server; sent to the room's staff only.
    #[serde(default)]
    pub muted: bool,
    /// When that mute ends (`None` with `muted`: until lifted).
    #[serde(default)]
    pub muted_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub online: bool,
    pub server_admin: bool,
}

/// A stored message of any conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: MessageId,
    pub conv: Conv,
    /// Taken from the sender's session, never from the frame.
    pub from: String,
    pub ts: Timestamp,
    pub body: Body,
    /// The message of the same conversation this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// When the text was last edited (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<Timestamp>,
    /// Reactions, in the order their first reaction came.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
}

impl ChatMessage {
    /// A message as first sent: no reply, never edited, no reactions.
    pub fn new(id: MessageId, conv: Conv, from: impl Into<String>, ts: Timestamp, body: Body) -> Self {
        ChatMessage {
            id,
            conv,
            from: from.into(),
            ts,
            body,
            reply_to: None,
            edited: None,
            reactions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Text {
        text: String,
    },
    /// Opaque to the server (direct messages).
    Opaque {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Something that happened to a room; `from` is who did it.
    System {
        event: SystemEvent,
    },
    /// A file shared in a room; `from` uploaded it.
    File {
        file: FileInfo,
    },
    /// The message was deleted by `by` (its sender, a room admin or a server admin); its
    /// text is gone from the server. `proof`: for a direct message deleted by its sender,
    /// the envelope of a [`crate::e2e::DmDelete`] the sender signed.
    Deleted {
        by: String,
        #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
        proof: Option<Vec<u8>>,
    },
}

/// Room events; stored in the room's history so they show up in scrollback too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    Created,
    Joined,
    Left,
    Kicked { user: String },
    Banned { user: String },
    Unbanned { user: String },
    Topic { topic: String },
    Locked,
    Unlocked,
    AdminHandedOver { user: String },
}

/// Events carry no request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A new message in a conversation the user is in, or a catch-up message after login.
    Message { message: ChatMessage },
    /// Every message missed while offline has been sent.
    CaughtUp,
    /// A user who shares a room or a DM with you came online or went offline.
    Presence { user: String, online: bool },
    /// You are no longer in `room` (kicked, banned, or the room was removed).
    RemovedFromRoom { room: String, reason: String },
    /// The server is about to close this connection.
    Disconnect { reason: String },
    /// `user` (who shares a DM with you) published a different identity key. Clients
    /// warn before sending anything further to them.
    KeyChanged { user: String },
    /// `file.from` offers you a file (live, or at login while it waits on the server).
    /// Answer with `AnswerOffer`, or accept by `DownloadFile`.
    FileOffer { file: FileInfo },
    /// `user` accepted or declined your offer of `file`.
    OfferAnswered { file: FileId, user: String, accepted: bool },
    /// The settings of `room` (which you are in) changed.
    RoomSettings { room: String, settings: RoomSettings },
    /// You were muted (`muted`, until `until`, `None`: until lifted) or unmuted in
    /// `scope` by `by`. A timed mute ends by itself at `until` with no event.
    MuteChanged { scope: MuteScope, muted: bool, until: Option<Timestamp>, by: String },
    /// Exam mode was turned on (`Some`) or off (`None`). Sent to every session.
    ExamMode { exam: Option<ExamInfo> },
    /// A question of a room you are in was asked or changed (as you may see it).
    Question { question: Question },
    /// A poll of a room you are in was created, voted on or closed (as you may see it).
    Poll { poll: Poll },
    /// Your office-hours queue changed (instructors).
    QueueChanged { students: Vec<QueueEntry> },
    /// Your place in `instructor`'s queue moved; `None` when you are no longer in it.
    QueueMoved { instructor: String, position: Option<u32> },
    /// `instructor` took you off their queue and is ready for you (a DM follows).
    Called { instructor: String },
    /// To sharers: `from` in `room` looks for `query`; answer with `AnswerSearch` within
    /// the deadline, or not at all.
    SearchRequest { search: SearchId, from: String, room: String, query: SearchQuery },
    /// Message `id` of `conv` was edited at `ts`; `body` is its new text (`Body::Text`),
    /// or for a direct message the sender's envelope of a [`crate::e2e::DmEdit`].
    Edited { conv: Conv, id: MessageId, body: Body, ts: Timestamp },
    /// Message `id` of `conv` was deleted by `by`; `proof` as in [`Body::Deleted`].
    Deleted {
        conv: Conv,
        id: MessageId,
        by: String,
        #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
        proof: Option<Vec<u8>>,
    },
    /// The reactions on message `id` of `conv` are now `reactions` (the whole list).
    Reactions { conv: Conv, id: MessageId, reactions: Vec<Reaction> },
    /// `user` is typing in `conv` (for a direct message, `conv` names `user`). Show it
    /// for about [`TYPING_SHOW_MS`] unless another comes or their message arrives.
    Typing { conv: Conv, user: String },
    /// To the asker: `from` shares these files matching search `search`.
    SearchResults { search: SearchId, from: String, files: Vec<SharedFile> },
    /// To the asker: the search's deadline passed; `answered` sharers sent `results` files
    /// in all; `truncated` when the server dropped some over its caps.
    SearchDone { search: SearchId, answered: u32, results: u32, truncated: bool },
    /// To a sharer: `asker` (a member of `room`) holds `ticket` to fetch the file with
    /// `sha256` from you; accept it once, within `expires_in_ms` from now.
    FetchRequest {
        #[serde(with = "serde_bytes")]
        ticket: Vec<u8>,
        asker: String,
        room: String,
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
        expires_in_ms: u32,
    },
    /// To a sharer: the asker of `ticket` cannot reach you; attach to the server's relay
    /// (`AttachRelay` with side `sharer`) and serve the peer connection through it.
    RelayRequest {
        #[serde(with = "serde_bytes")]
        ticket: Vec<u8>,
    },
}

/// Stable error codes. Encoded as snake_case strings; new codes may be added, so a client
/// must treat an unknown code like `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a field is out of range.
    BadRequest,
    /// The request needs a logged-in session.
    NotLoggedIn,
    /// Register/Login/Resume on a session that is already logged in.
    AlreadyLoggedIn,
    InvalidUsername,
    UsernameTaken,
    /// Unknown user or wrong password (deliberately not told apart).
    BadCredentials,
    /// The resume token is unknown or was replaced.
    BadToken,
    /// Too many failed logins for this account or address; try later.
    Throttled,
    /// Too many messages; slow down.
    RateLimited,
    /// The account is banned from the server.
    AccountBanned,
    NoSuchUser,
    NoSuchRoom,
    RoomExists,
    InvalidRoomName,
    NotMember,
    AlreadyMember,
    /// Wrong or missing room password.
    WrongPassword,
    /// Banned from this room.
    Banned,
    NotRoomAdmin,
    NotServerAdmin,
    /// The room admin must hand over the role before leaving.
    AdminMustHandOver,
    /// Message, topic or password too long.
    TooLong,
    TooManyRooms,
    /// Allowed in general but not for you or not now (e.g. broadcast disabled).
    Forbidden,
    /// The server is shutting down.
    ShuttingDown,
    /// The file is over the server's size limit.
    FileTooLarge,
    /// The file would take the user, or the server, over its storage quota.
    QuotaExceeded,
    /// No such file, or not one you may download (or it expired or was removed).
    NoSuchFile,
    /// The transfer token is unknown, expired, or its upload is finished.
    NoSuchTransfer,
    /// The uploaded bytes do not have the SHA-256 the uploader announced; nothing was kept.
    HashMismatch,
    /// You are muted here; the message says until when.
    Muted,
    /// Slow mode: the message says how many seconds to wait.
    SlowMode,
    /// Only staff post here (an announce-only room, or exam mode).
    ReadOnly,
    /// Exam mode forbids this (direct messages between students, files).
    ExamMode,
    NoSuchQuestion,
    NoSuchPoll,
    /// The poll is closed.
    PollClosed,
    /// You already did that (upvoted this question, joined this queue).
    AlreadyDone,
    /// That user is not online with sharing on (peer-to-peer fetch).
    NotSharing,
    /// No such message, or not one you can see.
    NoSuchMessage,
    /// Only its sender may edit a message; deleting someone else's needs a room or
    /// server admin.
    NotYourMessage,
    /// The message was deleted, so it cannot be edited or reacted to.
    MessageDeleted,
    /// The server cannot save right now (a node of a cluster that lost its database or
    /// its bus); nothing was saved, and the same request may succeed in a moment.
    Unavailable,
    /// Anything else; the message says what. A code this build does not know decodes as
    /// `Internal`, so a newer server's codes do not break older clients.
    #[serde(other)]
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::BadToken => "bad_token",
            ErrorCode::Throttled => "throttled",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AccountBanned => "account_banned",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::InvalidRoomName => "invalid_room_name",
            ErrorCode::NotMember => "not_member",
            ErrorCode::AlreadyMember => "already_member",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::Banned => "banned",
            ErrorCode::NotRoomAdmin => "not_room_admin",
            ErrorCode::NotServerAdmin => "not_server_admin",
            ErrorCode::AdminMustHandOver => "admin_must_hand_over",
            ErrorCode::TooLong => "too_long",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::NoSuchFile => "no_such_file",
            ErrorCode::NoSuchTransfer => "no_such_transfer",
            ErrorCode::HashMismatch => "hash_mismatch",
            ErrorCode::Muted => "muted",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::ExamMode => "exam_mode",
            ErrorCode::NoSuchQuestion => "no_such_question",
            ErrorCode::NoSuchPoll => "no_such_poll",
            ErrorCode::PollClosed => "poll_closed",
            ErrorCode::AlreadyDone => "already_done",
            ErrorCode::NotSharing => "not_sharing",
            ErrorCode::NoSuchMessage => "no_such_message",
            ErrorCode::NotYourMessage => "not_your_message",
            ErrorCode::MessageDeleted => "message_deleted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `name` is a valid username or room name: 1–32 of `[A-Za-z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_USERNAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Encodes a message as MessagePack with named fields.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(msg)?)
}

/// Deepest nesting of maps and arrays a received message may have. The deepest real
/// message nests about ten; the decoder recurses once per level (also to skip a value under
/// a key it does not know), and at rmp-serde's own limit of 1024 a hostile 200 KB message
/// overflowed a 2 MiB thread stack in a debug build and aborted the whole process.
pub const MAX_NESTING: usize = 64;

/// Decodes a MessagePack message.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_NESTING);
    Ok(T::deserialize(&mut de)?)
}

/// Decodes the first of the messages packed back to back in `bytes` (a sealed frame's
/// plaintext, PROTOCOL.md section 4): the message and how many bytes it took.
pub fn decode_first<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, usize)> {
    // Finding the end first lets the message be decoded from a borrowed slice: decoding
    // through `io::Read` (which reports how much it took) copied every string and byte
    // string through a scratch buffer, and cost a fan-out receiver ~15% of its time.
    let len = value_len(bytes)?;
    Ok((decode(&bytes[..len])?, len))
}

/// The length of the MessagePack value at the start of `bytes`, found from its markers and
/// length fields alone. Fails if `bytes` ends inside it or it uses the never-used marker
/// `0xc1`. Work and memory are bounded by `bytes.len()`: every value takes at least a
/// byte, so a container announcing more elements than bytes remain fails at once.
pub fn value_len(bytes: &[u8]) -> Result<usize> {
    let truncated = || malformed("a message ends early");
    let mut pos = 0usize;
    // Values still to skip.
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let marker = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        // (bytes of length field, bytes of fixed data, elements per length unit): a value's
        // length field counts bytes when elements is 0, else elements (2 per map entry). The
        // forms messages are mostly made of (fixints, fixmaps, fixarrays, fixstrs) are
        // skipped in their own arms, without that bookkeeping.
        let (len_bytes, fixed, per): (usize, usize, usize) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => continue,
            0x80..=0x8f => {
                pending = add_pending(pending, 2 * usize::from(marker & 0x0f), bytes.len() - pos)?;
                continue;
            }
            0x90..=0x9f => {
                pending = add_pending(pending, usize::from(marker & 0x0f), bytes.len() - pos)?;
                continue;
            }
            0xa0..=0xbf => {
                pos += usize::from(marker & 0x1f);
                if pos > bytes.len() {
                    return Err(truncated());
                }
                continue;
            }
            0xc1 => return Err(malformed("a message uses the reserved marker 0xc1")),
            0xc4 | 0xd9 => (1, 0, 0),
            0xc5 | 0xda => (2, 0, 0),
            0xc6 | 0xdb => (4, 0, 0),
            // ext: length, then a type byte, then the data.
            0xc7 => (1, 1, 0),
            0xc8 => (2, 1, 0),
            0xc9 => (4, 1, 0),
            0xca | 0xce | 0xd2 => (0, 4, 0),
            0xcb | 0xcf | 0xd3 => (0, 8, 0),
            0xcc | 0xd0 => (0, 1, 0),
            0xcd | 0xd1 => (0, 2, 0),
            0xd4 => (0, 2, 0),
            0xd5 => (0, 3, 0),
            0xd6 => (0, 5, 0),
            0xd7 => (0, 9, 0),
            0xd8 => (0, 17, 0),
            0xdc => (2, 0, 1),
            0xdd => (4, 0, 1),
            0xde => (2, 0, 2),
            0xdf => (4, 0, 2),
        };
        let field = bytes.get(pos..pos + len_bytes).ok_or_else(truncated)?;
        pos += len_bytes;
        let n = field.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        if per == 0 {
            let data = fixed.checked_add(n).ok_or_else(truncated)?;
            if data > bytes.len() - pos {
                return Err(truncated());
            }
            pos += data;
        } else {
            let elements = n.checked_mul(per).ok_or_else(truncated)?;
            pending = add_pending(pending, elements, bytes.len() - pos)?;
        }
    }
    Ok(pos)
}

/// `pending + more` values still to skip, which cannot exceed the `left` bytes remaining.
fn add_pending(pending: usize, more: usize, left: usize) -> Result<usize> {
    match pending.checked_add(more) {
        Some(total) if total <= left => Ok(total),
        _ => Err(malformed("a message ends early")),
    }
}

/// A decode error, like those of the MessagePack decoder itself.
fn malformed(why: &str) -> Error {
    Error::Decode(rmp_serde::decode::Error::Syntax(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(valid_name("alice"));
        assert!(valid_name("A.b-c_9"));
        assert!(valid_name(&"x".repeat(32)));
        assert!(!valid_name(""));
        assert!(!valid_name(&"x".repeat(33)));
        assert!(!valid_name("bob smith"));
        assert!(!valid_name("é"));
        assert!(!valid_name("../x"));
    }

    #[test]
    fn error_code_strings_match_serde() {
        for code in [ErrorCode::BadRequest, ErrorCode::AdminMustHandOver, ErrorCode::Internal] {
            let bytes = encode(&code).expect("encode");
            let s: String = decode(&bytes).expect("a string");
            assert_eq!(s, code.as_str());
        }
    }

    #[test]
    fn unit_variants_are_strings_and_struct_variants_are_maps() {
        let bytes = encode(&Request::Ping).expect("encode");
        assert_eq!(bytes, b"\xa4ping");
        let bytes = encode(&ClientMsg::Pong { nonce: 7 }).expect("encode");
        // {"pong": {"nonce": 7}}
        assert_eq!(bytes, b"\x81\xa4pong\x81\xa5nonce\x07");
    }
}
