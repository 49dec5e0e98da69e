//! Presence, user lists, the heartbeat and the login deadline.
//!
//! The time-based tests use tokio's paused clock (`tokio::time::pause()`), which works
//! with the real sockets here: every test runs on one current-thread runtime that holds
//! the server and the clients, loopback writes are readable before the runtime next
//! parks, and while everything waits the clock jumps straight to the next timer. The
//! clock is paused only after login, because Argon2 runs on blocking threads that the
//! paused clock would not wait for.

mod common;

use std::time::Duration;

use classchat_wire::{Event, Request, ServerMsg};
use common::{TestServer, eventually, expect_closed, raw_handshake, raw_register, users_of};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Timers fire on whole milliseconds, rounded up.
const TIMER_SLACK: Duration = Duration::from_millis(50);

fn presence(user: &str, online: bool) -> impl FnMut(&Event) -> bool {
    let user = user.to_owned();
    move |e| matches!(e, Event::Presence { user: u, online: o } if *u == user && *o == online)
}

#[tokio::test]
async fn presence_events_reach_users_sharing_a_room() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.expect_event("bob online", presence("bob", true)).await;
    bob.client.close().await;
    alice.expect_event("bob offline", presence("bob", false)).await;
    server.stop().await;
}

#[tokio::test]
async fn online_users_and_all_users_are_listed() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let _bob = server.user("bob").await;
    let carol = server.user("carol").await;
    carol.client.close().await;
    eventually(Duration::from_secs(10), "carol to go offline", || async {
        users_of(&alice.ok(Request::OnlineUsers).await).len() == 2
    })
    .await;

    let mut online = users_of(&alice.ok(Request::OnlineUsers).await);
    online.sort();
    assert_eq!(online, [("alice".to_owned(), true), ("bob".to_owned(), true)]);
    let mut all = users_of(&alice.ok(Request::ListUsers).await);
    all.sort();
    assert_eq!(all, [("alice".to_owned(), true), ("bob".to_owned(), true), ("carol".to_owned(), false)]);
    server.stop().await;
}

/// Paused time (see the file's comment). A hand-made client logs in, reads the server's
/// pings and never answers. It must be dropped once the heartbeat timeout (default 30 s)
/// has passed, at the next ping tick (a third of the timeout); a real client in the same
/// runtime, which answers pings, must stay connected.
#[tokio::test]
async fn dead_client_is_dropped_by_heartbeat() {
    let server = TestServer::start().await;
    let heartbeat = Duration::from_millis(classchat_server::Config::default().heartbeat_timeout_ms);
    let mut alice = server.user("alice").await;
    let (r, w) = TcpStream::connect(server.addr).await.expect("connect").into_split();
    let (mut reader, mut writer) = raw_handshake(r, w).await;
    raw_register(&mut reader, &mut writer, "zombie").await;
    alice.expect_event("zombie online", presence("zombie", true)).await;

    tokio::time::pause();
    let start = Instant::now();
    let (mut pings, mut told) = (0, None);
    loop {
        let msg = tokio::time::timeout(heartbeat * 4, reader.recv::<ServerMsg>())
            .await
            .expect("the dead client was dropped");
        match msg {
            Ok(Some(ServerMsg::Ping { .. })) => pings += 1,
            Ok(Some(ServerMsg::Event { event: Event::Disconnect { reason } })) => told = Some(reason),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= heartbeat - Duration::from_secs(1) && elapsed <= heartbeat + heartbeat / 3 + TIMER_SLACK,
        "dropped after {elapsed:?} (heartbeat {heartbeat:?})"
    );
    assert!(pings >= 2, "the server pinged first ({pings} pings)");
    assert!(told.is_some_and(|r| r.contains("no sign of life")), "the server said why");

    alice.expect_event_within(heartbeat, "zombie offline", presence("zombie", false)).await;
    alice.ok(Request::Ping).await;
    assert!(!alice.client.is_closed(), "a client that answers pings stays");
    drop(writer);
    server.stop().await;
}

/// Paused time. The handshake completes but no login follows: dropped at the login
/// deadline (default 10 s), with a reason.
#[tokio::test]
async fn client_that_never_logs_in_is_dropped_after_the_login_timeout() {
    let server = TestServer::start().await;
    let limit = Duration::from_millis(classchat_server::Config::default().login_timeout_ms);
    let (r, w) = TcpStream::connect(server.addr).await.expect("connect").into_split();
    let (mut reader, writer) = raw_handshake(r, w).await;

    tokio::time::pause();
    let start = Instant::now();
    let mut told = None;
    loop {
        let msg = tokio::time::timeout(limit * 3, reader.recv::<ServerMsg>()).await.expect("dropped in time");
        match msg {
            Ok(Some(ServerMsg::Event { event: Event::Disconnect { reason } })) => told = Some(reason),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= limit - Duration::from_secs(1) && elapsed <= limit + TIMER_SLACK,
        "dropped after {elapsed:?} (login timeout {limit:?})"
    );
    assert!(told.is_some_and(|r| r.contains("login")), "the server said why");
    drop(writer);
    server.stop().await;
}

/// Paused time. TCP connects and reads the server's hello, then sends nothing.
#[tokio::test]
async fn client_that_never_finishes_the_handshake_is_dropped() {
    let server = TestServer::start().await;
    // The handshake has its own, shorter bound (PROTOCOL.md section 12.1).
    let limit = Duration::from_millis(classchat_server::Config::default().handshake_timeout_ms);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.expect("the hello's length");
    let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut hello).await.expect("the hello");

    tokio::time::pause();
    let start = Instant::now();
    expect_closed(&mut stream, limit * 3).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= limit - Duration::from_secs(1) && elapsed <= limit + TIMER_SLACK,
        "dropped after {elapsed:?} (handshake timeout {limit:?})"
    );
    server.stop().await;
}
