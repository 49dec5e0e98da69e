//! End-to-end encrypted direct messages through the real server: the server stores and
//! forwards envelopes and key grants it cannot read.

mod common;

use std::sync::OnceLock;

use classchat_wire::e2e::{DmKey, Envelope, Identity, KeyGrant, PublicIdentity, open_backup, seal_backup};
use classchat_wire::{Body, ErrorCode, Event, Request, Response};
use common::{TestServer, TestUser};

/// Identity keys are slow to make: one per name per test binary (2048 bits for speed).
fn identity(name: &str) -> Identity {
    static KEYS: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Identity>>> = OnceLock::new();
    let map = KEYS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(name.to_owned()).or_insert_with(|| Identity::generate(2048).expect("keygen")).clone()
}

fn backup_key(name: &str) -> [u8; 32] {
    classchat_wire::auth::backup_key(name, &format!("password of {name}")).expect("argon2")
}

async fn publish(user: &TestUser, id: &Identity) {
    let backup = seal_backup(id, &backup_key(&user.name)).expect("seal backup");
    user.ok(Request::PublishKey { public_key: id.public().der().to_vec(), backup }).await;
}

async fn directory_key(user: &TestUser, of: &str) -> PublicIdentity {
    match user.ok(Request::GetKey { user: of.into() }).await {
        Response::Key { public_key: Some(der), .. } => PublicIdentity::from_der(&der).expect("valid key"),
        other => panic!("no key for {of}: {other:?}"),
    }
}

/// Sends `text` from `from` to `to` as an envelope under a fresh grant.
async fn send_e2e(from: &TestUser, from_id: &Identity, to: &str, text: &str) -> DmKey {
    let peer = directory_key(from, to).await;
    let key = DmKey::generate();
    let grant = KeyGrant::new(&key, &from.name, from_id, to, &peer).expect("grant");
    from.ok(Request::PutDmKey {
        to: to.into(),
        grant: classchat_wire::message::encode(&grant).expect("encode"),
    })
    .await;
    let env = Envelope::seal(&key, 1, &from.name, to, from_id, text);
    from.ok(Request::SendDirect { to: to.into(), body: env.to_bytes(), reply_to: None }).await;
    key
}

/// Decrypts a received DM the way an app does: grant from the server, sender key from
/// the directory, then verify and open.
async fn read_e2e(me: &TestUser, my_id: &Identity, from: &str, data: &[u8]) -> String {
    let env = Envelope::from_bytes(data).expect("an envelope");
    let grants = match me.ok(Request::DmKeys { user: from.into() }).await {
        Response::DmKeys { grants, .. } => grants,
        other => panic!("{other:?}"),
    };
    let sender = directory_key(me, from).await;
    let key = grants
        .iter()
        .filter_map(|g| classchat_wire::decode::<KeyGrant>(g).ok())
        .find(|g| g.key_id == env.key_id)
        .expect("the grant for this key")
        .open(&me.name, my_id, &sender)
        .expect("grant opens");
    env.open(&key, from, &me.name, &sender).expect("envelope opens")
}

