//! Server administration: the admin socket (the same commands as the console on the
//! server's terminal), the `admin` and `user` subcommands of the binary, and the protocol's
//! admin requests.

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use classchat_server::admin;
use classchat_wire::{Conv, ErrorCode, Event, Request, Response};
use common::{ChildServer, TestServer, TestUser, auth, code, eventually, run_cli, text_of};

async fn command(server: &TestServer, line: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), admin::send(server.data_dir(), line))
        .await
        .expect("the admin socket answered in time")
        .expect("the admin socket is up")
}

/// The line of `name` in the output of `users`.
fn user_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{out}"))
}

fn removed_from(room: &str) -> impl FnMut(&Event) -> bool {
    let room = room.to_owned();
    move |e| matches!(e, Event::RemovedFromRoom { room: r, .. } if *r == room)
}

async fn wait_closed(user: &TestUser) {
    tokio::time::timeout(Duration::from_secs(10), user.client.closed()).await.expect("connection closed");
}

#[tokio::test]
async fn admin_socket_lists_users_and_rooms() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.admins = vec!["alice".into()];
    })
    .await;
    let alice = server.user("alice").await;
    let carol = server.user("carol").await;
    alice.create_room("lab-7").await;
    carol.client.close().await;
    eventually(Duration::from_secs(10), "carol to go offline", || async {
        !user_line(&command(&server, "users").await, "carol").contains("online")
    })
    .await;

    let users = command(&server, "users").await;
    assert!(users.starts_with("2 users, 1 online"), "{users}");
    let line = user_line(&users, "alice");
    assert!(line.contains("online") && line.contains("admin"), "{line}");

    // The console's spelling, with a slash, works on the socket too.
    let rooms = command(&server, "/rooms").await;
    assert!(rooms.starts_with("2 rooms"), "{rooms}");
    let lab = rooms.lines().find(|l| l.trim_start().starts_with("lab-7 ")).expect("lab-7 is listed");
    assert!(lab.contains("members=1") && lab.contains("admin=alice"), "{lab}");
    assert!(rooms.lines().any(|l| l.trim_start().starts_with("lobby ")), "{rooms}");
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_is_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let path = admin::socket_path(server.data_dir());
    let mode = std::fs::metadata(&path).expect("the socket exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_help_and_unknown_commands() {
    let server = TestServer::start().await;
    let help = command(&server, "/help").await;
    for cmd in ["users", "rooms", "broadcast", "kick", "ban", "remove-room", "grant-admin", "shutdown"] {
        assert!(help.contains(cmd), "help lacks {cmd}:\n{help}");
    }
    assert!(command(&server, "frobnicate").await.starts_with("error:"));
    assert!(command(&server, "kick").await.starts_with("error:"), "kick needs a name");
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_broadcast_reaches_online_users() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let out = command(&server, "broadcast hello everyone").await;
    assert!(!out.starts_with("error"), "{out}");
    for user in [&mut alice, &mut bob] {
        let ev = user.expect_event("the announcement", |e| text_of(e) == Some("hello everyone")).await;
        let Event::Message { message } = ev else { unreachable!() };
        assert_eq!(message.conv, Conv::Announcements);
        assert_eq!(message.from, "ClassChat", "sent in the server's name");
    }
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_kick_disconnects_the_user() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let out = command(&server, "kick bob talking during the exam").await;
    assert!(!out.starts_with("error"), "{out}");
    let ev = bob.expect_event("the goodbye", |e| matches!(e, Event::Disconnect { .. })).await;
    assert!(matches!(ev, Event::Disconnect { reason } if reason.contains("talking during the exam")));
    wait_closed(&bob).await;
    alice
        .expect_event(
            "bob offline",
            |e| matches!(e, Event::Presence { user, online: false } if user == "bob"),
        )
        .await;
    // The app cannot slip back in with its saved login: the resume token was revoked.
    let (c, _events) = server.connect().await;
    assert_eq!(code(c.resume("bob", &bob.welcome.resume_token, "dev-1").await), ErrorCode::BadToken);
    // A kick is not a ban: the password still works.
    server.login("bob", "dev-1").await;
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_ban_keeps_the_account_out() {
    let server = TestServer::start().await;
    let mut bob = server.user("bob").await;
    let out = command(&server, "ban bob").await;
    assert!(!out.starts_with("error"), "{out}");
    bob.expect_event("the goodbye", |e| matches!(e, Event::Disconnect { .. })).await;
    wait_closed(&bob).await;

    let (client, _events) = server.connect().await;
    assert_eq!(code(client.login("bob", &auth("bob"), "dev-1").await), ErrorCode::AccountBanned);
    let token = bob.welcome.resume_token.clone();
    assert_eq!(code(client.resume("bob", &token, "dev-1").await), ErrorCode::AccountBanned);

    command(&server, "unban bob").await;
    server.login("bob", "dev-1").await;
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_removes_a_room() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    alice.say("lab", "soon gone").await;

    assert!(command(&server, "remove-room lobby").await.starts_with("error"), "the lobby stays");
    let out = command(&server, "remove-room lab").await;
    assert!(!out.starts_with("error"), "{out}");
    alice.expect_event("lab removed", removed_from("lab")).await;
    bob.expect_event("lab removed", removed_from("lab")).await;
    let Response::Rooms { rooms } = alice.ok(Request::ListRooms).await else { panic!("expected Rooms") };
    assert!(!rooms.iter().any(|r| r.name == "lab"), "{rooms:?}");
    let code = alice.err(Request::History { conv: Conv::room("lab"), before: None, limit: 10 }).await;
    assert_eq!(code, ErrorCode::NoSuchRoom);
    // The name is free again, and the old history does not come back with it.
    alice.create_room("lab").await;
    let Response::History { messages, .. } =
        alice.ok(Request::History { conv: Conv::room("lab"), before: None, limit: 10 }).await
    else {
        panic!("expected History")
    };
    assert!(messages.iter().all(|m| text_of(&Event::Message { message: m.clone() }).is_none()));
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_grants_server_admin() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let kick = || Request::AdminKick { user: "alice".into(), reason: String::new() };
    assert_eq!(bob.err(kick()).await, ErrorCode::NotServerAdmin);
    // The refused kick had no effect.
    alice.ok(Request::Ping).await;
    assert!(!alice.client.is_closed());

    let out = command(&server, "grant-admin bob").await;
    assert!(!out.starts_with("error"), "{out}");
    bob.ok(kick()).await;
    wait_closed(&alice).await;
    assert!(server.login("bob", "dev-2").await.welcome.server_admin);
    server.stop().await;
}

/// Every admin request from an ordinary user is refused and changes nothing.
#[tokio::test]
async fn admin_requests_need_a_server_admin() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.create_room("lab").await;
    let refused = [
        Request::AdminKick { user: "alice".into(), reason: "x".into() },
        Request::AdminBan { user: "alice".into(), reason: "x".into() },
        Request::AdminUnban { user: "alice".into() },
        Request::AdminRemoveRoom { name: "lab".into() },
    ];
    for req in refused {
        let what = format!("{req:?}");
        assert_eq!(bob.err(req).await, ErrorCode::NotServerAdmin, "{what}");
    }
    alice.ok(Request::Ping).await;
    assert!(!alice.client.is_closed(), "alice was not kicked");
    let users = command(&server, "users").await;
    assert!(!user_line(&users, "alice").contains("banned"), "{users}");
    alice.say("lab", "the room is still here").await;
    server.stop().await;
}

