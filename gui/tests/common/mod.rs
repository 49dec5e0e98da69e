//! Shared by the GUI tests: a real server in-process on 127.0.0.1, the real app in an
//! egui_kittest harness, and helpers that step the harness until something shows up.

#![allow(dead_code)]

pub mod cluster;
pub mod dropped;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use classchat::e2e::WireSender;
use classchat::net::Backoff;
use classchat::{AppConfig, ClassChatApp};
use classchat_wire::crypto::ServerKey;
use classchat_wire::{Client, ClientConfig, Event, TrustPolicy};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use tokio::sync::{mpsc, oneshot};

/// Identity key size in tests.
pub const TEST_KEY_BITS: usize = 2048;

/// How long any one wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A 2048-bit key, generated once per test binary (key generation is slow).
pub fn server_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        ServerKey::generate(2048).and_then(|k| k.to_pkcs8_der()).expect("generate a server key")
    })
}

/// A second, different key: the server "changed" its key.
pub fn other_server_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        ServerKey::generate(2048).and_then(|k| k.to_pkcs8_der()).expect("generate a server key")
    })
}

pub fn fingerprint_of(key_der: &[u8]) -> classchat_wire::Fingerprint {
    *ServerKey::from_pkcs8_der(key_der).expect("parse key").fingerprint()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A real server on 127.0.0.1, stoppable and restartable on the same port and data dir.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    rt: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with `key` in `data_dir`, on `addr` (port 0 for any).
    pub fn start(rt: &tokio::runtime::Runtime, data_dir: &Path, key: &[u8], addr: SocketAddr) -> Self {
        Self::start_with(rt, data_dir, key, addr, |_| {})
    }

    /// Like [`Self::start`], with changes to the configuration.
    pub fn start_with(
        rt: &tokio::runtime::Runtime,
        data_dir: &Path,
        key: &[u8],
        addr: SocketAddr,
        tweak: impl FnOnce(&mut classchat_server::Config),
    ) -> Self {
        Self::start_tweaked(rt.handle(), data_dir, key, addr, tweak)
    }

    /// Like [`Self::start`], on a runtime known by its handle.
    pub fn start_on(rt: &tokio::runtime::Handle, data_dir: &Path, key: &[u8], addr: SocketAddr) -> Self {
        Self::start_tweaked(rt, data_dir, key, addr, |_| {})
    }

    fn start_tweaked(
        rt: &tokio::runtime::Handle,
        data_dir: &Path,
        key: &[u8],
        addr: SocketAddr,
        tweak: impl FnOnce(&mut classchat_server::Config),
    ) -> Self {
        std::fs::create_dir_all(data_dir).expect("data dir");
        std::fs::write(data_dir.join("server_key.der"), key).expect("write server key");
        let listener = rt.block_on(async {
            // The port of a server just stopped may take a moment to be free again.
            let deadline = Instant::now() + DEADLINE;
            loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("bind {addr}: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("bind {addr}: {e}"),
                }
            }
        });
        let addr = listener.local_addr().expect("local addr");
        let mut config = classchat_server::Config {
            server_name: "Test Lab".into(),
            data_dir: data_dir.to_path_buf(),
            rsa_bits: 2048,
            ..Default::default()
        };
        tweak(&mut config);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = rt.spawn(classchat_server::run(listener, config, async move {
            let _ = stop_rx.await;
        }));
        Self { addr, data_dir: data_dir.to_path_buf(), rt: rt.clone(), stop: Some(stop_tx), task: Some(task) }
    }

    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// Shuts the server down and waits until it has.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = self.rt.block_on(async { tokio::time::timeout(DEADLINE, task).await });
            match result {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("server failed: {e:#}"),
                Ok(Err(e)) => panic!("server task: {e}"),
                Err(_) => panic!("server did not stop within {DEADLINE:?}"),
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real app, its own data dir, wired to `rt`.
pub fn app(rt: &tokio::runtime::Runtime, data_dir: &Path, server: &str) -> Harness<'static, ClassChatApp> {
    app_with(rt, data_dir, |config| config.server = Some(server.to_owned()))
}

