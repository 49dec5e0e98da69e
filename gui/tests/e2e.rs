//! End-to-end encrypted direct messages through the real app and a real in-process
//! server: what the server stores, tampering, replays, key changes, new machines.

mod common;

use classchat::ui::dialogs::Dialog;
use classchat_wire::e2e::{DmKey, Envelope, KeyGrant, PublicIdentity};
use classchat_wire::{Conv, Request, Response};
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

fn send(h: &mut Harness<'static, classchat::ClassChatApp>, text: &str) {
    type_into(h, "Message", text);
    h.key_press(egui::Key::Enter);
    settle(h);
}

/// The safety number the header shows for `user`.
fn shown_safety_number(h: &mut Harness<'static, classchat::ClassChatApp>, user: &str) -> String {
    let prefix = format!("Safety number with {user}: ");
    wait_for_text(h, &prefix);
    h.query_all_by_label_contains(&prefix)
        .find_map(|n| {
            let node = n.accesskit_node();
            [node.value(), node.label()]
                .into_iter()
                .flatten()
                .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        })
        .expect("safety number")
}

#[test]
fn two_apps_exchange_dms_the_server_stores_no_plaintext_and_safety_numbers_match() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut alice = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut alice, "alice", "correct horse");
    let mut bob = app(&rt, &dir.path().join("bob"), &addr);
    register(&mut bob, "bob", "battery staple");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key =
            dir.path().join("alice/keys").read_dir().expect("keys dir").flatten().next().expect("a key");
        assert_eq!(key.metadata().expect("meta").permissions().mode() & 0o777, 0o600, "private key is 0600");
    }

    open_dm(&mut alice, "bob");
    let secrets = ["meet at the lab at 3 (alice-secret-7731)", "bring the polariser (bob-secret-4410)"];
    send(&mut alice, secrets[0]);
    wait_for_text(&mut bob, "@alice, 1 unread");
    open_dm(&mut bob, "alice");
    wait_for_text(&mut bob, secrets[0]);
    send(&mut bob, secrets[1]);
    wait_for_text(&mut alice, secrets[1]);
    wait_until(&mut bob, "bob's message to be acknowledged", |h| h.state().model.pending_count() == 0);

    // Both sides show the same safety number.
    let seen_by_alice = shown_safety_number(&mut alice, "bob");
    let seen_by_bob = shown_safety_number(&mut bob, "alice");
    assert_eq!(seen_by_alice, seen_by_bob);
    assert_eq!(seen_by_alice.split(' ').count(), 12);
    assert!(has_text(&alice, "End-to-end encrypted, not verified"));
    click(&mut alice, "✔ Mark as verified");
    wait_for_text(&mut alice, "End-to-end encrypted, verified");
    // Saved by the net task's blocking pool, a moment after the header changes.
    let peers_file = dir.path().join("alice/e2e_peers");
    wait_until(&mut alice, "bob's verified key to be saved", |_| {
        std::fs::read_to_string(&peers_file).is_ok_and(|p| p.lines().any(|l| l.contains(" bob verified ")))
    });

    // Nothing the server wrote holds the text.
    drop(alice);
    drop(bob);
    server.stop();
    let files = all_bytes(&dir.path().join("server"));
    assert!(files.iter().any(|(p, _)| p.to_string_lossy().contains(".db")), "the database is there");
    for (path, bytes) in &files {
        for secret in secrets {
            for needle in [secret, "alice-secret-7731", "bob-secret-4410"] {
                assert!(!contains(bytes, needle.as_bytes()), "{needle:?} found in {}", path.display());
            }
        }
    }
}

#[test]
fn offline_recipient_decrypts_at_login_and_a_second_machine_reads_the_history() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut bob = app(&rt, &dir.path().join("bob"), &addr);
    register(&mut bob, "bob", "battery staple");
    drop(bob); // bob goes offline

    let mut alice = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut alice, "alice", "correct horse");
    open_dm(&mut alice, "bob");
    send(&mut alice, "while you were away");
    send(&mut alice, "second note");
    wait_until(&mut alice, "both to be acknowledged", |h| h.state().model.pending_count() == 0);

    // Bob, back on his own computer: the catch-up opens with the key saved there.
    let mut bob = app(&rt, &dir.path().join("bob"), &addr);
    submit_login(&mut bob, "bob", "battery staple", false);
    wait_for_text(&mut bob, "Signed in as bob");
    open_dm(&mut bob, "alice");
    wait_for_text(&mut bob, "while you were away");
    wait_for_text(&mut bob, "second note");
    drop(bob);

    // Bob on a lab machine he never used: the key comes from the server's backup, and
    // the conversation from history (signatures checked as the rows are shown).
    let mut lab = app(&rt, &dir.path().join("bob-lab-pc"), &addr);
    log_in_on_new_machine(&mut lab, "bob", "battery staple");
    wait_for_text(&mut lab, "Signed in as bob");
    open_dm(&mut lab, "alice");
    wait_for_text(&mut lab, "while you were away");
    wait_for_text(&mut lab, "second note");
    assert!(!has_text(&lab, "could not be verified"));
    assert!(dir.path().join("bob-lab-pc/keys").is_dir(), "the restored key is saved on the new machine");
}

