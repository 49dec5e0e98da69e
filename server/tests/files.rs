//! File sharing (PROTOCOL.md section 15): rooms, offers, integrity, resume, limits,
//! hostile names, chat during a transfer, retention and administration. Real server on
//! 127.0.0.1:0, real client, real bulk connections.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use classchat_server::admin;
use classchat_wire::chunk::{SEAL_BATCH, SEND_CHUNK_LEN};
use classchat_wire::files::{DownloadStep, Downloader, Uploader, part_path};
use classchat_wire::{Body, Conv, ErrorCode, Event, FileInfo, MAX_CHUNK_LEN, Request, Response};
use common::{TestServer, TestUser, code, eventually};
use sha2::{Digest, Sha256};

/// `len` bytes that differ from file to file (`seed`) and along the file.
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

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the test file");
    path
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

async fn command(server: &TestServer, line: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), admin::send(server.data_dir(), line))
        .await
        .expect("the admin socket answered in time")
        .expect("the admin socket is up")
}

/// Every file name in the server's file store, temporary ones included.
fn stored_names(server: &TestServer) -> Vec<String> {
    let dir = server.data_dir().join("files");
    let mut out = Vec::new();
    for sub in [dir.clone(), dir.join("tmp")] {
        for e in std::fs::read_dir(sub).expect("the file store exists").flatten() {
            if e.path().is_file() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn file_message(ev: &Event) -> Option<&FileInfo> {
    match ev {
        Event::Message { message } => match &message.body {
            Body::File { file } => Some(file),
            _ => None,
        },
        _ => None,
    }
}

fn offer_of(ev: &Event) -> Option<&FileInfo> {
    match ev {
        Event::FileOffer { file } => Some(file),
        _ => None,
    }
}

async fn download_bytes(user: &TestUser, file: u64, dir: &Path) -> Vec<u8> {
    let ticket = user.client.download_file(file).await.expect("download allowed");
    let dest = dir.join(format!("{}-got-{file}", user.name));
    let info = user.client.download_to(&ticket, &dest, |_| {}).await.expect("download");
    let bytes = std::fs::read(&dest).expect("the downloaded file");
    assert_eq!(bytes.len() as u64, info.size);
    assert!(!part_path(&dest).exists(), "the part file was renamed");
    bytes
}

#[tokio::test]
async fn room_file_reaches_members_byte_identical_and_not_outsiders() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mallory = server.user("mallory").await;
    alice.create_room("lab").await;
    bob.join("lab").await;
    let bytes = content(3 * MAX_CHUNK_LEN + 12_345, 1);
    let path = write_temp(tmp.path(), "slides.pdf", &bytes);

    let mut seen = 0;
    let info = alice.client.send_file(Conv::room("lab"), &path, |n| seen = n).await.expect("upload");
    assert_eq!(seen, bytes.len() as u64, "progress reached the end");
    assert_eq!(
        (info.name.as_str(), info.size, info.from.as_str()),
        ("slides.pdf", bytes.len() as u64, "alice")
    );
    assert_eq!(info.sha256, sha(&bytes));

    // Announced in the room with everything a client needs.
    let ev = bob.expect_event("the file message", |e| file_message(e).is_some()).await;
    assert_eq!(file_message(&ev), Some(&info));
    assert_eq!(download_bytes(&bob, info.id, tmp.path()).await, bytes);

    // A non-member can neither upload to the room nor download its file.
    assert_eq!(code(mallory.client.download_file(info.id).await), ErrorCode::NoSuchFile);
    assert_eq!(code(mallory.client.upload_file(Conv::room("lab"), "x", 1, None).await), ErrorCode::NotMember);

    // Someone who joins later finds it in history and may download it.
    mallory.join("lab").await;
    let history = mallory.ok(Request::History { conv: Conv::room("lab"), before: None, limit: 50 }).await;
    let Response::History { messages, .. } = history else { panic!("history") };
    assert!(messages.iter().any(|m| m.body == Body::File { file: info.clone() }), "{messages:?}");
    assert_eq!(download_bytes(&mallory, info.id, tmp.path()).await, bytes);
    server.stop().await;
}

#[tokio::test]
async fn offers_are_accepted_or_declined_and_the_sender_hears() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let bytes = content(100_000, 2);
    let path = write_temp(tmp.path(), "essay.txt", &bytes);

    let info = alice.client.send_file(Conv::direct("bob"), &path, |_| {}).await.expect("offer");
    let ev = bob.expect_event("the offer", |e| offer_of(e).is_some()).await;
    let offer = offer_of(&ev).expect("offer");
    assert_eq!(
        (offer.id, offer.name.as_str(), offer.size, offer.from.as_str()),
        (info.id, "essay.txt", 100_000, "alice")
    );
    bob.client.answer_offer(info.id, true).await.expect("accept");
    let ev = alice.expect_event("the answer", |e| matches!(e, Event::OfferAnswered { .. })).await;
    assert_eq!(ev, Event::OfferAnswered { file: info.id, user: "bob".into(), accepted: true });
    assert_eq!(download_bytes(&bob, info.id, tmp.path()).await, bytes);

    // A second offer, declined: the sender hears, and the file is gone.
    let second = alice.client.send_file(Conv::direct("bob"), &path, |_| {}).await.expect("offer");
    bob.expect_event("the second offer", |e| offer_of(e).is_some_and(|f| f.id == second.id)).await;
    bob.client.answer_offer(second.id, false).await.expect("decline");
    let ev = alice.expect_event("the decline", |e| matches!(e, Event::OfferAnswered { .. })).await;
    assert_eq!(ev, Event::OfferAnswered { file: second.id, user: "bob".into(), accepted: false });
    assert_eq!(code(bob.client.download_file(second.id).await), ErrorCode::NoSuchFile);
    // Only the recipient answers; a third party cannot download a direct file.
    let carol = server.user("carol").await;
    assert_eq!(code(carol.client.answer_offer(info.id, true).await), ErrorCode::NoSuchFile);
    assert_eq!(code(carol.client.download_file(info.id).await), ErrorCode::NoSuchFile);
    server.stop().await;
}

#[tokio::test]
async fn an_offline_recipient_gets_the_offer_at_login() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    bob.client.close().await;
    let bytes = content(70_000, 3);
    let path = write_temp(tmp.path(), "data.csv", &bytes);
    let info = alice.client.send_file(Conv::direct("bob"), &path, |_| {}).await.expect("offer");

    let mut bob = server.login("bob", "dev-2").await;
    let events = bob.until_caught_up().await;
    let offers: Vec<_> = events.iter().filter_map(offer_of).collect();
    assert_eq!(offers.len(), 1, "{events:?}");
    assert_eq!(offers[0].sha256, info.sha256);
    assert_eq!(download_bytes(&bob, info.id, tmp.path()).await, bytes);
    // Downloading accepted it: no offer at the next login.
    bob.client.close().await;
    let mut bob = server.login("bob", "dev-3").await;
    assert!(bob.until_caught_up().await.iter().all(|e| offer_of(e).is_none()));
    server.stop().await;
}

