//! Questions in Q&A rooms: ask (optionally anonymous to classmates), upvote, mark answered.
//!
//! Wire forms: `{"ask_question": {"room": str, "text": str, "anonymous": bool}}`,
//! `{"upvote": {"question": u64, "up": bool}}`,
//! `{"mark_answered": {"question": u64, "answered": bool, "answer": u64|nil}}`,
//! `{"questions": {"room": str}}`.
//!
//! An anonymous question's author is only ever put into what instructors receive: every
//! reply and event goes through `class::question_view` for its receiver.

use classchat_wire::{ErrorCode, MAX_QUESTION_LEN, MAX_QUESTIONS_PER_ROOM, MessageId, QuestionId, Response};

use super::{ApiError, ApiResult, commit, me};
use crate::class::{self, Act, QuestionRec};
use crate::session::Session;
use crate::state::{Inner, Lc, State, room_conv};
use crate::store::{IdKind, Write, now_ms};

/// The room's key, if `me` is a member of it and it is a Q&A room.
fn qa_room(inner: &Inner, me: &str, room: &str) -> ApiResult<Lc> {
    let lc = super::rooms::member_room(inner, me, room)?;
    match inner.rooms.get(&lc) {
        Some(r) if r.settings.qa => Ok(lc),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("#{} is not a Q&A room", State::display_room(inner, &lc)),
        )),
    }
}

/// The question, if `me` may see it (a member of its room).
fn find<'a>(inner: &'a Inner, me: &str, id: QuestionId) -> ApiResult<&'a QuestionRec> {
    inner
        .class
        .questions
        .get(&id)
        .filter(|q| inner.rooms.get(&q.room).is_some_and(|r| r.members.contains_key(me)))
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NoSuchQuestion, format!("there is no question {id} you can see"))
        })
}

/// Commits the question's new state and sends every member their view of it.
async fn save_and_send(state: &State, me: &str, mut writes: Vec<Write>, q: QuestionRec) -> ApiResult {
    writes.push(class::put_question(&q)?);
    commit(state, writes, None).await?;
    let inner = state.lock();
    class::send_question(&inner, &q);
    Ok(Response::Question { question: class::question_view(&inner, &q, me) })
}

pub async fn ask(state: &State, session: &Session, room: String, text: String, anonymous: bool) -> ApiResult {
    let me = me(session)?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "the question is empty"));
    }
    if text.len() > MAX_QUESTION_LEN {
        return Err(ApiError::new(
            ErrorCode::TooLong,
            format!("a question is at most {MAX_QUESTION_LEN} bytes; this one is {}", text.len()),
        ));
    }
    super::messages::rate_ok(state, &me)?;
    let shared_id = state.store.next_id(IdKind::Question).await.map_err(ApiError::internal)?;
    let (writes, q) = {
        let mut inner = state.lock();
        let lc = qa_room(&inner, &me, &room)?;
        class::check_room(&mut inner, &me, &lc, Act::Ask)?;
        let mut writes = Vec::new();
        let in_room: Vec<&QuestionRec> = inner.class.questions.values().filter(|q| q.room == lc).collect();
        if in_room.len() >= MAX_QUESTIONS_PER_ROOM {
            // Make room by forgetting the oldest answered question; with none answered,
            // the list is full of open questions and a new one must wait.
            let Some(oldest) = in_room.iter().find(|q| q.answered).map(|q| q.id) else {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "this room has {MAX_QUESTIONS_PER_ROOM} open questions; ask again once some are answered"
                    ),
                ));
            };
            inner.class.questions.remove(&oldest);
            writes.push(Write::DeleteObject { kind: class::KIND_QUESTION, key: oldest.to_string() });
        }
        let q = QuestionRec {
            id: inner.class.new_question_id(shared_id),
            room: lc,
            text,
            author: me.clone(),
            anonymous,
            voters: Default::default(),
            answered: false,
            answer: None,
            ts: now_ms(),
        };
        inner.class.questions.insert(q.id, q.clone());
        (writes, q)
    };
    save_and_send(state, &me, writes, q).await
}

pub async fn upvote(state: &State, session: &Session, question: QuestionId, up: bool) -> ApiResult {
    let me = me(session)?;
    super::messages::rate_ok(state, &me)?;
    let q = {
        let mut inner = state.lock();
        let q = find(&inner, &me, question)?;
        if q.author == me {
            return Err(ApiError::new(ErrorCode::Forbidden, "you cannot upvote your own question"));
        }
        let room = q.room.clone();
        class::check_room(&mut inner, &me, &room, Act::Vote)?;
        let Some(q) = inner.class.questions.get_mut(&question) else {
            return Err(ApiError::internal("the question went away"));
        };
        let changed = if up { q.voters.insert(me.clone()) } else { q.voters.remove(&me) };
        if !changed {
            let msg =
                if up { "you already upvoted this question" } else { "you have not upvoted this question" };
            return Err(ApiError::new(ErrorCode::AlreadyDone, msg));
        }
        q.clone()
    };
    save_and_send(state, &me, Vec::new(), q).await
}

pub async fn mark_answered(
    state: &State,
    session: &Session,
    question: QuestionId,
    answered: bool,
    answer: Option<MessageId>,
) -> ApiResult {
    let me = me(session)?;
    let room = {
        let inner = state.lock();
        let q = find(&inner, &me, question)?;
        if !class::is_staff(&inner, &q.room, &me) {
            return Err(ApiError::new(
                ErrorCode::NotRoomAdmin,
                "only the room's admins mark questions answered",
            ));
        }
        q.room.clone()
    };
    if let Some(id) = answer {
        if !answered {
            return Err(ApiError::new(ErrorCode::BadRequest, "only an answered question links an answer"));
        }
        // The answer must be a message of the same room.
        let conv = room_conv(&room);
        let found = state.store.message(id).await.map_err(ApiError::internal)?;
        if found.is_none_or(|m| m.conv != conv) {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("message {id} is not in this room")));
        }
    }
    let q = {
        let mut inner = state.lock();
        let Some(q) = inner.class.questions.get_mut(&question) else {
            return Err(ApiError::new(ErrorCode::NoSuchQuestion, format!("there is no question {question}")));
        };
        q.answered = answered;
        q.answer = if answered { answer } else { None };
        q.clone()
    };
    save_and_send(state, &me, Vec::new(), q).await
}

pub fn list(state: &State, session: &Session, room: String) -> ApiResult {
    let me = me(session)?;
    let inner = state.lock();
    let lc = qa_room(&inner, &me, &room)?;
    let mut questions: Vec<_> = inner
        .class
        .questions
        .values()
        .filter(|q| q.room == lc)
        .map(|q| class::question_view(&inner, q, &me))
        .collect();
    questions.sort_by(class::question_order);
    Ok(Response::Questions { room: State::display_room(&inner, &lc), questions })
}
