//! The instructor tools end to end: a real server (with `prof` as its instructor), the
//! real app in a harness, and other people through the real wire client or a second app.

mod common;

use std::sync::Arc;

use classchat::ClassChatApp;
use classchat_wire::{Conv, Event, MuteScope, Request, Response, RoomSettings};
use common::dropped::Dropped;
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

/// A server whose instructor is `prof` (whoever registers that name).
fn class_server(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> TestServer {
    TestServer::start_with(rt, &dir.join("server"), server_key(), any_port(), |c| {
        c.admins = vec!["prof".into()];
    })
}

fn ask(rt: &tokio::runtime::Runtime, user: &WireUser, request: Request) -> Response {
    rt.block_on(user.client.request(request.clone()))
        .unwrap_or_else(|e| panic!("{} could not {request:?}: {e}", user.name))
}

fn disabled(h: &Harness<'static, ClassChatApp>, label: &str) -> bool {
    h.get_by_label(label).accesskit_node().is_disabled()
}

/// The texts of the questions on screen, top to bottom.
fn question_order(h: &Harness<'static, ClassChatApp>) -> Vec<String> {
    h.query_all_by_label_contains("Question: ")
        .filter_map(|n| n.accesskit_node().value().or(n.accesskit_node().label()))
        .filter_map(|l| l.strip_prefix("Question: ").map(str::to_owned))
        .collect()
}

/// "14:05", local time, as the app shows a time of today.
fn local_clock(ts: u64) -> String {
    let t = jiff::Timestamp::from_millisecond(ts as i64).expect("timestamp");
    t.to_zoned(jiff::tz::TimeZone::system()).strftime("%H:%M").to_string()
}

async fn next_event(user: &mut WireUser, what: &str, mut pick: impl FnMut(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(deadline, user.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} never got {what}", user.name))
            .unwrap_or_else(|| panic!("{}'s connection closed", user.name));
        if pick(&ev) {
            return ev;
        }
    }
}

#[test]
fn a_muted_student_cannot_send_until_unmuted_or_the_mute_ends() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = class_server(&rt, dir.path());
    let addr = server.addr_string();
    let mut prof = rt.block_on(wire_user(&addr, "prof"));
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    type_into(&mut h, "Message", "an unsent thought");

    let lobby = MuteScope::Room { name: "lobby".into() };
    ask(&rt, &prof, Request::Mute { scope: lobby.clone(), user: "alice".into(), secs: Some(3600) });
    wait_for_text(&mut h, "Cannot send: You are muted in #lobby until ");
    let Response::Mutes { mutes } = ask(&rt, &prof, Request::ListMutes { scope: lobby.clone() }) else {
        panic!("not a mutes reply")
    };
    let until = mutes.first().and_then(|m| m.until).expect("a timed mute");
    assert!(
        has_text(&h, &format!("{}.", local_clock(until))),
        "the end shows in local time: {:?}",
        labels(&h)
    );
    assert!(disabled(&h, "Message"), "the field is disabled");
    assert!(disabled(&h, "Send"), "and so is Send");
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some("an unsent thought"), "the text stays");

    // Lifted early: the composer opens again and the kept text goes out.
    ask(&rt, &prof, Request::Unmute { scope: lobby, user: "alice".into() });
    wait_until(&mut h, "the composer to open again", |h| !has_text(h, "You are muted"));
    assert!(!disabled(&h, "Message"));
    h.get_by_label("Message").focus();
    h.step();
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "the message to go out", |h| {
        h.state().model.pending_count() == 0
            && h.get_by_label("Message").value().unwrap_or_default().is_empty()
    });
    let got = rt.block_on(prof.expect_text("an unsent thought"));
    assert_eq!(got.from, "alice");

    // A short server-wide mute ends by itself: no event comes, the clock lifts it.
    ask(&rt, &prof, Request::Mute { scope: MuteScope::Server, user: "alice".into(), secs: Some(2) });
    wait_for_text(&mut h, "Cannot send: You are muted on this server until ");
    assert!(disabled(&h, "Message"));
    wait_until(&mut h, "the mute to run out", |h| !has_text(h, "You are muted"));
    assert!(!disabled(&h, "Message"), "the composer re-enabled itself");

    // Until lifted, server-wide.
    ask(&rt, &prof, Request::Mute { scope: MuteScope::Server, user: "alice".into(), secs: None });
    wait_for_text(&mut h, "Cannot send: You are muted on this server until an instructor lifts it.");
}

