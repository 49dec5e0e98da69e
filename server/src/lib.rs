//! ClassChat's headless server.
//!
//! # Layout
//! - [`config`]: every limit, from TOML.
//! - `gate`: admission before login (caps on connections still logging in, per address).
//! - [`server`]: accept loop, connection permits, graceful shutdown ([`run`]).
//! - `session`: one connection: handshake, login deadline, heartbeat, reader and writer.
//! - `outbound`: a session's bounded outbound queue, from the fan-out to its writer.
//! - `handlers/`: one file per area of requests.
//! - `state`: shared in-memory state (accounts, rooms, online sessions) and fan-out.
//! - `store`: SQLite (the default) or PostgreSQL (shared by the nodes of a cluster),
//!   written by one thread with group commit.
//! - `cursors`: delivery cursors (`ack`s) coalesced in memory, written once a second.
//! - `keys`: the server key on disk and Argon2id hashes of secrets.
//! - `class`: the instructor tools' state and posting rules (mutes, exam mode, room
//!   settings, questions, polls, office-hours queues).
//! - `files`: shared files: registry, content store, bulk connections, retention.
//! - `search`: full-text search of room and announcement messages (FTS5, or a GIN index
//!   on PostgreSQL).
//! - `peer`: peer-to-peer search, fetch tickets, the relay and the byte counters.
//! - [`admin`]: the admin console and the admin socket.
//! - [`bus`]: the NATS bus between the nodes of a cluster (several servers on one
//!   PostgreSQL store).
//! - [`services`]: throwaway PostgreSQL and NATS instances for the tests and the bench.

pub mod admin;
pub mod bus;
mod class;
pub mod config;
mod cursors;
mod files;
mod gate;
mod handlers;
mod keys;
mod outbound;
mod peer;
mod search;
pub mod server;
pub mod services;
mod session;
mod state;
mod store;

pub use config::Config;
pub use keys::KEY_FILE;
pub use peer::TrafficCounts;
/// The search index's terms for a text in a conversation (`r:room`, `a`), and the FTS5
/// expression of a query over conversations: the bench tool fills and queries
/// `message_text` directly.
pub use search::expression as search_expression;
pub use server::DB_FILE;
pub use server::{run, serve};
pub use state::State;
pub use store::rich::terms as search_index_terms;

/// Opens the SQLite database of `data_dir` (creating and migrating it) while no server
/// runs on it: for maintenance, and for the bench tool, which seeds accounts and history
/// in the server's own schema instead of going through the protocol.
pub fn open_database(data_dir: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    store::open_for_cli(&data_dir.join(DB_FILE))
}

/// Connects to the PostgreSQL store at `url` (creating and migrating its schema) while no
/// server runs on it: for the bench tool's seeding, as [`open_database`]. Blocking.
pub fn open_postgres(url: &str) -> anyhow::Result<postgres::Client> {
    store::postgres::open_for_cli(url)
}

/// Grants or revokes server admin rights directly in the database (server not running):
/// the SQLite file of the data dir, or the PostgreSQL database `config.store` names
/// (restart the nodes that use it afterwards: each holds the accounts in memory).
/// Blocking.
pub fn set_admin_offline(config: &Config, user: &str, admin: bool) -> anyhow::Result<()> {
    let n = match &config.store {
        Some(url) => store::postgres::open_for_cli(url)?.execute(
            "UPDATE users SET server_admin = $2 WHERE name_lc = $1",
            &[&user.to_ascii_lowercase(), &admin],
        )?,
        None => store::open_for_cli(&config.data_dir.join(DB_FILE))?.execute(
            "UPDATE users SET server_admin = ?2 WHERE name_lc = ?1",
            rusqlite::params![user.to_ascii_lowercase(), admin],
        )? as u64,
    };
    anyhow::ensure!(n == 1, "there is no user called {user}");
    Ok(())
}
