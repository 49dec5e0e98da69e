//! Room records (PROTOCOL.md section 4.1) on the real server: a room's messages are sealed
//! once under the room's key; a kicked member is never sent the key of a later record; a
//! client that does not ask for room records gets ordinary frames.

mod common;

use std::time::Duration;

use classchat_wire::connection::{SecureReader, SecureWriter};
use classchat_wire::{ClientMsg, Event, Request, ServerMsg};
use common::*;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

type Raw = (SecureReader<OwnedReadHalf>, SecureWriter<OwnedWriteHalf>);

async fn raw_user(server: &TestServer, name: &str, room_records: bool) -> Raw {
    let (r, w) = TcpStream::connect(server.addr).await.expect("connect").into_split();
    let (mut reader, mut writer) = raw_handshake(r, w).await;
    raw_register(&mut reader, &mut writer, name).await;
    if room_records {
        writer.send(&ClientMsg::RoomRecords {}).await.expect("send");
    }
    (reader, writer)
}

/// `name` on a raw connection (taking room records or not) who has joined `lab`.
async fn in_lab(server: &TestServer, name: &str, room_records: bool) -> Raw {
    let mut raw = raw_user(server, name, room_records).await;
    request(&mut raw, 2, Request::JoinRoom { name: "lab".into(), password: None }).await;
    raw
}

/// A server whose message rate does not throttle a test that says many messages at once.
async fn unthrottled() -> TestServer {
    let data = tempfile::tempdir().expect("tempdir");
    TestServer::start_with(data, |c| {
        c.messages_per_second = 10_000;
        c.message_burst = 10_000;
    })
    .await
}

/// Sends `req` with `id` and reads up to its reply, which must be `ok`; events before it are
/// returned.
async fn request(raw: &mut Raw, id: u32, body: Request) -> Vec<Event> {
    raw.1.send(&ClientMsg::Request { id, body }).await.expect("send");
    let mut events = Vec::new();
    loop {
        match next(&mut raw.0, Duration::from_secs(10)).await.expect("reply in time") {
            ServerMsg::Ok { id: got, .. } if got == id => return events,
            ServerMsg::Err { id: got, code, message } if got == id => {
                panic!("request {id}: {code}: {message}")
            }
            ServerMsg::Event { event } => events.push(event),
            _ => {}
        }
    }
}

async fn next(reader: &mut SecureReader<OwnedReadHalf>, within: Duration) -> Option<ServerMsg> {
    match tokio::time::timeout(within, reader.recv::<ServerMsg>()).await {
        Ok(msg) => Some(msg.expect("read").expect("open")),
        Err(_) => None,
    }
}

/// Reads until a message event with `text` arrives (panics after 10 s).
async fn expect_text(reader: &mut SecureReader<OwnedReadHalf>, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(reader, within).await {
            Some(ServerMsg::Event { event }) if text_of(&event) == Some(text) => return,
            Some(_) => {}
            None => panic!("{text:?} did not arrive"),
        }
    }
}

