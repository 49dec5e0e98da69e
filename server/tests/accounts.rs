//! Registration, login, throttling, resume tokens, and several devices per user.

mod common;

use classchat_wire::{ErrorCode, Request};
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

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.max_failed_logins_per_account = 3;
    })
    .await;
    let _alice = server.user("alice").await;
    let (client, _events) = server.connect().await;
    for _ in 0..3 {
        let result = client.login("alice", &auth("guess"), "dev-2").await;
        assert_eq!(code(result), ErrorCode::BadCredentials);
    }
    // Now even the right password is refused until the window passes.
    let result = client.login("alice", &auth("alice"), "dev-2").await;
    assert_eq!(code(result), ErrorCode::Throttled);
    // Another account from the same address is not affected (the address budget is larger).
    let _bob = server.user("bob").await;
    server.login("bob", "dev-2").await;
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
    let result = client.request(Request::SendRoom { room: "lobby".into(), text: "hi".into() }).await;
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
