//! The server under test: a data dir seeded in the server's schema, and a ClassChat server
//! started on it, either as a child process (`target/release/classchat-server`, so its CPU
//! and memory can be read from /proc apart from the load) or inside this process.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use classchat_server::Config;
use classchat_wire::crypto::ServerKey;
use rusqlite::params;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `classchat-server` as a child process (CPU and RSS measured from /proc).
    Child,
    /// The server in this process, on the same runtime (CPU and RSS include the load).
    Inproc,
}

/// How to start servers; shared by every scenario.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    pub mode: Mode,
    pub bin: PathBuf,
    /// `taskset -c` list for the server process (child mode), e.g. "0".
    pub cpus: Option<String>,
    pub rsa_bits: usize,
    /// Where temporary data dirs go (the filesystem matters for `durable`).
    pub data_root: PathBuf,
    /// Run ClassChat with `room_records = false`: every delivery sealed for its connection.
    pub no_room_records: bool,
}

/// The password-equivalent every seeded account has (see `seed_users`).
pub const AUTH_KEY: [u8; 32] = [7; 32];
pub const DEVICE: &str = "bench";

/// A seeded account and its resume token (rotated by every login).
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub token: Vec<u8>,
}

/// A prepared data dir: key written, schema created, nothing running on it.
#[derive(Debug)]
pub struct DataDir {
    /// Removed when dropped; `None` for a dir kept between runs ([`DataDir::kept`]).
    _temp: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl DataDir {
    pub fn new(opts: &ServerOpts) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_root)?;
        let dir = tempfile::Builder::new().prefix("classchat-bench-").tempdir_in(&opts.data_root)?;
        let path = dir.path().to_owned();
        Self::prepare(opts, &path)?;
        Ok(Self { _temp: Some(dir), path })
    }

    /// A data dir at `path` that outlives the run (a store that is slow to build).
    pub fn kept(opts: &ServerOpts, path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)?;
        Self::prepare(opts, path)?;
        Ok(Self { _temp: None, path: path.to_owned() })
    }

    fn prepare(opts: &ServerOpts, path: &Path) -> anyhow::Result<()> {
        let key = server_key(opts.rsa_bits)?;
        std::fs::write(path.join(classchat_server::KEY_FILE), key.to_pkcs8_der()?)?;
        drop(classchat_server::open_database(path)?);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn db(&self) -> anyhow::Result<rusqlite::Connection> {
        db(self.path())
    }
}

/// The database of a data dir no server runs on, for seeding.
pub fn db(dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = classchat_server::open_database(dir)?;
    // Seeding is bulk work on a throwaway dir: durability per statement is not needed.
    conn.pragma_update(None, "synchronous", "OFF")?;
    Ok(conn)
}

/// One server key per run and size: generating a 3072-bit key takes seconds.
fn server_key(bits: usize) -> anyhow::Result<&'static ServerKey> {
    static KEYS: OnceLock<(usize, ServerKey)> = OnceLock::new();
    if let Some((b, k)) = KEYS.get()
        && *b == bits
    {
        return Ok(k);
    }
    let key = ServerKey::generate(bits)?;
    let (b, k) = KEYS.get_or_init(|| (bits, key));
    anyhow::ensure!(*b == bits, "one RSA key size per run");
    Ok(k)
}

/// The stored Argon2id hash of [`AUTH_KEY`], in the server's 56-byte format
/// (`m_kib BE || t BE || salt || hash`), with the server's default cost.
fn auth_hash() -> anyhow::Result<Vec<u8>> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let defaults = Config::default();
    let (m, t) = (defaults.argon2_m_kib, defaults.argon2_t);
    let salt = *b"classchat-bench!";
    let mut hash = [0u8; 32];
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(m, t, 1, Some(32)).map_err(anyhow::Error::msg)?,
    )
    .hash_password_into(&AUTH_KEY, &salt, &mut hash)
    .map_err(anyhow::Error::msg)?;
    let mut v = Vec::with_capacity(56);
    v.extend_from_slice(&m.to_be_bytes());
    v.extend_from_slice(&t.to_be_bytes());
    v.extend_from_slice(&salt);
    v.extend_from_slice(&hash);
    Ok(v)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seeds `count` accounts named `{prefix}{i}`, each with a device `bench` holding a fresh
