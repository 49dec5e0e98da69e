//! End-to-end encrypted files to a person (PROTOCOL.md section 15.5): the server stores
//! and relays only ciphertext, the recipient gets the exact plaintext, and interrupted
//! transfers resume in the middle of a record. Real server on 127.0.0.1:0, real bulk
//! connections. How the file key reaches the recipient (the sealed `meta`) is the
//! desktop app's part and is tested there.

mod common;

use std::path::Path;

use classchat_wire::files::{DownloadStep, Downloader, Uploader, part_path};
use classchat_wire::sealed_file::{
    FileKey, FileSecret, RECORD_LEN, SEALED_RECORD_LEN, seal_all, sealed_size,
};
use classchat_wire::{Conv, Error, MAX_CHUNK_LEN};
use common::TestServer;

/// `len` bytes of text-like content, easy to spot if it were stored in the clear.
fn content(len: usize) -> Vec<u8> {
    let line = b"SECRET LAB NOTES: the answer to question 3 is 42.\n";
    line.iter().copied().cycle().take(len).collect()
}

/// Every finished file in the server's store, read whole.
fn stored_files(data: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(data.join("files"))
        .expect("the file store exists")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| std::fs::read(e.path()).expect("read a stored file"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_sealed_file_is_stored_as_ciphertext_and_arrives_as_plaintext() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let plain = content(2 * MAX_CHUNK_LEN + 4321);
    let path = tmp.path().join("notes.txt");
    std::fs::write(&path, &plain).expect("write");
    let key = FileKey::generate();
    let secret = FileSecret::new("notes.txt", plain.len() as u64, &key);

    let size = sealed_size(plain.len() as u64);
    let ticket = alice
        .client
        .upload_file(Conv::direct("bob"), "", size, Some(b"opaque to the server".to_vec()))
        .await
        .expect("offer");
    let mut progress = 0;
    let info =
        alice.client.upload_sealed_from(&ticket, &path, &secret, |n| progress = n).await.expect("upload");
    assert_eq!((info.size, progress), (size, size));
    assert_eq!(info.name, "file", "the server never learns the name");

    let stored = stored_files(server.data_dir());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], seal_all(&key, &plain), "the server holds exactly the sealed records");
    assert!(!contains(&stored[0], b"SECRET LAB NOTES"), "no plaintext on the server");

    let grant = bob.client.download_file(info.id).await.expect("accept");
    assert_eq!(grant.file.meta.as_deref(), Some(&b"opaque to the server"[..]));
    let dest = tmp.path().join("bob-notes.txt");
    let got = bob.client.download_sealed_to(&grant, &dest, &secret, |_| {}).await.expect("download");
    assert_eq!((got.name.as_str(), got.size), ("notes.txt", plain.len() as u64), "the real name and size");
    assert_eq!(std::fs::read(&dest).expect("saved"), plain);
    assert!(!part_path(&dest).exists());
    server.stop().await;
}

#[tokio::test]
async fn sealed_transfers_resume_mid_record_after_a_drop() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let plain = content(20 * RECORD_LEN + 999);
    let path = tmp.path().join("big.iso");
    std::fs::write(&path, &plain).expect("write");
    let key = FileKey::generate();
    let secret = FileSecret::new("big.iso", plain.len() as u64, &key);
    let all = seal_all(&key, &plain);
    let ticket =
        alice.client.upload_file(Conv::direct("bob"), "", all.len() as u64, None).await.expect("offer");

    // An odd number of sealed bytes, not on a record boundary, then the connection drops.
    let cut = 5 * SEALED_RECORD_LEN + 12_345;
    let mut up = Uploader::attach(alice.client.bulk_config(), &ticket.token).await.expect("attach");
    up.send(all[..cut].to_vec()).await.expect("chunk");
    up.flush().await.expect("flush");
    drop(up);
    let mut resumed_from = None;
    let info = alice
        .client
        .upload_sealed_from(&ticket, &path, &secret, |n| {
            resumed_from.get_or_insert(n);
        })
        .await
        .expect("resumed upload");
    assert_eq!(resumed_from, Some(cut as u64));
    assert_eq!(stored_files(server.data_dir()), vec![all.clone()]);

    // Download three and a bit records, drop, and keep them as the app would: the part
    // file holds plaintext.
    let grant = bob.client.download_file(info.id).await.expect("accept");
    let dest = tmp.path().join("bob-big.iso");
    let mut down = Downloader::attach(bob.client.bulk_config(), &grant.token, 0).await.expect("attach");
    let mut got = Vec::new();
    while got.len() < 3 * SEALED_RECORD_LEN + 100 {
        match down.next().await.expect("chunk") {
            DownloadStep::Chunk(data) => got.extend_from_slice(&data),
            DownloadStep::Done(_) => panic!("ended early"),
        }
    }
    drop(down);
    std::fs::write(part_path(&dest), &plain[..3 * RECORD_LEN + 100]).expect("part");
    let mut first = None;
    bob.client
        .download_sealed_to(&grant, &dest, &secret, |n| {
            first.get_or_insert(n);
        })
        .await
        .expect("resumed download");
    assert_eq!(first, Some(3 * SEALED_RECORD_LEN as u64), "resumed at the last whole record");
    assert_eq!(std::fs::read(&dest).expect("saved"), plain);
    server.stop().await;
}

#[tokio::test]
async fn a_sealed_file_that_does_not_check_out_is_not_saved() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let plain = content(3 * RECORD_LEN);
    let path = tmp.path().join("a.txt");
    std::fs::write(&path, &plain).expect("write");
    let secret = FileSecret::new("a.txt", plain.len() as u64, &FileKey::generate());
    let size = sealed_size(plain.len() as u64);
    let ticket = alice.client.upload_file(Conv::direct("bob"), "", size, None).await.expect("offer");
    let info = alice.client.upload_sealed_from(&ticket, &path, &secret, |_| {}).await.expect("upload");
    let grant = bob.client.download_file(info.id).await.expect("accept");
    let dest = tmp.path().join("copy.txt");

    // The wrong key: what a server swapping the content, or a forged secret, looks like.
    let forged = FileSecret::new("a.txt", plain.len() as u64, &FileKey::generate());
    let e = bob.client.download_sealed_to(&grant, &dest, &forged, |_| {}).await.expect_err("refused");
    assert!(matches!(e, Error::SealedMismatch { .. }), "{e}");
    assert!(!dest.exists() && !part_path(&dest).exists(), "nothing left behind");

    // A secret for another size does not fit this file.
    let other = FileSecret::new("a.txt", plain.len() as u64 + RECORD_LEN as u64, &FileKey::generate());
    let e = bob.client.download_sealed_to(&grant, &dest, &other, |_| {}).await.expect_err("refused");
    assert!(matches!(e, Error::SealedMismatch { .. }), "{e}");
    assert!(!dest.exists() && !part_path(&dest).exists());

    // The right one works.
    bob.client.download_sealed_to(&grant, &dest, &secret, |_| {}).await.expect("download");
    assert_eq!(std::fs::read(&dest).expect("saved"), plain);
    server.stop().await;
}
