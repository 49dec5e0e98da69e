//! Rooms: chatting, locked rooms, and the room admin's tools.

mod common;

use classchat_wire::{Body, Conv, ErrorCode, Event, Member, Request, Response, RoomInfo, SystemEvent};
use common::{TestServer, TestUser, in_room, text_of};

async fn members(user: &TestUser, room: &str) -> Vec<Member> {
    match user.ok(Request::RoomMembers { name: room.into() }).await {
        Response::Members { members, .. } => members,
        other => panic!("expected Members, got {other:?}"),
    }
}

fn member_names(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.name.as_str()).collect()
}

async fn room_info(user: &TestUser, room: &str) -> RoomInfo {
    match user.ok(Request::ListRooms).await {
        Response::Rooms { rooms } => {
            rooms.into_iter().find(|r| r.name == room).unwrap_or_else(|| panic!("{room} is not listed"))
        }
        other => panic!("expected Rooms, got {other:?}"),
    }
}

/// Two members chat; a third user, in the lobby and a room of their own but not this one,
/// never sees the message. The lobby message sent afterwards is a barrier: the server
/// delivers in commit order, so anything from lab-3 would reach carol before it.
#[tokio::test]
async fn room_messages_reach_members_and_nobody_else() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut carol = server.user("carol").await;
    alice.create_room("lab-3").await;
    bob.join("lab-3").await;
    carol.create_room("lab-4").await;

    let id = alice.say("lab-3", "hi bob").await;
    let ev = bob.expect_event("alice's message", |e| text_of(e) == Some("hi bob")).await;
    let Event::Message { message } = ev else { unreachable!() };
    assert_eq!(message.id, id);
    assert_eq!(message.from, "alice");
    assert_eq!(message.conv, Conv::room("lab-3"));

    let reply_id = bob.say("lab-3", "hi alice").await;
    assert!(reply_id > id, "ids increase");

    alice.say("lobby", "barrier").await;
    let mut seen = Vec::new();
    carol
        .expect_event("the lobby barrier", |e| {
            seen.push(e.clone());
            text_of(e) == Some("barrier")
        })
        .await;
    assert!(!seen.iter().any(|e| in_room(e, "lab-3")), "carol saw lab-3 traffic: {seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn locked_room_needs_the_right_password() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let created = alice
        .ok(Request::CreateRoom {
            name: "exam".into(),
            topic: "Finals".into(),
            password: Some("s3cret".into()),
        })
        .await;
    assert!(matches!(created, Response::Room { room } if room.locked));

    let missing = bob.err(Request::JoinRoom { name: "exam".into(), password: None }).await;
    assert_eq!(missing, ErrorCode::WrongPassword);
    let wrong = bob.err(Request::JoinRoom { name: "exam".into(), password: Some("s3cre".into()) }).await;
    assert_eq!(wrong, ErrorCode::WrongPassword);
    assert_eq!(member_names(&members(&alice, "exam").await), ["alice"]);

    let joined = bob.ok(Request::JoinRoom { name: "exam".into(), password: Some("s3cret".into()) }).await;
    assert!(matches!(&joined, Response::Room { room } if room.joined && room.locked), "{joined:?}");
    assert_eq!(member_names(&members(&alice, "exam").await), ["alice", "bob"]);
    server.stop().await;
}

#[tokio::test]
async fn kicked_user_is_removed_and_can_no_longer_send() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    bob.say("lab", "hello").await;

    alice.ok(Request::Kick { room: "lab".into(), user: "bob".into() }).await;
    bob.expect_event("removal", |e| matches!(e, Event::RemovedFromRoom { room, .. } if room == "lab")).await;
    let code =
        bob.err(Request::SendRoom { room: "lab".into(), text: "still here?".into(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::NotMember);
    assert_eq!(member_names(&members(&alice, "lab").await), ["alice"]);
    // A kick is not a ban: bob may come back.
    bob.join("lab").await;
    server.stop().await;
}

#[tokio::test]
async fn banned_user_cannot_rejoin_until_unbanned() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.join("lab").await;

    alice.ok(Request::Ban { room: "lab".into(), user: "bob".into() }).await;
    bob.expect_event("removal", |e| matches!(e, Event::RemovedFromRoom { room, .. } if room == "lab")).await;
    assert_eq!(bob.err(Request::JoinRoom { name: "lab".into(), password: None }).await, ErrorCode::Banned);
    let bans = alice.ok(Request::ListBans { room: "lab".into() }).await;
    assert!(matches!(&bans, Response::Bans { users, .. } if users == &["bob"]), "{bans:?}");

    alice.ok(Request::Unban { room: "lab".into(), user: "bob".into() }).await;
    bob.join("lab").await;
    assert_eq!(member_names(&members(&alice, "lab").await), ["alice", "bob"]);
    server.stop().await;
}

#[tokio::test]
async fn non_admin_cannot_kick() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    carol.join("lab").await;

    let code = bob.err(Request::Kick { room: "lab".into(), user: "carol".into() }).await;
    assert_eq!(code, ErrorCode::NotRoomAdmin);
    let code = bob.err(Request::Ban { room: "lab".into(), user: "carol".into() }).await;
    assert_eq!(code, ErrorCode::NotRoomAdmin);
    assert_eq!(member_names(&members(&alice, "lab").await), ["alice", "bob", "carol"]);
    server.stop().await;
}

