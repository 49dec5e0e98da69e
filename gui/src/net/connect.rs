//! One connect attempt of the net task: the first node of the server that answers, the
//! key check, login or resume, and the files that go with it (known servers, the resume
//! token, the nodes). Split out of `net.rs`, which drives the attempts.

use classchat_wire::failover::{self, Connected};
use classchat_wire::{Client, ClientConfig, Error as WireError, ErrorCode, Event, TrustPolicy, Welcome};
use tokio::sync::mpsc;

use super::{Field, TrustPrompt, refusal_text};
use crate::e2e::{self, KeyPlan};
use crate::local::{LocalStore, PeerKeyState};
use crate::nodes::{self, Nodes};

pub(super) struct Session {
    pub(super) client: Client,
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) welcome: Welcome,
    pub(super) addr: String,
    /// The node that answered.
    pub(super) node: String,
    /// Logged in with the resume token rather than the password.
    pub(super) resumed: bool,
    pub(super) dm_contacts: Vec<String>,
    pub(super) key_plan: KeyPlan,
    pub(super) peer_keys: Vec<(String, PeerKeyState, Vec<u8>)>,
}

#[derive(Debug)]
pub(super) enum ConnectError {
    Trust(TrustPrompt),
    /// The server could not be reached or the handshake failed.
    Unreachable(String),
    Server {
        code: ErrorCode,
        message: String,
    },
    /// No saved token for a resume.
    NoToken,
    Local(String),
}

/// Which nodes a connect attempt walks.
pub(super) enum NodePlan {
    /// From the connect screen or a start-up resume: these (from an invite), or when
    /// there are none the ones remembered for the server.
    Listed(Vec<String>),
    /// A reconnect: the session's nodes, in their current order.
    Known(Nodes),
}

pub(super) enum Auth {
    Password {
        password: String,
        register: bool,
    },
    /// The resume token saved for this server and user.
    SavedToken,
}

/// One connect attempt: TCP and the handshake with the key check at the first of the
/// server's nodes that answers, then login. Returns the nodes, reordered for next time.
pub(super) async fn connect(
    store: LocalStore,
    addr: String,
    plan: NodePlan,
    username: String,
    auth: Auth,
    identity_bits: usize,
) -> (Result<Session, ConnectError>, Nodes) {
    // `before`: what the file holds (`None` on a reconnect: the file may be older than the
    // session), so that a login that changes nothing, the usual case with one node, writes
    // nothing.
    let (mut nodes, before) = match plan {
        NodePlan::Known(nodes) => (nodes, None),
        NodePlan::Listed(listed) => {
            let (dir, server) = (store.dir().to_owned(), addr.clone());
            let remembered = tokio::task::spawn_blocking(move || nodes::load(&dir, &server))
                .await
                .unwrap_or_else(|_| Nodes::single(&addr));
            let nodes = match listed.is_empty() {
                true => remembered.clone(),
                false => Nodes::new(&addr, &listed, Some(remembered.preferred())),
            };
            (nodes, Some(remembered))
        }
    };
    let result = connect_nodes(store, addr, &mut nodes, before, username, auth, identity_bits).await;
    (result, nodes)
}

