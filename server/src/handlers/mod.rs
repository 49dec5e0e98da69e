//! Request handlers, one file per area. Each takes the shared state and the session and
//! returns the reply (or `Later`, when the store's writer will send it once the change is
//! durable).

pub mod account;
pub mod admin;
pub mod files;
pub mod history;
pub mod keys;
pub mod messages;
pub mod moderation;
pub mod office_hours;
pub mod polls;
pub mod questions;
pub mod rich;
pub mod rooms;
pub mod users;

use classchat_wire::{ErrorCode, Request, Response};

use crate::session::Session;
use crate::state::{Lc, SessionId, State};
use crate::store::{Committed, Job, StoredMessage, Write};

/// An error reply: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// What a client is told when the store could not take a job: `unavailable` with the
    /// reason when it was refused for an outage (`store::UNAVAILABLE`), else `internal`.
    pub fn store(what: impl std::fmt::Display) -> Self {
        let text = what.to_string();
        match text.strip_prefix(crate::store::UNAVAILABLE) {
            Some(why) => {
                tracing::warn!(reason = why, "refused a write");
                Self::new(ErrorCode::Unavailable, why)
            }
            None => Self::internal(text),
        }
    }

    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(ErrorCode::Internal, "the server could not complete the request; try again")
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// What the session does with a handled request.
#[must_use]
#[derive(Debug)]
pub enum Reply {
    /// Send this reply now.
    Now(ApiResult),
    /// The reply has been or will be sent by someone else (the store's writer, or the
    /// handler itself ahead of follow-up events).
    Later,
    /// Send this reply, then end the session.
    Close(ApiResult),
}

