//! The bus between server nodes (several `classchat-server` processes on one PostgreSQL
//! store): core NATS publish/subscribe on one subject per cluster.
//!
//! PostgreSQL holds everything durable; the bus carries what each node keeps in memory
//! and what it pushes to its own connections:
//! - [`Change`]s: the committed writes that change the in-memory state (accounts, rooms,
//!   members, bans, direct pairs, class records), published by the node that committed
//!   them right after the commit and applied by every other node;
//! - frames for users, rooms or everyone, already encoded: a node delivers to its own
//!   sessions and forwards one copy to the bus when another node has a session that
//!   should get it, and the other nodes push it to theirs;
//! - each node's online users (every change, and all of them in a heartbeat every
//!   [`HEARTBEAT`]), so presence and member lists count every node's sessions; a node not
//!   heard from for [`NODE_TIMEOUT`] is taken as gone and its users go offline;
//! - disconnects (a server kick or ban ends the user's sessions on every node).
//!
//! Every envelope carries its node's id and a sequence number. A receiver that sees a
//! gap, and a node whose own connection to NATS dropped, may have missed state: it
//! reloads its memory from the store and closes its connections, whose apps resume and
//! catch up from their cursors. While the bus is down a node refuses writes
//! (`unavailable`) instead of committing changes the others would never hear of.

mod apply;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub use apply::Change;

use crate::state::{Lc, State};

/// How often a node tells the others it is alive, and who is online on it.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard from for this long is taken as gone.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// Envelopes queued for publishing; past it a node drops what it would publish, which the
/// others see as a gap in its sequence (and resynchronise).
pub const OUTBOX: usize = 65_536;
/// Largest envelope published or accepted, bytes (NATS's own default limit is 1 MiB).
pub const MAX_ENVELOPE: usize = 1 << 20;

/// Envelopes handled together at most, when several are waiting.
const RECEIVE_BATCH: usize = 256;

pub type NodeId = u64;

/// What one node publishes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub node: NodeId,
    /// Counts this node's envelopes from 1; a receiver that sees a gap resynchronises.
    pub seq: u64,
    pub msg: BusMsg,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BusMsg {
    /// Committed changes of in-memory state, in commit order.
    Changes(Vec<Change>),
    /// A frame for every session of these users.
    ToUsers {
        users: Vec<Lc>,
        frame: ByteBuf,
    },
    /// A frame for every session of the members of a room (but `skip`).
    ToRoom {
        room: Lc,
        skip: Option<Lc>,
        frame: ByteBuf,
    },
    /// A frame for every session.
    ToAll {
        frame: ByteBuf,
    },
    /// `user` has this many sessions on the sending node now.
    Online {
        user: Lc,
        sessions: u32,
    },
    /// End every session of `user`.
    Disconnect {
        user: Lc,
        reason: String,
    },
    Heartbeat(NodeInfo),
    /// The node is shutting down.
    Leaving,
}

/// A node as the others see it (`classchat-server admin nodes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The address it serves clients on.
    pub listen: String,
    /// Connections logged in.
    pub connections: u32,
    pub started_ms: u64,
    /// Online users and their session counts on this node.
    pub online: Vec<(Lc, u32)>,
}

/// A cheap handle for publishing from anywhere, also from under the state lock: encodes
/// and queues, never blocks.
#[derive(Clone, Debug)]
pub struct Outbox {
    node: NodeId,
    /// The last sequence number given out. Held while an envelope is numbered, encoded
    /// and queued, so that envelopes are queued (and sent) in the order of their numbers:
    /// numbered apart from queueing, two threads could queue 6 before 5, which the others
    /// would take for a lost envelope.
    seq: Arc<std::sync::Mutex<u64>>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    /// Whether any other node is alive: with none, nothing needs publishing.
    peers: Arc<AtomicBool>,
}

impl Outbox {
    pub(crate) fn publish(&self, msg: BusMsg) {
        let mut last = lock(&self.seq);
        let seq = *last + 1;
        let env = Envelope { node: self.node, seq, msg };
        match classchat_wire::encode(&env) {
            Ok(bytes) if bytes.len() <= MAX_ENVELOPE => {
                // Numbered even when the outbox is full: the others see the gap.
                *last = seq;
                if self.tx.try_send(Bytes::from(bytes)).is_err() {
                    tracing::warn!(seq, "the bus outbox is full; the other nodes will resynchronise");
                }
            }
            Ok(bytes) => tracing::warn!(len = bytes.len(), "a bus envelope is over its limit; not published"),
            Err(e) => tracing::error!(error = %e, "could not encode a bus envelope"),
        }
    }

