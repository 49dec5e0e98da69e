//! Instructor tools: room modes, mutes, exam mode, the audit log, questions (Q&A), polls
//! and office-hours queues. PROTOCOL.md section 16 describes the rules the server
//! enforces; these are the types that cross the wire for them.
//!
//! Who is who: an **instructor** is a server admin. The **staff** of a room are the
//! instructors and the room's admin. Everyone else in a room is a **student** there.

use serde::{Deserialize, Serialize};

use crate::message::{MessageId, Timestamp};

/// Server-assigned id of a question.
pub type QuestionId = u64;
/// Server-assigned id of a poll.
pub type PollId = u64;

/// Fewest options a poll may have.
pub const MIN_POLL_OPTIONS: usize = 2;
/// Most options a poll may have: a bar chart of more is unreadable.
pub const MAX_POLL_OPTIONS: usize = 10;
/// Longest poll question, in bytes.
pub const MAX_POLL_QUESTION_LEN: usize = 500;
/// Longest poll option, in bytes.
pub const MAX_POLL_OPTION_LEN: usize = 200;
/// Longest question (Q&A), in bytes.
pub const MAX_QUESTION_LEN: usize = 2000;
/// Open (not closed) polls a room may hold at once.
pub const MAX_OPEN_POLLS_PER_ROOM: usize = 20;
/// Questions a room keeps; beyond this the oldest answered one is forgotten to make room,
/// and when none is answered a new question is refused.
pub const MAX_QUESTIONS_PER_ROOM: usize = 500;
/// Longest slow-mode interval, in seconds.
pub const MAX_SLOW_MODE_SECS: u32 = 3600;
/// Longest timed mute, in seconds (a week); longer is "until lifted".
pub const MAX_MUTE_SECS: u64 = 7 * 24 * 3600;
/// Longest time a poll may stay open when it has a closing time, in milliseconds (a week).
pub const MAX_POLL_OPEN_MS: u64 = 7 * 24 * 3600 * 1000;
/// Students one office-hours queue holds.
pub const MAX_QUEUE_LEN: usize = 500;
/// Largest page of the audit log.
pub const MAX_AUDIT_PAGE: u32 = 200;

/// A room's moderation and class settings. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    /// Only the room's staff post; everyone else reads.
    pub announce_only: bool,
    /// A student may post at most one message every this many seconds (0: off).
    pub slow_mode_secs: u32,
    /// The room has a questions list (Q&A).
    pub qa: bool,
}

/// Where a mute applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MuteScope {
    /// One room (room staff may mute there).
    Room { name: String },
    /// Every room, direct messages and announcements (instructors only).
    Server,
}

/// A user who may not post in `scope` until `until` (`None`: until lifted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteInfo {
    pub scope: MuteScope,
    pub user: String,
    pub until: Option<Timestamp>,
    /// Who muted them.
    pub by: String,
}

/// Exam mode, while it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamInfo {
    /// The one room where students may still post (to ask the instructors), if any.
    pub questions_room: Option<String>,
    pub since: Timestamp,
    pub by: String,
}

/// What the app needs at login to show the class state: sent in `Welcome`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassStatus {
    /// Exam mode, when on.
    pub exam: Option<ExamInfo>,
    /// The user's own mutes in force.
    pub mutes: Vec<MuteInfo>,
    /// The office-hours queues the user waits in: (instructor, 1-based position).
    pub queues: Vec<QueuePosition>,
}

/// A student's place in an instructor's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    pub instructor: String,
    /// 1 is next.
    pub position: u32,
}

/// A student waiting in an office-hours queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub student: String,
    /// When they joined the queue.
    pub since: Timestamp,
}

/// The kind of a moderation action in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    RoomSettings,
    ExamOn,
    ExamOff,
    ServerKick,
    ServerBan,
    ServerUnban,
    RemoveRoom,
    /// A room admin or a server admin deleted someone else's message.
    DeleteMessage,
    /// An action this build does not know (from a newer server).
    #[serde(other)]
    Other,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Kick => "kick",
            AuditAction::Ban => "ban",
            AuditAction::Unban => "unban",
            AuditAction::Mute => "mute",
            AuditAction::Unmute => "unmute",
            AuditAction::RoomSettings => "room_settings",
            AuditAction::ExamOn => "exam_on",
            AuditAction::ExamOff => "exam_off",
            AuditAction::ServerKick => "server_kick",
            AuditAction::ServerBan => "server_ban",
            AuditAction::ServerUnban => "server_unban",
            AuditAction::RemoveRoom => "remove_room",
            AuditAction::DeleteMessage => "delete_message",
            AuditAction::Other => "other",
        }
    }
}

/// One moderation action: who did what to whom, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing; page with `before`.
    pub id: u64,
    pub ts: Timestamp,
    pub actor: String,
    pub action: AuditAction,
    /// The user or room acted on ("" for server-wide actions such as exam mode).
    pub target: String,
    /// Where and how, for people: "in #lab for 1 h", "questions room #help".
    pub detail: String,
}

/// A question in a Q&A room, as one receiver may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub id: QuestionId,
    pub room: String,
    pub text: String,
    /// Who asked. `None` when the question is anonymous and the receiver is not staff of
    /// the room: the server never sends an anonymous author to a student.
    pub author: Option<String>,
    pub anonymous: bool,
    /// Whether the receiver asked it (so an anonymous author can find their own).
    pub mine: bool,
    pub votes: u32,
    /// Whether the receiver upvoted it.
    pub voted: bool,
    pub answered: bool,
    /// The room message that answers it, if the instructor linked one.
    pub answer: Option<MessageId>,
    pub ts: Timestamp,
}

/// A poll, as one receiver may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub id: PollId,
    pub room: String,
    pub question: String,
    pub options: Vec<String>,
    /// Several options may be chosen.
    pub multiple: bool,
    /// Nobody, not even staff, is told who chose what.
    pub anonymous: bool,
    pub by: String,
    pub ts: Timestamp,
    /// When the server closes it by itself, if set.
    pub closes_at: Option<Timestamp>,
    pub closed: bool,
    /// Votes per option, in option order.
    pub counts: Vec<u32>,
    /// Accounts that voted.
    pub voters: u32,
    /// The receiver's own choices (option indexes, ascending).
    pub mine: Vec<u32>,
    /// Who chose each option, in option order; empty lists when anonymous.
    pub names: Vec<Vec<String>>,
}
