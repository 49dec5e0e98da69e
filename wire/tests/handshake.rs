//! The handshake from both ends: trust on first use, changed and pinned keys, and peers
//! that send garbage, too much, or nothing at all. Each must end in a clear error, never a
//! hang. Also the frame length limit on a live stream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use classchat_wire::connection::HANDSHAKE_MAX_FRAME_LEN;
use classchat_wire::connection::{Connection, FrameReader};
use classchat_wire::crypto::{self, ClientKey, ServerHello};
use classchat_wire::{
    Client, ClientConfig, ClientMsg, CryptoError, Error, Event, KnownServers, MAX_FRAME_LEN,
    PROTOCOL_VERSION, ServerMsg, TrustPolicy, frame, message,
};
use common::{accept_session, accept_tcp, listen, other_key, server_key, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);

fn config(addr: &str, trust: TrustPolicy) -> ClientConfig {
    let mut config = ClientConfig::new(addr, trust);
    config.handshake_timeout = HANDSHAKE_TIMEOUT;
    config
}

async fn connect(addr: &str, trust: TrustPolicy) -> Result<(Client, mpsc::Receiver<Event>), Error> {
    within("Client::connect", Client::connect(config(addr, trust))).await
}

/// A server that runs a real handshake with `key` on the next connection to `listener`
/// and reports how it ended. Sharing the listener keeps the `host:port` the same across
/// connections, as the known-servers store needs.
fn real_server(
    listener: Arc<TcpListener>,
    key: &'static crypto::ServerKey,
) -> tokio::task::JoinHandle<Result<(), Error>> {
    tokio::spawn(async move {
        let (r, w) = accept_tcp(&listener).await.into_split();
        let mut session = Connection::from_parts(r, w, MAX_FRAME_LEN).accept(key, "lab").await?;
        // Keep the session until the client goes away.
        while session.recv::<ClientMsg>().await?.is_some() {}
        Ok(())
    })
}

fn encode_frame<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(&message::encode(msg).expect("encode"), &mut out, MAX_FRAME_LEN).expect("frame");
    out.to_vec()
}

fn hello_from(key: &crypto::ServerKey) -> ServerHello {
    crypto::server_hello(key, "lab")
}

enum Then {
    /// Keep the connection open until the client hangs up.
    Hold,
    /// Close right after sending.
    Close,
}

/// A server that sends `bytes` (not necessarily a protocol) and then holds or closes.
fn raw_server(listener: TcpListener, bytes: Vec<u8>, then: Then) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = accept_tcp(&listener).await;
        stream.write_all(&bytes).await.expect("write");
        if let Then::Hold = then {
            let mut sink = Vec::new();
            // Returns when the client gives up and closes.
            let _ = within("client hangs up", stream.read_to_end(&mut sink)).await;
        }
    })
}

/// Runs `Client::connect` against a server that sends `bytes`, and returns its error.
async fn client_error_against(bytes: Vec<u8>, then: Then) -> Error {
    let (listener, addr) = listen().await;
    let server = raw_server(listener, bytes, then);
    let err = connect(&addr, TrustPolicy::AnyKey).await.expect_err("the handshake must fail");
    within("server", server).await.expect("server task");
    err
}

// ---- trust ----------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_server_is_reported_with_its_fingerprint_and_nothing_is_sent() {
    let (listener, addr) = listen().await;
    let listener = Arc::new(listener);
    let server = real_server(listener.clone(), server_key());
    let err =
        connect(&addr, TrustPolicy::KnownServers(KnownServers::in_memory())).await.expect_err("unknown");
    match &err {
        Error::UnknownServer { host, fingerprint } => {
            assert_eq!(host, &addr);
            assert_eq!(fingerprint, server_key().fingerprint());
        }
        other => panic!("expected UnknownServer, got {other:?}"),
    }
    assert!(err.to_string().contains(&server_key().fingerprint().to_string()), "{err}");
    // The client hung up before sending its key.
    let server_end = within("server", server).await.expect("server task");
    assert!(matches!(server_end, Err(Error::Closed(_))), "{server_end:?}");
}

