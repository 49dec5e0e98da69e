//! One value of every message variant, and the wire name of every variant.
//!
//! The `*_name` functions match exhaustively, so adding a variant to `message.rs` breaks
//! the build here until it gets a sample (and, through `protocol_doc.rs`, a line in
//! PROTOCOL.md).

use classchat_wire::peer::{PeerListener, PeerTicket, RelaySide, SearchQuery, SharedFile};
use classchat_wire::{
    AuditAction, AuditEntry, Body, ChatMessage, ClassStatus, ClientMsg, Conv, ErrorCode, Event, ExamInfo,
    FileInfo, Limits, Member, MuteInfo, MuteScope, Poll, Question, QueueEntry, QueuePosition, Reaction,
    Request, Response, RoomInfo, RoomSettings, SearchHit, ServerMsg, SystemEvent, UserInfo, Welcome,
};

fn shared_file() -> SharedFile {
    SharedFile { name: "lab3-data.csv".into(), size: 123_456, sha256: vec![0x5a; 32], busy: false }
}

/// Every byte value once: exercises MessagePack `bin` with non-UTF-8 content.
pub fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

pub fn convs() -> Vec<Conv> {
    vec![Conv::room("lobby"), Conv::direct("Bob_2"), Conv::Announcements]
}

pub fn conv_name(c: &Conv) -> &'static str {
    match c {
        Conv::Room { .. } => "room",
        Conv::Direct { .. } => "direct",
        Conv::Announcements => "announcements",
    }
}

