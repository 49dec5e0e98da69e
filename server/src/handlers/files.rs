//! `UploadFile`, `DownloadFile` and `AnswerOffer` on the chat connection; the bytes move
//! over bulk connections (`crate::files`).
//!
//! Wire forms: `{"upload_file": {"conv": Conv, "name": str, "size": u64, "meta": bin?}}`,
//! `{"download_file": {"file": u64}}`, `{"answer_offer": {"file": u64, "accept": bool}}`.

use classchat_wire::{Conv, ErrorCode, Event, FileId, MAX_FILE_META_LEN, Response, sanitize_file_name};

use super::{ApiError, ApiResult, me};
use crate::session::Session;
use crate::state::State;
use crate::store::{IdKind, Write};

fn no_file(file: FileId) -> ApiError {
    ApiError::new(ErrorCode::NoSuchFile, format!("there is no file {file} you may download"))
}

pub async fn upload(
    state: &State,
    session: &Session,
    conv: Conv,
    name: String,
    size: u64,
    meta: Option<Vec<u8>>,
) -> ApiResult {
    let me = me(session)?;
    if meta.as_ref().is_some_and(|m| m.len() > MAX_FILE_META_LEN) {
        return Err(ApiError::new(ErrorCode::TooLong, format!("meta is at most {MAX_FILE_META_LEN} bytes")));
    }
    let recipient = match &conv {
        Conv::Room { .. } => None,
        Conv::Direct { user } => Some(user.to_ascii_lowercase()),
        Conv::Announcements => {
            return Err(ApiError::new(ErrorCode::BadRequest, "files go to a room or a user"));
        }
    };
    // Membership of the room, or existence of the user, as for messages.
    let key = super::messages::conv_key(state, &me, &conv)?;
    {
        let mut inner = state.lock();
        crate::class::check_files(&inner, &me)?;
        match &conv {
            Conv::Room { name } => {
                crate::class::check_room(
                    &mut inner,
                    &me,
                    &name.to_ascii_lowercase(),
                    crate::class::Act::Post,
                )?;
            }
            Conv::Direct { user } => crate::class::check_direct(&inner, &me, &user.to_ascii_lowercase())?,
            Conv::Announcements => {}
        }
    }
    let sender = State::display_name(&state.lock(), &me);
    let name = sanitize_file_name(&name);
    let shared_id = state.store.next_id(IdKind::File).await.map_err(ApiError::internal)?;
    let (row, token) = state.files.reserve(
        &state.config,
        &me,
        sender,
        key,
        recipient.clone(),
        name,
        size,
        meta,
        shared_id,
    )?;
    let file = row.id;
    if let Err(e) = super::commit(state, vec![Write::CreateFile { row }], None).await {
        state.files.forget(file);
        return Err(e);
    }
    // Offered at once, so the recipient can take the file while it is still arriving.
    if let Some(peer) = recipient {
        let info = state.files.lock().by_id.get(&file).map(crate::files::Entry::info);
        if let Some(file) = info {
            State::event_to_user(&state.lock(), &peer, Event::FileOffer { file });
        }
    }
    tracing::info!(user = %me, file, size, "upload started");
    Ok(Response::Upload { file, token })
}

pub async fn download(state: &State, session: &Session, file: FileId) -> ApiResult {
    let me = me(session)?;
    let (info, room, owner, recipient, accepted) = {
        let reg = state.files.lock();
        let e = reg.by_id.get(&file).ok_or_else(|| no_file(file))?;
        let room = e.row.conv.strip_prefix("r:").map(str::to_owned);
        (e.info(), room, e.row.owner_lc.clone(), e.row.recipient_lc.clone(), e.row.accepted)
    };
    let allowed = match &room {
        Some(room) => state.lock().rooms.get(room).is_some_and(|r| r.members.contains_key(&me)),
        None => me == owner || recipient.as_deref() == Some(me.as_str()),
    };
    if !allowed {
        return Err(no_file(file));
    }
    if recipient.as_deref() == Some(me.as_str()) && !accepted {
        answer(state, session, file, true).await?;
    }
    let token = state.files.grant(&me, file);
    Ok(Response::Download { file: info, token })
}

pub async fn answer(state: &State, session: &Session, file: FileId, accept: bool) -> ApiResult {
    let me = me(session)?;
    let owner = {
        let mut reg = state.files.lock();
        let e = reg.by_id.get_mut(&file).filter(|e| e.row.recipient_lc.as_deref() == Some(me.as_str()));
        let e = e.ok_or_else(|| no_file(file))?;
        if accept {
            e.row.accepted = true;
        }
        e.row.owner_lc.clone()
    };
    if accept {
        super::commit(state, vec![Write::AcceptOffer { id: file }], None).await?;
    } else {
        crate::files::delete(state, file).await;
    }
    let inner = state.lock();
    let user = State::display_name(&inner, &me);
    State::event_to_user(&inner, &owner, Event::OfferAnswered { file, user, accepted: accept });
    Ok(Response::Done)
}
