//! Peer-to-peer search and fetch (issue 15, PROTOCOL.md section 17) against the real server
//! on loopback, with real clients and sharers, and the bad inputs of the issue.

mod common;

use std::time::Duration;

use classchat_wire::e2e::Identity;
use classchat_wire::peer::channel::{self, RecordOpener, RecordSealer};
use classchat_wire::peer::handshake::{AskerHandshake, SharerHandshake};
use classchat_wire::peer::{
    FetchOptions, FetchRequest, PeerChallenge, PeerError, PeerHello, PeerKey, PeerListener, PeerMsg,
    PeerRefusal, PeerTicket, Route, SearchQuery, SearchResults, SharedFile, SharerEvent, fetch, whohas,
};
use classchat_wire::{Client, Error, ErrorCode, Event, Request, Response};
use common::peers::{identity, make_file, member, publish, server_counts, share};
use common::{TestServer, TestUser};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Gathers a search's results until its `search_done`.
async fn search_all(user: &mut TestUser, room: &str, query: &str) -> SearchResults {
    let mut results = whohas(&user.client, room, SearchQuery::parse(query)).await.expect("whohas");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !results.done {
        let ev = tokio::time::timeout_at(deadline, user.events.recv())
            .await
            .expect("search_done in time")
            .expect("connection open");
        results.apply(&ev);
    }
    results
}

fn options(user: &TestUser, i: usize) -> FetchOptions {
    let mut o = FetchOptions::new(user.name.clone(), identity(i).clone());
    o.direct_timeout = Duration::from_secs(2);
    o
}

async fn ticket(user: &TestUser, room: &str, sharer: &str, sha256: &[u8]) -> PeerTicket {
    let req = Request::PeerFetch { room: room.into(), sharer: sharer.into(), sha256: sha256.to_vec() };
    match user.ok(req).await {
        Response::PeerTicket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

fn sha256_of(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

/// Runs the asker's handshake by hand on `stream` with `ticket`, signing as `me`; returns
/// the sharer's challenge (or what went wrong).
async fn hello(stream: &mut TcpStream, ticket: &[u8], asker: &str, sharer: &str) -> PeerChallenge {
    let hs = AskerHandshake::new(ticket, asker, sharer);
    channel::write_plain(stream, hs.hello()).await.expect("hello");
    channel::read_plain(stream, "challenge").await.expect("challenge")
}

#[tokio::test]
async fn a_search_finds_shared_files_and_a_direct_fetch_bypasses_the_server() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let carol = member(&server, "carol", 2, "cs101").await;
    let dave = member(&server, "dave", 3, "cs101").await;

    let lab3 = make_file(dir.path(), "Lab3-data.csv", 3 << 20, 1);
    let other = make_file(dir.path(), "essay.pdf", 1000, 2);
    let mut bob = share(bob, 1, &[lab3.clone(), other], |_| {}).await;
    // Carol shares a matching file but switched it off; dave does not share at all.
    let carols = make_file(dir.path(), "lab3-carol.csv", 500, 3);
    let carol = share(carol, 2, std::slice::from_ref(&carols), |_| {}).await;
    assert!(carol.index.set_file_enabled(&carols, false));
    let _ = dave;

    let results = search_all(&mut ada, "cs101", "LAB3").await;
    assert_eq!(results.asked, 2, "bob and carol share; dave is not asked, nor ada herself");
    assert_eq!(results.results.len(), 1, "{results:?}");
    let hit = &results.results[0];
    assert_eq!((hit.sharer.as_str(), hit.file.name.as_str()), ("bob", "Lab3-data.csv"));
    assert_eq!(hit.file.size, 3 << 20);
    assert!(!hit.file.busy);
    // The exact content hash finds it too.
    let by_hash = search_all(&mut ada, "cs101", &hex::encode(&hit.file.sha256)).await;
    assert_eq!(by_hash.results.len(), 1);

    let before = server_counts(&server).await;
    let out = tempfile::tempdir().expect("tempdir");
    let (ptx, prx) = tokio::sync::watch::channel(Default::default());
    let mut opts = options(&ada, 0);
    opts.progress = Some(ptx);
    let got =
        fetch(&ada.client, &FetchRequest::for_result("cs101", hit, out.path()), &opts).await.expect("fetch");
    assert!(matches!(got.route, Route::Direct(_)), "{:?}", got.route);
    assert_eq!(std::fs::read(&got.path).expect("saved"), std::fs::read(&lab3).expect("orig"));
    assert_eq!(prx.borrow().done, 3 << 20);
    let after = server_counts(&server).await;
    assert_eq!(after, before, "the content did not pass through the server");
    match bob.expect("the upload's end", |e| matches!(e, SharerEvent::Finished { .. })).await {
        SharerEvent::Finished { result, .. } => assert_eq!(result, Ok(())),
        _ => unreachable!(),
    }
    // Searches are not history.
    let history = ada
        .ok(Request::History { conv: classchat_wire::Conv::room("cs101"), before: None, limit: 200 })
        .await;
    assert!(!format!("{history:?}").contains("lab3"), "{history:?}");
}

#[tokio::test]
async fn when_no_address_connects_the_relay_delivers_the_same_bytes_end_to_end() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "big.bin", 5 << 20, 9);
    let _bob = share(bob, 1, std::slice::from_ref(&file), |_| {}).await;
    let results = search_all(&mut ada, "cs101", "big").await;
    let out = tempfile::tempdir().expect("tempdir");
    let mut opts = options(&ada, 0);
    opts.direct = false;
    let before = server_counts(&server).await;
    let got = fetch(&ada.client, &FetchRequest::for_result("cs101", &results.results[0], out.path()), &opts)
        .await
        .expect("relayed fetch");
    assert_eq!(got.route, Route::Relayed);
    assert_eq!(std::fs::read(&got.path).expect("saved"), std::fs::read(&file).expect("orig"));
    let after = server_counts(&server).await;
    assert!(after.0 - before.0 >= 5 << 20, "the relay carried the (sealed) content: {before:?} → {after:?}");
}

