//! The net task: the only code that talks to the server.
//!
//! It runs on the tokio runtime and owns the [`Client`]. The UI sends [`Command`]s through
//! a [`NetHandle`] (never blocking) and receives [`NetEvent`]s from a std channel that it
//! drains every frame; after each event the task calls `ctx.request_repaint()` so the UI
//! wakes up.
//!
//! Resilience: when the connection drops, the task reconnects with exponential backoff
//! and logs in again with the resume token (no password, no Argon2). A server of several
//! nodes is one server here: each attempt (`connect::connect`) walks its nodes, starting
//! with the node after the one that dropped (see [`crate::nodes`]). Messages the user
//! sent stay in an outbox until the server acknowledges them; after a reconnect they go
//! out again, in order, once the catch-up is complete.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use classchat_wire::{
    Client, Conv, Error as WireError, ErrorCode, Event, FileInfo, Fingerprint, MessageId, Request, Response,
    Timestamp, Welcome,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::e2e::{E2e, KeyPlan, KeyStatus, PeerInfo, PendingCheck};
use crate::files::{FileCommand, FileTasks, OfferSeal, Thumb, TransferId, TransferUpdate, claims_sealed};
use crate::local::{LocalStore, PeerKeyState};
use crate::model::Msg;
use crate::nodes::Nodes;

mod connect;
use connect::{Auth, ConnectError, NodePlan, Session, connect, login_error};

/// Port used when the address the user typed has none.
pub const DEFAULT_PORT: u16 = 7420;
/// After a reconnect, resend waits for the catch-up to finish, but never longer than this.
const CATCH_UP_GRACE: Duration = Duration::from_secs(5);
/// How often a rate-limited message is retried before it is reported as failed.
const RATE_LIMIT_RETRIES: u32 = 10;
/// Server events waiting for the E2E worker (which may be fetching a key). Past this the
/// connection is dropped and the catch-up after the reconnect brings them again.
const MAX_QUEUED_EVENTS: usize = 65_536;

/// What the UI asks the net task to do.
#[derive(Debug)]
pub enum Command {
    /// Log in (or register) with a password, from the connect screen. `nodes`: every
    /// address of the server from a multi-node invite (empty: the ones remembered).
    LogIn { addr: String, nodes: Vec<String>, username: String, password: String, register: bool },
    /// Log in with the saved resume token, if there is one (at start-up).
    Resume { addr: String, username: String },
    /// Stop a login that is still connecting.
    CancelLogin,
    /// The user accepted this key for this server (first contact, or a changed key).
    TrustServer { addr: String, fingerprint: Fingerprint },
    /// One of the user's messages; `local_id` ties the acknowledgement to it.
    Send { local_id: u64, conv: Conv, text: String, reply_to: Option<MessageId> },
    /// Drop an unsent message from the outbox (the user discarded it).
    Unsend { local_id: u64 },
    /// Remember that the logged-in user has a direct-message conversation with `contact`.
    RememberDm { contact: String },
    /// Any other request; the reply comes back as [`NetEvent::Reply`] with the request.
    Request(Request),
    /// Show an OS notification (D-Bus is blocking, so it happens here, not on the UI).
    Notify { summary: String, body: String },
    /// Log out: the server forgets this device's token, and so does the app.
    LogOut,
    /// Ask the directory for a DM contact's key (the conversation was opened).
    CheckPeer { peer: String },
    /// The user accepted a contact's changed key.
    AcceptKey { peer: String },
    /// The user compared the safety number (or takes that back).
    MarkVerified { peer: String, verified: bool },
    /// Check these signatures (rows about to be shown); the answer is [`NetEvent::Verified`].
    Verify { conv: Conv, checks: Vec<(MessageId, Arc<PendingCheck>)> },
    /// The backup could not be opened and the user agreed to a new identity key.
    NewIdentity,
    /// Change the password; the key backup is sealed again under the new one.
    ChangePassword { current: String, new: String },
    /// Uploads, downloads, thumbnails (see [`crate::files`]).
    Files(FileCommand),
    /// Shared files, searches, fetches from classmates (see [`crate::sharing`]).
    Sharing(crate::sharing::SharingCommand),
    /// Edits, deletes and typing notices (see [`crate::rich`]).
    Rich(crate::rich::RichCommand),
}