/// Routes one request.
pub async fn dispatch(state: &State, session: &mut Session, id: u32, req: Request) -> Reply {
    match req {
        Request::Ping => Reply::Now(Ok(Response::Pong)),
        Request::Register { username, auth_key, device } => {
            account::register(state, session, id, username, auth_key, device).await
        }
        Request::Login { username, auth_key, device } => {
            account::login(state, session, id, username, auth_key, device).await
        }
        Request::Resume { username, token, device } => {
            account::resume(state, session, id, username, token, device).await
        }
        _ if session.user.is_none() => Reply::Now(Err(ApiError::new(ErrorCode::NotLoggedIn, "log in first"))),
        Request::Logout => account::logout(state, session).await,
        Request::ListRooms => Reply::Now(rooms::list(state, session)),
        Request::CreateRoom { name, topic, password } => {
            Reply::Now(rooms::create(state, session, name, topic, password).await)
        }
        Request::JoinRoom { name, password } => Reply::Now(rooms::join(state, session, name, password).await),
        Request::LeaveRoom { name } => Reply::Now(rooms::leave(state, session, name).await),
        Request::RoomMembers { name } => Reply::Now(rooms::members(state, session, name)),
        Request::Kick { room, user } => Reply::Now(rooms::kick(state, session, room, user, false).await),
        Request::Ban { room, user } => Reply::Now(rooms::kick(state, session, room, user, true).await),
        Request::Unban { room, user } => Reply::Now(rooms::unban(state, session, room, user).await),
        Request::ListBans { room } => Reply::Now(rooms::list_bans(state, session, room)),
        Request::SetTopic { room, topic } => Reply::Now(rooms::set_topic(state, session, room, topic).await),
        Request::SetRoomPassword { room, password } => {
            Reply::Now(rooms::set_password(state, session, room, password).await)
        }
        Request::HandOverAdmin { room, user } => {
            Reply::Now(rooms::hand_over(state, session, room, user).await)
        }
        Request::SendRoom { room, text, reply_to } => {
            messages::send_room(state, session, id, room, text, reply_to).await
        }
        Request::SendDirect { to, body, reply_to } => {
            messages::send_direct(state, session, id, to, body, reply_to).await
        }
        Request::Broadcast { text } => messages::broadcast(state, session, id, text).await,
        Request::History { conv, before, limit } => {
            Reply::Now(history::page(state, session, conv, before, limit).await)
        }
        Request::PublishKey { public_key, backup } => {
            Reply::Now(keys::publish(state, session, public_key, backup).await)
        }
        Request::GetKey { user } => Reply::Now(keys::get_key(state, session, user).await),
        Request::GetBackup => Reply::Now(keys::get_backup(state, session).await),
        Request::PutDmKey { to, grant } => Reply::Now(keys::put_dm_key(state, session, to, grant).await),
        Request::DmKeys { user } => Reply::Now(keys::dm_keys(state, session, user).await),
        Request::ChangePassword { auth_key, new_auth_key, backup } => {
            Reply::Now(keys::change_password(state, session, auth_key, new_auth_key, backup).await)
        }
        Request::OnlineUsers => Reply::Now(users::list(state, true)),
        Request::ListUsers => Reply::Now(users::list(state, false)),
        // The permission check comes first and must stop the kick (an eager
        // `require(..).and(kick(..))` once let anyone kick anyone).
        Request::AdminKick { user, reason } => match admin::require(state, session) {
            Ok(()) => Reply::Now(admin::kick_user(state, &actor(state, session), &user, &reason).await),
            Err(e) => Reply::Now(Err(e)),
        },
        Request::AdminBan { user, reason } => match admin::require(state, session) {
            Ok(_) => Reply::Now(admin::ban_user(state, &actor(state, session), &user, &reason, true).await),
            Err(e) => Reply::Now(Err(e)),
        },
        Request::AdminUnban { user } => match admin::require(state, session) {
            Ok(_) => Reply::Now(admin::ban_user(state, &actor(state, session), &user, "", false).await),
            Err(e) => Reply::Now(Err(e)),
        },
        Request::AdminRemoveRoom { name } => match admin::require(state, session) {
            Ok(_) => Reply::Now(admin::remove_room(state, &actor(state, session), &name).await),
            Err(e) => Reply::Now(Err(e)),
        },
        Request::UploadFile { conv, name, size, meta } => {
            Reply::Now(files::upload(state, session, conv, name, size, meta).await)
        }
        Request::DownloadFile { file } => Reply::Now(files::download(state, session, file).await),
        Request::SetSharing { listener } => {
            Reply::Now(crate::peer::search::set_sharing(state, session, listener))
        }
        Request::WhoHas { room, query } => crate::peer::search::who_has(state, session, id, room, query),
        Request::AnswerSearch { search, files } => {
            Reply::Now(crate::peer::search::answer(state, session, search, files))
        }
        Request::PeerFetch { room, sharer, sha256 } => {
            Reply::Now(crate::peer::tickets::fetch(state, session, room, sharer, sha256))
        }
        Request::PeerRelay { ticket } => Reply::Now(crate::peer::tickets::relay(state, session, ticket)),
        Request::AnswerOffer { file, accept } => {
            Reply::Now(files::answer(state, session, file, accept).await)
        }
        Request::SetRoomSettings { room, settings } => {
            Reply::Now(moderation::set_room_settings(state, session, room, settings).await)
        }
        Request::Mute { scope, user, secs } => {
            Reply::Now(moderation::mute(state, session, scope, user, secs).await)
        }
        Request::Unmute { scope, user } => Reply::Now(moderation::unmute(state, session, scope, user).await),
        Request::ListMutes { scope } => Reply::Now(moderation::list_mutes(state, session, scope)),
        Request::SetExamMode { on, questions_room } => {
            Reply::Now(moderation::set_exam_mode(state, session, on, questions_room).await)
        }
        Request::AuditLog { before, limit } => {
            Reply::Now(moderation::audit_log(state, session, before, limit).await)
        }
        Request::AskQuestion { room, text, anonymous } => {
            Reply::Now(questions::ask(state, session, room, text, anonymous).await)
        }
        Request::Upvote { question, up } => Reply::Now(questions::upvote(state, session, question, up).await),
        Request::MarkAnswered { question, answered, answer } => {
            Reply::Now(questions::mark_answered(state, session, question, answered, answer).await)
        }
        Request::Questions { room } => Reply::Now(questions::list(state, session, room)),
        Request::CreatePoll { room, question, options, multiple, anonymous, closes_at } => {
            let new = polls::NewPoll { room, question, options, multiple, anonymous, closes_at };
            Reply::Now(polls::create(state, session, new).await)
        }
        Request::Vote { poll, choices } => Reply::Now(polls::vote(state, session, poll, choices).await),
        Request::ClosePoll { poll } => Reply::Now(polls::close(state, session, poll).await),
        Request::Polls { room } => Reply::Now(polls::list(state, session, room)),
        Request::JoinQueue { instructor } => Reply::Now(office_hours::join(state, session, instructor).await),
        Request::LeaveQueue { instructor } => {
            Reply::Now(office_hours::leave(state, session, instructor).await)
        }
        Request::OfficeQueue => Reply::Now(office_hours::list(state, session)),
        Request::NextInQueue => Reply::Now(office_hours::next(state, session).await),
        Request::AttachUpload { .. }
        | Request::FinishUpload { .. }
        | Request::AttachDownload { .. }
        | Request::AttachRelay { .. } => Reply::Now(Err(ApiError::new(
            ErrorCode::BadRequest,
            "only as the first request of a bulk connection",
        ))),
        Request::Edit { id: msg, body } => rich::edit(state, session, id, msg, body).await,
        Request::Delete { id: msg, proof } => rich::delete(state, session, id, msg, proof).await,
        Request::React { id: msg, emoji, on } => rich::react(state, session, id, msg, emoji, on).await,
        Request::SearchMessages { query, room, offset, limit } => {
            Reply::Now(crate::search::search(state, session, query, room, offset, limit).await)
        }
    }
}

