//! Several server nodes on one PostgreSQL store, joined by a NATS bus: each test starts
//! its own throwaway `postgres` and `nats-server` (`classchat_server::services`) on free
//! loopback ports, runs real servers on them and talks to them through the real client.
//! What one node's users do must reach the users of the other, as on one server.

mod common;

use std::time::Duration;

use classchat_server::services::nats::Nats;
use classchat_server::services::postgres::Postgres;
use classchat_wire::{Body, Conv, ErrorCode, Event, Request, Response};
use common::{TestServer, TestUser, eventually, history, text_of};

/// A throwaway PostgreSQL and NATS.
struct Backing {
    pg: Postgres,
    nats: Nats,
}

impl Backing {
    async fn start() -> Self {
        let pg = tokio::task::spawn_blocking(Postgres::start)
            .await
            .expect("join")
            .expect("a throwaway PostgreSQL (apt-get install postgresql)");
        let nats = Nats::start().expect("a throwaway nats-server (apt-get install nats-server)");
        Self { pg, nats }
    }

    /// A node of the cluster, in this process, with a data dir of its own (file content
    /// too: the nodes share it through PostgreSQL).
    async fn node(&self, name: &str) -> TestServer {
        let (store, bus, name) = (self.pg.url(), self.nats.url(), name.to_owned());
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), move |c| {
            c.store = Some(store);
            c.bus = bus;
            c.node_name = name;
            c.discovery = false;
            c.messages_per_second = 1000;
            c.message_burst = 1000;
            c.admins = vec!["prof".into()];
        })
        .await
    }
}

/// Waits until each node lists `n` nodes in `admin nodes`.
async fn joined(nodes: &[&TestServer]) {
    let n = nodes.len();
    for node in nodes {
        let dir = node.data_dir().to_owned();
        eventually(Duration::from_secs(10), "every node in `admin nodes`", || {
            let dir = dir.clone();
            async move {
                classchat_server::admin::send(&dir, "nodes")
                    .await
                    .is_ok_and(|out| out.starts_with(&format!("{n} nodes")))
            }
        })
        .await;
    }
}

