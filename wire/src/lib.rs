//! ClassChat's wire protocol, shared by the server, the desktop app and the tools.
//!
//! A connection starts with a plaintext handshake that wraps a fresh AES session key in
//! the server's RSA key; every later frame is AES-256-CBC encrypted and HMAC-SHA256
//! authenticated with an implicit sequence number. PROTOCOL.md at the repository root is
//! the full specification.
//!
//! # Layout
//! - [`frame`]: length-prefixed frames and the size limit (sans-I/O).
//! - [`message`]: `ClientMsg` / `ServerMsg` and everything inside them.
//! - [`class`]: the instructor tools' types: room settings, mutes, exam mode, audit log,
//!   questions, polls, office-hours queues.
//! - [`crypto`]: handshake messages, key derivation, the `Sealer` / `Opener` halves.
//! - [`fingerprint`]: server key fingerprints and the known-servers store.
//! - [`invite`]: `classchat://host:port#fingerprint` links.
//! - [`discovery`]: mDNS announcements and browsing (`_classchat._tcp`).
//! - [`e2e`]: end-to-end encryption of direct messages: identity keys, key grants, envelopes.
//! - [`room_record`]: a room's messages encrypted once for all its members.
//! - [`sealed_file`]: end-to-end encrypted file content for files sent to a person.
//! - [`auth`]: password-derived keys (Argon2id) every client computes the same way.
//! - [`connection`]: frames and sealed messages over any `AsyncRead + AsyncWrite`.
//! - [`chunk`]: bulk connections' `chunk` messages, built in the frame buffer and cut out
//!   of it without copies.
//! - [`client`]: the async client.
//! - [`failover`]: connecting to the first node of a server of several nodes that answers.
//! - [`files`]: file transfers over bulk connections, and safe file names.
//! - [`peer`]: peer-to-peer file search and fetch: the shared index, the sharer, fetching
//!   directly or through the server's relay.
//! - [`error`]: the crate's error type.

pub mod auth;
mod cbc_lanes;
pub mod chunk;
pub mod class;
pub mod client;
pub mod connection;
pub mod crypto;
pub mod discovery;
pub mod e2e;
pub mod error;
pub mod failover;
pub mod files;
pub mod fingerprint;
pub mod frame;
pub mod invite;
pub mod message;
pub mod peer;
pub mod room_record;
pub mod sealed_file;

pub use class::*;
pub use client::{Client, ClientConfig, RawSession, TrustPolicy};
pub use error::{CryptoError, Error, Result};
pub use files::{DownloadTicket, UploadTicket, sanitize_file_name};
pub use fingerprint::{Fingerprint, KnownServers, Trust};
pub use frame::MAX_FRAME_LEN;
pub use message::*;