/// What the net task tells the UI.
#[derive(Debug)]
pub enum NetEvent {
    State(ConnState),
    /// A login from the connect screen failed; `field` says where to show it.
    LoginFailed {
        field: Field,
        message: String,
    },
    /// The server's key needs the user's decision.
    Trust(TrustPrompt),
    /// Logged in; `resumed` is true for a token login (a reconnect or a start-up resume).
    /// `dm_contacts` are the people this user had DM conversations with on this machine.
    LoggedIn {
        addr: String,
        welcome: Welcome,
        resumed: bool,
        dm_contacts: Vec<String>,
    },
    /// There is no saved session to resume: show the connect screen.
    NeedPassword,
    /// The session is over for good (logged out, token refused, account banned).
    LoggedOut {
        reason: Option<String>,
    },
    Server(Event),
    /// A file offered to us, its sealed description opened (the name and size are then
    /// the real ones).
    Offer {
        file: FileInfo,
        seal: OfferSeal,
    },
    Reply {
        request: Request,
        result: Result<Response, RequestError>,
    },
    Sent {
        local_id: u64,
        id: MessageId,
        ts: Timestamp,
    },
    /// The server refused the message (`code`), or it could not be sealed (no code).
    SendFailed {
        local_id: u64,
        reason: String,
        code: Option<ErrorCode>,
    },
    /// A direct message, opened. `live` is false for the catch-up after a login.
    Dm {
        conv: Conv,
        msg: Msg,
        live: bool,
    },
    /// A direct message's edit, opened (`content` says if it could not be verified).
    DmEdited {
        conv: Conv,
        id: MessageId,
        content: crate::model::Content,
        ts: Timestamp,
        envelope: Option<([u8; 16], u64)>,
    },
    /// A page of a DM conversation's history, opened.
    DmHistory {
        conv: Conv,
        msgs: Vec<(Conv, Msg)>,
        more: bool,
    },
    /// What is known about a DM contact's key changed.
    Peer(PeerInfo),
    /// Signature checks finished.
    Verified {
        conv: Conv,
        results: Vec<(MessageId, bool)>,
    },
    /// The user's own identity key after a login.
    KeyStatus(KeyStatus),
    PasswordChanged(Result<(), String>),
    /// A transfer moved on (throttled to a few updates a second).
    Transfer {
        id: TransferId,
        update: TransferUpdate,
    },
    /// A thumbnail was decoded (or could not be).
    Thumb(Thumb),
    /// Searches, the peer listener, classmates fetching from us.
    Sharing(crate::sharing::SharingEvent),
}

/// Connection state, for the status bar and the composer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Offline,
    Connecting {
        addr: String,
    },
    /// `addr` is the node the app is connected through (the server's own address for a
    /// server of one node).
    Online {
        addr: String,
        server_name: String,
    },
    /// Waiting to try again; `retry_at` is when, `addr` the node tried first.
    Reconnecting {
        addr: String,
        attempt: u32,
        retry_at: Instant,
        reason: String,
    },
}

impl ConnState {
    pub fn is_online(&self) -> bool {
        matches!(self, ConnState::Online { .. })
    }
}

/// Which connect-screen field an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Server,
    Username,
    Password,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPrompt {
    pub addr: String,
    pub fingerprint: Fingerprint,
    /// `Some(old)` when the server's key changed since we last saw it.
    pub changed_from: Option<Fingerprint>,
}

/// A failed request, in words, with the server's code when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<WireError> for RequestError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Server { code, message } => RequestError { code: Some(code), message },
            WireError::Closed(_) => {
                RequestError { code: None, message: "Not connected to the server.".into() }
            }
            other => RequestError { code: None, message: other.to_string() },
        }
    }
}

/// Reconnect delays: doubling from `min` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { min: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1-based), with up to 20 % random jitter so a
    /// classroom of clients does not reconnect in lockstep after a server restart.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.min.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max);
        let jitter = f64::from(classchat_wire::crypto::random_nonce()[0]) / 255.0 * 0.2;
        base.mul_f64(1.0 - jitter)
    }
}

/// The UI's end of the command channel. Cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct NetHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl NetHandle {
    pub fn send(&self, cmd: Command) {
        // The task ends only when every handle is gone, so this cannot fail while the UI
        // holds one; if it ever did, there is nobody left to report it to.
        if self.tx.send(cmd).is_err() {
            tracing::warn!("net task is gone");
        }
    }
}

/// The net task's end of the event channel: every send wakes the UI.
#[derive(Clone)]
struct Sink {
    tx: std::sync::mpsc::Sender<NetEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Sink {
    fn send(&self, ev: NetEvent) {
        if self.tx.send(ev).is_ok() {
            (self.wake)();
        }
    }

    /// The same, as a function the sharing half's tasks can own.
    fn sharing_send(&self) -> crate::sharing::net::Send {
        let sink = self.clone();
        Arc::new(move |ev| sink.send(ev))
    }
}

/// Starts the net task on `rt`. `wake` is called after every event (the app passes
/// `ctx.request_repaint()`).
/// `identity_bits` is the size of identity keys made at registration.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    store: LocalStore,
    backoff: Backoff,
    identity_bits: usize,
    wake: impl Fn() + Send + Sync + 'static,
) -> (NetHandle, std::sync::mpsc::Receiver<NetEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let sink = Sink { tx: ev_tx, wake: Arc::new(wake) };
    let (jobs_tx, jobs_rx) = mpsc::channel(MAX_QUEUED_EVENTS);
    rt.spawn(e2e_worker(jobs_rx, sink.clone()));
    let task = NetTask {
        cmds: cmd_rx,
        sink,
        jobs: jobs_tx,
        e2e: None,
        e2e_owner: None,
        identity_bits,
        catching_up: false,

        store,
        backoff,
        internal_tx,
        internal_rx,
        attempt_gen: 0,
        phase: Phase::Idle,
        target: None,
        outbox: VecDeque::new(),
        sending: None,
        resend_gate: None,
        caught_up_mine: Vec::new(),
        trust_write: None,
        drop_reason: String::new(),
        files: FileTasks::default(),
        sharing: Default::default(),
    };
    rt.spawn(task.run());
    (NetHandle { tx: cmd_tx }, ev_rx)
}

/// An unsent message.
#[derive(Debug, Clone)]
struct Outgoing {
    local_id: u64,
    conv: Conv,
    text: String,
    reply_to: Option<MessageId>,
    /// A DM's envelope, once sealed: a resend sends the same bytes, so the catch-up can
    /// recognise it and the recipient sees a replay, not a second message.
    sealed: Option<Vec<u8>>,
    /// It was on the wire when the connection dropped, so the server may have stored it.
    maybe_delivered: bool,
}

