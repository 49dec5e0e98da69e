//! Server configuration: every limit the server enforces, loadable from TOML.
//!
//! Every field has a default, so an empty file (or no file) is a valid configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// packaging/server.toml: every key with its default and a comment.
const DEFAULT_TOML: &str = include_str!("../../packaging/server.toml");

/// The server's settings. Durations are whole seconds or milliseconds as named.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name shown to clients in the handshake and the status bar.
    pub server_name: String,
    /// Where the database, the server key and the admin socket live.
    pub data_dir: PathBuf,
    /// A PostgreSQL database (`postgres://user@host:port/db`) that several nodes share,
    /// instead of the SQLite file in the data dir (`None`, the default).
    pub store: Option<String>,
    /// RSA modulus size for a newly created server key (2048 or 3072).
    pub rsa_bits: usize,
    /// Concurrent connections; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Largest frame body accepted or sent, bytes.
    pub max_frame_len: usize,
    /// Frames queued for one client; a client whose queue is full is disconnected.
    pub outbound_queue: usize,
    /// Send a room's messages as room records, encrypted once for all its members, to the
    /// clients that take them (PROTOCOL.md section 4.1). Off, every delivery is sealed
    /// for its connection alone.
    pub room_records: bool,
    /// A connection silent for this long is dropped (pings go out at a third of it).
    pub heartbeat_timeout_ms: u64,
    /// The handshake and login must finish within this.
    pub login_timeout_ms: u64,
    /// The handshake alone must finish within this.
    pub handshake_timeout_ms: u64,
    /// After a `resume` rotates a device's token, the token it presented still works this
    /// long (a connection lost before the `welcome` arrived must not cost the password).
    pub resume_grace_ms: u64,
    /// Connections not logged in yet, in total and per source address; past either, the
    /// oldest of them is closed to admit a new one (`crate::gate`).
    pub max_pre_login: usize,
    pub max_pre_login_per_address: usize,
    /// Connections of any kind from one source address.
    pub max_connections_per_address: usize,
    /// Longest message text, topic or direct body, bytes.
    pub max_message_len: usize,
    /// Sustained messages per second per user, and the burst allowed above it.
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Rooms one user may be a member of (the default room included).
    pub max_rooms_per_user: usize,
    /// Whether users who are not server admins may broadcast.
    pub allow_user_broadcast: bool,
    /// Usernames that are server admins (in addition to those granted by the CLI).
    pub admins: Vec<String>,
    /// Failed logins allowed per account, and per address, within `login_window_secs`,
    /// before further attempts are refused as `throttled` until the window passes.
    pub max_failed_logins_per_account: u32,
    pub max_failed_logins_per_address: u32,
    pub login_window_secs: u64,
    /// Messages sent to a device at login when it has missed more than this in one
    /// conversation (the rest stays available through history).
    pub max_catch_up_per_conversation: u32,
    /// Argon2id memory (KiB) and passes for hashing auth keys and room passwords.
    /// The auth key is already a slow, salted hash of the password, so modest values
    /// suffice here.
    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    /// Messages written to SQLite per transaction at most (group commit).
    pub store_batch: usize,
    /// Requests queued for the store writer; senders wait when it is full.
    pub store_queue: usize,
    /// Announce the server on the local network (mDNS, `_classchat._tcp`).
    pub discovery: bool,
    /// Host name or address put in invite links; empty means this machine's addresses.
    pub public_host: String,
    /// Where shared files' content is kept on this machine; empty means `files` in the
    /// data dir. On a PostgreSQL store the content is in the database too, and this is the
    /// node's cache of it.
    pub files_dir: PathBuf,
    /// Every node of a server of several nodes, `host[:port]` each (the port defaults to
    /// 7420), in the order clients should try them. When set, the server prints one
    /// invite that lists them all instead of the `public_host` one (PROTOCOL.md §12.7).
    pub public_addresses: Vec<String>,
    /// Largest file accepted, bytes.
    pub max_file_size: u64,
    /// Total size of one user's files, and of all files, bytes.
    pub user_file_quota: u64,
    pub total_file_quota: u64,
    /// Files are deleted this long after their upload finished (unfinished uploads,
    /// after they started).
    pub file_retention_secs: u64,
    /// Peer-to-peer search: how long answers are awaited, ms; searches per minute per
    /// user, sustained, and the burst above it.
    pub peer_search_deadline_ms: u32,
    pub peer_searches_per_minute: u32,
    pub peer_search_burst: u32,
    /// Peer-to-peer fetch tickets live this long, ms (at most 30,000).
    pub peer_ticket_ms: u32,
    /// Relay peer transfers whose peers cannot reach each other.
    pub peer_relay: bool,
    /// The NATS server that joins this node to a cluster (`nats://host:4222`); empty runs
    /// one node alone. Every node of a cluster shares one PostgreSQL store and one key.
    pub bus: String,
    /// The cluster's name: its NATS subject prefix (clusters may share a NATS server).
    pub cluster: String,
    /// This node's name in `admin nodes`; empty means host name and port.
    pub node_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "ClassChat".into(),
            data_dir: PathBuf::from("classchat-data"),
            store: None,
            rsa_bits: classchat_wire::crypto::DEFAULT_RSA_BITS,
            max_connections: 10_000,
            max_frame_len: classchat_wire::MAX_FRAME_LEN,
            outbound_queue: 1024,
            room_records: true,
            heartbeat_timeout_ms: 30_000,
            login_timeout_ms: 10_000,
            handshake_timeout_ms: 5_000,
            resume_grace_ms: 300_000,
            max_pre_login: 1024,
            max_pre_login_per_address: 256,
            max_connections_per_address: 1024,
            max_message_len: 16 * 1024,
            messages_per_second: 20,
            message_burst: 50,
            max_rooms_per_user: 100,
            allow_user_broadcast: true,
            admins: Vec::new(),
            max_failed_logins_per_account: 5,
            max_failed_logins_per_address: 20,
            login_window_secs: 60,
            max_catch_up_per_conversation: 1000,
            argon2_m_kib: 8 * 1024,
            argon2_t: 1,
            store_batch: 1024,
            store_queue: 8192,
            discovery: true,
            public_host: String::new(),
            files_dir: PathBuf::new(),
            public_addresses: Vec::new(),
            max_file_size: 2 << 30,
            user_file_quota: 10 << 30,
            total_file_quota: 100 << 30,
            file_retention_secs: 7 * 24 * 3600,
            peer_search_deadline_ms: classchat_wire::peer::SEARCH_DEADLINE_MS,
            peer_searches_per_minute: 20,
            peer_search_burst: 5,
            peer_ticket_ms: classchat_wire::peer::TICKET_LIFETIME_MS,
            peer_relay: true,
            bus: String::new(),
            cluster: "classchat".into(),
            node_name: String::new(),
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are an error so typos do not pass silently.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("bad config {}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(matches!(self.rsa_bits, 2048 | 3072 | 4096), "rsa_bits must be 2048, 3072 or 4096");
        anyhow::ensure!(self.max_connections > 0, "max_connections must be positive");
        anyhow::ensure!(
            (4096..=16 * 1024 * 1024).contains(&self.max_frame_len),
            "max_frame_len must be between 4 KiB and 16 MiB"
        );
        anyhow::ensure!(self.outbound_queue > 0, "outbound_queue must be positive");
        anyhow::ensure!(
            self.max_pre_login > 0
                && self.max_pre_login_per_address > 0
                && self.max_connections_per_address > 0,
            "max_pre_login, max_pre_login_per_address and max_connections_per_address must be positive"
        );
        anyhow::ensure!(self.handshake_timeout_ms > 0, "handshake_timeout_ms must be positive");
        anyhow::ensure!(self.heartbeat_timeout_ms >= 1000, "heartbeat_timeout_ms must be at least 1000");
        anyhow::ensure!(
            self.max_message_len > 0 && self.max_message_len < self.max_frame_len / 2,
            "max_message_len must be positive and well under max_frame_len"
        );
        anyhow::ensure!(self.messages_per_second > 0, "messages_per_second must be positive");
        anyhow::ensure!(self.max_rooms_per_user > 0, "max_rooms_per_user must be positive");
        anyhow::ensure!(
            self.store_batch > 0 && self.store_queue > 0,
            "store_batch and store_queue must be positive"
        );
        if let Some(url) = &self.store {
            crate::store::postgres::parse_url(url)?;
        }
        anyhow::ensure!(self.file_retention_secs > 0, "file_retention_secs must be positive");
        self.public_invite_nodes()?;
        anyhow::ensure!(
            (100..=30_000).contains(&self.peer_search_deadline_ms),
            "peer_search_deadline_ms must be between 100 and 30000"
        );
        anyhow::ensure!(
            self.peer_searches_per_minute > 0 && self.peer_search_burst > 0,
            "peer_searches_per_minute and peer_search_burst must be positive"
        );
        anyhow::ensure!(
            (1..=classchat_wire::peer::TICKET_LIFETIME_MS).contains(&self.peer_ticket_ms),
            "peer_ticket_ms must be between 1 and 30000"
        );
        anyhow::ensure!(
            self.max_file_size <= self.user_file_quota && self.user_file_quota <= self.total_file_quota,
            "need max_file_size <= user_file_quota <= total_file_quota"
        );
        if !self.bus.is_empty() {
            anyhow::ensure!(
                self.bus.starts_with("nats://"),
                "bus must be a NATS URL such as nats://127.0.0.1:4222 (got {:?})",
                self.bus
            );
            anyhow::ensure!(
                self.store.is_some(),
                "bus is set but store is not: the nodes of a cluster share one PostgreSQL store \
                 (store = \"postgres://…\")"
            );
        }
        anyhow::ensure!(
            !self.cluster.is_empty()
                && self.cluster.len() <= 64
                && self.cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "cluster must be 1 to 64 letters, digits, '-' or '_'"
        );
        Ok(())
    }

    /// The directory of shared files' content.
    pub fn files_dir(&self) -> PathBuf {
        if self.files_dir.as_os_str().is_empty() {
            self.data_dir.join(crate::files::FILES_DIR)
        } else {
            self.files_dir.clone()
        }
    }

    /// `public_addresses` as the nodes of an invite (empty when none are set); an entry
    /// that is not `host[:port]`, a repeated one, or more than
    /// [`classchat_wire::invite::MAX_NODES`] are errors.
    pub fn public_invite_nodes(&self) -> anyhow::Result<Vec<classchat_wire::invite::Node>> {
        use classchat_wire::invite::{Node, check_nodes, split_host_port};
        if self.public_addresses.is_empty() {
            return Ok(Vec::new());
        }
        let nodes = self
            .public_addresses
            .iter()
            .map(|entry| {
                split_host_port(entry.trim()).map(|(host, port)| Node::new(host, port)).ok_or_else(|| {
                    anyhow::anyhow!("public_addresses: {entry:?} is not host or host:port (IPv6 in brackets)")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The same checks an app makes when it reads the invite.
        check_nodes(&nodes).map_err(|e| anyhow::anyhow!("public_addresses: {e}"))?;
        Ok(nodes)
    }

    pub fn file_retention(&self) -> Duration {
        Duration::from_secs(self.file_retention_secs)
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_millis(self.login_timeout_ms)
    }

    /// The commented default configuration (packaging/server.toml), as printed by
    /// `classchat-server config` and installed as /etc/classchat/server.toml.
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_default_file_matches_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).expect("packaging/server.toml parses");
        // The packaged file points at the system location; the built-in default is relative.
        let expected = Config { data_dir: PathBuf::from("/var/lib/classchat"), ..Config::default() };
        assert_eq!(toml::to_string(&parsed).ok(), toml::to_string(&expected).ok());
        parsed.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Config>("max_conections = 5").is_err());
        let c: Config = toml::from_str("max_frame_len = 10").expect("parses");
        assert!(c.validate().is_err());
        for bad in ["mysql://db", "postgres://host:notaport/db", "/var/lib/classchat"] {
            let c = Config { store: Some(bad.to_owned()), ..Config::default() };
            let e = c.validate().expect_err(bad).to_string();
            assert!(e.contains("store"), "{bad}: {e}");
        }
        let c =
            Config { store: Some("postgres://classchat@db.lab:5432/chat".to_owned()), ..Config::default() };
        c.validate().expect("a good URL");
        for bad in [r#"["lab:0"]"#, r#"["a:7420", "A"]"#, r#"["la b"]"#, "[]"] {
            let c: Config = toml::from_str(&format!("public_addresses = {bad}")).expect("parses");
            assert_eq!(c.validate().is_err(), bad != "[]", "{bad}");
        }
    }

    #[test]
    fn public_addresses_become_the_nodes_of_one_invite() {
        let c: Config = toml::from_str(r#"public_addresses = ["node1.example.edu", "[2001:db8::2]:9000"]"#)
            .expect("parses");
        let nodes: Vec<String> =
            c.public_invite_nodes().expect("valid").iter().map(ToString::to_string).collect();
        assert_eq!(nodes, ["node1.example.edu:7420", "[2001:db8::2]:9000"]);
    }
}
