mod common;

use classchat_wire::{Request, Response};
use common::{TestServer, text_of};

#[tokio::test]
async fn two_users_chat_in_a_room() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let room = match alice
        .client
        .request(Request::CreateRoom { name: "lab-3".into(), topic: "Week 3".into(), password: None })
        .await
        .expect("create")
    {
        Response::Room { room } => room,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(room.admin, "alice");
    bob.client.request(Request::JoinRoom { name: "lab-3".into(), password: None }).await.expect("join");
    let sent = alice
        .client
        .request(Request::SendRoom { room: "lab-3".into(), text: "hi bob".into(), reply_to: None })
        .await
        .expect("send");
    assert!(matches!(sent, Response::Sent { .. }));
    bob.expect_event("alice's message", |e| text_of(e) == Some("hi bob")).await;
    let _ = &mut alice;
    server.stop().await;
}