impl Outgoing {
    /// What the server's copy of this message holds.
    fn body(&self) -> Option<&[u8]> {
        match self.conv {
            Conv::Direct { .. } => self.sealed.as_deref(),
            _ => Some(self.text.as_bytes()),
        }
    }
}

/// One server event for the E2E worker, which handles them in order.
struct Job {
    event: Event,
    live: bool,
    ctx: Option<(E2e, Client)>,
}

/// Opens direct messages and handles key changes, in the order events arrived, then
/// hands every event to the UI. A worker of its own, so waiting for a key from the
/// server never holds up the net task (which must keep draining the connection).
async fn e2e_worker(mut jobs: mpsc::Receiver<Job>, sink: Sink) {
    while let Some(Job { event, live, ctx }) = jobs.recv().await {
        match (event, ctx) {
            (Event::Message { message }, Some((e2e, client)))
                if matches!(message.conv, Conv::Direct { .. }) =>
            {
                for (conv, msg) in e2e.open(&client, vec![message], live).await {
                    sink.send(NetEvent::Dm { conv, msg, live });
                }
            }
            (Event::Edited { conv: conv @ Conv::Direct { .. }, id, body, ts }, Some((e2e, client))) => {
                if let Some(ev) = e2e.open_edit(&client, conv, id, body, ts).await {
                    sink.send(ev);
                }
            }
            (Event::Deleted { conv: Conv::Direct { user }, id, by, proof }, Some((e2e, _))) => {
                let by = e2e.deleted_by(&user, id, &by, proof.as_deref()).await;
                sink.send(NetEvent::Server(Event::Deleted { conv: Conv::Direct { user }, id, by, proof }));
            }
            (Event::KeyChanged { user }, Some((e2e, client))) => {
                let info = e2e.check_peer(&client, &user).await;
                sink.send(NetEvent::Peer(info));
            }
            (Event::FileOffer { file }, ctx) => {
                let (file, seal) = match (claims_sealed(&file), &ctx) {
                    (false, _) => (file, OfferSeal::Plain),
                    (true, None) => (file, OfferSeal::Unverified("no key on this computer".into())),
                    (true, Some((e2e, client))) => match e2e.open_file(client, &file).await {
                        Ok(secret) => (secret.reveal(file), OfferSeal::Encrypted),
                        Err(why) => (file, OfferSeal::Unverified(why)),
                    },
                };
                sink.send(NetEvent::Offer { file, seal });
            }
            (event, _) => sink.send(NetEvent::Server(event)),
        }
    }
}

/// Who we are logged in as, so a reconnect can log in again.
#[derive(Debug, Clone)]
struct Target {
    /// The server's name: the address its data is filed under.
    addr: String,
    username: String,
    /// Its nodes, and which one the next attempt tries first.
    nodes: Nodes,
    /// The node of the current (or last) connection.
    node: String,
}

enum Phase {
    Idle,
    /// A connect attempt runs as its own task (so a cancel or a command is never stuck
    /// behind a slow handshake); its result comes back as [`Internal::Connected`].
    Connecting {
        task: JoinHandle<()>,
        reconnect: Option<u32>,
    },
    Online {
        client: Client,
        events: mpsc::Receiver<Event>,
    },
    /// Waiting for the next reconnect attempt.
    Waiting {
        attempt: u32,
        until: tokio::time::Instant,
    },
}

enum Internal {
    /// The session is boxed: a `Welcome` is far bigger than the other variants.
    /// `nodes`: the server's nodes, the one that answered first in line, or after a
    /// failure the one after the node that failed.
    Connected {
        generation: u64,
        result: Result<Box<Session>, ConnectError>,
        nodes: Nodes,
    },
    SendDone {
        local_id: u64,
        sealed: Option<Vec<u8>>,
        result: Result<(MessageId, Timestamp), SendError>,
    },
}

enum SendError {
    Wire(WireError),
    /// The message could not be encrypted; the words say why.
    Seal(String),
}

struct NetTask {
    cmds: mpsc::UnboundedReceiver<Command>,
    sink: Sink,
    jobs: mpsc::Sender<Job>,
    /// The logged-in user's E2E state; kept across reconnects of the same user.
    e2e: Option<E2e>,
    /// Server address and lowercase user the engine is for.
    e2e_owner: Option<(String, String)>,
    identity_bits: usize,
    /// Between a login and `CaughtUp`.
    catching_up: bool,

    store: LocalStore,
    backoff: Backoff,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Bumped for every connect attempt; results of older attempts are ignored.
    attempt_gen: u64,
    phase: Phase,
    target: Option<Target>,
    outbox: VecDeque<Outgoing>,
    /// The outbox entry on the wire right now.
    sending: Option<u64>,
    /// After a reconnect, sending waits until the catch-up is over (or this deadline).
    resend_gate: Option<tokio::time::Instant>,
    /// Our own messages seen during the catch-up: (conversation, body, id, ts).
    caught_up_mine: Vec<(Conv, Vec<u8>, MessageId, Timestamp)>,
    /// A "trust this key" file write still under way.
    trust_write: Option<JoinHandle<()>>,
    /// Why the connection dropped (or the last reconnect failed), for the status bar.
    drop_reason: String,
    files: FileTasks,
    sharing: crate::sharing::net::PeerTasks,
}

enum Step {
    Cmd(Option<Command>),
    Internal(Option<Internal>),
    ServerEvent(Option<Event>),
    RetryDue,
    GateOpen,
}