#[tokio::test]
async fn a_peer_without_a_valid_ticket_or_with_a_replayed_one_is_refused() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "notes.txt", 10_000, 4);
    let mut bob = share(bob, 1, std::slice::from_ref(&file), |_| {}).await;
    let port = bob.sharer.port();

    // No ticket at all: random bytes.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let c = hello(&mut s, &[0x66; 32], "ada", "bob").await;
    assert!(matches!(c, PeerChallenge::Refused { code: PeerRefusal::BadTicket, .. }), "{c:?}");
    // Garbage instead of a hello: the sharer just closes, and keeps serving.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(&[0xff; 64]).await.expect("write");
    common::expect_closed(s, Duration::from_secs(5)).await;

    // A real fetch, then its ticket again.
    let results = search_all(&mut ada, "cs101", "notes").await;
    let t = ticket(&ada, "cs101", "bob", &results.results[0].file.sha256).await;
    // Wait for bob to have taken the ticket in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let c = hello(&mut s, &t.ticket, "ada", "bob").await;
    assert!(matches!(c, PeerChallenge::Proof { .. }), "{c:?}");
    drop(s);
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let c = hello(&mut s, &t.ticket, "ada", "bob").await;
    assert!(matches!(c, PeerChallenge::Refused { code: PeerRefusal::TicketUsed, .. }), "{c:?}");
    // Someone else presenting ada's ticket.
    let t2 = ticket(&ada, "cs101", "bob", &results.results[0].file.sha256).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let c = hello(&mut s, &t2.ticket, "mallory", "bob").await;
    assert!(matches!(c, PeerChallenge::Refused { code: PeerRefusal::WrongPeer, .. }), "{c:?}");
    bob.expect("a refusal event", |e| {
        matches!(e, SharerEvent::Refused { code: PeerRefusal::TicketUsed, .. })
    })
    .await;

    // And the sharer still serves a proper fetch.
    let out = tempfile::tempdir().expect("tempdir");
    let got = fetch(
        &ada.client,
        &FetchRequest::for_result("cs101", &results.results[0], out.path()),
        &options(&ada, 0),
    )
    .await
    .expect("fetch after the bad peers");
    assert_eq!(std::fs::read(&got.path).expect("saved"), std::fs::read(&file).expect("orig"));
}

