//! The bad-input catalogue (RELIABILITY.md): every hostile input a class can throw at the
//! server, one named case each, with the exact outcome it must get. After every case a
//! separate pair of well-behaved users must still chat, so a case that breaks anything
//! beyond the attacker's own connection fails the run.
//!
//! Cases are grouped by the server configuration they need (one server per group). The
//! table in RELIABILITY.md is checked against the cases here by
//! `reliability_md_lists_every_case`, so the list and the document cannot drift apart.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use classchat_wire::connection::{SecureReader, SecureWriter};
use classchat_wire::files::Uploader;
use classchat_wire::{
    ClientMsg, Conv, ErrorCode, Event, MuteScope, Request, Response, RoomSettings, ServerMsg,
};
use common::{TestServer, TestUser, auth, raw_handshake, text_of};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::tcp::OwnedWriteHalf;

/// How long a connection may take to be closed, or a reply to come. Generous: these
/// machines are shared and noisy, and nothing here measures speed.
const BOUND: Duration = Duration::from_secs(10);
/// The room the two healthy users chat in after every case.
const HEALTHY: &str = "healthy";

// ---- outcomes ----------------------------------------------------------------------------

/// Whether the server said anything before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    /// No reply and no `disconnect` event: the client is not told why.
    Silent,
    /// A `disconnect` event first.
    Told,
}

/// What the server did with a hostile input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// An `err` reply with this code; the connection stays usable.
    Refused(ErrorCode),
    /// An `err` reply with this code, then the connection closed (bulk connections).
    RefusedThenClosed(ErrorCode),
    /// The connection was closed within [`BOUND`].
    Closed(Word),
    /// Accepted, and this is what the server made of it.
    Served(String),
    /// No reply, and the connection still answers a ping.
    Ignored,
    /// Anything else (a test failure: it names what happened).
    Unexpected(String),
}

impl Outcome {
    /// The table's "what the server does" column.
    fn describe(&self) -> String {
        match self {
            Outcome::Refused(c) => format!("`{c}`"),
            Outcome::RefusedThenClosed(c) => format!("`{c}`, then closes that connection"),
            Outcome::Closed(Word::Silent) => "closes that connection without a word".into(),
            Outcome::Closed(Word::Told) => "sends `disconnect`, then closes that connection".into(),
            Outcome::Served(s) => format!("accepts it: {s}"),
            Outcome::Ignored => "ignores it; the connection goes on".into(),
            Outcome::Unexpected(s) => format!("UNEXPECTED: {s}"),
        }
    }
}

/// The outcome of a request sent through the real client.
fn outcome(result: classchat_wire::Result<Response>) -> Outcome {
    match result {
        Ok(resp) => Outcome::Served(kind_of(&resp)),
        Err(classchat_wire::Error::Server { code, .. }) => Outcome::Refused(code),
        Err(e) => Outcome::Unexpected(format!("{e}")),
    }
}

/// `Pong`, `Welcome`, `Rooms`…: the variant name of a response.
fn kind_of(resp: &Response) -> String {
    let dbg = format!("{resp:?}");
    dbg.split([' ', '(', '{']).next().unwrap_or_default().to_owned()
}

/// How a stored file name is shown in the table.
fn name_outcome(name: &str) -> Outcome {
    if name.chars().count() > 40 {
        let head: String = name.chars().take(4).collect();
        Outcome::Served(format!("stored as `{head}…` ({} bytes)", name.len()))
    } else {
        Outcome::Served(format!("stored as {name:?}"))
    }
}

// ---- cases -------------------------------------------------------------------------------

type BoxFut<'a> = Pin<Box<dyn Future<Output = Outcome> + 'a>>;
type Run = for<'a> fn(&'a Ctx) -> BoxFut<'a>;

struct Case {
    name: &'static str,
    category: &'static str,
    /// The hostile input, in words (the table's column).
    input: &'static str,
    expect: Outcome,
    run: Run,
}

macro_rules! case {
    ($name:ident, $cat:expr, $input:expr, $expect:expr, |$ctx:ident| $body:expr) => {
        Case {
            name: stringify!($name),
            category: $cat,
            input: $input,
            expect: $expect,
            run: |$ctx| Box::pin(async move { $body }),
        }
    };
}

/// One server, two healthy users chatting in [`HEALTHY`] (alice its admin, with a Q&A
/// list, a poll and bob's question in it), and fresh names for attackers.
struct Ctx {
    server: TestServer,
    next: AtomicUsize,
    poll: u64,
    question: u64,
}

impl Ctx {
    fn fresh_name(&self) -> String {
        format!("m{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A freshly registered user through the real client; nobody reads its events, so
    /// they are drained in the background.
    async fn user(&self) -> TestUser {
        let mut u = self.server.user(&self.fresh_name()).await;
        let mut events = std::mem::replace(&mut u.events, tokio::sync::mpsc::channel(1).1);
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        u
    }

    /// A fresh user who is also a member of [`HEALTHY`] (a student there).
    async fn student(&self) -> TestUser {
        let u = self.user().await;
        u.join(HEALTHY).await;
        u
    }

    /// A hand-driven connection, handshake done, not logged in.
    async fn raw(&self) -> Raw {
        Raw::connect(&self.server, None).await
    }

    /// A hand-driven connection logged in as a fresh user.
    async fn raw_user(&self) -> Raw {
        let mut raw = self.raw().await;
        let name = self.fresh_name();
        let reg = Request::Register {
            username: name.clone(),
            auth_key: auth(&name).to_vec(),
            device: "raw".into(),
        };
        match raw.request(reg).await {
            Ok(_) => raw,
            Err(code) => panic!("register {name}: {code}"),
        }
    }

    /// A plain TCP connection, nothing sent.
    async fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.server.addr).await.expect("connect")
    }
}

/// A group of cases run against one server.
async fn run_group(tweak: impl FnOnce(&mut classchat_server::Config), cases: Vec<Case>) {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), tweak).await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.create_room(HEALTHY).await;
    bob.join(HEALTHY).await;
    alice
        .ok(Request::SetRoomSettings {
            room: HEALTHY.into(),
            settings: RoomSettings { announce_only: false, slow_mode_secs: 0, qa: true },
        })
        .await;
    let poll = match alice
        .ok(Request::CreatePoll {
            room: HEALTHY.into(),
            question: "lunch?".into(),
            options: vec!["yes".into(), "no".into()],
            multiple: false,
            anonymous: false,
            closes_at: None,
        })
        .await
    {
        Response::Poll { poll } => poll.id,
        other => panic!("expected Poll, got {other:?}"),
    };
    let question = match bob
        .ok(Request::AskQuestion { room: HEALTHY.into(), text: "why?".into(), anonymous: false })
        .await
    {
        Response::Question { question } => question.id,
        other => panic!("expected Question, got {other:?}"),
    };
    let ctx = Ctx { server, next: AtomicUsize::new(0), poll, question };

    for case in &cases {
        let got = (case.run)(&ctx).await;
        assert_eq!(got, case.expect, "case {}: {}", case.name, case.input);
        // The healthy pair still chats, both ways.
        let there = format!("after {}", case.name);
        alice.say(HEALTHY, &there).await;
        bob.expect_event(&format!("alice's message after {}", case.name), |e| text_of(e) == Some(&there))
            .await;
        let back = format!("back after {}", case.name);
        bob.say(HEALTHY, &back).await;
        alice
            .expect_event(&format!("bob's message after {}", case.name), |e| text_of(e) == Some(&back))
            .await;
    }
    ctx.server.stop().await;
}

// ---- a hand-driven connection ---------------------------------------------------------------

/// Collects what a [`SecureWriter`] writes, so a test sees each sealed frame before it
/// goes out, and can send it twice, out of order, altered, or not at all.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A session driven by hand: the real handshake and keys, but every frame is sealed into
/// a buffer first and written to the socket by the test.
struct Raw {
    reader: SecureReader<OwnedReadHalf>,
    writer: SecureWriter<Capture>,
    out: Capture,
    sock: OwnedWriteHalf,
    next_id: u32,
    /// A `disconnect` event or a reply arrived since the hostile input.
    told: bool,
}

