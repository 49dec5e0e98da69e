//! Test harness: a real server on 127.0.0.1:0 with a temp data dir, and real clients.
#![allow(dead_code)]

pub mod peers;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use classchat_server::Config;
use classchat_wire::connection::{Connection, SecureReader, SecureWriter};
use classchat_wire::crypto::ServerKey;
use classchat_wire::{
    Client, ClientConfig, ClientMsg, ErrorCode, Event, Request, Response, ServerMsg, TrustPolicy, Welcome,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

/// One 2048-bit key per test binary: generating one per test would dominate run time.
pub fn server_key() -> &'static ServerKey {
    static KEY: OnceLock<ServerKey> = OnceLock::new();
    KEY.get_or_init(|| ServerKey::generate(2048).expect("keygen"))
}

/// A config suited to tests: cheap Argon2 on the server, the cached key.
pub fn test_config(data: &std::path::Path) -> Config {
    Config { data_dir: data.to_owned(), argon2_m_kib: 64, argon2_t: 1, rsa_bits: 2048, ..Config::default() }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(tempfile::tempdir().expect("tempdir"), |_| {}).await
    }

    /// Starts a server on `data` (reuse a stopped server's dir to restart it).
    pub async fn start_with(data: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        let key_path = data.path().join(classchat_server::KEY_FILE);
        if !key_path.exists() {
            std::fs::write(&key_path, server_key().to_pkcs8_der().expect("der")).expect("write key");
        }
        let mut config = test_config(data.path());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let socket = classchat_server::admin::socket_path(&config.data_dir);
        let task = tokio::spawn(classchat_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        // The listener accepts at once, but the admin socket appears only once the server
        // has opened its data dir: wait for it, so admin commands do not race the start.
        eventually(Duration::from_secs(10), "the admin socket", || {
            let up = socket.exists();
            async move { up }
        })
        .await;
        Self { addr, data, stop: Some(stop), task: Some(task) }
    }

    /// Graceful shutdown; returns the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran cleanly");
        }
        tempfile::tempdir()
            .map(|placeholder| std::mem::replace(&mut self.data, placeholder))
            .expect("tempdir")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.addr.to_string(), TrustPolicy::Pinned(*server_key().fingerprint()))
    }

    pub async fn connect(&self) -> (Client, mpsc::Receiver<Event>) {
        Client::connect(self.client_config()).await.expect("connect")
    }

    /// Registers `name` and returns the logged-in user.
    pub async fn user(&self, name: &str) -> TestUser {
        let (client, events) = self.connect().await;
        let welcome = client.register(name, &auth(name), "dev-1").await.expect("register");
        TestUser { name: name.to_owned(), client, events, welcome }
    }

    /// Logs an existing user in again on a new connection (device `device`).
    pub async fn login(&self, name: &str, device: &str) -> TestUser {
        let (client, events) = self.connect().await;
        let welcome = client.login(name, &auth(name), device).await.expect("login");
        TestUser { name: name.to_owned(), client, events, welcome }
    }
}

/// A stand-in for the Argon2-derived auth key: tests do not need the client-side cost.
pub fn auth(name: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(format!("password of {}", name.to_ascii_lowercase())).into()
}

pub struct TestUser {
    pub name: String,
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub welcome: Welcome,
}

impl TestUser {
    /// Waits (at most 10 s) for the first event matching `pred`, skipping others.
    pub async fn expect_event(&mut self, what: &str, pred: impl FnMut(&Event) -> bool) -> Event {
        self.expect_event_within(Duration::from_secs(10), what, pred).await
    }