/// [`app`] with the configuration adjusted by `adjust` first (no server address preset).
pub fn app_with(
    rt: &tokio::runtime::Runtime,
    data_dir: &Path,
    adjust: impl FnOnce(&mut AppConfig),
) -> Harness<'static, ClassChatApp> {
    let mut config = AppConfig::new(data_dir.to_path_buf(), rt.handle().clone());
    config.auto_resume = false;
    config.notifier = classchat::app::Notifier::Off;
    config.backoff = Backoff { min: Duration::from_millis(200), max: Duration::from_secs(1) };
    // 2048-bit identity keys: made in a fraction of the time of the real 3072.
    config.identity_bits = TEST_KEY_BITS;
    adjust(&mut config);
    Harness::builder().with_size([1200.0, 800.0]).build_eframe(move |cc| ClassChatApp::new(cc, config))
}

/// Steps the harness until `cond` holds; fails the test after [`DEADLINE`].
pub fn wait_until(
    h: &mut Harness<'static, ClassChatApp>,
    what: &str,
    mut cond: impl FnMut(&Harness<'static, ClassChatApp>) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        h.step();
        if cond(h) {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; app state: {:?}\non screen: {:?}", h.state(), labels(h));
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// Waits until some widget's label contains `text`.
pub fn wait_for_text(h: &mut Harness<'static, ClassChatApp>, text: &str) {
    wait_until(h, &format!("{text:?} on screen"), |h| has_text(h, text));
}

/// Every label on screen (for failure messages).
pub fn labels(h: &Harness<'static, ClassChatApp>) -> Vec<String> {
    use egui_kittest::kittest::NodeT;
    h.query_all_by(|_| true).filter_map(|n| n.accesskit_node().label()).filter(|l| !l.is_empty()).collect()
}

/// Does some widget's label contain `text`?
pub fn has_text(h: &Harness<'static, ClassChatApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Steps a few frames so clicks and typing take effect.
pub fn settle(h: &mut Harness<'static, ClassChatApp>) {
    for _ in 0..3 {
        h.step();
    }
}

/// Types into the field with accessible name `label`, replacing nothing (fields start empty).
pub fn type_into(h: &mut Harness<'static, ClassChatApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.step();
    h.get_by_label(label).type_text(text);
    settle(h);
}

pub fn click(h: &mut Harness<'static, ClassChatApp>, label: &str) {
    // A window or dialog is laid out invisibly on its first frame: let it settle first.
    settle(h);
    h.get_by_label(label).click();
    settle(h);
}

/// Fills the connect form and presses "Create account" (or "Log in").
pub fn submit_login(h: &mut Harness<'static, ClassChatApp>, user: &str, password: &str, register: bool) {
    type_into(h, "Username", user);
    type_into(h, "Password", password);
    click(h, if register { "Create account" } else { "Log in" });
}

/// Logs `user` in through the connect screen of an app that has not seen the server yet
/// (a new machine), trusting it on first contact.
pub fn log_in_on_new_machine(h: &mut Harness<'static, ClassChatApp>, user: &str, password: &str) {
    submit_login(h, user, password, false);
    wait_for_text(h, "Trust this server");
    click(h, "Trust this server");
}

/// Registers `user` through the connect screen, trusting the server on first contact.
pub fn register(h: &mut Harness<'static, ClassChatApp>, user: &str, password: &str) {
    submit_login(h, user, password, true);
    wait_for_text(h, "Trust this server");
    click(h, "Trust this server");
    wait_for_text(h, &format!("Signed in as {user}"));
    // The lobby is open and its members have arrived.
    wait_for_text(h, "#lobby");
}

/// A second user, through the real wire client.
pub struct WireUser {
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub name: String,
}

/// Registers `name` (password `wire-password-1`) through the real wire client.
pub async fn wire_user(addr: &str, name: &str) -> WireUser {
    wire_session(addr, name, "wire-password-1", true).await
}

/// Logs an existing account in through the real wire client.
pub async fn wire_login(addr: &str, name: &str, password: &str) -> WireUser {
    wire_session(addr, name, password, false).await
}

async fn wire_session(addr: &str, name: &str, password: &str, register: bool) -> WireUser {
    let (client, events) =
        Client::connect(ClientConfig::new(addr, TrustPolicy::AnyKey)).await.expect("wire client connects");
    let key = tokio::task::spawn_blocking({
        let (name, password) = (name.to_owned(), password.to_owned());
        move || classchat_wire::auth::auth_key(&name, &password).expect("auth key")
    })
    .await
    .expect("argon2 task");
    if register {
        client.register(name, &key, "test-device").await.expect("register wire user");
    } else {
        client.login(name, &key, "test-device").await.expect("wire user logs in");
    }
    WireUser { client, events, name: name.to_owned() }
}

impl WireUser {
    /// Publishes an identity key for this user, so the app can send them DMs.
    pub async fn publish_key(&self) -> WireSender {
        WireSender::publish(&self.client, &self.name, "wire-password-1", TEST_KEY_BITS)
            .await
            .expect("publish key")
    }

    /// Waits for a direct message while the app keeps running (what it sends may wait
    /// for a frame, e.g. after a key was accepted); returns its sender and envelope bytes.
    pub fn expect_dm(&mut self, h: &mut Harness<'static, ClassChatApp>) -> (String, Vec<u8>) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.events.try_recv() {
                Ok(Event::Message { message }) => {
                    if let classchat_wire::Body::Opaque { data } = message.body {
                        return (message.from, data);
                    }
                }
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => panic!("{}'s connection closed", self.name),
                Err(mpsc::error::TryRecvError::Empty) => {
                    assert!(Instant::now() < deadline, "{} never got a DM", self.name);
                    h.step();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// Waits for a message event whose text is `text`.
    pub async fn expect_text(&mut self, text: &str) -> classchat_wire::ChatMessage {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{} never got {text:?}", self.name))
                .unwrap_or_else(|| panic!("{}'s connection closed", self.name));
            if let Event::Message { message } = ev
                && let classchat_wire::Body::Text { text: t } = &message.body
                && t == text
            {
                return message;
            }
        }
    }
}

/// 127.0.0.1 on a port the system picks.
pub fn any_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server on `dir/server` that a test can stop and start again on the same address,
/// and alice registered in an app (data in `dir/alice`).
pub struct RestartableLab {
    pub server: TestServer,
    pub server_dir: std::path::PathBuf,
    pub addr: std::net::SocketAddr,
    pub alice: Harness<'static, ClassChatApp>,
}

pub fn restartable_lab(rt: &tokio::runtime::Runtime, dir: &Path) -> RestartableLab {
    let server_dir = dir.join("server");
    let server = TestServer::start(rt, &server_dir, server_key(), any_port());
    let addr = server.addr;
    let mut alice = app(rt, &dir.join("alice"), &addr.to_string());
    register(&mut alice, "alice", "correct horse");
    RestartableLab { server, server_dir, addr, alice }
}

/// Opens the DM with `user` through the Ctrl+K switcher.
pub fn open_dm(h: &mut Harness<'static, classchat::ClassChatApp>, user: &str) {
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::K);
    wait_until(h, "the switcher to open", |h| {
        matches!(h.state().dialog, Some(classchat::ui::dialogs::Dialog::Switcher(_)))
    });
    settle(h);
    h.get_by_label("Jump to").type_text(user);
    // The people list arrives from the server after login: Enter on an empty list does
    // nothing, so wait until the switcher offers `user`.
    wait_until(h, "the switcher to offer the user", |h| {
        let wanted = user.to_lowercase();
        classchat::ui::dialogs::switcher_matches(&h.state().model, user)
            .iter()
            .any(|(title, _)| title.to_lowercase().trim_start_matches('@').starts_with(&wanted))
    });
    settle(h);
    h.key_press(egui::Key::Enter);
    wait_until(
        h,
        "the DM to open",
        |h| matches!(&h.state().model.current, Some(classchat_wire::Conv::Direct { user: u }) if u.eq_ignore_ascii_case(user)),
    );
}

/// Every file under `dir`, read whole.
pub fn all_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
