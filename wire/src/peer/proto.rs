//! The peer-to-peer messages: what the chat connection carries for searches, tickets and
//! relays (used inside [`crate::Request`], [`crate::Response`] and [`crate::Event`]), and
//! what two peers say to each other (PROTOCOL.md section 17).

use serde::{Deserialize, Serialize};

/// Server-assigned id of one search (unique per server run).
pub type SearchId = u64;

/// Length of a fetch ticket.
pub const TICKET_LEN: usize = 32;
/// Length of a SHA-256.
pub const SHA256_LEN: usize = 32;
/// How long the server waits for answers to a search before it sends `search_done`.
pub const SEARCH_DEADLINE_MS: u32 = 3000;
/// Most files one answerer may report for one search; more are dropped by the server
/// (and the library never sends more).
pub const MAX_FILES_PER_ANSWER: usize = 50;
/// Most results the server relays for one search, over all answerers.
pub const MAX_RESULTS_PER_SEARCH: usize = 500;
/// Longest search text, in bytes.
pub const MAX_QUERY_LEN: usize = 256;
/// Most interface addresses a sharer may register.
pub const MAX_LISTEN_ADDRS: usize = 16;
/// How long a ticket is valid after the server issues it.
pub const TICKET_LIFETIME_MS: u32 = 30_000;
/// Version of the peer protocol spoken in [`PeerHello`].
pub const PEER_VERSION: u16 = 1;
/// Largest plaintext of one peer record: content travels in records of this size (less
/// the one-byte tag), so the per-record costs (a MAC, an IV, a syscall) vanish against the
/// bytes moved.
pub const PEER_RECORD_LEN: usize = 1024 * 1024;
/// The peer connection's frame limit: one full record sealed, with room to spare.
pub const PEER_MAX_FRAME_LEN: usize = PEER_RECORD_LEN + 4096;

/// What a search asks for: a case-insensitive substring of the name, or (when `sha256` is
/// set) exactly that content. An empty `name` with no hash matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub sha256: Option<Vec<u8>>,
}

/// One file in a search answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// The file's name (no path). The server refuses names that `sanitize_file_name`
    /// would change (`../../etc/passwd`, control characters).
    pub name: String,
    pub size: u64,
    /// SHA-256 of the content, 32 bytes: what the asker fetches by and verifies against.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    /// The sharer is at its upload limit right now.
    pub busy: bool,
}

/// Where a sharer's app listens for peers: its port and its own interface addresses (the
/// server adds the address it sees the sharer's chat connection come from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerListener {
    pub port: u16,
    /// IP addresses as text (`192.168.1.20`, `fe80::1`), at most [`MAX_LISTEN_ADDRS`].
    pub addrs: Vec<String>,
}

/// `peer_fetch` granted: the one-time ticket, and where to reach the sharer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTicket {
    #[serde(with = "serde_bytes")]
    pub ticket: Vec<u8>,
    /// The sharer's username as registered.
    pub sharer: String,
    /// `ip:port` candidates, the address the server sees first.
    pub candidates: Vec<String>,
    /// The ticket stops working this many milliseconds after it was issued.
    pub expires_in_ms: u32,
}

/// Which end of a relayed peer connection a bulk connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelaySide {
    Asker,
    Sharer,
}

// ---- between peers ------------------------------------------------------------------------

/// First frame of a peer connection, asker → sharer, plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    pub version: u16,
    #[serde(with = "serde_bytes")]
    pub ticket: Vec<u8>,
    pub asker: String,
    pub sharer: String,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// Second frame, sharer → asker, plaintext: either the sharer's proof or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerChallenge {
    Proof {
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// RSA-PSS-SHA256 by the sharer's identity key over the sharer transcript.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    Refused {
        code: PeerRefusal,
        message: String,
    },
}

/// Third frame, asker → sharer, plaintext: the session secret and the asker's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKey {
    /// 32-byte secret, RSA-OAEP-SHA256 under the sharer's identity key.
    #[serde(with = "serde_bytes")]
    pub encrypted_secret: Vec<u8>,
    /// RSA-PSS-SHA256 by the asker's identity key over the asker transcript.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a sharer refused a peer. Stable codes, like [`crate::ErrorCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRefusal {
    /// The ticket is unknown (never issued for this sharer, or forgotten).
    BadTicket,
    /// The ticket was already used: tickets work once.
    TicketUsed,
    /// The ticket's lifetime is over.
    TicketExpired,
    /// The ticket was issued to someone else.
    WrongPeer,
    /// The sharer is at its upload limit; try another sharer or later.
    Busy,
    /// The file is no longer shared.
    NoSuchFile,
    /// The sharer turned sharing off.
    NotSharing,
    /// The peer's identity proof failed.
    BadIdentity,
    /// The sharer stopped the transfer.
    Stopped,
    /// Anything else; the message says what.
    #[serde(other)]
    Other,
}

impl PeerRefusal {
    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            PeerRefusal::BadTicket => "the sharer does not know this fetch ticket",
            PeerRefusal::TicketUsed => "this fetch ticket was already used (tickets work once)",
            PeerRefusal::TicketExpired => "this fetch ticket has expired; ask again",
            PeerRefusal::WrongPeer => "this fetch ticket was issued to someone else",
            PeerRefusal::Busy => "the sharer is busy (at their upload limit); try another sharer or later",
            PeerRefusal::NoSuchFile => "the sharer no longer shares this file",
            PeerRefusal::NotSharing => "the sharer has turned sharing off",
            PeerRefusal::BadIdentity => "the identity proof failed",
            PeerRefusal::Stopped => "the sharer stopped the transfer",
            PeerRefusal::Other => "the sharer refused",
        }
    }
}

/// Control messages inside the sealed peer session (record tag [`TAG_CONTROL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerMsg {
    /// Asker → sharer: send the ticket's file from byte `offset`.
    Get { offset: u64 },
    /// Sharer → asker: the file; `size - offset` content bytes follow in data records,
    /// then `end`.
    Start {
        name: String,
        size: u64,
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// Sharer → asker: every byte was sent.
    End,
    /// Either side: the transfer is over without success (busy, stopped, cancelled).
    Refused { code: PeerRefusal, message: String },
    /// Asker → sharer: stop sending; nothing more will be read.
    Cancel,
}

/// First plaintext byte of a peer record: what follows is raw file content.
pub const TAG_DATA: u8 = 0;
/// First plaintext byte of a peer record: what follows is one MessagePack [`PeerMsg`].
pub const TAG_CONTROL: u8 = 1;
