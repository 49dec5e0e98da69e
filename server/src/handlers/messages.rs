//! Sending: to a room, directly to a user, and to everyone; and delivery acknowledgements.
//!
//! Wire forms: `{"send_room": {"room": str, "text": str, "reply_to": u64?}}`,
//! `{"send_direct": {"to": str, "body": bin, "reply_to": u64?}}`, `{"broadcast": {"text": str}}`, and the
//! non-request `{"ack": {"conv": Conv, "up_to": u64}}`.
//!
//! A message is acknowledged (`Sent`) by the store's writer once it is durable, right
//! before it is fanned out, so the reader goes on with the next request meanwhile.

use classchat_wire::{Body, Conv, ErrorCode, MessageId, Response, ServerMsg};

use super::{ApiError, ApiResult, Reply, job, me};
use crate::session::Session;
use crate::state::{ANNOUNCEMENTS, Lc, State, dm_conv, room_conv};
use crate::store::{Committed, Write};

pub fn check_len(state: &State, len: usize) -> ApiResult<()> {
    if len == 0 {
        return Err(ApiError::new(ErrorCode::BadRequest, "the message is empty"));
    }
    if len > state.config.max_message_len {
        return Err(ApiError::new(
            ErrorCode::TooLong,
            format!("the message is {len} bytes; the limit is {}", state.config.max_message_len),
        ));
    }
    Ok(())
}

/// Takes one token from the user's bucket (messages, questions, votes).
pub fn rate_ok(state: &State, user: &str) -> ApiResult<()> {
    let (per_second, burst) = (state.config.messages_per_second, state.config.message_burst);
    let mut inner = state.lock();
    let ok = inner.users.get_mut(user).is_some_and(|u| u.bucket.take(per_second, burst));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("you are sending too fast (at most {per_second} messages a second); wait a moment"),
        ))
    }
}

/// Queues `writes` and arranges for the `Sent` reply once durable.
async fn submit(
    state: &State,
    session: &Session,
    id: u32,
    writes: Vec<Write>,
    recipients: Option<u32>,
) -> Reply {
    let tx = session.tx.clone();
    let kill = session.kill.clone();
    let j = job(state, writes, Some(session.id), move |result: &Committed| {
        let msg = match result {
            Ok(ids) => match ids.last() {
                Some(&(mid, ts)) => ServerMsg::Ok {
                    id,
                    body: match recipients {
                        Some(recipients) => Response::Broadcast { id: mid, ts, recipients },
                        None => Response::Sent { id: mid, ts },
                    },
                },
                None => {
                    ServerMsg::Err { id, code: ErrorCode::Internal, message: "nothing was stored".into() }
                }
            },
            Err(e) => match e.strip_prefix(crate::store::UNAVAILABLE) {
                Some(why) => ServerMsg::Err { id, code: ErrorCode::Unavailable, message: why.into() },
                None => ServerMsg::Err {
                    id,
                    code: ErrorCode::Internal,
                    message: "the server could not store the message; try again".into(),
                },
            },
        };
        if let Some(frame) = State::encode(&msg)
            && tx.try_send(crate::state::Outgoing::Frame(frame)).is_err()
        {
            kill.cancel();
        }
    });
    match state.store.submit(j).await {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Now(Err(ApiError::store(e))),
    }
}

pub async fn send_room(
    state: &State,
    session: &Session,
    id: u32,
    room: String,
    text: String,
    reply_to: Option<MessageId>,
) -> Reply {
    let prepared = (|| {
        let me = me(session)?;
        check_len(state, text.len())?;
        let lc = room.to_ascii_lowercase();
        let sender = {
            let inner = state.lock();
            let r = inner.rooms.get(&lc).ok_or_else(|| {
                ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room called {room}"))
            })?;
            if !r.members.contains_key(&me) {
                return Err(ApiError::new(ErrorCode::NotMember, format!("you are not in {}", r.name)));
            }
            State::display_name(&inner, &me)
        };
        rate_ok(state, &me)?;
        // After the rate check, so that a message refused for speed does not start a
        // slow-mode interval.
        crate::class::check_room(&mut state.lock(), &me, &lc, crate::class::Act::Post)?;
        Ok((lc, sender))
    })();
    match prepared {
        Ok((lc, sender)) => {
            let conv = room_conv(&lc);
            if let Err(e) = super::rich::check_reply(state, &conv, reply_to).await {
                return Reply::Now(Err(e));
            }
            let write = Write::Message { conv, sender, body: Body::Text { text }, reply_to };
            submit(state, session, id, vec![write], None).await
        }
        Err(e) => Reply::Now(Err(e)),
    }
}

