//! Moderation: room settings, timed mutes, exam mode and the audit log.
//!
//! Wire forms: `{"set_room_settings": {"room": str, "settings": RoomSettings}}`,
//! `{"mute": {"scope": MuteScope, "user": str, "secs": u64|nil}}`,
//! `{"unmute": {"scope": MuteScope, "user": str}}`, `{"list_mutes": {"scope": MuteScope}}`,
//! `{"set_exam_mode": {"on": bool, "questions_room": str|nil}}`,
//! `{"audit_log": {"before": u64|nil, "limit": u32}}`.

use classchat_wire::{
    AuditAction, ErrorCode, Event, MAX_AUDIT_PAGE, MAX_MUTE_SECS, MAX_SLOW_MODE_SECS, MuteScope, Response,
    RoomSettings,
};

use super::{ApiError, ApiResult, commit, me};
use crate::class::{self, ExamRec, MuteRec};
use crate::session::Session;
use crate::state::{Inner, Lc, State};
use crate::store::{Write, now_ms};

fn no_room(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NoSuchRoom, format!("there is no room called {name}"))
}

fn no_user(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {name}"))
}

/// The room's key if `me` is its staff.
fn require_staff(inner: &Inner, me: &str, room: &str) -> ApiResult<Lc> {
    let lc = room.to_ascii_lowercase();
    let r = inner.rooms.get(&lc).ok_or_else(|| no_room(room))?;
    if class::is_staff(inner, &lc, me) {
        Ok(lc)
    } else {
        Err(ApiError::new(ErrorCode::NotRoomAdmin, format!("only the admins of #{} can do that", r.name)))
    }
}

fn require_instructor(inner: &Inner, me: &str) -> ApiResult<()> {
    if class::is_instructor(inner, me) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotServerAdmin, "only instructors (server admins) can do that"))
    }
}

/// An audit entry by `actor` (a key) about `target` (already a display name).
pub fn audit(inner: &Inner, actor: &str, action: AuditAction, target: &str, detail: String) -> Write {
    Write::Audit { actor: State::display_name(inner, actor), action, target: target.to_owned(), detail }
}

fn describe(settings: &RoomSettings) -> String {
    let mut parts = Vec::new();
    if settings.announce_only {
        parts.push("announce-only".to_owned());
    }
    if settings.slow_mode_secs > 0 {
        parts.push(format!("slow mode {} s", settings.slow_mode_secs));
    }
    if settings.qa {
        parts.push("Q&A".to_owned());
    }
    if parts.is_empty() { "all off".to_owned() } else { parts.join(", ") }
}

pub async fn set_room_settings(
    state: &State,
    session: &Session,
    room: String,
    settings: RoomSettings,
) -> ApiResult {
    let me = me(session)?;
    if settings.slow_mode_secs > MAX_SLOW_MODE_SECS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("slow mode is at most {MAX_SLOW_MODE_SECS} seconds"),
        ));
    }
    let (lc, writes) = {
        let mut inner = state.lock();
        let lc = require_staff(&inner, &me, &room)?;
        let name = State::display_room(&inner, &lc);
        let writes = vec![
            class::put(class::KIND_SETTINGS, lc.clone(), Some(&lc), &settings)?,
            audit(&inner, &me, AuditAction::RoomSettings, &format!("#{name}"), describe(&settings)),
        ];
        if let Some(r) = inner.rooms.get_mut(&lc) {
            r.settings = settings;
        }
        (lc, writes)
    };
    commit(state, writes, None).await?;
    let inner = state.lock();
    class::send_room_settings(&inner, &lc);
    Ok(Response::Room { room: super::rooms::info(&inner, &lc, &me) })
}

/// The scope's room key (`None`: server-wide), if `me` may moderate there.
fn scope_key(inner: &Inner, me: &str, scope: &MuteScope) -> ApiResult<Option<Lc>> {
    match scope {
        MuteScope::Room { name } => require_staff(inner, me, name).map(Some),
        MuteScope::Server => require_instructor(inner, me).map(|()| None),
    }
}

fn where_(inner: &Inner, room: Option<&str>) -> String {
    match room {
        Some(r) => format!("in #{}", State::display_room(inner, r)),
        None => "on the server".to_owned(),
    }
}

pub async fn mute(
    state: &State,
    session: &Session,
    scope: MuteScope,
    user: String,
    secs: Option<u64>,
) -> ApiResult {
    let me = me(session)?;
    if let Some(s) = secs
        && !(1..=MAX_MUTE_SECS).contains(&s)
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a timed mute lasts 1 to {MAX_MUTE_SECS} seconds; leave it out to mute until lifted"),
        ));
    }
    let target = user.to_ascii_lowercase();
    let (rec, writes) = {
        let mut inner = state.lock();
        let room = scope_key(&inner, &me, &scope)?;
        let name = inner.users.get(&target).map(|u| u.name.clone()).ok_or_else(|| no_user(&user))?;
        if target == me {
            return Err(ApiError::new(ErrorCode::BadRequest, "you cannot mute yourself"));
        }
        let target_is_staff = match &room {
            Some(r) => class::is_staff(&inner, r, &target),
            None => class::is_instructor(&inner, &target),
        };
        if target_is_staff {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{name} is an admin {} and cannot be muted", where_(&inner, room.as_deref())),
            ));
        }
        let until = secs.map(|s| now_ms() + s * 1000);
        let rec =
            MuteRec { room: room.clone(), user: target.clone(), until, by: State::display_name(&inner, &me) };
        let detail = match secs {
            Some(s) => format!("{} for {}", where_(&inner, room.as_deref()), class::human_duration(s * 1000)),
            None => format!("{} until lifted", where_(&inner, room.as_deref())),
        };
        let writes = vec![
            class::put(class::KIND_MUTE, MuteRec::key(room.as_deref(), &target), room.as_deref(), &rec)?,
            audit(&inner, &me, AuditAction::Mute, &name, detail),
        ];
        inner.class.mutes.insert((room, target.clone()), rec.clone());
        (rec, writes)
    };
    commit(state, writes, None).await?;
    let inner = state.lock();
    let scope = class::mute_info(&inner, &rec).scope;
    State::event_to_user(
        &inner,
        &target,
        Event::MuteChanged { scope, muted: true, until: rec.until, by: rec.by },
    );
    Ok(Response::Done)
}