#[tokio::test]
async fn admin_socket_shutdown_stops_the_server() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    command(&server, "shutdown").await;
    alice.expect_event("the goodbye", |e| matches!(e, Event::Disconnect { .. })).await;
    server.stop().await;
}

/// `classchat-server admin …` reaches a running server (a child process) through the
/// socket in its data dir.
#[tokio::test]
async fn admin_subcommand_reaches_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = ChildServer::spawn(dir.path()).await;
    let (client, mut events) = child.connect().await;
    client.register("alice", &auth("alice"), "dev-1").await.expect("register");

    let data = dir.path().as_os_str();
    let (ok, out, err) = run_cli(&["admin".as_ref(), "users".as_ref(), "--data".as_ref(), data]).await;
    assert!(ok, "admin users failed: {err}");
    assert!(user_line(&out, "alice").contains("online"), "{out}");

    let args: [&OsStr; 5] = ["admin".as_ref(), "broadcast".as_ref(), "hi".as_ref(), "--data".as_ref(), data];
    let (ok, _, err) = run_cli(&args).await;
    assert!(ok, "admin broadcast failed: {err}");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.recv().await {
            if text_of(&ev) == Some("hi") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "the broadcast arrived");
    child.kill9().await;

    // Nothing listens any more: the subcommand fails and says so.
    let (ok, _, err) = run_cli(&["admin".as_ref(), "users".as_ref(), "--data".as_ref(), data]).await;
    assert!(!ok && err.contains("no server is running"), "{err}");
}

