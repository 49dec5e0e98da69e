//! `make classroom`: a whole class day against the real release server, with a report of
//! what happened and what was checked, ending in a one-line verdict (exit code 1 on FAIL).
//!
//! ```text
//! cargo build --release -p classchat-server -p classchat --bin classchat --example classroom
//! target/release/examples/classroom                      # the full day, app windows included
//! target/release/examples/classroom --students 30 --file-mib 10 --downloaders 5 --no-windows
//! ```
//!
//! The server and the app are the binaries next to this one (target/release/); all traffic
//! stays on loopback, every count is one of the flags below and every wait has a deadline.
//! `gui/tests/classroom.rs` runs a short day through the same code.

#[path = "../common/mod.rs"]
mod common;
mod day;

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "A whole class day against the real ClassChat server, with a report")]
struct Args {
    /// Simulated students (each part below is a different one; see the error if too few).
    #[arg(long, default_value_t = 200)]
    students: usize,
    /// Students who go offline after joining and come back after the announcement.
    #[arg(long, default_value_t = 30)]
    offline: usize,
    /// Students who find the server by mDNS on loopback; the rest use the invite link.
    #[arg(long, default_value_t = 5)]
    discover: usize,
    /// Pairs of students exchanging end-to-end encrypted DMs.
    #[arg(long, default_value_t = 10)]
    dm_pairs: usize,
    /// Size of the file dropped in the room, MiB.
    #[arg(long, default_value_t = 200)]
    file_mib: u64,
    /// Students who download the file, each checking its SHA-256.
    #[arg(long, default_value_t = 50)]
    downloaders: usize,
    /// Downloads running at once.
    #[arg(long, default_value_t = 10)]
    download_concurrency: usize,
    /// Students posting while the server is killed.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages each sender gets acknowledged.
    #[arg(long, default_value_t = 30)]
    per_sender: usize,
    /// Leave out the two app windows (no Xvfb needed).
    #[arg(long)]
    no_windows: bool,
    /// The server binary (default: next to this one's directory, target/release/).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The app binary for the windows (default: target/release/classchat).
    #[arg(long)]
    app_bin: Option<PathBuf>,
    /// The service's config file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/server.toml"))]
    config: PathBuf,
    /// Where the two windows' screenshots are saved.
    #[arg(long, default_value = "screenshots")]
    shots: PathBuf,
    /// Also save the report's text to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // target/release/examples/classroom -> target/release/
    let release = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(|d| d.parent()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let mut opts =
        day::Options::full(args.server_bin.unwrap_or_else(|| release.join("classchat-server")), args.config);
    opts.students = args.students;
    opts.offline = args.offline;
    opts.discover = args.discover;
    opts.dm_pairs = args.dm_pairs;
    opts.file_mib = args.file_mib;
    opts.downloaders = args.downloaders;
    opts.download_concurrency = args.download_concurrency;
    opts.senders = args.senders;
    opts.per_sender = args.per_sender;
    if !args.no_windows {
        opts.windows = Some(day::windows::WindowOptions {
            app_bin: args.app_bin.unwrap_or_else(|| release.join("classchat")),
            shots: args.shots,
        });
    }
    let report = day::run(opts).await;
    if let Some(path) = &args.report
        && let Err(e) = std::fs::write(path, report.text())
    {
        eprintln!("cannot save the report to {}: {e}", path.display());
        return std::process::ExitCode::FAILURE;
    }
    if report.passed() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