#[test]
fn exam_mode_shows_a_banner_and_leaves_students_only_the_questions_room() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = class_server(&rt, dir.path());
    let addr = server.addr_string();
    let mut prof = rt.block_on(wire_user(&addr, "prof"));
    ask(&rt, &prof, Request::CreateRoom { name: "help".into(), topic: String::new(), password: None });
    ask(&rt, &prof, Request::SetExamMode { on: true, questions_room: Some("help".into()) });

    // Already on at login: the welcome says so.
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    wait_for_text(&mut h, "Exam mode is on — only #help is open for questions");
    wait_for_text(&mut h, "Cannot send: Exam mode: only #help is open for questions.");
    assert!(disabled(&h, "Message"));

    // Files are refused, dropped or picked.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"cheat sheet").expect("write a file");
    h.input_mut().dropped_files.push(Arc::new(Dropped(file.clone())));
    settle(&mut h);
    wait_for_text(&mut h, "Files cannot be sent while exam mode is on.");
    assert_eq!(h.state().files.transfers().count(), 0, "nothing was uploaded");
    assert!(disabled(&h, "Attach a file"));

    // The questions room is open.
    click(&mut h, "🔍 Browse rooms");
    wait_for_text(&mut h, "Join #help");
    click(&mut h, "Join #help");
    wait_until(&mut h, "#help to open", |h| h.state().model.current == Some(Conv::room("help")));
    assert!(!has_text(&h, "Cannot send"), "students post in the questions room");
    type_into(&mut h, "Message", "is question 3 about lenses?");
    h.key_press(egui::Key::Enter);
    settle(&mut h);
    wait_until(&mut h, "the question to be acknowledged", |h| h.state().model.pending_count() == 0);
    rt.block_on(prof.expect_text("is question 3 about lenses?"));

    // Off: the banner goes, live.
    ask(&rt, &prof, Request::SetExamMode { on: false, questions_room: None });
    wait_until(&mut h, "the exam banner to go", |h| !has_text(h, "Exam mode is on"));
    click(&mut h, "#lobby");
    wait_until(&mut h, "the lobby to open", |h| h.state().model.current == Some(Conv::room("lobby")));
    assert!(!has_text(&h, "Cannot send"), "the lobby is open again");
    // On again while the app runs: the event brings the banner back.
    ask(&rt, &prof, Request::SetExamMode { on: true, questions_room: None });
    wait_for_text(&mut h, "Exam mode is on — posting is closed");
    wait_for_text(&mut h, "Cannot send: Exam mode: rooms are read-only until the exam ends.");
}

#[test]
fn a_poll_by_staff_shows_live_results_and_students_vote_by_clicking() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = class_server(&rt, dir.path());
    let addr = server.addr_string();
    let mut staff = app(&rt, &dir.path().join("prof"), &addr);
    register(&mut staff, "prof", "correct horse");
    let mut student = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut student, "alice", "battery staple");
    let bob = rt.block_on(wire_user(&addr, "bob"));

    // The instructor starts a poll from the lobby's room tools.
    click(&mut staff, "New poll");
    type_into(&mut staff, "Question", "Which lens gives a real image?");
    type_into(&mut staff, "Option 1", "Convex");
    type_into(&mut staff, "Option 2", "Concave");
    click(&mut staff, "Start the poll");
    wait_until(&mut staff, "the dialog to close", |h| h.state().dialog.is_none());
    wait_for_text(&mut staff, "Poll: Which lens gives a real image?");

    // It reaches the student live.
    wait_for_text(&mut student, "Poll: Which lens gives a real image?");
    wait_for_text(&mut student, "Convex: 0 votes, 0%");

    // bob votes through the wire: everyone's bars move.
    let Response::Polls { polls, .. } = ask(&rt, &bob, Request::Polls { room: "lobby".into() }) else {
        panic!("not a polls reply")
    };
    let poll = polls.first().expect("the poll").id;
    ask(&rt, &bob, Request::Vote { poll, choices: vec![0] });
    wait_for_text(&mut student, "Convex: 1 vote, 100%");
    wait_for_text(&mut staff, "Convex: 1 vote, 100%");

    // The student votes by clicking, then changes their mind.
    click(&mut student, "Vote Concave");
    wait_for_text(&mut student, "Concave: 1 vote, 50%");
    wait_for_text(&mut staff, "Concave: 1 vote, 50%");
    wait_for_text(&mut staff, "Which lens gives a real image?: 2 voted");
    click(&mut student, "Vote Convex");
    wait_for_text(&mut student, "Convex: 2 votes, 100%");
    wait_for_text(&mut staff, "Concave: 0 votes, 0%");

    // Staff close it: the student sees it closed and can no longer vote.
    click(&mut staff, "Close poll Which lens gives a real image?");
    wait_for_text(&mut student, "Poll closed: Which lens gives a real image?");
    assert!(disabled(&student, "Vote Concave"));
    assert!(!has_text(&student, "Close poll"), "students get no staff buttons");
}

