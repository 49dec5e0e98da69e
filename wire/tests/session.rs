//! Sessions over real loopback TCP: the handshake, sealed messages both ways, the async
//! client against a tiny in-test server, and an attacker on the path who tampers with,
//! replays, reorders, drops or truncates sealed frames.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use classchat_wire::connection::{Connection, FrameReader};
use classchat_wire::crypto;
use classchat_wire::{
    Body, ChatMessage, Client, ClientConfig, ClientMsg, Conv, CryptoError, Error, ErrorCode, Event,
    MAX_FRAME_LEN, PROTOCOL_VERSION, Request, Response, ServerMsg, TrustPolicy, frame, message,
};
use common::{TcpSession, accept_session, connect_session, listen, server_key, session_pair, within};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

// ---- Connection::accept / Connection::connect ------------------------------------------

#[tokio::test]
async fn handshake_then_sealed_messages_both_ways_over_tcp() {
    let (listener, addr) = listen().await;
    let key = server_key();
    let server = tokio::spawn(async move {
        let mut session = accept_session(&listener, key).await;
        let mut received = Vec::new();
        while let Some(msg) = within("server recv", session.recv::<ClientMsg>()).await.expect("server recv") {
            if let ClientMsg::Request { id, .. } = &msg {
                session.send(&ServerMsg::Ok { id: *id, body: Response::Pong }).await.expect("reply");
            }
            received.push(msg);
        }
        received
    });

    let (r, w) = TcpStream::connect(&addr).await.expect("connect").into_split();
    let mut seen_by_verify = None;
    let (mut session, hello, fingerprint) = Connection::from_parts(r, w, MAX_FRAME_LEN)
        .connect(|hello, fp| {
            seen_by_verify = Some((hello.clone(), *fp));
            Ok(())
        })
        .await
        .expect("client side of the handshake");
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!(hello.server_name, "test server");
    assert_eq!(hello.public_key, key.public_der());
    assert_eq!(hello.nonce.len(), crypto::NONCE_LEN);
    assert_eq!(&fingerprint, key.fingerprint());
    assert_eq!(seen_by_verify, Some((hello, fingerprint)), "verify saw the hello before anything was sent");

    // Small, empty-ish and near-limit plaintexts; the big one is 900 KiB.
    let sent = vec![
        ClientMsg::Request { id: 1, body: Request::Ping },
        ClientMsg::Pong { nonce: 0 },
        ClientMsg::Request {
            id: 2,
            body: Request::SendRoom { room: "lobby".into(), text: "é".repeat(450 * 1024), reply_to: None },
        },
        ClientMsg::Ack { conv: Conv::Announcements, up_to: u64::MAX },
    ];
    for msg in &sent {
        session.send(msg).await.expect("send");
    }
    for id in [1, 2] {
        let reply: ServerMsg = within("client recv", session.recv()).await.expect("recv").expect("a reply");
        assert_eq!(reply, ServerMsg::Ok { id, body: Response::Pong });
    }
    session.writer.shutdown().await.expect("shutdown");
    assert_eq!(within("server", server).await.expect("server task"), sent);
    // The server's side ended: the client now sees a clean close.
    assert!(within("eof", session.recv::<ServerMsg>()).await.expect("clean close").is_none());
}

#[tokio::test]
async fn halves_work_from_separate_tasks() {
    let (client, server) = session_pair().await;
    let (mut c_reader, mut c_writer) = client.split();
    let (mut s_reader, mut s_writer) = server.split();
    const N: u64 = 500;
    let echo = tokio::spawn(async move {
        while let Some(ClientMsg::Pong { nonce }) = s_reader.recv::<ClientMsg>().await.expect("server recv") {
            s_writer.send(&ServerMsg::Ping { nonce }).await.expect("server send");
        }
    });
    let writer = tokio::spawn(async move {
        // Queue many frames and write them with one flush each 50, as the client's writer does.
        for nonce in 0..N {
            c_writer.queue(&ClientMsg::Pong { nonce }).expect("queue");
            if nonce % 50 == 49 {
                c_writer.flush().await.expect("flush");
            }
        }
        c_writer.shutdown().await.expect("shutdown");
    });
    for expected in 0..N {
        let msg: ServerMsg = within("echo", c_reader.recv()).await.expect("recv").expect("message");
        assert_eq!(msg, ServerMsg::Ping { nonce: expected });
    }
    writer.await.expect("writer");
    echo.await.expect("echo");
}