pub async fn unmute(state: &State, session: &Session, scope: MuteScope, user: String) -> ApiResult {
    let me = me(session)?;
    let target = user.to_ascii_lowercase();
    let (scope, by, writes) = {
        let mut inner = state.lock();
        let room = scope_key(&inner, &me, &scope)?;
        let now = now_ms();
        if inner.class.mute_of(room.as_deref(), &target, now).is_none() {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("{user} is not muted {}", where_(&inner, room.as_deref())),
            ));
        }
        let Some(rec) = inner.class.mutes.remove(&(room.clone(), target.clone())) else {
            return Err(ApiError::internal("a mute in force has no record"));
        };
        let name = State::display_name(&inner, &target);
        let writes = vec![
            Write::DeleteObject { kind: class::KIND_MUTE, key: MuteRec::key(room.as_deref(), &target) },
            audit(&inner, &me, AuditAction::Unmute, &name, where_(&inner, room.as_deref())),
        ];
        (class::mute_info(&inner, &rec).scope, State::display_name(&inner, &me), writes)
    };
    commit(state, writes, None).await?;
    State::event_to_user(&state.lock(), &target, Event::MuteChanged { scope, muted: false, until: None, by });
    Ok(Response::Done)
}

pub fn list_mutes(state: &State, session: &Session, scope: MuteScope) -> ApiResult {
    let me = me(session)?;
    let inner = state.lock();
    let room = scope_key(&inner, &me, &scope)?;
    let now = now_ms();
    let mut mutes: Vec<_> = inner
        .class
        .mutes
        .values()
        .filter(|m| m.room == room && m.until.is_none_or(|t| t > now))
        .map(|m| class::mute_info(&inner, m))
        .collect();
    mutes.sort_by_key(|m| m.user.to_ascii_lowercase());
    Ok(Response::Mutes { mutes })
}

pub async fn set_exam_mode(
    state: &State,
    session: &Session,
    on: bool,
    questions_room: Option<String>,
) -> ApiResult {
    let me = me(session)?;
    let writes = {
        let mut inner = state.lock();
        require_instructor(&inner, &me)?;
        match (on, inner.class.exam.is_some()) {
            (true, true) => return Err(ApiError::new(ErrorCode::AlreadyDone, "exam mode is already on")),
            (false, false) => return Err(ApiError::new(ErrorCode::AlreadyDone, "exam mode is already off")),
            _ => {}
        }
        if on {
            let room = match &questions_room {
                Some(name) => {
                    let lc = name.to_ascii_lowercase();
                    if !inner.rooms.contains_key(&lc) {
                        return Err(no_room(name));
                    }
                    Some(lc)
                }
                None => None,
            };
            let detail = match &room {
                Some(r) => format!("questions room #{}", State::display_room(&inner, r)),
                None => "no questions room".to_owned(),
            };
            let rec = ExamRec { questions_room: room, since: now_ms(), by: State::display_name(&inner, &me) };
            let writes = vec![
                class::put(class::KIND_EXAM, class::KIND_EXAM.to_owned(), None, &rec)?,
                audit(&inner, &me, AuditAction::ExamOn, "", detail),
            ];
            inner.class.exam = Some(rec);
            writes
        } else {
            inner.class.exam = None;
            vec![
                Write::DeleteObject { kind: class::KIND_EXAM, key: class::KIND_EXAM.to_owned() },
                audit(&inner, &me, AuditAction::ExamOff, "", String::new()),
            ]
        }
    };
    commit(state, writes, None).await?;
    let inner = state.lock();
    let exam = class::exam_info(&inner);
    if let Some(frame) = State::encode(&classchat_wire::ServerMsg::Event { event: Event::ExamMode { exam } })
    {
        State::send_to_all(&inner, &frame);
    }
    tracing::info!(on, "exam mode changed");
    Ok(Response::Done)
}

pub async fn audit_log(state: &State, session: &Session, before: Option<u64>, limit: u32) -> ApiResult {
    let me = me(session)?;
    require_instructor(&state.lock(), &me)?;
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("limit must be 1 to {MAX_AUDIT_PAGE}")));
    }
    let (entries, more) = state.store.audit_page(before, limit).await.map_err(ApiError::internal)?;
    Ok(Response::Audit { entries, more })
}
