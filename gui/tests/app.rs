//! The whole app in an egui_kittest harness, against a real in-process server.

mod common;

use std::net::SocketAddr;

use classchat_wire::{Conv, Request, Response};
use common::*;
use egui_kittest::kittest::{NodeT, Queryable};

#[test]
fn register_join_a_room_send_and_receive() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut bob = rt.block_on(wire_user(&addr, "bob"));
    rt.block_on(bob.client.request(Request::CreateRoom {
        name: "chemistry".into(),
        topic: "Lab 3".into(),
        password: None,
    }))
    .expect("bob creates a room");

    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");

    click(&mut h, "🔍 Browse rooms");
    wait_for_text(&mut h, "Join #chemistry");
    click(&mut h, "Join #chemistry");
    wait_until(&mut h, "chemistry to be the open conversation", |h| {
        h.state().model.current == Some(Conv::room("chemistry"))
    });
    assert!(h.state().dialog.is_none(), "the browse dialog closes after joining");
    wait_for_text(&mut h, "bob, online, room admin");

    type_into(&mut h, "Message", "hello from alice");
    h.key_press(egui::Key::Enter);
    wait_for_text(&mut h, "hello from alice");
    let got = rt.block_on(bob.expect_text("hello from alice"));
    assert_eq!(got.from, "alice");
    assert_eq!(got.conv, Conv::room("chemistry"));
    // Acknowledged: no longer pending.
    wait_until(&mut h, "the message to be acknowledged", |h| h.state().model.pending_count() == 0);
    settle(&mut h);
    assert!(!has_text(&h, "(sending)"), "no pending mark once acknowledged");

    rt.block_on(bob.client.request(Request::SendRoom {
        room: "chemistry".into(),
        text: "hello from bob".into(),
        reply_to: None,
    }))
    .expect("bob sends");
    wait_for_text(&mut h, "hello from bob");
    assert_eq!(h.query_all_by_label("hello from alice").count(), 1);
}

#[test]
fn unread_count_rises_in_another_room() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let bob = rt.block_on(wire_user(&addr, "bob"));
    rt.block_on(bob.client.request(Request::CreateRoom {
        name: "physics".into(),
        topic: String::new(),
        password: None,
    }))
    .expect("bob creates a room");

    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    click(&mut h, "🔍 Browse rooms");
    wait_for_text(&mut h, "Join #physics");
    click(&mut h, "Join #physics");
    wait_until(&mut h, "physics to open", |h| h.state().model.current == Some(Conv::room("physics")));
    // Back to the lobby; physics is now in the background.
    click(&mut h, "#lobby");
    wait_until(&mut h, "lobby to open", |h| h.state().model.current == Some(Conv::room("lobby")));
    wait_for_text(&mut h, "bob, online");

    for text in ["first", "second"] {
        rt.block_on(bob.client.request(Request::SendRoom {
            room: "physics".into(),
            text: text.into(),
            reply_to: None,
        }))
        .expect("bob sends");
    }
    wait_for_text(&mut h, "#physics, 2 unread");
    rt.block_on(bob.client.request(Request::SendRoom {
        room: "physics".into(),
        text: "hey @alice".into(),
        reply_to: None,
    }))
    .expect("bob mentions alice");
    wait_for_text(&mut h, "#physics, 3 unread, mentions you");

    // Alt+Down moves to the next conversation in the sidebar: lobby, then physics.
    h.key_press_modifiers(egui::Modifiers::ALT, egui::Key::ArrowDown);
    wait_until(&mut h, "Alt+Down to open physics", |h| {
        h.state().model.current == Some(Conv::room("physics"))
    });
    wait_for_text(&mut h, "hey @alice");
    assert!(!has_text(&h, "unread"), "opening the room marks it read");
}