#[test]
fn questions_are_sorted_upvoted_and_asked_anonymously() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = class_server(&rt, dir.path());
    let addr = server.addr_string();
    let prof = rt.block_on(wire_user(&addr, "prof"));
    let mut bob = rt.block_on(wire_user(&addr, "bob"));
    let carol = rt.block_on(wire_user(&addr, "carol"));
    ask(&rt, &prof, Request::CreateRoom { name: "help".into(), topic: String::new(), password: None });
    ask(
        &rt,
        &prof,
        Request::SetRoomSettings {
            room: "help".into(),
            settings: RoomSettings { qa: true, ..Default::default() },
        },
    );
    for user in [&bob, &carol] {
        ask(&rt, user, Request::JoinRoom { name: "help".into(), password: None });
    }
    let question = |user: &WireUser, text: &str| {
        let Response::Question { question } =
            ask(&rt, user, Request::AskQuestion { room: "help".into(), text: text.into(), anonymous: false })
        else {
            panic!("not a question reply")
        };
        question.id
    };
    let _a = question(&bob, "What is a virtual image?");
    let _b = question(&carol, "Why is the sky blue?");
    let c = question(&bob, "Do mirrors flip up and down?");
    ask(&rt, &carol, Request::Upvote { question: c, up: true });

    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    click(&mut h, "🔍 Browse rooms");
    wait_for_text(&mut h, "Join #help");
    click(&mut h, "Join #help");
    wait_until(&mut h, "#help to open", |h| h.state().model.current == Some(Conv::room("help")));
    click(&mut h, "Questions tab");
    wait_for_text(&mut h, "Question: Do mirrors flip up and down?");
    // Most votes first, then the oldest.
    assert_eq!(
        question_order(&h),
        ["Do mirrors flip up and down?", "What is a virtual image?", "Why is the sky blue?"]
    );

    // An upvote by clicking: a tie on votes goes to the older question.
    click(&mut h, "Upvote: Why is the sky blue?");
    wait_for_text(&mut h, "1 vote: Why is the sky blue?");
    assert_eq!(
        question_order(&h),
        ["Why is the sky blue?", "Do mirrors flip up and down?", "What is a virtual image?"]
    );
    assert!(has_text(&h, "Take back upvote: Why is the sky blue?"), "the toggle shows it is on");

    // Asked anonymously: classmates get no author; the asker cannot upvote their own.
    type_into(&mut h, "Your question", "Is this on the exam?");
    click(&mut h, "Ask anonymously");
    click(&mut h, "Ask");
    wait_for_text(&mut h, "Question: Is this on the exam?");
    assert!(disabled(&h, "Upvote: Is this on the exam?"), "not your own");
    let ev = rt.block_on(next_event(
        &mut bob,
        "the new question",
        |e| matches!(e, Event::Question { question } if question.text == "Is this on the exam?"),
    ));
    let Event::Question { question } = ev else { unreachable!() };
    assert!(question.anonymous);
    assert_eq!(question.author, None, "a classmate is not told who asked");

    // Answered questions sink to the bottom, marked.
    ask(&rt, &prof, Request::MarkAnswered { question: c, answered: true, answer: None });
    wait_for_text(&mut h, "Answered: Do mirrors flip up and down?");
    assert_eq!(question_order(&h).last().map(String::as_str), Some("Do mirrors flip up and down?"));
}

