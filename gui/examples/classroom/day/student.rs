//! A simulated student (or the instructor): a real `classchat_wire::Client` with the full
//! handshake, registered with a password-derived key, that stays connected the way the
//! app's net task does: when the connection drops it waits out the app's own [`Backoff`]
//! and logs in again with its resume token. Everything it receives is recorded by message
//! id, so the day can check what arrived, and how often.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use classchat::net::Backoff;
use classchat_wire::{
    ChatMessage, Client, ClientConfig, Error, ErrorCode, Event, MessageId, Request, Response, TrustPolicy,
};
use tokio::sync::{mpsc, watch};

/// Every account's password (the examples' common one, so `prepare_app` can log in).
pub use crate::common::PASSWORD;

/// How long a student keeps trying to reconnect before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
/// Most messages one student records (the day sends far fewer).
const MAX_RECORDED: usize = 100_000;

/// What a student received.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Every message, in arrival order; a message delivered twice is here twice.
    pub messages: Vec<ChatMessage>,
    /// How often each message id arrived.
    pub count: HashMap<MessageId, u32>,
    /// `RemovedFromRoom` events: (room, reason).
    pub removed: Vec<(String, String)>,
}

impl Inbox {
    fn record(&mut self, m: ChatMessage) {
        if self.messages.len() < MAX_RECORDED {
            *self.count.entry(m.id).or_default() += 1;
            self.messages.push(m);
        }
    }
}

#[derive(Debug)]
pub struct Student {
    pub name: String,
    device: String,
    config: ClientConfig,
    token: Mutex<Vec<u8>>,
    session: watch::Sender<Option<Client>>,
    pub inbox: Mutex<Inbox>,
    /// Logins (register, resume) that finished their catch-up.
    pub logins: AtomicU32,
    /// Why the student stopped reconnecting, if it did.
    pub gave_up: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
    running: AtomicBool,
}

