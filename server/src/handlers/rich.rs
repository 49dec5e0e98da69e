//! Replies, edits, deletes, reactions and typing (PROTOCOL.md section 18).
//!
//! Wire forms: `{"edit": {"id": u64, "body": Body}}`, `{"delete": {"id": u64, "proof":
//! bin?}}`, `{"react": {"id": u64, "emoji": str, "on": bool}}`, and the non-request
//! `{"typing": {"conv": Conv}}`. `reply_to` of `send_room`/`send_direct` is checked here
//! ([`check_reply`]).
//!
//! An edit, delete or reaction is one store job whose completion, on the store's writer
//! thread and so in commit order with messages, sends the event to every session in the
//! conversation (the acting one included: the event carries what its `done` does not, the
//! edit's time and the whole reaction list), then the `done` reply. Each gets an id from
//! the message sequence (`store::rich`), which is how catch-up finds the changes a device
//! missed ([`catch_up`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use classchat_wire::{
    AuditAction, Body, Conv, ErrorCode, Event, MAX_EMOJI_LEN, MAX_REACTIONS, MessageId, Response, ServerMsg,
    TYPING_INTERVAL_MS,
};

use super::messages::{check_len, rate_ok};
use super::{ApiError, ApiResult, Reply, me};
use crate::class::Act;
use crate::session::Session;
use crate::state::{ANNOUNCEMENTS, Inner, Lc, Outgoing, State};
use crate::store::rich::{Changed, UpdateKind};
use crate::store::{Committed, Job, StoredMessage, Write};

/// The conversation a message belongs to, from its database key.
#[derive(Debug, Clone)]
enum Place {
    Room(Lc),
    Direct(Lc, Lc),
    Announcements,
}

impl Place {
    fn of(key: &str) -> Option<Place> {
        if let Some(room) = key.strip_prefix("r:") {
            Some(Place::Room(room.to_owned()))
        } else if let Some((a, b)) = key.strip_prefix("d:").and_then(|p| p.split_once(':')) {
            Some(Place::Direct(a.to_owned(), b.to_owned()))
        } else {
            (key == ANNOUNCEMENTS).then_some(Place::Announcements)
        }
    }

    /// Whether `me` may read it now.
    fn readable(&self, inner: &Inner, me: &str) -> bool {
        match self {
            Place::Room(r) => inner.rooms.get(r).is_some_and(|r| r.members.contains_key(me)),
            Place::Direct(a, b) => a == me || b == me,
            Place::Announcements => true,
        }
    }
}

fn no_such(id: MessageId) -> ApiError {
    ApiError::new(ErrorCode::NoSuchMessage, format!("there is no message {id} that you can see"))
}

/// Message `id` in its current state and where it lives, if `me` may read it (or, with
/// `admin_sees_all`, `me` is a server admin).
async fn locate(
    state: &State,
    me: &Lc,
    id: MessageId,
    admin_sees_all: bool,
) -> ApiResult<(StoredMessage, Place)> {
    let m = state.store.message(id).await.map_err(ApiError::internal)?.ok_or_else(|| no_such(id))?;
    let place = Place::of(&m.conv).ok_or_else(|| no_such(id))?;
    let inner = state.lock();
    let admin = admin_sees_all && crate::class::is_instructor(&inner, me);
    if admin || place.readable(&inner, me) { Ok((m, place)) } else { Err(no_such(id)) }
}

fn is_sender(m: &StoredMessage, me: &str) -> bool {
    m.sender.eq_ignore_ascii_case(me)
}

fn deleted(id: MessageId) -> ApiError {
    ApiError::new(ErrorCode::MessageDeleted, format!("message {id} was deleted"))
}

/// `reply_to` of a new message in conversation `conv` (a database key) must name a
/// message of that conversation.
pub async fn check_reply(state: &State, conv: &str, reply_to: Option<MessageId>) -> ApiResult<()> {
    let Some(id) = reply_to else { return Ok(()) };
    let m = state.store.message(id).await.map_err(ApiError::internal)?;
    match m {
        Some(m) if m.conv == conv => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::NoSuchMessage,
            format!("there is no message {id} in this conversation to reply to"),
        )),
    }
}