#[tokio::test]
async fn a_corrupted_upload_is_detected_and_nothing_is_kept() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bytes = content(2 * MAX_CHUNK_LEN, 4);
    let ticket =
        alice.client.upload_file(Conv::room("lobby"), "a.bin", bytes.len() as u64, None).await.expect("ok");
    let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
    assert_eq!(up.offset(), 0);
    let mut damaged = bytes[..MAX_CHUNK_LEN].to_vec();
    damaged[1000] ^= 0x40;
    up.send(damaged).await.expect("chunk");
    up.send(bytes[MAX_CHUNK_LEN..].to_vec()).await.expect("chunk");
    assert_eq!(code(up.finish(&sha(&bytes)).await), ErrorCode::HashMismatch);
    assert!(stored_names(&server).is_empty(), "{:?}", stored_names(&server));
    // The token is spent and the file gone.
    assert_eq!(
        code(Uploader::attach(alice.client.bulk_config(), &ticket.token).await),
        ErrorCode::NoSuchTransfer
    );
    assert_eq!(code(alice.client.download_file(ticket.file).await), ErrorCode::NoSuchFile);
    assert!(command(&server, "files").await.starts_with("0 files"));
    server.stop().await;
}

#[tokio::test]
async fn interrupted_transfers_resume_where_they_stopped() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bytes = content(6 * MAX_CHUNK_LEN + 777, 5);
    let path = write_temp(tmp.path(), "big.iso", &bytes);
    let ticket =
        alice.client.upload_file(Conv::direct("bob"), "big.iso", bytes.len() as u64, None).await.expect("ok");

    // Half the chunks, then the connection drops.
    let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
    for chunk in bytes.chunks(MAX_CHUNK_LEN).take(3) {
        up.send(chunk.to_vec()).await.expect("chunk");
    }
    up.flush().await.expect("flush");
    drop(up);
    // The server reports what it holds; the client sends only the rest.
    let mut resumed_from = None;
    let info = alice
        .client
        .upload_from(&ticket, &path, |n| {
            resumed_from.get_or_insert(n);
        })
        .await
        .expect("resumed upload");
    assert_eq!(resumed_from, Some(3 * MAX_CHUNK_LEN as u64));
    assert_eq!(info.sha256, sha(&bytes));

    // Download: the first 1 MiB or more, drop, then resume from the saved part.
    let grant = bob.client.download_file(info.id).await.expect("download");
    let dest = tmp.path().join("bob-big.iso");
    let mut down = Downloader::attach(bob.client.bulk_config(), &grant.token, 0).await.expect("attach");
    let mut part = Vec::new();
    while part.len() < 2 * MAX_CHUNK_LEN {
        match down.next().await.expect("chunk") {
            DownloadStep::Chunk(data) => part.extend_from_slice(&data),
            DownloadStep::Done(_) => panic!("ended early"),
        }
    }
    drop(down);
    std::fs::write(part_path(&dest), &part).expect("write part");
    let mut first_progress = None;
    bob.client
        .download_to(&grant, &dest, |n| {
            first_progress.get_or_insert(n);
        })
        .await
        .expect("resumed download");
    assert_eq!(first_progress, Some(part.len() as u64));
    assert_eq!(std::fs::read(&dest).expect("saved"), bytes);
    server.stop().await;
}