pub fn requests() -> Vec<Request> {
    let s = String::from;
    vec![
        Request::Register { username: s("Alice"), auth_key: vec![0xaa; 32], device: s("lab-pc-07") },
        Request::Login { username: s("alice"), auth_key: all_bytes(), device: s("") },
        Request::Resume { username: s("alice"), token: vec![0; 32], device: s("laptop") },
        Request::Logout,
        Request::ListRooms,
        Request::CreateRoom {
            name: s("cs101"), topic: s("Intro — week 1 ✓"), password: Some(s("hunter2"))
        },
        Request::JoinRoom { name: s("cs101"), password: None },
        Request::LeaveRoom { name: s("cs101") },
        Request::RoomMembers { name: s("lobby") },
        Request::Kick { room: s("cs101"), user: s("mallory") },
        Request::Ban { room: s("cs101"), user: s("mallory") },
        Request::Unban { room: s("cs101"), user: s("mallory") },
        Request::ListBans { room: s("cs101") },
        Request::SetTopic { room: s("cs101"), topic: String::new() },
        Request::SetRoomPassword { room: s("cs101"), password: None },
        Request::HandOverAdmin { room: s("cs101"), user: s("bob") },
        Request::SendRoom {
            room: s("lobby"),
            text: s("hello 👋\n\0 nul and newline, `ls -la`"),
            reply_to: Some(1 << 33),
        },
        Request::SendDirect { to: s("bob"), body: all_bytes(), reply_to: None },
        Request::Edit { id: 1 << 33, body: Body::Text { text: s("**fixed** typo") } },
        Request::Delete { id: 1 << 33, proof: Some(all_bytes()) },
        Request::React { id: 1 << 33, emoji: s("👍🏽"), on: true },
        Request::SearchMessages {
            query: s("\"exit code\" 139"),
            room: Some(s("cs101")),
            offset: 50,
            limit: 20,
        },
        Request::Broadcast { text: s("exam moved to room 4") },
        Request::History { conv: Conv::room("lobby"), before: Some(u64::MAX), limit: 200 },
        Request::PublishKey { public_key: vec![0x30; 294], backup: all_bytes() },
        Request::GetKey { user: s("bob") },
        Request::GetBackup,
        Request::PutDmKey { to: s("bob"), grant: vec![0x8a; 40] },
        Request::DmKeys { user: s("bob") },
        Request::ChangePassword { auth_key: vec![1; 32], new_auth_key: vec![2; 32], backup: vec![3; 100] },
        Request::OnlineUsers,
        Request::ListUsers,
        Request::Ping,
        Request::AdminKick { user: s("mallory"), reason: s("spam") },
        Request::AdminBan { user: s("mallory"), reason: String::new() },
        Request::AdminUnban { user: s("mallory") },
        Request::AdminRemoveRoom { name: s("cs101") },
        Request::UploadFile { conv: Conv::room("cs101"), name: s("notes.pdf"), size: 1 << 33, meta: None },
        Request::DownloadFile { file: 7 },
        Request::AnswerOffer { file: 7, accept: false },
        Request::AttachUpload { token: vec![0x11; 32] },
        Request::FinishUpload { sha256: vec![0xe3; 32] },
        Request::AttachDownload { token: vec![0x22; 32], offset: 1 << 20 },
        Request::SetRoomSettings { room: s("cs101"), settings: room_settings() },
        Request::Mute { scope: MuteScope::Room { name: s("cs101") }, user: s("mallory"), secs: Some(300) },
        Request::Unmute { scope: MuteScope::Server, user: s("mallory") },
        Request::ListMutes { scope: MuteScope::Room { name: s("cs101") } },
        Request::SetExamMode { on: true, questions_room: Some(s("help")) },
        Request::AuditLog { before: Some(90), limit: 50 },
        Request::AskQuestion { room: s("cs101"), text: s("Is fork() copy-on-write?"), anonymous: true },
        Request::Upvote { question: 3, up: true },
        Request::MarkAnswered { question: 3, answered: true, answer: Some(1 << 33) },
        Request::Questions { room: s("cs101") },
        Request::CreatePoll {
            room: s("cs101"),
            question: s("Which lab slot?"),
            options: vec![s("Monday"), s("Thursday")],
            multiple: false,
            anonymous: true,
            closes_at: Some(1_700_000_600_000),
        },
        Request::Vote { poll: 4, choices: vec![1] },
        Request::ClosePoll { poll: 4 },
        Request::Polls { room: s("cs101") },
        Request::JoinQueue { instructor: s("prof") },
        Request::LeaveQueue { instructor: s("prof") },
        Request::OfficeQueue,
        Request::NextInQueue,
        Request::SetSharing {
            listener: Some(PeerListener {
                port: 40123,
                addrs: vec!["192.168.1.20".into(), "fe80::1".into()],
            }),
        },
        Request::WhoHas { room: s("cs101"), query: SearchQuery { name: s("lab3"), sha256: None } },
        Request::AnswerSearch { search: 9, files: vec![shared_file()] },
        Request::PeerFetch { room: s("cs101"), sharer: s("bob"), sha256: vec![0x5a; 32] },
        Request::PeerRelay { ticket: vec![0x33; 32] },
        Request::AttachRelay { ticket: vec![0x33; 32], side: RelaySide::Asker },
    ]
}

pub fn room_settings() -> RoomSettings {
    RoomSettings { announce_only: true, slow_mode_secs: 30, qa: true }
}

pub fn mute_info() -> MuteInfo {
    MuteInfo {
        scope: MuteScope::Room { name: "cs101".into() },
        user: "mallory".into(),
        until: Some(1_700_000_300_000),
        by: "prof".into(),
    }
}

pub fn exam_info() -> ExamInfo {
    ExamInfo { questions_room: Some("help".into()), since: 1_700_000_000_000, by: "prof".into() }
}

/// An anonymous question as a student sees it.
pub fn question() -> Question {
    Question {
        id: 3,
        room: "cs101".into(),
        text: "Is fork() copy-on-write?".into(),
        author: None,
        anonymous: true,
        mine: false,
        votes: 5,
        voted: true,
        answered: true,
        answer: Some(1 << 33),
        ts: 1_700_000_000_000,
    }
}

pub fn poll() -> Poll {
    Poll {
        id: 4,
        room: "cs101".into(),
        question: "Which lab slot?".into(),
        options: vec!["Monday".into(), "Thursday".into()],
        multiple: false,
        anonymous: false,
        by: "prof".into(),
        ts: 1_700_000_000_000,
        closes_at: None,
        closed: false,
        counts: vec![1, 2],
        voters: 3,
        mine: vec![1],
        names: vec![vec!["bob".into()], vec!["Alice".into(), "carol".into()]],
    }
}

