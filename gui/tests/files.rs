//! File sharing in the app (issue 5): drag and drop onto the window, the drop overlay,
//! the transfers panel, file messages, offers accepted and declined, and downloads that
//! never overwrite an existing file without asking. Real server on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use classchat::files::TransferState;
use classchat_wire::{Body, Conv, Event, FileInfo};
use common::dropped::Dropped;
use common::*;

/// `len` bytes that differ from one `seed` to the next.
fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn hover(h: &mut egui_kittest::Harness<'static, classchat::ClassChatApp>, path: &Path) {
    h.input_mut()
        .hovered_files
        .push(egui::HoveredFile { path: Some(path.to_path_buf()), mime: String::new() });
    settle(h);
}

fn drop_files(h: &mut egui_kittest::Harness<'static, classchat::ClassChatApp>, paths: &[&Path]) {
    h.input_mut().hovered_files.clear();
    for p in paths {
        h.input_mut().dropped_files.push(Arc::new(Dropped(p.to_path_buf())));
    }
    settle(h);
}

async fn next_event(user: &mut WireUser, what: &str, mut pick: impl FnMut(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(deadline, user.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} never got {what}", user.name))
            .unwrap_or_else(|| panic!("{}'s connection closed", user.name));
        if pick(&ev) {
            return ev;
        }
    }
}

async fn download(user: &WireUser, file: &FileInfo, dest: &Path) -> Vec<u8> {
    let ticket = user.client.download_file(file.id).await.expect("download ticket");
    user.client.download_to(&ticket, dest, |_| {}).await.expect("download");
    std::fs::read(dest).expect("read the download")
}

/// A server, bob on the wire, and alice in the app saving downloads to the returned folder.
fn server_bob_and_alice(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
) -> (TestServer, WireUser, egui_kittest::Harness<'static, classchat::ClassChatApp>, PathBuf) {
    let server = TestServer::start(rt, &dir.join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let bob = rt.block_on(wire_user(&addr, "bob"));
    let saves = dir.join("saves");
    std::fs::create_dir_all(&saves).expect("saves dir");
    let mut h = app_with(rt, &dir.join("alice"), |c| {
        c.server = Some(addr.clone());
        c.save_dir_for_tests = Some(saves.clone());
    });
    register(&mut h, "alice", "correct horse");
    (server, bob, h, saves)
}

#[test]
fn dropping_files_on_a_room_sends_them_and_another_member_gets_identical_bytes() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut bob = rt.block_on(wire_user(&addr, "bob"));

    let mut h = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut h, "alice", "correct horse");
    wait_until(&mut h, "the lobby to be open", |h| h.state().model.current == Some(Conv::room("lobby")));

    // Several chunks' worth, and a small second file.
    let notes = dir.path().join("notes.bin");
    let notes_bytes = content(3 * 1024 * 1024 + 17, 1);
    std::fs::write(&notes, &notes_bytes).expect("write notes");
    let plan = dir.path().join("plan.txt");
    std::fs::write(&plan, b"bench 4, 14:00").expect("write plan");

    // Hovering names the target; nothing is sent yet.
    assert!(!has_text(&h, "Drop to send to"));
    hover(&mut h, &notes);
    wait_for_text(&mut h, "Drop to send to #lobby");
    assert_eq!(h.state().files.transfers().count(), 0, "hovering sends nothing");

    drop_files(&mut h, &[&notes, &plan]);
    assert!(!has_text(&h, "Drop to send to"), "the overlay goes once the files are dropped");
    // The transfers panel opens and shows both uploads.
    wait_for_text(&mut h, "Upload notes.bin to #lobby");
    wait_for_text(&mut h, "Upload plan.txt to #lobby");
    wait_until(&mut h, "both uploads to finish", |h| {
        h.state().files.transfers().filter(|t| t.state == TransferState::Done).count() == 2
    });
    settle(&mut h);
    assert!(has_text(&h, "notes.bin: Done · 3.1 MB"), "on screen: {:?}", labels(&h));
    assert!(has_text(&h, "notes.bin progress 100%"));
    let t = h.state().files.transfers().find(|t| t.name == "notes.bin").expect("the upload").clone();
    assert_eq!((t.done, t.total), (notes_bytes.len() as u64, notes_bytes.len() as u64));

    // The room shows the file message, and another member downloads the same bytes.
    let mut got = Vec::new();
    while got.len() < 2 {
        let ev = rt.block_on(next_event(
            &mut bob,
            "a file message",
            |e| matches!(e, Event::Message { message } if matches!(message.body, Body::File { .. })),
        ));
        if let Event::Message { message } = ev
            && let Body::File { file } = message.body
        {
            assert_eq!((message.from.as_str(), &message.conv), ("alice", &Conv::room("lobby")));
            got.push(file);
        }
    }
    let notes_info = got.iter().find(|f| f.name == "notes.bin").expect("notes.bin announced");
    assert_eq!(rt.block_on(download(&bob, notes_info, &dir.path().join("bob-notes.bin"))), notes_bytes);
    let plan_info = got.iter().find(|f| f.name == "plan.txt").expect("plan.txt announced");
    assert_eq!(rt.block_on(download(&bob, plan_info, &dir.path().join("bob-plan.txt"))), b"bench 4, 14:00");
    wait_for_text(&mut h, "File notes.bin (3.1 MB) from alice");
    assert!(has_text(&h, "Download plan.txt"));
}

