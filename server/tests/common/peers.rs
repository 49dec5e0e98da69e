//! Peers for the peer-to-peer tests: users with published identity keys, sharers driven by
//! their own event loop, shared files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use classchat_wire::e2e::Identity;
use classchat_wire::peer::{SharedEntry, SharedIndex, Sharer, SharerConfig, SharerEvent};
use classchat_wire::{Client, Event, Request};
use tokio::sync::mpsc;

use super::{TestServer, TestUser};

/// A few 2048-bit identities per test binary: generating one per user would dominate.
pub fn identity(i: usize) -> &'static Identity {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    &IDS.get_or_init(|| (0..6).map(|_| Identity::generate(2048).expect("keygen")).collect())[i]
}

/// Publishes `id` as `user`'s identity key.
pub async fn publish(user: &TestUser, id: &Identity) {
    let public_key = id.public().der().to_vec();
    user.ok(Request::PublishKey { public_key, backup: vec![0x42; 64] }).await;
}

/// Registers `name`, publishes identity `i`, joins `room` (created by whoever comes first).
pub async fn member(server: &TestServer, name: &str, i: usize, room: &str) -> TestUser {
    let user = server.user(name).await;
    publish(&user, identity(i)).await;
    if user.client.request(Request::JoinRoom { name: room.into(), password: None }).await.is_err() {
        user.create_room(room).await;
    }
    user
}

/// A file of `len` bytes of a pattern seeded by `seed`, in `dir`.
pub fn make_file(dir: &Path, name: &str, len: usize, seed: u8) -> PathBuf {
    let path = dir.join(name);
    let data: Vec<u8> =
        (0..len).map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed).collect();
    std::fs::write(&path, data).expect("write file");
    path
}

/// A running sharer: its handle, what it tells the app, and the events it did not take.
pub struct TestSharer {
    pub sharer: Sharer,
    pub index: SharedIndex,
    pub events: mpsc::Receiver<SharerEvent>,
    pub other: mpsc::Receiver<Event>,
    pub client: Client,
}

/// Starts sharing `files` as `user` (identity `i`) on loopback, with `tweak` applied to
/// the config. The user's events go through `Sharer::handle_event` first.
pub async fn share(
    user: TestUser,
    i: usize,
    files: &[PathBuf],
    tweak: impl FnOnce(&mut SharerConfig),
) -> TestSharer {
    let index = SharedIndex::new();
    for f in files {
        index.insert(SharedEntry::from_path(f).expect("hash"));
    }
    index.set_enabled(true);
    let mut config = SharerConfig::new(user.name.clone(), identity(i).clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.advertise = Some(Vec::new());
    tweak(&mut config);
    let (sharer, events) =
        Sharer::start(user.client.clone(), index.clone(), config).await.expect("start sharing");
    let (tx, other) = mpsc::channel(1024);
    let s = sharer.clone();
    let mut incoming = user.events;
    tokio::spawn(async move {
        while let Some(ev) = incoming.recv().await {
            if !s.handle_event(&ev) && tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    TestSharer { sharer, index, events, other, client: user.client }
}

impl TestSharer {
    /// Waits for the first sharer event matching `pred`.
    pub async fn expect(&mut self, what: &str, mut pred: impl FnMut(&SharerEvent) -> bool) -> SharerEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return ev,
                Ok(Some(_)) => {}
                Ok(None) => panic!("sharer events ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}

/// The server's byte counters, from its admin socket.
pub async fn server_counts(server: &TestServer) -> (u64, u64) {
    let out = classchat_server::admin::send(server.data_dir(), "stats").await.expect("stats");
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse::<u64>().expect("a number")))
            .unwrap_or_else(|| panic!("no {key} in {out:?}"))
    };
    (get("relayed_bytes"), get("bulk_bytes"))
}
