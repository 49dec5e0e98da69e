//! `"online_users"` and `"list_users"` → `Users`.

use classchat_wire::{Response, UserInfo};

use super::ApiResult;
use crate::state::State;

/// Most users listed in one reply, so the reply stays far below the frame limit.
pub const MAX_LISTED_USERS: usize = 10_000;

pub fn list(state: &State, online_only: bool) -> ApiResult {
    let inner = state.lock();
    let mut users: Vec<UserInfo> = inner
        .users
        .values()
        .filter(|u| !online_only || u.online())
        .map(|u| UserInfo { name: u.name.clone(), online: u.online(), server_admin: u.server_admin })
        .collect();
    // Online users first, then by name, so a truncated list keeps the interesting part.
    users.sort_by(|a, b| {
        b.online.cmp(&a.online).then_with(|| a.name.to_ascii_lowercase().cmp(&b.name.to_ascii_lowercase()))
    });
    users.truncate(MAX_LISTED_USERS);
    Ok(Response::Users { users })
}
