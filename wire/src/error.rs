//! The crate's one error type.

use crate::fingerprint::Fingerprint;
use crate::message::ErrorCode;

/// Everything that can go wrong on a ClassChat connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// A length prefix (incoming) or a body (outgoing) is over the connection's limit.
    /// Raised before anything is allocated for the body.
    #[error("frame of {size} bytes is over the limit of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },

    #[error("could not encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),

    #[error("could not decode message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),

    /// A sealed frame failed authentication, or the key exchange failed. The peer is not
    /// told which: the connection is simply closed.
    #[error("crypto error: {0}")]
    Crypto(#[from] CryptoError),

    /// The peer spoke, but not the protocol (wrong version, wrong frame at this point).
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// The handshake did not complete within the allowed time.
    #[error("the handshake did not complete within {0:?}")]
    HandshakeTimeout(std::time::Duration),

    /// Connecting to the server took longer than allowed.
    #[error("could not connect within {0:?}")]
    ConnectTimeout(std::time::Duration),

    /// First contact with a server: its key is not in the known-servers store.
    /// The caller should show the fingerprint and ask the user.
    #[error("unknown server {host} with key fingerprint {fingerprint}")]
    UnknownServer { host: String, fingerprint: Fingerprint },

    /// The server's key differs from the one remembered for this address. This is what
    /// an attacker in the middle looks like; the connection is refused.
    #[error(
        "WARNING: the key of server {host} has CHANGED (was {expected}, now {actual}); \
         someone may be intercepting the connection"
    )]
    ServerKeyChanged { host: String, expected: Fingerprint, actual: Fingerprint },

    /// The server answered a request with an error.
    #[error("{message} ({code})")]
    Server { code: ErrorCode, message: String },

    /// The connection is closed; the string says why when it is known.
    #[error("connection closed: {0}")]
    Closed(String),

    /// A downloaded file does not have the SHA-256 (or size) the server announced; the
    /// partial file was deleted.
    #[error("{name} arrived damaged (its SHA-256 does not match); it was not saved")]
    HashMismatch { name: String },

    /// An end-to-end encrypted download failed its integrity check (a record's MAC, or
    /// its length); the partial file was deleted.
    #[error("{name} arrived damaged or altered (its encryption check failed); it was not saved")]
    SealedMismatch { name: String },

    #[error("known-servers store {path}: {reason}")]
    KnownServers { path: String, reason: String },

    /// A peer-to-peer search or fetch failed ([`crate::peer`]).
    #[error("{0}")]
    Peer(#[from] crate::peer::PeerError),
}

/// Why sealed data or the key exchange was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("frame too short to be sealed")]
    Truncated,
    #[error("message authentication failed")]
    BadMac,
    #[error("bad padding")]
    BadPadding,
    #[error("a room record under a room key that was never installed")]
    UnknownRoomKey,
    #[error("RSA operation failed")]
    Rsa,
    #[error("invalid public key")]
    BadPublicKey,
    #[error("invalid key length")]
    BadKeyLength,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The server's error code, when this is an error reply from the server.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
