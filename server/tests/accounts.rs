//! Registration, login, throttling, resume tokens, and several devices per user.

mod common;

use std::time::Duration;

use classchat_wire::{ClientMsg, ErrorCode, Request, ServerMsg};
use common::{TestServer, auth, code, text_of};

#[tokio::test]
async fn taken_username_is_refused_in_any_case() {
    let server = TestServer::start().await;
    let _alice = server.user("alice").await;
    for name in ["alice", "Alice", "ALICE"] {
        let (client, _events) = server.connect().await;
        let result = client.register(name, &auth("someone else"), "dev-1").await;
        assert_eq!(code(result), ErrorCode::UsernameTaken, "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn invalid_usernames_are_refused() {
    let server = TestServer::start().await;
    let too_long = "x".repeat(33);
    for name in ["", "bob smith", "émile", "../etc", "a:b", too_long.as_str()] {
        let (client, _events) = server.connect().await;
        let result = client.register(name, &auth(name), "dev-1").await;
        assert_eq!(code(result), ErrorCode::InvalidUsername, "{name:?}");
    }
    // The longest valid name is fine.
    let (client, _events) = server.connect().await;
    client.register(&"x".repeat(32), &auth("x"), "dev-1").await.expect("32 characters are allowed");
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let server = TestServer::start().await;
    let _alice = server.user("alice").await;
    let (client, _events) = server.connect().await;
    let result = client.login("alice", &auth("not alice"), "dev-2").await;
    assert_eq!(code(result), ErrorCode::BadCredentials);
    // An unknown name gets the same answer, so names cannot be probed.
    let result = client.login("mallory", &auth("mallory"), "dev-2").await;
    assert_eq!(code(result), ErrorCode::BadCredentials);
    // The connection is still usable: the right password works.
    client.login("alice", &auth("alice"), "dev-2").await.expect("login");
    server.stop().await;
}

/// A password login to `name` from the loopback address `from` (127.0.0.2 and so on are
/// other machines to the server): the error code, or `None` on success.
async fn login_from(server: &TestServer, from: [u8; 4], name: &str, key: [u8; 32]) -> Option<ErrorCode> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(std::net::SocketAddr::from((from, 0))).expect("bind a loopback source address");
    let stream = socket.connect(server.addr).await.expect("connect");
    let (r, w) = stream.into_split();
    let (mut reader, mut writer) = common::raw_handshake(r, w).await;
    let body = Request::Login { username: name.into(), auth_key: key.to_vec(), device: "dev-9".into() };
    writer.send(&ClientMsg::Request { id: 1, body }).await.expect("send");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), reader.recv::<ServerMsg>())
            .await
            .expect("a reply in time")
            .expect("read")
            .expect("the server answers before closing");
        match msg {
            ServerMsg::Ok { id: 1, .. } => return None,
            ServerMsg::Err { id: 1, code, .. } => return Some(code),
            _ => {}
        }
    }
}

#[tokio::test]
async fn wrong_passwords_throttle_the_attacker_but_not_the_owner_on_their_usual_machine() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.max_failed_logins_per_account = 3;
        c.max_failed_logins_per_address = 6;
    })
    .await;
    // alice's usual machine is 127.0.0.1, where she registered.
    let alice = server.user("alice").await;
    let token = alice.welcome.resume_token.clone();
    let attacker = [127, 0, 0, 2];
    for _ in 0..3 {
        assert_eq!(
            login_from(&server, attacker, "alice", auth("guess")).await,
            Some(ErrorCode::BadCredentials)
        );
    }
    // From a new address even the right password now waits for the window to pass...
    assert_eq!(login_from(&server, attacker, "alice", auth("alice")).await, Some(ErrorCode::Throttled));
    assert_eq!(login_from(&server, [127, 0, 0, 3], "alice", auth("alice")).await, Some(ErrorCode::Throttled));
    // ...but alice gets in from her usual machine, with her password or her saved login.
    server.login("alice", "dev-2").await;
    alice.client.close().await;
    let (client, _events) = server.connect().await;
    client.resume("alice", &token, "dev-1").await.expect("a valid resume token always gets in");

    // The attacker's address pays for every account it tries: past its budget (6) even a
    // right password from there is refused for an account never attacked, which logs in
    // from anywhere else.
    let _bob = server.user("bob").await;
    let _dave = server.user("dave").await;
    for _ in 0..3 {
        assert_eq!(
            login_from(&server, attacker, "bob", auth("guess")).await,
            Some(ErrorCode::BadCredentials)
        );
    }
    assert_eq!(login_from(&server, attacker, "dave", auth("dave")).await, Some(ErrorCode::Throttled));
    assert_eq!(login_from(&server, [127, 0, 0, 4], "dave", auth("dave")).await, None);
    server.login("bob", "dev-2").await;
    // Bad resume tokens charge the address only, never the account: more of them than
    // the account's budget, and carol still logs in from a machine she never used.
    let carol = server.user("carol").await;
    carol.client.close().await;
    for _ in 0..4 {
        let (client, _events) = server.connect().await;
        assert_eq!(code(client.resume("carol", &[0u8; 32], "dev-1").await), ErrorCode::BadToken);
    }
    assert_eq!(login_from(&server, [127, 0, 0, 5], "carol", auth("carol")).await, None);
    server.stop().await;
}