impl Raw {
    async fn connect(server: &TestServer, from: Option<[u8; 4]>) -> Self {
        let stream = match from {
            None => TcpStream::connect(server.addr).await.expect("connect"),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.bind(std::net::SocketAddr::from((ip, 0))).expect("bind a loopback source address");
                socket.connect(server.addr).await.expect("connect")
            }
        };
        let (r, mut sock) = stream.into_split();
        let out = Capture::default();
        let (reader, writer) = raw_handshake(r, out.clone()).await;
        sock.write_all(&out.take()).await.expect("send the client key");
        Raw { reader, writer, out, sock, next_id: 100, told: false }
    }

    /// Seals `msg` as the next frame and returns its bytes (length prefix included),
    /// unsent.
    async fn seal(&mut self, msg: &ClientMsg) -> Vec<u8> {
        self.writer.queue(msg).expect("seal");
        self.writer.flush().await.expect("flush into the capture");
        self.out.take()
    }

    /// Seals hand-made MessagePack as the next frame, unsent.
    async fn seal_plain(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.writer.queue_encoded(plaintext).expect("seal");
        self.writer.flush().await.expect("flush into the capture");
        self.out.take()
    }

    /// Writes bytes to the socket. A failure is not an error here: the server may have
    /// closed already, which is what most cases wait for.
    async fn push(&mut self, bytes: &[u8]) {
        let _ = self.sock.write_all(bytes).await;
    }

    async fn send_plain(&mut self, plaintext: &[u8]) {
        let frame = self.seal_plain(plaintext).await;
        self.push(&frame).await;
    }

    fn request_msg(&mut self, body: Request) -> (u32, ClientMsg) {
        self.next_id += 1;
        (self.next_id, ClientMsg::Request { id: self.next_id, body })
    }

    /// Sends a request and waits for its reply; panics if the connection closes.
    async fn request(&mut self, body: Request) -> Result<Response, ErrorCode> {
        let (id, msg) = self.request_msg(body);
        let frame = self.seal(&msg).await;
        self.push(&frame).await;
        self.reply(id).await
    }

    /// The reply to `id`, answering pings meanwhile.
    async fn reply(&mut self, id: u32) -> Result<Response, ErrorCode> {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.reader.recv::<ServerMsg>())
                .await
                .unwrap_or_else(|_| panic!("no reply to request {id} in time"))
                .unwrap_or_else(|e| panic!("connection broke waiting for request {id}: {e}"))
                .unwrap_or_else(|| panic!("server closed before replying to request {id}"));
            match msg {
                ServerMsg::Ok { id: got, body } if got == id => return Ok(body),
                ServerMsg::Err { id: got, code, .. } if got == id => return Err(code),
                ServerMsg::Ping { nonce } => {
                    let pong = self.seal(&ClientMsg::Pong { nonce }).await;
                    self.push(&pong).await;
                }
                _ => {}
            }
        }
    }

    /// The outcome of a request: its error code, or what it was served.
    async fn outcome(&mut self, body: Request) -> Outcome {
        match self.request(body).await {
            Ok(resp) => Outcome::Served(kind_of(&resp)),
            Err(code) => Outcome::Refused(code),
        }
    }

    /// Waits up to `within` for the server to close; `None` if it is still open then.
    /// Replies and `disconnect` events on the way count as words; pings and other events
    /// do not (and pings go unanswered).
    async fn closed_within(&mut self, within: Duration) -> Option<Outcome> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.reader.recv::<ServerMsg>()).await {
                Err(_) => return None,
                Ok(Ok(None) | Err(_)) => {
                    return Some(Outcome::Closed(if self.told { Word::Told } else { Word::Silent }));
                }
                Ok(Ok(Some(ServerMsg::Event { event: Event::Disconnect { .. } } | ServerMsg::Ok { .. }))) => {
                    self.told = true;
                }
                Ok(Ok(Some(ServerMsg::Err { .. }))) => self.told = true,
                Ok(Ok(Some(_))) => {}
            }
        }
    }

    /// Waits for the server to close the connection.
    async fn closed(&mut self) -> Outcome {
        self.closed_within(BOUND)
            .await
            .unwrap_or_else(|| Outcome::Unexpected(format!("still open after {BOUND:?}")))
    }

    /// After a message that should be ignored: the connection still answers a ping.
    async fn still_served(&mut self) -> Outcome {
        let (id, msg) = self.request_msg(Request::Ping);
        let frame = self.seal(&msg).await;
        self.push(&frame).await;
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            match tokio::time::timeout_at(deadline, self.reader.recv::<ServerMsg>()).await {
                Err(_) => return Outcome::Unexpected("no answer to the ping".into()),
                Ok(Ok(None) | Err(_)) => return Outcome::Unexpected("the connection was closed".into()),
                Ok(Ok(Some(ServerMsg::Ok { id: got, body: Response::Pong }))) if got == id => {
                    return Outcome::Ignored;
                }
                Ok(Ok(Some(ServerMsg::Ok { id: got, body }))) => {
                    return Outcome::Unexpected(format!("a reply to {got}: {body:?}"));
                }
                Ok(Ok(Some(ServerMsg::Err { id: got, code, .. }))) => {
                    return Outcome::Unexpected(format!("an error for {got}: {code}"));
                }
                Ok(Ok(Some(_))) => {}
            }
        }
    }
}

/// Reads a plain connection until the server closes it (EOF or reset).
async fn tcp_closed(mut r: impl AsyncRead + Unpin) -> Outcome {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Outcome::Closed(Word::Silent),
            Ok(Ok(_)) => {}
            Err(_) => return Outcome::Unexpected(format!("still open after {BOUND:?}")),
        }
    }
}

/// Reads the server's hello off a plain connection (so what follows is the client key).
async fn read_hello(stream: &mut TcpStream) {
    let mut len = [0u8; 4];
    tokio::time::timeout(BOUND, stream.read_exact(&mut len))
        .await
        .expect("hello in time")
        .expect("hello length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tokio::time::timeout(BOUND, stream.read_exact(&mut body))
        .await
        .expect("hello in time")
        .expect("hello body");
}

/// A frame: the 4-byte length, then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).expect("small").to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// MessagePack (named fields) of a JSON value: maps, strings and integers as a peer with
/// its own encoder would write them, wrong types included.
fn mp(v: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("encode")
}

/// The MessagePack of a ping request with id `id`.
fn ping_bytes(id: u32) -> Vec<u8> {
    classchat_wire::message::encode(&ClientMsg::Request { id, body: Request::Ping }).expect("encode")
}

/// Flips one bit of a sealed frame's body at `at` bytes past the length prefix (negative:
/// from the end).
fn flip(mut frame: Vec<u8>, at: isize) -> Vec<u8> {
    let i = if at >= 0 { 4 + at.unsigned_abs() } else { frame.len() - at.unsigned_abs() };
    frame[i] ^= 0x01;
    frame
}

// ---- group: framing and the handshake --------------------------------------------------------

const FRAMING: &str = "framing";
const HANDSHAKE: &str = "handshake";
const SEALING: &str = "sealed frames";

fn framing_cases() -> Vec<Case> {
    let silent = Outcome::Closed(Word::Silent);
    vec![
        case!(
            junk_instead_of_client_key,
            HANDSHAKE,
            "a 16-byte frame of junk instead of the client key",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let _ = s.write_all(&frame(b"this is no key!!")).await;
                tcp_closed(s).await
            }
        ),
        case!(
            http_request_instead_of_handshake,
            HANDSHAKE,
            "an HTTP request (`GET / HTTP/1.1`): its first 4 bytes read as a 1.2 GB length",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
                tcp_closed(s).await
            }
        ),
        case!(
            max_length_prefix_in_handshake,
            HANDSHAKE,
            "length prefix 0xFFFFFFFF instead of the client key, no body",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let _ = s.write_all(&u32::MAX.to_be_bytes()).await;
                tcp_closed(s).await
            }
        ),
        case!(
            empty_client_key_frame,
            HANDSHAKE,
            "a zero-length frame instead of the client key",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let _ = s.write_all(&0u32.to_be_bytes()).await;
                tcp_closed(s).await
            }
        ),
        case!(
            truncated_client_key_then_eof,
            HANDSHAKE,
            "half a client-key frame, then the client closes its side",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let mut half = 400u32.to_be_bytes().to_vec();
                half.extend([0x83; 200]);
                let _ = s.write_all(&half).await;
                let _ = s.shutdown().await;
                tcp_closed(s).await
            }
        ),
        case!(
            client_key_wrong_version,
            HANDSHAKE,
            "a client key with protocol version 1",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let key = classchat_wire::crypto::ClientKey {
                    version: 1,
                    encrypted_secret: vec![7; 256],
                    nonce: vec![1; 32],
                };
                let _ = s.write_all(&frame(&rmp_serde::to_vec_named(&key).expect("encode"))).await;
                tcp_closed(s).await
            }
        ),
        case!(
            client_key_short_nonce,
            HANDSHAKE,
            "a client key with a 16-byte nonce",
            silent.clone(),
            |ctx| {
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let key = classchat_wire::crypto::ClientKey {
                    version: classchat_wire::message::PROTOCOL_VERSION,
                    encrypted_secret: vec![7; 256],
                    nonce: vec![1; 16],
                };
                let _ = s.write_all(&frame(&rmp_serde::to_vec_named(&key).expect("encode"))).await;
                tcp_closed(s).await
            }
        ),
        case!(
            client_key_secret_not_for_this_server,
            HANDSHAKE,
            "a client key whose secret is random bytes, not RSA-OAEP for this server; then a sealed ping",
            silent.clone(),
            |ctx| {
                // The server goes on with a random secret of its own, so the first sealed frame
                // fails its MAC: the same as any wrong key, and nothing about RSA leaks.
                let mut s = ctx.tcp().await;
                read_hello(&mut s).await;
                let key = classchat_wire::crypto::ClientKey {
                    version: classchat_wire::message::PROTOCOL_VERSION,
                    encrypted_secret: vec![7; 256],
                    nonce: vec![1; 32],
                };
                let _ = s.write_all(&frame(&rmp_serde::to_vec_named(&key).expect("encode"))).await;
                let mut sealer = classchat_wire::crypto::Sealer::new(&[3; 32], &[4; 32]);
                let mut buf = bytes::BytesMut::new();
                sealer.seal_frame(&ping_bytes(1), &mut buf, classchat_wire::MAX_FRAME_LEN).expect("seal");
                let _ = s.write_all(&buf).await;
                tcp_closed(s).await
            }
        ),
        case!(junk_sealed_frame, SEALING, "after login, a 100-byte frame of junk", silent.clone(), |ctx| {
            let mut raw = ctx.raw_user().await;
            let junk: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
            raw.push(&frame(&junk)).await;
            raw.closed().await
        }),
        case!(
            length_one_over_the_limit,
            FRAMING,
            "after login, a length prefix of MAX_FRAME_LEN + 1 and no body",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let too_big = u32::try_from(classchat_wire::MAX_FRAME_LEN + 1).expect("fits");
                raw.push(&too_big.to_be_bytes()).await;
                raw.closed().await
            }
        ),
        case!(
            length_u32_max,
            FRAMING,
            "after login, a length prefix of 0xFFFFFFFF (4 GiB) and no body",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.push(&u32::MAX.to_be_bytes()).await;
                raw.closed().await
            }
        ),
        case!(zero_length_sealed_frame, FRAMING, "after login, a zero-length frame", silent.clone(), |ctx| {
            let mut raw = ctx.raw_user().await;
            raw.push(&0u32.to_be_bytes()).await;
            raw.closed().await
        }),
        case!(
            sealed_body_too_short,
            SEALING,
            "after login, a 63-byte body (the smallest sealed body is 64)",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.push(&frame(&[0u8; 63])).await;
                raw.closed().await
            }
        ),
        case!(
            sealed_body_not_whole_blocks,
            SEALING,
            "after login, a real sealed ping with one byte appended (not whole AES blocks)",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let mut f = raw.seal(&ping).await;
                f.push(0);
                let len = u32::try_from(f.len() - 4).expect("small");
                f[..4].copy_from_slice(&len.to_be_bytes());
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            truncated_frame_then_eof,
            FRAMING,
            "after login, the first half of a sealed frame, then the client closes its side",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let f = raw.seal(&ping).await;
                raw.push(&f[..f.len() / 2]).await;
                let _ = raw.sock.shutdown().await;
                raw.closed().await
            }
        ),
        case!(
            replayed_frame,
            SEALING,
            "a captured sealed ping, answered, then sent again byte for byte",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (id, ping) = raw.request_msg(Request::Ping);
                let f = raw.seal(&ping).await;
                raw.push(&f).await;
                if raw.reply(id).await != Ok(Response::Pong) {
                    return Outcome::Unexpected("the first ping was not answered".into());
                }
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            reordered_frames,
            SEALING,
            "two sealed pings sent in the opposite order",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, a) = raw.request_msg(Request::Ping);
                let (_, b) = raw.request_msg(Request::Ping);
                let first = raw.seal(&a).await;
                let second = raw.seal(&b).await;
                raw.push(&second).await;
                raw.push(&first).await;
                raw.closed().await
            }
        ),
        case!(
            dropped_frame,
            SEALING,
            "a sealed frame left out: the next one arrives with a sequence number too far ahead",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, a) = raw.request_msg(Request::Ping);
                let (_, b) = raw.request_msg(Request::Ping);
                let _skipped = raw.seal(&a).await;
                let next = raw.seal(&b).await;
                raw.push(&next).await;
                raw.closed().await
            }
        ),
        case!(
            frame_spliced_from_another_session,
            SEALING,
            "a sealed frame from another session, at the same sequence number",
            silent.clone(),
            |ctx| {
                let mut donor = ctx.raw_user().await;
                let mut raw = ctx.raw_user().await;
                let (_, ping) = donor.request_msg(Request::Ping);
                let stolen = donor.seal(&ping).await;
                raw.push(&stolen).await;
                raw.closed().await
            }
        ),
        case!(
            flipped_iv_bit,
            SEALING,
            "a sealed ping with one bit of the IV flipped",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let f = flip(raw.seal(&ping).await, 0);
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            flipped_ciphertext_bit,
            SEALING,
            "a sealed ping with one bit of the ciphertext flipped",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let f = flip(raw.seal(&ping).await, 16);
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            flipped_mac_bit,
            SEALING,
            "a sealed ping with one bit of the MAC flipped",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let f = flip(raw.seal(&ping).await, -1);
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            mac_cut_off,
            SEALING,
            "a sealed ping without its MAC (length adjusted: IV and ciphertext only)",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let f = raw.seal(&ping).await;
                let body = &f[4..f.len() - 32];
                raw.push(&frame(body)).await;
                raw.closed().await
            }
        ),
        case!(
            sealed_empty_plaintext,
            SEALING,
            "a validly sealed frame with an empty plaintext",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.send_plain(b"").await;
                raw.closed().await
            }
        ),
    ]
}