#[tokio::test]
async fn an_expired_ticket_is_refused_by_the_sharer_and_the_relay() {
    let server =
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| c.peer_ticket_ms = 300).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "notes.txt", 10_000, 4);
    let bob = share(bob, 1, &[file], |_| {}).await;
    let results = search_all(&mut ada, "cs101", "notes").await;
    let t = ticket(&ada, "cs101", "bob", &results.results[0].file.sha256).await;
    assert_eq!(t.expires_in_ms, 300);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut s = TcpStream::connect(("127.0.0.1", bob.sharer.port())).await.expect("connect");
    let c = hello(&mut s, &t.ticket, "ada", "bob").await;
    assert!(matches!(c, PeerChallenge::Refused { code: PeerRefusal::TicketExpired, .. }), "{c:?}");
    assert_eq!(ada.err(Request::PeerRelay { ticket: t.ticket.clone() }).await, ErrorCode::NoSuchTransfer);
    // A relay nobody asked for cannot be attached either.
    let err = classchat_wire::peer::relay::open_relay(
        ada.client.bulk_config(),
        &t.ticket,
        classchat_wire::peer::RelaySide::Sharer,
    )
    .await
    .expect_err("no relay");
    assert_eq!(err.code(), Some(ErrorCode::NoSuchTransfer), "{err}");
}

#[tokio::test]
async fn a_wrong_identity_key_is_refused_on_either_side() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "notes.txt", 10_000, 4);
    let mut bob = share(bob, 1, std::slice::from_ref(&file), |_| {}).await;
    let results = search_all(&mut ada, "cs101", "notes").await;
    let req = FetchRequest::for_result("cs101", &results.results[0], dir.path().join("out").as_path());
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");

    // Ada signs with a key that is not the one the directory lists for her.
    let mut wrong = options(&ada, 0);
    wrong.identity = identity(4).clone();
    let err = fetch(&ada.client, &req, &wrong).await.expect_err("refused");
    assert!(matches!(err, Error::Peer(PeerError::Refused { code: PeerRefusal::BadIdentity, .. })), "{err}");
    bob.expect("the sharer refusing ada's proof", |e| {
        matches!(e, SharerEvent::Refused { code: PeerRefusal::BadIdentity, .. })
    })
    .await;
    assert!(!req.dest.exists());

    // Bob's directory key changes to one his sharer does not hold: ada refuses his proof.
    let bob_user = TestUser {
        name: "bob".into(),
        client: bob.client.clone(),
        events: tokio::sync::mpsc::channel(1).1,
        welcome: ada.welcome.clone(),
    };
    publish(&bob_user, identity(5)).await;
    let err = fetch(&ada.client, &req, &options(&ada, 0)).await.expect_err("refused");
    assert!(matches!(err, Error::Peer(PeerError::BadIdentity { ref peer }) if peer == "bob"), "{err}");
    assert!(!req.dest.exists());
}

#[tokio::test]
async fn content_that_does_not_match_its_hash_is_discarded_with_a_clear_error() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "lab.csv", 2 << 20, 4);
    let _bob = share(bob, 1, std::slice::from_ref(&file), |_| {}).await;
    // The file changes on disk after it was indexed (same size, one byte different).
    let mut data = std::fs::read(&file).expect("read");
    data[1_500_000] ^= 1;
    std::fs::write(&file, data).expect("write");
    let results = search_all(&mut ada, "cs101", "lab").await;
    let out = tempfile::tempdir().expect("tempdir");
    let req = FetchRequest::for_result("cs101", &results.results[0], out.path());
    let err = fetch(&ada.client, &req, &options(&ada, 0)).await.expect_err("mismatch");
    assert!(matches!(&err, Error::HashMismatch { name } if name == "lab.csv"), "{err}");
    assert!(!req.dest.exists(), "nothing saved");
    assert!(!classchat_wire::files::part_path(&req.dest).exists(), "the partial file was deleted");
}

/// A hostile sharer: a plain client that registers a listener and answers every search with
/// `answer`.
async fn hostile(server: &TestServer, name: &str, room: &str, answer: fn(u64) -> Vec<Request>) {
    let mut user = member(server, name, 5, room).await;
    let listener = PeerListener { port: 9, addrs: vec!["127.0.0.1".into()] };
    user.ok(Request::SetSharing { listener: Some(listener) }).await;
    tokio::spawn(async move {
        while let Some(ev) = user.events.recv().await {
            if let Event::SearchRequest { search, .. } = ev {
                for req in answer(search) {
                    let _ = user.client.request(req).await;
                }
            }
        }
    });
}

