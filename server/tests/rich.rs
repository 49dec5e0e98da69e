//! Replies, edits, deletes, reactions, typing and message search through the real server
//! (PROTOCOL.md section 18).

mod common;

use classchat_wire::e2e::{DmDelete, DmEdit, DmKey, Envelope, Identity};
use classchat_wire::{
    AuditAction, Body, ChatMessage, Conv, ErrorCode, Event, MAX_REACTIONS, Reaction, Request, Response,
};
use common::{TestServer, TestUser};

fn lobby() -> Conv {
    Conv::room("lobby")
}

async fn history(user: &TestUser, conv: Conv) -> Vec<ChatMessage> {
    match user.ok(Request::History { conv, before: None, limit: 200 }).await {
        Response::History { messages, .. } => messages,
        other => panic!("expected History, got {other:?}"),
    }
}

async fn find(user: &TestUser, conv: Conv, id: u64) -> ChatMessage {
    history(user, conv)
        .await
        .into_iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("message {id} in history"))
}

fn text(text: &str) -> Body {
    Body::Text { text: text.into() }
}

async fn react(user: &TestUser, id: u64, emoji: &str, on: bool) {
    user.ok(Request::React { id, emoji: emoji.into(), on }).await;
}

fn search(query: &str, room: Option<&str>, offset: u32, limit: u32) -> Request {
    Request::SearchMessages { query: query.into(), room: room.map(Into::into), offset, limit }
}

async fn found(user: &TestUser, req: Request) -> (Vec<classchat_wire::SearchHit>, bool) {
    match user.ok(req).await {
        Response::Found { hits, more } => (hits, more),
        other => panic!("expected Found, got {other:?}"),
    }
}