#[tokio::test]
async fn identical_plaintexts_never_look_alike_on_the_wire() {
    let (mut c2s, _) = relay_session(2, |frames| frames.iter().map(|f| reframe(f)).collect(), |_| {}).await;
    let (a, b) = (c2s.remove(0), c2s.remove(0));
    assert_eq!(a.len(), b.len());
    assert_ne!(a[..crypto::IV_LEN], b[..crypto::IV_LEN], "a fresh IV per frame");
    assert_ne!(a, b);
    let secret = b"attack at dawn";
    assert!(!a.windows(secret.len()).any(|w| w == secret), "the plaintext is not on the wire");
}

// ---- an attacker on the path ------------------------------------------------------------

/// What the server got from a tampered stream: the messages it accepted, then how it ended.
#[derive(Debug)]
struct Outcome {
    accepted: Vec<ClientMsg>,
    end: Result<(), Error>,
}

fn reframe(body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(body, &mut out, usize::MAX).expect("frame");
    out.to_vec()
}

/// The message the client sends as its `i`th sealed frame.
fn nth_msg(i: usize) -> ClientMsg {
    ClientMsg::Request {
        id: u32::try_from(i).expect("small"),
        body: Request::SendRoom { room: "lobby".into(), text: "attack at dawn".into(), reply_to: None },
    }
}