/// `edit`: your own text message (rooms, announcements) or envelope (direct).
pub async fn edit(state: &State, session: &Session, rid: u32, id: MessageId, body: Body) -> Reply {
    let prepared = async {
        let me = me(session)?;
        let (m, place) = locate(state, &me, id, false).await?;
        if matches!(m.body, Body::Deleted { .. }) {
            return Err(deleted(id));
        }
        if !is_sender(&m, &me) {
            return Err(ApiError::new(ErrorCode::NotYourMessage, "you can only edit your own messages"));
        }
        match (&place, &m.body, &body) {
            (Place::Room(_) | Place::Announcements, Body::Text { .. }, Body::Text { text }) => {
                check_len(state, text.len())?;
            }
            (Place::Direct(..), Body::Opaque { .. }, Body::Opaque { data }) => check_len(state, data.len())?,
            (_, Body::Text { .. } | Body::Opaque { .. }, _) => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "a room or announcement message is edited with text, a direct message with an envelope",
                ));
            }
            _ => {
                return Err(ApiError::new(ErrorCode::BadRequest, "only text messages can be edited"));
            }
        }
        {
            let mut inner = state.lock();
            match &place {
                // As for asking a question: mutes and exam mode apply; slow mode does not,
                // so a typo can be fixed at once.
                Place::Room(room) => crate::class::check_room(&mut inner, &me, room, Act::Ask)?,
                Place::Direct(a, b) => crate::class::check_direct(&inner, &me, if *a == me { b } else { a })?,
                Place::Announcements => crate::class::check_broadcast(&inner, &me)?,
            }
        }
        rate_ok(state, &me)?;
        Ok((vec![Write::Edit { id, body }], place))
    }
    .await;
    match prepared {
        Ok((writes, place)) => commit_update(state, session, rid, writes, place).await,
        Err(e) => Reply::Now(Err(e)),
    }
}

/// `delete`: your own message; any in a room you administer; any as a server admin.
pub async fn delete(
    state: &State,
    session: &Session,
    rid: u32,
    id: MessageId,
    proof: Option<Vec<u8>>,
) -> Reply {
    let prepared = async {
        let me = me(session)?;
        let (m, place) = locate(state, &me, id, true).await?;
        if matches!(m.body, Body::Deleted { .. }) {
            return Err(deleted(id));
        }
        if matches!(m.body, Body::System { .. }) {
            return Err(ApiError::new(ErrorCode::BadRequest, "a room event cannot be deleted"));
        }
        let own = is_sender(&m, &me);
        let inner = state.lock();
        let server_admin = crate::class::is_instructor(&inner, &me);
        let room_admin =
            matches!(&place, Place::Room(r) if inner.rooms.get(r).is_some_and(|r| r.admin == me));
        if !own && !server_admin && !room_admin {
            return Err(ApiError::new(
                ErrorCode::NotYourMessage,
                "only its sender, the room's admin or a server admin can delete this message",
            ));
        }
        if let Some(p) = &proof {
            if !(own && matches!(place, Place::Direct(..))) {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "a proof goes only with deleting your own direct message",
                ));
            }
            check_len(state, p.len())?;
        }
        let by = State::display_name(&inner, &me);
        let mut writes = vec![Write::DeleteMessage { id, by, proof }];
        if !own {
            let detail = match &place {
                Place::Room(r) => format!("message {id} in #{}", State::display_room(&inner, r)),
                Place::Direct(..) => format!("direct message {id}"),
                Place::Announcements => format!("announcement {id}"),
            };
            writes.push(super::moderation::audit(&inner, &me, AuditAction::DeleteMessage, &m.sender, detail));
        }
        Ok((writes, place))
    }
    .await;
    match prepared {
        Ok((writes, place)) => commit_update(state, session, rid, writes, place).await,
        Err(e) => Reply::Now(Err(e)),
    }
}

/// Why an emoji is refused, if it is.
fn bad_emoji(emoji: &str) -> Option<String> {
    if emoji.is_empty() {
        Some("the reaction is empty".into())
    } else if emoji.len() > MAX_EMOJI_LEN {
        Some(format!("a reaction is at most {MAX_EMOJI_LEN} bytes"))
    } else if emoji.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("a reaction cannot hold control characters or spaces".into())
    } else {
        None
    }
}