#[tokio::test]
async fn trust_on_first_use_then_a_changed_key_is_refused_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_servers");
    let (listener, addr) = listen().await;
    let listener = Arc::new(listener);

    // First contact: unknown; the user accepts the fingerprint.
    let server = real_server(listener.clone(), server_key());
    let store = KnownServers::load(&path).expect("empty store");
    let Err(Error::UnknownServer { fingerprint, .. }) =
        connect(&addr, TrustPolicy::KnownServers(store)).await
    else {
        panic!("first contact must be UnknownServer");
    };
    let _ = server.await;
    let mut store = KnownServers::load(&path).expect("store");
    store.trust(&addr, fingerprint).expect("save the store");

    // Second contact, with the store read back from disk: accepted.
    let server = real_server(listener.clone(), server_key());
    let store = KnownServers::load(&path).expect("reload");
    let (client, _events) = connect(&addr, TrustPolicy::KnownServers(store)).await.expect("known server");
    within("close", client.close()).await;
    assert!(within("server", server).await.expect("server task").is_ok());

    // The server now presents a different key: refused, naming both fingerprints.
    let server = real_server(listener.clone(), other_key());
    let store = KnownServers::load(&path).expect("reload");
    let err = connect(&addr, TrustPolicy::KnownServers(store)).await.expect_err("changed key");
    match &err {
        Error::ServerKeyChanged { host, expected, actual } => {
            assert_eq!(host, &addr);
            assert_eq!(expected, server_key().fingerprint());
            assert_eq!(actual, other_key().fingerprint());
        }
        other => panic!("expected ServerKeyChanged, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains("CHANGED") && shown.contains(&other_key().fingerprint().to_string()), "{shown}");
    assert!(matches!(within("server", server).await.expect("server task"), Err(Error::Closed(_))));
}

#[tokio::test]
async fn a_pinned_key_accepts_only_that_key() {
    let (listener, addr) = listen().await;
    let listener = Arc::new(listener);
    let server = real_server(listener.clone(), server_key());
    let (client, _events) =
        connect(&addr, TrustPolicy::Pinned(*server_key().fingerprint())).await.expect("pinned key matches");
    assert_eq!(client.fingerprint(), server_key().fingerprint());
    within("close", client.close()).await;
    assert!(within("server", server).await.expect("server task").is_ok());

    let server = real_server(listener.clone(), other_key());
    let err = connect(&addr, TrustPolicy::Pinned(*server_key().fingerprint())).await.expect_err("wrong key");
    assert!(
        matches!(&err, Error::ServerKeyChanged { expected, actual, .. }
            if expected == server_key().fingerprint() && actual == other_key().fingerprint()),
        "{err:?}"
    );
    assert!(matches!(within("server", server).await.expect("server task"), Err(Error::Closed(_))));
}

// ---- a misbehaving server -------------------------------------------------------------------

#[tokio::test]
async fn a_server_that_says_nothing_times_out() {
    let err = client_error_against(Vec::new(), Then::Hold).await;
    assert!(matches!(err, Error::HandshakeTimeout(d) if d == HANDSHAKE_TIMEOUT), "{err:?}");
}

#[tokio::test]
async fn a_server_that_stalls_mid_frame_times_out() {
    let hello = encode_frame(&hello_from(server_key()));
    let err = client_error_against(hello[..hello.len() / 2].to_vec(), Then::Hold).await;
    assert!(matches!(err, Error::HandshakeTimeout(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_that_closes_right_away_is_closed() {
    let err = client_error_against(Vec::new(), Then::Close).await;
    assert!(matches!(&err, Error::Closed(why) if why.contains("server hello")), "{err:?}");
}

#[tokio::test]
async fn a_server_that_closes_mid_hello_is_an_unexpected_eof() {
    let hello = encode_frame(&hello_from(server_key()));
    let err = client_error_against(hello[..10].to_vec(), Then::Close).await;
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{err:?}");
}

#[tokio::test]
async fn a_garbage_hello_is_a_protocol_error() {
    let mut junk = BytesMut::new();
    frame::encode(b"\x93\x01\x02 this is not a hello", &mut junk, MAX_FRAME_LEN).expect("frame");
    let err = client_error_against(junk.to_vec(), Then::Hold).await;
    assert!(matches!(&err, Error::Protocol(why) if why.contains("server hello")), "{err:?}");
}

#[tokio::test]
async fn another_protocol_on_the_port_is_refused_by_its_length_prefix() {
    // "SSH-" read as a length is about 1.4 GB: refused at once, not buffered.
    let err = client_error_against(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec(), Then::Hold).await;
    assert!(
        matches!(err, Error::FrameTooLarge { size: 0x5353_482d, max: HANDSHAKE_MAX_FRAME_LEN }),
        "{err:?}"
    );
}

#[tokio::test]
async fn handshake_frames_have_a_small_limit_of_their_own() {
    // 100 KiB is fine for a session frame but far more than any hello: refused before
    // anything is reserved for it.
    let err = client_error_against(100_000u32.to_be_bytes().to_vec(), Then::Hold).await;
    assert!(matches!(err, Error::FrameTooLarge { size: 100_000, max: HANDSHAKE_MAX_FRAME_LEN }), "{err:?}");
    // A hello at the handshake limit's edge still parses as a frame (it is just not a hello).
    let mut junk = BytesMut::new();
    frame::encode(&vec![0xc0; HANDSHAKE_MAX_FRAME_LEN], &mut junk, MAX_FRAME_LEN).expect("frame");
    let err = client_error_against(junk.to_vec(), Then::Hold).await;
    assert!(matches!(&err, Error::Protocol(why) if why.contains("server hello")), "{err:?}");
}

#[tokio::test]
async fn a_hello_with_another_version_is_a_protocol_error() {
    let mut hello = hello_from(server_key());
    hello.version = PROTOCOL_VERSION + 1;
    let err = client_error_against(encode_frame(&hello), Then::Hold).await;
    assert!(matches!(&err, Error::Protocol(why) if why.contains("version")), "{err:?}");
}

#[tokio::test]
async fn a_hello_with_a_short_nonce_is_a_protocol_error() {
    let mut hello = hello_from(server_key());
    hello.nonce.truncate(16);
    let err = client_error_against(encode_frame(&hello), Then::Hold).await;
    assert!(matches!(&err, Error::Protocol(why) if why.contains("nonce")), "{err:?}");
}

#[tokio::test]
async fn a_hello_with_a_broken_key_is_a_crypto_error() {
    let mut hello = hello_from(server_key());
    hello.public_key.truncate(100);
    let err = client_error_against(encode_frame(&hello), Then::Hold).await;
    assert!(matches!(err, Error::Crypto(CryptoError::BadPublicKey)), "{err:?}");
}

#[tokio::test]
async fn a_hello_with_a_weak_key_is_refused() {
    let weak = crypto::ServerKey::generate(1024).expect("a 1024-bit key");
    let err = client_error_against(encode_frame(&hello_from(&weak)), Then::Hold).await;
    assert!(matches!(&err, Error::Protocol(why) if why.contains("1024 bits")), "{err:?}");
}

#[tokio::test]
async fn nobody_listening_is_an_io_error() {
    let (listener, addr) = listen().await;
    drop(listener);
    let err = connect(&addr, TrustPolicy::AnyKey).await.expect_err("refused");
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused), "{err:?}");
}

// ---- a misbehaving client -------------------------------------------------------------------

/// Runs `Connection::accept` on one connection whose client side is `client`, and returns
/// the result.
async fn server_end_against<F, Fut>(client: F) -> Result<(), Error>
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (r, w) = accept_tcp(&listener).await.into_split();
        Connection::from_parts(r, w, MAX_FRAME_LEN).accept(server_key(), "lab").await.map(drop)
    });
    client(TcpStream::connect(&addr).await.expect("connect")).await;
    within("server", server).await.expect("server task")
}