#[tokio::test]
async fn framing_and_handshake() {
    run_group(|_| {}, framing_cases()).await;
}

// ---- group: what a sealed frame holds --------------------------------------------------------

const DECODING: &str = "decoding";
const WRONG_TYPE: &str = "wrong field types";

fn decoding_cases() -> Vec<Case> {
    let silent = Outcome::Closed(Word::Silent);
    vec![
        case!(
            unknown_message_type,
            DECODING,
            "validly sealed `{\"nope\": {}}`: no such client message",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.send_plain(b"\x81\xa4nope\x80").await;
                raw.closed().await
            }
        ),
        case!(
            unknown_request_kind,
            DECODING,
            "a request `format_disk` with an id: no such request",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.send_plain(&mp(&json!({"request": {"id": 5, "body": {"format_disk": {"all": true}}}})))
                    .await;
                raw.closed().await
            }
        ),
        case!(
            request_id_is_a_string,
            WRONG_TYPE,
            "a ping whose request `id` is the string \"seven\"",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.send_plain(&mp(&json!({"request": {"id": "seven", "body": "ping"}}))).await;
                raw.closed().await
            }
        ),
        case!(request_id_over_u32, WRONG_TYPE, "a ping whose request `id` is 2^40", silent.clone(), |ctx| {
            let mut raw = ctx.raw_user().await;
            raw.send_plain(&mp(&json!({"request": {"id": 1u64 << 40, "body": "ping"}}))).await;
            raw.closed().await
        }),
        case!(request_id_negative, WRONG_TYPE, "a ping whose request `id` is -1", silent.clone(), |ctx| {
            let mut raw = ctx.raw_user().await;
            raw.send_plain(&mp(&json!({"request": {"id": -1, "body": "ping"}}))).await;
            raw.closed().await
        }),
        case!(
            history_limit_is_a_string,
            WRONG_TYPE,
            "`history` with `limit` \"ten\" (a string where a u32 goes)",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let body =
                    json!({"history": {"conv": {"room": {"name": "lobby"}}, "before": null, "limit": "ten"}});
                raw.send_plain(&mp(&json!({"request": {"id": 9, "body": body}}))).await;
                raw.closed().await
            }
        ),
        case!(
            send_room_text_is_a_number,
            WRONG_TYPE,
            "`send_room` with `text` 42 (a number where a string goes)",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.send_plain(&mp(
                    &json!({"request": {"id": 9, "body": {"send_room": {"room": "lobby", "text": 42}}}}),
                ))
                .await;
                raw.closed().await
            }
        ),
        case!(
            flag_is_a_number,
            WRONG_TYPE,
            "`ask_question` with `anonymous` 1 (an integer where a bool goes)",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let body = json!({"ask_question": {"room": HEALTHY, "text": "hi", "anonymous": 1}});
                raw.send_plain(&mp(&json!({"request": {"id": 9, "body": body}}))).await;
                raw.closed().await
            }
        ),
        case!(required_field_missing, WRONG_TYPE, "`join_room` without its `name`", silent.clone(), |ctx| {
            let mut raw = ctx.raw_user().await;
            raw.send_plain(&mp(&json!({"request": {"id": 9, "body": {"join_room": {"password": null}}}})))
                .await;
            raw.closed().await
        }),
        case!(
            unknown_keys_are_ignored,
            DECODING,
            "a ping with extra keys the server does not know (`\"x\": [1, 2]`)",
            Outcome::Served("Pong".into()),
            |ctx| {
                // PROTOCOL.md section 6: receivers ignore unknown keys, so newer peers can add fields.
                let mut raw = ctx.raw_user().await;
                raw.next_id += 1;
                let id = raw.next_id;
                raw.send_plain(&mp(&json!({"request": {"id": id, "body": "ping", "x": [1, 2]}}))).await;
                match raw.reply(id).await {
                    Ok(resp) => Outcome::Served(kind_of(&resp)),
                    Err(code) => Outcome::Refused(code),
                }
            }
        ),
        case!(
            trailing_garbage_after_a_message,
            DECODING,
            "a sealed `pong` followed by the byte 0xc1 (never valid MessagePack) in the same frame",
            silent.clone(),
            |ctx| {
                // A pong needs no reply, so whatever the server says before closing would be a word.
                let mut raw = ctx.raw_user().await;
                let mut plain =
                    classchat_wire::message::encode(&ClientMsg::Pong { nonce: 1 }).expect("encode");
                plain.push(0xc1);
                raw.send_plain(&plain).await;
                raw.closed().await
            }
        ),
        case!(
            message_cut_short,
            DECODING,
            "a sealed frame holding a ping request minus its last byte",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let mut plain = ping_bytes(7);
                plain.pop();
                raw.send_plain(&plain).await;
                raw.closed().await
            }
        ),
        case!(
            deeply_nested_unknown_value,
            DECODING,
            "a ping with an unknown key whose value is 200,000 nested arrays",
            silent.clone(),
            |ctx| {
                // Skipping an unknown value recurses; a depth limit must stop it before the stack.
                let mut raw = ctx.raw_user().await;
                let mut plain = b"\x81\xa7request\x83\xa2id\x07\xa4body\xa4ping\xa1x".to_vec();
                plain.extend(std::iter::repeat_n(0x91u8, 200_000));
                plain.push(0xc0);
                raw.send_plain(&plain).await;
                raw.closed().await
            }
        ),
        case!(
            array_claims_four_billion_elements,
            DECODING,
            "a `vote` whose `choices` array header claims 4,294,967,295 elements, with none after it",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let plain = b"\x81\xa7request\x82\xa2id\x07\xa4body\x81\xa4vote\x82\xa4poll\x01\xa7choices\xdd\xff\xff\xff\xff";
                raw.send_plain(plain).await;
                raw.closed().await
            }
        ),
        case!(
            string_claims_four_gigabytes,
            DECODING,
            "a `broadcast` whose `text` header claims 4 GiB, with 3 bytes after it",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let plain = b"\x81\xa7request\x82\xa2id\x07\xa4body\x81\xa9broadcast\x81\xa4text\xdb\xff\xff\xff\xffabc";
                raw.send_plain(plain).await;
                raw.closed().await
            }
        ),
        case!(
            chunk_on_a_chat_connection,
            DECODING,
            "a file `chunk` on a logged-in chat connection",
            silent.clone(),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let f = raw.seal(&ClientMsg::Chunk { data: vec![0; 1000] }).await;
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            ack_for_a_room_not_joined,
            DECODING,
            "an `ack` up to u64::MAX for a room the user is not in",
            Outcome::Ignored,
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let f = raw.seal(&ClientMsg::Ack { conv: Conv::room(HEALTHY), up_to: u64::MAX }).await;
                raw.push(&f).await;
                raw.still_served().await
            }
        ),
        case!(
            pong_nobody_asked_for,
            DECODING,
            "a `pong` with a nonce the server never sent",
            Outcome::Ignored,
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let f = raw.seal(&ClientMsg::Pong { nonce: 0xdead_beef }).await;
                raw.push(&f).await;
                raw.still_served().await
            }
        ),
        case!(
            pipelined_ping_flood,
            DECODING,
            "900 ping requests in one sealed frame",
            Outcome::Served("900 pongs, in order".into()),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let mut plain = Vec::new();
                for id in 1..=900 {
                    plain.extend(ping_bytes(id));
                }
                raw.send_plain(&plain).await;
                for id in 1..=900 {
                    match raw.reply(id).await {
                        Ok(Response::Pong) => {}
                        other => return Outcome::Unexpected(format!("ping {id}: {other:?}")),
                    }
                }
                Outcome::Served("900 pongs, in order".into())
            }
        ),
    ]
}

#[tokio::test]
async fn decoding() {
    run_group(|_| {}, decoding_cases()).await;
}

// ---- group: time limits --------------------------------------------------------------------

const TIMEOUTS: &str = "silence and trickles";