#[test]
fn tampered_envelopes_are_not_shown_and_a_replay_shows_once() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let bob = rt.block_on(wire_user(&addr, "bob"));
    let mut bob_keys = rt.block_on(bob.publish_key());
    open_dm(&mut h, "bob");

    let direct = |body: Vec<u8>| {
        let reply =
            rt.block_on(bob.client.request(Request::SendDirect { to: "alice".into(), body, reply_to: None }));
        assert!(matches!(reply, Ok(Response::Sent { .. })), "{reply:?}");
    };
    let good = rt.block_on(bob_keys.seal(&bob.client, "alice", "the real one")).expect("seal");
    direct(good.clone());
    wait_for_text(&mut h, "the real one");

    // One bit flipped in the ciphertext, the MAC, the signature.
    for (field, text) in [(0, "tampered ciphertext"), (1, "tampered mac"), (2, "tampered signature")] {
        let sealed = rt.block_on(bob_keys.seal(&bob.client, "alice", text)).expect("seal");
        let mut env = Envelope::from_bytes(&sealed).expect("envelope");
        match field {
            0 => env.ct[0] ^= 0x01,
            1 => env.mac[0] ^= 0x01,
            _ => env.sig[0] ^= 0x01,
        }
        direct(env.to_bytes());
    }
    // A conversation key whose wrapped copy for alice was altered.
    let alice_key = match rt.block_on(bob.client.request(Request::GetKey { user: "alice".into() })) {
        Ok(Response::Key { public_key: Some(der), .. }) => PublicIdentity::from_der(&der).expect("key"),
        other => panic!("{other:?}"),
    };
    let key = DmKey::generate();
    let mut grant = KeyGrant::new(&key, "bob", &bob_keys.identity, "alice", &alice_key).expect("grant");
    let last = grant.for_to.len() - 1;
    grant.for_to[last] ^= 0x01;
    let grant = classchat_wire::encode(&grant).expect("encode");
    rt.block_on(bob.client.request(Request::PutDmKey { to: "alice".into(), grant })).expect("stored");
    direct(Envelope::seal(&key, 1, "bob", "alice", &bob_keys.identity, "tampered wrapped key").to_bytes());
    // The first envelope again, as a new message.
    direct(good);
    rt.block_on(bob_keys.send(&bob.client, "alice", "after the tampering")).expect("send");
    wait_for_text(&mut h, "after the tampering");

    let c = h.state().model.conversation(&Conv::direct("bob")).expect("conversation");
    let unverified =
        c.messages().iter().filter(|m| m.content.text().contains("could not be verified")).count();
    assert_eq!(unverified, 4, "{:?}", c.messages());
    assert_eq!(c.messages().iter().filter(|m| m.content.text() == "the real one").count(), 1);
    for text in ["tampered ciphertext", "tampered mac", "tampered signature", "tampered wrapped key"] {
        assert!(!has_text(&h, text), "{text:?} must not be shown");
    }
    assert_eq!(h.query_all_by_label("the real one").count(), 1, "the replay is not shown again");
    assert!(has_text(&h, "could not be verified"));
}

#[test]
fn a_substituted_directory_key_warns_and_the_app_asks_before_sending() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    let mut bob = rt.block_on(wire_user(&addr, "bob"));
    let bob_keys = rt.block_on(bob.publish_key());
    open_dm(&mut h, "bob");
    send(&mut h, "first, to the real bob");
    let (_, data) = bob.expect_dm(&mut h);
    assert_eq!(
        rt.block_on(bob_keys.open(&bob.client, "alice", &data)).as_deref(),
        Ok("first, to the real bob")
    );
    let old_number = shown_safety_number(&mut h, "bob");

    // The directory now hands out another key for bob.
    let impostor = rt.block_on(bob.publish_key());
    wait_for_text(&mut h, "Warning: bob's key has changed");
    let new_prefix = "New safety number with bob: ";
    wait_for_text(&mut h, new_prefix);

    // Sending asks first; nothing goes out until the new key is accepted.
    send(&mut h, "second, after the change");
    wait_until(&mut h, "the confirmation", |h| {
        matches!(h.state().dialog, Some(Dialog::ConfirmKeyChange { .. }))
    });
    assert_eq!(h.state().model.pending_count(), 0, "nothing is queued");
    click(&mut h, "Cancel");
    assert!(h.state().dialog.is_none());
    // The text stays in the composer; Enter asks again.
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some("second, after the change"));
    h.get_by_label("Message").focus();
    h.step();
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "the confirmation", |h| {
        matches!(h.state().dialog, Some(Dialog::ConfirmKeyChange { .. }))
    });
    click(&mut h, "Accept the new key and send");
    let (_, data) = bob.expect_dm(&mut h);
    assert_eq!(
        rt.block_on(impostor.open(&bob.client, "alice", &data)).as_deref(),
        Ok("second, after the change")
    );
    wait_until(&mut h, "the warning to go", |h| !has_text(h, "Warning: bob's key has changed"));
    let new_number = shown_safety_number(&mut h, "bob");
    assert_ne!(old_number, new_number);
    assert!(h.get_by_label("✔ Mark as verified").accesskit_node().label().is_some());
}

