//! Peer-to-peer file search and fetch: "who has lab3?" in a room, and the file straight
//! from a classmate's machine (PROTOCOL.md section 17 is the contract).
//!
//! The server carries the search and hands out one-time tickets; the content goes from
//! the sharer's app to the asker's app over TCP, in a session only the two of them can
//! read: each proves it holds the identity key the server's key directory lists for its
//! username, then they share a fresh RSA-OAEP-wrapped session key and seal records like
//! the server session does. When the two cannot reach each other the server relays the
//! connection's bytes, still end to end encrypted.
//!
//! # Using it in an app
//!
//! **Sharing** (the sharer's side):
//! 1. Keep a [`SharedIndex`]: the files the user shares, each with its path, name, size,
//!    SHA-256 and an on/off switch, plus a global switch. [`SharedEntry::from_path`]
//!    hashes a file (blocking: call it on a blocking thread). Nothing is shared until the
//!    app puts entries in and turns the index on ([`SharedIndex::set_enabled`]).
//! 2. When the user turns sharing on, [`Sharer::start`] binds the listener (port from
//!    [`SharerConfig::listen`], ephemeral by default), registers it with the server
//!    (`set_sharing`, with the machine's interface addresses) and returns the handle and
//!    a channel of [`SharerEvent`]s ("ada is fetching lab3.csv", progress, finished).
//!    [`Sharer::stop`] unregisters (the server then never asks this session again) and
//!    closes the listener.
//! 3. Pass **every** [`Event`](crate::Event) from the chat connection to
//!    [`Sharer::handle_event`]. It answers `search_request`s from the index (only enabled
//!    files, at most [`MAX_FILES_PER_ANSWER`], with the busy flag), accepts the tickets of
//!    `fetch_request`s, and serves `relay_request`s; it returns `true` for the events it
//!    consumed. Without a running sharer the app answers nothing: a user with sharing off
//!    is never asked and never answers.
//! 4. Uploads: at most [`SharerConfig::max_uploads`] at once; one more is refused with
//!    [`PeerRefusal::Busy`], which the asker shows. [`Sharer::uploads`] lists the running
//!    ones; [`Sharer::stop_upload`] stops one (the asker gets [`PeerRefusal::Stopped`]).
//!
//! **Finding and fetching** (the asker's side):
//! 1. [`whohas`] sends the search (`/whohas lab3`: a name substring, case-insensitive, or
//!    a 64-digit hex SHA-256 for an exact content match; see [`SearchQuery::parse`]).
//!    Results arrive on the app's event channel as `search_results` events, then one
//!    `search_done` about 3 s later; [`SearchResults::apply`] gathers them into rows
//!    (name, size, who, busy). Searches are rate limited by the server
//!    ([`crate::ErrorCode::RateLimited`]).
//! 2. [`fetch`] gets one result: it asks the server for a ticket, tries the sharer's
//!    candidate addresses at once for [`FetchOptions::direct_timeout`], falls back to the
//!    server's relay, runs the peer session, writes `DEST.part` (resuming from its length
//!    if one exists), verifies the SHA-256 of the whole content and only then renames it
//!    to `DEST`. Progress goes to [`FetchOptions::progress`] (a `watch` channel);
//!    [`FetchOptions::cancel`] stops it (the `.part` stays, so a later fetch resumes).
//!    [`Fetched::route`] says whether it came directly or was relayed.
//!
//! # Errors the app shows
//! - [`Error::Peer`](crate::Error::Peer) with [`PeerError::Refused`]: the sharer said no;
//!   [`PeerRefusal::describe`] is the sentence (busy, ticket used or expired, stopped,
//!   no longer shared, not sharing).
//! - [`PeerError::BadIdentity`]: the other side could not prove it holds the key the
//!   directory lists for its name (someone in the middle, or a stale key): nothing was
//!   sent or saved.
//! - [`PeerError::Stalled`]: no byte for [`FetchOptions::stall_timeout`]; the `.part`
//!   stays for a resume.
//! - [`PeerError::Cancelled`]: the user cancelled; the `.part` stays.
//! - [`PeerError::Unreachable`]: neither a direct connection nor the relay worked.
//! - [`Error::HashMismatch`](crate::Error::HashMismatch): the content did not match its
//!   SHA-256; the partial file was deleted.
//! - [`Error::Server`](crate::Error::Server) from the server's checks: `not_member`,
//!   `not_sharing` (the sharer went offline or stopped sharing), `rate_limited`,
//!   `no_such_transfer` (a relay for an expired ticket).
//!
//! # Layout
//! - [`proto`]: the wire types (search, tickets, relay, the peer handshake and records).
//! - [`index`]: [`SharedIndex`], the sharer's list and its matching.
//! - [`handshake`]: the identity proofs and the session key, sans-I/O.
//! - [`channel`]: sealed records over any stream, content sealed in place.
//! - [`sharer`]: the listener, tickets, the upload limit, serving a file.
//! - [`fetch`]: searching, and fetching with direct-then-relay, resume and verification.

pub mod channel;
pub mod fetch;
pub mod handshake;
pub mod index;
pub mod proto;
pub mod relay;
pub mod sharer;

use std::time::Duration;

use crate::client::Client;
use crate::e2e::PublicIdentity;
use crate::error::{Error, Result};
use crate::message::{Request, Response};

pub use fetch::{
    FetchOptions, FetchProgress, FetchRequest, Fetched, Route, SearchResult, SearchResults, fetch, whohas,
};
pub use index::{SharedEntry, SharedIndex};
pub use proto::*;
pub use sharer::{Sharer, SharerConfig, SharerEvent, UploadId, UploadInfo};

/// Why a peer-to-peer transfer failed (inside [`crate::Error::Peer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The other peer refused (or stopped) the transfer.
    #[error("{}{}", code.describe(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused { code: PeerRefusal, message: String },
    /// The other side's identity proof did not verify against the key directory.
    #[error("{peer} could not prove their identity (their key does not match the server's key directory)")]
    BadIdentity { peer: String },
    /// Nothing arrived for this long.
    #[error("the transfer stalled: nothing arrived for {0:?}")]
    Stalled(Duration),
    /// Cancelled by the user.
    #[error("the transfer was cancelled")]
    Cancelled,
    /// No candidate address connected and the relay did not work either.
    #[error("could not reach {peer}: {why}")]
    Unreachable { peer: String, why: String },
    /// The other peer broke the peer protocol.
    #[error("the other peer broke the protocol: {0}")]
    Protocol(String),
}

/// The identity key the server's directory lists for `user`: what a peer must prove it
/// holds.
pub(crate) async fn lookup_key(client: &Client, user: &str) -> Result<PublicIdentity> {
    let bad = || Error::from(PeerError::BadIdentity { peer: user.to_owned() });
    match client.request(Request::GetKey { user: user.to_owned() }).await? {
        Response::Key { public_key: Some(der), .. } => PublicIdentity::from_der(&der).map_err(|_| bad()),
        Response::Key { public_key: None, .. } => Err(bad()),
        other => Err(Error::Protocol(format!("expected a key, got {other:?}"))),
    }
}