#[tokio::test]
async fn a_damaged_download_is_not_saved() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bytes = content(MAX_CHUNK_LEN + 10, 6);
    let path = write_temp(tmp.path(), "f.bin", &bytes);
    let info = alice.client.send_file(Conv::room("lobby"), &path, |_| {}).await.expect("upload");
    let grant = alice.client.download_file(info.id).await.expect("grant");
    let dest = tmp.path().join("copy.bin");
    // A part file that does not match what the server has.
    std::fs::write(part_path(&dest), b"not the start of the file").expect("write");
    let e = alice.client.download_to(&grant, &dest, |_| {}).await.expect_err("mismatch");
    assert!(matches!(e, classchat_wire::Error::HashMismatch { .. }), "{e}");
    assert!(!dest.exists() && !part_path(&dest).exists());
    server.stop().await;
}

#[tokio::test]
async fn oversized_and_over_quota_files_are_refused_up_front() {
    let server = TestServer::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.max_file_size = 1000;
        c.user_file_quota = 2500;
        c.total_file_quota = 4000;
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_eq!(alice.welcome.limits.max_file_size, 1000);
    let lobby = || Conv::room("lobby");
    assert_eq!(code(alice.client.upload_file(lobby(), "big", 1001, None).await), ErrorCode::FileTooLarge);
    // Reservations count from the announcement on, before any byte moves.
    alice.client.upload_file(lobby(), "a", 1000, None).await.expect("1st");
    alice.client.upload_file(lobby(), "b", 1000, None).await.expect("2nd");
    assert_eq!(code(alice.client.upload_file(lobby(), "c", 1000, None).await), ErrorCode::QuotaExceeded);
    alice.client.upload_file(lobby(), "c", 500, None).await.expect("fits exactly");
    bob.client.upload_file(lobby(), "d", 1000, None).await.expect("bob's own quota");
    assert_eq!(
        code(bob.client.upload_file(lobby(), "e", 600, None).await),
        ErrorCode::QuotaExceeded,
        "total"
    );
    assert_eq!(
        code(alice.client.upload_file(Conv::Announcements, "x", 1, None).await),
        ErrorCode::BadRequest
    );
    server.stop().await;
}