#[test]
fn a_key_the_server_swaps_silently_in_its_directory_is_caught_when_the_dm_opens() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let RestartableLab { mut server, server_dir, addr, alice: mut h } = restartable_lab(&rt, dir.path());
    let mut bob = rt.block_on(wire_user(&addr.to_string(), "bob"));
    let _bob_keys = rt.block_on(bob.publish_key());
    open_dm(&mut h, "bob");
    send(&mut h, "to the real bob");
    bob.expect_dm(&mut h);
    drop(h);
    drop(bob);

    // A dishonest server swaps bob's entry in its key directory and tells nobody: no
    // KeyChanged event, just another key in the answer to "what is bob's key".
    server.stop();
    let forged = classchat_wire::e2e::Identity::generate(TEST_KEY_BITS).expect("forged key");
    let db = rusqlite::Connection::open(server_dir.join("classchat.db")).expect("open the server's db");
    let changed = db
        .execute("UPDATE identity_keys SET public_key = ?1 WHERE user_lc = 'bob'", [forged.public().der()])
        .expect("tamper");
    assert_eq!(changed, 1, "bob's directory entry was replaced");
    drop(db);
    let _server = TestServer::start(&rt, &server_dir, server_key(), addr);

    let mut h = app(&rt, &dir.path().join("alice"), &addr.to_string());
    submit_login(&mut h, "alice", "correct horse", false);
    wait_for_text(&mut h, "Signed in as alice");
    open_dm(&mut h, "bob");
    wait_for_text(&mut h, "Warning: bob's key has changed");
    send(&mut h, "not for the forged key");
    wait_until(&mut h, "the confirmation", |h| {
        matches!(h.state().dialog, Some(Dialog::ConfirmKeyChange { .. }))
    });
    assert_eq!(h.state().model.pending_count(), 0, "nothing goes out under the forged key unasked");
}

#[test]
fn a_password_change_reseals_the_backup_and_an_unopenable_backup_asks_before_a_new_key() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    h.state_mut().dialog = Some(Dialog::Settings);
    click(&mut h, "Change password…");
    type_into(&mut h, "Current password", "correct horse");
    type_into(&mut h, "New password", "battery staple");
    type_into(&mut h, "Repeat the new password", "battery staple");
    click(&mut h, "Save the new password");
    wait_for_text(&mut h, "Password changed");
    drop(h);

    // Another machine: the backup opens with the new password, no question asked.
    let mut lab = app(&rt, &dir.path().join("alice-lab"), &addr);
    log_in_on_new_machine(&mut lab, "alice", "battery staple");
    wait_until(&mut lab, "the key to be restored", |h| {
        h.state().model.key_status == Some(classchat::e2e::KeyStatus::Ready)
    });
    assert!(lab.state().dialog.is_none());
    let restored = std::fs::read_dir(dir.path().join("alice-lab/keys")).expect("keys").count();
    assert_eq!(restored, 1);
    drop(lab);

    // An admin-style reset leaves a backup that does not open: the app says old DMs are
    // lost and asks before it makes a new key.
    rt.block_on(async {
        let client = wire_login(&addr, "alice", "battery staple").await.client;
        let Ok(Response::Backup { public_key: Some(public_key), .. }) =
            client.request(Request::GetBackup).await
        else {
            panic!("no backup")
        };
        client.request(Request::PublishKey { public_key, backup: vec![1; 100] }).await.expect("republish");
        client.close().await;
    });
    let mut other = app(&rt, &dir.path().join("alice-other"), &addr);
    log_in_on_new_machine(&mut other, "alice", "battery staple");
    wait_for_text(&mut other, "Your old direct messages cannot be opened");
    assert_eq!(other.state().model.key_status, Some(classchat::e2e::KeyStatus::BackupUnreadable));
    assert!(std::fs::read_dir(dir.path().join("alice-other/keys")).is_err(), "no key made before the answer");
    click(&mut other, "Create a new key");
    wait_until(&mut other, "the new key", |h| {
        h.state().model.key_status == Some(classchat::e2e::KeyStatus::Ready)
    });
}