impl NetTask {
    async fn run(mut self) {
        loop {
            let step = tokio::select! {
                cmd = self.cmds.recv() => Step::Cmd(cmd),
                msg = self.internal_rx.recv() => Step::Internal(msg),
                step = phase_step(&mut self.phase) => step,
                () = gate_due(self.resend_gate) => Step::GateOpen,
            };
            match step {
                Step::Cmd(None) => break,
                Step::Cmd(Some(cmd)) => self.on_command(cmd),
                Step::Internal(Some(msg)) => self.on_internal(msg),
                // We hold a sender ourselves, so this never ends.
                Step::Internal(None) => {}
                Step::ServerEvent(Some(ev)) => self.on_server_event(ev),
                Step::ServerEvent(None) => self.on_connection_lost("connection lost".into()),
                Step::RetryDue => self.reconnect(),
                Step::GateOpen => {
                    self.resend_gate = None;
                    self.pump();
                }
            }
        }
        if let Phase::Online { client, .. } = &self.phase {
            client.close().await;
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::LogIn { addr, nodes, username, password, register } => {
                let addr = normalize_addr(&addr);
                self.drop_session();
                self.outbox.clear();
                let nodes = NodePlan::Listed(nodes);
                self.start_connect(addr, username, Auth::Password { password, register }, None, nodes);
            }
            Command::Resume { addr, username } => {
                let addr = normalize_addr(&addr);
                self.drop_session();
                self.start_connect(addr, username, Auth::SavedToken, None, NodePlan::Listed(Vec::new()));
            }
            Command::CancelLogin => {
                if matches!(self.phase, Phase::Connecting { .. } | Phase::Waiting { .. }) {
                    self.drop_session();
                    self.target = None;
                    self.sink.send(NetEvent::State(ConnState::Offline));
                }
            }
            Command::TrustServer { addr, fingerprint } => {
                let store = self.store.clone();
                let addr = normalize_addr(&addr);
                // A small file write; the blocking pool keeps the runtime's workers free.
                // The next connect attempt waits for it, so it sees the new key.
                self.trust_write = Some(tokio::task::spawn_blocking(move || {
                    let result = store.known_servers().and_then(|mut ks| ks.trust(&addr, fingerprint));
                    if let Err(e) = result {
                        tracing::error!("could not save the server key: {e}");
                    }
                }));
            }
            Command::Send { local_id, conv, text, reply_to } => {
                self.outbox.push_back(Outgoing {
                    local_id,
                    conv,
                    text,
                    reply_to,
                    sealed: None,
                    maybe_delivered: false,
                });
                self.pump();
            }
            Command::Unsend { local_id } => {
                if self.sending != Some(local_id) {
                    self.outbox.retain(|o| o.local_id != local_id);
                }
            }
            Command::RememberDm { contact } => {
                if let Some(t) = self.target.clone() {
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.add_dm_contact(&t.addr, &t.username, &contact) {
                            tracing::warn!("could not save the DM contact list: {e}");
                        }
                    });
                }
            }
            Command::Request(request) => match &self.phase {
                Phase::Online { client, .. } => {
                    let client = client.clone();
                    let sink = self.sink.clone();
                    if let Request::History { conv: conv @ Conv::Direct { .. }, .. } = &request
                        && let Some(e2e) = self.e2e.clone()
                    {
                        let conv = conv.clone();
                        tokio::spawn(async move {
                            match client.request(request.clone()).await {
                                Ok(Response::History { messages, more, .. }) => {
                                    let msgs = e2e.open(&client, messages, false).await;
                                    sink.send(NetEvent::DmHistory { conv, msgs, more });
                                }
                                result => sink.send(NetEvent::Reply {
                                    request,
                                    result: result.map_err(RequestError::from),
                                }),
                            }
                        });
                        return;
                    }
                    tokio::spawn(async move {
                        let result = client.request(request.clone()).await.map_err(RequestError::from);
                        sink.send(NetEvent::Reply { request, result });
                    });
                }
                _ => self.sink.send(NetEvent::Reply {
                    request,
                    result: Err(RequestError { code: None, message: "Not connected to the server.".into() }),
                }),
            },
            Command::Notify { summary, body } => {
                tokio::task::spawn_blocking(move || {
                    let shown = notify_rust::Notification::new()
                        .appname("ClassChat")
                        .summary(&summary)
                        .body(&body)
                        .show();
                    if let Err(e) = shown {
                        tracing::debug!("notification not shown: {e}");
                    }
                });
            }
            Command::LogOut => {
                if let Phase::Online { client, .. } = &self.phase {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let _ = client.request(Request::Logout).await;
                        client.close().await;
                    });
                }
                if let Some(t) = self.target.take() {
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.set_resume_token(&t.addr, &t.username, None) {
                            tracing::warn!("could not forget the resume token: {e}");
                        }
                    });
                }
                self.phase = Phase::Idle;
                self.sharing.on_disconnected();
                self.attempt_gen += 1;
                self.outbox.clear();
                self.sending = None;
                self.sink.send(NetEvent::State(ConnState::Offline));
                self.sink.send(NetEvent::LoggedOut { reason: None });
                self.e2e = None;
                self.e2e_owner = None;
            }
            Command::CheckPeer { peer } => {
                if let (Some(e2e), Phase::Online { client, .. }) = (self.e2e.clone(), &self.phase) {
                    let (client, sink) = (client.clone(), self.sink.clone());
                    tokio::spawn(
                        async move { sink.send(NetEvent::Peer(e2e.check_peer(&client, &peer).await)) },
                    );
                }
            }
            Command::AcceptKey { peer } => {
                if let Some(e2e) = self.e2e.clone() {
                    let sink = self.sink.clone();
                    tokio::spawn(async move { sink.send(NetEvent::Peer(e2e.accept_key(&peer).await)) });
                }
            }
            Command::MarkVerified { peer, verified } => {
                if let Some(e2e) = self.e2e.clone() {
                    let sink = self.sink.clone();
                    tokio::spawn(async move {
                        sink.send(NetEvent::Peer(e2e.mark_verified(&peer, verified).await))
                    });
                }
            }
            Command::Verify { conv, checks } => {
                let sink = self.sink.clone();
                tokio::task::spawn_blocking(move || {
                    let results = checks.iter().map(|(id, check)| (*id, check.verify())).collect();
                    sink.send(NetEvent::Verified { conv, results });
                });
            }
            Command::NewIdentity => self.new_identity(),
            Command::ChangePassword { current, new } => self.change_password(current, new),
            Command::Files(cmd) => {
                let client = match &self.phase {
                    Phase::Online { client, .. } => Some(client.clone()),
                    _ => None,
                };
                let sink = self.sink.clone();
                self.files.on_command(cmd, client, self.e2e.clone(), move |ev| sink.send(ev));
            }
            Command::Sharing(cmd) => {
                let send = self.sink.sharing_send();
                self.sharing.on_command(cmd, &send);
            }
            Command::Rich(cmd) => {
                let Phase::Online { client, .. } = &self.phase else {
                    if let Some(request) = cmd.request_kind() {
                        let message = "not connected to the server".into();
                        self.sink.send(NetEvent::Reply {
                            request,
                            result: Err(RequestError { code: None, message }),
                        });
                    }
                    return;
                };
                let (client, sink, e2e) = (client.clone(), self.sink.clone(), self.e2e.clone());
                tokio::spawn(async move {
                    if let Some((request, result)) = crate::rich::run(&client, e2e.as_ref(), cmd).await {
                        sink.send(NetEvent::Reply { request, result: result.map_err(RequestError::from) });
                    }
                });
            }
        }
    }

    /// Replaces an identity key whose backup would not open (the user agreed).
    fn new_identity(&mut self) {
        let (Some(e2e), Phase::Online { client, .. }) = (self.e2e.clone(), &self.phase) else { return };
        let (client, sink, bits) = (client.clone(), self.sink.clone(), self.identity_bits);
        tokio::spawn(async move { sink.send(NetEvent::KeyStatus(e2e.new_identity(&client, bits).await)) });
    }

    fn change_password(&mut self, current: String, new: String) {
        let (Some(t), Phase::Online { client, .. }) = (self.target.clone(), &self.phase) else {
            self.sink.send(NetEvent::PasswordChanged(Err("Not connected to the server.".into())));
            return;
        };
        let (client, sink, e2e) = (client.clone(), self.sink.clone(), self.e2e.clone());
        tokio::spawn(async move {
            let result = async {
                let identity = match &e2e {
                    Some(e2e) => e2e.identity().await,
                    None => None,
                }
                .ok_or("This computer has no key for direct messages; log in with your password first.")?;
                let user = t.username.clone();
                let (auth_key, new_auth_key, backup_key) = tokio::task::spawn_blocking(move || {
                    let a = classchat_wire::auth::auth_key(&user, &current)?;
                    let n = classchat_wire::auth::auth_key(&user, &new)?;
                    let b = classchat_wire::auth::backup_key(&user, &new)?;
                    Ok::<_, WireError>((a, n, b))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                let backup =
                    classchat_wire::e2e::seal_backup(&identity, &backup_key).map_err(|e| e.to_string())?;
                let request = Request::ChangePassword {
                    auth_key: auth_key.to_vec(),
                    new_auth_key: new_auth_key.to_vec(),
                    backup,
                };
                client.request(request).await.map_err(|e| match e {
                    WireError::Server { code: ErrorCode::BadCredentials, .. } => {
                        "The current password is wrong.".to_owned()
                    }
                    WireError::Server { code, message } => refusal_text(code, &message),
                    other => other.to_string(),
                })?;
                Ok::<(), String>(())
            }
            .await;
            sink.send(NetEvent::PasswordChanged(result));
        });
    }

    /// Ends whatever connection or attempt is under way (without logging out).
    fn drop_session(&mut self) {
        self.attempt_gen += 1;
        self.sharing.on_disconnected();
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Connecting { task, .. } => task.abort(),
            Phase::Online { client, .. } => {
                tokio::spawn(async move { client.close().await });
            }
            Phase::Idle | Phase::Waiting { .. } => {}
        }
        self.sending = None;
        self.resend_gate = None;
    }

    fn start_connect(
        &mut self,
        addr: String,
        username: String,
        auth: Auth,
        reconnect: Option<u32>,
        nodes: NodePlan,
    ) {
        self.attempt_gen += 1;
        let generation = self.attempt_gen;
        let store = self.store.clone();
        let internal = self.internal_tx.clone();
        let trust_write = self.trust_write.take();
        let identity_bits = self.identity_bits;
        self.sink.send(NetEvent::State(match reconnect {
            None => ConnState::Connecting { addr: addr.clone() },
            Some(attempt) => ConnState::Reconnecting {
                addr: match &nodes {
                    NodePlan::Known(nodes) => nodes.preferred().to_owned(),
                    NodePlan::Listed(_) => addr.clone(),
                },
                attempt,
                retry_at: Instant::now(),
                reason: self.drop_reason.clone(),
            },
        }));
        let task = tokio::spawn(async move {
            if let Some(write) = trust_write {
                let _ = write.await;
            }
            let (result, nodes) = connect(store, addr, nodes, username, auth, identity_bits).await;
            let _ = internal.send(Internal::Connected { generation, result: result.map(Box::new), nodes });
        });
        self.phase = Phase::Connecting { task, reconnect };
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Connected { generation, result, nodes } => {
                if generation != self.attempt_gen {
                    if let Ok(session) = result {
                        tokio::spawn(async move { session.client.close().await });
                    }
                    return;
                }
                let reconnect = match &self.phase {
                    Phase::Connecting { reconnect, .. } => *reconnect,
                    _ => None,
                };
                match result {
                    Ok(session) => self.on_connected(*session, nodes),
                    Err(e) => {
                        if let Some(target) = &mut self.target {
                            target.nodes = nodes;
                        }
                        self.on_connect_failed(e, reconnect);
                    }
                }
            }
            Internal::SendDone { local_id, sealed, result } => {
                if self.sending != Some(local_id) {
                    return;
                }
                self.sending = None;
                if sealed.is_some()
                    && let Some(o) = self.outbox.iter_mut().find(|o| o.local_id == local_id)
                {
                    o.sealed = sealed;
                }
                match result {
                    Ok((id, ts)) => {
                        self.outbox.retain(|o| o.local_id != local_id);
                        self.sink.send(NetEvent::Sent { local_id, id, ts });
                        self.pump();
                    }
                    Err(SendError::Wire(WireError::Server { code, message }))
                        if code != ErrorCode::ShuttingDown =>
                    {
                        self.outbox.retain(|o| o.local_id != local_id);
                        self.sink.send(NetEvent::SendFailed {
                            local_id,
                            reason: refusal_text(code, &message),
                            code: Some(code),
                        });
                        self.pump();
                    }
                    Err(SendError::Seal(reason)) => {
                        self.outbox.retain(|o| o.local_id != local_id);
                        self.sink.send(NetEvent::SendFailed { local_id, reason, code: None });
                        self.pump();
                    }
                    Err(SendError::Wire(e)) => {
                        // The connection is going; the message waits for the reconnect.
                        tracing::debug!("send interrupted: {e}");
                        if let Some(o) = self.outbox.iter_mut().find(|o| o.local_id == local_id) {
                            o.maybe_delivered = true;
                        }
                    }
                }
            }
        }
    }

    fn on_connected(&mut self, session: Session, nodes: Nodes) {
        let Session { client, events, welcome, addr, node, resumed, dm_contacts, key_plan, peer_keys } =
            session;
        let server_name = welcome.server_name.clone();
        self.target =
            Some(Target { addr: addr.clone(), username: welcome.user.clone(), nodes, node: node.clone() });
        self.catching_up = true;
        self.setup_e2e(&client, &addr, &welcome.user, key_plan, peer_keys);
        self.sharing.on_connected(
            client.clone(),
            welcome.user.clone(),
            self.e2e.clone(),
            &self.sink.sharing_send(),
        );
        self.phase = Phase::Online { client, events };
        self.sending = None;
        self.caught_up_mine.clear();
        // After a drop, what we sent may already be stored: wait for the catch-up first.
        self.resend_gate =
            if self.outbox.is_empty() { None } else { Some(tokio::time::Instant::now() + CATCH_UP_GRACE) };
        self.sink.send(NetEvent::LoggedIn { addr, welcome, resumed, dm_contacts });
        self.sink.send(NetEvent::State(ConnState::Online { addr: node, server_name }));
        self.pump();
    }

    /// Keeps the engine across reconnects of the same user; a new user gets a new one.
    fn setup_e2e(
        &mut self,
        client: &Client,
        addr: &str,
        user: &str,
        plan: KeyPlan,
        peer_keys: Vec<(String, PeerKeyState, Vec<u8>)>,
    ) {
        let owner = (addr.to_owned(), user.to_ascii_lowercase());
        let e2e = match &self.e2e {
            Some(e2e) if self.e2e_owner.as_ref() == Some(&owner) => e2e.clone(),
            _ => {
                let e2e = E2e::new(self.store.clone(), addr, user, peer_keys);
                self.e2e = Some(e2e.clone());
                self.e2e_owner = Some(owner);
                e2e
            }
        };
        let sink = self.sink.clone();
        e2e.start_setup(client.clone(), plan, self.identity_bits, move |status| {
            sink.send(NetEvent::KeyStatus(status))
        });
    }

    fn on_connect_failed(&mut self, e: ConnectError, reconnect: Option<u32>) {
        self.phase = Phase::Idle;
        let Some(attempt) = reconnect else {
            // A login from the connect screen (or a start-up resume): tell the user.
            self.target = None;
            self.sink.send(NetEvent::State(ConnState::Offline));
            match e {
                ConnectError::Trust(prompt) => self.sink.send(NetEvent::Trust(prompt)),
                ConnectError::NoToken => self.sink.send(NetEvent::NeedPassword),
                ConnectError::Server { code: ErrorCode::BadToken, .. } => {
                    self.sink.send(NetEvent::NeedPassword);
                }
                other => {
                    let (field, message) = login_error(&other);
                    self.sink.send(NetEvent::LoginFailed { field, message });
                }
            }
            return;
        };
        match e {
            ConnectError::Unreachable(reason)
            | ConnectError::Server {
                code: ErrorCode::ShuttingDown | ErrorCode::Internal | ErrorCode::Unavailable,
                message: reason,
            } => {
                self.schedule_reconnect(attempt + 1, reason);
            }
            ConnectError::Trust(prompt) => {
                // A changed key on reconnect: stop, and let the user decide.
                self.give_up(Some("The server's key changed; reconnecting stopped.".into()));
                self.sink.send(NetEvent::Trust(prompt));
            }
            ConnectError::Server { code, message } => {
                if code == ErrorCode::BadToken
                    && let Some(t) = &self.target
                {
                    let (store, t) = (self.store.clone(), t.clone());
                    tokio::task::spawn_blocking(move || store.set_resume_token(&t.addr, &t.username, None));
                }
                self.give_up(Some(refusal_text(code, &message)));
            }
            ConnectError::NoToken => self.give_up(Some("The saved session is gone; please log in.".into())),
            ConnectError::Local(reason) => self.give_up(Some(reason)),
        }
    }

    fn give_up(&mut self, reason: Option<String>) {
        self.phase = Phase::Idle;
        self.sharing.on_disconnected();
        self.target = None;
        self.sending = None;
        self.sink.send(NetEvent::State(ConnState::Offline));
        self.sink.send(NetEvent::LoggedOut { reason });
    }

    fn on_server_event(&mut self, ev: Event) {
        let Some(ev) = self.sharing.on_server_event(ev, &self.sink.sharing_send()) else { return };
        let caught_up = matches!(ev, Event::CaughtUp);
        if self.resend_gate.is_some()
            && let Event::Message { message } = &ev
            && let Some(t) = &self.target
            && message.from.eq_ignore_ascii_case(&t.username)
        {
            let body = match &message.body {
                classchat_wire::Body::Text { text } => Some(text.as_bytes().to_vec()),
                classchat_wire::Body::Opaque { data } => Some(data.clone()),
                classchat_wire::Body::System { .. }
                | classchat_wire::Body::File { .. }
                | classchat_wire::Body::Deleted { .. } => None,
            };
            if let Some(body) = body {
                self.caught_up_mine.push((message.conv.clone(), body, message.id, message.ts));
            }
        }
        self.forward(ev);
        if caught_up {
            self.catching_up = false;
            if self.resend_gate.take().is_some() {
                self.settle_delivered();
                self.pump();
            }
        }
    }

    /// Hands a server event to the E2E worker, which passes it on in order.
    fn forward(&mut self, event: Event) {
        let ctx = match (&self.e2e, &self.phase) {
            (Some(e2e), Phase::Online { client, .. }) => Some((e2e.clone(), client.clone())),
            _ => None,
        };
        let job = Job { event, live: !self.catching_up, ctx };
        if self.jobs.try_send(job).is_err() {
            // The worker is far behind (or gone): start over with a fresh catch-up.
            self.on_connection_lost("too many messages waiting to be decrypted".into());
        }
    }

    /// A message that was on the wire when the connection dropped may have been stored.
    /// If the catch-up brought it back to us, it was: acknowledge it instead of sending
    /// it twice.
    fn settle_delivered(&mut self) {
        let mine = std::mem::take(&mut self.caught_up_mine);
        let mut settled = Vec::new();
        for o in self.outbox.iter().filter(|o| o.maybe_delivered) {
            let Some(body) = o.body() else { continue };
            if let Some((_, _, id, ts)) = mine.iter().find(|(c, b, id, _)| {
                c == &o.conv && b == body && !settled.iter().any(|(_, sid, _)| sid == id)
            }) {
                settled.push((o.local_id, *id, *ts));
            }
        }
        for (local_id, id, ts) in settled {
            self.outbox.retain(|o| o.local_id != local_id);
            self.sink.send(NetEvent::Sent { local_id, id, ts });
        }
    }

    fn on_connection_lost(&mut self, reason: String) {
        let Phase::Online { client, .. } = &self.phase else { return };
        let reason = client.close_reason().unwrap_or(reason);
        tracing::info!(%reason, "connection lost");
        self.sharing.on_disconnected();
        self.sending = None;
        for o in &mut self.outbox {
            o.maybe_delivered = true;
        }
        // Another node may be up: the next attempt starts there, not at the one that went.
        if let Some(t) = &mut self.target {
            t.nodes.failed(&t.node);
        }
        self.schedule_reconnect(1, reason);
    }

    fn schedule_reconnect(&mut self, attempt: u32, reason: String) {
        let Some(target) = &self.target else {
            self.phase = Phase::Idle;
            self.sink.send(NetEvent::State(ConnState::Offline));
            return;
        };
        let delay = self.backoff.delay(attempt);
        self.drop_reason.clone_from(&reason);
        self.phase = Phase::Waiting { attempt, until: tokio::time::Instant::now() + delay };
        self.sink.send(NetEvent::State(ConnState::Reconnecting {
            addr: target.nodes.preferred().to_owned(),
            attempt,
            retry_at: Instant::now() + delay,
            reason,
        }));
    }

    fn reconnect(&mut self) {
        let Phase::Waiting { attempt, .. } = self.phase else { return };
        let Some(target) = self.target.clone() else {
            self.phase = Phase::Idle;
            return;
        };
        let nodes = NodePlan::Known(target.nodes);
        self.start_connect(target.addr, target.username, Auth::SavedToken, Some(attempt), nodes);
    }

    /// Sends the next outbox entry, one at a time so the order is kept.
    fn pump(&mut self) {
        if self.sending.is_some() || self.resend_gate.is_some() {
            return;
        }
        let Phase::Online { client, .. } = &self.phase else { return };
        let Some(next) = self.outbox.front().cloned() else { return };
        self.sending = Some(next.local_id);
        let client = client.clone();
        let internal = self.internal_tx.clone();
        let e2e = self.e2e.clone();
        tokio::spawn(async move {
            let local_id = next.local_id;
            let (sealed, result) = send_one(&client, e2e.as_ref(), next).await;
            let _ = internal.send(Internal::SendDone { local_id, sealed, result });
        });
    }
}