fn opaque(ev: &Event) -> Option<(String, Vec<u8>)> {
    match ev {
        Event::Message { message } => match &message.body {
            Body::Opaque { data } => Some((message.from.clone(), data.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Every file below `dir`, read whole.
fn all_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[tokio::test]
async fn dm_plaintext_never_reaches_the_server_but_the_recipient_reads_it() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let (alice_id, bob_id) = (identity("alice"), identity("bob"));
    publish(&alice, &alice_id).await;
    publish(&bob, &bob_id).await;

    let secret = "the exam answers are in locker 42 (do not tell)";
    send_e2e(&alice, &alice_id, "bob", secret).await;
    let ev = bob.expect_event("alice's DM", |e| opaque(e).is_some()).await;
    let (from, data) = opaque(&ev).expect("opaque body");
    assert_eq!(from, "alice");
    assert_eq!(read_e2e(&bob, &bob_id, "alice", &data).await, secret);

    let data_dir = server.data_dir().to_owned();
    let _dir = server.stop().await;
    let files = all_bytes(&data_dir);
    assert!(files.iter().any(|(p, _)| p.ends_with("classchat.db")), "the database was scanned");
    for (path, bytes) in files {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext found in {}",
            path.display()
        );
        assert!(!bytes.windows(10).any(|w| w == b"exam answe"), "plaintext fragment in {}", path.display());
    }
}

#[tokio::test]
async fn offline_recipient_on_a_new_machine_restores_the_key_and_reads_the_dm() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let (alice_id, bob_id) = (identity("alice"), identity("bob"));
    publish(&alice, &alice_id).await;
    publish(&bob, &bob_id).await;
    bob.client.close().await;

    send_e2e(&alice, &alice_id, "bob", "see you at the lab").await;

    // A second machine: fresh local state, so the identity comes from the backup.
    let mut bob2 = server.login("bob", "lab-pc-7").await;
    let restored = match bob2.ok(Request::GetBackup).await {
        Response::Backup { backup: Some(blob), .. } => {
            open_backup(&blob, &backup_key("bob")).expect("backup opens")
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(restored.public().fingerprint(), bob_id.public().fingerprint());
    let events = bob2.until_caught_up().await;
    let (_, data) = events.iter().find_map(opaque).expect("the DM in catch-up");
    assert_eq!(read_e2e(&bob2, &restored, "alice", &data).await, "see you at the lab");
    // A wrong password does not open the backup.
    let Response::Backup { backup: Some(blob), .. } = bob2.ok(Request::GetBackup).await else {
        panic!("backup")
    };
    let wrong = classchat_wire::auth::backup_key("bob", "not the password").expect("argon2");
    assert!(open_backup(&blob, &wrong).is_err());
}

#[tokio::test]
async fn republishing_a_different_key_warns_dm_partners() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let (alice_id, bob_id) = (identity("alice"), identity("bob"));
    publish(&alice, &alice_id).await;
    publish(&bob, &bob_id).await;
    send_e2e(&bob, &bob_id, "alice", "hi").await;

    publish(&bob, &identity("bob-new-machine")).await;
    alice
        .expect_event("key change warning", |e| matches!(e, Event::KeyChanged { user } if user == "bob"))
        .await;
    assert_eq!(
        directory_key(&alice, "bob").await.fingerprint(),
        identity("bob-new-machine").public().fingerprint()
    );
}

#[tokio::test]
async fn grants_must_come_from_the_sender_to_the_named_user() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let _bob = server.user("bob").await;
    let _carol = server.user("carol").await;
    let (alice_id, bob_id) = (identity("alice"), identity("bob"));
    let key = DmKey::generate();
    // A grant claiming to be from bob, uploaded by alice, is refused.
    let forged = KeyGrant::new(&key, "bob", &bob_id, "carol", alice_id.public()).expect("grant");
    let bytes = classchat_wire::message::encode(&forged).expect("encode");
    assert_eq!(
        alice.err(Request::PutDmKey { to: "carol".into(), grant: bytes }).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        alice.err(Request::PutDmKey { to: "carol".into(), grant: vec![1, 2, 3] }).await,
        ErrorCode::BadRequest
    );
    assert_eq!(alice.err(Request::GetKey { user: "nobody".into() }).await, ErrorCode::NoSuchUser);
    let Response::Key { public_key: None, .. } = alice.ok(Request::GetKey { user: "bob".into() }).await
    else {
        panic!("bob has published no key yet");
    };
}

#[tokio::test]
async fn changing_the_password_reseals_the_backup_and_signs_out_other_devices() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice_id = identity("alice");
    publish(&alice, &alice_id).await;
    let other = server.login("alice", "laptop").await;
    let other_token = other.welcome.resume_token.clone();

    let new_auth: [u8; 32] = [9; 32];
    let new_backup_key = classchat_wire::auth::backup_key("alice", "new password").expect("argon2");
    let backup = seal_backup(&alice_id, &new_backup_key).expect("seal");
    // The wrong current password is refused.
    assert_eq!(
        alice
            .err(Request::ChangePassword {
                auth_key: vec![0; 32],
                new_auth_key: new_auth.to_vec(),
                backup: backup.clone()
            })
            .await,
        ErrorCode::BadCredentials
    );
    alice
        .ok(Request::ChangePassword {
            auth_key: common::auth("alice").to_vec(),
            new_auth_key: new_auth.to_vec(),
            backup,
        })
        .await;

    let (c, _e) = server.connect().await;
    assert_eq!(common::code(c.login("alice", &common::auth("alice"), "x").await), ErrorCode::BadCredentials);
    let (c, _e) = server.connect().await;
    c.login("alice", &new_auth, "x").await.expect("new password works");
    let Response::Backup { backup: Some(blob), .. } = alice.ok(Request::GetBackup).await else {
        panic!("backup")
    };
    assert!(open_backup(&blob, &new_backup_key).is_ok(), "backup re-sealed under the new password");
    let (c, _e) = server.connect().await;
    assert_eq!(common::code(c.resume("alice", &other_token, "laptop").await), ErrorCode::BadToken);
}
