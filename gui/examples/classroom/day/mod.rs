//! A whole class day against the real server, step by step, with a report of what
//! happened and what was checked. `make classroom` runs the full day (the `classroom`
//! example); `gui/tests/classroom.rs` runs a short one. The entry point is [`run`].
//!
//! # Layout
//! - `server`: the server process, started as the .deb's systemd unit starts it.
//! - `student`: a simulated student: the real client, reconnecting as the app does.
//! - `steps`: the day's steps, one function each.
//! - `scan`: looking for plaintext in the server's data dir.
//! - `windows`: the two real app windows under Xvfb and their screenshots.
//! - `report`: the report's lines, figures and verdict.

mod report;
mod scan;
mod server;
mod steps;
mod student;
pub mod windows;

use std::path::PathBuf;
use std::time::Duration;

pub use report::Report;

/// The conversation room of the class.
pub const ROOM: &str = "cs101";
/// The instructor's account.
pub const INSTRUCTOR: &str = "prof";

/// What the day is made of. Every count and size is bounded by the caller's flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub students: usize,
    /// Students that go offline after joining and come back after the announcement.
    pub offline: usize,
    /// Students that find the server by mDNS on loopback (the rest use the invite).
    pub discover: usize,
    /// Pairs of students that exchange end-to-end encrypted DMs.
    pub dm_pairs: usize,
    /// Size of the file dropped in the room, MiB.
    pub file_mib: u64,
    pub downloaders: usize,
    /// Downloads running at once.
    pub download_concurrency: usize,
    /// Students posting while the server is killed, and messages each gets acknowledged.
    pub senders: usize,
    pub per_sender: usize,
    /// Identity key size for DMs (the app's is 3072).
    pub identity_bits: usize,
    /// Logins running at once (each costs an Argon2id on this side and an RSA handshake).
    pub login_concurrency: usize,
    pub server_bin: PathBuf,
    /// The config file the service uses (packaging/server.toml).
    pub config: PathBuf,
    /// The app windows under Xvfb; `None` leaves them out.
    pub windows: Option<windows::WindowOptions>,
    /// Where temporary files go (the server's data dir among them).
    pub work_root: PathBuf,
    /// Where each line of the report goes as it is made.
    pub echo: fn(&str),
}

impl Options {
    /// The shape of `make classroom`'s day, with the binaries and files given.
    pub fn full(server_bin: PathBuf, config: PathBuf) -> Self {
        Self {
            students: 200,
            offline: 30,
            discover: 5,
            dm_pairs: 10,
            file_mib: 200,
            downloaders: 50,
            download_concurrency: 10,
            senders: 10,
            per_sender: 30,
            identity_bits: classchat_wire::e2e::IDENTITY_BITS,
            login_concurrency: 8,
            server_bin,
            config,
            windows: None,
            work_root: std::env::temp_dir(),
            echo: |l| println!("{l}"),
        }
    }

    /// Students that have a part besides listening: the troll, the DM pairs, the
    /// uploader, the downloaders and the senders, each a different student.
    fn needed(&self) -> usize {
        1 + 2 * self.dm_pairs + 1 + self.downloaders + self.senders
    }
}

/// Runs the day and returns its report (the verdict is its last line).
pub async fn run(opts: Options) -> Report {
    let mut report = Report::new(opts.echo);
    let summary = format!(
        "{} students ({} offline for a while), {} MiB to {} downloaders",
        opts.students, opts.offline, opts.file_mib, opts.downloaders
    );
    report.line(format!("ClassChat class day: {summary}"));
    if opts.dm_pairs == 0 || opts.senders == 0 {
        report.fail("the day needs at least one DM pair and one sender (--dm-pairs, --senders)");
    } else if opts.students < opts.needed() || opts.offline > opts.students - opts.needed() {
        report.fail(format!(
            "{} students cannot fill the parts: {} have a part (the troll, {} DM pairs, the uploader, {} downloaders, {} senders) and {} go offline, each a different student",
            opts.students,
            opts.needed(),
            opts.dm_pairs,
            opts.downloaders,
            opts.senders,
            opts.offline
        ));
    } else if let Err(e) = steps::day(&opts, &mut report).await {
        report.fail(format!("the day stopped: {e:#}"));
    }
    report.finish(&summary);
    report
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
