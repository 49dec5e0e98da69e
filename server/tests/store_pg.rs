//! The server on a PostgreSQL store (`store = "postgres://…"`): each test starts a
//! throwaway cluster (`classchat_server::services::postgres`), runs real servers on it,
//! and talks to them through the real client.

mod common;

use std::time::Duration;

use classchat_server::services::postgres::Postgres;
use classchat_wire::{Body, Conv, ErrorCode, Event, Request, Response};
use common::{TestServer, code, history, text_of};

async fn postgres() -> Postgres {
    tokio::task::spawn_blocking(Postgres::start).await.expect("join").expect("a throwaway PostgreSQL")
}

/// A server on `url`, with a data dir of its own (so nothing it keeps comes from a file).
async fn server_on(url: &str) -> TestServer {
    let url = url.to_owned();
    TestServer::start_with(tempfile::tempdir().expect("tempdir"), move |c| c.store = Some(url)).await
}

fn texts(h: &[(u64, String)]) -> Vec<&str> {
    h.iter().map(|(_, t)| t.as_str()).collect()
}

async fn search(user: &common::TestUser, query: &str) -> Vec<u64> {
    match user.ok(Request::SearchMessages { query: query.into(), room: None, offset: 0, limit: 10 }).await {
        Response::Found { hits, .. } => hits.iter().map(|h| h.message.id).collect(),
        other => panic!("expected Found, got {other:?}"),
    }
}