#[test]
fn a_room_file_downloads_to_the_chosen_place_and_never_overwrites_without_asking() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, bob, mut h, saves) = server_bob_and_alice(&rt, dir.path());

    let src = dir.path().join("lab sheet.pdf");
    let bytes = content(700_000, 2);
    std::fs::write(&src, &bytes).expect("write");
    rt.block_on(bob.client.send_file(Conv::room("lobby"), &src, |_| {})).expect("bob uploads");
    wait_for_text(&mut h, "File lab sheet.pdf (700.0 KB) from bob");

    // A file of that name is already there: it is left alone and the app asks.
    let dest = saves.join("lab sheet.pdf");
    std::fs::write(&dest, b"my own notes").expect("write existing");
    click(&mut h, "Download lab sheet.pdf");
    wait_until(&mut h, "the download to stop at the existing file", |h| {
        h.state().files.transfers().any(|t| t.state == TransferState::Exists)
    });
    h.state_mut().files.panel_open = true;
    wait_for_text(&mut h, "already exists");
    assert_eq!(std::fs::read(&dest).expect("read"), b"my own notes", "not overwritten");

    // The user says replace it: now it is the downloaded file, byte for byte.
    click(&mut h, &format!("Replace {}", dest.display()));
    wait_until(&mut h, "the download to finish", |h| {
        h.state().files.transfers().any(|t| t.state == TransferState::Done)
    });
    assert_eq!(std::fs::read(&dest).expect("read"), bytes);
    assert!(!classchat_wire::files::part_path(&dest).exists(), "no part file left");
    wait_for_text(&mut h, "Open lab sheet.pdf");
}

#[test]
fn offers_show_for_the_recipient_who_accepts_or_declines_and_the_sender_sees_the_outcome() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mut bob, mut h, saves) = server_bob_and_alice(&rt, dir.path());

    // bob offers alice a file: she sees name, size and sender.
    let src = dir.path().join("report.pdf");
    let bytes = content(1_200_000, 3);
    std::fs::write(&src, &bytes).expect("write");
    rt.block_on(bob.client.send_file(Conv::direct("alice"), &src, |_| {})).expect("bob offers");
    wait_for_text(&mut h, "bob offers you report.pdf (1.2 MB)");
    // The offer counts as unread in the DM, like a message.
    click(&mut h, "@bob, 1 unread");
    wait_until(&mut h, "the DM with bob to open", |h| h.state().model.current == Some(Conv::direct("bob")));
    wait_for_text(&mut h, "bob offers you report.pdf (1.2 MB)");
    // bob's wire client sent it without end-to-end encryption, and the row says so.
    wait_for_text(&mut h, "report.pdf is not end-to-end encrypted");

    // Accepting saves identical bytes where she chose; bob hears it was accepted.
    click(&mut h, "Accept report.pdf");
    let ev = rt.block_on(next_event(&mut bob, "the answer", |e| matches!(e, Event::OfferAnswered { .. })));
    assert!(matches!(ev, Event::OfferAnswered { accepted: true, ref user, .. } if user == "alice"), "{ev:?}");
    wait_until(&mut h, "the download to finish", |h| {
        h.state().files.transfers().any(|t| t.state == TransferState::Done)
    });
    assert_eq!(std::fs::read(saves.join("report.pdf")).expect("saved"), bytes);

    // A second offer is declined: bob is told, nothing is saved.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, b"not wanted").expect("write");
    rt.block_on(bob.client.send_file(Conv::direct("alice"), &other, |_| {})).expect("bob offers again");
    wait_for_text(&mut h, "bob offers you other.txt");
    click(&mut h, "Decline other.txt");
    let ev = rt.block_on(next_event(&mut bob, "the answer", |e| matches!(e, Event::OfferAnswered { .. })));
    assert!(matches!(ev, Event::OfferAnswered { accepted: false, .. }), "{ev:?}");
    assert!(!saves.join("other.txt").exists());

    // Hovering over the DM names the person; dropping offers the file to bob, who
    // declines: alice sees the outcome.
    rt.block_on(bob.publish_key());
    let mine = dir.path().join("slides.pdf");
    std::fs::write(&mine, content(300_000, 4)).expect("write");
    hover(&mut h, &mine);
    wait_for_text(&mut h, "Drop to send to bob");
    drop_files(&mut h, &[&mine]);
    let ev = rt.block_on(next_event(&mut bob, "alice's offer", |e| matches!(e, Event::FileOffer { .. })));
    let Event::FileOffer { file } = ev else { unreachable!() };
    assert_eq!(file.from, "alice");
    wait_for_text(&mut h, "You offered slides.pdf to bob");
    rt.block_on(bob.client.answer_offer(file.id, false)).expect("bob declines");
    wait_for_text(&mut h, "slides.pdf: bob declined");
}