fn texts(hits: &[classchat_wire::SearchHit]) -> Vec<String> {
    hits.iter()
        .map(|h| match &h.message.body {
            Body::Text { text } => text.clone(),
            other => panic!("a search hit that is not text: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn replies_name_a_message_of_the_same_conversation() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.create_room("lab").await;
    let question = alice.say("lobby", "is the lab open today?").await;
    let elsewhere = alice.say("lab", "lab notes").await;

    let reply = alice
        .ok(Request::SendRoom {
            room: "lobby".into(),
            text: "yes, until six".into(),
            reply_to: Some(question),
        })
        .await;
    let Response::Sent { id: reply, .. } = reply else { panic!("expected Sent, got {reply:?}") };
    let ev = bob
        .expect_event("the reply", |e| matches!(e, Event::Message { message } if message.id == reply))
        .await;
    let Event::Message { message } = ev else { unreachable!() };
    assert_eq!(message.reply_to, Some(question));
    assert_eq!(find(&bob, lobby(), reply).await.reply_to, Some(question));
    assert_eq!(find(&bob, lobby(), question).await.reply_to, None);

    // A message of another room, of no room, and a DM answering a room message.
    for bad in [elsewhere, 999_999, u64::MAX] {
        let req = Request::SendRoom { room: "lobby".into(), text: "x".into(), reply_to: Some(bad) };
        assert_eq!(bob.err(req).await, ErrorCode::NoSuchMessage, "reply to {bad}");
    }
    let dm = Request::SendDirect { to: "alice".into(), body: b"env".to_vec(), reply_to: Some(question) };
    assert_eq!(bob.err(dm).await, ErrorCode::NoSuchMessage);
    let first =
        match bob.ok(Request::SendDirect { to: "alice".into(), body: b"env".to_vec(), reply_to: None }).await
        {
            Response::Sent { id, .. } => id,
            other => panic!("{other:?}"),
        };
    alice.ok(Request::SendDirect { to: "bob".into(), body: b"env2".to_vec(), reply_to: Some(first) }).await;
    let direct = history(&bob, Conv::Direct { user: "alice".into() }).await;
    assert_eq!(direct.iter().find(|m| m.id != first).and_then(|m| m.reply_to), Some(first));
}

#[tokio::test]
async fn an_edit_reaches_everyone_live_in_history_and_at_the_next_login() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut alice_phone = server.login("alice", "phone").await;
    let mut bob = server.user("bob").await;
    let mut carol = server.user("carol").await;
    let id = alice.say("lobby", "the quiz is on Fridya").await;
    carol.expect_event("the message", |e| matches!(e, Event::Message { message } if message.id == id)).await;
    // Closing sends the outstanding acknowledgements: carol's cursor is past the message.
    carol.client.close().await;
    drop(carol);

    alice.ok(Request::Edit { id, body: text("the quiz is on Friday") }).await;
    for user in [&mut bob, &mut alice_phone] {
        let ev =
            user.expect_event("the edit", |e| matches!(e, Event::Edited { id: i, .. } if *i == id)).await;
        let Event::Edited { conv, body, .. } = ev else { unreachable!() };
        assert_eq!((conv, body), (lobby(), text("the quiz is on Friday")));
    }
    let m = find(&bob, lobby(), id).await;
    assert_eq!(m.body, text("the quiz is on Friday"));
    assert!(m.edited.is_some_and(|t| t >= m.ts), "{m:?}");

    let mut carol = server.login("carol", "dev-1").await;
    let missed = carol.until_caught_up().await;
    assert!(
        missed.iter().any(
            |e| matches!(e, Event::Edited { id: i, body, .. } if *i == id && *body == text("the quiz is on Friday"))
        ),
        "carol was offline at the edit and gets it at login: {missed:?}"
    );
    assert!(
        !missed.iter().any(|e| matches!(e, Event::Message { message } if message.id == id)),
        "the message itself was delivered before: {missed:?}"
    );
    // A device that never saw the message gets it in its latest state.
    let mut laptop = server.login("carol", "laptop").await;
    let all = laptop.until_caught_up().await;
    let m = all
        .iter()
        .find_map(|e| match e {
            Event::Message { message } if message.id == id => Some(message.clone()),
            _ => None,
        })
        .expect("the message in a new device's catch-up");
    assert_eq!(m.body, text("the quiz is on Friday"));
    assert!(m.edited.is_some());
}

#[tokio::test]
async fn who_may_edit_and_delete() {
    let server =
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| c.admins = vec!["dave".into()])
            .await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    carol.join("lab").await;
    let bobs = bob.say("lab", "bob's answer").await;
    let carols = carol.say("lab", "carol's answer").await;

    let edit = Request::Edit { id: bobs, body: text("carol was here") };
    assert_eq!(carol.err(edit).await, ErrorCode::NotYourMessage);
    let err = carol.client.request(Request::Delete { id: bobs, proof: None }).await.expect_err("refused");
    assert_eq!(err.code(), Some(ErrorCode::NotYourMessage));
    assert!(err.to_string().contains("only its sender"), "{err}");
    // Someone not in the room cannot see the message at all.
    let outsider = server.user("erin").await;
    assert_eq!(outsider.err(Request::Edit { id: bobs, body: text("x") }).await, ErrorCode::NoSuchMessage);
    assert_eq!(outsider.err(Request::Delete { id: bobs, proof: None }).await, ErrorCode::NoSuchMessage);

    // The room's admin deletes bob's message; everyone in the room sees it go.
    alice.ok(Request::Delete { id: bobs, proof: None }).await;
    let ev = bob.expect_event("the delete", |e| matches!(e, Event::Deleted { id, .. } if *id == bobs)).await;
    assert!(matches!(ev, Event::Deleted { by, proof: None, .. } if by == "alice"));
    assert!(
        matches!(find(&carol, Conv::room("lab"), bobs).await.body, Body::Deleted { by, .. } if by == "alice")
    );
    assert_eq!(bob.err(Request::Edit { id: bobs, body: text("again") }).await, ErrorCode::MessageDeleted);
    assert_eq!(
        bob.err(Request::React { id: bobs, emoji: "👍".into(), on: true }).await,
        ErrorCode::MessageDeleted
    );
    assert_eq!(alice.err(Request::Delete { id: bobs, proof: None }).await, ErrorCode::MessageDeleted);

    // Your own, anywhere; a server admin's, in a room he is not in.
    let own = bob.say("lobby", "oops").await;
    bob.ok(Request::Delete { id: own, proof: None }).await;
    dave.ok(Request::Delete { id: carols, proof: None }).await;
    let lab = history(&alice, Conv::room("lab")).await;
    assert!(
        lab.iter().any(|m| m.id == carols && matches!(&m.body, Body::Deleted { by, .. } if by == "dave"))
    );
    // A system message (carol's join) can be neither deleted nor edited.
    let join = lab
        .iter()
        .find(|m| matches!(m.body, Body::System { .. }) && m.from == "carol")
        .expect("carol's join")
        .id;
    assert_eq!(alice.err(Request::Delete { id: join, proof: None }).await, ErrorCode::BadRequest);
    assert_eq!(carol.err(Request::Edit { id: join, body: text("x") }).await, ErrorCode::BadRequest);
    assert_eq!(alice.err(Request::Edit { id: join, body: text("x") }).await, ErrorCode::NotYourMessage);

    // Deletes of others' messages are in the audit log; deleting your own is not.
    let Response::Audit { entries, .. } = dave.ok(Request::AuditLog { before: None, limit: 50 }).await else {
        panic!("expected the audit log")
    };
    let deletes: Vec<_> = entries.iter().filter(|e| e.action == AuditAction::DeleteMessage).collect();
    assert_eq!(deletes.len(), 2, "{entries:?}");
    assert!(deletes.iter().any(|e| e.actor == "alice" && e.target == "bob" && e.detail.contains("#lab")));
    assert!(deletes.iter().any(|e| e.actor == "dave" && e.target == "carol"));
}

#[tokio::test]
async fn direct_edits_and_deletes_stay_opaque_to_the_server() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let alice_id = Identity::generate(2048).expect("keygen");
    let key = DmKey::generate();
    let original = Envelope::seal(&key, 1, "alice", "bob", &alice_id, "meet at the library").to_bytes();
    let id = match alice
        .ok(Request::SendDirect { to: "bob".into(), body: original.clone(), reply_to: None })
        .await
    {
        Response::Sent { id, .. } => id,
        other => panic!("{other:?}"),
    };
    let secret = "EDITED: meet at the cafeteria instead";
    let edit = DmEdit { of: id, text: secret.into() };
    let sealed = Envelope::seal_bytes(&key, 2, "alice", "bob", &alice_id, &edit.to_bytes()).to_bytes();

    assert_eq!(alice.err(Request::Edit { id, body: text(secret) }).await, ErrorCode::BadRequest);
    alice.ok(Request::Edit { id, body: Body::Opaque { data: sealed.clone() } }).await;
    let ev = bob.expect_event("the edit", |e| matches!(e, Event::Edited { id: i, .. } if *i == id)).await;
    let Event::Edited { conv, body, .. } = ev else { unreachable!() };
    assert_eq!(conv, Conv::Direct { user: "alice".into() });
    assert_eq!(body, Body::Opaque { data: sealed.clone() });
    let room = alice.say("lobby", "room text").await;
    let wrong = Request::Edit { id: room, body: Body::Opaque { data: sealed.clone() } };
    assert_eq!(alice.err(wrong).await, ErrorCode::BadRequest);
    assert_eq!(
        bob.err(Request::Edit { id, body: Body::Opaque { data: b"x".to_vec() } }).await,
        ErrorCode::NotYourMessage
    );

    let proof =
        Envelope::seal_bytes(&key, 3, "alice", "bob", &alice_id, &DmDelete { of: id }.to_bytes()).to_bytes();
    assert_eq!(
        bob.err(Request::Delete { id: room, proof: Some(proof.clone()) }).await,
        ErrorCode::NotYourMessage
    );
    alice.ok(Request::Delete { id, proof: Some(proof.clone()) }).await;
    let ev = bob.expect_event("the delete", |e| matches!(e, Event::Deleted { id: i, .. } if *i == id)).await;
    assert!(matches!(ev, Event::Deleted { proof: Some(p), .. } if p == proof));

    let data_dir = server.data_dir().to_owned();
    let _dir = server.stop().await;
    // The store's writer checkpoints the log into the database as it stops, after the
    // server's task ends: the old versions of the row live in the log until then.
    let db_path = data_dir.join(classchat_server::DB_FILE);
    let wal = data_dir.join(format!("{}-wal", classchat_server::DB_FILE));
    common::eventually(std::time::Duration::from_secs(10), "the log checkpointed", || {
        let done = std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
        async move { done }
    })
    .await;
    let db = std::fs::read(&db_path).expect("the database");
    let has = |needle: &[u8]| db.windows(needle.len()).any(|w| w == needle);
    assert!(!has(secret.as_bytes()), "an edit's text is in the server's database");
    // Any 48 bytes from the middle of an envelope (ciphertext) are unique to it.
    let middle = |b: &[u8]| b[b.len() / 2..][..48].to_vec();
    assert!(!has(&middle(&original)), "the deleted message's envelope is still stored");
    assert!(!has(&middle(&sealed)), "the deleted edit's envelope is still stored");
    assert!(has(&middle(&proof)), "the proof is kept (the scan reads the right file)");
}

