//! Sharing files with classmates in the app (issue 15): the shared-files panel and its
//! switches, the `/share` commands, searches with their results, and Get fetching a file
//! from a classmate's app. Real server on 127.0.0.1, real apps and wire clients.

mod common;

use std::path::Path;

use classchat::ClassChatApp;
use classchat::sharing::SharingAction;
use classchat_wire::Conv;
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

fn disabled(h: &Harness<'static, ClassChatApp>, label: &str) -> bool {
    h.get_by_label(label).accesskit_node().is_disabled()
}

fn checked(h: &Harness<'static, ClassChatApp>, label: &str) -> bool {
    matches!(h.get_by_label(label).accesskit_node().toggled(), Some(egui::accesskit::Toggled::True))
}

/// A folder with two files to share, one in a subfolder, and a hidden one that is never
/// shared. Returns the folder.
fn shared_folder(dir: &Path, lab3: &[u8]) -> std::path::PathBuf {
    let share = dir.join("share");
    std::fs::create_dir_all(share.join("labs")).expect("mkdir");
    std::fs::write(share.join("labs").join("lab3.csv"), lab3).expect("write");
    std::fs::write(share.join("essay.txt"), b"an essay").expect("write");
    std::fs::write(share.join(".secret"), b"hidden").expect("write");
    share
}

/// Sends `text` from the composer, as typed.
fn command(h: &mut Harness<'static, ClassChatApp>, text: &str) {
    type_into(h, "Message", text);
    h.key_press(egui::Key::Enter);
    settle(h);
}

/// Chooses `folder` as the shared folder (what the native picker would hand back) and waits
/// for its index.
fn choose_folder(h: &mut Harness<'static, ClassChatApp>, folder: &Path, files: usize) {
    h.state_mut().sharing_action(SharingAction::SetFolder(folder.to_path_buf()));
    wait_until(h, "the folder to be indexed", |h| {
        h.state().sharing.indexing.is_none() && h.state().settings.sharing.index.len() == files
    });
}

#[test]
fn the_shared_files_panel_lists_the_folder_with_its_switches() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let mut h = app(&rt, &dir.path().join("alice"), &server.addr_string());
    register(&mut h, "alice", "correct horse");
    let folder = shared_folder(dir.path(), b"1,2,3\n");

    // Nothing is shared by default, and the switch waits for a folder.
    click(&mut h, "Shared files");
    wait_for_text(&mut h, "Shared folder: none");
    assert!(disabled(&h, "Share my files"), "no folder: the switch is off and disabled");
    assert!(!checked(&h, "Share my files"));
    assert!(has_text(&h, "Nothing is shared until you choose a folder"));
    command(&mut h, "/share on");
    wait_for_text(&mut h, "Choose a shared folder first");
    assert!(!h.state().settings.sharing.enabled);

    choose_folder(&mut h, &folder, 2);
    wait_for_text(&mut h, &format!("Shared folder: {}", folder.display()));
    wait_for_text(&mut h, "Share essay.txt");
    assert!(has_text(&h, "Share labs/lab3.csv"));
    assert!(!has_text(&h, ".secret"), "hidden files are left out");
    assert!(has_text(&h, "Left out: 1 hidden files or folders"), "on screen: {:?}", labels(&h));
    let lab3 = h.state().settings.sharing.index.iter().find(|f| f.rel == "labs/lab3.csv").cloned();
    assert_eq!(lab3.map(|f| f.sha256), Some(classchat::sharing::index::sha256(b"1,2,3\n")));
    assert!(has_text(&h, "Sharing is off: classmates find nothing of yours."));
    assert!(disabled(&h, "Share essay.txt"), "per-file switches wait for the global one");

    // The global switch, then one file off.
    click(&mut h, "Share my files");
    assert!(h.state().settings.sharing.enabled);
    assert!(checked(&h, "Share my files"));
    wait_for_text(&mut h, "Classmates can find 2 of 2 files.");
    assert!(checked(&h, "Share labs/lab3.csv"));
    click(&mut h, "Share labs/lab3.csv");
    assert!(!checked(&h, "Share labs/lab3.csv"));
    wait_for_text(&mut h, "Classmates can find 1 of 2 files.");
    assert!(h.state().settings.sharing.off.contains("labs/lab3.csv"));

    // The same from the composer; a command is never sent as a message.
    command(&mut h, "/share lab3.csv on");
    wait_for_text(&mut h, "Classmates can find 2 of 2 files.");
    command(&mut h, "/share essay.txt off");
    wait_for_text(&mut h, "Classmates can find 1 of 2 files.");
    command(&mut h, "/share nothing.pdf off");
    wait_for_text(&mut h, "There is no nothing.pdf in the shared folder.");
    command(&mut h, "/shared");
    wait_for_text(&mut h, "Sharing is on: classmates can find 1 of 2 files");
    command(&mut h, "/share off");
    wait_for_text(&mut h, "Sharing is off: classmates find nothing of yours.");
    assert!(!h.state().settings.sharing.enabled);
    assert!(!checked(&h, "Share my files"));
    let lobby = h.state().model.conversation(&Conv::room("lobby")).map(|c| c.pending.len());
    assert_eq!(lobby, Some(0), "no command went out as a message");
    assert_eq!(h.state().settings.sharing.max_uploads, 3, "at most 3 uploads at once by default");
    assert!(has_text(&h, "At most this many uploads at once"));

    // A file added to the folder shows after indexing again; nothing is shared through a
    // symbolic link out of the folder.
    std::fs::write(folder.join("new.txt"), b"new").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("alice"), folder.join("escape")).expect("symlink");
    click(&mut h, "Index the shared folder again");
    wait_until(&mut h, "the new file to be indexed", |h| h.state().settings.sharing.index.len() == 3);
    wait_for_text(&mut h, "Share new.txt");
    assert!(!has_text(&h, "Share escape"));
}