/// A file in every state: uploaded to a room, and a direct offer still uploading.
pub fn file_infos() -> Vec<FileInfo> {
    vec![
        FileInfo {
            id: 7,
            from: "Alice".into(),
            name: "notes é.pdf".into(),
            size: 1 << 33,
            sha256: vec![0xe3; 32],
            meta: None,
        },
        FileInfo {
            id: u64::MAX,
            from: "bob".into(),
            name: String::new(),
            size: 0,
            sha256: vec![],
            meta: Some(all_bytes()),
        },
    ]
}

pub fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Register { .. } => "register",
        Request::Login { .. } => "login",
        Request::Resume { .. } => "resume",
        Request::Logout => "logout",
        Request::ListRooms => "list_rooms",
        Request::CreateRoom { .. } => "create_room",
        Request::JoinRoom { .. } => "join_room",
        Request::LeaveRoom { .. } => "leave_room",
        Request::RoomMembers { .. } => "room_members",
        Request::Kick { .. } => "kick",
        Request::Ban { .. } => "ban",
        Request::Unban { .. } => "unban",
        Request::ListBans { .. } => "list_bans",
        Request::SetTopic { .. } => "set_topic",
        Request::SetRoomPassword { .. } => "set_room_password",
        Request::HandOverAdmin { .. } => "hand_over_admin",
        Request::SendRoom { .. } => "send_room",
        Request::SendDirect { .. } => "send_direct",
        Request::Broadcast { .. } => "broadcast",
        Request::History { .. } => "history",
        Request::PublishKey { .. } => "publish_key",
        Request::GetKey { .. } => "get_key",
        Request::GetBackup => "get_backup",
        Request::PutDmKey { .. } => "put_dm_key",
        Request::DmKeys { .. } => "dm_keys",
        Request::ChangePassword { .. } => "change_password",
        Request::OnlineUsers => "online_users",
        Request::ListUsers => "list_users",
        Request::Ping => "ping",
        Request::AdminKick { .. } => "admin_kick",
        Request::AdminBan { .. } => "admin_ban",
        Request::AdminUnban { .. } => "admin_unban",
        Request::AdminRemoveRoom { .. } => "admin_remove_room",
        Request::UploadFile { .. } => "upload_file",
        Request::DownloadFile { .. } => "download_file",
        Request::AnswerOffer { .. } => "answer_offer",
        Request::AttachUpload { .. } => "attach_upload",
        Request::FinishUpload { .. } => "finish_upload",
        Request::AttachDownload { .. } => "attach_download",
        Request::SetRoomSettings { .. } => "set_room_settings",
        Request::Mute { .. } => "mute",
        Request::Unmute { .. } => "unmute",
        Request::ListMutes { .. } => "list_mutes",
        Request::SetExamMode { .. } => "set_exam_mode",
        Request::AuditLog { .. } => "audit_log",
        Request::AskQuestion { .. } => "ask_question",
        Request::Upvote { .. } => "upvote",
        Request::MarkAnswered { .. } => "mark_answered",
        Request::Questions { .. } => "questions",
        Request::CreatePoll { .. } => "create_poll",
        Request::Vote { .. } => "vote",
        Request::ClosePoll { .. } => "close_poll",
        Request::Polls { .. } => "polls",
        Request::JoinQueue { .. } => "join_queue",
        Request::LeaveQueue { .. } => "leave_queue",
        Request::OfficeQueue => "office_queue",
        Request::NextInQueue => "next_in_queue",
        Request::SetSharing { .. } => "set_sharing",
        Request::WhoHas { .. } => "who_has",
        Request::AnswerSearch { .. } => "answer_search",
        Request::Edit { .. } => "edit",
        Request::Delete { .. } => "delete",
        Request::React { .. } => "react",
        Request::SearchMessages { .. } => "search_messages",
        Request::PeerFetch { .. } => "peer_fetch",
        Request::PeerRelay { .. } => "peer_relay",
        Request::AttachRelay { .. } => "attach_relay",
    }
}

