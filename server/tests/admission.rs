//! Admission before login: connections that never finish their handshake or login cannot
//! keep real users out, and each source address has a bound.

mod common;

use std::time::Duration;

use common::{TestServer, expect_closed, raw_register};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn idle_and_trickling_connections_do_not_keep_a_real_client_out() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.max_pre_login = 40;
        c.max_pre_login_per_address = 30;
    })
    .await;
    // 60 idle connections and 20 that trickle a byte at a time: more than either bound.
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let mut trickling = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(&[0]).await.expect("a first byte");
        trickling.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            for s in &mut trickling {
                let _ = s.write_all(&[0]).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        trickling
    });
    // A real client still gets through the handshake and logs in.
    let ada = server.user("ada").await;
    assert_eq!(ada.welcome.user, "ada");
    // To make room, the oldest connections were closed; the newest are still open.
    expect_closed(idle.remove(0), Duration::from_secs(10)).await;
    let _ = trickle.await;
    // Once logged in, a connection is never closed to admit others.
    let mut more = Vec::new();
    for _ in 0..60 {
        more.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    ada.ok(classchat_wire::Request::Ping).await;
    server.stop().await;
}

/// On a single-threaded runtime the server runs only while the test waits, so the
/// order is fixed: the real client's key exchange is in the socket, two newer connections
/// wait to be accepted, and the accept loop runs first and closes the real client at the
/// per-address bound before its task reads that key. The key already waiting wins: the
/// connection takes its place back and logs in.
#[tokio::test]
async fn a_client_closed_by_the_gate_with_its_key_exchange_waiting_still_logs_in() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.max_pre_login_per_address = 2;
    })
    .await;
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (r, w) = stream.into_split();
    let mut flood = Vec::new();
    let conn = classchat_wire::connection::Connection::from_parts(r, w, classchat_wire::MAX_FRAME_LEN);
    let (secure, _, _) = conn
        .connect(|_, _| {
            // Between the hello and the key exchange: blocking connects complete in the
            // kernel's backlog without the server running.
            for _ in 0..2 {
                flood.push(std::net::TcpStream::connect(server.addr).map_err(classchat_wire::Error::Io)?);
            }
            Ok(())
        })
        .await
        .expect("handshake");
    let (mut reader, mut writer) = secure.split();
    raw_register(&mut reader, &mut writer, "ada").await;
    // The oldest of the flood made room for it.
    let first = TcpStream::from_std({
        let s = flood.remove(0);
        s.set_nonblocking(true).expect("nonblocking");
        s
    })
    .expect("tokio stream");
    expect_closed(first, Duration::from_secs(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_handshake_that_does_not_finish_in_time_is_closed() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.handshake_timeout_ms = 200;
        c.login_timeout_ms = 60_000;
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(&[0, 0]).await.expect("half a length");
    // Closed by the handshake deadline, long before the login deadline.
    expect_closed(s, Duration::from_secs(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_address_holds_at_most_its_share_of_connections() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.max_connections_per_address = 3;
    })
    .await;
    let _a = server.user("a1").await;
    let _b = server.user("a2").await;
    let c = server.user("a3").await;
    // All three are logged in: a fourth connection from the address is refused at once.
    let s = TcpStream::connect(server.addr).await.expect("the kernel accepts");
    expect_closed(s, Duration::from_secs(10)).await;
    let client = classchat_wire::Client::connect(server.client_config()).await;
    assert!(client.is_err(), "a full address gets no session");
    // One leaves; another fits.
    drop(c);
    common::eventually(Duration::from_secs(10), "a place to free", || async {
        classchat_wire::Client::connect(server.client_config()).await.is_ok()
    })
    .await;
    server.stop().await;
}