fn key_of(raw: &Raw, room: &str) -> Option<[u8; 32]> {
    raw.0.room_keys().into_iter().rev().find(|(_, r, _)| r == room).map(|(_, _, k)| k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_member_is_never_sent_the_key_of_later_records() {
    let server = TestServer::start().await;
    let admin = server.user("prof").await;
    admin.create_room("lab").await;
    let mut bob = in_lab(&server, "bob", true).await;
    let mut carol = in_lab(&server, "carol", true).await;
    let mut dave = in_lab(&server, "dave", false).await;

    // A message the writer finds alone goes as a room record; each is read before the
    // next is sent, so the first few are.
    let old = keyed(&admin, &mut bob, "before the kick", None).await;
    let carols = keyed(&admin, &mut carol, "also before the kick", None).await;
    assert_eq!(carols, old, "one key for every member");
    expect_text(&mut dave.0, "also before the kick 0").await;
    assert!(dave.0.room_keys().is_empty(), "a client that did not ask gets ordinary frames");

    admin.ok(Request::Kick { room: "lab".into(), user: "bob".into() }).await;
    // Bob sees why (in frames of his own connection), and nothing of the room after it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = next(&mut bob.0, within).await.expect("removed_from_room in time");
        if let ServerMsg::Event { event: Event::RemovedFromRoom { .. } } = msg {
            break;
        }
    }

    let new = keyed(&admin, &mut carol, "after the kick", Some(old)).await;
    expect_text(&mut dave.0, "after the kick 0").await;
    while let Some(msg) = next(&mut bob.0, Duration::from_millis(500)).await {
        if let ServerMsg::Event { event } = &msg {
            assert!(
                !in_room(event, "lab") || text_of(event).is_none(),
                "bob got a message of the room: {msg:?}"
            );
        }
    }
    assert!(
        bob.0.room_keys().iter().all(|(_, _, k)| *k != new),
        "the kicked member was never sent the room's new key"
    );

    // Leaving is a removal too.
    request(&mut dave, 20, Request::LeaveRoom { name: "lab".into() }).await;
    keyed(&admin, &mut carol, "after dave left", Some(new)).await;
}

/// Says `prefix 0`, `prefix 1`, … in `lab` (each read by `raw` before the next is sent)
/// until `raw` holds a key for the room other than `not`; that key.
async fn keyed(admin: &TestUser, raw: &mut Raw, prefix: &str, not: Option<[u8; 32]>) -> [u8; 32] {
    for i in 0..20 {
        let text = format!("{prefix} {i}");
        admin.say("lab", &text).await;
        expect_text(&mut raw.0, &text).await;
        if let Some(k) = key_of(raw, "lab").filter(|k| Some(*k) != not) {
            return k;
        }
    }
    panic!("no room record with a new key came in 20 messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_records_and_ordinary_frames_interleave_in_order_on_one_connection() {
    let server = unthrottled().await;
    let admin = server.user("prof").await;
    admin.create_room("lab").await;
    let mut carol = in_lab(&server, "carol", true).await;
    // Room messages (records) and direct messages (ordinary frames) alternate; every one
    // arrives, in the order sent, and the connection stays open.
    for i in 0..40 {
        admin.say("lab", &format!("room {i}")).await;
        admin
            .ok(Request::SendDirect {
                to: "carol".into(),
                body: format!("dm {i}").into_bytes(),
                reply_to: None,
            })
            .await;
    }
    let mut got = Vec::new();
    while got.len() < 80 {
        let msg = next(&mut carol.0, Duration::from_secs(10)).await.expect("every message in time");
        if let ServerMsg::Event { event: Event::Message { message } } = msg {
            got.push(message);
        }
    }
    let rooms: Vec<_> = got.iter().filter(|m| matches!(m.conv, classchat_wire::Conv::Room { .. })).collect();
    assert_eq!(rooms.len(), 40);
    assert!(rooms.windows(2).all(|w| w[0].id < w[1].id), "room messages in order");
    assert!(carol.0.room_keys().len() <= 1, "a key is installed once, not again for each record");
}

/// An account ban keeps the user a member of their rooms (unbanned, they are back), but
/// their sessions are closed and the room's key is replaced, as for a kick: records sealed
/// after the ban are under a key the banned user's connections are never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_ban_replaces_the_keys_of_the_users_rooms() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(data, |c| c.admins = vec!["prof".into()]).await;
    let admin = server.user("prof").await;
    admin.create_room("lab").await;
    let mut bob = in_lab(&server, "bob", true).await;
    let mut carol = in_lab(&server, "carol", true).await;
    let old = keyed(&admin, &mut bob, "before the ban", None).await;
    assert_eq!(keyed(&admin, &mut carol, "still before the ban", None).await, old, "one key for both");

    admin.ok(Request::AdminBan { user: "bob".into(), reason: "cheating".into() }).await;
    // Bob is told and cut off; nothing of the room comes after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(within, bob.0.recv::<ServerMsg>()).await.expect("the goodbye in time") {
            Ok(Some(ServerMsg::Event { event: Event::Disconnect { .. } }) | None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }

    let new = keyed(&admin, &mut carol, "after the ban", Some(old)).await;
    assert_ne!(new, old);
    assert!(
        bob.0.room_keys().iter().all(|(_, _, k)| *k != new),
        "the banned user was never sent the room's new key"
    );
    // Still a member: unbanned, bob logs in again and is sent the current key.
    admin.ok(Request::AdminUnban { user: "bob".into() }).await;
    let bob = server.login("bob", "laptop").await;
    // `say` fails unless bob is a member.
    bob.say("lab", "back").await;
    expect_text(&mut carol.0, "back").await;
}

/// A kicked member's writer still has the room's earlier messages queued (its client was
/// not reading) when the kick lands: it sends every one of them, in order, then the notice,
/// and nothing of the room after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_members_queued_room_messages_all_come_before_the_notice_and_none_after() {
    let server = unthrottled().await;
    let admin = server.user("prof").await;
    admin.create_room("lab").await;
    let mut bob = in_lab(&server, "bob", true).await;
    let mut carol = in_lab(&server, "carol", true).await;
    // Bob reads nothing while these are said: each was delivered (queued for him) before
    // its `Sent` came back, so all of them before the kick.
    const BEFORE: usize = 150;
    for i in 0..BEFORE {
        admin.say("lab", &format!("queued {i}")).await;
    }
    admin.ok(Request::Kick { room: "lab".into(), user: "bob".into() }).await;
    for i in 0..5 {
        admin.say("lab", &format!("after {i}")).await;
    }
    expect_text(&mut carol.0, "after 4").await;

    let mut texts = Vec::new();
    let mut notice_at = None;
    while let Some(msg) = next(&mut bob.0, Duration::from_millis(700)).await {
        let ServerMsg::Event { event } = msg else { continue };
        if let Event::RemovedFromRoom { room, .. } = &event {
            assert_eq!(room, "lab");
            notice_at = Some(texts.len());
        } else if in_room(&event, "lab")
            && let Some(t) = text_of(&event)
        {
            texts.push(t.to_owned());
        }
    }
    let expected: Vec<String> = (0..BEFORE).map(|i| format!("queued {i}")).collect();
    assert_eq!(texts, expected, "every earlier message, in order, and none said after the kick");
    assert_eq!(notice_at, Some(BEFORE), "the notice comes after all of them");
}