/// Runs a client and a server through a relay that passes the handshake untouched, takes
/// the client's first `n` sealed frame bodies, and writes `tamper(bodies)` to the server in
/// their place. Returns the bodies the client sent and what the server made of the result.
/// `inspect` sees the server's [`Outcome`].
async fn relay_session(
    n: usize,
    tamper: impl FnOnce(&[Vec<u8>]) -> Vec<Vec<u8>> + Send + 'static,
    inspect: impl FnOnce(&Outcome),
) -> (Vec<Vec<u8>>, Outcome) {
    let (server_listener, server_addr) = listen().await;
    let (relay_listener, relay_addr) = listen().await;

    let server = tokio::spawn(async move {
        let mut session = accept_session(&server_listener, server_key()).await;
        let mut accepted = Vec::new();
        let end = loop {
            match within("server recv", session.recv::<ClientMsg>()).await {
                Ok(Some(msg)) => accepted.push(msg),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        Outcome { accepted, end }
    });

    let relay = tokio::spawn(async move {
        let (client_r, mut client_w) = common::accept_tcp(&relay_listener).await.into_split();
        let (server_r, mut server_w) =
            TcpStream::connect(&server_addr).await.expect("relay connects").into_split();
        let mut from_client = FrameReader::new(client_r, usize::MAX);
        let mut from_server = FrameReader::new(server_r, usize::MAX);
        let hello = from_server.read_frame().await.expect("hello").expect("hello frame");
        client_w.write_all(&reframe(&hello)).await.expect("pass hello");
        let client_key = from_client.read_frame().await.expect("client key").expect("client key frame");
        server_w.write_all(&reframe(&client_key)).await.expect("pass client key");
        let mut bodies = Vec::new();
        for _ in 0..n {
            let body = from_client.read_frame().await.expect("read").expect("a sealed frame");
            bodies.push(body.to_vec());
        }
        for raw in tamper(&bodies) {
            server_w.write_all(&raw).await.expect("write to server");
        }
        server_w.shutdown().await.expect("shutdown towards the server");
        drop(client_w);
        bodies
    });

    let mut client = connect_session(&relay_addr).await;
    // One frame each: queued together they would share a frame (PROTOCOL.md section 4).
    for i in 0..n {
        client.writer.send(&nth_msg(i)).await.expect("send");
    }

    let bodies = within("relay", relay).await.expect("relay task");
    let outcome = within("server", server).await.expect("server task");
    inspect(&outcome);
    (bodies, outcome)
}

fn assert_rejected(outcome: &Outcome, accepted: usize, why: CryptoError) {
    let expected: Vec<ClientMsg> = (0..accepted).map(nth_msg).collect();
    assert_eq!(outcome.accepted, expected, "frames before the bad one are accepted");
    match &outcome.end {
        Err(Error::Crypto(e)) => assert_eq!(*e, why),
        other => panic!("expected Crypto({why:?}), got {other:?}"),
    }
}

#[tokio::test]
async fn untouched_relay_delivers_everything() {
    let (_, outcome) = relay_session(3, |f| f.iter().map(|b| reframe(b)).collect(), |_| {}).await;
    assert_eq!(outcome.accepted, (0..3).map(nth_msg).collect::<Vec<_>>());
    assert!(outcome.end.is_ok(), "{:?}", outcome.end);
}

#[tokio::test]
async fn a_flipped_bit_anywhere_in_a_sealed_frame_is_rejected() {
    // A 14-byte text seals into IV(16) || CT(48) || MAC(32): the first and last bits of
    // each part.
    for bit in [0, 127, 128, 511, 512, 767] {
        let (_, outcome) = relay_session(
            2,
            move |f| {
                let mut first = f[0].clone();
                first[bit / 8] ^= 0x80 >> (bit % 8);
                vec![reframe(&first), reframe(&f[1])]
            },
            |_| {},
        )
        .await;
        assert_rejected(&outcome, 0, CryptoError::BadMac);
    }
}

#[tokio::test]
async fn a_tampered_later_frame_is_rejected_after_good_ones() {
    let (_, outcome) = relay_session(
        3,
        |f| {
            let mut third = f[2].clone();
            third[40] ^= 1;
            vec![reframe(&f[0]), reframe(&f[1]), reframe(&third)]
        },
        |_| {},
    )
    .await;
    assert_rejected(&outcome, 2, CryptoError::BadMac);
}

#[tokio::test]
async fn a_replayed_frame_is_rejected() {
    let (_, outcome) =
        relay_session(2, |f| vec![reframe(&f[0]), reframe(&f[0]), reframe(&f[1])], |_| {}).await;
    assert_rejected(&outcome, 1, CryptoError::BadMac);
}

#[tokio::test]
async fn reordered_frames_are_rejected() {
    let (_, outcome) = relay_session(2, |f| vec![reframe(&f[1]), reframe(&f[0])], |_| {}).await;
    assert_rejected(&outcome, 0, CryptoError::BadMac);
}

#[tokio::test]
async fn a_dropped_frame_is_detected_at_the_next_one() {
    let (_, outcome) = relay_session(3, |f| vec![reframe(&f[0]), reframe(&f[2])], |_| {}).await;
    assert_rejected(&outcome, 1, CryptoError::BadMac);
}

#[tokio::test]
async fn truncated_frames_are_rejected() {
    // One byte short: no longer IV + whole blocks + MAC.
    let (_, outcome) = relay_session(1, |f| vec![reframe(&f[0][..f[0].len() - 1])], |_| {}).await;
    assert_rejected(&outcome, 0, CryptoError::Truncated);
    // One whole block short: the right shape, but the MAC no longer matches.
    let (_, outcome) = relay_session(1, |f| vec![reframe(&f[0][16..])], |_| {}).await;
    assert_rejected(&outcome, 0, CryptoError::BadMac);
    // Shorter than the smallest sealed body.
    let (_, outcome) = relay_session(1, |f| vec![reframe(&f[0][..crypto::MIN_SEALED_LEN - 1])], |_| {}).await;
    assert_rejected(&outcome, 0, CryptoError::Truncated);
    let (_, outcome) = relay_session(1, |_| vec![reframe(&[])], |_| {}).await;
    assert_rejected(&outcome, 0, CryptoError::Truncated);
}

#[tokio::test]
async fn a_stream_cut_mid_frame_is_an_error_not_a_clean_close() {
    let (_, outcome) = relay_session(
        2,
        |f| {
            let second = reframe(&f[1]);
            vec![reframe(&f[0]), second[..second.len() / 2].to_vec()]
        },
        |_| {},
    )
    .await;
    assert_eq!(outcome.accepted, vec![nth_msg(0)]);
    match &outcome.end {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("expected an unexpected-EOF error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_frame_from_another_session_is_rejected() {
    let (_, outcome) = relay_session(
        1,
        |_| {
            // Sealed correctly, with seq 0, but under keys this session never agreed on.
            let keys = crypto::derive_keys(&[1; 32], &[2; 32], &[3; 32]);
            let (mut sealer, _) = keys.split(crypto::Role::Client);
            let mut out = BytesMut::new();
            let plaintext = message::encode(&nth_msg(0)).expect("encode");
            sealer.seal_frame(&plaintext, &mut out, MAX_FRAME_LEN).expect("seal");
            vec![out.to_vec()]
        },
        |_| {},
    )
    .await;
    assert_rejected(&outcome, 0, CryptoError::BadMac);
}

#[tokio::test]
async fn a_sealed_frame_holding_garbage_is_a_decode_error() {
    // Sealing needs the session keys, so this can only come from a buggy peer, not an
    // attacker; it must still end the session with a clear error.
    let (mut client, mut server) = session_pair().await;
    client.writer.queue_encoded(b"\xc1 not msgpack").expect("queue");
    client.writer.flush().await.expect("flush");
    let err = within("recv", server.recv::<ClientMsg>()).await.expect_err("garbage must not decode");
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn an_over_limit_incoming_frame_is_refused_over_a_real_connection() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        // This server allows 4 MiB frames; the client only 64 KiB.
        let (r, w) = common::accept_tcp(&listener).await.into_split();
        let mut session =
            Connection::from_parts(r, w, 4 << 20).accept(server_key(), "big").await.expect("handshake");
        let big = ServerMsg::Event { event: Event::Disconnect { reason: "x".repeat(100 * 1024) } };
        session.send(&big).await.expect("the server's own limit allows it");
        session
    });
    let (r, w) = TcpStream::connect(&addr).await.expect("connect").into_split();
    let (mut session, _, _) =
        Connection::from_parts(r, w, 64 * 1024).connect(|_, _| Ok(())).await.expect("handshake");
    let err = within("recv", session.recv::<ServerMsg>()).await.expect_err("over the limit");
    match err {
        Error::FrameTooLarge { size, max } => {
            assert_eq!(max, 64 * 1024);
            assert!(size > 100 * 1024, "size {size} is the announced length");
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    drop(server.await.expect("server"));
}

#[tokio::test]
async fn an_over_limit_outgoing_message_is_refused_and_the_session_continues() {
    let (mut client, mut server) = session_pair().await;
    let huge = ClientMsg::Request {
        id: 1,
        body: Request::SendRoom { room: "lobby".into(), text: "x".repeat(MAX_FRAME_LEN), reply_to: None },
    };
    let err = client.writer.queue(&huge).expect_err("over the limit");
    assert!(
        matches!(err, Error::FrameTooLarge { size, max } if size > MAX_FRAME_LEN && max == MAX_FRAME_LEN),
        "{err:?}"
    );
    assert_eq!(client.writer.queued_len(), 0, "nothing of the refused frame was queued");
    // The refused frame used no sequence number, so the next one still opens.
    client.send(&ClientMsg::Pong { nonce: 9 }).await.expect("send");
    let got: ClientMsg = within("recv", server.recv()).await.expect("recv").expect("message");
    assert_eq!(got, ClientMsg::Pong { nonce: 9 });
}

#[tokio::test]
async fn a_frame_sealed_exactly_at_the_limit_passes() {
    let (mut client, mut server) = session_pair().await;
    // Largest plaintext whose sealed body is exactly MAX_FRAME_LEN.
    let max_plain = MAX_FRAME_LEN - crypto::IV_LEN - crypto::MAC_LEN - 1;
    assert_eq!(crypto::sealed_len(max_plain), MAX_FRAME_LEN);
    assert!(crypto::sealed_len(max_plain + 1) > MAX_FRAME_LEN);
    let plaintext = vec![0x42; max_plain];
    client.writer.queue_encoded(&plaintext).expect("exactly at the limit");
    assert!(matches!(
        client.writer.queue_encoded(&[0; MAX_FRAME_LEN - crypto::IV_LEN - crypto::MAC_LEN]),
        Err(Error::FrameTooLarge { .. })
    ));
    client.writer.flush().await.expect("flush");
    // The server decodes it as a message and fails there, after opening it: the frame
    // itself was accepted.
    let err = within("recv", server.recv::<ClientMsg>()).await.expect_err("0x42 bytes are no message");
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
}

// ---- the async client ---------------------------------------------------------------------

fn client_config(addr: &str) -> ClientConfig {
    let mut config = ClientConfig::new(addr, TrustPolicy::Pinned(*server_key().fingerprint()));
    config.handshake_timeout = Duration::from_millis(2000);
    config
}

fn chat_message(id: u64, conv: Conv) -> ChatMessage {
    ChatMessage {
        id,
        conv,
        from: "bob".into(),
        ts: 1_700_000_000_000 + id,
        body: Body::Text { text: "hi".into() },
        reply_to: None,
        edited: None,
        reactions: Vec::new(),
    }
}

async fn recv_client_msg(session: &mut TcpSession) -> ClientMsg {
    within("server recv", session.recv()).await.expect("server recv").expect("a message, not a close")
}

/// Serves one client: answers a ping, sends events, pings it, answers a request with an
/// error, and expects the lazily sent acknowledgement and a clean close.
async fn scripted_server(listener: TcpListener) -> Vec<ClientMsg> {
    let mut s = accept_session(&listener, server_key()).await;
    let mut log = Vec::new();

    let ClientMsg::Request { id, body: Request::Ping } = recv_client_msg(&mut s).await else {
        panic!("expected a ping request");
    };
    s.send(&ServerMsg::Ok { id, body: Response::Pong }).await.expect("pong");
    s.send(&ServerMsg::Event { event: Event::Presence { user: "bob".into(), online: true } })
        .await
        .expect("event");
    s.send(&ServerMsg::Ping { nonce: 42 }).await.expect("ping");
    log.push(recv_client_msg(&mut s).await); // the client's automatic pong

    let ClientMsg::Request { id, body: Request::JoinRoom { .. } } = recv_client_msg(&mut s).await else {
        panic!("expected join_room");
    };
    s.send(&ServerMsg::Err { id, code: ErrorCode::NoSuchRoom, message: "There is no room cs999.".into() })
        .await
        .expect("err");
    s.writer.queue(&ServerMsg::Event { event: Event::CaughtUp }).expect("queue");
    for id in [5, 6, 9] {
        s.writer
            .queue(&ServerMsg::Event {
                event: Event::Message { message: chat_message(id, Conv::room("lobby")) },
            })
            .expect("queue");
    }
    s.writer.flush().await.expect("flush");
    while let Some(msg) = within("server recv", s.recv::<ClientMsg>()).await.expect("recv") {
        log.push(msg);
    }
    log
}

#[tokio::test]
async fn client_requests_get_their_replies_and_events_arrive() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(scripted_server(listener));
    let (client, mut events) =
        within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    assert_eq!(client.fingerprint(), server_key().fingerprint());
    assert_eq!(client.server_hello().server_name, "test server");

    assert_eq!(within("ping", client.request(Request::Ping)).await.expect("ping"), Response::Pong);
    let event = within("event", events.recv()).await.expect("an event");
    assert_eq!(event, Event::Presence { user: "bob".into(), online: true });

    let err = within("join", client.request(Request::JoinRoom { name: "cs999".into(), password: None }))
        .await
        .expect_err("the server refuses");
    assert_eq!(err.code(), Some(ErrorCode::NoSuchRoom));
    assert!(matches!(&err, Error::Server { message, .. } if message == "There is no room cs999."));

    assert_eq!(within("caught up", events.recv()).await, Some(Event::CaughtUp));
    for id in [5, 6, 9] {
        let Some(Event::Message { message }) = within("message", events.recv()).await else {
            panic!("expected message {id}");
        };
        assert_eq!(message.id, id);
    }
    within("close", client.close()).await;
    within("closed", client.closed()).await;
    assert!(client.is_closed());
    let after = within("request after close", client.request(Request::Ping)).await;
    assert!(matches!(after, Err(Error::Closed(_))), "{after:?}");

    let log = within("server", server).await.expect("server task");
    assert_eq!(log[0], ClientMsg::Pong { nonce: 42 }, "the client answers pings by itself");
    let acks: Vec<_> = log[1..].to_vec();
    // Acknowledged once (or, if a tick fell between the frames, at most twice), never per
    // message, and always up to the newest id before the close.
    assert!(!acks.is_empty() && acks.len() < 3, "{acks:?}");
    assert_eq!(acks.last(), Some(&ClientMsg::Ack { conv: Conv::room("lobby"), up_to: 9 }));
    assert!(acks.iter().all(|a| matches!(a, ClientMsg::Ack { conv, .. } if *conv == Conv::room("lobby"))));
}

#[tokio::test]
async fn client_acknowledges_lazily_once_caught_up() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        // A catch-up message, then the end of catch-up: the acknowledgement follows within
        // a tick, without the client closing.
        let catch_up =
            ServerMsg::Event { event: Event::Message { message: chat_message(77, Conv::direct("bob")) } };
        s.send(&catch_up).await.expect("send");
        s.send(&ServerMsg::Event { event: Event::CaughtUp }).await.expect("send");
        let ack = recv_client_msg(&mut s).await;
        (ack, s)
    });
    let (_client, mut events) =
        within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    assert!(matches!(within("event", events.recv()).await, Some(Event::Message { .. })));
    assert_eq!(within("event", events.recv()).await, Some(Event::CaughtUp));
    let (ack, _session) = within("ack", server).await.expect("server");
    assert_eq!(ack, ClientMsg::Ack { conv: Conv::direct("bob"), up_to: 77 });
}