fn timeout_cases() -> Vec<Case> {
    vec![
        case!(
            silent_after_connect,
            TIMEOUTS,
            "a TCP connection that never sends its client key",
            Outcome::Closed(Word::Silent),
            |ctx| {
                let s = ctx.tcp().await;
                tcp_closed(s).await
            }
        ),
        case!(
            silent_after_handshake,
            TIMEOUTS,
            "a handshake, then no login ever",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = ctx.raw().await;
                raw.closed().await
            }
        ),
        case!(
            requests_but_no_login,
            TIMEOUTS,
            "a handshake, then pings (allowed before login) but no login",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = ctx.raw().await;
                for _ in 0..100 {
                    if raw.outcome(Request::Ping).await != Outcome::Served("Pong".into()) {
                        return Outcome::Unexpected("a ping before login was not answered".into());
                    }
                    raw.told = false;
                    if let Some(end) = raw.closed_within(Duration::from_millis(200)).await {
                        return end;
                    }
                }
                Outcome::Unexpected("still open after 100 pings".into())
            }
        ),
        case!(
            never_answers_pings,
            TIMEOUTS,
            "a logged-in client that never answers the server's pings",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.closed().await
            }
        ),
        case!(
            truncated_frame_then_silence,
            TIMEOUTS,
            "after login, the first half of a sealed frame, then silence",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                let (_, ping) = raw.request_msg(Request::Ping);
                let f = raw.seal(&ping).await;
                raw.push(&f[..f.len() / 2]).await;
                raw.closed().await
            }
        ),
        case!(
            frame_trickled_a_byte_at_a_time,
            TIMEOUTS,
            "after login, a 1,000-byte frame sent one byte every 100 ms",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = ctx.raw_user().await;
                raw.push(&1000u32.to_be_bytes()).await;
                for _ in 0..100 {
                    raw.push(&[0]).await;
                    if let Some(end) = raw.closed_within(Duration::from_millis(100)).await {
                        return end;
                    }
                }
                Outcome::Unexpected("still open after 10 s of trickle".into())
            }
        ),
    ]
}

#[tokio::test]
async fn silence_and_trickles() {
    run_group(
        |c| {
            c.handshake_timeout_ms = 1000;
            c.login_timeout_ms = 2000;
            c.heartbeat_timeout_ms = 1500;
        },
        timeout_cases(),
    )
    .await;
}

// ---- group: accounts and login -------------------------------------------------------------

const BEFORE_LOGIN: &str = "before login";
const NAMES: &str = "hostile usernames";
const LOGIN: &str = "login";

/// One request of every kind but `register`, `login`, `resume` and `ping` (which are
/// allowed before login). `kind_index` is exhaustive, so a new request kind does not
/// compile until it is sorted in here.
fn every_request_needing_login() -> Vec<Request> {
    let s = || "x".to_owned();
    let room = || MuteScope::Room { name: HEALTHY.into() };
    vec![
        Request::Logout,
        Request::ListRooms,
        Request::CreateRoom { name: s(), topic: s(), password: None },
        Request::JoinRoom { name: HEALTHY.into(), password: None },
        Request::LeaveRoom { name: HEALTHY.into() },
        Request::RoomMembers { name: HEALTHY.into() },
        Request::Kick { room: HEALTHY.into(), user: "alice".into() },
        Request::Ban { room: HEALTHY.into(), user: "alice".into() },
        Request::Unban { room: HEALTHY.into(), user: "alice".into() },
        Request::ListBans { room: HEALTHY.into() },
        Request::SetTopic { room: HEALTHY.into(), topic: s() },
        Request::SetRoomPassword { room: HEALTHY.into(), password: Some(s()) },
        Request::HandOverAdmin { room: HEALTHY.into(), user: "bob".into() },
        Request::SendRoom { room: HEALTHY.into(), text: s(), reply_to: None },
        Request::SendDirect { to: "alice".into(), body: vec![1], reply_to: None },
        Request::Broadcast { text: s() },
        Request::History { conv: Conv::room(HEALTHY), before: None, limit: 10 },
        Request::PublishKey { public_key: vec![1], backup: vec![1] },
        Request::GetKey { user: "alice".into() },
        Request::GetBackup,
        Request::PutDmKey { to: "alice".into(), grant: vec![1] },
        Request::DmKeys { user: "alice".into() },
        Request::ChangePassword { auth_key: vec![0; 32], new_auth_key: vec![0; 32], backup: vec![] },
        Request::OnlineUsers,
        Request::ListUsers,
        Request::AdminKick { user: "alice".into(), reason: s() },
        Request::AdminBan { user: "alice".into(), reason: s() },
        Request::AdminUnban { user: "alice".into() },
        Request::AdminRemoveRoom { name: HEALTHY.into() },
        Request::UploadFile { conv: Conv::room(HEALTHY), name: s(), size: 1, meta: None },
        Request::DownloadFile { file: 1 },
        Request::AnswerOffer { file: 1, accept: true },
        Request::AttachUpload { token: vec![0; 32] },
        Request::FinishUpload { sha256: vec![0; 32] },
        Request::AttachDownload { token: vec![0; 32], offset: 0 },
        Request::SetRoomSettings { room: HEALTHY.into(), settings: RoomSettings::default() },
        Request::Mute { scope: room(), user: "bob".into(), secs: None },
        Request::Unmute { scope: room(), user: "bob".into() },
        Request::ListMutes { scope: room() },
        Request::SetExamMode { on: true, questions_room: None },
        Request::AuditLog { before: None, limit: 10 },
        Request::AskQuestion { room: HEALTHY.into(), text: s(), anonymous: false },
        Request::Upvote { question: 1, up: true },
        Request::MarkAnswered { question: 1, answered: true, answer: None },
        Request::Questions { room: HEALTHY.into() },
        Request::CreatePoll {
            room: HEALTHY.into(),
            question: s(),
            options: vec!["a".into(), "b".into()],
            multiple: false,
            anonymous: false,
            closes_at: None,
        },
        Request::Vote { poll: 1, choices: vec![0] },
        Request::ClosePoll { poll: 1 },
        Request::Polls { room: HEALTHY.into() },
        Request::JoinQueue { instructor: "alice".into() },
        Request::LeaveQueue { instructor: "alice".into() },
        Request::OfficeQueue,
        Request::NextInQueue,
        Request::SetSharing { listener: None },
        Request::WhoHas {
            room: HEALTHY.into(),
            query: classchat_wire::peer::SearchQuery { name: "x".into(), sha256: None },
        },
        Request::AnswerSearch { search: 1, files: vec![] },
        Request::PeerFetch { room: HEALTHY.into(), sharer: "alice".into(), sha256: vec![1; 32] },
        Request::PeerRelay { ticket: vec![1; 32] },
        Request::AttachRelay { ticket: vec![1; 32], side: classchat_wire::peer::RelaySide::Asker },
        Request::Edit { id: 1, body: classchat_wire::Body::Text { text: "x".into() } },
        Request::Delete { id: 1, proof: None },
        Request::React { id: 1, emoji: "👍".into(), on: true },
        Request::SearchMessages { query: "x".into(), room: None, offset: 0, limit: 10 },
    ]
}

/// Request kinds, numbered; `None` for the four allowed before login.
fn kind_index(r: &Request) -> Option<usize> {
    use Request as R;
    Some(match r {
        R::Register { .. } | R::Login { .. } | R::Resume { .. } | R::Ping => return None,
        R::Logout => 0,
        R::ListRooms => 1,
        R::CreateRoom { .. } => 2,
        R::JoinRoom { .. } => 3,
        R::LeaveRoom { .. } => 4,
        R::RoomMembers { .. } => 5,
        R::Kick { .. } => 6,
        R::Ban { .. } => 7,
        R::Unban { .. } => 8,
        R::ListBans { .. } => 9,
        R::SetTopic { .. } => 10,
        R::SetRoomPassword { .. } => 11,
        R::HandOverAdmin { .. } => 12,
        R::SendRoom { .. } => 13,
        R::SendDirect { .. } => 14,
        R::Broadcast { .. } => 15,
        R::History { .. } => 16,
        R::PublishKey { .. } => 17,
        R::GetKey { .. } => 18,
        R::GetBackup => 19,
        R::PutDmKey { .. } => 20,
        R::DmKeys { .. } => 21,
        R::ChangePassword { .. } => 22,
        R::OnlineUsers => 23,
        R::ListUsers => 24,
        R::AdminKick { .. } => 25,
        R::AdminBan { .. } => 26,
        R::AdminUnban { .. } => 27,
        R::AdminRemoveRoom { .. } => 28,
        R::UploadFile { .. } => 29,
        R::DownloadFile { .. } => 30,
        R::AnswerOffer { .. } => 31,
        R::AttachUpload { .. } => 32,
        R::FinishUpload { .. } => 33,
        R::AttachDownload { .. } => 34,
        R::SetRoomSettings { .. } => 35,
        R::Mute { .. } => 36,
        R::Unmute { .. } => 37,
        R::ListMutes { .. } => 38,
        R::SetExamMode { .. } => 39,
        R::AuditLog { .. } => 40,
        R::AskQuestion { .. } => 41,
        R::Upvote { .. } => 42,
        R::MarkAnswered { .. } => 43,
        R::Questions { .. } => 44,
        R::CreatePoll { .. } => 45,
        R::Vote { .. } => 46,
        R::ClosePoll { .. } => 47,
        R::Polls { .. } => 48,
        R::JoinQueue { .. } => 49,
        R::LeaveQueue { .. } => 50,
        R::OfficeQueue => 51,
        R::NextInQueue => 52,
        R::SetSharing { .. } => 53,
        R::WhoHas { .. } => 54,
        R::AnswerSearch { .. } => 55,
        R::PeerFetch { .. } => 56,
        R::PeerRelay { .. } => 57,
        R::AttachRelay { .. } => 58,
        R::Edit { .. } => 59,
        R::Delete { .. } => 60,
        R::React { .. } => 61,
        R::SearchMessages { .. } => 62,
    })
}

/// Request kinds that need a login.
const KINDS_NEEDING_LOGIN: usize = 63;

