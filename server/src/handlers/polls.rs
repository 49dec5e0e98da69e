//! Polls: room staff create and close them, members vote once per account and may change
//! their vote until the poll closes.
//!
//! Wire forms: `{"create_poll": {"room": str, "question": str, "options": [str],
//! "multiple": bool, "anonymous": bool, "closes_at": u64|nil}}`,
//! `{"vote": {"poll": u64, "choices": [u32]}}`, `{"close_poll": {"poll": u64}}`,
//! `{"polls": {"room": str}}`.

use classchat_wire::{
    ErrorCode, MAX_OPEN_POLLS_PER_ROOM, MAX_POLL_OPEN_MS, MAX_POLL_OPTION_LEN, MAX_POLL_OPTIONS,
    MAX_POLL_QUESTION_LEN, MIN_POLL_OPTIONS, PollId, Response, Timestamp,
};

use super::rooms::member_room;
use super::{ApiError, ApiResult, commit, me};
use crate::class::{self, Act, KEEP_CLOSED_POLLS, PollRec};
use crate::session::Session;
use crate::state::{Inner, State};
use crate::store::{IdKind, Write, now_ms};

fn find<'a>(inner: &'a Inner, me: &str, id: PollId) -> ApiResult<&'a PollRec> {
    inner
        .class
        .polls
        .get(&id)
        .filter(|p| inner.rooms.get(&p.room).is_some_and(|r| r.members.contains_key(me)))
        .ok_or_else(|| ApiError::new(ErrorCode::NoSuchPoll, format!("there is no poll {id} you can see")))
}

async fn save_and_send(state: &State, me: &str, mut writes: Vec<Write>, p: PollRec) -> ApiResult {
    writes.push(class::put_poll(&p)?);
    commit(state, writes, None).await?;
    let inner = state.lock();
    class::send_poll(&inner, &p);
    Ok(Response::Poll { poll: class::poll_view(&inner, &p, me) })
}

/// Trimmed text of 1 ..= `max` bytes.
fn text(what: &str, value: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("the {what} is empty")));
    }
    if value.len() > max {
        return Err(ApiError::new(ErrorCode::TooLong, format!("the {what} is at most {max} bytes")));
    }
    Ok(value.to_owned())
}

pub struct NewPoll {
    pub room: String,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    pub anonymous: bool,
    pub closes_at: Option<Timestamp>,
}

pub async fn create(state: &State, session: &Session, new: NewPoll) -> ApiResult {
    let me = me(session)?;
    if !(MIN_POLL_OPTIONS..=MAX_POLL_OPTIONS).contains(&new.options.len()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a poll has {MIN_POLL_OPTIONS} to {MAX_POLL_OPTIONS} options, not {}", new.options.len()),
        ));
    }
    let question = text("question", &new.question, MAX_POLL_QUESTION_LEN)?;
    let options =
        new.options.iter().map(|o| text("option", o, MAX_POLL_OPTION_LEN)).collect::<ApiResult<Vec<_>>>()?;
    for (i, o) in options.iter().enumerate() {
        if options[..i].iter().any(|earlier| earlier.eq_ignore_ascii_case(o)) {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("the option \"{o}\" appears twice")));
        }
    }
    let now = now_ms();
    if let Some(t) = new.closes_at
        && (t <= now || t - now > MAX_POLL_OPEN_MS)
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the closing time must be in the future and at most a week away",
        ));
    }
    let shared_id = state.store.next_id(IdKind::Poll).await.map_err(ApiError::internal)?;
    let (writes, p) = {
        let mut inner = state.lock();
        let lc = member_room(&inner, &me, &new.room)?;
        if !class::is_staff(&inner, &lc, &me) {
            return Err(ApiError::new(ErrorCode::NotRoomAdmin, "only the room's admins post polls"));
        }
        let of_room: Vec<&PollRec> = inner.class.polls.values().filter(|p| p.room == lc).collect();
        if of_room.iter().filter(|p| !p.closed).count() >= MAX_OPEN_POLLS_PER_ROOM {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a room has at most {MAX_OPEN_POLLS_PER_ROOM} open polls; close one first"),
            ));
        }
        let mut writes = Vec::new();
        let closed: Vec<PollId> = of_room.iter().filter(|p| p.closed).map(|p| p.id).collect();
        if closed.len() >= KEEP_CLOSED_POLLS {
            let oldest = closed[0];
            inner.class.polls.remove(&oldest);
            writes.push(Write::DeleteObject { kind: class::KIND_POLL, key: oldest.to_string() });
        }
        let p = PollRec {
            id: inner.class.new_poll_id(shared_id),
            room: lc,
            question,
            options,
            multiple: new.multiple,
            anonymous: new.anonymous,
            by: State::display_name(&inner, &me),
            ts: now,
            closes_at: new.closes_at,
            closed: false,
            votes: Default::default(),
        };
        inner.class.polls.insert(p.id, p.clone());
        (writes, p)
    };
    save_and_send(state, &me, writes, p).await
}