#[test]
fn browse_and_join_a_locked_room_with_wrong_then_right_password() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let bob = rt.block_on(wire_user(&addr, "bob"));
    rt.block_on(bob.client.request(Request::CreateRoom {
        name: "exam-prep".into(),
        topic: "staff only".into(),
        password: Some("s3cret-pass".into()),
    }))
    .expect("bob creates a locked room");

    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    click(&mut h, "🔍 Browse rooms");
    wait_for_text(&mut h, "Join #exam-prep");
    assert!(has_text(&h, "#exam-prep 🔒"), "the lock shows in the list");
    click(&mut h, "Join #exam-prep");
    wait_for_text(&mut h, "This room is locked");

    type_into(&mut h, "Room password", "guess");
    click(&mut h, "Join");
    wait_for_text(&mut h, "Wrong room password.");
    assert!(!h.state().model.rooms.contains_key("exam-prep"));

    // Clear the field (select all, then type over it).
    h.get_by_label("Room password").focus();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.step();
    h.get_by_label("Room password").type_text("s3cret-pass");
    settle(&mut h);
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "exam-prep to open", |h| h.state().model.current == Some(Conv::room("exam-prep")));
    assert!(h.state().dialog.is_none());
    wait_for_text(&mut h, "#exam-prep, locked");
}

#[test]
fn admin_kicks_a_member_who_then_sees_they_were_removed() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();

    let mut admin = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut admin, "alice", "correct horse");
    click(&mut admin, "➕ Create room");
    type_into(&mut admin, "Room name", "lab-3");
    type_into(&mut admin, "Topic (optional)", "Thursday lab");
    click(&mut admin, "Create");
    wait_until(&mut admin, "lab-3 to open", |h| h.state().model.current == Some(Conv::room("lab-3")));
    wait_for_text(&mut admin, "alice, online, room admin");

    let mut member = app(&rt, &dir.path().join("bob"), &addr);
    register(&mut member, "bob", "battery staple");
    click(&mut member, "🔍 Browse rooms");
    wait_for_text(&mut member, "Join #lab-3");
    click(&mut member, "Join #lab-3");
    wait_until(&mut member, "lab-3 to open", |h| h.state().model.current == Some(Conv::room("lab-3")));

    wait_for_text(&mut admin, "bob joined");
    wait_for_text(&mut admin, "bob, online");
    click(&mut admin, "Manage bob");
    click(&mut admin, "Kick bob");
    wait_for_text(&mut admin, "bob was removed by alice");

    wait_for_text(&mut member, "You were removed from #lab-3");
    assert!(!member.state().model.rooms.contains_key("lab-3"));
    wait_for_text(&mut member, "#lab-3, removed");
    assert!(has_text(&member, "Cannot send: You were removed"), "the composer says why");
}

#[test]
fn fingerprint_prompt_on_first_connect_and_warning_on_changed_key() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_dir = dir.path().join("server");
    let mut server = TestServer::start(&rt, &server_dir, server_key(), any_port());
    let addr = server.addr;
    let app_dir = dir.path().join("alice");

    let mut h = app(&rt, &app_dir, &addr.to_string());
    submit_login(&mut h, "alice", "correct horse", true);
    wait_for_text(&mut h, "Trust this server");
    let fp = fingerprint_of(server_key());
    assert!(has_text(&h, &format!("Server fingerprint {fp}")), "the real fingerprint shows");
    // Refusing sends nothing and says so next to the server field.
    click(&mut h, "Cancel");
    wait_for_text(&mut h, "was not trusted");
    assert_eq!(h.state().screen, classchat::app::Screen::Login);
    let known = std::fs::read_to_string(app_dir.join("known_servers")).unwrap_or_default();
    assert!(!known.contains(&fp.to_hex()));

    click(&mut h, "Create account");
    wait_for_text(&mut h, "Trust this server");
    click(&mut h, "Trust this server");
    wait_for_text(&mut h, "Signed in as alice");
    let known = std::fs::read_to_string(app_dir.join("known_servers")).expect("known servers saved");
    assert!(known.contains(&fp.to_hex()));
    drop(h);

    // The server comes back with another key on the same address.
    server.stop();
    let _server = TestServer::start(&rt, &server_dir, other_server_key(), addr);
    let mut h = app(&rt, &app_dir, &addr.to_string());
    submit_login(&mut h, "alice", "correct horse", false);
    wait_for_text(&mut h, "The server's key has CHANGED");
    assert!(has_text(&h, &format!("Previously trusted {fp}")));
    let new_fp = fingerprint_of(other_server_key());
    assert!(has_text(&h, &format!("Now presented {new_fp}")));
    // Accepting needs an explicit acknowledgement first.
    assert!(h.get_by_label("Trust the new key").accesskit_node().is_disabled(), "refused by default");
    click(&mut h, "Disconnect");
    wait_for_text(&mut h, "Refused: the server's key has changed");
    assert_eq!(h.state().screen, classchat::app::Screen::Login);
    assert!(h.state().model.me.is_none());

    // Explicitly accepting replaces the stored key and logs in.
    click(&mut h, "Log in");
    wait_for_text(&mut h, "The server's key has CHANGED");
    click(&mut h, "I checked the new fingerprint with the server's owner");
    click(&mut h, "Trust the new key");
    wait_for_text(&mut h, "Signed in as alice");
    let known = std::fs::read_to_string(app_dir.join("known_servers")).expect("known servers");
    assert!(known.contains(&new_fp.to_hex()) && !known.contains(&fp.to_hex()));
}