/// Reads and discards the server's hello.
async fn skip_hello(stream: &mut TcpStream) -> ServerHello {
    let mut frames = FrameReader::new(&mut *stream, MAX_FRAME_LEN);
    let body = within("hello", frames.read_frame()).await.expect("read").expect("hello");
    message::decode(&body).expect("a hello")
}

#[tokio::test]
async fn a_client_that_hangs_up_is_closed() {
    let end = server_end_against(|stream| async move { drop(stream) }).await;
    assert!(matches!(&end, Err(Error::Closed(why)) if why.contains("client key")), "{end:?}");
}

#[tokio::test]
async fn a_garbage_client_key_is_a_protocol_error() {
    let end = server_end_against(|mut stream| async move {
        skip_hello(&mut stream).await;
        let mut junk = BytesMut::new();
        frame::encode(b"\xa5hello", &mut junk, MAX_FRAME_LEN).expect("frame");
        stream.write_all(&junk).await.expect("write");
        let _ = stream.read_to_end(&mut Vec::new()).await;
    })
    .await;
    assert!(matches!(&end, Err(Error::Protocol(why)) if why.contains("client key")), "{end:?}");
}

#[tokio::test]
async fn a_client_key_with_another_version_is_a_protocol_error() {
    let end = server_end_against(|mut stream| async move {
        let hello = skip_hello(&mut stream).await;
        let (key, _) = crypto::check_server_hello(&hello).expect("hello");
        let (mut client_key, _) = crypto::client_key_exchange(&hello, &key).expect("exchange");
        client_key.version = 7;
        stream.write_all(&encode_frame(&client_key)).await.expect("write");
        let _ = stream.read_to_end(&mut Vec::new()).await;
    })
    .await;
    assert!(matches!(&end, Err(Error::Protocol(why)) if why.contains("version 7")), "{end:?}");
}

