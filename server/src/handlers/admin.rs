//! Server administration, shared by the protocol (for server admins), the admin console
//! and the admin socket.
//!
//! Wire forms: `{"admin_kick": {"user": str, "reason": str}}`,
//! `{"admin_ban": {"user": str, "reason": str}}`, `{"admin_unban": {"user": str}}`,
//! `{"admin_remove_room": {"name": str}}`.

use classchat_wire::{AuditAction, DEFAULT_ROOM, ErrorCode, Event, Response};

use super::{ApiError, ApiResult, commit, me};
use crate::session::Session;
use crate::state::{State, room_conv};
use crate::store::Write;

pub fn require(state: &State, session: &Session) -> ApiResult<()> {
    let me = me(session)?;
    if state.lock().users.get(&me).is_some_and(|u| u.server_admin) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotServerAdmin, "only server admins can do that"))
    }
}

/// The audit entry of a server admin's action; `actor` is a display name ("console" for
/// the admin console and socket).
fn audit(actor: &str, action: AuditAction, target: &str, detail: &str) -> Write {
    Write::Audit { actor: actor.to_owned(), action, target: target.to_owned(), detail: detail.to_owned() }
}

fn no_user(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {name}"))
}

/// Disconnects every session of `user` and revokes their resume tokens, so an app cannot
/// simply reconnect: coming back takes the password.
pub async fn kick_user(state: &State, actor: &str, user: &str, reason: &str) -> ApiResult {
    let lc = user.to_ascii_lowercase();
    let name = {
        let inner = state.lock();
        let u = inner.users.get(&lc).ok_or_else(|| no_user(user))?;
        if !u.online() {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("{} is not online", u.name)));
        }
        u.name.clone()
    };
    // No device is called "": every token goes.
    let writes = vec![
        Write::RevokeTokens { user: lc.clone(), keep: String::new() },
        audit(actor, AuditAction::ServerKick, &name, reason),
    ];
    commit(state, writes, None).await?;
    let reason = if reason.is_empty() {
        "removed by an admin".to_owned()
    } else {
        format!("removed by an admin: {reason}")
    };
    State::disconnect_user(&state.lock(), &lc, &reason);
    Ok(Response::Done)
}

/// Bans (or unbans) an account; a ban also disconnects it.
pub async fn ban_user(state: &State, actor: &str, user: &str, reason: &str, banned: bool) -> ApiResult {
    let lc = user.to_ascii_lowercase();
    let name = {
        let mut inner = state.lock();
        if !crate::state::ban_account(&mut inner, &lc, banned) {
            return Err(no_user(user));
        }
        State::display_name(&inner, &lc)
    };
    let action = if banned { AuditAction::ServerBan } else { AuditAction::ServerUnban };
    let writes = vec![Write::SetBanned { user: lc.clone(), banned }, audit(actor, action, &name, reason)];
    commit(state, writes, None).await?;
    if banned {
        let reason = if reason.is_empty() {
            "banned by an admin".to_owned()
        } else {
            format!("banned by an admin: {reason}")
        };
        State::disconnect_user(&state.lock(), &lc, &reason);
    }
    Ok(Response::Done)
}

/// Deletes a room, its history and memberships. Members are told.
pub async fn remove_room(state: &State, actor: &str, name: &str) -> ApiResult {
    let lc = name.to_ascii_lowercase();
    if lc == DEFAULT_ROOM {
        return Err(ApiError::new(ErrorCode::Forbidden, format!("{DEFAULT_ROOM} cannot be removed")));
    }
    let (room_name, members, exam) = {
        let mut inner = state.lock();
        let room = inner
            .rooms
            .remove(&lc)
            .ok_or_else(|| ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room called {name}")))?;
        for m in room.members.keys() {
            if let Some(u) = inner.users.get_mut(m) {
                u.rooms.remove(&lc);
            }
        }
        inner.class.forget_room(&lc);
        // Exam mode stays on, without the questions room if it was this one.
        let exam = match &inner.class.exam {
            Some(e) => {
                Some(crate::class::put(crate::class::KIND_EXAM, crate::class::KIND_EXAM.to_owned(), None, e)?)
            }
            None => None,
        };
        (room.name, room.members.into_keys().collect::<Vec<_>>(), exam)
    };
    let mut writes = vec![
        Write::DeleteRoom { room: lc.clone() },
        audit(actor, AuditAction::RemoveRoom, &format!("#{room_name}"), ""),
    ];
    writes.extend(exam);
    commit(state, writes, None).await?;
    let inner = state.lock();
    for m in members {
        State::event_to_user(
            &inner,
            &m,
            Event::RemovedFromRoom {
                room: room_name.clone(),
                reason: format!("an admin removed {room_name}"),
            },
        );
    }
    tracing::info!(room = %room_name, conv = %room_conv(&lc), "room removed");
    Ok(Response::Done)
}

/// Grants or revokes server admin rights.
pub async fn set_server_admin(state: &State, user: &str, admin: bool) -> ApiResult {
    let lc = user.to_ascii_lowercase();
    state.lock().users.get_mut(&lc).ok_or_else(|| no_user(user))?.server_admin = admin;
    commit(state, vec![Write::SetServerAdmin { user: lc, admin }], None).await?;
    Ok(Response::Done)
}