    /// As [`TestUser::expect_event`], waiting at most `wait`.
    pub async fn expect_event_within(
        &mut self,
        wait: Duration,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return ev,
                Ok(Some(_)) => {}
                Ok(None) => panic!("{}: connection closed while waiting for {what}", self.name),
                Err(_) => panic!("{}: timed out waiting for {what}", self.name),
            }
        }
    }

    /// Every event up to and including `Event::CaughtUp` (at most 10 s).
    pub async fn until_caught_up(&mut self) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::CaughtUp)) => return out,
                Ok(Some(ev)) => out.push(ev),
                Ok(None) => panic!("{}: connection closed before CaughtUp", self.name),
                Err(_) => panic!("{}: timed out waiting for CaughtUp", self.name),
            }
        }
    }

    /// Sends a request that must succeed.
    pub async fn ok(&self, req: Request) -> Response {
        let what = format!("{req:?}");
        self.client.request(req).await.unwrap_or_else(|e| panic!("{}: {what} failed: {e}", self.name))
    }

    /// Sends a request that must fail, and returns its error code.
    pub async fn err(&self, req: Request) -> ErrorCode {
        code(self.client.request(req).await)
    }

    /// Sends a room message that must be accepted; returns its id.
    pub async fn say(&self, room: &str, text: &str) -> u64 {
        match self.ok(Request::SendRoom { room: room.into(), text: text.into(), reply_to: None }).await {
            Response::Sent { id, .. } => id,
            other => panic!("{}: expected Sent, got {other:?}", self.name),
        }
    }

    /// Creates a public room (the caller becomes its admin).
    pub async fn create_room(&self, name: &str) {
        self.ok(Request::CreateRoom { name: name.into(), topic: String::new(), password: None }).await;
    }

    pub async fn join(&self, name: &str) {
        self.ok(Request::JoinRoom { name: name.into(), password: None }).await;
    }

    /// Asserts that no event matching `pred` arrives within `wait`.
    pub async fn expect_no_event(&mut self, wait: Duration, mut pred: impl FnMut(&Event) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert!(!pred(&ev), "{}: unexpected event {ev:?}", self.name);
        }
    }
}

/// The ids and texts (other bodies in their debug form) of a conversation's newest 200
/// messages, oldest first.
pub async fn history(user: &TestUser, conv: classchat_wire::Conv) -> Vec<(u64, String)> {
    match user.ok(Request::History { conv, before: None, limit: 200 }).await {
        Response::History { messages, .. } => messages
            .into_iter()
            .rev()
            .map(|m| {
                let text = match m.body {
                    classchat_wire::Body::Text { text } => text,
                    other => format!("{other:?}"),
                };
                (m.id, text)
            })
            .collect(),
        other => panic!("expected History, got {other:?}"),
    }
}

/// The text of a text message event, if it is one.
pub fn text_of(ev: &Event) -> Option<&str> {
    match ev {
        Event::Message { message } => match &message.body {
            classchat_wire::Body::Text { text } => Some(text),
            _ => None,
        },
        _ => None,
    }
}

/// The error code of a failed request; panics on success or a non-server error.
pub fn code<T: std::fmt::Debug>(result: classchat_wire::Result<T>) -> ErrorCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("expected an error reply, got {e}")),
        Ok(r) => panic!("expected an error reply, got {r:?}"),
    }
}

/// Whether `ev` is a message in room `room` (any body).
pub fn in_room(ev: &Event, room: &str) -> bool {
    matches!(ev, Event::Message { message } if message.conv == classchat_wire::Conv::room(room))
}

/// Runs the client side of the handshake over any halves, accepting any server key.
/// Used to build clients that misbehave in ways the real client cannot.
pub async fn raw_handshake<R, W>(r: R, w: W) -> (SecureReader<R>, SecureWriter<W>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let conn = Connection::from_parts(r, w, classchat_wire::MAX_FRAME_LEN);
    let (secure, _, _) = tokio::time::timeout(Duration::from_secs(10), conn.connect(|_, _| Ok(())))
        .await
        .expect("handshake in time")
        .expect("handshake");
    secure.split()
}

/// Registers `name` with a hand-made request (id 1) and reads up to the `Welcome`, and
/// nothing after it.
pub async fn raw_register<R, W>(reader: &mut SecureReader<R>, writer: &mut SecureWriter<W>, name: &str)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let body =
        Request::Register { username: name.into(), auth_key: auth(name).to_vec(), device: "raw".into() };
    writer.send(&ClientMsg::Request { id: 1, body }).await.expect("send register");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, reader.recv::<ServerMsg>())
            .await
            .expect("welcome in time")
            .expect("read")
            .expect("server closed before the welcome");
        match msg {
            ServerMsg::Ok { id: 1, body: Response::Welcome(_) } => return,
            ServerMsg::Err { code, message, .. } => panic!("register {name}: {code}: {message}"),
            _ => {}
        }
    }
}