#[test]
fn office_hours_next_opens_the_dm_on_both_sides_and_tells_the_student() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = class_server(&rt, dir.path());
    let addr = server.addr_string();
    let mut staff = app(&rt, &dir.path().join("prof"), &addr);
    register(&mut staff, "prof", "correct horse");
    let shown = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = classchat::app::Notifier::Record(shown.clone());
    let mut student = app_with(&rt, &dir.path().join("alice"), |c| {
        c.server = Some(addr.clone());
        c.notifier = record;
    });
    register(&mut student, "alice", "battery staple");

    wait_for_text(&mut student, "Join prof's office hours");
    click(&mut student, "Join prof's office hours");
    wait_for_text(&mut student, "You are #1 in prof's queue");

    click(&mut staff, "Office hours");
    wait_for_text(&mut staff, "Queue 1: alice");
    student.input_mut().focused = false;
    settle(&mut student);
    click(&mut staff, "Next student");
    wait_until(&mut staff, "the DM with alice to open", |h| {
        h.state().model.current == Some(Conv::direct("alice"))
    });
    wait_for_text(&mut staff, "Nobody is waiting.");

    wait_until(&mut student, "the DM with prof to open", |h| {
        h.state().model.current == Some(Conv::direct("prof"))
    });
    wait_for_text(&mut student, "prof is ready for you");
    assert!(!has_text(&student, "Leave prof's queue"), "no longer waiting");
    assert_eq!(student.state().class.queue_position("prof"), None);
    let notes = shown.lock().expect("notifications").clone();
    assert!(notes.iter().any(|(summary, _)| summary == "prof is ready for you"), "notified: {notes:?}");
    click(&mut student, "Dismiss prof is ready");
    assert!(!has_text(&student, "prof is ready for you"));
}

#[test]
fn room_staff_make_an_announcement_room_and_slow_mode_from_the_room_settings() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = class_server(&rt, dir.path());
    let addr = server.addr_string();
    let mut admin = app(&rt, &dir.path().join("carol"), &addr);
    register(&mut admin, "carol", "correct horse");
    click(&mut admin, "➕ Create room");
    type_into(&mut admin, "Room name", "lab");
    click(&mut admin, "Create");
    wait_until(&mut admin, "lab to open", |h| h.state().model.current == Some(Conv::room("lab")));
    let mut bob = rt.block_on(wire_user(&addr, "bob"));
    ask(&rt, &bob, Request::JoinRoom { name: "lab".into(), password: None });
    let mut student = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut student, "alice", "battery staple");
    click(&mut student, "🔍 Browse rooms");
    wait_for_text(&mut student, "Join #lab");
    click(&mut student, "Join #lab");
    wait_until(&mut student, "lab to open", |h| h.state().model.current == Some(Conv::room("lab")));

    click(&mut admin, "⚙ Room settings");
    click(&mut admin, "Announcement room (only admins post)");
    wait_for_text(&mut student, "Cannot send: Only admins post in #lab.");
    assert!(disabled(&student, "Message"));
    rt.block_on(next_event(
        &mut bob,
        "the settings",
        |e| matches!(e, Event::RoomSettings { settings, .. } if settings.announce_only),
    ));

    click(&mut admin, "Announcement room (only admins post)");
    click(&mut admin, "Slow mode");
    click(&mut admin, "Slow mode 1 min");
    rt.block_on(next_event(&mut bob, "slow mode", |e| {
        matches!(e, Event::RoomSettings { settings, .. } if settings.slow_mode_secs == 60 && !settings.announce_only)
    }));
    // Both changes reach the student's app as separate events: wait for the second too, or
    // the message below may go out before the app knows of slow mode.
    wait_until(&mut student, "slow mode to reach the student's app and the composer to open", |h| {
        h.state().model.rooms.get("lab").is_some_and(|r| r.settings.slow_mode_secs == 60)
            && !has_text(h, "Cannot send")
    });

    // A student's message starts the wait; the next one stays in the composer.
    type_into(&mut student, "Message", "first");
    student.key_press(egui::Key::Enter);
    settle(&mut student);
    wait_until(&mut student, "the message to be acknowledged", |h| h.state().model.pending_count() == 0);
    rt.block_on(bob.expect_text("first"));
    wait_for_text(&mut student, "Cannot send: Slow mode: you can send again in ");
    assert!(!disabled(&student, "Message"), "the field stays editable during the wait");
    type_into(&mut student, "Message", "second");
    student.key_press(egui::Key::Enter);
    settle(&mut student);
    assert_eq!(student.get_by_label("Message").value().as_deref(), Some("second"), "kept, not sent");
    assert_eq!(student.state().model.pending_count(), 0, "nothing went out");
    // Staff are exempt.
    assert!(!has_text(&admin, "Cannot send"));
}
