//! Is the window responsive while a 1 GiB file moves (issue 5)? Times every frame of the
//! real app in a real window, before and during the upload of a dropped file.
//!
//! ```text
//! Xvfb :93 -screen 0 1280x800x24 &
//! DISPLAY=:93 cargo run --release -p classchat --example transfer_frames -- [--mib 1024]
//! ```
//!
//! It starts a server in-process on 127.0.0.1 (its own tokio runtime, so the app's two net
//! workers are as in `main.rs`), seeds #lobby with messages from bob, prepares ada's app
//! data directory so the app logs in by itself, and writes a pseudo-random file of `--mib`
//! MiB, all under a temporary directory (`--dir` to choose where; removed at the end).
//! Then it opens `ClassChatApp` in an eframe window (glow, vsync off, repainting
//! continuously) inside a thin wrapper that times the wall time between frames, and:
//!
//! 1. once the lobby is open, skips a warm-up and times `--baseline-frames` frames;
//! 2. drops the file on the window (`RawInput::dropped_files`, as eframe does), so the app
//!    uploads it to #lobby, and times every frame until the transfers panel says Done;
//! 3. (unless `--upload-only`) has bob download it on a wire connection of his own (on the
//!    server's runtime), timing the app's frames until bob's copy is complete.
//!
//! Every measured frame gets the same injected input: the pointer moving over the
//! conversation and the wheel scrolling it up and down, so each frame lays out and paints
//! rows. It prints percentiles of the frame times for each phase, the frames over 100 ms,
//! and the transfers' wall time and MB/s, then exits; it gives up after `--timeout-secs`.

mod common;
#[path = "../tests/common/dropped.rs"]
mod dropped;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use classchat::app::Screen;
use classchat::files::{Direction, TransferState};
use classchat::{AppConfig, ClassChatApp};
use classchat_wire::{Conv, FileInfo, Request};
use common::{Server, connect, prepare_app, publish_key, write_pseudo_random};
use dropped::Dropped;

#[derive(Debug, Parser)]
#[command(about = "Frame times of the real app window during a large file transfer")]
struct Args {
    /// Size of the file to send, MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Frames timed before the drop.
    #[arg(long, default_value_t = 300)]
    baseline_frames: usize,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Where the server's data, the app's data and the file go (default: the system's
    /// temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Stop after the upload (skip bob's download).
    #[arg(long)]
    upload_only: bool,
}

/// Frames after the lobby opens before the baseline starts: fonts, the first layout of the
/// conversation and the window settling.
const WARM_UP_FRAMES: usize = 60;
/// Messages from bob in #lobby, so scrolling has rows to lay out.
const LOBBY_MESSAGES: usize = 300;
/// Frames slower than this are counted (and listed) as stalls a person notices.
const SLOW: Duration = Duration::from_millis(100);
const USER: &str = "ada";
const FILE_NAME: &str = "big.bin";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let tmp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("make a temporary directory")?;
    let app_dir = tmp.path().join("ada");
    let file = tmp.path().join(FILE_NAME);
    let size = args.mib << 20;

    // The server gets runtime threads of its own, as a server in another process would.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .context("server runtime")?;
    let server = server_rt.block_on(seed(&tmp.path().join("server"), &app_dir))?;
    println!("server on {} (data in {})", server.addr, tmp.path().display());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the start: {}", load.trim());

    let t = Instant::now();
    write_pseudo_random(&file, size)?;
    println!("wrote {} MiB to {} in {:.2?}", args.mib, file.display(), t.elapsed());

    // As main.rs: two net workers, the main thread for the window.
    let app_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("classchat-net")
        .enable_all()
        .build()
        .context("app runtime")?;
    let mut config = AppConfig::new(app_dir.clone(), app_rt.handle().clone());
    config.server = Some(server.addr.clone());
    config.user = Some(USER.into());
    config.notifier = classchat::app::Notifier::Off;