/// `react`: adds or takes back your reaction. Draws on the user's message budget
/// (`messages_per_second`, `message_burst`), so a reaction flood is `rate_limited` like a
/// message flood and costs nobody else anything.
pub async fn react(
    state: &State,
    session: &Session,
    rid: u32,
    id: MessageId,
    emoji: String,
    on: bool,
) -> Reply {
    let prepared = async {
        let me = me(session)?;
        if let Some(why) = bad_emoji(&emoji) {
            return Err(ApiError::new(ErrorCode::BadRequest, why));
        }
        let (m, place) = locate(state, &me, id, false).await?;
        if matches!(m.body, Body::Deleted { .. }) {
            return Err(deleted(id));
        }
        if on && m.reactions.len() >= MAX_REACTIONS && !m.reactions.iter().any(|r| r.emoji == emoji) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("a message has at most {MAX_REACTIONS} different reactions"),
            ));
        }
        let user = {
            let mut inner = state.lock();
            match &place {
                // As for a vote: exam mode applies, mutes do not.
                Place::Room(room) => crate::class::check_room(&mut inner, &me, room, Act::Vote)?,
                Place::Direct(a, b) => crate::class::check_direct(&inner, &me, if *a == me { b } else { a })?,
                Place::Announcements => {}
            }
            State::display_name(&inner, &me)
        };
        rate_ok(state, &me)?;
        Ok((vec![Write::React { id, emoji, user_lc: me, user, on, now: Vec::new() }], place))
    }
    .await;
    match prepared {
        Ok((writes, place)) => commit_update(state, session, rid, writes, place).await,
        Err(e) => Reply::Now(Err(e)),
    }
}

/// Commits `writes`; once durable, sends each change's event to the conversation and then
/// `done` to the caller.
async fn commit_update(
    state: &State,
    session: &Session,
    rid: u32,
    writes: Vec<Write>,
    place: Place,
) -> Reply {
    let (tx, kill, st) = (session.tx.clone(), session.kill.clone(), state.clone());
    let done = move |result: Committed, writes: Vec<Write>| {
        let reply = match result {
            Ok(ids) => {
                let changes = writes.into_iter().filter(|w| {
                    matches!(w, Write::Edit { .. } | Write::DeleteMessage { .. } | Write::React { .. })
                });
                for (write, (_, ts)) in changes.zip(ids) {
                    if let Some(make) = event_of(write, ts) {
                        to_conversation(&st, &place, &make);
                    }
                }
                ServerMsg::Ok { id: rid, body: Response::Done }
            }
            Err(_) => ServerMsg::Err {
                id: rid,
                code: ErrorCode::Internal,
                message:
                    "the server could not store the change (was the message deleted meanwhile?); try again"
                        .into(),
            },
        };
        crate::state::after_gather(move || {
            if let Some(frame) = State::encode(&reply)
                && tx.try_send(Outgoing::Frame(frame)).is_err()
            {
                kill.cancel();
            }
        });
    };
    match state.store.submit(Job { writes, done: Some(Box::new(done)) }).await {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Now(Err(ApiError::store(e))),
    }
}

type MakeEvent = Box<dyn Fn(Conv) -> Event>;

/// The event of a committed change, given the conversation as each receiver names it.
fn event_of(write: Write, ts: u64) -> Option<MakeEvent> {
    Some(match write {
        Write::Edit { id, body } => Box::new(move |conv| Event::Edited { conv, id, body: body.clone(), ts }),
        Write::DeleteMessage { id, by, proof } => {
            Box::new(move |conv| Event::Deleted { conv, id, by: by.clone(), proof: proof.clone() })
        }
        Write::React { id, now, .. } => {
            Box::new(move |conv| Event::Reactions { conv, id, reactions: now.clone() })
        }
        _ => return None,
    })
}

