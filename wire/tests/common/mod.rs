//! Helpers shared by the integration tests: one RSA key per test binary, loopback
//! listeners, a server-side handshake, and one sample of every message variant.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod samples;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use classchat_wire::MAX_FRAME_LEN;
use classchat_wire::connection::{Connection, SecureConnection};
use classchat_wire::crypto::ServerKey;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A session over TCP, as both ends see it.
pub type TcpSession = SecureConnection<OwnedReadHalf, OwnedWriteHalf>;

/// Upper bound for anything a test waits on. Only reached when the code under test hangs,
/// which is exactly what these tests must catch; it is not a timing assertion.
pub const HANG: Duration = Duration::from_secs(20);

/// The server key of this test binary. RSA key generation is slow, so it happens once.
pub fn server_key() -> &'static ServerKey {
    static KEY: OnceLock<ServerKey> = OnceLock::new();
    KEY.get_or_init(|| ServerKey::generate(2048).expect("generate the test server key"))
}

/// A second, different server key ("the server was reinstalled", or an impostor).
pub fn other_key() -> &'static ServerKey {
    static KEY: OnceLock<ServerKey> = OnceLock::new();
    KEY.get_or_init(|| ServerKey::generate(2048).expect("generate the second test key"))
}

/// Fails the test instead of hanging forever.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG, fut).await.unwrap_or_else(|_| panic!("{what}: still waiting after {HANG:?}"))
}

/// A listener on an ephemeral loopback port and its `host:port`.
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    (listener, addr)
}

/// Accepts one TCP connection.
pub async fn accept_tcp(listener: &TcpListener) -> TcpStream {
    let (stream, _) = within("accept", listener.accept()).await.expect("accept");
    stream
}

/// Accepts one connection and runs the server side of the handshake with `key`.
pub async fn accept_session(listener: &TcpListener, key: &ServerKey) -> TcpSession {
    let (r, w) = accept_tcp(listener).await.into_split();
    within("server handshake", Connection::from_parts(r, w, MAX_FRAME_LEN).accept(key, "test server"))
        .await
        .expect("server side of the handshake")
}

/// Connects to `addr` and runs the client side of the handshake, accepting any key.
pub async fn connect_session(addr: &str) -> TcpSession {
    let (r, w) = TcpStream::connect(addr).await.expect("connect").into_split();
    let (session, _, _) =
        within("client handshake", Connection::from_parts(r, w, MAX_FRAME_LEN).connect(|_, _| Ok(())))
            .await
            .expect("client side of the handshake");
    session
}

/// A client session and the server session it is talking to, over loopback TCP.
pub async fn session_pair() -> (TcpSession, TcpSession) {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move { accept_session(&listener, server_key()).await });
    let client = connect_session(&addr).await;
    let server = server.await.expect("server task");
    (client, server)
}