#[tokio::test]
async fn reactions_toggle_are_bounded_and_a_flood_is_rate_limited() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.messages_per_second = 5;
        c.message_burst = 30;
    })
    .await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let id = alice.say("lobby", "pizza on friday?").await;
    react(&bob, id, "👍", true).await;
    react(&alice, id, "🎉", true).await;
    react(&alice, id, "👍", true).await;
    react(&alice, id, "👍", true).await; // twice is still once
    let ev = bob
        .expect_event("three reactions", |e| {
            matches!(e, Event::Reactions { id: i, reactions, .. } if *i == id && reactions.iter().map(|r| r.users.len()).sum::<usize>() == 3)
        })
        .await;
    let want = vec![
        Reaction { emoji: "👍".into(), users: vec!["bob".into(), "alice".into()] },
        Reaction { emoji: "🎉".into(), users: vec!["alice".into()] },
    ];
    assert!(matches!(&ev, Event::Reactions { reactions, .. } if *reactions == want), "{ev:?}");
    // Taken back: 👍's earliest reaction is now alice's, which came after her 🎉.
    react(&bob, id, "👍", false).await;
    let m = find(&alice, lobby(), id).await;
    assert_eq!(
        m.reactions,
        vec![
            Reaction { emoji: "🎉".into(), users: vec!["alice".into()] },
            Reaction { emoji: "👍".into(), users: vec!["alice".into()] },
        ]
    );

    for bad in ["", "a b", "x\u{7}", &"😀".repeat(9)] {
        let req = Request::React { id, emoji: bad.into(), on: true };
        assert_eq!(alice.err(req).await, ErrorCode::BadRequest, "{bad:?}");
    }
    for n in 2..MAX_REACTIONS {
        react(&alice, id, &format!("e{n}"), true).await;
    }
    assert_eq!(
        alice.err(Request::React { id, emoji: "one-too-many".into(), on: true }).await,
        ErrorCode::BadRequest
    );
    react(&bob, id, "e5", true).await; // an existing emoji is still fine
    assert_eq!(find(&bob, lobby(), id).await.reactions.len(), MAX_REACTIONS);

    // A flood: bob's budget runs out; alice still sends.
    let mut limited = 0;
    for n in 0..80 {
        match bob.client.request(Request::React { id, emoji: "e3".into(), on: n % 2 == 0 }).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(limited > 0, "80 reactions at once were not limited");
    alice.say("lobby", "still here").await;
    assert!(find(&alice, lobby(), id).await.reactions.len() <= MAX_REACTIONS);
}