#[test]
fn login_errors_are_shown_next_to_their_fields() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    rt.block_on(wire_user(&addr, "taken"));

    let mut h = app(&rt, &dir.path().join("app"), &addr);
    // Checked before anything is sent.
    submit_login(&mut h, "bad name", "pw", true);
    wait_for_text(&mut h, "no spaces");
    wait_for_text(&mut h, "at least 8 characters");

    let mut h = app(&rt, &dir.path().join("app"), &addr);
    submit_login(&mut h, "taken", "long enough", true);
    wait_for_text(&mut h, "Trust this server");
    click(&mut h, "Trust this server");
    wait_for_text(&mut h, "That username is taken.");

    let mut h = app(&rt, &dir.path().join("app"), &addr);
    submit_login(&mut h, "taken", "not the password", false);
    wait_for_text(&mut h, "Wrong username or password.");

    let mut h = app(&rt, &dir.path().join("app"), "127.0.0.1:1");
    submit_login(&mut h, "someone", "long enough", false);
    wait_for_text(&mut h, "No ClassChat server is running at this address.");
}

#[test]
fn reconnect_after_server_restart_shows_missed_messages_once() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_dir = dir.path().join("server");
    let mut server = TestServer::start(&rt, &server_dir, server_key(), any_port());
    let addr = server.addr;
    let bob = rt.block_on(wire_user(&addr.to_string(), "bob"));

    let mut h = app(&rt, &dir.path().join("alice"), &addr.to_string());
    register(&mut h, "alice", "correct horse");
    rt.block_on(bob.client.request(Request::SendRoom {
        room: "lobby".into(),
        text: "before the restart".into(),
        reply_to: None,
    }))
    .expect("bob sends");
    wait_for_text(&mut h, "before the restart");
    drop(bob);

    // The server goes away: the app says so, keeps typed text, and refuses to send.
    server.stop();
    wait_for_text(&mut h, "Connection lost");
    wait_for_text(&mut h, "Cannot send: Offline");
    type_into(&mut h, "Message", "typed while offline");

    // While alice is away, the server runs elsewhere and bob writes to the lobby.
    let mut elsewhere = TestServer::start(&rt, &server_dir, server_key(), any_port());
    rt.block_on(async {
        let client = wire_login(&elsewhere.addr_string(), "bob", "wire-password-1").await.client;
        for text in ["missed one", "missed two"] {
            let reply = client
                .request(Request::SendRoom { room: "lobby".into(), text: text.into(), reply_to: None })
                .await;
            assert!(matches!(reply, Ok(Response::Sent { .. })), "{reply:?}");
        }
        client.close().await;
    });
    elsewhere.stop();

    // Back on the original address: alice resumes on her own and catches up.
    let _server = TestServer::start(&rt, &server_dir, server_key(), addr);
    wait_for_text(&mut h, "Connected to");
    wait_for_text(&mut h, "missed one");
    wait_for_text(&mut h, "missed two");
    // Let any duplicate arrive before counting.
    for _ in 0..20 {
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for text in ["before the restart", "missed one", "missed two"] {
        assert_eq!(h.query_all_by_label(text).count(), 1, "{text:?} shows exactly once");
    }
    // What was typed while offline is still there and goes out now.
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some("typed while offline"));
    h.get_by_label("Message").focus();
    h.step();
    h.key_press(egui::Key::Enter);
    wait_for_text(&mut h, "typed while offline");
    wait_until(&mut h, "the message to be acknowledged", |h| h.state().model.pending_count() == 0);
}