#[tokio::test]
async fn client_does_not_acknowledge_before_catch_up_ends() {
    // Live messages can overtake catch-up ones; acknowledging a newer id before
    // `caught_up` would skip the older ones at the next login.
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        let msg =
            ServerMsg::Event { event: Event::Message { message: chat_message(12, Conv::room("lobby")) } };
        s.send(&msg).await.expect("send");
        let mut log = Vec::new();
        while let Some(m) = within("server recv", s.recv::<ClientMsg>()).await.expect("recv") {
            log.push(m);
        }
        log
    });
    let (client, mut events) =
        within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    assert!(matches!(within("event", events.recv()).await, Some(Event::Message { .. })));
    // Past at least one acknowledgement tick, then a clean close (which flushes acks).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    within("close", client.close()).await;
    assert_eq!(within("server", server).await.expect("server"), Vec::<ClientMsg>::new());
}

#[tokio::test]
async fn concurrent_requests_resolve_to_their_own_replies() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        let a = recv_client_msg(&mut s).await;
        let b = recv_client_msg(&mut s).await;
        // Reply in the opposite order, each with something only its request asked for.
        for msg in [b, a] {
            let ClientMsg::Request { id, body } = msg else { panic!("a request") };
            let reply = match body {
                Request::Ping => Response::Pong,
                Request::ListBans { room } => Response::Bans { room, users: vec![] },
                other => panic!("unexpected {other:?}"),
            };
            s.send(&ServerMsg::Ok { id, body: reply }).await.expect("reply");
        }
        s
    });
    let (client, _events) = within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    let other = client.clone();
    let (ping, bans) = within("both", async {
        tokio::join!(client.request(Request::Ping), other.request(Request::ListBans { room: "r".into() }))
    })
    .await;
    assert_eq!(ping.expect("ping"), Response::Pong);
    assert_eq!(bans.expect("bans"), Response::Bans { room: "r".into(), users: vec![] });
    drop(server.await.expect("server"));
}