impl Student {
    pub fn new(name: &str, device: &str, config: ClientConfig) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            device: device.to_owned(),
            config,
            token: Mutex::default(),
            session: watch::channel(None).0,
            inbox: Mutex::default(),
            logins: AtomicU32::new(0),
            gave_up: Mutex::new(None),
            stop: watch::channel(false).0,
            running: AtomicBool::new(false),
        })
    }

    /// Connects, registers with the password-derived key and starts staying connected.
    pub async fn register(self: &Arc<Self>) -> anyhow::Result<()> {
        let name = self.name.clone();
        let key =
            tokio::task::spawn_blocking(move || classchat_wire::auth::auth_key(&name, PASSWORD)).await??;
        let (client, events) = Client::connect(self.config.clone()).await.context("connect")?;
        let welcome = client.register(&self.name, &key, &self.device).await.context("register")?;
        *lock(&self.token) = welcome.resume_token;
        self.start(Some((client, events)));
        Ok(())
    }

    /// Logs back in with the resume token (after [`Student::go_offline`]).
    pub fn come_back(self: &Arc<Self>) {
        self.start(None);
    }

    fn start(self: &Arc<Self>, first: Option<(Client, mpsc::Receiver<Event>)>) {
        self.stop.send_replace(false);
        self.running.store(true, Ordering::SeqCst);
        tokio::spawn(Arc::clone(self).stay_connected(first));
    }

    /// Closes the session cleanly (acknowledgements flushed) and stays away.
    pub async fn go_offline(&self) {
        self.stop.send_replace(true);
        if let Some(client) = self.session.send_replace(None) {
            client.close().await;
        }
        // Wait for the supervisor to see the stop, so a later `come_back` starts afresh.
        for _ in 0..100 {
            if !self.running.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The settings of this student's connections.
    pub fn config(&self) -> ClientConfig {
        self.config.clone()
    }

    /// Waits up to `timeout` for a session.
    pub async fn wait_client(&self, timeout: Duration) -> anyhow::Result<Client> {
        let mut rx = self.session.subscribe();
        let r =
            tokio::time::timeout(timeout, rx.wait_for(|c| c.as_ref().is_some_and(|c| !c.is_closed()))).await;
        match r {
            Ok(Ok(c)) => c.clone().context("no session"),
            _ => anyhow::bail!("{} has no session after {timeout:?}", self.name),
        }
    }

    /// A request on the current session (waiting up to 30 s for one).
    pub async fn request(&self, body: Request) -> classchat_wire::Result<Response> {
        let client =
            self.wait_client(Duration::from_secs(30)).await.map_err(|e| Error::Closed(e.to_string()))?;
        client.request(body).await
    }

    pub fn count(&self, id: MessageId) -> u32 {
        lock(&self.inbox).count.get(&id).copied().unwrap_or(0)
    }

    /// The first recorded message that matches `f`.
    pub fn find(&self, f: impl Fn(&ChatMessage) -> bool) -> Option<ChatMessage> {
        lock(&self.inbox).messages.iter().find(|m| f(m)).cloned()
    }

    /// Keeps a session open until stopped: the app's reconnect loop, with its backoff,
    /// logging in again with the latest resume token.
    async fn stay_connected(self: Arc<Self>, mut first: Option<(Client, mpsc::Receiver<Event>)>) {
        let backoff = Backoff::default();
        let mut stop = self.stop.subscribe();
        let mut attempt = 0u32;
        let mut since = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let opened = match first.take() {
                Some(session) => Ok((session, true)),
                None => self.resume().await.map(|s| (s, false)),
            };
            match opened {
                Ok(((client, events), registered)) => {
                    attempt = 0;
                    // Ends by itself when the session's events end (after the last one).
                    tokio::spawn(Arc::clone(&self).read_events(events, registered));
                    self.session.send_replace(Some(client.clone()));
                    tokio::select! {
                        () = client.closed() => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    self.session.send_replace(None);
                    if *stop.borrow() {
                        client.close().await;
                        break;
                    }
                    since = Instant::now();
                }
                Err(e) => {
                    // A refused token or a banned account: the app stops and asks the user.
                    if let Some(Error::Server {
                        code: code @ (ErrorCode::BadToken | ErrorCode::AccountBanned),
                        ..
                    }) = e.downcast_ref::<Error>()
                    {
                        *lock(&self.gave_up) = Some(format!("{code:?}"));
                        break;
                    }
                    if since.elapsed() > RECONNECT_FOR {
                        *lock(&self.gave_up) = Some(format!("still failing after {RECONNECT_FOR:?}: {e:#}"));
                        break;
                    }
                }
            }
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(backoff.delay(attempt)) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.running.store(false, Ordering::SeqCst);
    }

    async fn resume(&self) -> anyhow::Result<(Client, mpsc::Receiver<Event>)> {
        let (client, events) = Client::connect(self.config.clone()).await?;
        let token = lock(&self.token).clone();
        let welcome = client.resume(&self.name, &token, &self.device).await?;
        *lock(&self.token) = welcome.resume_token;
        Ok((client, events))
    }

    /// Records messages until the session ends; counts the login once caught up (a
    /// registration has nothing to catch up on).
    async fn read_events(self: Arc<Self>, mut events: mpsc::Receiver<Event>, registered: bool) {
        if registered {
            self.logins.fetch_add(1, Ordering::SeqCst);
        }
        while let Some(event) = events.recv().await {
            match event {
                Event::Message { message } => lock(&self.inbox).record(message),
                Event::CaughtUp if !registered => {
                    self.logins.fetch_add(1, Ordering::SeqCst);
                }
                Event::RemovedFromRoom { room, reason } => lock(&self.inbox).removed.push((room, reason)),
                _ => {}
            }
        }
    }
}

/// The settings every simulated client uses: the server key pinned (from the invite or
/// the discovery announcement), and patience for a room of 200 doing RSA handshakes at
/// once on two cores.
pub fn client_config(addr: &str, trust: TrustPolicy) -> ClientConfig {
    let mut c = ClientConfig::new(addr, trust);
    c.handshake_timeout = Duration::from_secs(60);
    c.request_timeout = Duration::from_secs(60);
    c
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