pub fn client_msgs() -> Vec<ClientMsg> {
    let mut out: Vec<ClientMsg> = requests()
        .into_iter()
        .enumerate()
        .map(|(i, body)| ClientMsg::Request { id: u32::try_from(i).expect("few samples") * 1000, body })
        .collect();
    out.push(ClientMsg::Request { id: u32::MAX, body: Request::Ping });
    out.push(ClientMsg::Pong { nonce: u64::MAX });
    out.push(ClientMsg::Pong { nonce: 0 });
    out.extend(convs().into_iter().map(|conv| ClientMsg::Ack { conv, up_to: 1 << 40 }));
    out.push(ClientMsg::Chunk { data: all_bytes() });
    out.push(ClientMsg::Chunk { data: vec![] });
    out.extend(convs().into_iter().map(|conv| ClientMsg::Typing { conv }));
    out.push(ClientMsg::RoomRecords {});
    out
}

pub fn client_msg_name(m: &ClientMsg) -> &'static str {
    match m {
        ClientMsg::Request { .. } => "request",
        ClientMsg::Pong { .. } => "pong",
        ClientMsg::Ack { .. } => "ack",
        ClientMsg::Chunk { .. } => "chunk",
        ClientMsg::Typing { .. } => "typing",
        ClientMsg::RoomRecords {} => "room_records",
    }
}

pub fn room_info(name: &str) -> RoomInfo {
    RoomInfo {
        name: name.into(),
        topic: "Operating systems".into(),
        members: 42,
        locked: true,
        admin: "prof".into(),
        joined: false,
        settings: room_settings(),
    }
}

pub fn welcome() -> Welcome {
    Welcome {
        user: "Alice".into(),
        server_name: "CS Lab 3".into(),
        resume_token: vec![0x5a; 32],
        server_admin: false,
        can_broadcast: true,
        rooms: vec![room_info("lobby"), room_info("cs101")],
        dm_peers: vec!["Bob_2".into()],
        limits: Limits {
            max_message_len: 16 * 1024,
            max_frame_len: 1 << 20,
            messages_per_second: 20,
            heartbeat_timeout_ms: 60_000,
            max_file_size: 1 << 31,
        },
        class: ClassStatus {
            exam: Some(exam_info()),
            mutes: vec![mute_info()],
            queues: vec![QueuePosition { instructor: "prof".into(), position: 2 }],
        },
        room_records: true,
    }
}

pub fn system_events() -> Vec<SystemEvent> {
    let s = String::from;
    vec![
        SystemEvent::Created,
        SystemEvent::Joined,
        SystemEvent::Left,
        SystemEvent::Kicked { user: s("mallory") },
        SystemEvent::Banned { user: s("mallory") },
        SystemEvent::Unbanned { user: s("mallory") },
        SystemEvent::Topic { topic: s("new topic") },
        SystemEvent::Locked,
        SystemEvent::Unlocked,
        SystemEvent::AdminHandedOver { user: s("bob") },
    ]
}

pub fn system_event_name(e: &SystemEvent) -> &'static str {
    match e {
        SystemEvent::Created => "created",
        SystemEvent::Joined => "joined",
        SystemEvent::Left => "left",
        SystemEvent::Kicked { .. } => "kicked",
        SystemEvent::Banned { .. } => "banned",
        SystemEvent::Unbanned { .. } => "unbanned",
        SystemEvent::Topic { .. } => "topic",
        SystemEvent::Locked => "locked",
        SystemEvent::Unlocked => "unlocked",
        SystemEvent::AdminHandedOver { .. } => "admin_handed_over",
    }
}

pub fn bodies() -> Vec<Body> {
    let mut out = vec![Body::Text { text: "hi".into() }, Body::Opaque { data: all_bytes() }];
    out.extend(system_events().into_iter().map(|event| Body::System { event }));
    out.extend(file_infos().into_iter().map(|file| Body::File { file }));
    out.push(Body::Deleted { by: "prof".into(), proof: None });
    out.push(Body::Deleted { by: "Alice".into(), proof: Some(all_bytes()) });
    out
}

