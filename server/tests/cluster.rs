//! Several server nodes joined by a real NATS server (a throwaway `nats-server` on a free
//! loopback port): what one node's users do reaches the users of the other.

mod common;

use std::time::Duration;

use classchat_server::services::nats::Nats;
use classchat_wire::{Conv, ErrorCode, Event, Request, Response};
use common::{TestServer, eventually, text_of};

/// A node of the cluster on `nats`, keeping file content in `files`.
async fn node(nats: &Nats, name: &str, files: &std::path::Path) -> TestServer {
    let url = nats.url();
    let name = name.to_owned();
    let files = files.to_owned();
    TestServer::start_with(tempfile::tempdir().expect("tempdir"), move |c| {
        c.bus = url;
        c.node_name = name;
        c.files_dir = files;
        c.discovery = false;
        c.messages_per_second = 1000;
        c.message_burst = 1000;
    })
    .await
}

/// Waits until each node has heard the other's heartbeat.
async fn joined(a: &TestServer, b: &TestServer) {
    for n in [a, b] {
        let dir = n.data_dir().to_owned();
        eventually(Duration::from_secs(10), "both nodes in `admin nodes`", || {
            let dir = dir.clone();
            async move {
                classchat_server::admin::send(&dir, "nodes").await.is_ok_and(|out| out.starts_with("2 nodes"))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_cross_nodes_over_nats() {
    let nats = Nats::start().expect("nats-server (apt-get install nats-server)");
    let files = tempfile::tempdir().expect("tempdir");
    let a = node(&nats, "node-a", files.path()).await;
    let b = node(&nats, "node-b", files.path()).await;
    joined(&a, &b).await;

    let mut alice = a.user("alice").await;
    alice.until_caught_up().await;
    alice.create_room("lab").await;
    // Bob registers on the other node: the account and the room are known there through
    // the bus (each node has its own SQLite here, so only live state is shared).
    let mut bob = b.user("bob").await;
    bob.until_caught_up().await;
    eventually(Duration::from_secs(5), "node b knows #lab", || {
        let c = &bob.client;
        async move { c.request(Request::JoinRoom { name: "lab".into(), password: None }).await.is_ok() }
    })
    .await;
    alice.expect_event("bob joined on the other node", |e| matches!(e, Event::Message { .. })).await;

    // Messages both ways.
    alice.say("lab", "hello from a").await;
    bob.expect_event("alice's message", |e| text_of(e) == Some("hello from a")).await;
    bob.say("lab", "hello from b").await;
    alice.expect_event("bob's message", |e| text_of(e) == Some("hello from b")).await;

    // Presence and member lists count the other node's sessions.
    let Response::Members { members, .. } = alice.ok(Request::RoomMembers { name: "lab".into() }).await
    else {
        panic!("expected Members");
    };
    assert!(members.iter().any(|m| m.name == "bob" && m.online), "bob online in alice's view: {members:?}");

    // A file uploaded through node a downloads through node b, byte for byte (the nodes
    // share `files_dir`).
    let tmp = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let path = tmp.path().join("slides.pdf");
    std::fs::write(&path, &bytes).expect("write");
    let info = alice.client.send_file(Conv::room("lab"), &path, |_| {}).await.expect("upload through a");
    let ev = bob
        .expect_event("the file message", |e| {
            matches!(e, Event::Message { message } if matches!(message.body, classchat_wire::Body::File { .. }))
        })
        .await;
    let Event::Message { message } = ev else { unreachable!("matched above") };
    assert_eq!(message.body, classchat_wire::Body::File { file: info.clone() });
    let ticket = bob.client.download_file(info.id).await.expect("download allowed on b");
    let dest = tmp.path().join("got.pdf");
    bob.client.download_to(&ticket, &dest, |_| {}).await.expect("download through b");
    assert_eq!(std::fs::read(&dest).expect("downloaded"), bytes);

    // Typing crosses nodes.
    alice.client.typing(Conv::room("lab")).await.expect("typing");
    bob.expect_event("alice typing", |e| matches!(e, Event::Typing { user, .. } if user == "alice")).await;

    // A kick on node a takes bob out of the room on node b at once.
    alice.ok(Request::Kick { room: "lab".into(), user: "bob".into() }).await;
    bob.expect_event("the kick", |e| matches!(e, Event::Message { .. })).await;
    assert_eq!(
        bob.err(Request::SendRoom { room: "lab".into(), text: "still here?".into(), reply_to: None }).await,
        ErrorCode::NotMember
    );

    // `admin nodes` lists both nodes with their connections.
    let out = classchat_server::admin::send(a.data_dir(), "nodes").await.expect("admin nodes");
    assert!(out.contains("node-a") && out.contains("node-b"), "{out}");

    // Bob leaves: alice sees him go offline.
    drop(bob);
    alice
        .expect_event(
            "bob offline",
            |e| matches!(e, Event::Presence { user, online: false } if user == "bob"),
        )
        .await;
    a.stop().await;
    b.stop().await;
}

/// A node as a child process on `nats` (its own SQLite here), with its stderr (the log)
/// collected for the test to read.
struct LoggedNode {
    server: common::ChildServer,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _data: tempfile::TempDir,
}

impl LoggedNode {
    async fn start(nats: &Nats, name: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let extra = format!("bus = \"{}\"\nnode_name = \"{name}\"\n", nats.url());
        let (server, stderr) = common::ChildServer::spawn_logged(data.path(), &extra).await;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { server, log, _data: data }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn user(&self, name: &str, register: bool) -> common::TestUser {
        let (client, events) = self.server.connect().await;
        let auth = common::auth(name);
        let welcome = if register {
            client.register(name, &auth, "dev-1").await
        } else {
            client.login(name, &auth, "dev-1").await
        }
        .expect("register or log in");
        common::TestUser { name: name.to_owned(), client, events, welcome }
    }
}

fn texts(resp: &Response) -> Vec<String> {
    let Response::History { messages, .. } = resp else { panic!("expected History, got {resp:?}") };
    messages
        .iter()
        .filter_map(|m| match &m.body {
            classchat_wire::Body::Text { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_refuses_writes_and_recovers() {
    let mut nats = Nats::start().expect("nats-server (apt-get install nats-server)");
    let node = LoggedNode::start(&nats, "solo").await;
    let mut alice = node.user("alice", true).await;
    alice.until_caught_up().await;
    alice.create_room("lab").await;
    alice.say("lab", "before the outage").await;

    nats.stop();
    // The node notices, says so in its log, and refuses what the others would have to
    // hear of, with a clear error, instead of saving it.
    let mut refused = None;
    for i in 0..200 {
        let text = format!("during the outage {i}");
        match alice
            .client
            .request(Request::SendRoom { room: "lab".into(), text: text.clone(), reply_to: None })
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
                assert!(e.to_string().contains("NATS"), "the error says why: {e}");
                refused = Some(text);
                break;
            }
        }
    }
    let refused = refused.expect("a write was refused while NATS was down");
    eventually(Duration::from_secs(5), "the log says NATS is gone", || {
        let log = node.log();
        async move { log.contains("lost the connection to NATS") }
    })
    .await;

    nats.start_again().expect("nats-server again");
    eventually(Duration::from_secs(20), "the log says NATS is back", || {
        let log = node.log();
        async move { log.contains("NATS is back") }
    })
    .await;
    // The node resynchronised and closed its connections: the app comes back and writes
    // work again.
    drop(alice);
    let alice = node.user("alice", false).await;
    let mut sent = false;
    for _ in 0..100 {
        match alice
            .client
            .request(Request::SendRoom { room: "lab".into(), text: "after".into(), reply_to: None })
            .await
        {
            Ok(_) => {
                sent = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(sent, "writes work again once NATS is back");
    let history =
        texts(&alice.ok(Request::History { conv: Conv::room("lab"), before: None, limit: 200 }).await);
    assert!(
        history.contains(&"before the outage".to_owned()) && history.contains(&"after".to_owned()),
        "{history:?}"
    );
    assert!(!history.contains(&refused), "a refused message was not saved: {history:?}");
    node.server.kill9().await;
}
