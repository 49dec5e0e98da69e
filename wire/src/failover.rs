//! Connecting to a server of several nodes: its addresses are tried in turn.
//!
//! The nodes share one database and one key (PROTOCOL.md §12.7), so any of them will do,
//! and one known-servers entry, filed under the server's name, covers all of them
//! ([`ClientConfig::known_as`]). A node that is not there, does not answer, or does not
//! finish the handshake is passed over; a key that does not match is not, because that
//! is the same on every node and must reach the user.

use tokio::sync::mpsc;

use crate::client::{Client, ClientConfig};
use crate::error::{Error, Result};
use crate::message::{ErrorCode, Event};

/// A session with one node of the server, and which node.
#[derive(Debug)]
pub struct Connected {
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    /// The node's address, as dialled.
    pub addr: String,
    /// Its position in the list given to [`connect_any`].
    pub index: usize,
}

/// Whether another node of the same server may do better than this error: this one is
/// down, unreachable, too slow, not speaking the protocol, or going away. Trust errors,
/// a broken known-servers store and refusals of the account are the same on every node.
pub fn try_next_node(e: &Error) -> bool {
    match e {
        Error::Io(_)
        | Error::ConnectTimeout(_)
        | Error::HandshakeTimeout(_)
        | Error::Protocol(_)
        | Error::Crypto(_)
        | Error::Decode(_)
        | Error::Closed(_) => true,
        Error::Server { code, .. } => matches!(code, ErrorCode::ShuttingDown | ErrorCode::Internal),
        _ => false,
    }
}

/// Connects to the first of `nodes` (`host:port` each) that completes the handshake,
/// trying them in the order given, each within `config`'s connect and handshake timeouts.
/// The key is checked under `config.known_as`, or `config.addr` when that is unset (the
/// server's name); `config.addr` is also the only node when `nodes` is empty.
///
/// Stops at the first error [`try_next_node`] says another node would not fix; when every
/// node failed, returns the last node's error.
pub async fn connect_any(config: &ClientConfig, nodes: &[String]) -> Result<Connected> {
    let known_as = config.known_as.clone().unwrap_or_else(|| config.addr.clone());
    let fallback = [config.addr.clone()];
    let nodes = if nodes.is_empty() { &fallback[..] } else { nodes };
    let mut last = None;
    for (index, addr) in nodes.iter().enumerate() {
        let node = ClientConfig { addr: addr.clone(), known_as: Some(known_as.clone()), ..config.clone() };
        match Client::connect(node).await {
            Ok((client, events)) => return Ok(Connected { client, events, addr: addr.clone(), index }),
            Err(e) if try_next_node(&e) => {
                tracing::info!(node = %addr, error = %e, "node unavailable, trying the next");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    // `nodes` is never empty, so some error was kept.
    Err(last.unwrap_or_else(|| Error::Protocol("no address to connect to".into())))
}