#[tokio::test]
async fn a_huge_first_frame_from_a_client_is_refused() {
    let end = server_end_against(|mut stream| async move {
        skip_hello(&mut stream).await;
        stream.write_all(b"\xff\xff\xff\xff").await.expect("write");
        let _ = stream.read_to_end(&mut Vec::new()).await;
    })
    .await;
    assert!(matches!(end, Err(Error::FrameTooLarge { size: 0xffff_ffff, .. })), "{end:?}");
}

#[tokio::test]
async fn a_silent_client_is_bounded_by_the_callers_timeout() {
    // `Connection::accept` leaves the bound to its caller (the server's handshake timeout).
    let (server_io, _client_io) = tokio::io::duplex(64 * 1024);
    let accept = Connection::new(server_io, MAX_FRAME_LEN).accept(server_key(), "lab");
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await;
    assert!(result.is_err(), "accept must still be waiting for the client key");
}

#[tokio::test]
async fn a_secret_wrapped_for_another_key_fails_at_the_first_sealed_frame() {
    // An impostor cannot unwrap the secret; the server does not say so during the
    // handshake, but neither side can open the other's frames afterwards.
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut session = accept_session(&listener, server_key()).await;
        session.send(&ServerMsg::Ping { nonce: 1 }).await.expect("send");
        within("server recv", session.recv::<ClientMsg>()).await
    });
    let (r, w) = TcpStream::connect(&addr).await.expect("connect").into_split();
    let mut frames = FrameReader::new(r, MAX_FRAME_LEN);
    let hello: ServerHello =
        message::decode(&frames.read_frame().await.expect("read").expect("hello")).expect("hello");
    let (wrong_key, _) = crypto::check_server_hello(&hello_from(other_key())).expect("other key");
    let (client_key, keys): (ClientKey, _) =
        crypto::client_key_exchange(&hello, &wrong_key).expect("exchange");
    let (mut sealer, mut opener) = keys.split(crypto::Role::Client);
    let mut w = w;
    w.write_all(&encode_frame(&client_key)).await.expect("client key");

    let mut from_server = frames.read_frame().await.expect("read").expect("a sealed frame");
    assert_eq!(opener.open(&mut from_server), Err(CryptoError::BadMac));

    let mut out = BytesMut::new();
    sealer
        .seal_frame(&message::encode(&ClientMsg::Pong { nonce: 1 }).expect("encode"), &mut out, MAX_FRAME_LEN)
        .expect("seal");
    w.write_all(&out).await.expect("write");
    let end = within("server", server).await.expect("server task");
    assert!(matches!(end, Err(Error::Crypto(CryptoError::BadMac))), "{end:?}");
}