#[tokio::test]
async fn a_reply_that_never_comes_times_out_and_a_late_one_is_ignored() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        let ClientMsg::Request { id: first, .. } = recv_client_msg(&mut s).await else { panic!("request") };
        let ClientMsg::Request { id: second, .. } = recv_client_msg(&mut s).await else { panic!("request") };
        // Too late for the first request, whose caller has given up.
        s.send(&ServerMsg::Ok { id: first, body: Response::Done }).await.expect("late reply");
        s.send(&ServerMsg::Ok { id: second, body: Response::Pong }).await.expect("reply");
        s
    });
    let mut config = client_config(&addr);
    config.request_timeout = Duration::from_millis(300);
    let (client, _events) = within("connect", Client::connect(config)).await.expect("connect");
    let err = within("first", client.request(Request::ListRooms)).await.expect_err("no reply in time");
    assert!(matches!(&err, Error::Closed(why) if why.contains("no reply")), "{err:?}");
    assert!(!client.is_closed(), "a slow reply does not end the session");
    assert_eq!(within("second", client.request(Request::Ping)).await.expect("second"), Response::Pong);
    drop(server.await.expect("server"));
}

#[tokio::test]
async fn server_closing_mid_request_fails_the_request() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        let _ = recv_client_msg(&mut s).await;
        drop(s); // closes without answering
    });
    let (client, _events) = within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    let err = within("request", client.request(Request::ListUsers)).await.expect_err("no answer");
    assert!(matches!(err, Error::Closed(_)), "{err:?}");
    within("closed", client.closed()).await;
    assert_eq!(client.close_reason().as_deref(), Some("server closed the connection"));
    server.await.expect("server");
}