#[tokio::test]
async fn typing_goes_to_the_others_online_once_per_interval_and_is_never_stored() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut bob_phone = server.login("bob", "phone").await;
    let mut carol = server.user("carol").await;
    carol.create_room("secret").await;
    let dave = server.user("dave").await;

    bob.client.typing(lobby()).await.expect("send");
    bob.client.typing(lobby()).await.expect("send"); // within the interval: dropped
    // Not a member of #secret, no DM with carol yet: dropped.
    bob.client.typing(Conv::room("secret")).await.expect("send");
    bob.client.typing(Conv::Direct { user: "carol".into() }).await.expect("send");
    let is_typing = |e: &Event| matches!(e, Event::Typing { .. });
    // A marker after the typing (bob's frames are handled in order before it is sent).
    bob.ok(Request::Ping).await;
    let marker = dave.say("lobby", "marker").await;
    for (user, want) in [(&mut alice, 1), (&mut carol, 1), (&mut bob_phone, 0), (&mut bob, 0)] {
        let mut seen = Vec::new();
        user.expect_event("the marker", |e| {
            seen.push(e.clone());
            matches!(e, Event::Message { message } if message.id == marker)
        })
        .await;
        let typing: Vec<&Event> = seen.iter().filter(|e| is_typing(e)).collect();
        assert_eq!(typing.len(), want, "{}: {seen:?}", user.name);
        if want == 1 {
            assert_eq!(typing[0], &Event::Typing { conv: lobby(), user: "bob".into() });
        }
    }

    // A DM pair: typing reaches the other party.
    bob.ok(Request::SendDirect { to: "carol".into(), body: b"hi".to_vec(), reply_to: None }).await;
    bob.client.typing(Conv::Direct { user: "carol".into() }).await.expect("send");
    let ev = carol.expect_event("bob typing to carol", is_typing).await;
    assert_eq!(ev, Event::Typing { conv: Conv::Direct { user: "bob".into() }, user: "bob".into() });

    let mut later = server.login("alice", "laptop").await;
    assert!(!later.until_caught_up().await.iter().any(is_typing), "typing is never stored");
}

