//! Several server nodes joined by a real NATS server (a throwaway `nats-server` on a free
//! loopback port): what one node's users do reaches the users of the other.

mod common;

use std::time::Duration;

use classchat_server::services::nats::Nats;
use classchat_wire::{Conv, ErrorCode, Event, Request, Response};
use common::{TestServer, eventually, text_of};

/// A node of the cluster on `nats`.
async fn node(nats: &Nats, name: &str) -> TestServer {
    let url = nats.url();
    let name = name.to_owned();
    TestServer::start_with(tempfile::tempdir().expect("tempdir"), move |c| {
        c.bus = url;
        c.node_name = name;
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
    let a = node(&nats, "node-a").await;
    let b = node(&nats, "node-b").await;
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