/// Sends one message; a DM is sealed first (once: a resend reuses the envelope).
/// Returns the envelope, so the outbox keeps it for a resend.
async fn send_one(
    client: &Client,
    e2e: Option<&E2e>,
    o: Outgoing,
) -> (Option<Vec<u8>>, Result<(MessageId, Timestamp), SendError>) {
    let request = match &o.conv {
        Conv::Room { name } => {
            Request::SendRoom { room: name.clone(), text: o.text.clone(), reply_to: o.reply_to }
        }
        Conv::Direct { user } => {
            let body = match (&o.sealed, e2e) {
                (Some(sealed), _) => sealed.clone(),
                (None, Some(e2e)) => match e2e.seal(client, user, &o.text).await {
                    Ok(body) => body,
                    Err(reason) => return (None, Err(SendError::Seal(reason))),
                },
                (None, None) => {
                    return (None, Err(SendError::Seal("Direct messages are not set up yet.".into())));
                }
            };
            Request::SendDirect { to: user.clone(), body, reply_to: o.reply_to }
        }
        Conv::Announcements => Request::Broadcast { text: o.text.clone() },
    };
    let sealed = match &request {
        Request::SendDirect { body, .. } => Some(body.clone()),
        _ => None,
    };
    let mut tries = 0;
    loop {
        match client.request(request.clone()).await {
            Ok(Response::Sent { id, ts } | Response::Broadcast { id, ts, .. }) => {
                return (sealed, Ok((id, ts)));
            }
            Ok(other) => {
                let e = WireError::Protocol(format!("unexpected reply to a message: {other:?}"));
                return (sealed, Err(SendError::Wire(e)));
            }
            Err(WireError::Server { code: ErrorCode::RateLimited, .. }) if tries < RATE_LIMIT_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return (sealed, Err(SendError::Wire(e))),
        }
    }
}

