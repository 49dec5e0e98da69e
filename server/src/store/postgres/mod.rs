//! The PostgreSQL backend: one database that several nodes share (`store =
//! "postgres://user@host:port/db"`).
//!
//! - `schema`: the tables (those of SQLite in PostgreSQL types), created and migrated at
//!   startup under an advisory lock, so nodes starting together migrate once.
//! - `writer`: the writer thread. One transaction per batch of jobs (group commit); a
//!   job that fails (another node created the same user a moment before) fails alone:
//!   the batch is then run again with a savepoint per job (not before: a savepoint costs
//!   two round trips a job, and jobs rarely fail). A run of one-message jobs is written
//!   by one statement. Message ids come from the sequence `message_ids`; before taking
//!   any, the batch locks the conversations it writes to (`pg_advisory_xact_lock`, in key
//!   order, so two nodes never deadlock), so within a conversation ids commit in order
//!   even with several nodes writing to it: catch-up reads "everything after the cursor"
//!   and must never find an id committed after a later one was read. While PostgreSQL is
//!   unreachable, jobs fail at once with a clear error (never acknowledged), and the
//!   writer reconnects with backoff.
//! - `read`: every read [`super::Backend`] offers, on a small pool of connections.
//! - `blobs`: the content of shared files, so that any node serves any file.
//!
//! No TLS: run PostgreSQL on a trusted network, or reach it through a unix socket or an
//! SSH tunnel (README.md).

use std::collections::HashMap;
use std::time::Duration;

use postgres::{Client, NoTls, Statement};

use super::{Job, Snapshot};

mod blobs;
mod read;
mod schema;
mod writer;

pub(super) use read::Pg;

/// How long connecting may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses and checks a `store` URL (`postgres://` or `postgresql://`).
pub fn parse_url(url: &str) -> anyhow::Result<postgres::Config> {
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "store must be a postgres://user@host:port/database URL (or absent for the SQLite file in \
         the data dir), not {url:?}"
    );
    let mut config: postgres::Config =
        url.parse().map_err(|e| anyhow::anyhow!("store: bad PostgreSQL URL {url:?}: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("classchat-server");
    }
    Ok(config)
}

/// Where the database is, for logs and errors (no password).
fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("PostgreSQL {}:{port}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

/// `e` with its causes: the client's own message is only its kind ("db error"); what
/// PostgreSQL said ("duplicate key value violates …") is its source.
fn error_text(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A connection with the statements prepared on it so far: each is parsed once per
/// connection, not once per use.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn connect(config: &postgres::Config) -> Result<Conn, postgres::Error> {
        Ok(Conn { client: config.connect(NoTls)?, statements: HashMap::new() })
    }
}

/// The statement for `sql`, prepared on `client` the first time.
fn prepared(
    client: &mut impl postgres::GenericClient,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    cache.insert(sql.to_owned(), s.clone());
    Ok(s)
}

/// Connects to the database at `url`, creates or migrates its schema, loads the
/// snapshot and starts the writer thread, which stops once every sender is dropped.
/// Blocking: call it outside async code (`spawn_blocking`).
pub(super) fn start(
    url: &str,
    batch: usize,
    queue: usize,
) -> anyhow::Result<(std::sync::mpsc::SyncSender<Job>, Pg, Snapshot)> {
    let config = parse_url(url)?;
    let mut conn = Conn::connect(&config)
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {}", describe(&config), error_text(&e)))?;
    schema::migrate(&mut conn.client)?;
    let pg = Pg::new(config.clone());
    let snapshot = read::load(&mut conn)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
    std::thread::Builder::new()
        .name("classchat-store".into())
        .spawn(move || writer::run(config, conn, rx, batch))?;
    Ok((tx, pg, snapshot))
}

/// Opens the database at `url` (creating and migrating it) for CLI maintenance commands.
/// Blocking.
pub fn open_for_cli(url: &str) -> anyhow::Result<Client> {
    let config = parse_url(url)?;
    let mut client = config
        .connect(NoTls)
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {}", describe(&config), error_text(&e)))?;
    schema::migrate(&mut client)?;
    Ok(client)
}

#[cfg(test)]
mod tests;