/// Sends an event to every session of everyone in the conversation.
fn to_conversation(state: &State, place: &Place, make: &dyn Fn(Conv) -> Event) {
    let inner = state.lock();
    match place {
        Place::Room(room) => {
            let Some(r) = inner.rooms.get(room) else { return };
            let Some(frame) =
                State::encode(&ServerMsg::Event { event: make(Conv::Room { name: r.name.clone() }) })
            else {
                return;
            };
            State::send_to_room(&inner, room, None, &frame);
        }
        Place::Direct(a, b) => {
            for (me, peer) in [(a, b), (b, a)] {
                State::event_to_user(
                    &inner,
                    me,
                    make(Conv::Direct { user: State::display_name(&inner, peer) }),
                );
                if a == b {
                    break;
                }
            }
        }
        Place::Announcements => {
            let Some(frame) = State::encode(&ServerMsg::Event { event: make(Conv::Announcements) }) else {
                return;
            };
            State::send_to_all(&inner, &frame);
        }
    }
}

/// The events that bring a device up to date with messages it has that changed since
/// (`store::rich::changed_since`): a deletion, or the latest text and reactions.
pub fn catch_up(changed: Vec<Changed>, conv: &Conv) -> Vec<Event> {
    let mut out = Vec::new();
    for Changed { message: m, kinds } in changed {
        let conv = conv.clone();
        if let Body::Deleted { by, proof } = m.body {
            out.push(Event::Deleted { conv, id: m.id, by, proof });
            continue;
        }
        if let (true, Some(ts)) = (kinds.contains(&UpdateKind::Edit), m.edited) {
            out.push(Event::Edited { conv: conv.clone(), id: m.id, body: m.body, ts });
        }
        if kinds.contains(&UpdateKind::React) {
            out.push(Event::Reactions { conv, id: m.id, reactions: m.reactions });
        }
    }
    out
}

/// Most (user, conversation) typing records kept; past it, expired ones are dropped, and
/// while it stays full further `typing` is dropped.
const MAX_TYPING_RECORDS: usize = 65_536;

/// When each user last had a `typing` passed on, per conversation.
#[derive(Debug, Default)]
pub struct TypingGate(Mutex<HashMap<(Lc, String), Instant>>);

impl TypingGate {
    /// Whether `user`'s typing in `conv` may be passed on now (and records it if so).
    fn allow(&self, user: &str, conv: &str) -> bool {
        let every = Duration::from_millis(TYPING_INTERVAL_MS);
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (user.to_owned(), conv.to_owned());
        if map.get(&key).is_some_and(|t| t.elapsed() < every) {
            return false;
        }
        if map.len() >= MAX_TYPING_RECORDS && !map.contains_key(&key) {
            map.retain(|_, t| t.elapsed() < every);
            if map.len() >= MAX_TYPING_RECORDS {
                return false;
            }
        }
        map.insert(key, Instant::now());
        true
    }
}

/// `typing`: passed on to the others in the conversation who are online, at most once per
/// user and conversation every `TYPING_INTERVAL_MS`; never stored. Dropped without a word
/// when not allowed (there is no reply to a `typing`).
pub fn typing(state: &State, session: &Session, conv: Conv) {
    let Some(me) = session.user.clone() else { return };
    let inner = state.lock();
    let name = State::display_name(&inner, &me);
    match conv {
        Conv::Room { name: room } => {
            let lc = room.to_ascii_lowercase();
            let Some(r) = inner.rooms.get(&lc) else { return };
            if !r.members.contains_key(&me) || !state.typing.allow(&me, &crate::state::room_conv(&lc)) {
                return;
            }
            let event = Event::Typing { conv: Conv::Room { name: r.name.clone() }, user: name };
            let Some(frame) = State::encode(&ServerMsg::Event { event }) else { return };
            State::send_to_room(&inner, &lc, Some(&me), &frame);
        }
        Conv::Direct { user } => {
            let peer = user.to_ascii_lowercase();
            let pair = peer != me && inner.users.get(&me).is_some_and(|u| u.dm_peers.contains(&peer));
            if !pair
                || crate::class::check_direct(&inner, &me, &peer).is_err()
                || !state.typing.allow(&me, &crate::state::dm_conv(&me, &peer))
            {
                return;
            }
            State::event_to_user(
                &inner,
                &peer,
                Event::Typing { conv: Conv::Direct { user: name.clone() }, user: name },
            );
        }
        // Only instructors write there, and not as a conversation.
        Conv::Announcements => {}
    }
}
