//! Misbehaving clients: one that stops reading, and ones that send garbage. Each must lose
//! its own connection and nothing else.

mod common;

use std::time::Duration;

use classchat_wire::{Event, Request};
use common::{TestServer, TestUser, expect_closed, raw_handshake, raw_register, text_of, users_of};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Messages sent per round in the slow-reader test.
const ROUND: usize = 8;
/// Rounds before the test gives up on the slow reader being cut off.
const MAX_ROUNDS: usize = 100;
/// "Promptly": generous, because these machines are shared and noisy.
const PROMPT: Duration = Duration::from_secs(5);

/// Sends `text` from `from` into the lobby and checks that `to` receives it.
async fn still_chatting(from: &TestUser, to: &mut TestUser, text: &str) {
    from.say("lobby", text).await;
    to.expect_event("a message after the bad client", |e| text_of(e) == Some(text)).await;
}

/// A client that logs in and then never reads is disconnected once its outbound queue
/// (16 frames here) fills. Meanwhile alice receives every message bob sends, each within a
/// bounded time, before and after the cut.
#[tokio::test]
async fn client_that_stops_reading_is_cut_off_and_others_keep_up() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.outbound_queue = 16;
        c.messages_per_second = 1_000_000;
        c.message_burst = 1_000_000;
        // Big messages fill the kernel's socket buffers in a few dozen sends.
        c.max_message_len = 128 * 1024;
    })
    .await;
    let mut alice = server.user("alice").await;
    let bob = server.user("bob").await;

    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let stream = socket.connect(server.addr).await.expect("connect");
    let (mut r, mut w) = stream.into_split();
    {
        let (mut reader, mut writer) = raw_handshake(&mut r, &mut w).await;
        raw_register(&mut reader, &mut writer, "stalled").await;
    }
    alice
        .expect_event(
            "stalled online",
            |e| matches!(e, Event::Presence { user, online: true } if user == "stalled"),
        )
        .await;

    let filler = "z".repeat(100 * 1024);
    let mut cut_off_after = None;
    for round in 0..MAX_ROUNDS {
        let sends: Vec<_> = (0..ROUND)
            .map(|i| {
                let client = bob.client.clone();
                let text = format!("{round}-{i} {filler}");
                tokio::spawn(async move {
                    client.request(Request::SendRoom { room: "lobby".into(), text, reply_to: None }).await
                })
            })
            .collect();
        for s in sends {
            s.await.expect("task").expect("bob's message is accepted");
        }
        let mut expected: Vec<String> = (0..ROUND).map(|i| format!("{round}-{i} {filler}")).collect();
        let deadline = tokio::time::Instant::now() + PROMPT;
        while !expected.is_empty() {
            let ev = tokio::time::timeout_at(deadline, alice.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("round {round}: alice is still missing {} messages", expected.len())
                })
                .expect("alice's connection is open");
            if let Some(text) = text_of(&ev) {
                expected.retain(|t| t != text);
            }
            if matches!(&ev, Event::Presence { user, online: false } if user == "stalled") {
                cut_off_after.get_or_insert(round);
            }
        }
        // One full round after the cut shows alice is unaffected by it.
        if cut_off_after.is_some_and(|r| r < round) {
            break;
        }
    }
    assert!(cut_off_after.is_some(), "the stalled client was never disconnected");
    expect_closed(&mut r, PROMPT).await;
    let online = users_of(&alice.ok(Request::OnlineUsers).await);
    assert!(!online.iter().any(|(n, _)| n == "stalled"), "{online:?}");
    drop(w);
    server.stop().await;
}

/// Two chatters plus a logged-in attacker whose raw socket halves the test keeps.
async fn setup(server: &TestServer) -> (TestUser, TestUser, TcpStream) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    {
        let (r, w) = stream.split();
        let (mut reader, mut writer) = raw_handshake(r, w).await;
        raw_register(&mut reader, &mut writer, "mallory").await;
    }
    (alice, bob, stream)
}

#[tokio::test]
async fn garbage_bytes_close_that_connection_only() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut mallory) = setup(&server).await;
    // A well-formed frame whose body is junk: it cannot pass the MAC.
    let mut junk = 100u32.to_be_bytes().to_vec();
    junk.extend((0..100u8).map(|i| i.wrapping_mul(37)));
    mallory.write_all(&junk).await.expect("write");
    expect_closed(&mut mallory, PROMPT).await;
    still_chatting(&alice, &mut bob, "after the garbage").await;
    still_chatting(&bob, &mut alice, "and back").await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_instead_of_the_handshake_closes_that_connection_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut junk = 16u32.to_be_bytes().to_vec();
    junk.extend_from_slice(b"this is no key!!");
    stream.write_all(&junk).await.expect("write");
    expect_closed(&mut stream, PROMPT).await;
    still_chatting(&alice, &mut bob, "after the bad handshake").await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_length_prefix_closes_that_connection_only() {
    let server = TestServer::start().await;
    let (alice, mut bob, mut mallory) = setup(&server).await;
    // One byte over the limit, and no body: the server must not wait for it.
    let too_big = u32::try_from(classchat_wire::MAX_FRAME_LEN + 1).expect("fits");
    mallory.write_all(&too_big.to_be_bytes()).await.expect("write");
    expect_closed(&mut mallory, PROMPT).await;
    still_chatting(&alice, &mut bob, "after the oversized frame").await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_message_type_closes_that_connection_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let (mut r, mut w) = TcpStream::connect(server.addr).await.expect("connect").into_split();
    {
        let (mut reader, mut writer) = raw_handshake(&mut r, &mut w).await;
        raw_register(&mut reader, &mut writer, "mallory").await;
        // Validly sealed (the next sequence number, the session's keys), but the
        // MessagePack inside is `{"nope": {}}`, which is no `ClientMsg`.
        writer.queue_encoded(b"\x81\xa4nope\x80").expect("seal");
        writer.flush().await.expect("write");
    }
    expect_closed(&mut r, PROMPT).await;
    still_chatting(&alice, &mut bob, "after the unknown message").await;
    drop(w);
    server.stop().await;
}

/// With `max_connections = 2`, a third connection gets no hello until one of the first
/// two ends.
#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    use tokio::io::AsyncReadExt;
    let server =
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| c.max_connections = 2).await;
    let alice = server.user("alice").await;
    let (_second, _events) = server.connect().await;

    let mut third = TcpStream::connect(server.addr).await.expect("the kernel queues it");
    let mut len = [0u8; 4];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut len)).await;
    assert!(early.is_err(), "the third connection was served while two were open");

    alice.client.close().await;
    tokio::time::timeout(PROMPT, third.read_exact(&mut len))
        .await
        .expect("served once a slot was free")
        .expect("the hello's length");
    server.stop().await;
}
