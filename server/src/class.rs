//! The instructor tools' state and the rules the server enforces with it: who may post
//! where (mutes, announce-only rooms, slow mode, exam mode), questions, polls and
//! office-hours queues. The request handlers are in `handlers/moderation.rs`,
//! `questions.rs`, `polls.rs` and `office_hours.rs`; PROTOCOL.md section 16 has the rules.
//!
//! Everything here lives in [`ClassState`] inside the state's one lock. Each record is
//! also kept in the `class_objects` table as a MessagePack value under a kind and a key,
//! written in the same commit as the change and loaded back at startup, so all of it
//! survives a restart. Records are small and few (bounded per room and per queue), which
//! is why they are whole values rather than tables of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use classchat_wire::{
    ClassStatus, ErrorCode, Event, ExamInfo, MessageId, MuteInfo, MuteScope, Poll, PollId, Question,
    QuestionId, QueuePosition, RoomSettings, ServerMsg, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::handlers::{ApiError, ApiResult};
use crate::state::{Inner, Lc, State};
use crate::store::{Write, now_ms};

pub const KIND_SETTINGS: &str = "settings";
pub const KIND_MUTE: &str = "mute";
pub const KIND_EXAM: &str = "exam";
pub const KIND_QUESTION: &str = "question";
pub const KIND_POLL: &str = "poll";
pub const KIND_QUEUE: &str = "queue";

/// Closed polls a room keeps; creating one more forgets the oldest closed poll.
pub const KEEP_CLOSED_POLLS: usize = 50;
/// How often the server looks for polls whose closing time has passed.
const CLOSE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A mute: `room` `None` is server-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteRec {
    pub room: Option<Lc>,
    pub user: Lc,
    pub until: Option<Timestamp>,
    /// Display name of who muted.
    pub by: String,
}

impl MuteRec {
    pub fn key(room: Option<&str>, user: &str) -> String {
        // Names never contain '/' or '*'.
        format!("{}/{user}", room.unwrap_or("*"))
    }

    fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|t| t > now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamRec {
    pub questions_room: Option<Lc>,
    pub since: Timestamp,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionRec {
    pub id: QuestionId,
    pub room: Lc,
    pub text: String,
    pub author: Lc,
    pub anonymous: bool,
    pub voters: BTreeSet<Lc>,
    pub answered: bool,
    pub answer: Option<MessageId>,
    pub ts: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRec {
    pub id: PollId,
    pub room: Lc,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    pub anonymous: bool,
    /// Display name of the creator.
    pub by: String,
    pub ts: Timestamp,
    pub closes_at: Option<Timestamp>,
    pub closed: bool,
    /// Voter → chosen option indexes (distinct, ascending). One entry per account.
    pub votes: BTreeMap<Lc, Vec<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRec {
    pub student: Lc,
    pub since: Timestamp,
}

#[derive(Debug, Default)]
pub struct ClassState {
    /// (room or `None` for server-wide, user) → mute. Expired mutes count as lifted.
    pub mutes: HashMap<(Option<Lc>, Lc), MuteRec>,
    pub exam: Option<ExamRec>,
    pub questions: BTreeMap<QuestionId, QuestionRec>,
    pub polls: BTreeMap<PollId, PollRec>,
    /// Instructor → students waiting, in order.
    pub queues: HashMap<Lc, Vec<QueueRec>>,
    next_question: QuestionId,
    next_poll: PollId,
}

impl ClassState {
    /// The mute of `user` in `room` (or server-wide), if in force.
    pub fn mute_of(&self, room: Option<&str>, user: &str, now: Timestamp) -> Option<&MuteRec> {
        self.mutes.get(&(room.map(str::to_owned), user.to_owned())).filter(|m| m.in_force(now))
    }

    /// The next question id, or `shared` (from a store several nodes share).
    pub fn new_question_id(&mut self, shared: Option<QuestionId>) -> QuestionId {
        let id = shared.unwrap_or(self.next_question + 1);
        self.next_question = self.next_question.max(id);
        id
    }

    /// The next poll id, or `shared` (from a store several nodes share).
    pub fn new_poll_id(&mut self, shared: Option<PollId>) -> PollId {
        let id = shared.unwrap_or(self.next_poll + 1);
        self.next_poll = self.next_poll.max(id);
        id
    }

    /// Forgets everything of a removed room (the store drops its records with the room).
    pub fn forget_room(&mut self, room: &str) {
        self.mutes.retain(|(r, _), _| r.as_deref() != Some(room));
        self.questions.retain(|_, q| q.room != room);
        self.polls.retain(|_, p| p.room != room);
        if let Some(exam) = self.exam.as_mut()
            && exam.questions_room.as_deref() == Some(room)
        {
            exam.questions_room = None;
        }
    }
}

/// Loads the records read at startup into `inner` (rooms must be loaded already).
pub fn load(inner: &mut Inner, objects: Vec<(String, String, Vec<u8>)>) {
    let now = now_ms();
    for (kind, key, value) in objects {
        let loaded = match kind.as_str() {
            KIND_SETTINGS => classchat_wire::decode::<RoomSettings>(&value).map(|s| {
                if let Some(room) = inner.rooms.get_mut(&key) {
                    room.settings = s;
                }
            }),
            KIND_MUTE => classchat_wire::decode::<MuteRec>(&value).map(|m| {
                if m.in_force(now) {
                    inner.class.mutes.insert((m.room.clone(), m.user.clone()), m);
                }
            }),
            KIND_EXAM => classchat_wire::decode::<ExamRec>(&value).map(|e| inner.class.exam = Some(e)),
            KIND_QUESTION => classchat_wire::decode::<QuestionRec>(&value).map(|q| {
                inner.class.next_question = inner.class.next_question.max(q.id);
                inner.class.questions.insert(q.id, q);
            }),
            KIND_POLL => classchat_wire::decode::<PollRec>(&value).map(|p| {
                inner.class.next_poll = inner.class.next_poll.max(p.id);
                inner.class.polls.insert(p.id, p);
            }),
            KIND_QUEUE => classchat_wire::decode::<Vec<QueueRec>>(&value).map(|q| {
                inner.class.queues.insert(key.clone(), q);
            }),
            _ => Ok(()),
        };
        if let Err(e) = loaded {
            tracing::error!(kind, key, error = %e, "skipping a class record that does not decode");
        }
    }
}

/// Drops the record `kind`/`key` from memory: what another node's `DeleteObject` did to
/// its own (`crate::bus`).
pub fn forget(inner: &mut Inner, kind: &str, key: &str) {
    match kind {
        KIND_SETTINGS => {
            if let Some(room) = inner.rooms.get_mut(key) {
                room.settings = Default::default();
            }
        }
        KIND_MUTE => {
            let (room, user) = key.split_once('/').unwrap_or(("*", key));
            let room = (room != "*").then(|| room.to_owned());
            inner.class.mutes.remove(&(room, user.to_owned()));
        }
        KIND_EXAM => inner.class.exam = None,
        KIND_QUESTION => {
            if let Ok(id) = key.parse() {
                inner.class.questions.remove(&id);
            }
        }
        KIND_POLL => {
            if let Ok(id) = key.parse() {
                inner.class.polls.remove(&id);
            }
        }
        KIND_QUEUE => {
            inner.class.queues.remove(key);
        }
        _ => {}
    }
}

/// A write that stores `value` under `kind`/`key` (belonging to `room`, if any).
pub fn put<T: Serialize>(kind: &'static str, key: String, room: Option<&str>, value: &T) -> ApiResult<Write> {
    let value = classchat_wire::encode(value).map_err(ApiError::internal)?;
    Ok(Write::PutObject { kind, key, room: room.map(str::to_owned), value })
}

pub fn put_question(q: &QuestionRec) -> ApiResult<Write> {
    put(KIND_QUESTION, q.id.to_string(), Some(&q.room), q)
}

pub fn put_poll(p: &PollRec) -> ApiResult<Write> {
    put(KIND_POLL, p.id.to_string(), Some(&p.room), p)
}

pub fn put_queue(instructor: &str, queue: &[QueueRec]) -> ApiResult<Write> {
    if queue.is_empty() {
        Ok(Write::DeleteObject { kind: KIND_QUEUE, key: instructor.to_owned() })
    } else {
        put(KIND_QUEUE, instructor.to_owned(), None, &queue)
    }
}

// ---- roles -------------------------------------------------------------------------------

/// A server admin.
pub fn is_instructor(inner: &Inner, user: &str) -> bool {
    inner.users.get(user).is_some_and(|u| u.server_admin)
}

/// An instructor or the room's admin.
pub fn is_staff(inner: &Inner, room: &str, user: &str) -> bool {
    is_instructor(inner, user) || inner.rooms.get(room).is_some_and(|r| r.admin == user)
}

// ---- the posting rules -------------------------------------------------------------------

/// What a user is about to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// A message or a file: every rule applies.
    Post,
    /// A question (Q&A): mutes and exam mode apply; announce-only and slow mode do not,
    /// since asking is what an announce-only lecture room's students do.
    Ask,
    /// A vote or an upvote: exam mode applies, mutes do not.
    Vote,
}

/// "4 min", "35 s", "2 h 5 min", "3 days".
pub fn human_duration(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs.div_ceil(60)),
        3600..86_400 => {
            let mins = secs.div_ceil(60);
            if mins.is_multiple_of(60) {
                format!("{} h", mins / 60)
            } else {
                format!("{} h {} min", mins / 60, mins % 60)
            }
        }
        _ => {
            let days = secs.div_ceil(86_400);
            if days == 1 { "1 day".to_owned() } else { format!("{days} days") }
        }
    }
}

fn muted(m: &MuteRec, where_: &str, now: Timestamp) -> ApiError {
    let message = match m.until {
        Some(t) => format!("you are muted {where_} for another {}", human_duration(t.saturating_sub(now))),
        None => format!("you are muted {where_} until a moderator lifts it"),
    };
    ApiError::new(ErrorCode::Muted, message)
}

fn server_muted(inner: &Inner, me: &str, now: Timestamp) -> ApiResult<()> {
    match inner.class.mute_of(None, me, now) {
        Some(m) => Err(muted(m, "on this server", now)),
        None => Ok(()),
    }
}

/// Whether `me` may do `act` in `room` (a room `me` is a member of). A `Post` that is
/// allowed starts `me`'s slow-mode interval.
pub fn check_room(inner: &mut Inner, me: &str, room: &str, act: Act) -> ApiResult<()> {
    let now = now_ms();
    let instructor = is_instructor(inner, me);
    let Some(r) = inner.rooms.get(room) else { return Ok(()) };
    let staff = instructor || r.admin == me;
    if !instructor {
        if act != Act::Vote {
            server_muted(inner, me, now)?;
        }
        if let Some(exam) = &inner.class.exam
            && exam.questions_room.as_deref() != Some(room)
        {
            let message = match exam.questions_room.as_ref().and_then(|q| inner.rooms.get(q)) {
                Some(q) => format!("exam mode is on: students can only post in #{}", q.name),
                None => "exam mode is on: rooms are read-only for students".to_owned(),
            };
            return Err(ApiError::new(ErrorCode::ReadOnly, message));
        }
    }
    if staff {
        return Ok(());
    }
    if act != Act::Vote
        && let Some(m) = inner.class.mute_of(Some(room), me, now)
    {
        return Err(muted(m, &format!("in #{}", r.name), now));
    }
    if act != Act::Post {
        return Ok(());
    }
    if r.settings.announce_only {
        return Err(ApiError::new(ErrorCode::ReadOnly, format!("only admins post in #{}", r.name)));
    }
    if r.settings.slow_mode_secs > 0 {
        let every = Duration::from_secs(u64::from(r.settings.slow_mode_secs));
        if let Some(last) = r.last_post.get(me)
            && last.elapsed() < every
        {
            let wait = every - last.elapsed();
            return Err(ApiError::new(
                ErrorCode::SlowMode,
                format!(
                    "slow mode is on in #{}: you can post again in {}",
                    r.name,
                    human_duration(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
                ),
            ));
        }
        if let Some(r) = inner.rooms.get_mut(room) {
            if r.last_post.len() > 2 * r.members.len() {
                r.last_post.retain(|_, t| t.elapsed() < every);
            }
            r.last_post.insert(me.to_owned(), Instant::now());
        }
    }
    Ok(())
}

/// Whether `me` may send a direct message to `peer`.
pub fn check_direct(inner: &Inner, me: &str, peer: &str) -> ApiResult<()> {
    if is_instructor(inner, me) {
        return Ok(());
    }
    server_muted(inner, me, now_ms())?;
    if inner.class.exam.is_some() && !is_instructor(inner, peer) {
        return Err(ApiError::new(
            ErrorCode::ExamMode,
            "exam mode is on: students can only write to instructors",
        ));
    }
    Ok(())
}

/// Whether `me` may broadcast (the permission to broadcast at all is checked apart).
pub fn check_broadcast(inner: &Inner, me: &str) -> ApiResult<()> {
    if is_instructor(inner, me) { Ok(()) } else { server_muted(inner, me, now_ms()) }
}

/// Whether `me` may share a file at all now (the room or DM rules apply on top).
pub fn check_files(inner: &Inner, me: &str) -> ApiResult<()> {
    if inner.class.exam.is_some() && !is_instructor(inner, me) {
        return Err(ApiError::new(ErrorCode::ExamMode, "exam mode is on: students cannot share files"));
    }
    Ok(())
}

// ---- what each receiver sees ------------------------------------------------------------

pub fn mute_info(inner: &Inner, m: &MuteRec) -> MuteInfo {
    let scope = match &m.room {
        Some(r) => MuteScope::Room { name: State::display_room(inner, r) },
        None => MuteScope::Server,
    };
    MuteInfo { scope, user: State::display_name(inner, &m.user), until: m.until, by: m.by.clone() }
}

pub fn exam_info(inner: &Inner) -> Option<ExamInfo> {
    inner.class.exam.as_ref().map(|e| ExamInfo {
        questions_room: e.questions_room.as_ref().map(|r| State::display_room(inner, r)),
        since: e.since,
        by: e.by.clone(),
    })
}

/// Exam mode, `user`'s mutes in force and their places in queues: for `Welcome`.
pub fn status_for(inner: &Inner, user: &str) -> ClassStatus {
    let now = now_ms();
    let mut mutes: Vec<MuteInfo> = inner
        .class
        .mutes
        .values()
        .filter(|m| m.user == user && m.in_force(now))
        .map(|m| mute_info(inner, m))
        .collect();
    mutes.sort_by(|a, b| a.scope.cmp(&b.scope));
    let mut queues: Vec<QueuePosition> = inner
        .class
        .queues
        .iter()
        .filter_map(|(instructor, q)| {
            let at = q.iter().position(|e| e.student == user)?;
            Some(QueuePosition {
                instructor: State::display_name(inner, instructor),
                position: u32::try_from(at + 1).unwrap_or(u32::MAX),
            })
        })
        .collect();
    queues.sort_by(|a, b| a.instructor.cmp(&b.instructor));
    ClassStatus { exam: exam_info(inner), mutes, queues }
}

/// The question as `viewer` may see it: an anonymous author only for instructors.
pub fn question_view(inner: &Inner, q: &QuestionRec, viewer: &str) -> Question {
    let show_author = !q.anonymous || is_instructor(inner, viewer);
    Question {
        id: q.id,
        room: State::display_room(inner, &q.room),
        text: q.text.clone(),
        author: show_author.then(|| State::display_name(inner, &q.author)),
        anonymous: q.anonymous,
        mine: q.author == viewer,
        votes: u32::try_from(q.voters.len()).unwrap_or(u32::MAX),
        voted: q.voters.contains(viewer),
        answered: q.answered,
        answer: q.answer,
        ts: q.ts,
    }
}

/// Unanswered first, then most votes, then oldest.
pub fn question_order(a: &Question, b: &Question) -> std::cmp::Ordering {
    a.answered.cmp(&b.answered).then(b.votes.cmp(&a.votes)).then(a.id.cmp(&b.id))
}

pub fn poll_view(inner: &Inner, p: &PollRec, viewer: &str) -> Poll {
    let mut counts = vec![0u32; p.options.len()];
    let mut names = vec![Vec::new(); p.options.len()];
    for (voter, choices) in &p.votes {
        for &c in choices {
            if let Some(n) = counts.get_mut(c as usize) {
                *n += 1;
            }
            if !p.anonymous
                && let Some(list) = names.get_mut(c as usize)
            {
                list.push(State::display_name(inner, voter));
            }
        }
    }
    Poll {
        id: p.id,
        room: State::display_room(inner, &p.room),
        question: p.question.clone(),
        options: p.options.clone(),
        multiple: p.multiple,
        anonymous: p.anonymous,
        by: p.by.clone(),
        ts: p.ts,
        closes_at: p.closes_at,
        closed: p.closed,
        counts,
        voters: u32::try_from(p.votes.len()).unwrap_or(u32::MAX),
        mine: p.votes.get(viewer).cloned().unwrap_or_default(),
        names,
    }
}

// ---- events ------------------------------------------------------------------------------

/// Sends every online member of `room` their own view of an event.
fn to_members(inner: &Inner, room: &str, view: impl Fn(&str) -> Event) {
    let Some(r) = inner.rooms.get(room) else { return };
    for member in r.members.keys() {
        let Some(u) = inner.users.get(member) else { continue };
        if !u.online() {
            continue;
        }
        let Some(frame) = State::encode(&ServerMsg::Event { event: view(member) }) else { continue };
        State::send_to_users(inner, std::iter::once(member.as_str()), &frame);
    }
}

pub fn send_question(inner: &Inner, q: &QuestionRec) {
    to_members(inner, &q.room, |viewer| Event::Question { question: question_view(inner, q, viewer) });
}

pub fn send_poll(inner: &Inner, p: &PollRec) {
    to_members(inner, &p.room, |viewer| Event::Poll { poll: poll_view(inner, p, viewer) });
}

pub fn send_room_settings(inner: &Inner, room: &str) {
    let Some(r) = inner.rooms.get(room) else { return };
    let event = Event::RoomSettings { room: r.name.clone(), settings: r.settings.clone() };
    to_members(inner, room, |_| event.clone());
}

// ---- polls that close by themselves -------------------------------------------------------

/// Closes polls whose closing time has passed, once a second, until shutdown. Polls due
/// while the server was down close at the first check after it starts.
pub async fn close_due_polls_task(state: State) {
    let mut tick = tokio::time::interval(CLOSE_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => close_due_polls(&state).await,
        }
    }
}

async fn close_due_polls(state: &State) {
    let now = now_ms();
    let due: Vec<PollRec> = {
        let mut inner = state.lock();
        let mut due = Vec::new();
        for p in inner.class.polls.values_mut() {
            if !p.closed && p.closes_at.is_some_and(|t| t <= now) {
                p.closed = true;
                due.push(p.clone());
            }
        }
        due
    };
    if due.is_empty() {
        return;
    }
    let writes: ApiResult<Vec<Write>> = due.iter().map(put_poll).collect();
    let committed = match writes {
        Ok(writes) => crate::handlers::commit(state, writes, None).await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        tracing::error!(error = %e.message, "could not close polls that are due");
        return;
    }
    let inner = state.lock();
    for p in &due {
        tracing::info!(poll = p.id, room = %p.room, "poll closed at its closing time");
        send_poll(&inner, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(1), "1 s");
        assert_eq!(human_duration(59_000), "59 s");
        assert_eq!(human_duration(60_000), "1 min");
        assert_eq!(human_duration(299_001), "5 min");
        assert_eq!(human_duration(3_600_000), "1 h");
        assert_eq!(human_duration(3_900_000), "1 h 5 min");
        assert_eq!(human_duration(86_400_000), "1 day");
        assert_eq!(human_duration(3 * 86_400_000), "3 days");
    }

    #[test]
    fn mute_keys_tell_rooms_from_the_server() {
        assert_eq!(MuteRec::key(Some("lab"), "bob"), "lab/bob");
        assert_eq!(MuteRec::key(None, "bob"), "*/bob");
    }

    #[test]
    fn a_timed_mute_ends_by_itself() {
        let m = MuteRec { room: None, user: "bob".into(), until: Some(1_000), by: "prof".into() };
        assert!(m.in_force(999));
        assert!(!m.in_force(1_000));
        let forever = MuteRec { until: None, ..m };
        assert!(forever.in_force(u64::MAX));
    }

    #[test]
    fn questions_sort_unanswered_first_then_by_votes_then_oldest() {
        let q = |id, votes, answered| Question {
            id,
            room: "r".into(),
            text: String::new(),
            author: None,
            anonymous: false,
            mine: false,
            votes,
            voted: false,
            answered,
            answer: None,
            ts: 0,
        };
        let mut list = [q(1, 9, true), q(2, 1, false), q(3, 5, false), q(4, 5, false)];
        list.sort_by(question_order);
        assert_eq!(list.iter().map(|q| q.id).collect::<Vec<_>>(), vec![3, 4, 2, 1]);
    }
}