#[tokio::test]
async fn disconnect_event_is_delivered_and_ends_the_session() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        s.send(&ServerMsg::Event { event: Event::Disconnect { reason: "server shutting down".into() } })
            .await
            .expect("send");
        // The client hangs up by itself.
        within("client hangs up", s.recv::<ClientMsg>()).await
    });
    let (client, mut events) =
        within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    assert_eq!(
        within("event", events.recv()).await,
        Some(Event::Disconnect { reason: "server shutting down".into() })
    );
    within("closed", client.closed()).await;
    assert_eq!(client.close_reason().as_deref(), Some("server: server shutting down"));
    assert!(matches!(within("server", server).await.expect("server"), Ok(None)), "a clean close");
}

#[tokio::test]
async fn a_silent_server_is_dropped_after_the_idle_timeout() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        // Say nothing; just wait for the client to give up.
        within("client gives up", s.recv::<ClientMsg>()).await
    });
    let mut config = client_config(&addr);
    // Longer than the client's one-second acknowledgement tick, which must not count as
    // hearing from the server.
    config.idle_timeout = Duration::from_millis(2500);
    let (client, _events) = within("connect", Client::connect(config)).await.expect("connect");
    within("idle timeout", client.closed()).await;
    let reason = client.close_reason().expect("a reason");
    assert!(reason.contains("silent"), "{reason}");
    assert!(matches!(within("server", server).await.expect("server"), Ok(None)));
}

