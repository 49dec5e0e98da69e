//! Messages as people expect them (issue 16) in the real app against the real server:
//! replies and jumping to the original, edits (Up in the composer, live and after a
//! restart), deletes, reactions, typing, @mention completion, and message search.

mod common;

use classchat::ClassChatApp;
use classchat_wire::{Body, Conv, Event, MessageId, Request, Response};
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

fn lobby() -> Conv {
    Conv::room("lobby")
}

fn send(h: &mut Harness<'static, ClassChatApp>, text: &str) {
    type_into(h, "Message", text);
    h.key_press(egui::Key::Enter);
    settle(h);
}

/// Sends `text` to the lobby from a wire user (waiting out the rate limit); returns its id.
fn wire_send(
    rt: &tokio::runtime::Runtime,
    u: &WireUser,
    text: &str,
    reply_to: Option<MessageId>,
) -> MessageId {
    let request = Request::SendRoom { room: "lobby".into(), text: text.into(), reply_to };
    for _ in 0..100 {
        match rt.block_on(u.client.request(request.clone())) {
            Ok(Response::Sent { id, .. }) => return id,
            Err(classchat_wire::Error::Server { code: classchat_wire::ErrorCode::RateLimited, .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => panic!("send failed: {other:?}"),
        }
    }
    panic!("still rate limited after 10 s")
}

fn wire_request(rt: &tokio::runtime::Runtime, u: &WireUser, request: Request) -> Response {
    rt.block_on(u.client.request(request.clone())).unwrap_or_else(|e| panic!("{request:?} failed: {e}"))
}

/// Hovers the message whose text contains `text` until its toolbar shows (the view may
/// still move as rows arrive, so the pointer is put on it again each frame).
fn hover_message(h: &mut Harness<'static, ClassChatApp>, text: &str) {
    wait_for_text(h, text);
    wait_until(h, "the message's toolbar", |h| {
        h.get_by_label_contains(text).hover();
        has_text(h, "More reactions to")
    });
}

/// The next event matching `pick` that `u` receives, within the test deadline.
fn next_event<T>(
    h: &mut Harness<'static, ClassChatApp>,
    u: &mut WireUser,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        h.step();
        while let Ok(ev) = u.events.try_recv() {
            if let Some(t) = pick(&ev) {
                return t;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{} never got the event", u.name);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn message_text(h: &Harness<'static, ClassChatApp>, conv: &Conv, id: MessageId) -> Option<String> {
    h.state().model.conversation(conv)?.get(id).map(|m| m.content.text().to_owned())
}

#[test]
fn a_reply_quotes_the_original_and_its_quote_jumps_there_loading_older_history() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let mut bob = rt.block_on(wire_user(&addr, "bob"));

    // Alice answers bob from the toolbar: the composer shows what she answers, and the
    // server stores the reply's link.
    let question = wire_send(&rt, &bob, "does lab3 need the header file?", None);
    hover_message(&mut h, "does lab3 need the header file?");
    click(&mut h, "Reply to bob");
    wait_for_text(&mut h, "Replying to bob: does lab3 need the header file?");
    send(&mut h, "yes, include it");
    let reply = rt.block_on(bob.expect_text("yes, include it"));
    assert_eq!(reply.reply_to, Some(question), "the reply names the question");
    wait_for_text(&mut h, "Reply to bob: does lab3 need the header file?");
    assert!(!has_text(&h, "Replying to bob"), "the reply bar goes once sent");

    // A reply to a message far up the history: after the conversation is reloaded, only
    // the newest page is there; the quote loads older pages until the original shows.
    let old = wire_send(&rt, &bob, "the very first question (old-7731)", None);
    for i in 0..230 {
        wire_send(&rt, &bob, &format!("filler {i}"), None);
    }
    wire_send(&rt, &bob, "answering the old one", Some(old));
    wait_for_text(&mut h, "answering the old one");
    h.state_mut().model.reload(&lobby());
    wait_for_text(&mut h, "answering the old one");
    assert!(message_text(&h, &lobby(), old).is_none(), "the old question is not loaded yet");
    click(&mut h, "Reply to an earlier message");
    wait_until(&mut h, "the original to load and show", |h| {
        has_text(h, "the very first question (old-7731)") && h.state().rich.jump.is_none()
    });
}

#[test]
fn edits_and_deletes_show_live_up_edits_your_last_message_and_an_offline_reader_sees_the_latest() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let mut bob = rt.block_on(wire_user(&addr, "bob"));

    // Bob's edit and delete reach the open app.
    let typo = wire_send(&rt, &bob, "teh deadline is friday", None);
    wait_for_text(&mut h, "teh deadline is friday");
    wire_request(
        &rt,
        &bob,
        Request::Edit { id: typo, body: Body::Text { text: "the deadline is friday".into() } },
    );
    wait_for_text(&mut h, "the deadline is friday");
    wait_for_text(&mut h, "(edited)");
    assert!(!has_text(&h, "teh deadline"), "the old text is gone");
    wire_request(&rt, &bob, Request::Delete { id: typo, proof: None });
    wait_for_text(&mut h, "This message was deleted.");
    assert!(!has_text(&h, "the deadline is friday"));

    // Up in the empty composer edits alice's last message; Enter saves it.
    send(&mut h, "see you at 3");
    let mine = rt.block_on(bob.expect_text("see you at 3")).id;
    h.get_by_label("Message").focus();
    h.step();
    h.key_press(egui::Key::ArrowUp);
    wait_for_text(&mut h, "Editing your message: see you at 3");
    h.get_by_label("Message").type_text(" (room 4)");
    settle(&mut h);
    h.key_press(egui::Key::Enter);
    let edited = next_event(&mut h, &mut bob, |ev| match ev {
        Event::Edited { id, body: Body::Text { text }, .. } if *id == mine => Some(text.clone()),
        _ => None,
    });
    assert_eq!(edited, "see you at 3 (room 4)");
    wait_until(&mut h, "alice's own view to show the edit", |h| {
        message_text(h, &lobby(), mine).as_deref() == Some("see you at 3 (room 4)")
    });
    assert!(!has_text(&h, "Editing your message"), "the edit bar goes once saved");

    // Alice quits; bob edits again; her next login shows the latest text.
    drop(h);
    let note = wire_send(&rt, &bob, "quiz on tuesday", None);
    wire_request(&rt, &bob, Request::Edit { id: note, body: Body::Text { text: "quiz on thursday".into() } });
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    submit_login(&mut h, "alice", "correct horse", false);
    wait_for_text(&mut h, "Signed in as alice");
    wait_for_text(&mut h, "quiz on thursday");
    assert!(!has_text(&h, "quiz on tuesday"));
}

#[test]
fn reactions_toggle_with_counts_and_say_who_reacted() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let mut bob = rt.block_on(wire_user(&addr, "bob"));

    let id = wire_send(&rt, &bob, "slides are up", None);
    hover_message(&mut h, "slides are up");
    click(&mut h, "React 🎉 to bob's message");
    let users = next_event(&mut h, &mut bob, |ev| match ev {
        Event::Reactions { id: i, reactions, .. } if *i == id => {
            reactions.iter().find(|r| r.emoji == "🎉").map(|r| r.users.clone())
        }
        _ => None,
    });
    assert_eq!(users, ["alice"]);
    wait_for_text(&mut h, "🎉 1 (you): Take back your reaction");

    wire_request(&rt, &bob, Request::React { id, emoji: "🎉".into(), on: true });
    wait_for_text(&mut h, "🎉 2 (you and bob): Take back your reaction");
    // Clicking the chip takes alice's reaction back; bob's stays.
    click(&mut h, "🎉 2 (you and bob): Take back your reaction");
    wait_for_text(&mut h, "🎉 1 (bob): Add your reaction");
}

#[test]
fn typing_shows_until_the_message_comes_and_the_app_tells_others() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let mut bob = rt.block_on(wire_user(&addr, "bob"));

    rt.block_on(bob.client.typing(lobby())).expect("typing goes out");
    wait_for_text(&mut h, "bob is typing…");
    wire_send(&rt, &bob, "here it is", None);
    wait_for_text(&mut h, "here it is");
    assert!(!has_text(&h, "bob is typing"), "the message ends bob's typing line");

    // Alice types (without sending): bob hears of it.
    type_into(&mut h, "Message", "hmm");
    let who = next_event(&mut h, &mut bob, |ev| match ev {
        Event::Typing { conv, user } if *conv == lobby() => Some(user.clone()),
        _ => None,
    });
    assert_eq!(who, "alice");
}

