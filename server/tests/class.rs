//! Instructor tools, end to end against the real server: room settings, timed mutes, slow
//! mode, exam mode, the audit log, questions, polls and office hours. Every rule is the
//! server's: these clients send whatever a modified app could send.

mod common;

use std::time::Duration;

use classchat_wire::{
    AuditAction, Conv, ErrorCode, Event, MuteScope, Poll, Question, Request, Response, RoomSettings,
};
use common::{TestServer, TestUser, eventually};

/// `prof` is an instructor (a server admin by config).
async fn server() -> TestServer {
    server_on(tempfile::tempdir().expect("tempdir")).await
}

async fn server_on(dir: tempfile::TempDir) -> TestServer {
    TestServer::start_with(dir, |c| c.admins = vec!["prof".into()]).await
}

/// The error code and sentence of a request that must fail.
async fn refused(user: &TestUser, req: Request) -> (ErrorCode, String) {
    let what = format!("{req:?}");
    match user.client.request(req).await {
        Err(classchat_wire::Error::Server { code, message }) => (code, message),
        other => panic!("{}: expected {what} to be refused, got {other:?}", user.name),
    }
}

fn settings(announce_only: bool, slow_mode_secs: u32, qa: bool) -> RoomSettings {
    RoomSettings { announce_only, slow_mode_secs, qa }
}

fn room_scope(name: &str) -> MuteScope {
    MuteScope::Room { name: name.into() }
}

async fn set(user: &TestUser, room: &str, s: RoomSettings) {
    match user.ok(Request::SetRoomSettings { room: room.into(), settings: s.clone() }).await {
        Response::Room { room } => assert_eq!(room.settings, s),
        other => panic!("expected Room, got {other:?}"),
    }
}

fn question_of(resp: Response) -> Question {
    match resp {
        Response::Question { question } => question,
        other => panic!("expected Question, got {other:?}"),
    }
}

fn poll_of(resp: Response) -> Poll {
    match resp {
        Response::Poll { poll } => poll,
        other => panic!("expected Poll, got {other:?}"),
    }
}

/// A room `lab` made by student `ada` (its admin), with `bob` in it, and `prof`.
async fn lab(server: &TestServer) -> (TestUser, TestUser, TestUser) {
    let prof = server.user("prof").await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    ada.create_room("lab").await;
    bob.join("lab").await;
    prof.join("lab").await;
    (prof, ada, bob)
}