#[test]
fn the_composer_keeps_the_keyboard_when_a_command_opens_the_shared_files_panel() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let mut h = app(&rt, &dir.path().join("alice"), &server.addr_string());
    register(&mut h, "alice", "correct horse");
    command(&mut h, "/shared");
    wait_for_text(&mut h, "Shared folder: none");
    // Typed straight on, as a person does after Enter: the panel that appeared beside the
    // chat must not have taken the field's focus away.
    h.event(egui::Event::Text("/whohas lab3".into()));
    settle(&mut h);
    let field = h.get_by_label("Message").accesskit_node().value();
    assert_eq!(field.as_deref(), Some("/whohas lab3"), "on screen: {:?}", labels(&h));
}

/// An app for `name` on `addr`, registered, saving downloads to `dir/NAME-saves`.
fn user_app(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    addr: &str,
    name: &str,
) -> Harness<'static, ClassChatApp> {
    let saves = dir.join(format!("{name}-saves"));
    std::fs::create_dir_all(&saves).expect("saves dir");
    let mut h = app_with(rt, &dir.join(name), |c| {
        c.server = Some(addr.to_owned());
        c.save_dir_for_tests = Some(saves);
    });
    register(&mut h, name, "correct horse");
    h
}

/// Steps every app until `cond` holds on `h` (the others keep answering meanwhile).
fn wait_all(
    h: &mut Harness<'static, ClassChatApp>,
    others: &mut [&mut Harness<'static, ClassChatApp>],
    what: &str,
    mut cond: impl FnMut(&Harness<'static, ClassChatApp>) -> bool,
) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        for o in others.iter_mut() {
            o.step();
        }
        h.step();
        if cond(h) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; on screen: {:?}",
            labels(h)
        );
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
}