    let report = Arc::new(Mutex::new(Report::default()));
    let download = (!args.upload_only).then(|| Downloader {
        rt: server_rt.handle().clone(),
        addr: server.addr.clone(),
        dest: tmp.path().join("bob-copy.bin"),
    });
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("ClassChat").with_inner_size([1100.0, 720.0]),
        renderer: eframe::Renderer::Glow,
        persistence_path: Some(app_dir),
        ..Default::default()
    };
    options.glow_options.vsync = false;
    let bench_report = Arc::clone(&report);
    let baseline_frames = args.baseline_frames;
    let result = eframe::run_native(
        "transfer frames",
        options,
        Box::new(move |cc| {
            let app = ClassChatApp::new(cc, config);
            Ok(Box::new(Bench::new(app, file, size, baseline_frames, deadline, download, bench_report)))
        }),
    );
    app_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.block_on(server.stop())?;
    result.map_err(|e| anyhow::anyhow!("the window could not be opened (is DISPLAY set?): {e}"))?;

    let report = std::mem::take(&mut *report.lock().map_err(|_| anyhow::anyhow!("report lock poisoned"))?);
    report.print(size);
    match report.failure {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Starts the server, seeds #lobby and prepares ada's app data directory.
async fn seed(server_dir: &Path, app_dir: &Path) -> anyhow::Result<Server> {
    let config = classchat_server::Config {
        server_name: "Transfer bench".into(),
        data_dir: server_dir.to_path_buf(),
        rsa_bits: 2048,
        // Seeding sends a few hundred messages at once.
        messages_per_second: 1000,
        message_burst: 1000,
        ..Default::default()
    };
    let server = Server::start("127.0.0.1:0", config).await?;
    let ada = connect(&server.addr, USER, "bench-seed").await?;
    let ada_key = publish_key(&ada, USER).await?;
    ada.close().await;
    let bob = connect(&server.addr, "bob", "bench").await?;
    for i in 0..LOBBY_MESSAGES {
        let text = if i % 5 == 0 {
            format!(
                "message {i}: a longer line that wraps on a narrow window, as chat does when people explain things"
            )
        } else {
            format!("message {i}")
        };
        bob.request(Request::SendRoom { room: "lobby".into(), text, reply_to: None }).await?;
    }
    bob.close().await;
    prepare_app(app_dir, &server.addr, USER, server.fingerprint, &ada_key, &[]).await?;
    Ok(server)
}

/// Bob's download of the uploaded file, on the server's runtime.
struct Downloader {
    rt: tokio::runtime::Handle,
    addr: String,
    dest: PathBuf,
}

impl Downloader {
    /// Starts the download; the receiver gets its outcome.
    fn start(&self, file: FileInfo) -> mpsc::Receiver<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        let (addr, dest) = (self.addr.clone(), self.dest.clone());
        self.rt.spawn(async move {
            let result = async {
                let bob = connect(&addr, "bob", "bench-download").await?;
                let ticket = bob.download_file(file.id).await?;
                let got = bob.download_to(&ticket, &dest, |_| {}).await?;
                anyhow::ensure!(got.size == file.size, "bob got {} bytes of {}", got.size, file.size);
                bob.close().await;
                Ok(())
            }
            .await;
            let _ = tx.send(result.map_err(|e: anyhow::Error| format!("bob's download failed: {e:#}")));
        });
        rx
    }
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the app to log in and open the lobby.
    LoggingIn,
    WarmUp {
        frames: usize,
    },
    Baseline {
        started: Instant,
    },
    /// The next frame's input carries the dropped file.
    Drop,
    Upload {
        started: Instant,
    },
    Download {
        started: Instant,
        done: mpsc::Receiver<Result<(), String>>,
    },
    Finished,
}

/// Frame times of one phase.
#[derive(Debug, Default)]
struct Frames {
    /// Wall time between the start of consecutive frames.
    intervals: Vec<Duration>,
    /// eframe's `cpu_usage` of the previous frame: the UI code and the paint calls,
    /// without waiting for the GL driver to present.
    cpu: Vec<Duration>,
    /// Frames over [`SLOW`]: (time since the phase began, frame time).
    slow: Vec<(Duration, Duration)>,
}