pub fn body_name(b: &Body) -> &'static str {
    match b {
        Body::Text { .. } => "text",
        Body::Opaque { .. } => "opaque",
        Body::System { .. } => "system",
        Body::File { .. } => "file",
        Body::Deleted { .. } => "deleted",
    }
}

/// A message in every conversation kind with every body kind.
pub fn chat_messages() -> Vec<ChatMessage> {
    let mut out = Vec::new();
    for (i, body) in bodies().into_iter().enumerate() {
        for conv in convs() {
            out.push(ChatMessage {
                id: u64::try_from(i).expect("few") + (1 << 33),
                conv,
                from: "Alice".into(),
                ts: 1_700_000_000_123,
                body: body.clone(),
                reply_to: None,
                edited: None,
                reactions: Vec::new(),
            });
        }
    }
    out.push(ChatMessage {
        id: 1 << 34,
        conv: Conv::room("cs101"),
        from: "bob".into(),
        ts: 1_700_000_000_456,
        body: Body::Text { text: "same here, see `dmesg`".into() },
        reply_to: Some(1 << 33),
        edited: Some(1_700_000_060_000),
        reactions: vec![
            Reaction { emoji: "👍".into(), users: vec!["Alice".into(), "carol".into()] },
            Reaction { emoji: "🎉".into(), users: vec!["dave".into()] },
        ],
    });
    out
}

pub fn responses() -> Vec<Response> {
    vec![
        Response::Done,
        Response::Pong,
        Response::Welcome(welcome()),
        Response::Rooms { rooms: vec![room_info("lobby"), room_info("cs101")] },
        Response::Rooms { rooms: vec![] },
        Response::Room { room: room_info("cs101") },
        Response::Members {
            room: "cs101".into(),
            members: vec![
                Member {
                    name: "prof".into(),
                    online: true,
                    admin: true,
                    instructor: true,
                    muted: false,
                    muted_until: None,
                },
                Member {
                    name: "alice".into(),
                    online: false,
                    admin: false,
                    instructor: false,
                    muted: true,
                    muted_until: Some(1_700_000_300_000),
                },
            ],
        },
        Response::Bans { room: "cs101".into(), users: vec!["mallory".into()] },
        Response::Users { users: vec![UserInfo { name: "prof".into(), online: true, server_admin: true }] },
        Response::Sent { id: 1, ts: 1_700_000_000_000 },
        Response::Broadcast { id: u64::MAX, ts: 0, recipients: 31 },
        Response::History { conv: Conv::room("lobby"), messages: chat_messages(), more: true },
        Response::History { conv: Conv::direct("bob"), messages: vec![], more: false },
        Response::Key { user: "bob".into(), public_key: Some(vec![0x30; 294]) },
        Response::Key { user: "carol".into(), public_key: None },
        Response::Backup { public_key: Some(vec![0x30; 10]), backup: Some(all_bytes()) },
        Response::Backup { public_key: None, backup: None },
        Response::DmKeys { user: "bob".into(), grants: vec![serde_bytes::ByteBuf::from(vec![1, 2, 3])] },
        Response::Upload { file: 7, token: vec![0x11; 32] },
        Response::Download { file: file_infos()[1].clone(), token: vec![0x22; 32] },
        Response::Attached { offset: 0 },
        Response::File { file: file_infos()[0].clone() },
        Response::Mutes { mutes: vec![mute_info()] },
        Response::Audit {
            entries: vec![AuditEntry {
                id: 9,
                ts: 1_700_000_000_000,
                actor: "prof".into(),
                action: AuditAction::Mute,
                target: "mallory".into(),
                detail: "in #cs101 for 5 min".into(),
            }],
            more: false,
        },
        Response::Question { question: question() },
        Response::Questions { room: "cs101".into(), questions: vec![question()] },
        Response::Poll { poll: poll() },
        Response::Polls { room: "cs101".into(), polls: vec![poll()] },
        Response::Queued { position: QueuePosition { instructor: "prof".into(), position: 1 } },
        Response::Queue { students: vec![QueueEntry { student: "alice".into(), since: 1_700_000_000_000 }] },
        Response::Next { student: Some("alice".into()) },
        Response::Next { student: None },
        Response::Search { search: 9, asked: 4, deadline_ms: 3000 },
        Response::Found {
            hits: vec![SearchHit {
                message: ChatMessage::new(
                    1 << 33,
                    Conv::room("cs101"),
                    "Alice",
                    1_700_000_000_123,
                    Body::Text { text: "my lab segfaults".into() },
                ),
                highlights: vec![(7, 16)],
            }],
            more: true,
        },
        Response::Found { hits: vec![], more: false },
        Response::PeerTicket(PeerTicket {
            ticket: vec![0x33; 32],
            sharer: "bob".into(),
            candidates: vec!["203.0.113.7:40123".into(), "192.168.1.20:40123".into()],
            expires_in_ms: 30_000,
        }),
    ]
}