/// Runs `/whohas query` in `h` until `wanted` (an accessible name) is on screen: a sharer's
/// listener registers once its identity key is published, a moment after login.
fn search_until(
    h: &mut Harness<'static, ClassChatApp>,
    others: &mut [&mut Harness<'static, ClassChatApp>],
    query: &str,
    wanted: &str,
) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        command(h, &format!("/whohas {query}"));
        wait_all(h, others, "the search to end", |h| {
            h.state().sharing.search.as_ref().is_some_and(|s| s.done && s.query == query)
        });
        settle(h);
        if has_text(h, wanted) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{wanted:?} never showed: {:?}", labels(h));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn a_search_lists_what_sharers_share_and_nothing_switched_off() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();

    // alice shares lab3.csv and essay.txt but switched lab3-notes.txt off.
    let mut alice = user_app(&rt, dir.path(), &addr, "alice");
    let folder = shared_folder(&dir.path().join("a"), b"1,2,3\n");
    std::fs::write(folder.join("lab3-notes.txt"), b"notes").expect("write");
    choose_folder(&mut alice, &folder, 3);
    command(&mut alice, "/share on");
    command(&mut alice, "/share lab3-notes.txt off");
    assert!(alice.state().settings.sharing.off.contains("lab3-notes.txt"));
    // carol has a folder with a lab3 file too, but sharing off: she never answers.
    let mut carol = user_app(&rt, dir.path(), &addr, "carol");
    let carol_folder = shared_folder(&dir.path().join("c"), b"carol's copy");
    choose_folder(&mut carol, &carol_folder, 2);
    assert!(!carol.state().settings.sharing.enabled);

    let mut bob = user_app(&rt, dir.path(), &addr, "bob");
    search_until(&mut bob, &mut [&mut alice, &mut carol], "LAB3", "Get lab3.csv from alice");
    assert!(
        has_text(&bob, "Search results: 1 file matches “LAB3” in #lobby"),
        "on screen: {:?}",
        labels(&bob)
    );
    let hits = bob.state().sharing.search.as_ref().map(|s| s.hits.clone()).unwrap_or_default();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!((hits[0].sharer.as_str(), hits[0].name.as_str(), hits[0].size), ("alice", "lab3.csv", 6));
    assert_eq!(hits[0].sha256, classchat::sharing::index::sha256(b"1,2,3\n"));
    assert!(!hits[0].busy);
    assert!(!has_text(&bob, "lab3-notes.txt"), "a switched-off file is never reported");
    assert!(!has_text(&bob, "from carol"), "a classmate with sharing off does not answer");

    // The "Find a file" box does the same; a search by content hash finds the file too.
    type_into(&mut bob, "Find a file", &hex::encode(classchat::sharing::index::sha256(b"an essay")));
    click(&mut bob, "Search for a file");
    wait_all(&mut bob, &mut [&mut alice, &mut carol], "the hash search to end", |h| {
        h.state().sharing.search.as_ref().is_some_and(|s| s.done && s.query.len() == 64)
    });
    settle(&mut bob);
    assert!(has_text(&bob, "Get essay.txt from alice"), "on screen: {:?}", labels(&bob));
    assert!(!has_text(&bob, "from carol"));

    // Sharing off: alice answers nothing any more.
    command(&mut alice, "/share off");
    command(&mut bob, "/whohas lab3");
    wait_all(&mut bob, &mut [&mut alice, &mut carol], "the last search to end", |h| {
        h.state().sharing.search.as_ref().is_some_and(|s| s.done && s.query == "lab3")
    });
    settle(&mut bob);
    assert!(
        has_text(&bob, "Nobody in #lobby shares a file matching “lab3”."),
        "on screen: {:?}",
        labels(&bob)
    );
}

#[test]
fn get_fetches_the_file_from_the_sharer_with_progress_in_the_transfers_panel() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    // Several peer records' worth, so there is progress to show.
    let lab3: Vec<u8> =
        (0..5 * 1024 * 1024 + 123).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();

    let mut alice = user_app(&rt, dir.path(), &addr, "alice");
    let folder = shared_folder(dir.path(), &lab3);
    choose_folder(&mut alice, &folder, 2);
    command(&mut alice, "/share on");
    let mut bob = user_app(&rt, dir.path(), &addr, "bob");
    search_until(&mut bob, &mut [&mut alice], "lab3", "Get lab3.csv from alice");

    click(&mut bob, "Get lab3.csv from alice");
    // The transfers panel opens with the download, straight from alice.
    wait_for_text(&mut bob, "Download lab3.csv from alice, directly");
    assert!(has_text(&bob, "lab3.csv progress"), "a progress bar: {:?}", labels(&bob));
    let saved = dir.path().join("bob-saves").join("lab3.csv");
    wait_all(&mut bob, &mut [&mut alice], "the file to arrive", |h| {
        h.state()
            .files
            .transfers()
            .any(|t| t.name == "lab3.csv" && t.state == classchat::files::TransferState::Done)
    });
    settle(&mut bob);
    assert_eq!(std::fs::read(&saved).expect("the saved file"), lab3, "the same bytes");
    assert!(has_text(&bob, "lab3.csv progress 100%"));
    assert!(has_text(&bob, "lab3.csv: Done · 5.2 MB"), "on screen: {:?}", labels(&bob));
    assert!(!has_text(&bob, "relayed"), "loopback reaches alice directly");

    // alice saw who fetched what from her.
    wait_for_text(&mut alice, "bob is fetching lab3.csv from you");
}

