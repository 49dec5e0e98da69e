//! Office-hours queues: a student joins an instructor's queue; the instructor takes the
//! next student, who hears `Called` (the app then opens their DM).
//!
//! Wire forms: `{"join_queue": {"instructor": str}}`, `{"leave_queue": {"instructor": str}}`,
//! `"office_queue"`, `"next_in_queue"`.

use classchat_wire::{ErrorCode, Event, MAX_QUEUE_LEN, QueueEntry, QueuePosition, Response};

use super::{ApiError, ApiResult, commit, me};
use crate::class::{self, QueueRec};
use crate::session::Session;
use crate::state::{Inner, Lc, State};
use crate::store::now_ms;

fn entries(inner: &Inner, queue: &[QueueRec]) -> Vec<QueueEntry> {
    queue
        .iter()
        .map(|e| QueueEntry { student: State::display_name(inner, &e.student), since: e.since })
        .collect()
}

fn position(at: usize) -> u32 {
    u32::try_from(at + 1).unwrap_or(u32::MAX)
}

/// Tells the instructor their queue and every student in it (from `from` on, whose place
/// moved) their new place.
fn announce(inner: &Inner, instructor: &str, from: usize) {
    let queue = inner.class.queues.get(instructor).map(Vec::as_slice).unwrap_or_default();
    State::event_to_user(inner, instructor, Event::QueueChanged { students: entries(inner, queue) });
    let name = State::display_name(inner, instructor);
    for (at, e) in queue.iter().enumerate().skip(from) {
        State::event_to_user(
            inner,
            &e.student,
            Event::QueueMoved { instructor: name.clone(), position: Some(position(at)) },
        );
    }
}

fn instructor_of(inner: &Inner, name: &str) -> ApiResult<Lc> {
    let lc = name.to_ascii_lowercase();
    match inner.users.get(&lc) {
        None => Err(ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {name}"))),
        Some(u) if !u.server_admin => {
            Err(ApiError::new(ErrorCode::BadRequest, format!("{} is not an instructor", u.name)))
        }
        Some(_) => Ok(lc),
    }
}

pub async fn join(state: &State, session: &Session, instructor: String) -> ApiResult {
    let me = me(session)?;
    let (lc, at, write) = {
        let mut inner = state.lock();
        let lc = instructor_of(&inner, &instructor)?;
        if lc == me {
            return Err(ApiError::new(ErrorCode::BadRequest, "you cannot queue for yourself"));
        }
        let queue = inner.class.queues.entry(lc.clone()).or_default();
        if queue.iter().any(|e| e.student == me) {
            return Err(ApiError::new(
                ErrorCode::AlreadyDone,
                format!("you are already in {instructor}'s queue"),
            ));
        }
        if queue.len() >= MAX_QUEUE_LEN {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{instructor}'s queue is full ({MAX_QUEUE_LEN} students); try again later"),
            ));
        }
        queue.push(QueueRec { student: me.clone(), since: now_ms() });
        let at = queue.len() - 1;
        (lc.clone(), at, class::put_queue(&lc, queue)?)
    };
    commit(state, vec![write], None).await?;
    let inner = state.lock();
    announce(&inner, &lc, at + 1);
    let instructor = State::display_name(&inner, &lc);
    Ok(Response::Queued { position: QueuePosition { instructor, position: position(at) } })
}

pub async fn leave(state: &State, session: &Session, instructor: String) -> ApiResult {
    let me = me(session)?;
    let (lc, at, write) = {
        let mut inner = state.lock();
        let lc = instructor.to_ascii_lowercase();
        let queue = inner.class.queues.get_mut(&lc);
        let Some((queue, at)) = queue.and_then(|q| q.iter().position(|e| e.student == me).map(|at| (q, at)))
        else {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("you are not in {instructor}'s queue")));
        };
        queue.remove(at);
        let write = class::put_queue(&lc, queue)?;
        if queue.is_empty() {
            inner.class.queues.remove(&lc);
        }
        (lc, at, write)
    };
    commit(state, vec![write], None).await?;
    let inner = state.lock();
    announce(&inner, &lc, at);
    let name = State::display_name(&inner, &lc);
    State::event_to_user(&inner, &me, Event::QueueMoved { instructor: name, position: None });
    Ok(Response::Done)
}

pub fn list(state: &State, session: &Session) -> ApiResult {
    let me = me(session)?;
    let inner = state.lock();
    if !class::is_instructor(&inner, &me) {
        return Err(ApiError::new(ErrorCode::NotServerAdmin, "only instructors hold office hours"));
    }
    let queue = inner.class.queues.get(&me).map(Vec::as_slice).unwrap_or_default();
    Ok(Response::Queue { students: entries(&inner, queue) })
}

pub async fn next(state: &State, session: &Session) -> ApiResult {
    let me = me(session)?;
    let (student, write) = {
        let mut inner = state.lock();
        if !class::is_instructor(&inner, &me) {
            return Err(ApiError::new(ErrorCode::NotServerAdmin, "only instructors hold office hours"));
        }
        let Some(queue) = inner.class.queues.get_mut(&me).filter(|q| !q.is_empty()) else {
            return Ok(Response::Next { student: None });
        };
        let student = queue.remove(0).student;
        let write = class::put_queue(&me, queue)?;
        if queue.is_empty() {
            inner.class.queues.remove(&me);
        }
        (student, write)
    };
    commit(state, vec![write], None).await?;
    let inner = state.lock();
    announce(&inner, &me, 0);
    let name = State::display_name(&inner, &me);
    State::event_to_user(&inner, &student, Event::QueueMoved { instructor: name.clone(), position: None });
    State::event_to_user(&inner, &student, Event::Called { instructor: name });
    Ok(Response::Next { student: Some(State::display_name(&inner, &student)) })
}