/// Logs `name` in on `node`, which may hear of the account a few milliseconds after the
/// node that made it answered.
async fn login_soon(node: &TestServer, name: &str, device: &str) -> TestUser {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (client, events) = node.connect().await;
        match client.login(name, &common::auth(name), device).await {
            Ok(welcome) => return TestUser { name: name.to_owned(), client, events, welcome },
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{name} cannot log in: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Joins `room` through a node that may hear of the room a few milliseconds after the
/// node that made it answered.
async fn join_soon(user: &TestUser, room: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match user.client.request(Request::JoinRoom { name: room.into(), password: None }).await {
            Ok(_) => return,
            Err(e) if e.code() == Some(ErrorCode::NoSuchRoom) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{} cannot join {room}: {e}", user.name),
        }
    }
}

fn is_text(e: &Event, text: &str) -> bool {
    text_of(e) == Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_works_across_two_nodes() {
    let backing = Backing::start().await;
    let a = backing.node("node-a").await;
    let b = backing.node("node-b").await;
    joined(&[&a, &b]).await;

    // Accounts: made on one node, usable on the other (password login and resume).
    let mut alice = a.user("alice").await;
    alice.until_caught_up().await;
    let bob_first = b.user("bob").await;
    drop(bob_first);
    let mut bob = login_soon(&a, "bob", "dev-2").await;
    bob.until_caught_up().await;
    drop(bob);
    let mut bob = b.login("bob", "dev-1").await;
    bob.until_caught_up().await;
    let carol = a.user("carol").await;
    drop(carol); // offline from now on

    // Rooms and membership: created on a, joined on b, a password room too.
    alice.create_room("lab").await;
    join_soon(&bob, "lab").await;
    alice.expect_event("bob's join", |e| matches!(e, Event::Message { message } if matches!(&message.body, Body::System { .. }) && message.from == "bob")).await;
    alice
        .ok(Request::CreateRoom { name: "staff".into(), topic: "t".into(), password: Some("sesame".into()) })
        .await;
    // What one node commits reaches the others within milliseconds: until then b does
    // not know the room.
    eventually(Duration::from_secs(5), "b knows the new room", || {
        let c = &bob.client;
        async move {
            matches!(
                c.request(Request::JoinRoom { name: "staff".into(), password: Some("wrong".into()) }).await,
                Err(e) if e.code() == Some(ErrorCode::WrongPassword)
            )
        }
    })
    .await;
    bob.ok(Request::JoinRoom { name: "staff".into(), password: Some("sesame".into()) }).await;
    let Response::Rooms { rooms } = bob.ok(Request::ListRooms).await else { panic!("expected Rooms") };
    assert!(rooms.iter().any(|r| r.name == "lab") && rooms.iter().any(|r| r.name == "staff"), "{rooms:?}");

    // Room messages both ways, and one order for everyone: a burst from each side at
    // once, then both nodes' histories are the same list.
    alice.say("lab", "hello from a").await;
    bob.expect_event("alice's message", |e| is_text(e, "hello from a")).await;
    bob.say("lab", "hello from b").await;
    alice.expect_event("bob's message", |e| is_text(e, "hello from b")).await;
    let (x, y) = tokio::join!(
        async {
            for i in 0..30 {
                alice.say("lab", &format!("a{i}")).await;
            }
        },
        async {
            for i in 0..30 {
                bob.say("lab", &format!("b{i}")).await;
            }
        }
    );
    let _ = (x, y);
    let seen_by_alice = history(&alice, Conv::room("lab")).await;
    let seen_by_bob = history(&bob, Conv::room("lab")).await;
    assert_eq!(seen_by_alice, seen_by_bob, "one order on both nodes");
    let ids: Vec<u64> = seen_by_alice.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // Presence and member lists count the other node's sessions.
    let Response::Members { members, .. } = alice.ok(Request::RoomMembers { name: "lab".into() }).await
    else {
        panic!("expected Members");
    };
    assert!(members.iter().any(|m| m.name == "bob" && m.online), "{members:?}");

    // Direct messages (opaque end-to-end envelopes to the server) cross nodes.
    alice
        .ok(Request::SendDirect { to: "bob".into(), body: b"\x00sealed for bob".to_vec(), reply_to: None })
        .await;
    bob.expect_event(
        "alice's direct message",
        |e| matches!(e, Event::Message { message } if message.conv == Conv::Direct { user: "alice".into() }),
    )
    .await;

    // Edits, reactions and typing.
    let id = alice.say("lab", "tpyo").await;
    bob.expect_event("the typo", |e| is_text(e, "tpyo")).await;
    alice.ok(Request::Edit { id, body: Body::Text { text: "typo".into() } }).await;
    bob.expect_event("the edit", |e| matches!(e, Event::Edited { id: i, .. } if *i == id)).await;
    bob.ok(Request::React { id, emoji: "👍".into(), on: true }).await;
    alice.expect_event("the reaction", |e| matches!(e, Event::Reactions { id: i, .. } if *i == id)).await;
    alice.client.typing(Conv::room("lab")).await.expect("typing");
    bob.expect_event("alice typing", |e| matches!(e, Event::Typing { user, .. } if user == "alice")).await;

    // Search on b finds what was said on a.
    let Response::Found { hits, .. } =
        bob.ok(Request::SearchMessages { query: "typo".into(), room: None, offset: 0, limit: 20 }).await
    else {
        panic!("expected Found");
    };
    assert!(hits.iter().any(|h| h.message.id == id), "{hits:?}");

    // Announcements from an instructor on a reach b.
    let prof = a.user("prof").await;
    prof.ok(Request::Broadcast { text: "exam on friday".into() }).await;
    bob.expect_event("the announcement", |e| is_text(e, "exam on friday")).await;

    // Instructor tools: a question asked on b reaches a, an upvote from a reaches b; a
    // mute set on a holds on b; exam mode from a reaches b.
    prof.join("lab").await;
    let qa = classchat_wire::RoomSettings { qa: true, ..Default::default() };
    alice.ok(Request::SetRoomSettings { room: "lab".into(), settings: qa }).await;
    let mut asked = None;
    for _ in 0..100 {
        // Node b hears of the room's new settings a moment later.
        match bob
            .client
            .request(Request::AskQuestion { room: "lab".into(), text: "why?".into(), anonymous: false })
            .await
        {
            Ok(Response::Question { question }) => {
                asked = Some(question);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let question = asked.expect("a question asked on b once the room is Q&A there");
    alice
        .expect_event("the question", |e| matches!(e, Event::Question { question: q } if q.id == question.id))
        .await;
    alice.ok(Request::Upvote { question: question.id, up: true }).await;
    bob.expect_event(
        "the upvote",
        |e| matches!(e, Event::Question { question: q } if q.id == question.id && q.votes == 1),
    )
    .await;
    prof.ok(Request::Mute {
        scope: classchat_wire::MuteScope::Room { name: "lab".into() },
        user: "bob".into(),
        secs: None,
    })
    .await;
    eventually(Duration::from_secs(5), "the mute holds on b", || {
        let c = &bob.client;
        async move {
            matches!(
                c.request(Request::SendRoom { room: "lab".into(), text: "hmm".into(), reply_to: None }).await,
                Err(e) if e.code() == Some(ErrorCode::Muted)
            )
        }
    })
    .await;
    prof.ok(Request::Unmute {
        scope: classchat_wire::MuteScope::Room { name: "lab".into() },
        user: "bob".into(),
    })
    .await;
    prof.ok(Request::SetExamMode { on: true, questions_room: None }).await;
    bob.expect_event("exam mode", |e| matches!(e, Event::ExamMode { exam: Some(_) })).await;
    prof.ok(Request::SetExamMode { on: false, questions_room: None }).await;
    bob.expect_event("exam mode off", |e| matches!(e, Event::ExamMode { exam: None })).await;
    eventually(Duration::from_secs(5), "the unmute holds on b", || {
        let c = &bob.client;
        async move {
            c.request(Request::SendRoom { room: "lab".into(), text: "thanks".into(), reply_to: None })
                .await
                .is_ok()
        }
    })
    .await;

    // A file uploaded through a downloads through b, byte for byte (b fetches the content
    // from PostgreSQL into its own data dir).
    let tmp = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let path = tmp.path().join("slides.pdf");
    std::fs::write(&path, &bytes).expect("write");
    let info = alice.client.send_file(Conv::room("lab"), &path, |_| {}).await.expect("upload through a");
    bob.expect_event(
        "the file message",
        |e| matches!(e, Event::Message { message } if message.body == Body::File { file: info.clone() }),
    )
    .await;
    let ticket = bob.client.download_file(info.id).await.expect("download allowed on b");
    let dest = tmp.path().join("got.pdf");
    bob.client.download_to(&ticket, &dest, |_| {}).await.expect("download through b");
    assert_eq!(std::fs::read(&dest).expect("downloaded"), bytes);

    // A direct file offered to bob on b while alice is still sending it through a: bob's
    // download starts before any byte is there and ends with all of them.
    let ticket = alice
        .client
        .upload_file(Conv::Direct { user: "bob".into() }, "notes.pdf", bytes.len() as u64, None)
        .await
        .expect("announce a direct file");
    let offer = bob.expect_event("the offer", |e| matches!(e, Event::FileOffer { .. })).await;
    let Event::FileOffer { file } = offer else { panic!("expected FileOffer") };
    let early = tmp.path().join("early.pdf");
    let download = async {
        let t = bob.client.download_file(file.id).await.expect("accept on b");
        bob.client.download_to(&t, &early, |_| {}).await.expect("download through b, following the upload")
    };
    let upload = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.client.upload_from(&ticket, &path, |_| {}).await.expect("upload through a")
    };
    let (got, sent) = tokio::join!(download, upload);
    assert_eq!(got.sha256, sent.sha256);
    assert_eq!(std::fs::read(&early).expect("downloaded"), bytes);

    // Offline delivery: carol (registered on a, offline) logs in on b and is caught up
    // with what was said meanwhile, and sees it in history.
    let mut carol = b.login("carol", "dev-1").await;
    let caught: Vec<Event> = carol.until_caught_up().await;
    assert!(caught.iter().any(|e| is_text(e, "exam on friday")), "{caught:?}");
    carol.join("lab").await;
    let h = history(&carol, Conv::room("lab")).await;
    assert!(h.iter().any(|(_, t)| t == "hello from a") && h.iter().any(|(_, t)| t == "b29"), "{h:?}");

    // A kick on a takes bob out of the room on b at once; a ban keeps him out.
    alice.ok(Request::Kick { room: "lab".into(), user: "bob".into() }).await;
    bob.expect_event("the kick", |e| {
        matches!(e, Event::Message { message }
            if matches!(&message.body, Body::System { event: classchat_wire::SystemEvent::Kicked { user } } if user == "bob"))
    })
    .await;
    assert_eq!(
        bob.err(Request::SendRoom { room: "lab".into(), text: "still here?".into(), reply_to: None }).await,
        ErrorCode::NotMember
    );
    alice.ok(Request::Ban { room: "lab".into(), user: "bob".into() }).await;
    eventually(Duration::from_secs(5), "the ban reaches b", || {
        let c = &bob.client;
        async move {
            matches!(
                c.request(Request::JoinRoom { name: "lab".into(), password: None }).await,
                Err(e) if e.code() == Some(ErrorCode::Banned)
            )
        }
    })
    .await;

    // Admin commands: `users` on a sees bob online on the other node; `kick` from a's
    // console ends his session on b.
    let users = classchat_server::admin::send(a.data_dir(), "users").await.expect("admin users");
    assert!(users.contains("on other nodes"), "{users}");
    let out = classchat_server::admin::send(a.data_dir(), "nodes").await.expect("admin nodes");
    assert!(out.starts_with("2 nodes") && out.contains("node-a") && out.contains("node-b"), "{out}");
    let out = classchat_server::admin::send(a.data_dir(), "kick bob").await.expect("admin kick");
    assert_eq!(out, "kicked bob");
    bob.expect_event("the disconnect", |e| matches!(e, Event::Disconnect { .. })).await;
    alice
        .expect_event(
            "bob offline",
            |e| matches!(e, Event::Presence { user, online: false } if user == "bob"),
        )
        .await;

    a.stop().await;
    b.stop().await;
}

/// A node as a child process (`classchat-server`) on `backing`, with its stderr (the
/// log) collected for the test to read.
struct LoggedNode {
    server: common::ChildServer,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _data: tempfile::TempDir,
}

impl LoggedNode {
    async fn start(backing: &Backing, name: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let extra = format!(
            "store = \"{}\"\nbus = \"{}\"\nnode_name = \"{name}\"\n",
            backing.pg.url(),
            backing.nats.url()
        );
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

    async fn says(&self, what: &str) {
        let log = std::sync::Arc::clone(&self.log);
        eventually(Duration::from_secs(20), what, || {
            let said = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(what);
            async move { said }
        })
        .await;
    }

    /// Logs `name` in (registering it first if `register`), retrying for a few seconds
    /// while the node may not know the account yet or is refusing.
    async fn user(&self, name: &str, register: bool) -> TestUser {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (client, events) = self.server.connect().await;
            let auth = common::auth(name);
            let r = if register {
                client.register(name, &auth, "dev-1").await
            } else {
                client.login(name, &auth, "dev-1").await
            };
            match r {
                Ok(welcome) => return TestUser { name: name.to_owned(), client, events, welcome },
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "{name} cannot log in: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Sends `text` until it is acknowledged; the errors seen before, which must all say
/// `unavailable`.
async fn send_until_acked(user: &TestUser, room: &str, text: &str) -> (u64, usize) {
    let mut refused = 0;
    for _ in 0..200 {
        match user
            .client
            .request(Request::SendRoom { room: room.into(), text: text.into(), reply_to: None })
            .await
        {
            Ok(Response::Sent { id, .. }) => return (id, refused),
            Ok(other) => panic!("expected Sent, got {other:?}"),
            Err(e) if e.code() == Some(ErrorCode::Unavailable) => refused += 1,
            Err(e) => panic!("{text}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{text} was never acknowledged");
}

/// Tries `text` once: whether it was acknowledged; a refusal must say `unavailable`
/// and why.
async fn try_send(user: &TestUser, room: &str, text: &str, why: &str) -> Option<u64> {
    match user
        .client
        .request(Request::SendRoom { room: room.into(), text: text.into(), reply_to: None })
        .await
    {
        Ok(Response::Sent { id, .. }) => Some(id),
        Ok(other) => panic!("expected Sent, got {other:?}"),
        Err(e) => {
            assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
            assert!(e.to_string().contains(why), "the error says why ({why}): {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_of_nats_and_postgres_refuse_writes_and_recover() {
    let mut backing = Backing::start().await;
    let a = LoggedNode::start(&backing, "node-a").await;
    let b = LoggedNode::start(&backing, "node-b").await;
    let alice = a.user("alice", true).await;
    alice.create_room("lab").await;
    let bob = b.user("bob", true).await;
    join_soon(&bob, "lab").await;
    let mut acked = vec![alice.say("lab", "before").await];
    let mut refused = Vec::new();

    // NATS goes away: both nodes say so and refuse what the other would have to hear of.
    backing.nats.stop();
    a.says("lost the connection to NATS").await;
    b.says("lost the connection to NATS").await;
    for (i, user) in [&alice, &bob].into_iter().enumerate() {
        let text = format!("no bus {i}");
        match try_send(user, "lab", &text, "NATS").await {
            Some(id) => acked.push(id),
            None => refused.push(text),
        }
    }
    assert!(!refused.is_empty(), "writes were refused while NATS was down");
    backing.nats.start_again().expect("nats-server again");
    a.says("NATS is back").await;
    b.says("NATS is back").await;
    a.says("resynchronised: connections closed").await;
    b.says("resynchronised: connections closed").await;
    // The nodes resynchronised and closed their connections: apps come back.
    drop((alice, bob));
    let alice = a.user("alice", false).await;
    let bob = b.user("bob", false).await;
    acked.push(send_until_acked(&alice, "lab", "bus back a").await.0);
    acked.push(send_until_acked(&bob, "lab", "bus back b").await.0);

    // PostgreSQL goes away: writes fail with unavailable, nothing half-saved.
    backing.pg = tokio::task::spawn_blocking(move || {
        let mut pg = backing.pg;
        pg.stop().expect("stop PostgreSQL");
        pg
    })
    .await
    .expect("join");
    for (i, user) in [&alice, &bob].into_iter().enumerate() {
        let text = format!("no database {i}");
        match try_send(user, "lab", &text, "database").await {
            Some(id) => acked.push(id),
            None => refused.push(text),
        }
    }
    a.says("PostgreSQL is unreachable").await;
    backing.pg = tokio::task::spawn_blocking(move || {
        let mut pg = backing.pg;
        pg.start_again().expect("start PostgreSQL again");
        pg
    })
    .await
    .expect("join");
    acked.push(send_until_acked(&alice, "lab", "database back a").await.0);
    acked.push(send_until_acked(&bob, "lab", "database back b").await.0);
    a.says("PostgreSQL is back").await;

    // Every acknowledged message is there once, on both nodes; no refused one is.
    for user in [&alice, &bob] {
        let h = history(user, Conv::room("lab")).await;
        let ids: Vec<u64> = h.iter().map(|(id, _)| *id).collect();
        for id in &acked {
            assert_eq!(ids.iter().filter(|i| *i == id).count(), 1, "acknowledged {id} once: {h:?}");
        }
        for text in &refused {
            assert!(!h.iter().any(|(_, t)| t == text), "refused {text:?} not saved: {h:?}");
        }
    }
    a.server.kill9().await;
    b.server.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_load_loses_nothing_acknowledged() {
    let backing = Backing::start().await;
    let a = LoggedNode::start(&backing, "node-a").await;
    let b = LoggedNode::start(&backing, "node-b").await;
    const SENDERS: usize = 4;
    const MESSAGES: usize = 60;
    let first = a.user("s0", true).await;
    first.create_room("load").await;
    drop(first);
    let mut watcher = b.user("watcher", true).await;
    eventually(Duration::from_secs(5), "b knows #load", || {
        let c = &watcher.client;
        async move { c.request(Request::JoinRoom { name: "load".into(), password: None }).await.is_ok() }
    })
    .await;
    let a_addr = a.server.addr;
    let b_addr = b.server.addr;

    // Senders on node a send as fast as acknowledgements come; each remembers what was
    // acknowledged. Node a is killed mid-way; each sender moves to node b, resumes, and
    // goes on where it was.
    let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let name = format!("s{s}");
        let (mut killed, a_cfg, b_cfg) = (
            kill_rx.clone(),
            classchat_wire::ClientConfig::new(
                a_addr.to_string(),
                classchat_wire::TrustPolicy::Pinned(*common::server_key().fingerprint()),
            ),
            classchat_wire::ClientConfig::new(
                b_addr.to_string(),
                classchat_wire::TrustPolicy::Pinned(*common::server_key().fingerprint()),
            ),
        );
        tasks.spawn(async move {
            let auth = common::auth(&name);
            let (client, _events) = classchat_wire::Client::connect(a_cfg).await.expect("connect to a");
            let welcome = match client.register(&name, &auth, "dev-1").await {
                Ok(w) => w,
                Err(_) => client.login(&name, &auth, "dev-1").await.expect("login on a"),
            };
            let token = welcome.resume_token.clone();
            let mut client = client;
            // Node a may hear of the room a moment after it was made (s0 made it).
            for attempt in 0.. {
                match client.request(Request::JoinRoom { name: "load".into(), password: None }).await {
                    Ok(_) => break,
                    Err(e) if e.code() == Some(ErrorCode::AlreadyMember) => break,
                    Err(e) => assert!(attempt < 250, "{name} cannot join: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut acked = Vec::new();
            let mut moved = false;
            let mut i = 0;
            while i < MESSAGES {
                let text = format!("{name}-{i}");
                match client
                    .request(Request::SendRoom { room: "load".into(), text: text.clone(), reply_to: None })
                    .await
                {
                    Ok(Response::Sent { id, .. }) => {
                        acked.push((id, text));
                        i += 1;
                    }
                    Ok(other) => panic!("expected Sent, got {other:?}"),
                    Err(_) if !moved => {
                        // Node a is gone (or going): resume on node b with the token.
                        assert!(*killed.borrow_and_update(), "{name}: a send failed before the kill");
                        let (c, _ev) =
                            classchat_wire::Client::connect(b_cfg.clone()).await.expect("connect to b");
                        c.resume(&name, &token, "dev-1").await.expect("resume on b");
                        client = c;
                        moved = true;
                        // The message may or may not have been committed before the kill:
                        // send it again under a new text, so each text is one attempt.
                        i += 1;
                    }
                    Err(e) => panic!("{name} on b: {e}"),
                }
            }
            (acked, moved)
        });
    }
    // Kill node a once some messages are through.
    let mut seen = 0;
    while seen < SENDERS * 10 {
        let ev = tokio::time::timeout(Duration::from_secs(30), watcher.events.recv())
            .await
            .expect("messages flow")
            .expect("watcher connected");
        if matches!(&ev, Event::Message { message } if message.conv == Conv::room("load")) {
            seen += 1;
        }
    }
    let _ = kill_tx.send(true);
    a.server.kill9().await;
    let mut all_acked = Vec::new();
    while let Some(r) =
        tokio::time::timeout(Duration::from_secs(120), tasks.join_next()).await.expect("the senders finish")
    {
        let (acked, moved) = r.expect("sender");
        assert!(moved, "every sender moved to node b");
        all_acked.extend(acked);
    }
    // Everything acknowledged, by either node, is in the database once.
    let mut stored: Vec<(u64, String)> = Vec::new();
    let mut before = None;
    loop {
        let Response::History { messages, more, .. } =
            watcher.ok(Request::History { conv: Conv::room("load"), before, limit: 200 }).await
        else {
            panic!("expected History")
        };
        before = messages.last().map(|m| m.id);
        stored.extend(messages.into_iter().filter_map(|m| match m.body {
            Body::Text { text } => Some((m.id, text)),
            _ => None,
        }));
        if !more {
            break;
        }
    }
    for (id, text) in &all_acked {
        let copies = stored.iter().filter(|(_, t)| t == text).count();
        assert_eq!(copies, 1, "{text} (id {id}) is stored exactly once");
        assert!(stored.contains(&(*id, text.clone())), "{text} has the id it was acknowledged with");
    }
    assert!(all_acked.len() >= SENDERS * (MESSAGES - 1), "{} acknowledged", all_acked.len());
    b.server.kill9().await;
}