#[test]
fn a_sharer_at_the_upload_limit_shows_as_busy_and_can_stop_an_upload() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let addr = server.addr_string();
    // Large enough that the fetch is still running while carol searches (sparse: no disk).
    let folder = dir.path().join("share");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::File::create(folder.join("dataset.bin"))
        .and_then(|f| f.set_len(512 << 20))
        .expect("a sparse file");

    let mut alice = user_app(&rt, dir.path(), &addr, "alice");
    choose_folder(&mut alice, &folder, 1);
    alice.state_mut().sharing_action(SharingAction::SetMaxUploads(1));
    command(&mut alice, "/share on");
    let mut bob = user_app(&rt, dir.path(), &addr, "bob");
    let mut carol = user_app(&rt, dir.path(), &addr, "carol");

    search_until(&mut bob, &mut [&mut alice, &mut carol], "dataset", "Get dataset.bin from alice");
    click(&mut bob, "Get dataset.bin from alice");
    wait_all(&mut alice, &mut [&mut bob, &mut carol], "alice to see the fetch", |h| {
        has_text(h, "bob is fetching dataset.bin from you")
    });

    // alice is at her limit of one: carol sees her as busy, and a Get says so.
    search_until(&mut carol, &mut [&mut alice, &mut bob], "dataset", "Get dataset.bin from alice");
    let hits = carol.state().sharing.search.as_ref().map(|s| s.hits.clone()).unwrap_or_default();
    assert!(hits.len() == 1 && hits[0].busy, "{hits:?}");
    assert!(has_text(&carol, "busy"), "on screen: {:?}", labels(&carol));
    click(&mut carol, "Get dataset.bin from alice");
    wait_all(&mut carol, &mut [&mut alice, &mut bob], "the busy refusal", |h| {
        has_text(h, "alice is busy (at their upload limit)")
    });

    // alice stops bob's fetch from her transfers panel; bob is told and may retry.
    click(&mut alice, "Stop dataset.bin");
    wait_all(&mut bob, &mut [&mut alice, &mut carol], "bob's fetch to end", |h| {
        h.state()
            .files
            .transfers()
            .any(|t| t.name == "dataset.bin" && matches!(t.state, classchat::files::TransferState::Failed(_)))
    });
    settle(&mut bob);
    let why = bob.state().files.transfers().find_map(|t| match &t.state {
        classchat::files::TransferState::Failed(why) => Some(why.clone()),
        _ => None,
    });
    assert_eq!(why.as_deref(), Some("alice stopped sending it; Retry continues where it stopped"));
    assert!(has_text(&bob, "Retry dataset.bin"), "on screen: {:?}", labels(&bob));
    let done = bob.state().files.transfers().any(|t| t.state == classchat::files::TransferState::Done);
    assert!(!done, "a stopped fetch is not shown as done");
    assert!(!dir.path().join("bob-saves/dataset.bin").exists(), "nothing half-done is shown as the file");
}

#[test]
fn the_peer_port_can_be_fixed_and_a_port_in_use_is_reported() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&rt, &dir.path().join("server"), server_key(), any_port());
    let mut h = user_app(&rt, dir.path(), &server.addr_string(), "alice");
    let folder = shared_folder(dir.path(), b"1,2,3\n");
    choose_folder(&mut h, &folder, 2);
    click(&mut h, "Shared files");
    assert_eq!(h.state().settings.sharing.port, 0, "any free port by default");
    command(&mut h, "/share on");
    let listening = |h: &Harness<'static, ClassChatApp>| match &h.state().sharing.listening {
        Some(Ok(addrs)) => addrs.first().map(std::net::SocketAddr::port),
        _ => None,
    };
    wait_until(&mut h, "the listener", |h| listening(h).is_some_and(|p| p != 0));

    // A port of the user's choosing: the listener moves there at once.
    let free =
        std::net::TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()).expect("a free port").port();
    // Typed into the panel's field: nothing changes until Enter (each digit on the way
    // would be another port).
    click(&mut h, "Port for classmates' fetches");
    h.event(egui::Event::Text(free.to_string()));
    settle(&mut h);
    assert_eq!(h.state().settings.sharing.port, 0, "not taken while typing");
    h.key_press(egui::Key::Enter);
    settle(&mut h);
    assert_eq!(h.state().settings.sharing.port, free, "taken on Enter");
    wait_until(&mut h, "the listener on the chosen port", |h| listening(h) == Some(free));
    wait_for_text(&mut h, &format!("Peer port: listening on {free}"));
    std::net::TcpStream::connect(("127.0.0.1", free)).expect("the app listens on the chosen port");

    // A port something else holds: said plainly, not silently ignored.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    h.state_mut().sharing_action(SharingAction::SetPort(taken_port));
    wait_for_text(&mut h, &format!("Classmates cannot fetch from you: cannot listen on port {taken_port}"));
    assert_eq!(h.state().settings.sharing.port, taken_port, "the choice is kept for the next start");
}