pub fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Done => "done",
        Response::Pong => "pong",
        Response::Welcome(_) => "welcome",
        Response::Rooms { .. } => "rooms",
        Response::Room { .. } => "room",
        Response::Members { .. } => "members",
        Response::Bans { .. } => "bans",
        Response::Users { .. } => "users",
        Response::Sent { .. } => "sent",
        Response::Broadcast { .. } => "broadcast",
        Response::History { .. } => "history",
        Response::Key { .. } => "key",
        Response::Backup { .. } => "backup",
        Response::DmKeys { .. } => "dm_keys",
        Response::Upload { .. } => "upload",
        Response::Download { .. } => "download",
        Response::Attached { .. } => "attached",
        Response::File { .. } => "file",
        Response::Mutes { .. } => "mutes",
        Response::Audit { .. } => "audit",
        Response::Question { .. } => "question",
        Response::Questions { .. } => "questions",
        Response::Poll { .. } => "poll",
        Response::Polls { .. } => "polls",
        Response::Queued { .. } => "queued",
        Response::Queue { .. } => "queue",
        Response::Next { .. } => "next",
        Response::Search { .. } => "search",
        Response::PeerTicket(_) => "peer_ticket",
        Response::Found { .. } => "found",
    }
}

pub fn events() -> Vec<Event> {
    let mut out: Vec<Event> = chat_messages().into_iter().map(|message| Event::Message { message }).collect();
    out.push(Event::CaughtUp);
    out.push(Event::Presence { user: "bob".into(), online: true });
    out.push(Event::Presence { user: "bob".into(), online: false });
    out.push(Event::RemovedFromRoom { room: "cs101".into(), reason: "banned by prof".into() });
    out.push(Event::Disconnect { reason: "server shutting down".into() });
    out.push(Event::KeyChanged { user: "bob".into() });
    out.extend(file_infos().into_iter().map(|file| Event::FileOffer { file }));
    out.push(Event::OfferAnswered { file: 7, user: "bob".into(), accepted: true });
    out.push(Event::RoomSettings { room: "cs101".into(), settings: room_settings() });
    out.push(Event::MuteChanged {
        scope: MuteScope::Server,
        muted: true,
        until: Some(1_700_000_300_000),
        by: "prof".into(),
    });
    out.push(Event::ExamMode { exam: Some(exam_info()) });
    out.push(Event::ExamMode { exam: None });
    out.push(Event::Question { question: question() });
    out.push(Event::Poll { poll: poll() });
    out.push(Event::QueueChanged {
        students: vec![QueueEntry { student: "alice".into(), since: 1_700_000_000_000 }],
    });
    out.push(Event::QueueMoved { instructor: "prof".into(), position: Some(1) });
    out.push(Event::Called { instructor: "prof".into() });
    out.push(Event::SearchRequest {
        search: 9,
        from: "ada".into(),
        room: "cs101".into(),
        query: SearchQuery { name: "lab3".into(), sha256: None },
    });
    out.push(Event::SearchResults { search: 9, from: "bob".into(), files: vec![shared_file()] });
    out.push(Event::SearchDone { search: 9, answered: 1, results: 1, truncated: false });
    out.push(Event::FetchRequest {
        ticket: vec![0x33; 32],
        asker: "ada".into(),
        room: "cs101".into(),
        sha256: vec![0x5a; 32],
        expires_in_ms: 30_000,
    });
    out.push(Event::RelayRequest { ticket: vec![0x33; 32] });
    out.push(Event::Edited {
        conv: Conv::room("cs101"),
        id: 1 << 33,
        body: Body::Text { text: "fixed".into() },
        ts: 1_700_000_060_000,
    });
    out.push(Event::Edited {
        conv: Conv::direct("bob"),
        id: 1 << 33,
        body: Body::Opaque { data: all_bytes() },
        ts: 1_700_000_060_000,
    });
    out.push(Event::Deleted { conv: Conv::room("cs101"), id: 1 << 33, by: "prof".into(), proof: None });
    out.push(Event::Deleted {
        conv: Conv::direct("bob"),
        id: 1 << 33,
        by: "bob".into(),
        proof: Some(all_bytes()),
    });
    out.push(Event::Reactions {
        conv: Conv::room("cs101"),
        id: 1 << 33,
        reactions: vec![Reaction { emoji: "👍".into(), users: vec!["Alice".into()] }],
    });
    out.push(Event::Reactions { conv: Conv::room("cs101"), id: 1 << 33, reactions: vec![] });
    out.push(Event::Typing { conv: Conv::room("cs101"), user: "bob".into() });
    out.push(Event::Typing { conv: Conv::direct("bob"), user: "bob".into() });
    out
}