/// resume token, and no room memberships (not even `lobby`: a bench user that joined the
/// lobby would hear every other user's presence, which is not what is being measured).
pub fn seed_users(conn: &rusqlite::Connection, prefix: &str, count: usize) -> anyhow::Result<Vec<Account>> {
    let auth = auth_hash()?;
    let tx = conn.unchecked_transaction()?;
    let accounts = new_accounts(prefix, count);
    {
        let mut user =
            tx.prepare("INSERT INTO users(name_lc, name, auth, created) VALUES (?1, ?1, ?2, ?3)")?;
        let mut device =
            tx.prepare("INSERT INTO devices(user_lc, device, token_hash, baseline) VALUES (?1, ?2, ?3, 0)")?;
        for (acc, token_hash) in &accounts {
            user.execute(params![acc.name, auth, now_ms()])?;
            device.execute(params![acc.name, DEVICE, token_hash])?;
        }
    }
    tx.commit()?;
    Ok(accounts.into_iter().map(|(acc, _)| acc).collect())
}

/// `count` accounts named `{prefix}{i}` with fresh resume tokens, and their hashes.
fn new_accounts(prefix: &str, count: usize) -> Vec<(Account, Vec<u8>)> {
    use rand::Rng;
    use sha2::Digest;
    let mut rng = rand::rng();
    (0..count)
        .map(|i| {
            let mut token = vec![0u8; 32];
            rng.fill_bytes(&mut token);
            let hash = sha2::Sha256::digest(&token).to_vec();
            (Account { name: format!("{prefix}{i}"), token }, hash)
        })
        .collect()
}

/// As [`seed_users`], in a PostgreSQL store.
pub fn seed_users_pg(db: &mut postgres::Client, prefix: &str, count: usize) -> anyhow::Result<Vec<Account>> {
    let auth = auth_hash()?;
    let mut tx = db.transaction()?;
    let accounts = new_accounts(prefix, count);
    for (acc, token_hash) in &accounts {
        tx.execute(
            "INSERT INTO users(name_lc, name, auth, created) VALUES ($1, $1, $2, $3)",
            &[&acc.name, &auth, &now_ms()],
        )?;
        tx.execute(
            "INSERT INTO devices(user_lc, device, token_hash, baseline) VALUES ($1, $2, $3, 0)",
            &[&acc.name, &DEVICE, token_hash],
        )?;
    }
    tx.commit()?;
    Ok(accounts.into_iter().map(|(acc, _)| acc).collect())
}