#[tokio::test]
async fn search_is_ranked_paged_highlighted_and_permission_checked() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.create_room("staff").await;
    bob.create_room("gone").await;
    bob.create_room("banned").await;
    alice.join("gone").await;
    alice.join("banned").await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(alice.say("lab", &format!("Rust question {n}: borrowing")).await);
    }
    alice.say("lobby", "rust meetup tonight").await;
    bob.say("staff", "rust grading key").await;
    bob.say("gone", "rust in the gone room").await;
    bob.say("banned", "rust in the banned room").await;
    alice.ok(Request::LeaveRoom { name: "gone".into() }).await;
    bob.ok(Request::Ban { room: "banned".into(), user: "alice".into() }).await;

    // Newest first, whole words regardless of case, never bob's rooms that alice is not
    // (or no longer) in.
    let (hits, more) = found(&alice, search("rust", None, 0, 5)).await;
    assert!(more);
    assert_eq!(texts(&hits)[0], "rust meetup tonight");
    assert_eq!(texts(&hits)[1], "Rust question 6: borrowing");
    assert_eq!(hits[1].message.conv, Conv::room("lab"));
    assert_eq!(hits[1].highlights, vec![(0, 4)]);
    assert_eq!(hits[0].highlights, vec![(0, 4)]);
    let (rest, more) = found(&alice, search("rust", None, 5, 50)).await;
    assert!(!more);
    assert_eq!(hits.len() + rest.len(), 8, "{:?}", texts(&rest));
    assert!(texts(&rest).iter().all(|t| t.starts_with("Rust question")));
    let (in_lab, _) = found(&alice, search("RUST borrowing", Some("lab"), 0, 50)).await;
    assert_eq!(in_lab.len(), 7);
    assert_eq!(in_lab[0].highlights, vec![(0, 4), (17, 26)]);
    assert_eq!(alice.err(search("rust", Some("staff"), 0, 5)).await, ErrorCode::NotMember);
    assert_eq!(alice.err(search("rust", Some("gone"), 0, 5)).await, ErrorCode::NotMember);

    // Edited: found by the new text only. Deleted: not found.
    alice.ok(Request::Edit { id: ids[0], body: text("ownership puzzle") }).await;
    alice.ok(Request::Delete { id: ids[1], proof: None }).await;
    let (hits, _) = found(&alice, search("rust", Some("lab"), 0, 50)).await;
    assert_eq!(hits.len(), 5);
    let (hits, _) = found(&alice, search("ownership", None, 0, 50)).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message.id, ids[0]);
    assert!(hits[0].message.edited.is_some());

    // Any string is a query; a few are refused for their size.
    for odd in
        ["\"", "*", "a AND", "(((", "[a-z]+(", "NEAR(rust", "rust\" OR \"x", "^$.*+?{}\\|", "-rust", "rust:"]
    {
        match alice.client.request(search(odd, None, 0, 10)).await {
            Ok(Response::Found { .. }) => {}
            other => panic!("{odd:?}: {other:?}"),
        }
    }
    let (hits, _) = found(&alice, search("\"rust\" * (", Some("lab"), 0, 50)).await;
    assert_eq!(hits.len(), 5, "the quotes and the operator are plain characters");
    assert_eq!(alice.err(search("", None, 0, 10)).await, ErrorCode::BadRequest);
    assert_eq!(alice.err(search("   ", None, 0, 10)).await, ErrorCode::BadRequest);
    assert_eq!(alice.err(search(&"r".repeat(257), None, 0, 10)).await, ErrorCode::TooLong);
    assert_eq!(alice.err(search("rust", None, 0, 0)).await, ErrorCode::BadRequest);
    assert_eq!(alice.err(search("rust", None, 0, 51)).await, ErrorCode::BadRequest);
    assert_eq!(alice.err(search("rust", None, 990, 50)).await, ErrorCode::BadRequest);
    found(&alice, search(&"r".repeat(256), None, 0, 10)).await;
}

#[tokio::test]
async fn control_and_bidi_characters_are_stored_and_returned_unchanged() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let odd = "grade\u{202E}txt.exe\u{202C} \u{7}\u{1b}[31mred\u{200F}\u{0}end";
    let id = alice.say("lobby", odd).await;
    let ev = bob
        .expect_event("the message", |e| matches!(e, Event::Message { message } if message.id == id))
        .await;
    assert!(matches!(ev, Event::Message { message } if message.body == text(odd)));
    assert_eq!(find(&bob, lobby(), id).await.body, text(odd));
    let (hits, _) = found(&bob, search("grade", None, 0, 10)).await;
    assert_eq!(texts(&hits), vec![odd.to_owned()]);
    for (a, b) in &hits[0].highlights {
        assert!(odd.is_char_boundary(*a as usize) && odd.is_char_boundary(*b as usize));
    }
    alice.ok(Request::Edit { id, body: text(&format!("{odd}\u{202D}")) }).await;
    assert_eq!(find(&bob, lobby(), id).await.body, text(&format!("{odd}\u{202D}")));
}