pub fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Message { .. } => "message",
        Event::CaughtUp => "caught_up",
        Event::Presence { .. } => "presence",
        Event::RemovedFromRoom { .. } => "removed_from_room",
        Event::Disconnect { .. } => "disconnect",
        Event::KeyChanged { .. } => "key_changed",
        Event::FileOffer { .. } => "file_offer",
        Event::OfferAnswered { .. } => "offer_answered",
        Event::RoomSettings { .. } => "room_settings",
        Event::MuteChanged { .. } => "mute_changed",
        Event::ExamMode { .. } => "exam_mode",
        Event::Question { .. } => "question",
        Event::Poll { .. } => "poll",
        Event::QueueChanged { .. } => "queue_changed",
        Event::QueueMoved { .. } => "queue_moved",
        Event::Called { .. } => "called",
        Event::SearchRequest { .. } => "search_request",
        Event::SearchResults { .. } => "search_results",
        Event::SearchDone { .. } => "search_done",
        Event::FetchRequest { .. } => "fetch_request",
        Event::RelayRequest { .. } => "relay_request",
        Event::Edited { .. } => "edited",
        Event::Deleted { .. } => "deleted",
        Event::Reactions { .. } => "reactions",
        Event::Typing { .. } => "typing",
    }
}

/// Every error code, checked for completeness by [`error_code_index`].
pub const ERROR_CODES: [ErrorCode; 44] = [
    ErrorCode::BadRequest,
    ErrorCode::NotLoggedIn,
    ErrorCode::AlreadyLoggedIn,
    ErrorCode::InvalidUsername,
    ErrorCode::UsernameTaken,
    ErrorCode::BadCredentials,
    ErrorCode::BadToken,
    ErrorCode::Throttled,
    ErrorCode::RateLimited,
    ErrorCode::AccountBanned,
    ErrorCode::NoSuchUser,
    ErrorCode::NoSuchRoom,
    ErrorCode::RoomExists,
    ErrorCode::InvalidRoomName,
    ErrorCode::NotMember,
    ErrorCode::AlreadyMember,
    ErrorCode::WrongPassword,
    ErrorCode::Banned,
    ErrorCode::NotRoomAdmin,
    ErrorCode::NotServerAdmin,
    ErrorCode::AdminMustHandOver,
    ErrorCode::TooLong,
    ErrorCode::TooManyRooms,
    ErrorCode::Forbidden,
    ErrorCode::ShuttingDown,
    ErrorCode::FileTooLarge,
    ErrorCode::QuotaExceeded,
    ErrorCode::NoSuchFile,
    ErrorCode::NoSuchTransfer,
    ErrorCode::HashMismatch,
    ErrorCode::Muted,
    ErrorCode::SlowMode,
    ErrorCode::ReadOnly,
    ErrorCode::ExamMode,
    ErrorCode::NoSuchQuestion,
    ErrorCode::NoSuchPoll,
    ErrorCode::PollClosed,
    ErrorCode::AlreadyDone,
    ErrorCode::NotSharing,
    ErrorCode::NoSuchMessage,
    ErrorCode::NotYourMessage,
    ErrorCode::MessageDeleted,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

/// Position of `code` in [`ERROR_CODES`]; exhaustive, so a new code must be listed there.
pub fn error_code_index(code: ErrorCode) -> usize {
    match code {
        ErrorCode::BadRequest => 0,
        ErrorCode::NotLoggedIn => 1,
        ErrorCode::AlreadyLoggedIn => 2,
        ErrorCode::InvalidUsername => 3,
        ErrorCode::UsernameTaken => 4,
        ErrorCode::BadCredentials => 5,
        ErrorCode::BadToken => 6,
        ErrorCode::Throttled => 7,
        ErrorCode::RateLimited => 8,
        ErrorCode::AccountBanned => 9,
        ErrorCode::NoSuchUser => 10,
        ErrorCode::NoSuchRoom => 11,
        ErrorCode::RoomExists => 12,
        ErrorCode::InvalidRoomName => 13,
        ErrorCode::NotMember => 14,
        ErrorCode::AlreadyMember => 15,
        ErrorCode::WrongPassword => 16,
        ErrorCode::Banned => 17,
        ErrorCode::NotRoomAdmin => 18,
        ErrorCode::NotServerAdmin => 19,
        ErrorCode::AdminMustHandOver => 20,
        ErrorCode::TooLong => 21,
        ErrorCode::TooManyRooms => 22,
        ErrorCode::Forbidden => 23,
        ErrorCode::ShuttingDown => 24,
        ErrorCode::FileTooLarge => 25,
        ErrorCode::QuotaExceeded => 26,
        ErrorCode::NoSuchFile => 27,
        ErrorCode::NoSuchTransfer => 28,
        ErrorCode::HashMismatch => 29,
        ErrorCode::Muted => 30,
        ErrorCode::SlowMode => 31,
        ErrorCode::ReadOnly => 32,
        ErrorCode::ExamMode => 33,
        ErrorCode::NoSuchQuestion => 34,
        ErrorCode::NoSuchPoll => 35,
        ErrorCode::PollClosed => 36,
        ErrorCode::AlreadyDone => 37,
        ErrorCode::NotSharing => 38,
        ErrorCode::NoSuchMessage => 39,
        ErrorCode::NotYourMessage => 40,
        ErrorCode::MessageDeleted => 41,
        ErrorCode::Unavailable => 42,
        ErrorCode::Internal => 43,
    }
}

pub fn server_msgs() -> Vec<ServerMsg> {
    let mut out: Vec<ServerMsg> = responses()
        .into_iter()
        .enumerate()
        .map(|(i, body)| ServerMsg::Ok { id: u32::try_from(i).expect("few") + 70_000, body })
        .collect();
    out.extend(ERROR_CODES.iter().enumerate().map(|(i, &code)| ServerMsg::Err {
        id: u32::try_from(i).expect("few"),
        code,
        message: format!("sentence about {code}"),
    }));
    out.extend(events().into_iter().map(|event| ServerMsg::Event { event }));
    out.push(ServerMsg::Ping { nonce: 0x0123_4567_89ab_cdef });
    out.push(ServerMsg::Chunk { data: all_bytes() });
    out
}

pub fn server_msg_name(m: &ServerMsg) -> &'static str {
    match m {
        ServerMsg::Ok { .. } => "ok",
        ServerMsg::Err { .. } => "err",
        ServerMsg::Event { .. } => "event",
        ServerMsg::Ping { .. } => "ping",
        ServerMsg::Chunk { .. } => "chunk",
    }
}