impl Frames {
    fn push(&mut self, since_start: Duration, interval: Duration, cpu: Option<f32>) {
        self.intervals.push(interval);
        if let Some(cpu) = cpu {
            self.cpu.push(Duration::from_secs_f32(cpu.max(0.0)));
        }
        if interval > SLOW {
            self.slow.push((since_start, interval));
        }
    }

    fn print(&self, what: &str) {
        let Some(s) = Stats::of(&self.intervals) else {
            println!("{what}: no frames");
            return;
        };
        let over = |limit: u64| self.intervals.iter().filter(|d| **d > Duration::from_millis(limit)).count();
        println!(
            "{what}: {} frames, p50 {}, p95 {}, p99 {}, max {} ms; over 50 ms: {}, over 100 ms: {}",
            s.n,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            ms(s.max),
            over(50),
            over(100),
        );
        if let Some(c) = Stats::of(&self.cpu) {
            println!(
                "  eframe cpu_usage (UI + paint calls): p50 {}, p95 {}, max {} ms",
                ms(c.p50),
                ms(c.p95),
                ms(c.max)
            );
        }
        for (at, took) in self.slow.iter().take(10) {
            println!("  slow frame at +{:.2} s: {} ms", at.as_secs_f64(), ms(*took));
        }
        if self.slow.len() > 10 {
            println!("  ... and {} more slow frames", self.slow.len() - 10);
        }
    }
}

struct Stats {
    n: usize,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(times: &[Duration]) -> Option<Self> {
        let mut sorted = times.to_vec();
        sorted.sort();
        let max = *sorted.last()?;
        let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
        Some(Self { n: sorted.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99), max })
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// CPU time so far, in seconds, of this process's threads grouped by name (`llvmpipe-3`
/// counts as `llvmpipe`), and of the whole machine (`all`, every process): where the
/// cores went during a phase. Assumes 100 clock ticks a second, as on Linux x86-64.
#[derive(Debug, Clone, Default)]
struct Cpu {
    at: Option<Instant>,
    seconds: BTreeMap<String, f64>,
}

impl Cpu {
    fn now() -> Self {
        let mut seconds = BTreeMap::new();
        let ticks = |stat: &str, from: usize, count: usize| -> f64 {
            let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            fields
                .split_whitespace()
                .skip(from)
                .take(count)
                .filter_map(|f| f.parse::<f64>().ok())
                .sum::<f64>()
                / 100.0
        };
        for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
            let (Ok(comm), Ok(stat)) = (
                std::fs::read_to_string(task.path().join("comm")),
                std::fs::read_to_string(task.path().join("stat")),
            ) else {
                continue;
            };
            let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == ':');
            // utime and stime: fields 14 and 15, the 12th and 13th after the name.
            *seconds.entry(name.to_owned()).or_default() += ticks(&stat, 11, 2);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().next()
        {
            // user, nice, system, irq, softirq, steal: busy; idle and iowait are not.
            let busy: f64 = line
                .split_whitespace()
                .skip(1)
                .enumerate()
                .filter(|(i, _)| ![3, 4].contains(i))
                .take(6)
                .filter_map(|(_, f)| f.parse::<f64>().ok())
                .sum();
            seconds.insert("all".into(), busy / 100.0);
        }
        Self { at: Some(Instant::now()), seconds }
    }

    /// Cores used between `self` and `later`, by thread group, busiest first.
    fn print_since(&self, later: &Cpu) {
        let (Some(a), Some(b)) = (self.at, later.at) else { return };
        let wall = (b - a).as_secs_f64().max(1e-9);
        let mut used: Vec<(String, f64)> = later
            .seconds
            .iter()
            .map(|(k, v)| (k.clone(), (v - self.seconds.get(k).copied().unwrap_or(0.0)) / wall))
            .filter(|(_, cores)| *cores >= 0.01)
            .collect();
        used.sort_by(|x, y| y.1.total_cmp(&x.1));
        let list: Vec<String> = used.iter().map(|(k, c)| format!("{k} {c:.2}")).collect();
        println!("  cores used (threads of this process; all = whole machine): {}", list.join(", "));
    }
}