#[test]
fn every_request_kind_is_tried_before_login() {
    let mut seen = [false; KINDS_NEEDING_LOGIN];
    for r in every_request_needing_login() {
        let i = kind_index(&r).unwrap_or_else(|| panic!("{r:?} is allowed before login"));
        assert!(!seen[i], "{r:?} is listed twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s), "some request kind is missing from every_request_needing_login");
}

/// Registers `name` on a fresh connection and returns the reply's outcome.
async fn register_as(ctx: &Ctx, name: &str) -> Outcome {
    let mut raw = ctx.raw().await;
    raw.outcome(Request::Register {
        username: name.into(),
        auth_key: auth(name).to_vec(),
        device: "raw".into(),
    })
    .await
}

fn account_cases() -> Vec<Case> {
    let invalid = Outcome::Refused(ErrorCode::InvalidUsername);
    vec![
        case!(
            every_request_before_login,
            BEFORE_LOGIN,
            "each of the 63 request kinds that need a login, on a connection that has not logged in",
            Outcome::Refused(ErrorCode::NotLoggedIn),
            |ctx| {
                let mut raw = ctx.raw().await;
                // A ping first: the first request decides whether this is a bulk connection.
                if raw.outcome(Request::Ping).await != Outcome::Served("Pong".into()) {
                    return Outcome::Unexpected("the ping before login was not answered".into());
                }
                for req in every_request_needing_login() {
                    let what = format!("{req:?}");
                    let got = raw.outcome(req).await;
                    if got != Outcome::Refused(ErrorCode::NotLoggedIn) {
                        return Outcome::Unexpected(format!("{what}: {got:?}"));
                    }
                }
                Outcome::Refused(ErrorCode::NotLoggedIn)
            }
        ),
        case!(
            second_login_on_a_session,
            LOGIN,
            "`login` on a connection that is already logged in",
            Outcome::Refused(ErrorCode::AlreadyLoggedIn),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.login("alice", &auth("alice"), "dev-1").await.map(|_| Response::Done))
            }
        ),
        case!(
            auth_key_wrong_length,
            LOGIN,
            "`register` with a 5-byte `auth_key`",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let mut raw = ctx.raw().await;
                let name = ctx.fresh_name();
                raw.outcome(Request::Register { username: name, auth_key: vec![1; 5], device: "raw".into() })
                    .await
            }
        ),
        case!(
            hostile_device_name,
            LOGIN,
            "`register` with a 10 KB device name full of control characters",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let mut raw = ctx.raw().await;
                let name = ctx.fresh_name();
                let device = "\u{1b}[2J\n".repeat(2500);
                raw.outcome(Request::Register {
                    username: name.clone(),
                    auth_key: auth(&name).to_vec(),
                    device,
                })
                .await
            }
        ),
        case!(username_path_traversal, NAMES, "username `../../etc/passwd`", invalid.clone(), |ctx| {
            register_as(ctx, "../../etc/passwd").await
        }),
        case!(
            username_control_chars,
            NAMES,
            "username `bob\\u{0}\\n` (NUL and newline)",
            invalid.clone(),
            |ctx| register_as(ctx, "bob\u{0}\n").await
        ),
        case!(
            username_bidi_override,
            NAMES,
            "username `\\u{202E}nimda` (a right-to-left override: shows as `admin`)",
            invalid.clone(),
            |ctx| register_as(ctx, "\u{202E}nimda").await
        ),
        case!(username_33_chars, NAMES, "a 33-character username", invalid.clone(), |ctx| register_as(
            ctx,
            &"a".repeat(33)
        )
        .await),
        case!(username_empty, NAMES, "an empty username", invalid.clone(), |ctx| register_as(ctx, "").await),
        case!(
            username_cyrillic_lookalike,
            NAMES,
            "username `аlice` (Cyrillic а: looks like `alice`)",
            invalid.clone(),
            |ctx| register_as(ctx, "\u{430}lice").await
        ),
        case!(username_10_kb, NAMES, "a 10 KB username", invalid.clone(), |ctx| register_as(
            ctx,
            &"a".repeat(10_000)
        )
        .await),
        case!(
            username_other_case_of_existing,
            NAMES,
            "username `ALICE` while `alice` exists",
            Outcome::Refused(ErrorCode::UsernameTaken),
            |ctx| register_as(ctx, "ALICE").await
        ),
        case!(
            login_unknown_user,
            LOGIN,
            "`login` as a user who does not exist",
            Outcome::Refused(ErrorCode::BadCredentials),
            |ctx| {
                let mut raw = ctx.raw().await;
                raw.outcome(Request::Login {
                    username: "nobody".into(),
                    auth_key: auth("nobody").to_vec(),
                    device: "raw".into(),
                })
                .await
            }
        ),
        case!(
            login_flood,
            LOGIN,
            "30 wrong-password logins for `alice` from one address (127.0.0.2), on one connection",
            Outcome::Refused(ErrorCode::Throttled),
            |ctx| {
                let mut raw = Raw::connect(&ctx.server, Some([127, 0, 0, 2])).await;
                for _ in 0..30 {
                    match raw
                        .outcome(Request::Login {
                            username: "alice".into(),
                            auth_key: vec![0; 32],
                            device: "raw".into(),
                        })
                        .await
                    {
                        Outcome::Refused(ErrorCode::BadCredentials) => {}
                        other => return other,
                    }
                }
                Outcome::Unexpected("30 wrong passwords and still not throttled".into())
            }
        ),
        case!(
            resume_with_a_forged_token,
            LOGIN,
            "`resume` as `bob` with a made-up token",
            Outcome::Refused(ErrorCode::BadToken),
            |ctx| {
                let mut raw = ctx.raw().await;
                raw.outcome(Request::Resume {
                    username: "bob".into(),
                    token: vec![9; 32],
                    device: "dev-1".into(),
                })
                .await
            }
        ),
        case!(
            resume_flood,
            LOGIN,
            "30 `resume`s with made-up tokens from one address (127.0.0.3)",
            Outcome::Refused(ErrorCode::Throttled),
            |ctx| {
                let mut raw = Raw::connect(&ctx.server, Some([127, 0, 0, 3])).await;
                for i in 0..30u8 {
                    match raw
                        .outcome(Request::Resume {
                            username: "bob".into(),
                            token: vec![i; 32],
                            device: "dev-1".into(),
                        })
                        .await
                    {
                        Outcome::Refused(ErrorCode::BadToken) => {}
                        other => return other,
                    }
                }
                Outcome::Unexpected("30 forged tokens and still not throttled".into())
            }
        ),
        case!(
            change_password_with_a_wrong_one,
            LOGIN,
            "`change_password` giving a wrong current password",
            Outcome::Refused(ErrorCode::BadCredentials),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::ChangePassword {
                            auth_key: vec![0; 32],
                            new_auth_key: vec![1; 32],
                            backup: vec![2; 10],
                        })
                        .await,
                )
            }
        ),
    ]
}

#[tokio::test]
async fn accounts_and_login() {
    run_group(|_| {}, account_cases()).await;
}

// ---- group: permissions --------------------------------------------------------------------

const SERVER_ADMIN: &str = "server admin requests by a student";
const ROOM_ADMIN: &str = "room admin requests by a member";