/// As [`seed_room`], in a PostgreSQL store.
pub fn seed_room_pg(db: &mut postgres::Client, name: &str, members: &[&str]) -> anyhow::Result<()> {
    let mut tx = db.transaction()?;
    tx.execute(
        "INSERT INTO rooms(name_lc, name, topic, password, admin_lc, created) VALUES ($1, $1, 'bench', NULL, $2, $3)",
        &[&name, &members.first().copied().unwrap_or(""), &now_ms()],
    )?;
    for user in members {
        tx.execute(
            "INSERT INTO room_members(room_lc, user_lc, joined_id) VALUES ($1, $2, 0)",
            &[&name, user],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Creates room `name` (lowercase) with `members` (by account name) and `admin`.
pub fn seed_room(conn: &rusqlite::Connection, name: &str, members: &[&str]) -> anyhow::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO rooms(name_lc, name, topic, password, admin_lc, created) VALUES (?1, ?1, 'bench', NULL, ?2, ?3)",
        params![name, members.first().copied().unwrap_or(""), now_ms()],
    )?;
    {
        let mut m = tx.prepare("INSERT INTO room_members(room_lc, user_lc, joined_id) VALUES (?1, ?2, 0)")?;
        for user in members {
            m.execute(params![name, user])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The configuration every benchmarked server runs with: limits that would throttle a
/// load generator are lifted (per-user message rate, connection count, failed-login
/// throttles, login deadline under a connection storm); discovery is off. Everything that
/// costs work per message (encryption, `synchronous=FULL`, group commit) is the default.
pub fn bench_config(data_dir: &Path, rsa_bits: usize) -> Config {
    Config {
        server_name: "classchat-bench".into(),
        data_dir: data_dir.to_owned(),
        rsa_bits,
        max_connections: 200_000,
        login_timeout_ms: 120_000,
        heartbeat_timeout_ms: 120_000,
        messages_per_second: 10_000_000,
        message_burst: 10_000_000,
        max_failed_logins_per_account: 1_000_000,
        max_failed_logins_per_address: 1_000_000,
        max_pre_login: 200_000,
        max_pre_login_per_address: 200_000,
        max_connections_per_address: 200_000,
        handshake_timeout_ms: 120_000,
        discovery: false,
        ..Config::default()
    }
}

/// A running server.
pub struct Target {
    pub addr: SocketAddr,
    /// The process whose CPU and RSS are the server's (this process in `inproc` mode).
    pub pid: u32,
    kind: Kind,
}

enum Kind {
    Child(Child),
    Inproc { stop: tokio::sync::oneshot::Sender<()>, task: tokio::task::JoinHandle<anyhow::Result<()>> },
}

impl Target {
    pub async fn start(opts: &ServerOpts, data: &DataDir) -> anyhow::Result<Target> {
        Self::start_with(opts, data, |_| {}).await
    }

    /// As [`Target::start`], with changes to the bench configuration.
    pub async fn start_with(
        opts: &ServerOpts,
        data: &DataDir,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Target> {
        Self::start_on(opts, data, "127.0.0.1:0", tweak).await
    }

    /// As [`Target::start_with`], listening on `listen` (an address of a veth link, for
    /// the peers in network namespaces).
    pub async fn start_on(
        opts: &ServerOpts,
        data: &DataDir,
        listen: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Target> {
        let mut config = bench_config(data.path(), opts.rsa_bits);
        config.room_records = !opts.no_room_records;
        tweak(&mut config);
        match opts.mode {
            Mode::Inproc => {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                let addr = listener.local_addr()?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(classchat_server::run(listener, config, async move {
                    let _ = stopped.await;
                }));
                wait_admin_socket(data.path()).await;
                Ok(Target { addr, pid: std::process::id(), kind: Kind::Inproc { stop, task } })
            }
            Mode::Child => {
                let path = data.path().join("bench.toml");
                std::fs::write(&path, toml::to_string(&config)?)?;
                let log = std::fs::File::create(data.path().join("server.log"))?;
                let mut cmd = match &opts.cpus {
                    Some(cpus) => {
                        let mut c = Command::new("taskset");
                        c.args(["-c", cpus]).arg(&opts.bin);
                        c
                    }
                    None => Command::new(&opts.bin),
                };
                cmd.args(["--listen", listen, "--config"])
                    .arg(&path)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log);
                let mut child = cmd.spawn().with_context(|| {
                    format!("cannot start {} (build it: cargo build --release)", opts.bin.display())
                })?;
                let pid = child.id();
                let stdout = child.stdout.take().context("child stdout")?;
                // The server prints `... listening on ADDR` once bound; read it off a thread.
                let addr = tokio::task::spawn_blocking(move || -> anyhow::Result<SocketAddr> {
                    let mut lines = std::io::BufReader::new(stdout).lines();
                    while let Some(line) = lines.next().transpose()? {
                        if let Some(a) = line.split("listening on ").nth(1) {
                            // Keep draining stdout so the server never blocks on it.
                            std::thread::spawn(move || for _ in lines {});
                            return Ok(a.trim().parse()?);
                        }
                    }
                    bail!("the server exited before listening (see its server.log)")
                })
                .await??;
                Ok(Target { addr, pid, kind: Kind::Child(child) })
            }
        }
    }

    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// SIGKILL, no goodbye (child mode only); returns once the process is gone.
    pub async fn kill9(self) -> anyhow::Result<()> {
        match self.kind {
            Kind::Child(mut child) => {
                child.kill()?;
                tokio::task::spawn_blocking(move || child.wait()).await??;
                Ok(())
            }
            Kind::Inproc { .. } => bail!("a server in this process cannot be killed"),
        }
    }

    /// Stops the server gracefully (SIGTERM; killed if it does not exit within 20 s).
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.kind {
            Kind::Inproc { stop, task } => {
                let _ = stop.send(());
                task.await??;
            }
            Kind::Child(mut child) => {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
                let waited = tokio::task::spawn_blocking(move || {
                    for _ in 0..200 {
                        if let Ok(Some(_)) = child.try_wait() {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let _ = child.kill();
                    child.wait().map(drop)
                })
                .await?;
                waited?;
            }
        }
        Ok(())
    }
}

async fn wait_admin_socket(data: &Path) {
    let socket = classchat_server::admin::socket_path(data);
    for _ in 0..200 {
        if socket.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server binary next to this one (both are built by `cargo build --release`).
pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("classchat-server")))
        .unwrap_or_else(|| PathBuf::from("target/release/classchat-server"))
}