#[tokio::test]
async fn hostile_names_are_neutralised() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let long = "n".repeat(5000);
    for (sent, expected) in [
        ("../../etc/passwd", "passwd"),
        ("a/b", "b"),
        ("C:\\x", "x"),
        ("nul\0byte.txt", "nulbyte.txt"),
        ("..", "file"),
        (long.as_str(), &long[..255]),
    ] {
        let ticket = alice.client.upload_file(Conv::direct("alice"), sent, 0, None).await.expect("announce");
        let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
        up.send(Vec::new()).await.expect("empty chunk");
        let info = up.finish(&sha(b"")).await.expect("stored");
        assert_eq!(info.name, expected, "{sent:?}");
    }
    // Stored by content hash, never by name.
    assert_eq!(stored_names(&server), vec![hex::encode(sha(b""))]);
    assert!(!server.data_dir().join("etc").exists());
    server.stop().await;
}

#[tokio::test]
async fn chat_keeps_flowing_during_a_large_transfer() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let bytes = content(16 * MAX_CHUNK_LEN, 7);
    let ticket = alice
        .client
        .upload_file(Conv::room("lobby"), "video.mp4", bytes.len() as u64, None)
        .await
        .expect("ok");
    let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
    for chunk in bytes.chunks(MAX_CHUNK_LEN).take(8) {
        up.send(chunk.to_vec()).await.expect("chunk");
    }
    up.flush().await.expect("flush");
    // Mid-upload, chat round-trips.
    let id = alice.say("lobby", "still here?").await;
    bob.expect_event("the chat message", |e| matches!(e, Event::Message { message } if message.id == id))
        .await;
    for chunk in bytes.chunks(MAX_CHUNK_LEN).skip(8) {
        up.send(chunk.to_vec()).await.expect("chunk");
    }
    let info = up.finish(&sha(&bytes)).await.expect("stored");
    assert_eq!(info.size, bytes.len() as u64);
    server.stop().await;
}

#[tokio::test]
async fn a_download_can_follow_an_upload_in_progress() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let bytes = content(5 * MAX_CHUNK_LEN + 3, 8);
    let ticket = alice
        .client
        .upload_file(Conv::direct("bob"), "live.bin", bytes.len() as u64, None)
        .await
        .expect("ok");
    let ev = bob.expect_event("the offer", |e| offer_of(e).is_some()).await;
    assert!(offer_of(&ev).expect("offer").sha256.is_empty(), "still uploading");
    let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
    up.send(bytes[..MAX_CHUNK_LEN].to_vec()).await.expect("chunk");
    up.flush().await.expect("flush");
    let grant = bob.client.download_file(ticket.file).await.expect("grant");
    let dest = tmp.path().join("live.bin");
    let download = {
        let client = bob.client.clone();
        let dest = dest.clone();
        tokio::spawn(async move { client.download_to(&grant, &dest, |_| {}).await })
    };
    for chunk in bytes[MAX_CHUNK_LEN..].chunks(MAX_CHUNK_LEN) {
        up.send(chunk.to_vec()).await.expect("chunk");
    }
    up.finish(&sha(&bytes)).await.expect("stored");
    let info = download.await.expect("join").expect("download");
    assert_eq!(info.sha256, sha(&bytes));
    assert_eq!(std::fs::read(&dest).expect("saved"), bytes);
    server.stop().await;
}