/// What the run measured, printed after the window closes.
#[derive(Debug, Default)]
struct Report {
    baseline: Frames,
    upload: Frames,
    upload_time: Option<Duration>,
    /// Different progress figures the UI saw during the upload: the progress events
    /// that reached it (at most `PROGRESS_PER_SECOND` a second).
    progress_steps: usize,
    download: Frames,
    download_time: Option<Duration>,
    /// CPU at the start of the baseline, the drop, the upload's end and the download's end.
    cpu: Vec<Cpu>,
    failure: Option<String>,
}

impl Report {
    fn print(&self, size: u64) {
        let rate = |t: Duration| size as f64 / t.as_secs_f64() / 1e6;
        println!("file: {} MiB", size >> 20);
        let cpu = |i: usize| {
            if let (Some(a), Some(b)) = (self.cpu.get(i), self.cpu.get(i + 1)) {
                a.print_since(b);
            }
        };
        self.baseline.print("baseline (idle, scrolling)");
        cpu(0);
        self.upload.print("during the upload (scrolling)");
        cpu(1);
        if let Some(t) = self.upload_time {
            println!(
                "upload: {:.2} s from the drop to Done in the transfers panel, {:.0} MB/s; {} progress updates seen",
                t.as_secs_f64(),
                rate(t),
                self.progress_steps
            );
        }
        if !self.download.intervals.is_empty() {
            self.download.print("during bob's download (scrolling)");
            cpu(2);
        }
        if let Some(t) = self.download_time {
            println!("bob's download: {:.2} s, {:.0} MB/s", t.as_secs_f64(), rate(t));
        }
        if let Some(why) = &self.failure {
            println!("FAILED: {why}");
        }
    }
}

/// The real app, timed frame by frame, with input injected to drive the benchmark.
struct Bench {
    app: ClassChatApp,
    file: PathBuf,
    size: u64,
    baseline_frames: usize,
    deadline: Instant,
    downloader: Option<Downloader>,
    phase: Phase,
    /// Start of the previous frame.
    last: Option<Instant>,
    /// Frames with injected input so far (drives the wheel's direction).
    frame: usize,
    last_progress: Option<u64>,
    report: Arc<Mutex<Report>>,
    local: Report,
}

impl Bench {
    fn new(
        app: ClassChatApp,
        file: PathBuf,
        size: u64,
        baseline_frames: usize,
        deadline: Instant,
        downloader: Option<Downloader>,
        report: Arc<Mutex<Report>>,
    ) -> Self {
        Self {
            app,
            file,
            size,
            baseline_frames,
            deadline,
            downloader,
            phase: Phase::LoggingIn,
            last: None,
            frame: 0,
            last_progress: None,
            report,
            local: Report::default(),
        }
    }

    fn measuring(&self) -> bool {
        matches!(
            self.phase,
            Phase::WarmUp { .. }
                | Phase::Baseline { .. }
                | Phase::Drop
                | Phase::Upload { .. }
                | Phase::Download { .. }
        )
    }