fn permission_cases() -> Vec<Case> {
    let not_admin = Outcome::Refused(ErrorCode::NotServerAdmin);
    let not_room_admin = Outcome::Refused(ErrorCode::NotRoomAdmin);
    vec![
        case!(admin_kick_by_student, SERVER_ADMIN, "`admin_kick` of `alice`", not_admin.clone(), |ctx| {
            let u = ctx.user().await;
            outcome(u.client.request(Request::AdminKick { user: "alice".into(), reason: "bye".into() }).await)
        }),
        case!(admin_ban_by_student, SERVER_ADMIN, "`admin_ban` of `bob`", not_admin.clone(), |ctx| {
            let u = ctx.user().await;
            outcome(u.client.request(Request::AdminBan { user: "bob".into(), reason: "bye".into() }).await)
        }),
        case!(admin_unban_by_student, SERVER_ADMIN, "`admin_unban` of a user", not_admin.clone(), |ctx| {
            let u = ctx.user().await;
            outcome(u.client.request(Request::AdminUnban { user: "bob".into() }).await)
        }),
        case!(
            admin_remove_room_by_student,
            SERVER_ADMIN,
            "`admin_remove_room` of the room the healthy pair chats in",
            not_admin.clone(),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.request(Request::AdminRemoveRoom { name: HEALTHY.into() }).await)
            }
        ),
        case!(exam_mode_by_student, SERVER_ADMIN, "`set_exam_mode` on", not_admin.clone(), |ctx| {
            let u = ctx.user().await;
            outcome(u.client.request(Request::SetExamMode { on: true, questions_room: None }).await)
        }),
        case!(audit_log_by_student, SERVER_ADMIN, "`audit_log`", not_admin.clone(), |ctx| {
            let u = ctx.user().await;
            outcome(u.client.request(Request::AuditLog { before: None, limit: 50 }).await)
        }),
        case!(
            server_mute_by_student,
            SERVER_ADMIN,
            "`mute` of `alice` with scope `server`",
            not_admin.clone(),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::Mute { scope: MuteScope::Server, user: "alice".into(), secs: None })
                        .await,
                )
            }
        ),
        case!(
            server_mute_by_room_admin,
            SERVER_ADMIN,
            "`mute` with scope `server` by the admin of a room (not an instructor)",
            not_admin.clone(),
            |ctx| {
                let u = ctx.user().await;
                u.create_room(&format!("{}-room", u.name)).await;
                outcome(
                    u.client
                        .request(Request::Mute {
                            scope: MuteScope::Server,
                            user: "bob".into(),
                            secs: Some(60),
                        })
                        .await,
                )
            }
        ),
        case!(
            next_in_queue_by_student,
            SERVER_ADMIN,
            "`next_in_queue` (office hours are for instructors)",
            not_admin.clone(),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.request(Request::NextInQueue).await)
            }
        ),
        case!(
            kick_by_member,
            ROOM_ADMIN,
            "`kick` of the room's admin `alice` by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                outcome(u.client.request(Request::Kick { room: HEALTHY.into(), user: "alice".into() }).await)
            }
        ),
        case!(ban_by_member, ROOM_ADMIN, "`ban` of `bob` by a member", not_room_admin.clone(), |ctx| {
            let u = ctx.student().await;
            outcome(u.client.request(Request::Ban { room: HEALTHY.into(), user: "bob".into() }).await)
        }),
        case!(set_topic_by_member, ROOM_ADMIN, "`set_topic` by a member", not_room_admin.clone(), |ctx| {
            let u = ctx.student().await;
            outcome(u.client.request(Request::SetTopic { room: HEALTHY.into(), topic: "pwned".into() }).await)
        }),
        case!(
            set_password_by_member,
            ROOM_ADMIN,
            "`set_room_password` by a member (would lock the others out)",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                outcome(
                    u.client
                        .request(Request::SetRoomPassword {
                            room: HEALTHY.into(),
                            password: Some("mine".into()),
                        })
                        .await,
                )
            }
        ),
        case!(
            hand_over_by_member,
            ROOM_ADMIN,
            "`hand_over_admin` to themselves by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                let me = u.name.clone();
                outcome(u.client.request(Request::HandOverAdmin { room: HEALTHY.into(), user: me }).await)
            }
        ),
        case!(
            room_settings_by_member,
            ROOM_ADMIN,
            "`set_room_settings` (announce-only) by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                let settings = RoomSettings { announce_only: true, slow_mode_secs: 3600, qa: false };
                outcome(u.client.request(Request::SetRoomSettings { room: HEALTHY.into(), settings }).await)
            }
        ),
        case!(
            room_mute_by_member,
            ROOM_ADMIN,
            "`mute` of `bob` in the room by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                outcome(
                    u.client
                        .request(Request::Mute {
                            scope: MuteScope::Room { name: HEALTHY.into() },
                            user: "bob".into(),
                            secs: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            create_poll_by_member,
            ROOM_ADMIN,
            "`create_poll` by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                outcome(
                    u.client
                        .request(Request::CreatePoll {
                            room: HEALTHY.into(),
                            question: "?".into(),
                            options: vec!["a".into(), "b".into()],
                            multiple: false,
                            anonymous: false,
                            closes_at: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            close_poll_by_member,
            ROOM_ADMIN,
            "`close_poll` of the admin's poll by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                outcome(u.client.request(Request::ClosePoll { poll: ctx.poll }).await)
            }
        ),
        case!(
            mark_answered_by_member,
            ROOM_ADMIN,
            "`mark_answered` of another member's question by a member",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.student().await;
                outcome(
                    u.client
                        .request(Request::MarkAnswered {
                            question: ctx.question,
                            answered: true,
                            answer: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            kick_from_a_room_not_joined,
            ROOM_ADMIN,
            "`kick` of `bob` by someone who is not even in the room",
            not_room_admin.clone(),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.request(Request::Kick { room: HEALTHY.into(), user: "bob".into() }).await)
            }
        ),
    ]
}

#[tokio::test]
async fn permissions() {
    run_group(|_| {}, permission_cases()).await;
}

// ---- group: content and floods -------------------------------------------------------------

const MESSAGES: &str = "messages and history";
const ROOMS: &str = "hostile room names and rooms";
const CLASS: &str = "polls and questions";
const FLOODS: &str = "floods";

/// A fresh user who is admin of a fresh room (returned).
async fn room_admin(ctx: &Ctx) -> (TestUser, String) {
    let u = ctx.user().await;
    let room = format!("{}-room", u.name);
    u.create_room(&room).await;
    (u, room)
}

async fn create_room_named(ctx: &Ctx, name: &str) -> Outcome {
    let u = ctx.user().await;
    outcome(
        u.client
            .request(Request::CreateRoom { name: name.into(), topic: String::new(), password: None })
            .await,
    )
}

fn poll(room: &str, question: String, options: Vec<String>) -> Request {
    Request::CreatePoll {
        room: room.into(),
        question,
        options,
        multiple: false,
        anonymous: false,
        closes_at: None,
    }
}

fn content_cases() -> Vec<Case> {
    let invalid_room = Outcome::Refused(ErrorCode::InvalidRoomName);
    vec![
        case!(
            message_over_the_limit,
            MESSAGES,
            "a room message of 16,385 bytes (max_message_len + 1)",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::SendRoom {
                            room: "lobby".into(),
                            text: "x".repeat(16 * 1024 + 1),
                            reply_to: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            message_of_900_kb,
            MESSAGES,
            "a room message of 900 KB (fits in a frame)",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::SendRoom {
                            room: "lobby".into(),
                            text: "x".repeat(900 * 1024),
                            reply_to: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            empty_message,
            MESSAGES,
            "an empty room message",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::SendRoom {
                            room: "lobby".into(),
                            text: String::new(),
                            reply_to: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            empty_direct_message,
            MESSAGES,
            "an empty direct message body",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::SendDirect { to: "alice".into(), body: Vec::new(), reply_to: None })
                        .await,
                )
            }
        ),
        case!(
            message_to_a_room_not_joined,
            MESSAGES,
            "a message into the healthy pair's room by a non-member",
            Outcome::Refused(ErrorCode::NotMember),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::SendRoom {
                            room: HEALTHY.into(),
                            text: "hi".into(),
                            reply_to: None,
                        })
                        .await,
                )
            }
        ),
        case!(
            history_limit_zero,
            MESSAGES,
            "`history` with `limit` 0",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::History { conv: Conv::room("lobby"), before: None, limit: 0 })
                        .await,
                )
            }
        ),
        case!(
            history_limit_ten_thousand,
            MESSAGES,
            "`history` with `limit` 10,000",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::History { conv: Conv::room("lobby"), before: None, limit: 10_000 })
                        .await,
                )
            }
        ),
        case!(
            history_of_a_room_not_joined,
            MESSAGES,
            "`history` of the healthy pair's room by a non-member",
            Outcome::Refused(ErrorCode::NotMember),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .request(Request::History { conv: Conv::room(HEALTHY), before: None, limit: 50 })
                        .await,
                )
            }
        ),
        case!(
            room_name_path_traversal,
            ROOMS,
            "`create_room` named `../../etc`",
            invalid_room.clone(),
            |ctx| create_room_named(ctx, "../../etc").await
        ),
        case!(
            room_name_control_chars,
            ROOMS,
            "`create_room` named `lab\\r\\n` (control characters)",
            invalid_room.clone(),
            |ctx| create_room_named(ctx, "lab\r\n").await
        ),
        case!(
            room_name_bidi_override,
            ROOMS,
            "`create_room` named `bal\\u{202E}` (a right-to-left override)",
            invalid_room.clone(),
            |ctx| create_room_named(ctx, "bal\u{202E}").await
        ),
        case!(
            room_name_33_chars,
            ROOMS,
            "`create_room` with a 33-character name",
            invalid_room.clone(),
            |ctx| create_room_named(ctx, &"r".repeat(33)).await
        ),
        case!(room_name_empty, ROOMS, "`create_room` with an empty name", invalid_room.clone(), |ctx| {
            create_room_named(ctx, "").await
        }),
        case!(
            room_name_unicode,
            ROOMS,
            "`create_room` named `λ-calculus` (non-ASCII)",
            invalid_room.clone(),
            |ctx| create_room_named(ctx, "λ-calculus").await
        ),
        case!(
            room_name_other_case_of_existing,
            ROOMS,
            "`create_room` named `HEALTHY` while `healthy` exists",
            Outcome::Refused(ErrorCode::RoomExists),
            |ctx| create_room_named(ctx, "HEALTHY").await
        ),
        case!(
            topic_over_the_limit,
            ROOMS,
            "`create_room` with a 513-byte topic",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let u = ctx.user().await;
                let name = format!("{}-t", u.name);
                outcome(
                    u.client
                        .request(Request::CreateRoom { name, topic: "t".repeat(513), password: None })
                        .await,
                )
            }
        ),
        case!(
            room_password_over_the_limit,
            ROOMS,
            "`create_room` with a 257-byte password",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let u = ctx.user().await;
                let name = format!("{}-p", u.name);
                outcome(
                    u.client
                        .request(Request::CreateRoom {
                            name,
                            topic: String::new(),
                            password: Some("p".repeat(257)),
                        })
                        .await,
                )
            }
        ),
        case!(
            leave_the_lobby,
            ROOMS,
            "`leave_room` of `lobby`",
            Outcome::Refused(ErrorCode::Forbidden),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.request(Request::LeaveRoom { name: "lobby".into() }).await)
            }
        ),
        case!(
            too_many_rooms,
            ROOMS,
            "one `create_room` past max_rooms_per_user (4 here)",
            Outcome::Refused(ErrorCode::TooManyRooms),
            |ctx| {
                let u = ctx.user().await;
                for i in 0..10 {
                    let name = format!("{}-{i}", u.name);
                    match outcome(
                        u.client
                            .request(Request::CreateRoom { name, topic: String::new(), password: None })
                            .await,
                    ) {
                        Outcome::Served(_) => {}
                        other => return other,
                    }
                }
                Outcome::Unexpected("10 rooms and no limit".into())
            }
        ),
        case!(
            poll_with_1000_options,
            CLASS,
            "`create_poll` with 1,000 options",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, room) = room_admin(ctx).await;
                outcome(
                    u.client
                        .request(poll(&room, "which?".into(), (0..1000).map(|i| format!("o{i}")).collect()))
                        .await,
                )
            }
        ),
        case!(
            poll_question_900_kb,
            CLASS,
            "`create_poll` with a 900 KB question",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let (u, room) = room_admin(ctx).await;
                outcome(
                    u.client.request(poll(&room, "q".repeat(900 * 1024), vec!["a".into(), "b".into()])).await,
                )
            }
        ),
        case!(
            poll_closing_in_the_far_future,
            CLASS,
            "`create_poll` closing at u64::MAX ms",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, room) = room_admin(ctx).await;
                let req = Request::CreatePoll {
                    room,
                    question: "?".into(),
                    options: vec!["a".into(), "b".into()],
                    multiple: false,
                    anonymous: false,
                    closes_at: Some(u64::MAX),
                };
                outcome(u.client.request(req).await)
            }
        ),
        case!(
            vote_for_a_nonexistent_option,
            CLASS,
            "`vote` for option 99 of a 2-option poll",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.student().await;
                outcome(u.client.request(Request::Vote { poll: ctx.poll, choices: vec![99] }).await)
            }
        ),
        case!(
            vote_for_option_u32_max,
            CLASS,
            "`vote` for option 4,294,967,295",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.student().await;
                outcome(u.client.request(Request::Vote { poll: ctx.poll, choices: vec![u32::MAX] }).await)
            }
        ),
        case!(
            vote_on_a_nonexistent_poll,
            CLASS,
            "`vote` on poll id u64::MAX",
            Outcome::Refused(ErrorCode::NoSuchPoll),
            |ctx| {
                let u = ctx.student().await;
                outcome(u.client.request(Request::Vote { poll: u64::MAX, choices: vec![0] }).await)
            }
        ),
        case!(
            question_900_kb,
            CLASS,
            "`ask_question` of 900 KB",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let u = ctx.student().await;
                outcome(
                    u.client
                        .request(Request::AskQuestion {
                            room: HEALTHY.into(),
                            text: "q".repeat(900 * 1024),
                            anonymous: true,
                        })
                        .await,
                )
            }
        ),
        case!(
            mute_for_u64_max_seconds,
            CLASS,
            "`mute` by a room admin for u64::MAX seconds",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, room) = room_admin(ctx).await;
                let target = ctx.user().await;
                target.join(&room).await;
                outcome(
                    u.client
                        .request(Request::Mute {
                            scope: MuteScope::Room { name: room },
                            user: target.name.clone(),
                            secs: Some(u64::MAX),
                        })
                        .await,
                )
            }
        ),
        case!(
            slow_mode_of_a_billion_seconds,
            CLASS,
            "`set_room_settings` by a room admin with slow mode of 10^9 s",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, room) = room_admin(ctx).await;
                let settings =
                    RoomSettings { announce_only: false, slow_mode_secs: 1_000_000_000, qa: false };
                outcome(u.client.request(Request::SetRoomSettings { room, settings }).await)
            }
        ),
        case!(
            message_flood,
            FLOODS,
            "200 room messages pipelined as fast as the client can send",
            Outcome::Refused(ErrorCode::RateLimited),
            |ctx| {
                let (u, room) = room_admin(ctx).await;
                let sends: Vec<_> = (0..200)
                    .map(|i| {
                        let client = u.client.clone();
                        let room = room.clone();
                        tokio::spawn(async move {
                            client
                                .request(Request::SendRoom {
                                    room,
                                    text: format!("spam {i}"),
                                    reply_to: None,
                                })
                                .await
                        })
                    })
                    .collect();
                let mut limited = false;
                for s in sends {
                    match outcome(s.await.expect("task")) {
                        Outcome::Served(_) => {}
                        Outcome::Refused(ErrorCode::RateLimited) => limited = true,
                        other => return other,
                    }
                }
                if limited {
                    Outcome::Refused(ErrorCode::RateLimited)
                } else {
                    Outcome::Unexpected("200 messages, none limited".into())
                }
            }
        ),
    ]
}