    /// Whether another node is alive to publish to (frames are not forwarded otherwise;
    /// state changes always are, for a node that is starting).
    pub fn has_peers(&self) -> bool {
        self.peers.load(Ordering::Relaxed)
    }

    pub fn to_users(&self, users: Vec<Lc>, frame: &[u8]) {
        if !users.is_empty() {
            self.publish(BusMsg::ToUsers { users, frame: ByteBuf::from(frame.to_vec()) });
        }
    }

    pub fn to_room(&self, room: &str, skip: Option<&str>, frame: &[u8]) {
        self.publish(BusMsg::ToRoom {
            room: room.to_owned(),
            skip: skip.map(str::to_owned),
            frame: ByteBuf::from(frame.to_vec()),
        });
    }

    pub fn to_all(&self, frame: &[u8]) {
        if self.has_peers() {
            self.publish(BusMsg::ToAll { frame: ByteBuf::from(frame.to_vec()) });
        }
    }

    pub fn online(&self, user: &str, sessions: usize) {
        self.publish(BusMsg::Online {
            user: user.to_owned(),
            sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
        });
    }

    pub fn disconnect(&self, user: &str, reason: &str) {
        if self.has_peers() {
            self.publish(BusMsg::Disconnect { user: user.to_owned(), reason: reason.to_owned() });
        }
    }
}

/// A remote node as last heard.
#[derive(Debug)]
struct Remote {
    info: NodeInfo,
    seen: Instant,
    last_seq: u64,
    /// Set by a resynchronisation: the next envelope starts the count again (what came
    /// before it is in the state just reloaded).
    fresh: bool,
}

