//! Broadcasts, direct messages, offline delivery, history, and message limits.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use classchat_wire::{Body, Conv, ErrorCode, Event, Request, Response};
use common::{TestServer, TestUser, eventually, text_of, users_of};

fn dm_body(ev: &Event) -> Option<(&Conv, &str, &[u8])> {
    match ev {
        Event::Message { message } => match &message.body {
            Body::Opaque { data } => Some((&message.conv, message.from.as_str(), data.as_slice())),
            _ => None,
        },
        _ => None,
    }
}

/// Closes `user`'s connection and waits until the server has let go of it (the user is
/// listed offline), so everything it sent before closing has been handled.
async fn log_off(server_user: &TestUser, user: TestUser) {
    let name = user.name.clone();
    user.client.close().await;
    eventually(Duration::from_secs(10), &format!("{name} to go offline"), || async {
        let users = users_of(&server_user.ok(Request::ListUsers).await);
        users.iter().any(|(n, online)| *n == name && !online)
    })
    .await;
}

#[tokio::test]
async fn broadcast_reaches_every_online_user_and_confirms_the_count() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut carol = server.user("carol").await;
    let dave = server.user("dave").await;
    log_off(&alice, dave).await;

    let reply = alice.ok(Request::Broadcast { text: "class starts in 5".into() }).await;
    let Response::Broadcast { id, recipients, .. } = reply else {
        panic!("expected Broadcast, got {reply:?}")
    };
    assert_eq!(recipients, 2, "bob and carol are online; dave is not, and alice sent it");
    for user in [&mut bob, &mut carol] {
        let ev = user.expect_event("the broadcast", |e| text_of(e) == Some("class starts in 5")).await;
        let Event::Message { message } = ev else { unreachable!() };
        assert_eq!(message.conv, Conv::Announcements);
        assert_eq!(message.from, "alice");
        assert_eq!(message.id, id);
    }
    server.stop().await;
}

#[tokio::test]
async fn broadcast_can_be_reserved_for_server_admins() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.allow_user_broadcast = false;
        c.admins = vec!["Teacher".into()];
    })
    .await;
    let bob = server.user("bob").await;
    let teacher = server.user("teacher").await;
    assert!(!bob.welcome.can_broadcast);
    assert!(teacher.welcome.can_broadcast && teacher.welcome.server_admin);

    assert_eq!(bob.err(Request::Broadcast { text: "party!".into() }).await, ErrorCode::Forbidden);
    let reply = teacher.ok(Request::Broadcast { text: "quiz tomorrow".into() }).await;
    assert!(matches!(reply, Response::Broadcast { recipients: 1, .. }), "{reply:?}");
    server.stop().await;
}

#[tokio::test]
async fn direct_message_to_unknown_user_is_refused() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let code =
        alice.err(Request::SendDirect { to: "nobody".into(), body: b"psst".to_vec(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::NoSuchUser);
    server.stop().await;
}

#[tokio::test]
async fn direct_message_to_offline_user_arrives_on_login_exactly_once() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    log_off(&alice, bob).await;

    let sent = alice
        .ok(Request::SendDirect { to: "bob".into(), body: b"\x00sealed\xff".to_vec(), reply_to: None })
        .await;
    let Response::Sent { id, .. } = sent else { panic!("expected Sent, got {sent:?}") };

    let mut bob = server.login("bob", "dev-1").await;
    let before = bob.until_caught_up().await;
    let dms: Vec<_> = before.iter().filter_map(dm_body).collect();
    assert_eq!(dms, [(&Conv::direct("alice"), "alice", &b"\x00sealed\xff"[..])]);
    assert!(before.iter().any(|e| matches!(e, Event::Message { message } if message.id == id)));

    // The client acknowledges once a second; give it time, then close on the same device.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    log_off(&alice, bob).await;

    let mut bob = server.login("bob", "dev-1").await;
    let again = bob.until_caught_up().await;
    assert!(again.iter().all(|e| dm_body(e).is_none()), "delivered twice: {again:?}");
    server.stop().await;
}