pub async fn send_direct(
    state: &State,
    session: &Session,
    id: u32,
    to: String,
    body: Vec<u8>,
    reply_to: Option<MessageId>,
) -> Reply {
    let prepared = (|| {
        let me = me(session)?;
        check_len(state, body.len())?;
        let peer = to.to_ascii_lowercase();
        let (sender, new_pair) = {
            let inner = state.lock();
            if !inner.users.contains_key(&peer) {
                return Err(ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {to}")));
            }
            crate::class::check_direct(&inner, &me, &peer)?;
            let new_pair = !inner.users.get(&me).is_some_and(|u| u.dm_peers.contains(&peer));
            (State::display_name(&inner, &me), new_pair)
        };
        rate_ok(state, &me)?;
        Ok((me, peer, sender, new_pair))
    })();
    let (me, peer, sender, new_pair) = match prepared {
        Ok(p) => p,
        Err(e) => return Reply::Now(Err(e)),
    };
    let conv = dm_conv(&me, &peer);
    if let Err(e) = super::rich::check_reply(state, &conv, reply_to).await {
        return Reply::Now(Err(e));
    }
    let mut writes = Vec::new();
    if new_pair {
        let mut inner = state.lock();
        if let Some(u) = inner.users.get_mut(&me) {
            u.dm_peers.insert(peer.clone());
        }
        if let Some(u) = inner.users.get_mut(&peer) {
            u.dm_peers.insert(me.clone());
        }
        let (a, b) = if me <= peer { (me.clone(), peer.clone()) } else { (peer.clone(), me.clone()) };
        writes.push(Write::AddDmPair { a, b });
    }
    writes.push(Write::Message { conv, sender, body: Body::Opaque { data: body }, reply_to });
    submit(state, session, id, writes, None).await
}

pub async fn broadcast(state: &State, session: &Session, id: u32, text: String) -> Reply {
    let prepared = (|| {
        let me = me(session)?;
        check_len(state, text.len())?;
        let (sender, allowed, recipients) = {
            let inner = state.lock();
            crate::class::check_broadcast(&inner, &me)?;
            let admin = inner.users.get(&me).is_some_and(|u| u.server_admin);
            let online = inner.users.iter().filter(|(k, u)| **k != me && u.online()).count();
            (State::display_name(&inner, &me), admin || state.config.allow_user_broadcast, online)
        };
        if !allowed {
            return Err(ApiError::new(ErrorCode::Forbidden, "only instructors may broadcast on this server"));
        }
        rate_ok(state, &me)?;
        Ok((sender, u32::try_from(recipients).unwrap_or(u32::MAX)))
    })();
    match prepared {
        Ok((sender, recipients)) => {
            let write = Write::Message {
                conv: ANNOUNCEMENTS.to_owned(),
                sender,
                body: Body::Text { text },
                reply_to: None,
            };
            submit(state, session, id, vec![write], Some(recipients)).await
        }
        Err(e) => Reply::Now(Err(e)),
    }
}

/// The database key of `conv` as seen by `me`, if `me` may read it.
pub fn conv_key(state: &State, me: &Lc, conv: &Conv) -> ApiResult<String> {
    let inner = state.lock();
    match conv {
        Conv::Room { name } => {
            let lc = name.to_ascii_lowercase();
            let room = inner.rooms.get(&lc).ok_or_else(|| {
                ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room called {name}"))
            })?;
            if !room.members.contains_key(me) {
                return Err(ApiError::new(ErrorCode::NotMember, format!("you are not in {}", room.name)));
            }
            Ok(room_conv(&lc))
        }
        Conv::Direct { user } => {
            let peer = user.to_ascii_lowercase();
            if !inner.users.contains_key(&peer) {
                return Err(ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {user}")));
            }
            Ok(dm_conv(me, &peer))
        }
        Conv::Announcements => Ok(ANNOUNCEMENTS.to_owned()),
    }
}

/// Moves this device's delivered cursor (in memory; see `cursors`). Ignored when not
/// logged in or not allowed.
pub async fn ack(state: &State, session: &Session, conv: Conv, up_to: MessageId) {
    let Some(me) = session.user.clone() else { return };
    let Ok(key) = conv_key(state, &me, &conv) else { return };
    if state.cursors.ack(me, session.device.clone(), key, up_to) {
        crate::cursors::flush(state, None).await;
    }
}