/// The display name of the session's user, for the audit log.
fn actor(state: &State, session: &Session) -> String {
    session.user.as_deref().map(|u| State::display_name(&state.lock(), u)).unwrap_or_default()
}

/// The logged-in user of `session` (dispatch guarantees there is one).
pub fn me(session: &Session) -> ApiResult<Lc> {
    session.user.clone().ok_or_else(|| ApiError::new(ErrorCode::NotLoggedIn, "log in first"))
}

/// Builds a store job whose completion delivers every message in `writes` (except to
/// `except`) in commit order and then calls `then` with the outcome.
pub fn job(
    state: &State,
    writes: Vec<Write>,
    except: Option<SessionId>,
    then: impl FnOnce(&Committed) + Send + 'static,
) -> Job {
    let state = state.clone();
    Job {
        writes,
        // The messages are moved out of the job's writes once they are committed: no copy
        // of the conversation, sender and body per message.
        done: Some(Box::new(move |result: Committed, writes: Vec<Write>| {
            if let Ok(ids) = &result {
                let messages = writes.into_iter().filter_map(|w| match w {
                    Write::Message { conv, sender, body, reply_to } => Some((conv, sender, body, reply_to)),
                    _ => None,
                });
                for ((conv, sender, body, reply_to), &(id, ts)) in messages.zip(ids) {
                    let m = StoredMessage {
                        id,
                        conv,
                        sender,
                        ts,
                        body,
                        reply_to,
                        edited: None,
                        reactions: Vec::new(),
                    };
                    state.deliver(&m, except);
                }
            }
            // After the gathered deliveries are out: a reply follows its events.
            crate::state::after_gather(move || then(&result));
        })),
    }
}

/// Commits `writes`, delivers their messages, and waits for durability.
pub async fn commit(
    state: &State,
    writes: Vec<Write>,
    except: Option<SessionId>,
) -> ApiResult<Vec<(u64, u64)>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let j = job(state, writes, except, move |r| {
        let _ = tx.send(r.clone());
    });
    state.store.submit(j).await.map_err(ApiError::store)?;
    match rx.await {
        Ok(Ok(ids)) => Ok(ids),
        Ok(Err(e)) => Err(ApiError::store(e)),
        Err(_) => Err(ApiError::internal("store stopped")),
    }
}