#[test]
fn older_history_loads_while_scrolling_up_and_nothing_repeats() {
    const COUNT: usize = 260;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&rt, &dir.path().join("server"), server_key(), any_port(), |c| {
        c.messages_per_second = 100_000;
        c.message_burst = 100_000;
    });
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let bob = rt.block_on(wire_user(&addr, "bob"));
    rt.block_on(bob.client.request(Request::CreateRoom {
        name: "log".into(),
        topic: String::new(),
        password: None,
    }))
    .expect("bob creates a room");
    for i in 0..COUNT {
        rt.block_on(bob.client.request(Request::SendRoom {
            room: "log".into(),
            text: format!("line {i:03}"),
            reply_to: None,
        }))
        .expect("bob sends");
    }
    // Alice joins afterwards: everything she sees comes from history pages.
    click(&mut h, "🔍 Browse rooms");
    wait_for_text(&mut h, "Join #log");
    click(&mut h, "Join #log");
    wait_for_text(&mut h, &format!("line {:03}", COUNT - 1));
    assert!(!has_text(&h, "line 000"), "only the newest page at first");

    // Scroll up until the beginning of the room is reached.
    let centre = egui::pos2(640.0, 300.0);
    wait_until(&mut h, "the start of the room after scrolling up", |h| {
        h.hover_at(centre);
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, 4000.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
        has_text(h, "This is the beginning of #log.")
    });
    let c = h.state().model.conversation(&Conv::room("log")).expect("log");
    let texts: Vec<&str> =
        c.messages().iter().map(|m| m.content.text()).filter(|t| t.starts_with("line ")).collect();
    let expected: Vec<String> = (0..COUNT).map(|i| format!("line {i:03}")).collect();
    assert_eq!(texts, expected, "every message once, in order");
    assert!(has_text(&h, "line 000"));
    assert!(!has_text(&h, &format!("line {:03}", COUNT - 1)), "only the rows in view are laid out");
}

#[test]
fn quick_switcher_opens_a_dm_and_escape_closes_dialogs() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut bob = rt.block_on(wire_user(&addr, "bob"));
    let mut bob_keys = rt.block_on(bob.publish_key());
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    wait_for_text(&mut h, "bob (online)");

    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::K);
    wait_until(&mut h, "the switcher to open", |h| {
        matches!(h.state().dialog, Some(classchat::ui::dialogs::Dialog::Switcher(_)))
    });
    settle(&mut h);
    h.get_by_label("Jump to").type_text("bob");
    settle(&mut h);
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "the DM with bob to open", |h| h.state().model.current == Some(Conv::direct("bob")));
    assert!(h.state().dialog.is_none());

    type_into(&mut h, "Message", "psst, bob");
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "the DM to be acknowledged", |h| h.state().model.pending_count() == 0);
    let (from, data) = bob.expect_dm(&mut h);
    assert_eq!(from, "alice");
    assert_eq!(rt.block_on(bob_keys.open(&bob.client, "alice", &data)).as_deref(), Ok("psst, bob"));
    rt.block_on(bob_keys.send(&bob.client, "alice", "got it")).expect("bob answers");
    wait_for_text(&mut h, "got it");
    wait_for_text(&mut h, "@bob");

    click(&mut h, "🔍 Browse rooms");
    assert!(h.state().dialog.is_some());
    h.key_press(egui::Key::Escape);
    wait_until(&mut h, "Esc to close the dialog", |h| h.state().dialog.is_none());
}