#[tokio::test]
async fn an_announcement_room_lets_only_its_admins_post() {
    let server = server().await;
    let (prof, ada, mut bob) = lab(&server).await;
    // Settings are the room staff's: bob is only a member.
    let (code, _) =
        refused(&bob, Request::SetRoomSettings { room: "lab".into(), settings: settings(false, 0, true) })
            .await;
    assert_eq!(code, ErrorCode::NotRoomAdmin);
    set(&ada, "lab", settings(true, 0, false)).await;
    bob.expect_event(
        "the new settings",
        |e| matches!(e, Event::RoomSettings { room, settings } if room == "lab" && settings.announce_only),
    )
    .await;
    let (code, message) =
        refused(&bob, Request::SendRoom { room: "lab".into(), text: "hi".into(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::ReadOnly);
    assert!(message.contains("only admins post in #lab"), "{message}");
    // A file is a post too.
    let (code, _) = refused(
        &bob,
        Request::UploadFile { conv: Conv::room("lab"), name: "a.txt".into(), size: 1, meta: None },
    )
    .await;
    assert_eq!(code, ErrorCode::ReadOnly);
    // The room admin and an instructor still post, and the room lists show the setting.
    ada.say("lab", "reading for Monday: chapter 3").await;
    prof.say("lab", "and chapter 4").await;
    let rooms = bob.ok(Request::ListRooms).await;
    let Response::Rooms { rooms } = rooms else { panic!("expected Rooms") };
    assert!(rooms.iter().any(|r| r.name == "lab" && r.settings.announce_only));
    // Slow mode past its bound is refused.
    let (code, _) = refused(
        &ada,
        Request::SetRoomSettings { room: "lab".into(), settings: settings(false, 3601, false) },
    )
    .await;
    assert_eq!(code, ErrorCode::BadRequest);
    server.stop().await;
}

#[tokio::test]
async fn a_muted_student_is_refused_until_unmuted_and_a_timed_mute_ends_by_itself() {
    let server = server().await;
    let (prof, ada, mut bob) = lab(&server).await;
    // Only staff mute, and staff cannot be muted.
    let (code, _) =
        refused(&bob, Request::Mute { scope: room_scope("lab"), user: "ada".into(), secs: None }).await;
    assert_eq!(code, ErrorCode::NotRoomAdmin);
    let (code, message) =
        refused(&ada, Request::Mute { scope: room_scope("lab"), user: "prof".into(), secs: Some(300) }).await;
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    let (code, _) =
        refused(&prof, Request::Mute { scope: room_scope("lab"), user: "ada".into(), secs: Some(300) }).await;
    assert_eq!(code, ErrorCode::Forbidden, "the room admin is staff");
    let (code, _) =
        refused(&ada, Request::Mute { scope: MuteScope::Server, user: "bob".into(), secs: None }).await;
    assert_eq!(code, ErrorCode::NotServerAdmin, "a room admin cannot mute server-wide");
    let (code, _) =
        refused(&ada, Request::Mute { scope: room_scope("lab"), user: "bob".into(), secs: Some(0) }).await;
    assert_eq!(code, ErrorCode::BadRequest);

    ada.ok(Request::Mute { scope: room_scope("lab"), user: "bob".into(), secs: Some(3600) }).await;
    let ev = bob.expect_event("the mute", |e| matches!(e, Event::MuteChanged { .. })).await;
    let Event::MuteChanged { scope, muted, until, by } = ev else { unreachable!() };
    assert_eq!((scope, muted, by), (room_scope("lab"), true, "ada".to_owned()));
    assert!(until.is_some_and(|t| t > classchat_wire_now()));
    let (code, message) =
        refused(&bob, Request::SendRoom { room: "lab".into(), text: "hi".into(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::Muted);
    assert!(message.contains("muted in #lab for another 1 h"), "{message}");
    // Only in that room.
    bob.say("lobby", "still here").await;
    // Staff see the mute in the member list; bob's classmates do not.
    let members = |r: Response| match r {
        Response::Members { members, .. } => members,
        other => panic!("expected Members, got {other:?}"),
    };
    let seen_by_ada = members(ada.ok(Request::RoomMembers { name: "lab".into() }).await);
    assert!(seen_by_ada.iter().any(|m| m.name == "bob" && m.muted && m.muted_until.is_some()));
    assert!(seen_by_ada.iter().any(|m| m.name == "prof" && m.instructor));
    let seen_by_bob = members(bob.ok(Request::RoomMembers { name: "lab".into() }).await);
    assert!(seen_by_bob.iter().all(|m| !m.muted));
    // A listing for the staff.
    let Response::Mutes { mutes } = ada.ok(Request::ListMutes { scope: room_scope("lab") }).await else {
        panic!("expected Mutes")
    };
    assert_eq!(mutes.len(), 1);
    assert_eq!(mutes[0].user, "bob");

    ada.ok(Request::Unmute { scope: room_scope("lab"), user: "bob".into() }).await;
    bob.expect_event("the unmute", |e| matches!(e, Event::MuteChanged { muted: false, .. })).await;
    bob.say("lab", "thanks").await;
    let (code, _) = refused(&ada, Request::Unmute { scope: room_scope("lab"), user: "bob".into() }).await;
    assert_eq!(code, ErrorCode::BadRequest, "bob is not muted any more");

    // A server-wide mute by an instructor covers rooms, DMs and broadcasts; a one-second
    // mute is lifted without anyone doing anything.
    prof.ok(Request::Mute { scope: MuteScope::Server, user: "bob".into(), secs: Some(1) }).await;
    let (code, message) =
        refused(&bob, Request::SendRoom { room: "lobby".into(), text: "x".into(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::Muted);
    assert!(message.contains("on this server"), "{message}");
    let (code, _) =
        refused(&bob, Request::SendDirect { to: "ada".into(), body: vec![1], reply_to: None }).await;
    assert_eq!(code, ErrorCode::Muted);
    eventually(Duration::from_secs(10), "the one-second mute to end", || async {
        bob.client
            .request(Request::SendRoom { room: "lobby".into(), text: "back".into(), reply_to: None })
            .await
            .is_ok()
    })
    .await;
    server.stop().await;
}

fn classchat_wire_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test]
async fn slow_mode_allows_one_message_per_interval_for_students_only() {
    let server = server().await;
    let (_prof, ada, bob) = lab(&server).await;
    set(&ada, "lab", settings(false, 60, false)).await;
    bob.say("lab", "first").await;
    let (code, message) =
        refused(&bob, Request::SendRoom { room: "lab".into(), text: "second".into(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::SlowMode);
    assert!(message.contains("slow mode is on in #lab") && message.contains("again in"), "{message}");
    // The admin is not slowed down.
    ada.say("lab", "one").await;
    ada.say("lab", "two").await;
    // Turning it off lets bob post at once.
    set(&ada, "lab", settings(false, 0, false)).await;
    bob.say("lab", "second").await;
    server.stop().await;
}

#[tokio::test]
async fn exam_mode_makes_rooms_read_only_for_students_except_the_questions_room() {
    let server = server().await;
    let (prof, ada, mut bob) = lab(&server).await;
    prof.create_room("help").await;
    bob.join("help").await;
    let (code, _) = refused(&bob, Request::SetExamMode { on: true, questions_room: None }).await;
    assert_eq!(code, ErrorCode::NotServerAdmin);
    let (code, _) =
        refused(&prof, Request::SetExamMode { on: true, questions_room: Some("nowhere".into()) }).await;
    assert_eq!(code, ErrorCode::NoSuchRoom);

    prof.ok(Request::SetExamMode { on: true, questions_room: Some("help".into()) }).await;
    let ev = bob.expect_event("exam mode", |e| matches!(e, Event::ExamMode { .. })).await;
    let Event::ExamMode { exam: Some(exam) } = ev else { panic!("exam mode should be on: {ev:?}") };
    assert_eq!((exam.questions_room.as_deref(), exam.by.as_str()), (Some("help"), "prof"));
    let (code, _) = refused(&prof, Request::SetExamMode { on: true, questions_room: None }).await;
    assert_eq!(code, ErrorCode::AlreadyDone, "toggling on twice is an error");

    // Students: read-only rooms (even the one ada administers), the questions room open,
    // no DMs between students, no files.
    let (code, message) =
        refused(&bob, Request::SendRoom { room: "lab".into(), text: "answer to 3?".into(), reply_to: None })
            .await;
    assert_eq!(code, ErrorCode::ReadOnly);
    assert!(message.contains("#help"), "{message}");
    let (code, _) =
        refused(&ada, Request::SendRoom { room: "lab".into(), text: "x".into(), reply_to: None }).await;
    assert_eq!(code, ErrorCode::ReadOnly);
    bob.say("help", "is question 2 about fork()?").await;
    let (code, message) =
        refused(&bob, Request::SendDirect { to: "ada".into(), body: vec![1, 2], reply_to: None }).await;
    assert_eq!(code, ErrorCode::ExamMode, "{message}");
    bob.ok(Request::SendDirect { to: "prof".into(), body: vec![1, 2], reply_to: None }).await;
    let (code, _) = refused(
        &bob,
        Request::UploadFile { conv: Conv::room("help"), name: "a.txt".into(), size: 1, meta: None },
    )
    .await;
    assert_eq!(code, ErrorCode::ExamMode);
    // Instructors post and write to anyone.
    prof.say("lab", "15 minutes left").await;
    prof.ok(Request::SendDirect { to: "bob".into(), body: vec![3], reply_to: None }).await;
    // A new login learns about it in its Welcome.
    let carol = server.user("carol").await;
    assert!(carol.welcome.class.exam.as_ref().is_some_and(|e| e.questions_room.as_deref() == Some("help")));

    prof.ok(Request::SetExamMode { on: false, questions_room: None }).await;
    bob.expect_event("exam mode off", |e| matches!(e, Event::ExamMode { exam: None })).await;
    let (code, _) = refused(&prof, Request::SetExamMode { on: false, questions_room: None }).await;
    assert_eq!(code, ErrorCode::AlreadyDone, "toggling off twice is an error");
    bob.say("lab", "done").await;
    bob.ok(Request::SendDirect { to: "ada".into(), body: vec![1], reply_to: None }).await;
    server.stop().await;
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_to_whom() {
    let server = server().await;
    let (prof, ada, _bob) = lab(&server).await;
    let mallory = server.user("mallory").await;
    mallory.join("lab").await;
    ada.ok(Request::Mute { scope: room_scope("lab"), user: "bob".into(), secs: Some(300) }).await;
    ada.ok(Request::Kick { room: "lab".into(), user: "mallory".into() }).await;
    prof.ok(Request::SetExamMode { on: true, questions_room: None }).await;
    prof.ok(Request::SetExamMode { on: false, questions_room: None }).await;

    let (code, _) = refused(&ada, Request::AuditLog { before: None, limit: 10 }).await;
    assert_eq!(code, ErrorCode::NotServerAdmin, "the audit log is for instructors");
    let (code, _) = refused(&prof, Request::AuditLog { before: None, limit: 201 }).await;
    assert_eq!(code, ErrorCode::BadRequest);
    let Response::Audit { entries, more } = prof.ok(Request::AuditLog { before: None, limit: 3 }).await
    else {
        panic!("expected Audit")
    };
    assert!(more);
    let seen: Vec<_> = entries.iter().map(|e| (e.actor.as_str(), e.action, e.target.as_str())).collect();
    assert_eq!(
        seen,
        vec![
            ("prof", AuditAction::ExamOff, ""),
            ("prof", AuditAction::ExamOn, ""),
            ("ada", AuditAction::Kick, "mallory")
        ]
    );
    assert!(entries[2].detail.contains("#lab"));
    let Response::Audit { entries: older, more } =
        prof.ok(Request::AuditLog { before: Some(entries[2].id), limit: 10 }).await
    else {
        panic!("expected Audit")
    };
    assert!(!more);
    assert_eq!(older.len(), 1);
    assert_eq!((older[0].action, older[0].target.as_str()), (AuditAction::Mute, "bob"));
    assert!(older[0].detail.contains("in #lab for 5 min"), "{}", older[0].detail);

    // The same, from the command line of the server's machine.
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        classchat_server::admin::send(server.data_dir(), "audit"),
    )
    .await
    .expect("in time")
    .expect("the admin socket");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].contains("ada: mute bob (in #lab for 5 min)"), "{out}");
    assert!(lines[3].contains("prof: exam_off"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn questions_hide_anonymous_authors_from_students_and_sort_by_votes() {
    let server = server().await;
    let (mut prof, ada, mut bob) = lab(&server).await;
    let carol = server.user("carol").await;
    carol.join("lab").await;
    let ask =
        |text: &str, anonymous| Request::AskQuestion { room: "lab".into(), text: text.into(), anonymous };
    let (code, _) = refused(&bob, ask("too early?", false)).await;
    assert_eq!(code, ErrorCode::Forbidden, "lab is not a Q&A room yet");
    set(&ada, "lab", settings(true, 0, true)).await;

    let first = question_of(bob.ok(ask("What does fork() return in the child?", true)).await);
    assert!(first.mine && first.anonymous);
    assert_eq!(first.author, None, "a student never gets an anonymous author, not even their own");
    let second = question_of(carol.ok(ask("Is the lab due Friday?", false)).await);
    // The instructor sees who asked; a classmate does not, in the event or in the list.
    let ev = prof
        .expect_event(
            "bob's question",
            |e| matches!(e, Event::Question { question } if question.id == first.id),
        )
        .await;
    let Event::Question { question } = ev else { unreachable!() };
    assert_eq!(question.author.as_deref(), Some("bob"));
    let Response::Questions { questions, .. } = carol.ok(Request::Questions { room: "lab".into() }).await
    else {
        panic!("expected Questions")
    };
    let anon = questions.iter().find(|q| q.id == first.id).expect("listed");
    assert_eq!(anon.author, None);
    assert!(!anon.mine);
    // Nor through the room's history.
    let Response::History { messages, .. } =
        carol.ok(Request::History { conv: Conv::room("lab"), before: None, limit: 200 }).await
    else {
        panic!("expected History")
    };
    assert!(!format!("{messages:?}").contains("fork()"), "questions are not room messages");

    // Upvotes: once each, never one's own; the list sorts by them.
    let (code, _) = refused(&bob, Request::Upvote { question: first.id, up: true }).await;
    assert_eq!(code, ErrorCode::Forbidden);
    carol.ok(Request::Upvote { question: first.id, up: true }).await;
    let (code, _) = refused(&carol, Request::Upvote { question: first.id, up: true }).await;
    assert_eq!(code, ErrorCode::AlreadyDone);
    let up = question_of(ada.ok(Request::Upvote { question: first.id, up: true }).await);
    assert_eq!((up.votes, up.voted), (2, true));
    bob.ok(Request::Upvote { question: second.id, up: true }).await;
    let order = |r: Response| match r {
        Response::Questions { questions, .. } => questions.iter().map(|q| q.id).collect::<Vec<_>>(),
        other => panic!("expected Questions, got {other:?}"),
    };
    assert_eq!(order(carol.ok(Request::Questions { room: "lab".into() }).await), vec![first.id, second.id]);

    // Marking answered is staff's, with a message of the same room; answered sorts last.
    let (code, _) =
        refused(&bob, Request::MarkAnswered { question: first.id, answered: true, answer: None }).await;
    assert_eq!(code, ErrorCode::NotRoomAdmin);
    let elsewhere = prof.say("lobby", "not an answer").await;
    let (code, _) =
        refused(&prof, Request::MarkAnswered { question: first.id, answered: true, answer: Some(elsewhere) })
            .await;
    assert_eq!(code, ErrorCode::BadRequest);
    let reply = prof.say("lab", "It returns 0 in the child.").await;
    let done = question_of(
        prof.ok(Request::MarkAnswered { question: first.id, answered: true, answer: Some(reply) }).await,
    );
    assert!(done.answered && done.answer == Some(reply));
    bob.expect_event("the answer", |e| {
        matches!(e, Event::Question { question } if question.id == first.id && question.answered && question.author.is_none())
    })
    .await;
    assert_eq!(order(carol.ok(Request::Questions { room: "lab".into() }).await), vec![second.id, first.id]);

    // Bad input.
    let (code, _) = refused(&bob, ask(&"?".repeat(900_000), false)).await;
    assert_eq!(code, ErrorCode::TooLong);
    let (code, _) = refused(&bob, ask("   ", false)).await;
    assert_eq!(code, ErrorCode::BadRequest);
    let (code, _) = refused(&bob, Request::Upvote { question: 999_999, up: true }).await;
    assert_eq!(code, ErrorCode::NoSuchQuestion);
    let outsider = server.user("dave").await;
    let (code, _) = refused(&outsider, Request::Upvote { question: first.id, up: true }).await;
    assert_eq!(code, ErrorCode::NoSuchQuestion, "not a member: the question is not there for them");
    server.stop().await;
}

#[tokio::test]
async fn polls_count_one_vote_per_account_and_show_live_results() {
    let server = server().await;
    let (prof, _ada, mut bob) = lab(&server).await;
    let carol = server.user("carol").await;
    carol.join("lab").await;
    let with = |question: &str, options: Vec<String>, closes_at: Option<u64>| Request::CreatePoll {
        room: "lab".into(),
        question: question.into(),
        options,
        multiple: false,
        anonymous: false,
        closes_at,
    };
    let new = |options: Vec<String>| with("Which lab slot?", options, None);
    let two = || vec!["Monday".to_owned(), "Thursday".to_owned()];
    let (code, _) = refused(&bob, new(two())).await;
    assert_eq!(code, ErrorCode::NotRoomAdmin, "students do not post polls");
    let (code, _) = refused(&prof, new(vec!["only".into()])).await;
    assert_eq!(code, ErrorCode::BadRequest);
    let (code, _) = refused(&prof, new((0..1000).map(|i| format!("option {i}")).collect())).await;
    assert_eq!(code, ErrorCode::BadRequest, "1,000 options");
    let (code, _) = refused(&prof, new(vec!["a".into(), "A".into()])).await;
    assert_eq!(code, ErrorCode::BadRequest, "the same option twice");
    let (code, _) = refused(&prof, with(&"x".repeat(100_000), two(), None)).await;
    assert_eq!(code, ErrorCode::TooLong);
    let (code, _) = refused(&prof, with("ok", two(), Some(1))).await;
    assert_eq!(code, ErrorCode::BadRequest, "a closing time in the past");

    let poll = poll_of(prof.ok(new(two())).await);
    bob.expect_event("the new poll", |e| matches!(e, Event::Poll { poll: p } if p.id == poll.id)).await;
    let vote = |choices: Vec<u32>| Request::Vote { poll: poll.id, choices };
    assert_eq!(refused(&bob, vote(vec![2])).await.0, ErrorCode::BadRequest, "no option 2");
    assert_eq!(refused(&bob, vote(vec![0, 1])).await.0, ErrorCode::BadRequest, "single choice");
    assert_eq!(refused(&bob, vote(vec![])).await.0, ErrorCode::BadRequest);
    assert_eq!(
        refused(&bob, Request::Vote { poll: 424_242, choices: vec![0] }).await.0,
        ErrorCode::NoSuchPoll
    );

    let p = poll_of(bob.ok(vote(vec![0])).await);
    assert_eq!((p.counts.clone(), p.voters, p.mine.clone()), (vec![1, 0], 1, vec![0]));
    // Voting again changes the vote; it is still one vote.
    let p = poll_of(bob.ok(vote(vec![1])).await);
    assert_eq!((p.counts.clone(), p.voters), (vec![0, 1], 1));
    carol.ok(vote(vec![1])).await;
    // Everyone sees the live results, with names since the poll is not anonymous.
    let ev = bob
        .expect_event(
            "carol's vote",
            |e| matches!(e, Event::Poll { poll: p } if p.id == poll.id && p.voters == 2),
        )
        .await;
    let Event::Poll { poll: live } = ev else { unreachable!() };
    assert_eq!(live.counts, vec![0, 2]);
    assert_eq!(live.mine, vec![1], "each receiver gets their own choices");
    assert_eq!(live.names[1], vec!["bob".to_owned(), "carol".to_owned()]);

    assert_eq!(refused(&bob, Request::ClosePoll { poll: poll.id }).await.0, ErrorCode::NotRoomAdmin);
    let closed = poll_of(prof.ok(Request::ClosePoll { poll: poll.id }).await);
    assert!(closed.closed);
    assert_eq!(refused(&carol, vote(vec![0])).await.0, ErrorCode::PollClosed);
    assert_eq!(refused(&prof, Request::ClosePoll { poll: poll.id }).await.0, ErrorCode::PollClosed);

    // An anonymous multiple-choice poll names nobody, and closes by itself at its time.
    let closes_at = classchat_wire_now() + 1500;
    let anon = poll_of(
        prof.ok(Request::CreatePoll {
            room: "lab".into(),
            question: "Which topics were hard?".into(),
            options: vec!["pipes".into(), "signals".into(), "threads".into()],
            multiple: true,
            anonymous: true,
            closes_at: Some(closes_at),
        })
        .await,
    );
    assert_eq!(
        refused(&bob, Request::Vote { poll: anon.id, choices: vec![1, 1] }).await.0,
        ErrorCode::BadRequest
    );
    let p = poll_of(bob.ok(Request::Vote { poll: anon.id, choices: vec![2, 0] }).await);
    assert_eq!((p.counts.clone(), p.mine.clone()), (vec![1, 0, 1], vec![0, 2]));
    assert!(p.names.iter().all(Vec::is_empty), "anonymous: {:?}", p.names);
    bob.expect_event(
        "the poll to close at its time",
        |e| matches!(e, Event::Poll { poll: p } if p.id == anon.id && p.closed),
    )
    .await;
    let Response::Polls { polls, .. } = carol.ok(Request::Polls { room: "lab".into() }).await else {
        panic!("expected Polls")
    };
    assert_eq!(
        polls.iter().map(|p| (p.id, p.closed)).collect::<Vec<_>>(),
        vec![(anon.id, true), (poll.id, true)]
    );
    server.stop().await;
}

#[tokio::test]
async fn office_hours_call_students_in_order() {
    let server = server().await;
    let mut prof = server.user("prof").await;
    let mut ada = server.user("ada").await;
    let mut bob = server.user("bob").await;
    let join = || Request::JoinQueue { instructor: "prof".into() };
    assert_eq!(refused(&ada, Request::JoinQueue { instructor: "bob".into() }).await.0, ErrorCode::BadRequest);
    assert_eq!(
        refused(&ada, Request::JoinQueue { instructor: "nobody".into() }).await.0,
        ErrorCode::NoSuchUser
    );
    assert_eq!(refused(&ada, Request::NextInQueue).await.0, ErrorCode::NotServerAdmin);
    assert_eq!(refused(&ada, Request::OfficeQueue).await.0, ErrorCode::NotServerAdmin);

    let Response::Queued { position } = ada.ok(join()).await else { panic!("expected Queued") };
    assert_eq!(position.position, 1);
    let Response::Queued { position } = bob.ok(join()).await else { panic!("expected Queued") };
    assert_eq!(position.position, 2);
    assert_eq!(refused(&bob, join()).await.0, ErrorCode::AlreadyDone);
    prof.expect_event("the queue", |e| matches!(e, Event::QueueChanged { students } if students.len() == 2))
        .await;
    let Response::Queue { students } = prof.ok(Request::OfficeQueue).await else { panic!("expected Queue") };
    assert_eq!(students.iter().map(|s| s.student.as_str()).collect::<Vec<_>>(), vec!["ada", "bob"]);
    // The queue is there after logging in again.
    let again = server.login("bob", "dev-2").await;
    assert_eq!(again.welcome.class.queues.len(), 1);
    assert_eq!(again.welcome.class.queues[0].position, 2);

    let Response::Next { student } = prof.ok(Request::NextInQueue).await else { panic!("expected Next") };
    assert_eq!(student.as_deref(), Some("ada"));
    ada.expect_event("being called", |e| matches!(e, Event::Called { instructor } if instructor == "prof"))
        .await;
    bob.expect_event("moving up", |e| matches!(e, Event::QueueMoved { position: Some(1), .. })).await;
    bob.ok(Request::LeaveQueue { instructor: "prof".into() }).await;
    bob.expect_event("leaving", |e| matches!(e, Event::QueueMoved { position: None, .. })).await;
    assert_eq!(
        refused(&bob, Request::LeaveQueue { instructor: "prof".into() }).await.0,
        ErrorCode::BadRequest
    );
    let Response::Next { student } = prof.ok(Request::NextInQueue).await else { panic!("expected Next") };
    assert_eq!(student, None, "the queue is empty");
    server.stop().await;
}

#[tokio::test]
async fn class_state_survives_a_restart() {
    let server = server().await;
    let (prof, ada, bob) = lab(&server).await;
    set(&ada, "lab", settings(true, 30, true)).await;
    ada.ok(Request::Mute { scope: room_scope("lab"), user: "bob".into(), secs: None }).await;
    prof.ok(Request::SetExamMode { on: true, questions_room: Some("lab".into()) }).await;
    let q = question_of(
        prof.ok(Request::AskQuestion { room: "lab".into(), text: "Ready?".into(), anonymous: false }).await,
    );
    ada.ok(Request::Upvote { question: q.id, up: true }).await;
    let poll = poll_of(
        prof.ok(Request::CreatePoll {
            room: "lab".into(),
            question: "Break?".into(),
            options: vec!["yes".into(), "no".into()],
            multiple: false,
            anonymous: false,
            closes_at: None,
        })
        .await,
    );
    ada.ok(Request::Vote { poll: poll.id, choices: vec![0] }).await;
    ada.ok(Request::JoinQueue { instructor: "prof".into() }).await;
    drop((prof, ada, bob));

    let server = server_on(server.stop().await).await;
    let prof = server.login("prof", "dev-1").await;
    let ada = server.login("ada", "dev-1").await;
    let bob = server.login("bob", "dev-1").await;
    let lab = bob.welcome.rooms.iter().find(|r| r.name == "lab").expect("bob is in lab");
    assert_eq!(lab.settings, settings(true, 30, true));
    assert!(bob.welcome.class.exam.is_some());
    assert_eq!(bob.welcome.class.mutes.len(), 1);
    assert_eq!(bob.welcome.class.mutes[0].until, None);
    assert_eq!(
        refused(&bob, Request::SendRoom { room: "lab".into(), text: "x".into(), reply_to: None }).await.0,
        ErrorCode::Muted
    );
    let Response::Questions { questions, .. } = bob.ok(Request::Questions { room: "lab".into() }).await
    else {
        panic!("expected Questions")
    };
    assert_eq!((questions.len(), questions[0].votes), (1, 1));
    let p = poll_of(ada.ok(Request::Vote { poll: poll.id, choices: vec![1] }).await);
    assert_eq!(
        (p.voters, p.counts.clone()),
        (1, vec![0, 1]),
        "ada's vote was kept and is changed, not added"
    );
    let Response::Queue { students } = prof.ok(Request::OfficeQueue).await else { panic!("expected Queue") };
    assert_eq!(students.len(), 1);
    // New ids do not reuse old ones.
    let q2 = question_of(
        prof.ok(Request::AskQuestion { room: "lab".into(), text: "Again?".into(), anonymous: false }).await,
    );
    assert!(q2.id > q.id);
    server.stop().await;
}

#[tokio::test]
async fn removing_a_room_removes_its_polls_and_questions() {
    let server = server().await;
    let (prof, ada, _bob) = lab(&server).await;
    set(&ada, "lab", settings(false, 0, true)).await;
    let q = question_of(
        ada.ok(Request::AskQuestion { room: "lab".into(), text: "?".into(), anonymous: false }).await,
    );
    prof.ok(Request::AdminRemoveRoom { name: "lab".into() }).await;
    let Response::Audit { entries, .. } = prof.ok(Request::AuditLog { before: None, limit: 1 }).await else {
        panic!("expected Audit")
    };
    assert_eq!((entries[0].action, entries[0].target.as_str()), (AuditAction::RemoveRoom, "#lab"));
    ada.create_room("lab").await;
    ada.ok(Request::SetRoomSettings { room: "lab".into(), settings: settings(false, 0, true) }).await;
    let Response::Questions { questions, .. } = ada.ok(Request::Questions { room: "lab".into() }).await
    else {
        panic!("expected Questions")
    };
    assert!(questions.is_empty(), "the old room's question {} is gone", q.id);
    server.stop().await;
}