#[tokio::test]
async fn admin_sets_the_topic_and_members_see_it() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.join("lab").await;

    assert_eq!(
        bob.err(Request::SetTopic { room: "lab".into(), topic: "mine now".into() }).await,
        ErrorCode::NotRoomAdmin
    );
    alice.ok(Request::SetTopic { room: "lab".into(), topic: "Week 4: sockets".into() }).await;
    bob.expect_event("the topic event", |e| {
        matches!(e, Event::Message { message } if message.conv == Conv::room("lab")
            && message.body == Body::System { event: SystemEvent::Topic { topic: "Week 4: sockets".into() } })
    })
    .await;
    assert_eq!(room_info(&bob, "lab").await.topic, "Week 4: sockets");
    server.stop().await;
}

#[tokio::test]
async fn admin_sets_and_clears_the_room_password() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    alice.create_room("lab").await;

    assert_eq!(
        bob.err(Request::SetRoomPassword { room: "lab".into(), password: Some("x".into()) }).await,
        ErrorCode::NotRoomAdmin
    );
    alice.ok(Request::SetRoomPassword { room: "lab".into(), password: Some("pw".into()) }).await;
    assert!(room_info(&bob, "lab").await.locked);
    assert_eq!(
        bob.err(Request::JoinRoom { name: "lab".into(), password: None }).await,
        ErrorCode::WrongPassword
    );
    bob.ok(Request::JoinRoom { name: "lab".into(), password: Some("pw".into()) }).await;

    alice.ok(Request::SetRoomPassword { room: "lab".into(), password: None }).await;
    assert!(!room_info(&carol, "lab").await.locked);
    carol.join("lab").await;
    server.stop().await;
}

#[tokio::test]
async fn admin_hands_over_the_role() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    carol.join("lab").await;

    assert_eq!(
        bob.err(Request::HandOverAdmin { room: "lab".into(), user: "bob".into() }).await,
        ErrorCode::NotRoomAdmin
    );
    alice.ok(Request::HandOverAdmin { room: "lab".into(), user: "bob".into() }).await;
    let admins: Vec<String> =
        members(&carol, "lab").await.into_iter().filter(|m| m.admin).map(|m| m.name).collect();
    assert_eq!(admins, ["bob"]);
    assert_eq!(room_info(&carol, "lab").await.admin, "bob");
    assert_eq!(
        alice.err(Request::Kick { room: "lab".into(), user: "carol".into() }).await,
        ErrorCode::NotRoomAdmin
    );
    bob.ok(Request::Kick { room: "lab".into(), user: "carol".into() }).await;
    server.stop().await;
}

#[tokio::test]
async fn admin_must_hand_over_before_leaving_a_room_with_others() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.join("lab").await;

    assert_eq!(alice.err(Request::LeaveRoom { name: "lab".into() }).await, ErrorCode::AdminMustHandOver);
    assert_eq!(member_names(&members(&bob, "lab").await), ["alice", "bob"]);
    alice.ok(Request::HandOverAdmin { room: "lab".into(), user: "bob".into() }).await;
    alice.ok(Request::LeaveRoom { name: "lab".into() }).await;
    assert_eq!(member_names(&members(&bob, "lab").await), ["bob"]);
    // The last member may leave, admin or not.
    bob.ok(Request::LeaveRoom { name: "lab".into() }).await;
    server.stop().await;
}

#[tokio::test]
async fn members_see_joins_leaves_and_kicks() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    alice.create_room("lab").await;
    let system = |from: &'static str, event: SystemEvent| {
        move |e: &Event| {
            matches!(e, Event::Message { message } if message.conv == Conv::room("lab")
                && message.from == from && message.body == Body::System { event: event.clone() })
        }
    };

    bob.join("lab").await;
    alice.expect_event("bob joined", system("bob", SystemEvent::Joined)).await;
    carol.join("lab").await;
    alice.expect_event("carol joined", system("carol", SystemEvent::Joined)).await;
    bob.ok(Request::LeaveRoom { name: "lab".into() }).await;
    alice.expect_event("bob left", system("bob", SystemEvent::Left)).await;
    alice.ok(Request::Kick { room: "lab".into(), user: "carol".into() }).await;
    alice.expect_event("carol kicked", system("alice", SystemEvent::Kicked { user: "carol".into() })).await;
    server.stop().await;
}

#[tokio::test]
async fn rooms_per_user_are_limited() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        // The lobby counts: one room of one's own on top of it.
        c.max_rooms_per_user = 2;
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.create_room("one").await;
    let code =
        alice.err(Request::CreateRoom { name: "two".into(), topic: String::new(), password: None }).await;
    assert_eq!(code, ErrorCode::TooManyRooms);
    bob.create_room("two").await;
    assert_eq!(
        alice.err(Request::JoinRoom { name: "two".into(), password: None }).await,
        ErrorCode::TooManyRooms
    );
    alice.ok(Request::LeaveRoom { name: "one".into() }).await;
    alice.join("two").await;
    server.stop().await;
}