#[test]
fn a_message_sent_as_the_server_stops_arrives_once_after_the_reconnect() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let RestartableLab { mut server, server_dir, addr, alice: mut h } = restartable_lab(&rt, dir.path());

    type_into(&mut h, "Message", "racing the shutdown");
    h.key_press(egui::Key::Enter);
    h.step();
    // The message is on its way (or already stored) when the server goes down.
    server.stop();
    let _server = TestServer::start(&rt, &server_dir, server_key(), addr);
    wait_until(&mut h, "the message to be acknowledged after the reconnect", |h| {
        h.state().model.pending_count() == 0 && h.state().conn.is_online()
    });
    wait_for_text(&mut h, "racing the shutdown");
    assert_eq!(h.query_all_by_label("racing the shutdown").count(), 1);

    // The server stored it exactly once.
    let history = rt.block_on(async {
        let bob = wire_user(&addr.to_string(), "bob").await;
        bob.client
            .request(Request::History { conv: Conv::room("lobby"), before: None, limit: 50 })
            .await
            .expect("history")
    });
    let Response::History { messages, .. } = history else { panic!("not a history reply: {history:?}") };
    let copies = messages
        .iter()
        .filter(|m| matches!(&m.body, classchat_wire::Body::Text { text } if text == "racing the shutdown"))
        .count();
    assert_eq!(copies, 1);
}

#[test]
fn room_admin_bans_unbans_sets_topic_and_password_and_hands_over() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    click(&mut h, "➕ Create room");
    type_into(&mut h, "Room name", "optics");
    click(&mut h, "Create");
    wait_until(&mut h, "optics to open", |h| h.state().model.current == Some(Conv::room("optics")));

    let mut bob = rt.block_on(wire_user(&addr, "bob"));
    rt.block_on(bob.client.request(Request::JoinRoom { name: "optics".into(), password: None }))
        .expect("bob joins");
    wait_for_text(&mut h, "bob, online");
    click(&mut h, "Manage bob");
    click(&mut h, "Ban bob");
    wait_for_text(&mut h, "bob was banned by alice");
    rt.block_on(async {
        loop {
            let ev =
                tokio::time::timeout(DEADLINE, bob.events.recv()).await.expect("bob hears").expect("open");
            if let classchat_wire::Event::RemovedFromRoom { room, .. } = ev {
                assert_eq!(room, "optics");
                break;
            }
        }
    });
    let refused =
        rt.block_on(bob.client.request(Request::JoinRoom { name: "optics".into(), password: None }));
    assert_eq!(refused.err().and_then(|e| e.code()), Some(classchat_wire::ErrorCode::Banned));

    click(&mut h, "⚙ Room settings");
    wait_for_text(&mut h, "Unban bob");
    click(&mut h, "Unban bob");
    wait_for_text(&mut h, "bob may join #optics again.");
    type_into(&mut h, "Topic", "Lenses and mirrors");
    click(&mut h, "Save topic");
    wait_for_text(&mut h, "alice set the topic: Lenses and mirrors");
    type_into(&mut h, "Room password", "prism-42");
    click(&mut h, "Set password");
    wait_for_text(&mut h, "alice set a room password");
    wait_for_text(&mut h, "#optics, locked");
    h.key_press(egui::Key::Escape);
    wait_until(&mut h, "the settings to close", |h| h.state().dialog.is_none());

    // Unbanned, bob needs the new password now.
    rt.block_on(
        bob.client.request(Request::JoinRoom { name: "optics".into(), password: Some("prism-42".into()) }),
    )
    .expect("bob joins with the password");
    wait_for_text(&mut h, "bob, online");
    click(&mut h, "Manage bob");
    click(&mut h, "Make bob the room admin");
    wait_for_text(&mut h, "alice made bob the room admin");
    wait_for_text(&mut h, "bob, online, room admin");
    wait_until(&mut h, "alice to lose the admin tools", |h| !has_text(h, "Room settings"));
}

/// The invite string of the test server at `addr` with the key `fingerprint`.
fn invite_for(addr: SocketAddr, fingerprint: classchat_wire::Fingerprint) -> String {
    classchat_wire::invite::Invite::single(addr.ip().to_string(), addr.port(), fingerprint).to_string()
}