#[tokio::test]
async fn admins_list_and_remove_files_and_expired_ones_are_swept() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bytes = content(4096, 9);
    let path = write_temp(tmp.path(), "keep.txt", &bytes);
    let keep = alice.client.send_file(Conv::room("lobby"), &path, |_| {}).await.expect("upload");
    let path = write_temp(tmp.path(), "drop.txt", &content(2048, 10));
    let gone = alice.client.send_file(Conv::room("lobby"), &path, |_| {}).await.expect("upload");

    let list = command(&server, "files").await;
    assert!(list.starts_with("2 files, 6144 bytes"), "{list}");
    assert!(list.contains("\"keep.txt\" size=4096 from=alice room=lobby"), "{list}");
    assert_eq!(
        command(&server, &format!("remove-file {}", gone.id)).await,
        format!("removed file {}", gone.id)
    );
    assert!(command(&server, "remove-file 999").await.starts_with("error:"));
    assert_eq!(code(alice.client.download_file(gone.id).await), ErrorCode::NoSuchFile);
    assert_eq!(stored_names(&server), vec![hex::encode(&keep.sha256)]);
    // Within the retention period the sweep keeps it.
    assert_eq!(command(&server, "cleanup-files").await, "deleted 0 expired files");
    alice.client.close().await;

    // Restarted with a one-second retention: the file expires and is swept.
    let data = server.stop().await;
    let server = TestServer::start_with(data, |c| c.file_retention_secs = 1).await;
    eventually(Duration::from_secs(20), "the file to expire", || async {
        command(&server, "cleanup-files").await;
        command(&server, "files").await.starts_with("0 files")
    })
    .await;
    assert!(stored_names(&server).is_empty());
    let alice = server.login("alice", "dev-2").await;
    assert_eq!(code(alice.client.download_file(keep.id).await), ErrorCode::NoSuchFile);
    server.stop().await;
}

#[tokio::test]
async fn sizes_off_the_seal_batch_arrive_intact_and_a_follower_gets_less_than_a_batch() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // Both ways chunks of SEND_CHUNK_LEN are read and sealed SEAL_BATCH at a time: two
    // whole batches and a short one ending in a short chunk, exactly one batch, a chunk and
    // a byte, one byte.
    let (one, batch) = (SEND_CHUNK_LEN, SEAL_BATCH * SEND_CHUNK_LEN);
    for (seed, len) in [(20, 2 * batch + 3 * one + 7), (21, batch), (22, one + 1), (23, 1)] {
        let bytes = content(len, seed);
        let path = write_temp(tmp.path(), &format!("batch-{seed}.bin"), &bytes);
        let info = alice.client.send_file(Conv::room("lobby"), &path, |_| {}).await.expect("upload");
        assert_eq!(info.sha256, sha(&bytes), "{len} bytes");
        assert_eq!(download_bytes(&bob, info.id, tmp.path()).await, bytes, "{len} bytes");
    }

    // A download that follows an upload waits for a whole batch only briefly: what has
    // arrived (one uploaded chunk, less than a batch) reaches it while the uploader pauses.
    let bytes = content(3 * MAX_CHUNK_LEN + 5, 24);
    let ticket = alice
        .client
        .upload_file(Conv::direct("bob"), "slow.bin", bytes.len() as u64, None)
        .await
        .expect("ok");
    let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
    up.send(bytes[..MAX_CHUNK_LEN].to_vec()).await.expect("chunk");
    up.flush().await.expect("flush");
    let grant = bob.client.download_file(ticket.file).await.expect("grant");
    let mut down = Downloader::attach(bob.client.bulk_config(), &grant.token, 0).await.expect("attach");
    let step = tokio::time::timeout(Duration::from_secs(10), down.next()).await.expect("not held back");
    let DownloadStep::Chunk(first) = step.expect("a chunk") else { panic!("ended early") };
    assert!(!first.is_empty() && first.len() < batch);
    assert_eq!(&first[..], &bytes[..first.len()]);
    for chunk in bytes[MAX_CHUNK_LEN..].chunks(MAX_CHUNK_LEN) {
        up.send(chunk.to_vec()).await.expect("chunk");
    }
    up.finish(&sha(&bytes)).await.expect("stored");
    let mut got = first.to_vec();
    let info = loop {
        match down.next().await.expect("next") {
            DownloadStep::Chunk(data) => got.extend_from_slice(&data),
            DownloadStep::Done(info) => break info,
        }
    };
    assert_eq!((got, info.sha256), (bytes.clone(), sha(&bytes)));
    server.stop().await;
}
