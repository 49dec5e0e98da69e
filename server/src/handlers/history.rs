//! `{"history": {"conv": Conv, "before": u64|nil, "limit": u32}}` → `History`, newest first.

use classchat_wire::{ChatMessage, Conv, ErrorCode, MAX_HISTORY_PAGE, MessageId, Response};

use super::messages::conv_key;
use super::{ApiError, ApiResult, me};
use crate::session::Session;
use crate::state::State;

pub async fn page(
    state: &State,
    session: &Session,
    conv: Conv,
    before: Option<MessageId>,
    limit: u32,
) -> ApiResult {
    let me = me(session)?;
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("limit must be 1 to {MAX_HISTORY_PAGE}")));
    }
    let key = conv_key(state, &me, &conv)?;
    let mut rows = state.store.messages_before(key, before, limit + 1).await.map_err(ApiError::internal)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let messages: Vec<ChatMessage> = rows.iter().map(|m| m.to_chat(conv.clone())).collect();
    Ok(Response::History { conv, messages, more })
}