#[tokio::test]
async fn content_and_floods() {
    run_group(|c| c.max_rooms_per_user = 4, content_cases()).await;
}

// ---- group: files --------------------------------------------------------------------------

const FILE_NAMES: &str = "hostile file names";
const FILES: &str = "files and bulk connections";

/// Uploads an empty file named `sent` to the uploader itself; the name the server kept.
async fn stored_name(ctx: &Ctx, sent: &str) -> Outcome {
    let u = ctx.user().await;
    let ticket = match u.client.upload_file(Conv::direct(&u.name), sent, 0, None).await {
        Ok(t) => t,
        Err(e) => return outcome(Err(e)),
    };
    let mut up = Uploader::attach(u.client.bulk_config(), &ticket.token).await.expect("attach");
    up.send(Vec::new()).await.expect("empty chunk");
    match up.finish(&Sha256::digest(b"")).await {
        Ok(info) => name_outcome(&info.name),
        Err(e) => outcome(Err(e)),
    }
}

/// A fresh user's upload of `size` bytes to themselves, attached on a hand-driven bulk
/// connection.
async fn attached_upload(ctx: &Ctx, size: u64) -> Raw {
    let u = ctx.user().await;
    let ticket = u.client.upload_file(Conv::direct(&u.name), "f", size, None).await.expect("announce");
    let mut raw = ctx.raw().await;
    match raw.request(Request::AttachUpload { token: ticket.token }).await {
        Ok(Response::Attached { offset: 0 }) => raw,
        other => panic!("attach: {other:?}"),
    }
}

async fn bulk_refused(raw: &mut Raw, req: Request) -> Outcome {
    let code = match raw.request(req).await {
        Ok(resp) => return Outcome::Unexpected(format!("served: {resp:?}")),
        Err(code) => code,
    };
    raw.told = false;
    match raw.closed().await {
        Outcome::Closed(_) => Outcome::RefusedThenClosed(code),
        other => other,
    }
}

fn file_cases() -> Vec<Case> {
    vec![
        case!(
            file_name_path_traversal,
            FILE_NAMES,
            "`upload_file` named `../../etc/passwd`",
            name_outcome("passwd"),
            |ctx| stored_name(ctx, "../../etc/passwd").await
        ),
        case!(
            file_name_windows_path,
            FILE_NAMES,
            "`upload_file` named `C:\\Windows\\system32\\cmd.exe`",
            name_outcome("cmd.exe"),
            |ctx| stored_name(ctx, "C:\\Windows\\system32\\cmd.exe").await
        ),
        case!(
            file_name_nul,
            FILE_NAMES,
            "`upload_file` named `report\\0.pdf` (NUL)",
            name_outcome("report.pdf"),
            |ctx| stored_name(ctx, "report\0.pdf").await
        ),
        case!(
            file_name_control_chars,
            FILE_NAMES,
            "`upload_file` named `a\\nb\\rc\\u{1b}[31m.txt` (newline, CR, an ANSI escape)",
            name_outcome("abc[31m.txt"),
            |ctx| stored_name(ctx, "a\nb\rc\u{1b}[31m.txt").await
        ),
        case!(
            file_name_bidi_override,
            FILE_NAMES,
            "`upload_file` named `invoice\\u{202E}fdp.exe` (shows as `invoiceexe.pdf`)",
            name_outcome("invoice\u{202E}fdp.exe"),
            |ctx| stored_name(ctx, "invoice\u{202E}fdp.exe").await
        ),
        case!(
            file_name_10_kb,
            FILE_NAMES,
            "`upload_file` with a 10 KB name",
            name_outcome(&"n".repeat(255)),
            |ctx| stored_name(ctx, &"n".repeat(10_000)).await
        ),
        case!(file_name_dots_only, FILE_NAMES, "`upload_file` named `..`", name_outcome("file"), |ctx| {
            stored_name(ctx, "..").await
        }),
        case!(
            file_name_device,
            FILE_NAMES,
            "`upload_file` named `CON.txt` (a Windows device)",
            name_outcome("_CON.txt"),
            |ctx| stored_name(ctx, "CON.txt").await
        ),
        case!(
            file_size_u64_max,
            FILES,
            "`upload_file` announcing u64::MAX bytes",
            Outcome::Refused(ErrorCode::FileTooLarge),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .upload_file(Conv::direct(&u.name), "big", u64::MAX, None)
                        .await
                        .map(|_| Response::Done),
                )
            }
        ),
        case!(
            file_meta_over_the_limit,
            FILES,
            "`upload_file` with 5,000 bytes of `meta`",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let u = ctx.user().await;
                outcome(
                    u.client
                        .upload_file(Conv::direct("alice"), "m", 1, Some(vec![0; 5000]))
                        .await
                        .map(|_| Response::Done),
                )
            }
        ),
        case!(
            file_to_announcements,
            FILES,
            "`upload_file` to `announcements`",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.upload_file(Conv::Announcements, "a", 1, None).await.map(|_| Response::Done))
            }
        ),
        case!(
            file_to_a_room_not_joined,
            FILES,
            "`upload_file` into the healthy pair's room by a non-member",
            Outcome::Refused(ErrorCode::NotMember),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.upload_file(Conv::room(HEALTHY), "a", 1, None).await.map(|_| Response::Done))
            }
        ),
        case!(
            download_a_nonexistent_file,
            FILES,
            "`download_file` of id u64::MAX",
            Outcome::Refused(ErrorCode::NoSuchFile),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.request(Request::DownloadFile { file: u64::MAX }).await)
            }
        ),
        case!(
            finish_upload_on_a_chat_connection,
            FILES,
            "`finish_upload` on a logged-in chat connection",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                outcome(u.client.request(Request::FinishUpload { sha256: vec![0; 32] }).await)
            }
        ),
        case!(
            attach_upload_bad_token,
            FILES,
            "a bulk connection's `attach_upload` with a made-up token",
            Outcome::RefusedThenClosed(ErrorCode::NoSuchTransfer),
            |ctx| {
                let mut raw = ctx.raw().await;
                bulk_refused(&mut raw, Request::AttachUpload { token: vec![7; 32] }).await
            }
        ),
        case!(
            attach_upload_short_token,
            FILES,
            "a bulk connection's `attach_upload` with a 3-byte token",
            Outcome::RefusedThenClosed(ErrorCode::NoSuchTransfer),
            |ctx| {
                let mut raw = ctx.raw().await;
                bulk_refused(&mut raw, Request::AttachUpload { token: vec![7; 3] }).await
            }
        ),
        case!(
            attach_download_bad_token,
            FILES,
            "a bulk connection's `attach_download` with a made-up token",
            Outcome::RefusedThenClosed(ErrorCode::NoSuchTransfer),
            |ctx| {
                let mut raw = ctx.raw().await;
                bulk_refused(&mut raw, Request::AttachDownload { token: vec![7; 32], offset: 0 }).await
            }
        ),
        case!(
            chunks_beyond_the_announced_size,
            FILES,
            "10 bytes of chunks on an upload announced as 4 bytes",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = attached_upload(ctx, 4).await;
                let f = raw.seal(&ClientMsg::Chunk { data: vec![1; 10] }).await;
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            chunk_over_the_chunk_limit,
            FILES,
            "a 600 KB chunk (over MAX_CHUNK_LEN) on an attached upload",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = attached_upload(ctx, 1 << 20).await;
                let f = raw.seal(&ClientMsg::Chunk { data: vec![1; 600 * 1024] }).await;
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            chat_request_on_a_bulk_connection,
            FILES,
            "a `send_room` on a bulk connection attached to an upload",
            Outcome::Closed(Word::Told),
            |ctx| {
                let mut raw = attached_upload(ctx, 4).await;
                let (_, msg) = raw.request_msg(Request::SendRoom {
                    room: "lobby".into(),
                    text: "sneaky".into(),
                    reply_to: None,
                });
                let f = raw.seal(&msg).await;
                raw.push(&f).await;
                raw.closed().await
            }
        ),
        case!(
            finish_before_all_bytes,
            FILES,
            "`finish_upload` after 2 of 4 announced bytes",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let mut raw = attached_upload(ctx, 4).await;
                let f = raw.seal(&ClientMsg::Chunk { data: vec![1; 2] }).await;
                raw.push(&f).await;
                raw.outcome(Request::FinishUpload { sha256: Sha256::digest([1u8; 2]).to_vec() }).await
            }
        ),
    ]
}