async fn connect_nodes(
    store: LocalStore,
    addr: String,
    nodes: &mut Nodes,
    before: Option<Nodes>,
    username: String,
    auth: Auth,
    identity_bits: usize,
) -> Result<Session, ConnectError> {
    let files = {
        let (store, addr, username) = (store.clone(), addr.clone(), username.clone());
        let wants_token = matches!(auth, Auth::SavedToken);
        tokio::task::spawn_blocking(move || -> Result<_, ConnectError> {
            let token = match wants_token {
                true => Some(store.resume_token(&addr, &username).ok_or(ConnectError::NoToken)?),
                false => None,
            };
            let known = store.known_servers().map_err(|e| ConnectError::Local(e.to_string()))?;
            let device = store.device_id().map_err(|e| {
                ConnectError::Local(format!("cannot write in {}: {e}", store.dir().display()))
            })?;
            let peer_keys = store.peer_keys(&addr, &username);
            Ok((known, device, token, peer_keys))
        })
    };
    let (known, device, token, peer_keys) = files.await.map_err(|e| ConnectError::Local(e.to_string()))??;
    // A new account needs an identity key: start making it now, alongside the handshake
    // and Argon2 (it takes about a second).
    let keygen = match &auth {
        Auth::Password { register: true, .. } => Some(e2e::start_keygen(identity_bits)),
        _ => None,
    };
    let resumed = token.is_some();
    let config = ClientConfig::new(addr.clone(), TrustPolicy::KnownServers(known));
    let order = nodes.order();
    let connected = failover::connect_any(&config, &order).await;
    let Connected { client, events, addr: node, .. } = connected.map_err(|e| {
        // Every node was tried, so the next round starts where this one did (or a trust
        // error stopped the walk, and with it any reconnecting).
        if let Some(last) = order.last() {
            nodes.failed(last);
        }
        match e {
            WireError::UnknownServer { host, fingerprint } => {
                ConnectError::Trust(TrustPrompt { addr: host, fingerprint, changed_from: None })
            }
            WireError::ServerKeyChanged { host, expected, actual } => ConnectError::Trust(TrustPrompt {
                addr: host,
                fingerprint: actual,
                changed_from: Some(expected),
            }),
            WireError::KnownServers { path, reason } => ConnectError::Local(format!("{path}: {reason}")),
            other if order.len() > 1 => ConnectError::Unreachable(format!(
                "None of the server's {} addresses answered. {}",
                order.len(),
                unreachable_text(&other)
            )),
            other => ConnectError::Unreachable(unreachable_text(&other)),
        }
    })?;
    let mut key_plan = KeyPlan::Saved;
    let result = match auth {
        Auth::Password { password, register } => {
            let user = username.clone();
            key_plan = KeyPlan::Password { password: password.clone(), keygen };
            let key = tokio::task::spawn_blocking(move || classchat_wire::auth::auth_key(&user, &password))
                .await
                .map_err(|e| ConnectError::Local(e.to_string()))?
                .map_err(|e| ConnectError::Local(e.to_string()))?;
            if register {
                client.register(&username, &key, &device).await
            } else {
                client.login(&username, &key, &device).await
            }
        }
        Auth::SavedToken => client.resume(&username, token.as_deref().unwrap_or_default(), &device).await,
    };
    let welcome = match result {
        Ok(w) => w,
        Err(e) => {
            nodes.failed(&node);
            client.close().await;
            return Err(match e {
                WireError::Server { code, message } => ConnectError::Server { code, message },
                other => ConnectError::Unreachable(unreachable_text(&other)),
            });
        }
    };
    if let KeyPlan::Password { password, keygen: Some(keygen) } = key_plan {
        // A new account has nothing to catch up on, so waiting here for its key (made
        // while connecting) holds nothing up.
        key_plan =
            e2e::register_identity(&client, &store, &addr, &welcome.user, &password, keygen, identity_bits)
                .await;
    }
    nodes.worked(&node);
    let saved = {
        let (addr, user, token) = (addr.clone(), welcome.user.clone(), welcome.resume_token.clone());
        let changed = (before.as_ref() != Some(nodes)).then(|| nodes.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(nodes) = changed
                && let Err(e) = nodes::save(store.dir(), &addr, &nodes)
            {
                tracing::warn!("could not remember the server's nodes: {e}");
            }
            let saved = store.set_resume_token(&addr, &user, Some(&token));
            (saved, store.dm_contacts(&addr, &user))
        })
        .await
    };
    let dm_contacts = match saved {
        Ok((Ok(()), contacts)) => contacts,
        // Not fatal: the session works, it just cannot be resumed after a restart.
        Ok((Err(e), contacts)) => {
            tracing::warn!("could not save the resume token: {e}");
            contacts
        }
        Err(e) => {
            tracing::warn!("could not save the resume token: {e}");
            Vec::new()
        }
    };
    Ok(Session { client, events, welcome, addr, node, resumed, dm_contacts, key_plan, peer_keys })
}

fn unreachable_text(e: &WireError) -> String {
    match e {
        WireError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "No ClassChat server is running at this address.".into()
        }
        WireError::Io(io) => format!("Cannot reach the server: {io}"),
        WireError::ConnectTimeout(_) => "The server did not answer in time.".into(),
        WireError::HandshakeTimeout(_)
        | WireError::Protocol(_)
        | WireError::Crypto(_)
        | WireError::Decode(_) => {
            format!("This does not look like a ClassChat server ({e}).")
        }
        other => other.to_string(),
    }
}

pub(super) fn login_error(e: &ConnectError) -> (Field, String) {
    match e {
        ConnectError::Unreachable(m) => (Field::Server, m.clone()),
        ConnectError::Local(m) => (Field::Server, m.clone()),
        ConnectError::Server { code, message } => {
            let field = match code {
                ErrorCode::UsernameTaken
                | ErrorCode::InvalidUsername
                | ErrorCode::AccountBanned
                | ErrorCode::NoSuchUser => Field::Username,
                ErrorCode::BadCredentials | ErrorCode::Throttled | ErrorCode::BadToken => Field::Password,
                _ => Field::Server,
            };
            (field, refusal_text(*code, message))
        }
        ConnectError::Trust(_) | ConnectError::NoToken => (Field::Server, "Not connected.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_errors_land_next_to_the_right_field() {
        let server = |code| ConnectError::Server { code, message: String::new() };
        assert_eq!(login_error(&server(ErrorCode::UsernameTaken)).0, Field::Username);
        assert_eq!(login_error(&server(ErrorCode::BadCredentials)).0, Field::Password);
        assert_eq!(login_error(&server(ErrorCode::Throttled)).0, Field::Password);
        assert_eq!(login_error(&ConnectError::Unreachable("x".into())).0, Field::Server);
    }
}