#[test]
fn at_completes_a_member_name_with_tab() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let _bob = rt.block_on(wire_user(&addr, "bobby_tables"));
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    wait_until(&mut h, "bobby in the member list", |h| {
        h.state().model.members.get("lobby").is_some_and(|m| m.iter().any(|m| m.name == "bobby_tables"))
    });
    type_into(&mut h, "Message", "thanks @bob");
    wait_for_text(&mut h, "@bobby_tables");
    h.key_press(egui::Key::Tab);
    settle(&mut h);
    h.key_press(egui::Key::Enter);
    settle(&mut h);
    wait_until(&mut h, "the completed mention to be sent", |h| {
        h.state()
            .model
            .conversation(&lobby())
            .is_some_and(|c| c.messages().iter().any(|m| m.content.text() == "thanks @bobby_tables"))
    });
}
#[test]
fn search_finds_room_messages_highlights_them_and_opens_the_conversation_there() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let bob = rt.block_on(wire_user(&addr, "bob"));

    let hit = wire_send(&rt, &bob, "my lab3 segfaults when the list is empty", None);
    for i in 0..150 {
        wire_send(&rt, &bob, &format!("unrelated chatter {i}"), None);
    }
    wire_send(&rt, &bob, "\"quotes\" and * stars (((", None);
    wait_for_text(&mut h, "unrelated chatter 149");

    // The sidebar's box searches everywhere.
    type_into(&mut h, "Search all messages", "segfault");
    h.key_press(egui::Key::Enter);
    wait_for_text(&mut h, "1 message for “segfault”");
    let result = "Result in #lobby from bob: my lab3 segfaults when the list is empty";
    wait_for_text(&mut h, result);
    click(&mut h, result);
    wait_until(&mut h, "the view to bring the hit into view", |h| {
        h.state().rich.jump.is_none() && h.state().rich.flash.is_some_and(|(id, _)| id == hit)
    });
    assert!(has_text(&h, "my lab3 segfaults when the list is empty"));

    // Ctrl+F searches the open conversation; quotes, stars and brackets are just text.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    settle(&mut h);
    assert!(h.state().rich.search.open && h.state().rich.search.scope == Some(lobby()));
    h.state_mut().rich.search.query.clear();
    type_into(&mut h, "Search messages", "\"quotes\" * (((");
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "the search to answer", |h| {
        !h.state().rich.search.busy && h.state().rich.search.ran.is_some()
    });
    assert_eq!(h.state().rich.search.error, None, "any text is a valid query");
    // (The result's name is its words without markdown marks such as `*`.)
    assert!(has_text(&h, "Result in #lobby from bob: \"quotes\" and stars ((("), "{:?}", labels(&h));
}