#[tokio::test]
async fn files_and_bulk_connections() {
    run_group(|_| {}, file_cases()).await;
}

// ---- the document --------------------------------------------------------------------------

// ---- group: replies, edits, reactions, typing, search ---------------------------------------

const RICH: &str = "replies, edits, reactions, search";

/// A fresh user's own message in `lobby`, and its id.
async fn own_message(ctx: &Ctx) -> (TestUser, u64) {
    let u = ctx.user().await;
    let id = u.say("lobby", "my own words").await;
    (u, id)
}

/// A search by a fresh user.
async fn search_for(ctx: &Ctx, query: String) -> Outcome {
    let u = ctx.user().await;
    outcome(u.client.request(Request::SearchMessages { query, room: None, offset: 0, limit: 10 }).await)
}

/// Whether the connection still answers after `u` sent what it sent.
async fn still_answers(u: &TestUser) -> Outcome {
    match u.client.request(Request::Ping).await {
        Ok(Response::Pong) => Outcome::Ignored,
        other => Outcome::Unexpected(format!("{other:?}")),
    }
}

fn rich_cases() -> Vec<Case> {
    let searched = Outcome::Served("Found".into());
    vec![
        case!(
            edit_someone_elses_message,
            RICH,
            "`edit` of another user's room message",
            Outcome::Refused(ErrorCode::NotYourMessage),
            |ctx| {
                let (_, id) = own_message(ctx).await;
                let u = ctx.user().await;
                let body = classchat_wire::Body::Text { text: "not mine".into() };
                outcome(u.client.request(Request::Edit { id, body }).await)
            }
        ),
        case!(
            delete_someone_elses_message,
            RICH,
            "`delete` of another user's room message by a student",
            Outcome::Refused(ErrorCode::NotYourMessage),
            |ctx| {
                let (_, id) = own_message(ctx).await;
                let u = ctx.user().await;
                outcome(u.client.request(Request::Delete { id, proof: None }).await)
            }
        ),
        case!(
            edit_after_delete,
            RICH,
            "`edit` of your own message after deleting it",
            Outcome::Refused(ErrorCode::MessageDeleted),
            |ctx| {
                let (u, id) = own_message(ctx).await;
                u.ok(Request::Delete { id, proof: None }).await;
                let body = classchat_wire::Body::Text { text: "back".into() };
                outcome(u.client.request(Request::Edit { id, body }).await)
            }
        ),
        case!(
            edit_of_a_made_up_message,
            RICH,
            "`edit` of message id 2^64 - 1",
            Outcome::Refused(ErrorCode::NoSuchMessage),
            |ctx| {
                let u = ctx.user().await;
                let body = classchat_wire::Body::Text { text: "x".into() };
                outcome(u.client.request(Request::Edit { id: u64::MAX, body }).await)
            }
        ),
        case!(
            edit_over_the_limit,
            RICH,
            "`edit` of your own message to 900 KB of text",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| {
                let (u, id) = own_message(ctx).await;
                let body = classchat_wire::Body::Text { text: "x".repeat(900 * 1024) };
                outcome(u.client.request(Request::Edit { id, body }).await)
            }
        ),
        case!(
            reply_to_another_rooms_message,
            RICH,
            "`send_room` in one room with `reply_to` a message of another",
            Outcome::Refused(ErrorCode::NoSuchMessage),
            |ctx| {
                let (_, id) = own_message(ctx).await;
                let u = ctx.student().await;
                let req = Request::SendRoom { room: HEALTHY.into(), text: "re".into(), reply_to: Some(id) };
                outcome(u.client.request(req).await)
            }
        ),
        case!(
            reaction_of_33_bytes,
            RICH,
            "`react` with a 33-byte emoji",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, id) = own_message(ctx).await;
                outcome(u.client.request(Request::React { id, emoji: "x".repeat(33), on: true }).await)
            }
        ),
        case!(
            reaction_with_a_control_character,
            RICH,
            "`react` with an emoji holding a control character (ESC)",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, id) = own_message(ctx).await;
                outcome(u.client.request(Request::React { id, emoji: "\u{1b}[2J".into(), on: true }).await)
            }
        ),
        case!(
            one_reaction_too_many,
            RICH,
            "the 21st different emoji on one message (MAX_REACTIONS + 1)",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let (u, id) = own_message(ctx).await;
                for n in 0..classchat_wire::MAX_REACTIONS {
                    u.ok(Request::React { id, emoji: format!("e{n}"), on: true }).await;
                }
                outcome(u.client.request(Request::React { id, emoji: "more".into(), on: true }).await)
            }
        ),
        case!(
            reaction_flood,
            FLOODS,
            "200 reactions pipelined as fast as the client can send",
            Outcome::Refused(ErrorCode::RateLimited),
            |ctx| {
                let (u, id) = own_message(ctx).await;
                let sends: Vec<_> = (0..200)
                    .map(|i| {
                        let client = u.client.clone();
                        tokio::spawn(async move {
                            client.request(Request::React { id, emoji: "👍".into(), on: i % 2 == 0 }).await
                        })
                    })
                    .collect();
                let mut limited = false;
                for s in sends {
                    match outcome(s.await.expect("task")) {
                        Outcome::Served(_) => {}
                        Outcome::Refused(ErrorCode::RateLimited) => limited = true,
                        other => return other,
                    }
                }
                if limited {
                    Outcome::Refused(ErrorCode::RateLimited)
                } else {
                    Outcome::Unexpected("200 reactions, none limited".into())
                }
            }
        ),
        case!(
            typing_flood,
            FLOODS,
            "1,000 `typing` in the lobby as fast as the client can send",
            Outcome::Ignored,
            |ctx| {
                let u = ctx.user().await;
                for _ in 0..1000 {
                    if u.client.typing(Conv::room("lobby")).await.is_err() {
                        return Outcome::Unexpected("the connection closed".into());
                    }
                }
                still_answers(&u).await
            }
        ),
        case!(
            typing_in_a_room_not_joined,
            RICH,
            "`typing` in a room the user is not in",
            Outcome::Ignored,
            |ctx| {
                let u = ctx.user().await;
                if u.client.typing(Conv::room(HEALTHY)).await.is_err() {
                    return Outcome::Unexpected("the connection closed".into());
                }
                still_answers(&u).await
            }
        ),
        case!(search_for_a_quote, RICH, "`search_messages` for `\"`", searched.clone(), |ctx| {
            search_for(ctx, "\"".into()).await
        }),
        case!(search_for_a_star, RICH, "`search_messages` for `*`", searched.clone(), |ctx| {
            search_for(ctx, "*".into()).await
        }),
        case!(search_for_an_operator, RICH, "`search_messages` for `a AND`", searched.clone(), |ctx| {
            search_for(ctx, "a AND".into()).await
        }),
        case!(search_for_parentheses, RICH, "`search_messages` for `(((`", searched.clone(), |ctx| {
            search_for(ctx, "(((".into()).await
        }),
        case!(
            search_for_an_invalid_regex,
            RICH,
            "`search_messages` for `[a-z]+(\\d{2,` (an invalid regular expression)",
            searched.clone(),
            |ctx| search_for(ctx, "[a-z]+(\\d{2,".into()).await
        ),
        case!(
            search_over_the_limit,
            RICH,
            "`search_messages` for 257 bytes (MAX_SEARCH_QUERY_LEN + 1)",
            Outcome::Refused(ErrorCode::TooLong),
            |ctx| search_for(ctx, "a".repeat(257)).await
        ),
        case!(
            empty_search,
            RICH,
            "`search_messages` for spaces only",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| search_for(ctx, "   ".into()).await
        ),
        case!(
            search_too_deep,
            RICH,
            "`search_messages` with offset 10^9",
            Outcome::Refused(ErrorCode::BadRequest),
            |ctx| {
                let u = ctx.user().await;
                let req = Request::SearchMessages {
                    query: "x".into(),
                    room: None,
                    offset: 1_000_000_000,
                    limit: 10,
                };
                outcome(u.client.request(req).await)
            }
        ),
        case!(
            control_and_bidi_text,
            RICH,
            "a room message with bidi overrides, ESC sequences, BEL and NUL",
            Outcome::Served("stored and returned unchanged".into()),
            |ctx| {
                let u = ctx.user().await;
                let text = "grade\u{202E}txt.exe\u{202C}\u{1b}[31m\u{7}\u{0}\u{200F}";
                let id = u.say("lobby", text).await;
                match u
                    .client
                    .request(Request::History { conv: Conv::room("lobby"), before: None, limit: 10 })
                    .await
                {
                    Ok(Response::History { messages, .. })
                        if messages.iter().any(|m| {
                            m.id == id && m.body == classchat_wire::Body::Text { text: text.into() }
                        }) =>
                    {
                        Outcome::Served("stored and returned unchanged".into())
                    }
                    other => Outcome::Unexpected(format!("{other:?}")),
                }
            }
        ),
    ]
}

#[tokio::test]
async fn replies_edits_reactions_and_search() {
    run_group(|_| {}, rich_cases()).await;
}

/// Every group's cases, in the order of the table.
fn all_cases() -> Vec<Case> {
    [
        framing_cases(),
        decoding_cases(),
        timeout_cases(),
        account_cases(),
        permission_cases(),
        content_cases(),
        file_cases(),
        rich_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// RELIABILITY.md's table is exactly the cases here: same names, inputs and outcomes.
#[test]
fn reliability_md_lists_every_case() {
    let cases = all_cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "two cases share a name");
    let rows: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!("| {} | {} | {} | {} | `{}` |", i + 1, c.category, c.input, c.expect.describe(), c.name)
        })
        .collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../RELIABILITY.md"))
        .expect("RELIABILITY.md at the repo root");
    let missing: Vec<&String> = rows.iter().filter(|r| !doc.lines().any(|l| l == r.as_str())).collect();
    assert!(missing.is_empty(), "RELIABILITY.md is out of date; its table should read:\n{}", rows.join("\n"));
    let table_rows = doc.lines().filter(|l| l.starts_with("| ") && l.ends_with("` |")).count();
    assert_eq!(table_rows, rows.len(), "RELIABILITY.md lists cases that are not in the catalogue");
}