#[tokio::test]
async fn room_messages_sent_while_offline_arrive_before_caught_up() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    log_off(&alice, bob).await;

    let ids = [alice.say("lab", "one").await, alice.say("lab", "two").await, alice.say("lab", "three").await];

    let mut bob = server.login("bob", "dev-1").await;
    let missed: Vec<(u64, String)> = bob
        .until_caught_up()
        .await
        .iter()
        .filter_map(|e| match e {
            Event::Message { message } if message.conv == Conv::room("lab") => {
                text_of(e).map(|t| (message.id, t.to_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        missed,
        [(ids[0], "one".to_owned()), (ids[1], "two".to_owned()), (ids[2], "three".to_owned())]
    );
    server.stop().await;
}

/// 10,000 messages in one room, then paged back 200 at a time: every id exactly once,
/// newest first, `more` set on every page but the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_back_across_ten_thousand_messages() {
    const TOTAL: usize = 10_000;
    const SENDERS: usize = 100;
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.messages_per_second = 1_000_000;
        c.message_burst = 1_000_000;
    })
    .await;
    let alice = server.user("alice").await;
    alice.create_room("big").await;

    // Many requests in flight, so the store commits them in large groups.
    let client = Arc::new(alice.client.clone());
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in (s..TOTAL).step_by(SENDERS) {
                let text = format!("m{i}");
                match client
                    .request(Request::SendRoom { room: "big".into(), text: text.clone(), reply_to: None })
                    .await
                {
                    Ok(Response::Sent { id, .. }) => sent.push((id, text)),
                    other => panic!("send {i}: {other:?}"),
                }
            }
            sent
        }));
    }
    let mut sent: HashMap<u64, String> = HashMap::new();
    for t in tasks {
        sent.extend(t.await.expect("sender"));
    }
    assert_eq!(sent.len(), TOTAL, "every message got its own id");

    let mut seen: Vec<u64> = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let reply = alice.ok(Request::History { conv: Conv::room("big"), before, limit: 200 }).await;
        let Response::History { messages, more, .. } = reply else { panic!("expected History") };
        pages += 1;
        assert!(messages.len() <= 200);
        for m in &messages {
            assert_eq!(m.conv, Conv::room("big"));
            if let Some(text) = sent.get(&m.id) {
                assert_eq!(text_of(&Event::Message { message: m.clone() }), Some(text.as_str()));
            }
        }
        seen.extend(messages.iter().map(|m| m.id));
        before = messages.last().map(|m| m.id);
        if !more {
            break;
        }
        assert_eq!(messages.len(), 200, "only the last page is short");
        assert!(pages <= TOTAL / 200 + 1, "paging does not end");
    }
    // The room's history is its `Created` event plus the 10,000 messages.
    assert_eq!(seen.len(), TOTAL + 1);
    assert_eq!(pages, TOTAL / 200 + 1);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert!(sent.keys().all(|id| unique.contains(id)), "every sent message is in the history");
    server.stop().await;
}

#[tokio::test]
async fn history_limit_must_be_between_1_and_200() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    for limit in [0, 201] {
        let code = alice.err(Request::History { conv: Conv::room("lobby"), before: None, limit }).await;
        assert_eq!(code, ErrorCode::BadRequest, "limit {limit}");
    }
    for limit in [1, 200] {
        alice.ok(Request::History { conv: Conv::room("lobby"), before: None, limit }).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn history_of_a_room_you_are_not_in_is_refused() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.create_room("private").await;
    alice.say("private", "secret plans").await;
    let code = bob.err(Request::History { conv: Conv::room("private"), before: None, limit: 50 }).await;
    assert_eq!(code, ErrorCode::NotMember);
    server.stop().await;
}