/// The node's connection to the cluster.
pub struct Bus {
    pub outbox: Outbox,
    pub name: String,
    client: async_nats::Client,
    subject: String,
    /// False while the connection to NATS is down (writes are refused).
    healthy: Arc<AtomicBool>,
    /// Set when the connection came back after a drop: the node must resynchronise.
    reconnected: Arc<tokio::sync::Notify>,
    /// Set from the moment the connection drops until the node has resynchronised: gaps
    /// in the others' sequences meanwhile are the outage's, and the resynchronisation
    /// covers them.
    outage: Arc<AtomicBool>,
    remotes: std::sync::Mutex<HashMap<NodeId, Remote>>,
    subscriber: tokio::sync::Mutex<Option<async_nats::Subscriber>>,
    outbox_rx: tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Bytes>>>,
    started_ms: u64,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The text of the error writes get while the bus is down.
pub const UNAVAILABLE: &str = "the server cannot reach the rest of its cluster (NATS is down); nothing was saved, try again in a moment";

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bus {
    /// Connects to NATS at `url` (retrying in the background if it is down at start) and
    /// subscribes to the cluster's subject.
    pub async fn connect(url: &str, cluster: &str, name: String) -> anyhow::Result<Arc<Bus>> {
        let healthy = Arc::new(AtomicBool::new(false));
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let (h, r) = (Arc::clone(&healthy), Arc::clone(&reconnected));
        let was_down = Arc::new(AtomicBool::new(false));
        let outage = Arc::new(AtomicBool::new(false));
        let o = Arc::clone(&outage);
        let options = async_nats::ConnectOptions::new()
            .name(format!("classchat-server {name}"))
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|attempt| Duration::from_millis((100 * attempt as u64).min(2000)))
            .event_callback(move |event| {
                let (h, r, was_down, o) =
                    (Arc::clone(&h), Arc::clone(&r), Arc::clone(&was_down), Arc::clone(&o));
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            h.store(true, Ordering::SeqCst);
                            if was_down.swap(false, Ordering::SeqCst) {
                                tracing::warn!("NATS is back: resynchronising this node");
                                r.notify_one();
                            }
                        }
                        async_nats::Event::Disconnected => {
                            h.store(false, Ordering::SeqCst);
                            o.store(true, Ordering::SeqCst);
                            if !was_down.swap(true, Ordering::SeqCst) {
                                tracing::warn!(
                                    "lost the connection to NATS: refusing writes until it is back"
                                );
                            }
                        }
                        other => tracing::info!(event = %other, "NATS"),
                    }
                }
            });
        let client = options
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the bus at {url}: {e}"))?;
        healthy.store(true, Ordering::SeqCst);
        let subject = format!("{cluster}.events");
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject}: {e}"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOX);
        let node: NodeId = rand::random::<u64>() | 1;
        tracing::info!(%url, %subject, node = %format!("{node:016x}"), %name, "joined the cluster bus");
        Ok(Arc::new(Bus {
            outbox: Outbox {
                node,
                seq: Arc::new(std::sync::Mutex::new(0)),
                tx,
                peers: Arc::new(AtomicBool::new(false)),
            },
            name,
            client,
            subject,
            healthy,
            reconnected,
            outage,
            remotes: std::sync::Mutex::new(HashMap::new()),
            subscriber: tokio::sync::Mutex::new(Some(subscriber)),
            outbox_rx: tokio::sync::Mutex::new(Some(rx)),
            started_ms: crate::store::now_ms(),
        }))
    }

    /// `None` while writes may go ahead, or why not.
    pub fn refusal(&self) -> Option<&'static str> {
        (!self.healthy.load(Ordering::SeqCst)).then_some(UNAVAILABLE)
    }

    /// This node and the others heard from, for `admin nodes`: (info, is this node,
    /// seconds since last heard).
    pub fn nodes(&self, state: &State) -> Vec<(NodeInfo, bool, u64)> {
        let mut out = vec![(self.own_info(state), true, 0)];
        for r in lock(&self.remotes).values() {
            out.push((r.info.clone(), false, r.seen.elapsed().as_secs()));
        }
        out
    }

    fn own_info(&self, state: &State) -> NodeInfo {
        let inner = state.lock();
        let online = inner
            .users
            .iter()
            .filter(|(_, u)| !u.sessions.is_empty())
            .map(|(lc, u)| (lc.clone(), u32::try_from(u.sessions.len()).unwrap_or(u32::MAX)))
            .collect();
        NodeInfo {
            name: self.name.clone(),
            listen: state.local_addr.get().map(ToString::to_string).unwrap_or_default(),
            connections: u32::try_from(inner.sessions.len()).unwrap_or(u32::MAX),
            started_ms: self.started_ms,
            online,
        }
    }

    /// Runs the node's side of the bus until shutdown: publishing, receiving, heartbeats,
    /// expiring silent nodes, resynchronising after an outage.
    pub async fn run(self: Arc<Self>, state: State) {
        let (Some(mut subscriber), Some(mut rx)) =
            (self.subscriber.lock().await.take(), self.outbox_rx.lock().await.take())
        else {
            return;
        };
        let publisher = {
            let (client, subject) = (self.client.clone(), self.subject.clone());
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if let Err(e) = client.publish(subject.clone(), bytes).await {
                        tracing::warn!(error = %e, "could not publish to the bus");
                    }
                }
            })
        };
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                msg = subscriber.next() => match msg {
                    Some(m) => {
                        // Whatever else has arrived is handled with it, and each connection's
                        // writer is woken once for all of it (as after a local commit).
                        let _gather = crate::state::Gather::begin();
                        self.receive(&state, &m.payload);
                        for _ in 0..RECEIVE_BATCH {
                            match futures_util::FutureExt::now_or_never(subscriber.next()) {
                                Some(Some(m)) => self.receive(&state, &m.payload),
                                _ => break,
                            }
                        }
                    }
                    None => {
                        tracing::error!("the bus subscription ended");
                        break;
                    }
                },
                _ = beat.tick() => {
                    self.outbox.publish(BusMsg::Heartbeat(self.own_info(&state)));
                    self.expire(&state);
                }
                () = self.reconnected.notified() => self.resync(&state, "this node's connection to NATS dropped").await,
            }
        }
        self.outbox.publish(BusMsg::Leaving);
        // What is queued goes out before the process ends.
        drop(state);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = self.client.flush().await;
        })
        .await;
        publisher.abort();
    }

    fn receive(self: &Arc<Self>, state: &State, payload: &[u8]) {
        if payload.len() > MAX_ENVELOPE {
            tracing::warn!(len = payload.len(), "dropped an oversized bus envelope");
            return;
        }
        let env: Envelope = match classchat_wire::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "dropped a bus envelope that does not decode");
                return;
            }
        };
        if env.node == self.outbox.node {
            return;
        }
        let gap = {
            let mut remotes = lock(&self.remotes);
            let r = remotes.entry(env.node).or_insert_with(|| {
                tracing::info!(node = %format!("{:016x}", env.node), "a node joined the cluster");
                Remote {
                    info: NodeInfo {
                        name: String::new(),
                        listen: String::new(),
                        connections: 0,
                        started_ms: 0,
                        online: Vec::new(),
                    },
                    seen: Instant::now(),
                    last_seq: env.seq.saturating_sub(1),
                    fresh: false,
                }
            });
            r.seen = Instant::now();
            let gap = env.seq > r.last_seq + 1 && !r.fresh && !self.outage.load(Ordering::SeqCst);
            r.fresh = false;
            r.last_seq = r.last_seq.max(env.seq);
            if let BusMsg::Heartbeat(info) = &env.msg {
                r.info = info.clone();
            }
            self.outbox.peers.store(true, Ordering::Relaxed);
            gap
        };
        if gap {
            let bus = Arc::clone(self);
            let state = state.clone();
            tokio::spawn(async move { bus.resync(&state, "missed messages from another node").await });
        }
        match env.msg {
            BusMsg::Leaving => self.forget_node(state, env.node),
            msg => apply::receive(state, env.node, msg),
        }
    }

    /// Drops the nodes not heard from for [`NODE_TIMEOUT`]: their users go offline.
    fn expire(&self, state: &State) {
        let gone: Vec<NodeId> = lock(&self.remotes)
            .iter()
            .filter(|(_, r)| r.seen.elapsed() > NODE_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for node in gone {
            tracing::warn!(node = %format!("{node:016x}"), "a node went silent; its users are offline now");
            self.forget_node(state, node);
        }
    }

    fn forget_node(&self, state: &State, node: NodeId) {
        let mut remotes = lock(&self.remotes);
        if let Some(r) = remotes.remove(&node) {
            tracing::info!(node = %r.info.name, "a node left the cluster");
        }
        self.outbox.peers.store(!remotes.is_empty(), Ordering::Relaxed);
        drop(remotes);
        apply::node_gone(state, node);
    }

    /// Reloads the in-memory state from the store and closes this node's connections, so
    /// that their apps resume and catch up on whatever this node may have missed.
    async fn resync(&self, state: &State, why: &str) {
        tracing::warn!(why, "resynchronising this node from the store");
        match state.store.reload_snapshot().await {
            Ok(snapshot) => state.reload(snapshot),
            Err(e) => tracing::error!(error = %e, "could not reload the state from the store"),
        }
        let inner = state.lock();
        for s in inner.sessions.values() {
            crate::state::close_session(s, "the server resynchronised with its cluster; reconnecting");
        }
        tracing::warn!(connections = inner.sessions.len(), "resynchronised: connections closed to catch up");
        drop(inner);
        for r in lock(&self.remotes).values_mut() {
            r.fresh = true;
        }
        self.outage.store(false, Ordering::SeqCst);
    }
}

impl crate::store::CommitHook for Bus {
    /// While NATS is down, a job that the other nodes would have to hear of (a change of
    /// state, a message and its edits) is refused; cursors, devices, keys and the audit
    /// log concern the store alone and go ahead.
    fn refusal(&self, writes: &[crate::store::Write]) -> Option<&'static str> {
        use crate::store::Write as W;
        let needs_bus = |w: &W| {
            matches!(w, W::Message { .. } | W::Edit { .. } | W::DeleteMessage { .. } | W::React { .. })
                || Change::of_job(std::slice::from_ref(w), 0).len() == 1
        };
        if writes.iter().any(needs_bus) { self.refusal() } else { None }
    }

    fn committed(
        &self,
        writes: &[crate::store::Write],
        ids: &[(classchat_wire::MessageId, classchat_wire::Timestamp)],
    ) {
        let changes = Change::of_job(writes, ids.first().map_or(0, |(id, _)| *id));
        if !changes.is_empty() {
            self.outbox.publish(BusMsg::Changes(changes));
        }
    }
}