#[tokio::test]
async fn accounts_rooms_messages_and_search_work_on_postgres_and_survive_a_restart() {
    let pg = postgres().await;
    let server = server_on(&pg.url()).await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let carol = server.user("carol").await;
    assert_eq!(
        code(server.connect().await.0.register("Alice", &common::auth("alice"), "x").await),
        ErrorCode::UsernameTaken,
        "names are unique in the database too"
    );

    alice.create_room("lab").await;
    bob.join("lab").await;
    alice.ok(Request::Ban { room: "lab".into(), user: "carol".into() }).await;
    assert_eq!(carol.err(Request::JoinRoom { name: "lab".into(), password: None }).await, ErrorCode::Banned);

    let first = alice.say("lab", "Segfaults everywhere in exercise 3").await;
    bob.expect_event("alice's message", |e| text_of(e) == Some("Segfaults everywhere in exercise 3")).await;
    alice
        .ok(Request::Edit { id: first, body: Body::Text { text: "Segfaults fixed in exercise 3".into() } })
        .await;
    bob.ok(Request::React { id: first, emoji: "👍".into(), on: true }).await;
    let dm = alice
        .ok(Request::SendDirect { to: "bob".into(), body: b"sealed one".to_vec(), reply_to: None })
        .await;
    let Response::Sent { id: dm1, .. } = dm else { panic!("expected Sent, got {dm:?}") };

    // Bob goes offline; what he misses arrives when he logs in again, once.
    bob.client.close().await;
    let missed = alice.say("lab", "while you were out").await;
    assert!(missed > first, "ids increase: {first} then {missed}");
    alice.ok(Request::SendDirect { to: "bob".into(), body: b"sealed two".to_vec(), reply_to: None }).await;
    bob = server.login("bob", "dev-1").await;
    let caught = bob.until_caught_up().await;
    assert!(caught.iter().any(|e| text_of(e) == Some("while you were out")), "{caught:?}");
    let dms: Vec<&[u8]> = caught
        .iter()
        .filter_map(|e| match e {
            Event::Message { message } => match &message.body {
                Body::Opaque { data } => Some(data.as_slice()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(dms, vec![b"sealed two".as_slice()], "only the DM sent while offline");
    assert!(!caught.iter().any(|e| text_of(e).is_some_and(|t| t.starts_with("Segfaults"))), "{caught:?}");

    let token = alice.welcome.resume_token.clone();
    let (client, _events) = server.connect().await;
    let resumed = client.resume("alice", &token, "dev-1").await.expect("resume");
    assert_eq!(resumed.user, "alice");

    let lab = history(&alice, Conv::room("lab")).await;
    assert_eq!(texts(&lab).last(), Some(&"while you were out"));
    assert_eq!(search(&alice, "segfault").await, vec![first], "stemmed, case-folded, the edited text");
    assert_eq!(search(&alice, "everywhere").await, Vec::<u64>::new(), "the text before the edit is gone");
    assert_eq!(search(&carol, "segfault").await, Vec::<u64>::new(), "carol is not in the room");
    let audit = alice
        .ok(Request::History { conv: Conv::Direct { user: "bob".into() }, before: None, limit: 10 })
        .await;
    let Response::History { messages: dm_history, .. } = audit else { panic!("{audit:?}") };
    assert_eq!(dm_history.last().map(|m| m.id), Some(dm1), "newest first: the first DM last");
    drop(client);
    drop(bob);
    server.stop().await;

    // A new server on the same database, with an empty data dir of its own.
    let server = server_on(&pg.url()).await;
    let mut alice = server.login("alice", "laptop").await;
    alice.until_caught_up().await;
    assert!(alice.welcome.rooms.iter().any(|r| r.name == "lab"), "{:?}", alice.welcome.rooms);
    assert_eq!(history(&alice, Conv::room("lab")).await, lab, "the same history, same ids");
    let page = alice.ok(Request::History { conv: Conv::room("lab"), before: Some(missed), limit: 1 }).await;
    let Response::History { messages, .. } = page else { panic!("{page:?}") };
    assert_eq!(messages[0].id, first);
    assert!(messages[0].edited.is_some());
    assert_eq!(messages[0].reactions.len(), 1);
    assert_eq!(messages[0].reactions[0].users, vec!["bob".to_owned()]);
    assert_eq!(search(&alice, "segfaults").await, vec![first]);
    let carol = server.login("carol", "dev-1").await;
    assert_eq!(carol.err(Request::JoinRoom { name: "lab".into(), password: None }).await, ErrorCode::Banned);
    let bob = server.login("bob", "dev-2").await;
    let after = bob.say("lab", "a new message after the restart").await;
    assert!(after > missed, "the id sequence goes on: {missed} then {after}");
    server.stop().await;
}

/// PostgreSQL stops for a few seconds under the server: sends fail with a clear error
/// while it is gone, work again once it is back, and every acknowledged message is kept.
#[tokio::test]
async fn a_database_outage_fails_sends_clearly_and_loses_nothing_acknowledged() {
    let mut pg = postgres().await;
    let url = pg.url();
    let server = server_on(&url).await;
    let alice = server.user("alice").await;
    let mut acked = vec![alice.say("lobby", "before the outage").await];

    pg = tokio::task::spawn_blocking(move || {
        pg.stop().expect("stop PostgreSQL");
        pg
    })
    .await
    .expect("join");
    // Every send fails while the database is down, and the client is told.
    for i in 0..5 {
        let sent = alice
            .client
            .request(Request::SendRoom { room: "lobby".into(), text: format!("during {i}"), reply_to: None })
            .await;
        assert_eq!(code(sent), ErrorCode::Unavailable, "send {i} during the outage");
    }
    let read = alice.err(Request::History { conv: Conv::room("lobby"), before: None, limit: 10 }).await;
    assert_eq!(read, ErrorCode::Internal, "reads fail too");
    pg = tokio::task::spawn_blocking(move || {
        pg.start_again().expect("start PostgreSQL again");
        pg
    })
    .await
    .expect("join");
    // Sends work again once the writer has reconnected (backoff: a few seconds at most).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut failed_after = 0;
    loop {
        let sent = alice
            .client
            .request(Request::SendRoom {
                room: "lobby".into(),
                text: "after the outage".into(),
                reply_to: None,
            })
            .await;
        match sent {
            Ok(Response::Sent { id, .. }) => {
                acked.push(id);
                break;
            }
            other => {
                failed_after += 1;
                assert!(tokio::time::Instant::now() < deadline, "sends still fail: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    for i in 0..5 {
        acked.push(alice.say("lobby", &format!("later {i}")).await);
    }
    server.stop().await;

    let server = server_on(&url).await;
    let alice = server.login("alice", "dev-1").await;
    let lobby = history(&alice, Conv::room("lobby")).await;
    let ids: Vec<u64> = lobby.iter().map(|(id, _)| *id).collect();
    for id in &acked {
        assert!(
            ids.contains(id),
            "acknowledged message {id} is kept: {lobby:?} (failed after: {failed_after})"
        );
    }
    assert!(!texts(&lobby).iter().any(|t| t.starts_with("during")), "{lobby:?}");
    server.stop().await;
    drop(pg);
}

/// `user grant-admin` with no server running changes the database the `--store` URL
/// names (here through PostgreSQL's unix socket); a bad URL is refused clearly.
#[tokio::test]
async fn grant_admin_offline_writes_to_the_postgres_store() {
    let pg = postgres().await;
    let server = server_on(&pg.url()).await;
    let alice = server.user("alice").await;
    assert!(!alice.welcome.server_admin);
    drop(alice);
    server.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = pg.socket_url();
    let args = ["user", "grant-admin", "alice", "--store", &url, "--data"].map(std::ffi::OsStr::new);
    let mut args = args.to_vec();
    args.push(dir.path().as_os_str());
    let (ok, out, err) = common::run_cli(&args).await;
    assert!(ok, "{out}{err}");
    let nobody = ["user", "grant-admin", "nobody", "--store", &url, "--data"].map(std::ffi::OsStr::new);
    let mut nobody = nobody.to_vec();
    nobody.push(dir.path().as_os_str());
    let (ok, _, err) = common::run_cli(&nobody).await;
    assert!(!ok && err.contains("no user called nobody"), "{err}");
    let (ok, _, err) =
        common::run_cli(&["--store", "mysql://db/chat", "config"].map(std::ffi::OsStr::new)).await;
    assert!(!ok && err.contains("postgres://"), "{err}");

    let server = server_on(&pg.url()).await;
    let alice = server.login("alice", "dev-1").await;
    assert!(alice.welcome.server_admin, "granted in the database");
    server.stop().await;
}

/// Files uploaded through two nodes at once get distinct ids (the database gives them
/// out), and download through a third that shares their database: it fetches the
/// content from PostgreSQL into its own file cache.
#[tokio::test]
async fn files_uploaded_through_two_nodes_download_through_a_third() {
    use sha2::Digest;
    let pg = postgres().await;
    let url = pg.url();
    let (one, two) = tokio::join!(server_on(&url), server_on(&url));
    let alice = one.user("alice").await;
    let bob = two.user("bob").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    // More than two of the store's 1 MiB chunks, the last one partial; and a small one.
    let big: Vec<u8> =
        (0..2 * 1024 * 1024 + 12_345u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let small = b"a small file".to_vec();
    std::fs::write(tmp.path().join("notes.pdf"), &big).expect("write");
    std::fs::write(tmp.path().join("small.txt"), &small).expect("write");
    let notes = alice
        .client
        .send_file(Conv::room("lobby"), &tmp.path().join("notes.pdf"), |_| {})
        .await
        .expect("upload");
    let note = bob
        .client
        .send_file(Conv::room("lobby"), &tmp.path().join("small.txt"), |_| {})
        .await
        .expect("upload");
    assert_ne!(notes.id, note.id, "two nodes, two ids");
    let cached = |server: &TestServer, sha256: &[u8]| {
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        server.data_dir().join("files").join(hex).exists()
    };
    assert!(cached(&one, &notes.sha256) && cached(&two, &note.sha256));

    // A third node, with a data dir of its own, started after the uploads.
    let three = server_on(&url).await;
    assert!(!cached(&three, &notes.sha256));
    let carol = three.user("carol").await;
    for (info, bytes) in [(&notes, &big), (&note, &small)] {
        let ticket = carol.client.download_file(info.id).await.expect("download allowed");
        let dest = tmp.path().join(format!("got-{}", info.id));
        let got = carol.client.download_to(&ticket, &dest, |_| {}).await.expect("download");
        assert_eq!(got.sha256, sha2::Sha256::digest(bytes).to_vec());
        assert!(std::fs::read(&dest).expect("read") == *bytes, "byte-identical");
        assert!(cached(&three, &info.sha256), "now in the third node's cache");
    }
    for s in [one, two, three] {
        s.stop().await;
    }
}

/// Nodes started together on an empty database both come up: one migrates (the others
/// wait on its advisory lock and find it done) and one creates the default room (the
/// others find it there).
#[tokio::test]
async fn nodes_starting_together_on_an_empty_database_all_come_up() {
    let pg = postgres().await;
    let url = pg.url();
    let (one, two, three) = tokio::join!(server_on(&url), server_on(&url), server_on(&url));
    let alice = one.user("alice").await;
    let bob = two.user("bob").await;
    let carol = three.user("carol").await;
    alice.say("lobby", "from one").await;
    bob.say("lobby", "from two").await;
    carol.say("lobby", "from three").await;
    // Each node knows only what it loaded and wrote itself (sharing memory between nodes
    // is not the store's job), but the database has it all, with one `Created`.
    let four = server_on(&url).await;
    let dave = four.user("dave").await;
    let lobby = history(&dave, Conv::room("lobby")).await;
    assert_eq!(texts(&lobby).iter().filter(|t| t.starts_with("from")).count(), 3, "{lobby:?}");
    assert_eq!(texts(&lobby).iter().filter(|t| t.contains("Created")).count(), 1, "{lobby:?}");
    for s in [one, two, three, four] {
        s.stop().await;
    }
}

/// Questions asked through two nodes at once get distinct ids (the database gives them
/// out; each node counting for itself gave the same one, and the second question
/// replaced the first in the database).
#[tokio::test]
async fn questions_asked_through_two_nodes_get_distinct_ids() {
    let pg = postgres().await;
    let url = pg.url();
    let one = server_on(&url).await;
    let alice = one.user("alice").await;
    alice.create_room("lab").await;
    let qa = classchat_wire::RoomSettings { announce_only: false, slow_mode_secs: 0, qa: true };
    alice.ok(Request::SetRoomSettings { room: "lab".into(), settings: qa }).await;
    let bob = one.user("bob").await;
    bob.join("lab").await;
    drop(bob);
    // A second node, started once the room and its members are in the database.
    let two = server_on(&url).await;
    let bob = two.login("bob", "dev-1").await;
    let ask = |text: &str| Request::AskQuestion { room: "lab".into(), text: text.into(), anonymous: false };
    let id = |r: Response| match r {
        Response::Question { question } => question.id,
        other => panic!("expected Question, got {other:?}"),
    };
    let first = id(alice.ok(ask("From node one?")).await);
    let second = id(bob.ok(ask("From node two?")).await);
    assert_ne!(first, second);

    let three = server_on(&url).await;
    let carol = three.login("alice", "dev-2").await;
    let Response::Questions { questions, .. } = carol.ok(Request::Questions { room: "lab".into() }).await
    else {
        panic!("expected Questions")
    };
    let mut texts: Vec<&str> = questions.iter().map(|q| q.text.as_str()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["From node one?", "From node two?"]);
    for s in [one, two, three] {
        s.stop().await;
    }
}

/// Moderation on PostgreSQL: a server ban and a removed room (its messages, reactions
/// and search terms go with it) are in the audit log, page by page, and stay after a
/// restart.
#[tokio::test]
async fn bans_removed_rooms_and_the_audit_log_persist_on_postgres() {
    let pg = postgres().await;
    let url = pg.url();
    let start = |url: String| {
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), move |c| {
            c.store = Some(url);
            c.admins = vec!["prof".into()];
        })
    };
    let server = start(url.clone()).await;
    let prof = server.user("prof").await;
    let mallory = server.user("mallory").await;
    prof.create_room("old").await;
    let id = prof.say("old", "a unique walrus").await;
    mallory.join("old").await;
    mallory.ok(Request::React { id, emoji: "👍".into(), on: true }).await;
    assert_eq!(search(&prof, "walrus").await, vec![id]);
    prof.ok(Request::AdminRemoveRoom { name: "old".into() }).await;
    prof.ok(Request::AdminBan { user: "mallory".into(), reason: "spam".into() }).await;
    assert_eq!(search(&prof, "walrus").await, Vec::<u64>::new(), "the room's text left the index");
    let audit = |r: Response| match r {
        Response::Audit { entries, more } => (entries, more),
        other => panic!("expected Audit, got {other:?}"),
    };
    let (page, more) = audit(prof.ok(Request::AuditLog { before: None, limit: 1 }).await);
    assert!(more);
    assert_eq!(page[0].action, classchat_wire::AuditAction::ServerBan);
    let (older, _) = audit(prof.ok(Request::AuditLog { before: Some(page[0].id), limit: 10 }).await);
    assert_eq!(older[0].action, classchat_wire::AuditAction::RemoveRoom);
    drop((prof, mallory));
    server.stop().await;

    let server = start(url).await;
    let prof = server.login("prof", "dev-1").await;
    assert!(!prof.welcome.rooms.iter().any(|r| r.name == "old"));
    assert_eq!(
        prof.err(Request::JoinRoom { name: "old".into(), password: None }).await,
        ErrorCode::NoSuchRoom
    );
    let (entries, _) = audit(prof.ok(Request::AuditLog { before: None, limit: 10 }).await);
    let actions: Vec<_> = entries.iter().map(|e| e.action).collect();
    assert_eq!(actions, [classchat_wire::AuditAction::ServerBan, classchat_wire::AuditAction::RemoveRoom]);
    let (client, _events) = server.connect().await;
    assert_eq!(
        code(client.login("mallory", &common::auth("mallory"), "dev-1").await),
        ErrorCode::AccountBanned
    );
    server.stop().await;
}
