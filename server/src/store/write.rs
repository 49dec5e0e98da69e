//! What the writer applies: [`Write`]s, grouped into [`Job`]s with a completion.

use classchat_wire::{Body, MessageId, Reaction, Timestamp};

/// One change to persistent state.
#[derive(Debug, Clone)]
pub enum Write {
    CreateUser {
        name: String,
        auth: Vec<u8>,
    },
    SetServerAdmin {
        user: String,
        admin: bool,
    },
    SetBanned {
        user: String,
        banned: bool,
    },
    /// Creates or updates a device; `baseline` is only used on creation. `previous` is the
    /// token the device logged in with and until when it still works (a `resume`), or
    /// `None` (a password login, a logout: no earlier token works).
    UpsertDevice {
        user: String,
        device: String,
        token_hash: Option<Vec<u8>>,
        baseline: MessageId,
        previous: Option<(Vec<u8>, i64)>,
    },
    CreateRoom {
        name: String,
        topic: String,
        password: Option<Vec<u8>>,
        admin: String,
    },
    DeleteRoom {
        room: String,
    },
    SetTopic {
        room: String,
        topic: String,
    },
    SetRoomPassword {
        room: String,
        password: Option<Vec<u8>>,
    },
    SetRoomAdmin {
        room: String,
        admin: String,
    },
    /// Records as the member's first message the next id to be committed, so a `Joined`
    /// message in the same job is the first one the member is delivered.
    AddMember {
        room: String,
        user: String,
    },
    RemoveMember {
        room: String,
        user: String,
    },
    AddBan {
        room: String,
        user: String,
    },
    RemoveBan {
        room: String,
        user: String,
    },
    AddDmPair {
        a: String,
        b: String,
    },
    Message {
        conv: String,
        sender: String,
        body: Body,
        /// The message of the same conversation this one answers.
        reply_to: Option<MessageId>,
    },
    /// Replaces the body of a message that is not deleted (the job fails otherwise).
    Edit {
        id: MessageId,
        body: Body,
    },
    /// Deletes a message: its body becomes `Body::Deleted { by, proof }`.
    DeleteMessage {
        id: MessageId,
        by: String,
        proof: Option<Vec<u8>>,
    },
    /// Adds (`on`) or takes back a reaction; the writer fills `now` with the message's
    /// reactions after the change, for the fan-out.
    React {
        id: MessageId,
        emoji: String,
        user_lc: String,
        user: String,
        on: bool,
        now: Vec<Reaction>,
    },
    Cursor {
        user: String,
        device: String,
        conv: String,
        up_to: MessageId,
    },
    SetIdentity {
        user: String,
        public_key: Vec<u8>,
        backup: Vec<u8>,
    },
    PutDmKey {
        conv: String,
        key_id: Vec<u8>,
        grant: Vec<u8>,
    },
    SetAuth {
        user: String,
        auth: Vec<u8>,
    },
    /// Forgets the resume tokens of every device of `user` but `keep`.
    RevokeTokens {
        user: String,
        keep: String,
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
    /// Insert or replace a class record (`crate::class`).
    PutObject {
        kind: &'static str,
        key: String,
        room: Option<String>,
        value: Vec<u8>,
    },
    DeleteObject {
        kind: &'static str,
        key: String,
    },
    /// Append a moderation action to the audit log.
    Audit {
        actor: String,
        action: classchat_wire::AuditAction,
        target: String,
        detail: String,
    },
    DeleteFile {
        id: u64,
    },
}

/// A shared file as stored (and as a cluster's nodes tell each other of it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileRow {
    pub id: u64,
    pub owner_lc: String,
    /// The owner's display name at upload time.
    pub sender: String,
    /// Database key of the conversation: a room (`r:…`) or a direct pair (`d:…`).
    pub conv: String,
    /// The user a direct file is offered to.
    pub recipient_lc: Option<String>,
    pub name: String,
    pub size: u64,
    pub meta: Option<Vec<u8>>,
    /// `None` while the upload is in progress.
    pub sha256: Option<Vec<u8>>,
    pub token_hash: Vec<u8>,
    pub accepted: bool,
    pub created: Timestamp,
    pub completed: Option<Timestamp>,
}

/// What the writer reports to a completion: the id and timestamp of every `Message`,
/// `Edit`, `DeleteMessage` and `React` write of the job, in order (the last three get an
/// update id from the same sequence), or why the commit failed.
pub type Committed = Result<Vec<(MessageId, Timestamp)>, String>;

/// What runs once a job is committed (or failed): it gets the outcome and the job's own
/// writes back, so the fan-out can move the messages out of them instead of cloning them
/// up front (BENCHMARKS.md, durable).
pub type Done = Box<dyn FnOnce(Committed, Vec<Write>) + Send>;

/// A unit of work for the writer: all of `writes` commit together (with other jobs).
pub struct Job {
    pub writes: Vec<Write>,
    pub done: Option<Done>,
}