#[tokio::test]
async fn an_oversized_request_fails_alone_and_the_session_goes_on() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        // Only the ping arrives; the refused request never reached the wire.
        let ClientMsg::Request { id, body: Request::Ping } = recv_client_msg(&mut s).await else {
            panic!("expected the ping");
        };
        s.send(&ServerMsg::Ok { id, body: Response::Pong }).await.expect("reply");
        s
    });
    let (client, _events) = within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    let huge = Request::Broadcast { text: "x".repeat(MAX_FRAME_LEN) };
    let err = within("huge", client.request(huge)).await.expect_err("over the frame limit");
    assert!(matches!(err, Error::FrameTooLarge { max: MAX_FRAME_LEN, .. }), "{err:?}");
    assert!(!client.is_closed(), "{:?}", client.close_reason());
    assert_eq!(within("ping", client.request(Request::Ping)).await.expect("ping"), Response::Pong);
    drop(server.await.expect("server"));
}

#[tokio::test]
async fn dropping_the_last_client_handle_closes_the_connection() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut s = accept_session(&listener, server_key()).await;
        let ClientMsg::Request { id, .. } = recv_client_msg(&mut s).await else { panic!("a request") };
        s.send(&ServerMsg::Ok { id, body: Response::Pong }).await.expect("reply");
        // Keep pinging, as the server's heartbeat does: a leaked client would answer forever.
        let mut pongs = 0;
        loop {
            s.send(&ServerMsg::Ping { nonce: pongs }).await.expect("ping");
            match within("client goes away", s.recv::<ClientMsg>()).await.expect("recv") {
                Some(ClientMsg::Pong { .. }) => pongs += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None => return pongs,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (client, events) = within("connect", Client::connect(client_config(&addr))).await.expect("connect");
    let clone = client.clone();
    drop(client);
    // One handle is left: the session is still usable.
    assert_eq!(within("ping", clone.request(Request::Ping)).await.expect("ping"), Response::Pong);
    drop(clone);
    within("server sees the close", server).await.expect("server");
    drop(events);
}