    fn finish(&mut self, ctx: &egui::Context, failure: Option<String>) {
        if let Some(why) = &failure {
            eprintln!("giving up: {why}");
        }
        self.local.failure = failure;
        self.phase = Phase::Finished;
        if let Ok(mut report) = self.report.lock() {
            *report = std::mem::take(&mut self.local);
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// After the frame: moves to the next phase when this one is over.
    fn advance(&mut self, ctx: &egui::Context) {
        let lobby = Conv::room("lobby");
        match &mut self.phase {
            Phase::LoggingIn => {
                if self.app.screen == Screen::Main && self.app.model.current.as_ref() == Some(&lobby) {
                    println!("logged in, #lobby open");
                    self.phase = Phase::WarmUp { frames: 0 };
                }
            }
            Phase::WarmUp { frames } => {
                *frames += 1;
                if *frames >= WARM_UP_FRAMES {
                    self.local.cpu.push(Cpu::now());
                    self.phase = Phase::Baseline { started: Instant::now() };
                }
            }
            Phase::Baseline { .. } => {
                if self.local.baseline.intervals.len() >= self.baseline_frames {
                    self.phase = Phase::Drop;
                }
            }
            Phase::Drop | Phase::Finished => {}
            Phase::Upload { started } => {
                let started = *started;
                let Some(t) =
                    self.app.files.transfers().find(|t| t.dir == Direction::Up && t.name == FILE_NAME)
                else {
                    return;
                };
                if self.last_progress != Some(t.done) {
                    self.last_progress = Some(t.done);
                    self.local.progress_steps += 1;
                }
                match &t.state {
                    TransferState::Running | TransferState::Exists => {}
                    TransferState::Done => {
                        let took = started.elapsed();
                        self.local.cpu.push(Cpu::now());
                        self.local.upload_time = Some(took);
                        println!("upload done in {took:.2?}");
                        let file = t.file.clone();
                        match (&self.downloader, file) {
                            (None, _) => self.finish(ctx, None),
                            (Some(_), None) => {
                                self.finish(ctx, Some("the finished upload has no file info".into()));
                            }
                            (Some(d), Some(file)) => {
                                let done = d.start(file);
                                println!("bob downloads it");
                                self.phase = Phase::Download { started: Instant::now(), done };
                            }
                        }
                    }
                    TransferState::Failed(why) => {
                        let why = format!("the upload failed: {why}");
                        self.finish(ctx, Some(why));
                    }
                    TransferState::Cancelled => self.finish(ctx, Some("the upload was cancelled".into())),
                }
            }
            Phase::Download { started, done } => match done.try_recv() {
                Ok(Ok(())) => {
                    let took = started.elapsed();
                    self.local.cpu.push(Cpu::now());
                    self.local.download_time = Some(took);
                    println!("bob's download done in {took:.2?}");
                    self.finish(ctx, None);
                }
                Ok(Err(why)) => self.finish(ctx, Some(why)),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.finish(ctx, Some("bob's download task went away".into()));
                }
            },
        }
    }
}

/// Wheel steps: up for a second or so of frames, then back down.
fn wheel_delta(frame: usize) -> f32 {
    if (frame / 40).is_multiple_of(2) { 50.0 } else { -50.0 }
}

impl eframe::App for Bench {
    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw_input: &mut egui::RawInput) {
        if !self.measuring() {
            return;
        }
        self.frame += 1;
        // Over the conversation, moving a little so hover state changes.
        let wobble = (self.frame % 20) as f32;
        raw_input.events.push(egui::Event::PointerMoved(egui::pos2(500.0 + wobble, 300.0 + wobble)));
        raw_input.events.push(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, wheel_delta(self.frame)),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
        if let Phase::Drop = self.phase {
            self.local.cpu.push(Cpu::now());
            raw_input.dropped_files.push(Arc::new(Dropped(self.file.clone())));
            println!("dropped {} ({} MiB)", self.file.display(), self.size >> 20);
            self.phase = Phase::Upload { started: Instant::now() };
        }
    }

    fn logic(&mut self, ctx: &egui::Context, frame: &mut eframe::Frame) {
        self.app.logic(ctx, frame);
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let now = Instant::now();
        if let Some(last) = self.last {
            let interval = now - last;
            let cpu = frame.info().cpu_usage;
            match &self.phase {
                Phase::Baseline { started } => self.local.baseline.push(now - *started, interval, cpu),
                Phase::Upload { started } => self.local.upload.push(now - *started, interval, cpu),
                Phase::Download { started, .. } => self.local.download.push(now - *started, interval, cpu),
                _ => {}
            }
        }
        self.last = Some(now);
        self.app.ui(ui, frame);
        let ctx = ui.ctx().clone();
        if Instant::now() > self.deadline && !matches!(self.phase, Phase::Finished) {
            let phase = format!("{:?}", self.phase);
            self.finish(&ctx, Some(format!("timed out in phase {phase}")));
        } else {
            self.advance(&ctx);
        }
        ctx.request_repaint();
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.app.save(storage);
    }
}