/// alice's app offers bob a file: the server sees neither its name nor its content, and
/// bob, with his key, gets both exactly. bob offers one back, sealed: the app shows the
/// real name and saves the decrypted bytes. An offer whose sealed description does not
/// open cannot be accepted.
#[test]
fn files_offered_to_a_person_are_end_to_end_encrypted_both_ways() {
    use classchat::files::OfferSeal;
    use classchat_wire::sealed_file::{FileSecret, sealed_size};

    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mut bob, mut h, saves) = server_bob_and_alice(&rt, dir.path());
    let mut bob_keys = rt.block_on(bob.publish_key());

    // Text that would be easy to find in the server's store if it were kept in the clear.
    let secret_text = b"Grades draft: do not share (secret-marker-5521)\n".repeat(20_000);
    let mine = dir.path().join("grades-draft.txt");
    std::fs::write(&mine, &secret_text).expect("write");
    open_dm(&mut h, "bob");
    drop_files(&mut h, &[&mine]);
    let ev = rt.block_on(next_event(&mut bob, "alice's offer", |e| matches!(e, Event::FileOffer { .. })));
    let Event::FileOffer { file } = ev else { unreachable!() };
    assert_ne!(file.name, "grades-draft.txt", "the server is not told the name");
    assert_eq!(file.size, sealed_size(secret_text.len() as u64));
    let meta = file.meta.clone().expect("the sealed description");
    let opened = rt.block_on(bob_keys.open_bytes(&bob.client, "alice", &meta)).expect("bob opens it");
    let described = FileSecret::from_plaintext(&opened, file.size).expect("a file secret");
    assert_eq!((described.name.as_str(), described.size), ("grades-draft.txt", secret_text.len() as u64));
    wait_until(&mut h, "the upload to finish", |h| {
        h.state().files.transfers().any(|t| t.state == TransferState::Done)
    });
    let ticket = rt.block_on(bob.client.download_file(file.id)).expect("bob accepts");
    let dest = dir.path().join("bob-grades.txt");
    rt.block_on(bob.client.download_sealed_to(&ticket, &dest, &described, |_| {})).expect("bob downloads");
    assert_eq!(std::fs::read(&dest).expect("saved"), secret_text);
    wait_for_text(&mut h, "grades-draft.txt: bob accepted");
    for entry in std::fs::read_dir(dir.path().join("server/files")).expect("store").flatten() {
        if entry.path().is_file() {
            let stored = std::fs::read(entry.path()).expect("stored file");
            let needle = b"secret-marker-5521";
            assert!(!stored.windows(needle.len()).any(|w| w == needle), "plaintext on the server");
        }
    }

    // bob offers alice a sealed file through his wire client.
    let theirs = dir.path().join("lab-data.csv");
    let data = content(200_000, 9);
    std::fs::write(&theirs, &data).expect("write");
    rt.block_on(bob_keys.offer_file(&bob.client, "alice", &theirs)).expect("bob offers");
    wait_for_text(&mut h, "bob offers you lab-data.csv (");
    let shown = h.state().files.offers().find(|o| o.file.name == "lab-data.csv").map(|o| o.file.size);
    assert_eq!(shown, Some(data.len() as u64), "the real size, not the sealed one");
    assert!(!has_text(&h, "lab-data.csv is not end-to-end encrypted"));
    click(&mut h, "Accept lab-data.csv");
    wait_until(&mut h, "the download to finish", |h| {
        h.state().files.transfers().filter(|t| t.state == TransferState::Done).count() == 2
    });
    assert_eq!(std::fs::read(saves.join("lab-data.csv")).expect("saved"), data);

    // A description sealed for someone else (here: garbage) is refused, never accepted.
    let ticket = rt
        .block_on(bob.client.upload_file(Conv::direct("alice"), "", 48, Some(b"not an envelope".to_vec())))
        .expect("offer");
    wait_until(&mut h, "the unverified offer", |h| {
        h.state()
            .files
            .offers()
            .any(|o| o.file.id == ticket.file && matches!(o.seal, OfferSeal::Unverified(_)))
    });
    wait_for_text(&mut h, "bob offered a file that could not be verified");
    assert!(has_text(&h, "Decline the unverified file"));
}