// ---- the frame limit on a live stream -------------------------------------------------------

#[tokio::test]
async fn an_oversized_length_prefix_is_refused_without_waiting_for_the_body() {
    let (reader_io, mut peer) = tokio::io::duplex(1024);
    peer.write_all(b"\xff\xff\xff\xff").await.expect("write");
    // `peer` stays open: a reader that tried to buffer the body would wait forever (and
    // `within` would fail the test).
    let mut frames = FrameReader::new(reader_io, MAX_FRAME_LEN);
    let err = within("read_frame", frames.read_frame()).await.expect_err("over the limit");
    assert!(matches!(err, Error::FrameTooLarge { size: 0xffff_ffff, max: MAX_FRAME_LEN }), "{err:?}");
    drop(peer);
}

#[test]
fn an_oversized_length_prefix_reserves_nothing() {
    for prefix in [u32::MAX, u32::try_from(MAX_FRAME_LEN + 1).expect("fits")] {
        let mut buf = BytesMut::with_capacity(8);
        buf.extend_from_slice(&prefix.to_be_bytes());
        let capacity = buf.capacity();
        assert!(matches!(frame::decode(&mut buf, MAX_FRAME_LEN), Err(Error::FrameTooLarge { .. })));
        assert_eq!(buf.capacity(), capacity, "no room was reserved for a {prefix}-byte body");
    }
}

#[test]
fn an_oversized_outgoing_frame_is_refused_before_writing() {
    let mut out = BytesMut::new();
    let err = frame::encode(&vec![0; MAX_FRAME_LEN + 1], &mut out, MAX_FRAME_LEN).expect_err("over");
    assert!(
        matches!(err, Error::FrameTooLarge { size, max } if size == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN)
    );
    assert!(out.is_empty());
    frame::encode(&vec![0; MAX_FRAME_LEN], &mut out, MAX_FRAME_LEN).expect("exactly the limit");
    assert_eq!(out.len(), frame::HEADER_LEN + MAX_FRAME_LEN);
}

#[tokio::test]
async fn frames_arriving_a_byte_at_a_time_are_reassembled() {
    let (reader_io, mut peer) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        let mut wire = BytesMut::new();
        frame::encode(b"first", &mut wire, 16).expect("frame");
        frame::encode(b"", &mut wire, 16).expect("frame");
        frame::encode(&[7; 16], &mut wire, 16).expect("frame");
        for byte in wire {
            peer.write_all(&[byte]).await.expect("write");
        }
    });
    let mut frames = FrameReader::new(reader_io, 16);
    let mut got = Vec::new();
    while let Some(body) = within("read", frames.read_frame()).await.expect("read") {
        got.push(body.to_vec());
    }
    assert_eq!(got, vec![b"first".to_vec(), vec![], vec![7; 16]]);
    writer.await.expect("writer");
}

#[tokio::test]
async fn a_stream_ending_inside_a_length_prefix_is_an_error() {
    let (reader_io, mut peer) = tokio::io::duplex(64);
    peer.write_all(b"\x00\x00").await.expect("write");
    drop(peer);
    let err = FrameReader::new(reader_io, 16).read_frame().await.expect_err("cut off");
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{err:?}");
}