fn file(name: &str) -> SharedFile {
    SharedFile { name: name.into(), size: 5, sha256: vec![7; 32], busy: false }
}

#[tokio::test]
async fn hostile_search_answers_are_checked_capped_and_dropped() {
    let server = TestServer::start().await;
    let mut ada = member(&server, "ada", 0, "cs101").await;
    hostile(&server, "mallory", "cs101", |search| {
        let files = vec![file("../../etc/passwd"), file("evil\u{7}bell.txt"), file("ok.txt"), file("..")];
        let mut reqs = vec![Request::AnswerSearch { search, files }];
        // 10,000 more answers, each with a file: only the first answer counts.
        reqs.extend(
            (0..10_000).map(|i| Request::AnswerSearch { search, files: vec![file(&format!("x{i}.txt"))] }),
        );
        reqs
    })
    .await;
    hostile(&server, "trudy", "cs101", |search| {
        // One answer of 10,000 files.
        vec![Request::AnswerSearch {
            search,
            files: (0..10_000).map(|i| file(&format!("t{i}.txt"))).collect(),
        }]
    })
    .await;
    let results = search_all(&mut ada, "cs101", "anything").await;
    let from = |who: &str| {
        results.results.iter().filter(|r| r.sharer == who).map(|r| r.file.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(from("mallory"), ["ok.txt"], "hostile names dropped, later answers ignored");
    assert_eq!(from("trudy").len(), classchat_wire::peer::MAX_FILES_PER_ANSWER);
    assert!(results.truncated);
    // A late answer is acknowledged and dropped; the server is fine.
    assert_eq!(
        ada.ok(Request::AnswerSearch { search: results.search, files: vec![file("late.txt")] }).await,
        Response::Done
    );
    ada.say("cs101", "still here").await;
}

#[tokio::test]
async fn a_search_flood_is_rate_limited_and_chat_goes_on() {
    let server = TestServer::start().await;
    let ada = member(&server, "ada", 0, "cs101").await;
    let mut limited = 0;
    for i in 0..200 {
        let req = Request::WhoHas { room: "cs101".into(), query: SearchQuery::parse(&format!("q{i}")) };
        match ada.client.request(req).await {
            Ok(Response::Search { .. }) => {}
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(limited >= 190, "at most the burst got through: {limited} limited");
    // Bad queries.
    let bad = |name: &str| Request::WhoHas {
        room: "cs101".into(),
        query: SearchQuery { name: name.into(), sha256: None },
    };
    assert_eq!(ada.err(bad("")).await, ErrorCode::BadRequest);
    assert_eq!(ada.err(bad(&"x".repeat(300))).await, ErrorCode::TooLong);
    let short_hash = Request::WhoHas {
        room: "cs101".into(),
        query: SearchQuery { name: String::new(), sha256: Some(vec![1; 5]) },
    };
    assert_eq!(ada.err(short_hash).await, ErrorCode::BadRequest);
    assert_eq!(
        ada.err(Request::WhoHas { room: "nowhere".into(), query: SearchQuery::parse("x") }).await,
        ErrorCode::NoSuchRoom
    );
    ada.say("cs101", "chat still works").await;
}

#[tokio::test]
async fn tickets_need_both_in_the_room_and_the_sharer_sharing() {
    let server = TestServer::start().await;
    let ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let eve = member(&server, "eve", 2, "other").await;
    let fetch_from = |who: &str, room: &str| Request::PeerFetch {
        room: room.into(),
        sharer: who.into(),
        sha256: vec![1; 32],
    };
    assert_eq!(ada.err(fetch_from("bob", "cs101")).await, ErrorCode::NotSharing, "bob is not sharing");
    assert_eq!(ada.err(fetch_from("eve", "cs101")).await, ErrorCode::NotMember);
    assert_eq!(eve.err(fetch_from("bob", "cs101")).await, ErrorCode::NotMember);
    assert_eq!(ada.err(fetch_from("nobody", "cs101")).await, ErrorCode::NoSuchUser);
    assert_eq!(ada.err(fetch_from("ada", "cs101")).await, ErrorCode::BadRequest);
    let bad_listener = PeerListener { port: 0, addrs: vec![] };
    assert_eq!(bob.err(Request::SetSharing { listener: Some(bad_listener) }).await, ErrorCode::BadRequest);
    let bad_addr = PeerListener { port: 5, addrs: vec!["not an ip".into()] };
    assert_eq!(bob.err(Request::SetSharing { listener: Some(bad_addr) }).await, ErrorCode::BadRequest);
    let bob = share(bob, 1, &[], |_| {}).await;
    let t = ticket(&ada, "cs101", "bob", &[1; 32]).await;
    assert_eq!(t.candidates, [format!("127.0.0.1:{}", bob.sharer.port())]);
    // Sharing off: no longer fetchable, no longer asked.
    bob.sharer.stop().await.expect("stop");
    assert_eq!(ada.err(fetch_from("bob", "cs101")).await, ErrorCode::NotSharing);
}

/// Serves one fake "bob" connection: the real handshake with bob's key, a `start`, one
/// record of content, then silence.
async fn stalling_sharer(listener: tokio::net::TcpListener, content: Vec<u8>) {
    let (mut s, _) = listener.accept().await.expect("accept");
    let hello: PeerHello = channel::read_plain(&mut s, "hello").await.expect("hello");
    let (hs, proof) = SharerHandshake::prove(hello, identity(1));
    channel::write_plain(&mut s, &proof).await.expect("proof");
    let key: PeerKey = channel::read_plain(&mut s, "key").await.expect("key");
    let keys = hs.on_key(&key, identity(1), identity(0).public()).expect("ada's proof");
    let (sealer, opener) = keys.split(classchat_wire::crypto::Role::Server);
    let (mut sealer, mut opener) = (RecordSealer::new(sealer), RecordOpener::new(opener));
    assert!(matches!(opener.recv_control(&mut s).await.expect("get"), Some(PeerMsg::Get { offset: 0 })));
    let mut buf = bytes::BytesMut::new();
    use sha2::Digest;
    let start = PeerMsg::Start {
        name: "lab.csv".into(),
        size: content.len() as u64,
        sha256: sha2::Sha256::digest(&content).to_vec(),
    };
    sealer.control(&start, &mut buf).expect("start");
    let mut data = RecordSealer::data_buffer(100_000);
    data[RecordSealer::data_start()..].copy_from_slice(&content[..100_000]);
    sealer.seal_data(&mut data).expect("seal");
    buf.extend_from_slice(&data);
    s.write_all(&buf).await.expect("write");
    // Stall with the connection open.
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_peer_that_stalls_mid_transfer_fails_clearly_and_the_fetch_resumes_later() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "lab.csv", 1 << 20, 4);
    let content = std::fs::read(&file).expect("read");
    // The fake bob listens; the server names its port.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = fake.local_addr().expect("addr").port();
    bob.ok(Request::SetSharing { listener: Some(PeerListener { port, addrs: vec![] }) }).await;
    tokio::spawn(stalling_sharer(fake, content.clone()));
    let out = tempfile::tempdir().expect("tempdir");
    let req = FetchRequest {
        room: "cs101".into(),
        sharer: "bob".into(),
        name: "lab.csv".into(),
        size: content.len() as u64,
        sha256: sha256_of(&file),
        dest: out.path().join("lab.csv"),
    };
    let mut opts = options(&ada, 0);
    opts.stall_timeout = Duration::from_secs(1);
    let err = fetch(&ada.client, &req, &opts).await.expect_err("stalls");
    assert!(matches!(err, Error::Peer(PeerError::Stalled(_))), "{err}");
    let part = classchat_wire::files::part_path(&req.dest);
    assert_eq!(std::fs::metadata(&part).expect("part kept").len(), 100_000);

    // The real bob takes over and the fetch resumes from the part.
    bob.ok(Request::SetSharing { listener: None }).await;
    let bob = share(bob, 1, std::slice::from_ref(&file), |_| {}).await;
    let got = fetch(&ada.client, &req, &options(&ada, 0)).await.expect("resumed fetch");
    assert_eq!(got.resumed_from, 100_000);
    assert_eq!(std::fs::read(&got.path).expect("saved"), content);
    assert!(!part.exists());
    drop(bob);
}

#[tokio::test]
async fn a_busy_sharer_says_so_and_can_stop_a_fetch_and_the_asker_can_cancel() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "big.bin", 64 << 20, 4);
    let mut bob = share(bob, 1, std::slice::from_ref(&file), |c| c.max_uploads = 1).await;
    let results = search_all(&mut ada, "cs101", "big").await;
    let hit = results.results[0].clone();

    // An asker that starts a fetch and never reads: the upload holds bob's one slot.
    let t = ticket(&ada, "cs101", "bob", &hit.file.sha256).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(("127.0.0.1", bob.sharer.port())).await.expect("connect");
    let hs = AskerHandshake::new(&t.ticket, "ada", "bob");
    channel::write_plain(&mut s, hs.hello()).await.expect("hello");
    let c: PeerChallenge = channel::read_plain(&mut s, "challenge").await.expect("challenge");
    let (key, keys) = hs.on_challenge(c, identity(0), identity(1).public()).expect("proof");
    channel::write_plain(&mut s, &key).await.expect("key");
    let mut sealer = RecordSealer::new(keys.split(classchat_wire::crypto::Role::Client).0);
    let mut buf = bytes::BytesMut::new();
    sealer.control(&PeerMsg::Get { offset: 0 }, &mut buf).expect("get");
    s.write_all(&buf).await.expect("write");
    let started = bob.expect("the first upload", |e| matches!(e, SharerEvent::Started(_))).await;
    let SharerEvent::Started(info) = started else { unreachable!() };
    assert_eq!(info.asker, "ada");
    assert!(bob.sharer.busy());

    // Searches show bob busy, and a fetch is refused as busy.
    let busy = search_all(&mut ada, "cs101", "big").await;
    assert!(busy.results[0].file.busy);
    let out = tempfile::tempdir().expect("tempdir");
    let req = FetchRequest::for_result("cs101", &hit, out.path());
    let err = fetch(&ada.client, &req, &options(&ada, 0)).await.expect_err("busy");
    assert!(matches!(err, Error::Peer(PeerError::Refused { code: PeerRefusal::Busy, .. })), "{err}");
    assert!(err.to_string().contains("busy"), "{err}");

    // Bob stops the stuck upload; the slot frees.
    assert_eq!(bob.sharer.uploads().len(), 1);
    assert!(bob.sharer.stop_upload(info.id));
    bob.expect(
        "the stopped upload's end",
        |e| matches!(e, SharerEvent::Finished { id, result: Err(_) } if *id == info.id),
    )
    .await;
    drop(s);
    assert!(!bob.sharer.busy());

    // The asker cancels a running fetch; the part stays and a new fetch resumes it.
    let (ptx, mut prx) = tokio::sync::watch::channel(Default::default());
    let mut opts = options(&ada, 0);
    opts.progress = Some(ptx);
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        let _ = prx.wait_for(|p: &classchat_wire::peer::FetchProgress| p.done > 0).await;
        cancel.cancel();
    });
    match fetch(&ada.client, &req, &opts).await {
        Err(Error::Peer(PeerError::Cancelled)) => {
            // Bob's one slot frees when his side sees the close; only then can he serve
            // the resume instead of refusing it as busy.
            bob.expect("the cancelled upload's end", |e| matches!(e, SharerEvent::Finished { .. })).await;
            let got = fetch(&ada.client, &req, &options(&ada, 0)).await.expect("resumed");
            assert!(got.resumed_from > 0);
            assert_eq!(sha256_of(&got.path), hit.file.sha256);
        }
        // Loopback may finish 64 MiB before the cancel lands; then it is simply complete.
        Ok(got) => assert_eq!(sha256_of(&got.path), hit.file.sha256),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn sharing_off_means_never_asked_and_nothing_served() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ada = member(&server, "ada", 0, "cs101").await;
    let bob = member(&server, "bob", 1, "cs101").await;
    let file = make_file(dir.path(), "lab.csv", 1000, 4);
    let bob = share(bob, 1, &[file], |_| {}).await;
    bob.index.set_enabled(false);
    let results = search_all(&mut ada, "cs101", "lab").await;
    assert_eq!((results.asked, results.results.len()), (1, 0), "asked, but the app answers nothing");
    bob.sharer.stop().await.expect("stop");
    let results = search_all(&mut ada, "cs101", "lab").await;
    assert_eq!(results.asked, 0, "a user with sharing off is not asked");
    let _ = Client::connect;
    let _ = Identity::generate;
}