/// `classchat-server user grant-admin NAME` works on the data dir of a stopped server.
#[tokio::test]
async fn user_grant_admin_subcommand_works_offline() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    assert!(!alice.welcome.server_admin);
    drop(alice);
    let dir = server.stop().await;

    let data = dir.path().as_os_str();
    let (ok, out, err) =
        run_cli(&["user".as_ref(), "grant-admin".as_ref(), "alice".as_ref(), "--data".as_ref(), data]).await;
    assert!(ok, "grant-admin failed: {err}");
    assert!(out.contains("alice is now a server admin"), "{out}");
    let (ok, _, err) =
        run_cli(&["user".as_ref(), "grant-admin".as_ref(), "nobody".as_ref(), "--data".as_ref(), data]).await;
    assert!(!ok && err.contains("nobody"), "an unknown name fails: {err}");

    let server = TestServer::start_with(dir, |_| {}).await;
    let alice = server.login("alice", "dev-1").await;
    assert!(alice.welcome.server_admin);
    alice.ok(Request::Broadcast { text: "as an instructor".into() }).await;
    server.stop().await;
}

/// `public_addresses` (here from the configuration) makes the server hand out one invite
/// that lists every node, in order, pinned to its key; students paste that one link.
#[tokio::test]
async fn invite_lists_every_public_address_of_a_server_of_several_nodes() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.public_addresses = vec!["node1.example.edu".into(), "[2001:db8::2]:9000".into()];
    })
    .await;
    let out = command(&server, "invite").await;
    let links: Vec<_> = out.lines().filter(|l| l.trim_start().starts_with("classchat://")).collect();
    assert_eq!(links.len(), 1, "one invite for the whole server:\n{out}");
    let invite = classchat_wire::invite::Invite::parse(links[0]).expect("the printed invite parses");
    assert_eq!(invite.addrs(), ["node1.example.edu:7420", "[2001:db8::2]:9000"]);
    assert_eq!(&invite.fingerprint, common::server_key().fingerprint());
    server.stop().await;
}

/// `--public-address` is checked like an invite: a repeated node is refused at start-up,
/// with the reason.
#[tokio::test]
async fn a_bad_public_address_on_the_command_line_is_refused_with_the_reason() {
    let args = ["--public-address", "lab:7420", "--public-address", "LAB", "config"];
    let (ok, _, err) = run_cli(&args.map(OsStr::new)).await;
    assert!(!ok, "accepted a repeated node");
    assert!(err.contains("public_addresses: the invite lists LAB:7420 twice"), "{err}");
    let (ok, _, err) = run_cli(&["--public-address", "lab:0", "config"].map(OsStr::new)).await;
    assert!(!ok && err.contains("not host or host:port"), "{err}");
}