/// What the current phase brings next: a server event (or the end of the connection)
/// while online, the moment to retry while waiting, nothing otherwise.
async fn phase_step(phase: &mut Phase) -> Step {
    match phase {
        Phase::Online { events, .. } => Step::ServerEvent(events.recv().await),
        Phase::Waiting { until, .. } => {
            tokio::time::sleep_until(*until).await;
            Step::RetryDue
        }
        Phase::Idle | Phase::Connecting { .. } => std::future::pending().await,
    }
}

async fn gate_due(gate: Option<tokio::time::Instant>) {
    match gate {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `host` becomes `host:7420`; surrounding spaces go.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    let has_port = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    }) && !(addr.starts_with('[') && addr.ends_with(']'));
    if has_port || addr.is_empty() { addr.to_owned() } else { format!("{addr}:{DEFAULT_PORT}") }
}

/// A refusal from the server, in words.
pub fn refusal_text(code: ErrorCode, message: &str) -> String {
    let words = match code {
        ErrorCode::UsernameTaken => "That username is taken.",
        ErrorCode::InvalidUsername => "Use 1–32 letters, digits, '.', '_' or '-'.",
        ErrorCode::BadCredentials => "Wrong username or password.",
        ErrorCode::Throttled => "Too many failed attempts. Wait a minute and try again.",
        ErrorCode::AccountBanned => "This account is banned from the server.",
        ErrorCode::BadToken => "The saved session has expired; please log in.",
        ErrorCode::RateLimited => "You are sending too fast; slow down.",
        ErrorCode::TooLong => "That is too long for the server.",
        ErrorCode::NotMember => "You are not a member of this room.",
        ErrorCode::WrongPassword => "Wrong room password.",
        ErrorCode::Banned => "You are banned from this room.",
        ErrorCode::NotRoomAdmin => "Only the room admin can do that.",
        ErrorCode::ShuttingDown => "The server is shutting down.",
        ErrorCode::Unavailable if message.is_empty() => {
            "The server cannot save right now; try again in a moment."
        }
        _ if !message.is_empty() => return message.to_owned(),
        _ => return code.to_string(),
    };
    words.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_the_default_port() {
        assert_eq!(normalize_addr(" lab-pc "), "lab-pc:7420");
        assert_eq!(normalize_addr("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(normalize_addr("[::1]:9000"), "[::1]:9000");
        assert_eq!(normalize_addr("[::1]"), "[::1]:7420");
        assert_eq!(normalize_addr(""), "");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(1) };
        let d1 = b.delay(1);
        assert!(d1 <= Duration::from_millis(100) && d1 >= Duration::from_millis(80), "{d1:?}");
        let d3 = b.delay(3);
        assert!(d3 <= Duration::from_millis(400) && d3 >= Duration::from_millis(320), "{d3:?}");
        assert!(b.delay(40) <= Duration::from_secs(1));
    }
}