#[tokio::test]
async fn resume_token_works_and_a_new_login_replaces_it() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let first = alice.welcome.resume_token.clone();
    alice.client.close().await;

    // The welcome's token logs in again on the same device without the password.
    let (client, _events) = server.connect().await;
    let resumed = client.resume("alice", &first, "dev-1").await.expect("resume");
    assert_eq!(resumed.user, "alice");
    assert_ne!(resumed.resume_token, first, "a resume issues a fresh token");
    client.close().await;

    // A password login on the same device replaces the token: the old ones stop working.
    let again = server.login("alice", "dev-1").await;
    for old in [&first, &resumed.resume_token] {
        let (client, _events) = server.connect().await;
        let result = client.resume("alice", old, "dev-1").await;
        assert_eq!(code(result), ErrorCode::BadToken);
    }
    let (client, _events) = server.connect().await;
    client.resume("alice", &again.welcome.resume_token, "dev-1").await.expect("the newest token works");
    server.stop().await;
}

#[tokio::test]
async fn a_resume_whose_welcome_was_lost_works_again_with_the_token_it_presented_within_the_grace() {
    let server =
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| c.resume_grace_ms = 1_500).await;
    let alice = server.user("alice").await;
    let first = alice.welcome.resume_token.clone();
    alice.client.close().await;

    // The server rotated to `lost`, but the client never got that welcome (its connection
    // died): it still holds `first`, which keeps working for the grace, and each use
    // hands out a fresh token.
    let (client, _events) = server.connect().await;
    let lost = client.resume("alice", &first, "dev-1").await.expect("resume").resume_token;
    client.close().await;
    let (client, _events) = server.connect().await;
    let again = client.resume("alice", &first, "dev-1").await.expect("the token it holds still works");
    assert_ne!(again.resume_token, lost);
    client.close().await;
    // A token that was rotated away without being presented (`lost`) is gone at once.
    let (client, _events) = server.connect().await;
    assert_eq!(code(client.resume("alice", &lost, "dev-1").await), ErrorCode::BadToken);
    client.close().await;

    // After the grace, only the newest token works.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let (client, _events) = server.connect().await;
    assert_eq!(code(client.resume("alice", &first, "dev-1").await), ErrorCode::BadToken);
    client.close().await;
    let (client, _events) = server.connect().await;
    client.resume("alice", &again.resume_token, "dev-1").await.expect("the newest token works");
    client.close().await;

    // A password login on the device ends the grace of the token `resume` presented.
    server.login("alice", "dev-1").await;
    let (client, _events) = server.connect().await;
    assert_eq!(code(client.resume("alice", &again.resume_token, "dev-1").await), ErrorCode::BadToken);
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn every_device_of_a_user_receives() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut laptop = server.user("bob").await;
    let mut desktop = server.login("bob", "dev-2").await;
    alice.say("lobby", "to both of you").await;
    laptop.expect_event("the message on dev-1", |e| text_of(e) == Some("to both of you")).await;
    desktop.expect_event("the message on dev-2", |e| text_of(e) == Some("to both of you")).await;
    // What one device sends, the other sees too.
    laptop.say("lobby", "from the laptop").await;
    desktop.expect_event("bob's own message", |e| text_of(e) == Some("from the laptop")).await;
    server.stop().await;
}

#[tokio::test]
async fn requests_need_a_login() {
    let server = TestServer::start().await;
    let (client, _events) = server.connect().await;
    let result =
        client.request(Request::SendRoom { room: "lobby".into(), text: "hi".into(), reply_to: None }).await;
    assert_eq!(code(result), ErrorCode::NotLoggedIn);
    server.stop().await;
}

#[tokio::test]
async fn logout_forgets_the_resume_token() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let token = alice.welcome.resume_token.clone();
    alice.ok(Request::Logout).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), alice.client.closed())
        .await
        .expect("the server closes the connection after a logout");
    let (client, _events) = server.connect().await;
    assert_eq!(code(client.resume("alice", &token, "dev-1").await), ErrorCode::BadToken);
    server.stop().await;
}
