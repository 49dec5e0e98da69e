//! The short class day: the code behind `make classroom` (gui/examples/classroom), with 30
//! students and a 10 MiB file, against the real server binary started as the .deb's
//! service starts it, killed with SIGKILL and restarted. The app windows under Xvfb are
//! left to `make classroom`: the app's screens are tested with kittest (tests/app.rs and
//! others), and this test needs no display.

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "../examples/classroom/day/mod.rs"]
mod day;

use std::path::PathBuf;

/// The server binary `cargo test --workspace` builds beside the app
/// (`target/debug/classchat-server`).
fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_classchat")).with_file_name("classchat-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_class_day_passes_every_check() {
    let bin = server_bin();
    // `cargo test -p classchat` alone does not build the server's binary, and a cargo
    // started from here would wait forever on the lock the running cargo holds.
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p classchat-server` first (`cargo test --workspace` builds it)",
        bin.display()
    );
    let mut opts =
        day::Options::full(bin, concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/server.toml").into());
    opts.students = 30;
    opts.offline = 6;
    opts.discover = 2;
    opts.dm_pairs = 2;
    opts.file_mib = 10;
    opts.downloaders = 5;
    opts.download_concurrency = 5;
    opts.senders = 4;
    opts.per_sender = 10;
    // The app's size is 3072; 2048 makes the four keys in seconds in a debug build.
    opts.identity_bits = 2048;
    opts.login_concurrency = 4;
    opts.echo = |l| eprintln!("{l}");
    let report = day::run(opts).await;
    let verdict = report.text().lines().last().unwrap_or_default().to_owned();
    assert!(report.passed(), "{verdict}\n\nthe report:\n{}", report.text());
    assert!(verdict.starts_with("PASS: 30 students"), "{verdict}");
    // Every step ran and was timed.
    assert_eq!(report.steps.len(), 7, "{}", report.text());
}