/// Reads raw bytes until the peer closes (EOF or reset). Panics if it stays open for `within`.
pub async fn expect_closed(mut r: impl AsyncRead + Unpin, within: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
}

/// Polls `check` every 20 ms until it returns true; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names in a `Users` reply, with their online flags.
pub fn users_of(resp: &Response) -> Vec<(String, bool)> {
    match resp {
        Response::Users { users } => users.iter().map(|u| (u.name.clone(), u.online)).collect(),
        other => panic!("expected Users, got {other:?}"),
    }
}

/// The server binary run as a child process (durability and CLI tests).
pub struct ChildServer {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// The key fingerprint the server printed at startup.
    pub fingerprint: String,
}

/// The path of the server binary built for these tests.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_classchat-server");

impl ChildServer {
    /// Starts `classchat-server --listen 127.0.0.1:0 --data DIR --config DIR/server.toml`
    /// with cheap Argon2, no rate limit to speak of, no mDNS announcement, and the cached
    /// key (no keygen).
    pub async fn spawn(data: &std::path::Path) -> Self {
        let key_path = data.join(classchat_server::KEY_FILE);
        if !key_path.exists() {
            std::fs::write(&key_path, server_key().to_pkcs8_der().expect("der")).expect("write key");
        }
        Self::spawn_keeping_key(data).await
    }

    /// As [`ChildServer::spawn`], but leaves the key alone: a fresh data dir makes the
    /// server create one.
    pub async fn spawn_keeping_key(data: &std::path::Path) -> Self {
        Self::spawn_inner(data, "", false).await.0
    }

    /// As [`ChildServer::spawn`] with `extra` lines appended to its server.toml, logging
    /// at `info` to the returned stderr.
    pub async fn spawn_logged(data: &std::path::Path, extra: &str) -> (Self, tokio::process::ChildStderr) {
        let key_path = data.join(classchat_server::KEY_FILE);
        if !key_path.exists() {
            std::fs::write(&key_path, server_key().to_pkcs8_der().expect("der")).expect("write key");
        }
        let (server, stderr) = Self::spawn_inner(data, extra, true).await;
        (server, stderr.expect("piped stderr"))
    }

    async fn spawn_inner(
        data: &std::path::Path,
        extra: &str,
        logged: bool,
    ) -> (Self, Option<tokio::process::ChildStderr>) {
        let config = data.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "argon2_m_kib = 64\nrsa_bits = 2048\nmessages_per_second = 1000000\nmessage_burst = 1000000\n\
                 discovery = false\n{extra}"
            ),
        )
        .expect("write config");
        let mut child = tokio::process::Command::new(SERVER_BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", if logged { "info" } else { "warn" })
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(if logged { std::process::Stdio::piped() } else { std::process::Stdio::inherit() })
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the server binary");
        let stderr = child.stderr.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        // "… listening on ADDR", then the data dir, then the fingerprint on the line after
        // its heading.
        let (addr, fingerprint) = tokio::time::timeout(Duration::from_secs(60), async {
            let mut addr = None;
            let mut fingerprint_next = false;
            loop {
                let line = lines.next_line().await.expect("read stdout").expect("server exited early");
                if fingerprint_next {
                    let addr = addr.expect("the address comes first");
                    return (addr, line.trim().to_owned());
                }
                if let Some((_, a)) = line.split_once("listening on ") {
                    addr = Some(a.trim().parse::<SocketAddr>().expect("address"));
                }
                fingerprint_next = line.starts_with("Server key fingerprint");
            }
        })
        .await
        .expect("the server printed its address and fingerprint in time");
        // Keep draining stdout: a closed pipe would make the server's next print fail.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (Self { child, addr, fingerprint }, stderr)
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.addr.to_string(), TrustPolicy::Pinned(*server_key().fingerprint()))
    }

    pub async fn connect(&self) -> (Client, mpsc::Receiver<Event>) {
        Client::connect(self.client_config()).await.expect("connect")
    }

    /// SIGKILL, no goodbye.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("kill");
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the server died in time")
            .expect("wait");
    }
}

/// Runs the server binary with `args` to completion; returns (success, stdout, stderr).
pub async fn run_cli(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(SERVER_BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command finished in time")
    .expect("run the server binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
