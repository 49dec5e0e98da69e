//! The end-to-end key directory: identity keys with their password-sealed backups, the
//! signed conversation-key grants of direct conversations, and password changes. The
//! server stores and hands out these blobs; it holds nothing that decrypts a DM.
//!
//! Wire forms: `{"publish_key": {"public_key": bin, "backup": bin}}`,
//! `{"get_key": {"user": str}}`, `"get_backup"`, `{"put_dm_key": {"to": str, "grant": bin}}`,
//! `{"dm_keys": {"user": str}}`,
//! `{"change_password": {"auth_key": bin32, "new_auth_key": bin32, "backup": bin}}`.

use classchat_wire::e2e::{KEY_ID_LEN, KeyGrant, PublicIdentity};
use classchat_wire::{ErrorCode, Event, Response};

use super::{ApiError, ApiResult, commit, me};
use crate::keys::SecretHash;
use crate::session::Session;
use crate::state::{State, dm_conv};
use crate::store::Write;

/// Largest identity public key (SPKI DER of an 8192-bit key is about 1.1 KiB).
const MAX_PUBLIC_KEY: usize = 2048;
/// Largest sealed key backup.
const MAX_BACKUP: usize = 8192;
/// Largest key grant (two 8192-bit wraps and a signature fit).
const MAX_GRANT: usize = 4096;
/// Most grants returned for one conversation (a key lasts 1,000 messages at least).
const MAX_GRANTS_LISTED: u32 = 1000;

fn bad(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

fn no_user(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NoSuchUser, format!("there is no user called {name}"))
}

async fn read_identity(state: &State, user: String) -> ApiResult<Option<(Vec<u8>, Vec<u8>)>> {
    state.store.identity(user).await.map_err(ApiError::internal)
}

pub async fn publish(state: &State, session: &Session, public_key: Vec<u8>, backup: Vec<u8>) -> ApiResult {
    let me = me(session)?;
    if public_key.len() > MAX_PUBLIC_KEY || backup.len() > MAX_BACKUP || backup.is_empty() {
        return Err(ApiError::new(ErrorCode::TooLong, "the key or its backup is out of bounds"));
    }
    PublicIdentity::from_der(&public_key)
        .map_err(|_| bad("the public key is not an RSA key of 2048 to 8192 bits"))?;
    let previous = read_identity(state, me.clone()).await?;
    let changed = previous.is_some_and(|(old, _)| old != public_key);
    commit(state, vec![Write::SetIdentity { user: me.clone(), public_key, backup }], None).await?;
    if changed {
        let inner = state.lock();
        let name = State::display_name(&inner, &me);
        let peers: Vec<String> =
            inner.users.get(&me).map(|u| u.dm_peers.iter().cloned().collect()).unwrap_or_default();
        for peer in peers {
            State::event_to_user(&inner, &peer, Event::KeyChanged { user: name.clone() });
        }
        tracing::info!(user = %name, "identity key replaced");
    }
    Ok(Response::Done)
}

pub async fn get_key(state: &State, session: &Session, user: String) -> ApiResult {
    me(session)?;
    let lc = user.to_ascii_lowercase();
    let name = {
        let inner = state.lock();
        inner.users.get(&lc).map(|u| u.name.clone()).ok_or_else(|| no_user(&user))?
    };
    let public_key = read_identity(state, lc).await?.map(|(k, _)| k);
    Ok(Response::Key { user: name, public_key })
}

pub async fn get_backup(state: &State, session: &Session) -> ApiResult {
    let me = me(session)?;
    let found = read_identity(state, me).await?;
    Ok(match found {
        Some((public_key, backup)) => Response::Backup { public_key: Some(public_key), backup: Some(backup) },
        None => Response::Backup { public_key: None, backup: None },
    })
}

pub async fn put_dm_key(state: &State, session: &Session, to: String, grant: Vec<u8>) -> ApiResult {
    let me = me(session)?;
    let peer = to.to_ascii_lowercase();
    if !state.lock().users.contains_key(&peer) {
        return Err(no_user(&to));
    }
    if grant.len() > MAX_GRANT {
        return Err(ApiError::new(ErrorCode::TooLong, "the key grant is too large"));
    }
    // The server cannot check the signature meaningfully (it could lie about keys
    // anyway); it checks the shape so clients never receive garbage from it.
    let parsed: KeyGrant =
        classchat_wire::decode(&grant).map_err(|_| bad("the key grant does not decode"))?;
    if parsed.key_id.len() != KEY_ID_LEN || parsed.from != me || parsed.to != peer {
        return Err(bad("the key grant must be from you, to that user, with a 16-byte id"));
    }
    let write = Write::PutDmKey { conv: dm_conv(&me, &peer), key_id: parsed.key_id, grant };
    commit(state, vec![write], None).await?;
    Ok(Response::Done)
}

pub async fn dm_keys(state: &State, session: &Session, user: String) -> ApiResult {
    let me = me(session)?;
    let peer = user.to_ascii_lowercase();
    let name = {
        let inner = state.lock();
        inner.users.get(&peer).map(|u| u.name.clone()).ok_or_else(|| no_user(&user))?
    };
    let conv = dm_conv(&me, &peer);
    let grants = state.store.dm_keys(conv, MAX_GRANTS_LISTED).await.map_err(ApiError::internal)?;
    Ok(Response::DmKeys { user: name, grants: grants.into_iter().map(serde_bytes::ByteBuf::from).collect() })
}

pub async fn change_password(
    state: &State,
    session: &Session,
    auth_key: Vec<u8>,
    new_auth_key: Vec<u8>,
    backup: Vec<u8>,
) -> ApiResult {
    let me = me(session)?;
    if auth_key.len() != 32 || new_auth_key.len() != 32 {
        return Err(bad("keys must be 32 bytes"));
    }
    if backup.is_empty() || backup.len() > MAX_BACKUP {
        return Err(ApiError::new(ErrorCode::TooLong, "the backup is out of bounds"));
    }
    if state.throttled(&me, session.addr.ip()) {
        return Err(ApiError::new(ErrorCode::Throttled, "too many failed attempts; wait a minute"));
    }
    let current = state.lock().users.get(&me).map(|u| u.auth.clone()).ok_or_else(|| no_user(&me))?;
    let (m, t) = (state.config.argon2_m_kib, state.config.argon2_t);
    let (ok, new_hash) = tokio::task::spawn_blocking(move || {
        (current.verify(&auth_key), SecretHash::new(&new_auth_key, m, t))
    })
    .await
    .map_err(ApiError::internal)?;
    if !ok {
        state.record_login_failure(&me, session.addr.ip());
        return Err(ApiError::new(ErrorCode::BadCredentials, "the current password is wrong"));
    }
    let new_hash = new_hash.map_err(ApiError::internal)?;
    let public_key = read_identity(state, me.clone())
        .await?
        .map(|(k, _)| k)
        .ok_or_else(|| bad("publish an identity key before changing the password"))?;
    let writes = vec![
        Write::SetAuth { user: me.clone(), auth: new_hash.to_bytes() },
        Write::SetIdentity { user: me.clone(), public_key, backup },
        Write::RevokeTokens { user: me.clone(), keep: session.device.clone() },
    ];
    commit(state, writes, None).await?;
    if let Some(u) = state.lock().users.get_mut(&me) {
        u.auth = new_hash;
    }
    Ok(Response::Done)
}