pub async fn vote(state: &State, session: &Session, poll: PollId, mut choices: Vec<u32>) -> ApiResult {
    let me = me(session)?;
    super::messages::rate_ok(state, &me)?;
    let p = {
        let mut inner = state.lock();
        let p = find(&inner, &me, poll)?;
        if p.closed || p.closes_at.is_some_and(|t| t <= now_ms()) {
            return Err(ApiError::new(ErrorCode::PollClosed, "the poll is closed"));
        }
        if choices.is_empty() {
            return Err(ApiError::new(ErrorCode::BadRequest, "choose at least one option"));
        }
        if let Some(&bad) = choices.iter().find(|&&c| c as usize >= p.options.len()) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("the poll has no option {bad} (options are 0 to {})", p.options.len() - 1),
            ));
        }
        choices.sort_unstable();
        if choices.windows(2).any(|w| w[0] == w[1]) {
            return Err(ApiError::new(ErrorCode::BadRequest, "an option is chosen twice"));
        }
        if !p.multiple && choices.len() > 1 {
            return Err(ApiError::new(ErrorCode::BadRequest, "this poll takes one choice"));
        }
        let room = p.room.clone();
        class::check_room(&mut inner, &me, &room, Act::Vote)?;
        let Some(p) = inner.class.polls.get_mut(&poll) else {
            return Err(ApiError::internal("the poll went away"));
        };
        // One entry per account: voting again replaces the earlier choices.
        p.votes.insert(me.clone(), choices);
        p.clone()
    };
    save_and_send(state, &me, Vec::new(), p).await
}

pub async fn close(state: &State, session: &Session, poll: PollId) -> ApiResult {
    let me = me(session)?;
    let p = {
        let mut inner = state.lock();
        let p = find(&inner, &me, poll)?;
        if !class::is_staff(&inner, &p.room, &me) {
            return Err(ApiError::new(ErrorCode::NotRoomAdmin, "only the room's admins close polls"));
        }
        if p.closed {
            return Err(ApiError::new(ErrorCode::PollClosed, "the poll is already closed"));
        }
        let Some(p) = inner.class.polls.get_mut(&poll) else {
            return Err(ApiError::internal("the poll went away"));
        };
        p.closed = true;
        p.clone()
    };
    save_and_send(state, &me, Vec::new(), p).await
}

pub fn list(state: &State, session: &Session, room: String) -> ApiResult {
    let me = me(session)?;
    let inner = state.lock();
    let lc = member_room(&inner, &me, &room)?;
    let polls = inner
        .class
        .polls
        .values()
        .rev()
        .filter(|p| p.room == lc)
        .map(|p| class::poll_view(&inner, p, &me))
        .collect();
    Ok(Response::Polls { room: State::display_room(&inner, &lc), polls })
}