#[test]
fn a_transfer_stopped_by_a_lost_connection_goes_on_by_itself_after_the_reconnect() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let RestartableLab { mut server, server_dir, addr, alice: mut h } = restartable_lab(&rt, dir.path());
    wait_until(&mut h, "the lobby to be open", |h| h.state().model.current == Some(Conv::room("lobby")));

    server.stop();
    wait_for_text(&mut h, "Connection lost");
    let notes = dir.path().join("notes.bin");
    let bytes = content(300_000, 3);
    std::fs::write(&notes, &bytes).expect("write");
    drop_files(&mut h, &[&notes]);
    wait_until(&mut h, "the upload to wait for the connection", |h| {
        h.state().files.transfers().any(|t| t.resume_on_reconnect)
    });
    wait_for_text(&mut h, "goes on after the reconnect");

    // The server comes back: the app reconnects and the upload goes on without a click.
    let _server = TestServer::start(&rt, &server_dir, server_key(), addr);
    wait_until(&mut h, "the upload to finish after the reconnect", |h| {
        h.state().files.transfers().any(|t| t.state == TransferState::Done)
    });
    let file = h.state().files.transfers().find_map(|t| t.file.clone()).expect("the stored file");
    let bob = rt.block_on(wire_user(&addr.to_string(), "bob"));
    assert_eq!(rt.block_on(download(&bob, &file, &dir.path().join("bob-notes.bin"))), bytes);
}

/// The whole path between two people's apps: alice drops a file on her DM with bob; bob,
/// whose window is in the background, is notified, sees the real name, accepts, and gets
/// the exact bytes. The server never held the name or the content.
#[test]
fn a_file_dropped_on_a_dm_reaches_the_other_app_decrypted_and_notifies() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    let mut alice = app(&rt, &dir.path().join("alice"), &addr);
    register(&mut alice, "alice", "correct horse");
    let saves = dir.path().join("bob-saves");
    std::fs::create_dir_all(&saves).expect("saves dir");
    let shown = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut bob = app_with(&rt, &dir.path().join("bob"), |c| {
        c.server = Some(addr.clone());
        c.save_dir_for_tests = Some(saves.clone());
        c.notifier = classchat::app::Notifier::Record(shown.clone());
    });
    register(&mut bob, "bob", "battery staple");
    bob.input_mut().focused = false;

    let bytes = content(2_500_000, 11);
    let path = dir.path().join("thesis-chapter-2.pdf");
    std::fs::write(&path, &bytes).expect("write");
    open_dm(&mut alice, "bob");
    drop_files(&mut alice, &[&path]);
    wait_for_text(&mut bob, "alice offers you thesis-chapter-2.pdf (");
    wait_until(&mut bob, "the notification", |_| shown.lock().map(|s| s.len()).unwrap_or_default() == 1);
    let (summary, body) = shown.lock().expect("list")[0].clone();
    assert_eq!(summary, "alice offers you a file");
    assert!(body.starts_with("thesis-chapter-2.pdf ("), "{body}");
    assert!(has_text(&bob, "@alice, 1 unread"));

    open_dm(&mut bob, "alice");
    click(&mut bob, "Accept thesis-chapter-2.pdf");
    wait_until(&mut bob, "the download to finish", |h| {
        h.state().files.transfers().any(|t| t.state == TransferState::Done)
    });
    assert_eq!(std::fs::read(saves.join("thesis-chapter-2.pdf")).expect("saved"), bytes);
    wait_for_text(&mut alice, "thesis-chapter-2.pdf: bob accepted");

    drop(server);
    let stored = all_bytes(&dir.path().join("server"));
    assert!(
        stored.iter().any(|(p, _)| p.to_string_lossy().contains("classchat.db")),
        "the database is there"
    );
    for (path, data) in &stored {
        assert!(!contains(data, b"thesis-chapter-2"), "the name is in {}", path.display());
        assert!(!contains(data, &bytes[..4096]), "the content is in {}", path.display());
    }
}
