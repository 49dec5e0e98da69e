//! Test harness: a real server on 127.0.0.1:0 with a temp data dir, and real clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use classchat_server::Config;
use classchat_wire::crypto::ServerKey;
use classchat_wire::{Client, ClientConfig, Event, TrustPolicy, Welcome};
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
        let task = tokio::spawn(classchat_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
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
    pub async fn expect_event(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return ev,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{}: connection closed while waiting for {what}", self.name),
                Err(_) => panic!("{}: timed out waiting for {what}", self.name),
            }
        }
    }

    /// Asserts that no event matching `pred` arrives within `wait`.
    pub async fn expect_no_event(&mut self, wait: Duration, mut pred: impl FnMut(&Event) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert!(!pred(&ev), "{}: unexpected event {ev:?}", self.name);
        }
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