#[tokio::test]
async fn sending_too_fast_is_rate_limited() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.messages_per_second = 1;
        c.message_burst = 3;
    })
    .await;
    let alice = server.user("alice").await;
    // All at once: the server takes them back to back, far faster than one a second.
    let sends: Vec<_> = (0..10)
        .map(|i| {
            let client = alice.client.clone();
            tokio::spawn(async move {
                client
                    .request(Request::SendRoom {
                        room: "lobby".into(),
                        text: format!("spam {i}"),
                        reply_to: None,
                    })
                    .await
            })
        })
        .collect();
    let (mut sent, mut limited) = (0, 0);
    for s in sends {
        match s.await.expect("task") {
            Ok(Response::Sent { .. }) => sent += 1,
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((3..=5).contains(&sent), "the burst of 3 (plus at most a refill or two) got through: {sent}");
    assert_eq!(sent + limited, 10);
    server.stop().await;
}

#[tokio::test]
async fn over_long_message_is_refused() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let max = alice.welcome.limits.max_message_len as usize;
    let code = alice
        .err(Request::SendRoom { room: "lobby".into(), text: "x".repeat(max + 1), reply_to: None })
        .await;
    assert_eq!(code, ErrorCode::TooLong);
    let code =
        alice.err(Request::SendDirect { to: "alice".into(), body: vec![7; max + 1], reply_to: None }).await;
    assert_eq!(code, ErrorCode::TooLong);
    alice.say("lobby", &"x".repeat(max)).await;
    server.stop().await;
}

#[tokio::test]
async fn welcome_lists_dm_partners_for_a_new_machine() {
    let server = TestServer::start().await;
    let alice = server.user("Alice").await;
    let _bob = server.user("bob").await;
    assert!(alice.welcome.dm_peers.is_empty());
    alice.ok(Request::SendDirect { to: "bob".into(), body: b"hi".to_vec(), reply_to: None }).await;
    let bob_elsewhere = server.login("bob", "lab-pc-9").await;
    assert_eq!(bob_elsewhere.welcome.dm_peers, vec!["Alice".to_owned()]);
    let alice_elsewhere = server.login("alice", "laptop").await;
    assert_eq!(alice_elsewhere.welcome.dm_peers, vec!["bob".to_owned()]);
    server.stop().await;
}

/// A device that comes back at once, or after a restart, is not sent again what it
/// acknowledged before it left.
#[tokio::test]
async fn acknowledged_messages_are_not_sent_again_after_a_quick_reconnect_or_a_restart() {
    let server = TestServer::start().await;
    let mut ann = server.user("ann").await;
    ann.until_caught_up().await;
    let mut bea = server.user("bea").await;
    bea.until_caught_up().await;

    let is_offline = |ev: &Event| matches!(ev, Event::Presence { user, online: false } if user == "bea");
    let again = |events: &[Event], text: &str| events.iter().any(|e| text_of(e) == Some(text));

    ann.say("lobby", "one").await;
    bea.expect_event("one", |e| text_of(e) == Some("one")).await;
    // close() sends the acknowledgement first; once ann sees bea go offline, the server
    // has handled every frame of bea's connection, the ack included.
    bea.client.close().await;
    ann.expect_event("bea offline", is_offline).await;
    let mut bea = server.login("bea", "dev-1").await;
    let caught_up = bea.until_caught_up().await;
    assert!(!again(&caught_up, "one"), "acknowledged, yet sent again: {caught_up:?}");

    ann.say("lobby", "two").await;
    bea.expect_event("two", |e| text_of(e) == Some("two")).await;
    bea.client.close().await;
    ann.expect_event("bea offline", is_offline).await;
    drop(ann);
    let data = server.stop().await;
    let server = TestServer::start_with(data, |_| {}).await;
    let mut bea = server.login("bea", "dev-1").await;
    let caught_up = bea.until_caught_up().await;
    assert!(!again(&caught_up, "two"), "the held cursor was lost at shutdown: {caught_up:?}");
}