#[test]
fn a_pasted_invite_fills_the_address_and_pins_the_key_without_a_prompt() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let fp = fingerprint_of(server_key());
    let app_dir = dir.path().join("alice");
    let mut h = app_with(&rt, &app_dir, |c| c.server = None);

    type_into(&mut h, "Server address or invite", &invite_for(server.addr, fp));
    assert_eq!(h.state().login_form().server, server.addr_string(), "the invite became its address");
    assert!(has_text(&h, "From an invite"), "the form says the key comes from the invite");
    submit_login(&mut h, "alice", "correct horse", true);
    // No first-contact prompt stands between the invite and the session.
    wait_until(&mut h, "alice to be signed in", |h| {
        assert!(h.state().trust_prompt().is_none(), "an invite's key needs no prompt");
        h.state().model.me.as_ref().is_some_and(|me| me.name == "alice")
    });
    let known = std::fs::read_to_string(app_dir.join("known_servers")).expect("known servers saved");
    assert!(known.contains(&fp.to_hex()), "the invite's key is remembered for next time: {known}");
}

#[test]
fn an_invite_link_with_another_key_is_refused_by_default() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    // The link names a key the server does not have (a forged or stale invite).
    let wrong = fingerprint_of(other_server_key());
    let link = invite_for(server.addr, wrong);
    let mut h = app_with(&rt, &dir.path().join("alice"), |c| c.invite = Some(link));
    assert_eq!(h.state().login_form().server, server.addr_string(), "opening the link fills the form");

    submit_login(&mut h, "alice", "correct horse", true);
    wait_for_text(&mut h, "The server's key has CHANGED");
    assert!(has_text(&h, &format!("Previously trusted {wrong}")), "the invite's key is what was expected");
    assert!(h.get_by_label("Trust the new key").accesskit_node().is_disabled(), "refused by default");
    click(&mut h, "Disconnect");
    wait_for_text(&mut h, "Refused: the server's key has changed");
    assert!(h.state().model.me.is_none(), "nothing was sent to a server with the wrong key");
}

#[test]
fn servers_announced_on_the_network_are_listed_and_one_click_fills_the_address() {
    use classchat_wire::discovery::{Scope, announce};
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    // Loopback only: tests never send multicast onto the real network.
    let name = format!("Physics lab {}", std::process::id());
    let _announcement = announce(&name, server.addr.port(), &fingerprint_of(server_key()), Scope::Loopback)
        .expect("announce");
    let mut h = app_with(&rt, &dir.path().join("alice"), |c| {
        c.server = None;
        c.discovery = Some(Scope::Loopback);
    });

    wait_for_text(&mut h, "Servers on this network");
    wait_for_text(&mut h, &name);
    assert_ne!(h.state().login_form().server, server.addr_string());
    settle(&mut h);
    h.query_all_by_label_contains(&name).next().expect("the server's entry").click();
    settle(&mut h);
    assert_eq!(h.state().login_form().server, server.addr_string(), "one click fills the address");

    // The address works like a typed one: first contact still asks about the key.
    submit_login(&mut h, "alice", "correct horse", true);
    wait_for_text(&mut h, "Trust this server");
    click(&mut h, "Trust this server");
    wait_for_text(&mut h, "Signed in as alice");
    assert!(h.state().nearby_servers().is_empty(), "discovery stops once signed in");
}

#[test]
fn a_mention_while_the_window_is_unfocused_raises_a_notification() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = classchat::app::Notifier::Record(shown.clone());
    let mut h = app_with(&rt, &dir.path().join("alice"), |c| {
        c.server = Some(addr.clone());
        c.notifier = record;
    });
    register(&mut h, "alice", "correct horse");
    let bob = rt.block_on(wire_user(&addr, "bob"));
    let say = |text: &str| {
        rt.block_on(bob.client.request(Request::SendRoom {
            room: "lobby".into(),
            text: text.into(),
            reply_to: None,
        }))
        .expect("bob sends");
    };
    let count = || shown.lock().map(|s| s.len()).unwrap_or_default();

    // Focused: a mention shows in the app only.
    say("@alice while you look");
    wait_for_text(&mut h, "@alice while you look");
    assert_eq!(count(), 0, "no notification while the window has focus");

    h.input_mut().focused = false;
    say("just chatting");
    wait_for_text(&mut h, "just chatting");
    assert_eq!(count(), 0, "an ordinary room message does not notify");
    say("alice, the oven is on");
    wait_until(&mut h, "a notification for the mention", |_| count() == 1);
    let (summary, body) = shown.lock().expect("list")[0].clone();
    assert_eq!(summary, "bob mentioned you in #lobby");
    assert_eq!(body, "alice, the oven is on");
}
