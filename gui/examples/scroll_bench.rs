//! Measures the chat view with a long conversation: the memory 100,000 messages take,
//! the first layout, and the time per frame while scrolling (UI code plus tessellation;
//! the GPU or llvmpipe rasterising the triangles comes on top).
//!
//! ```text
//! cargo run --release -p classchat --example scroll_bench -- [MESSAGES]
//! cargo run --release -p classchat --example scroll_bench -- [MESSAGES] --window
//! ```
//!
//! `--window` opens a real window (eframe, glow) and scrolls it for 600 frames with
//! vsync off, timing whole frames: UI, tessellation, and the GL driver rasterising and
//! presenting them (llvmpipe under Xvfb or without a GPU). It prints the wall time between
//! consecutive frames, which is the frame time a person sees.

use std::time::{Duration, Instant};

use classchat::model::{Model, Source};
use classchat::ui::chat_view::{self, ChatViewState};
use classchat_wire::{Body, ChatMessage, Conv, Limits, RoomInfo, Welcome};
use egui_kittest::Harness;

struct State {
    model: Model,
    view: ChatViewState,
}

/// Resident memory of this process, in MiB (Linux).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() -> eframe::Result {
    let window = std::env::args().any(|a| a == "--window");
    let count: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let before = rss_mib();
    let mut model = Model::new();
    model.on_welcome(&Welcome {
        user: "ada".into(),
        server_name: "bench".into(),
        resume_token: vec![0; 32],
        server_admin: false,
        can_broadcast: false,
        dm_peers: Vec::new(),
        rooms: vec![RoomInfo {
            name: "big".into(),
            topic: String::new(),
            members: 5,
            locked: false,
            admin: "ada".into(),
            joined: true,
            settings: Default::default(),
        }],
        limits: Limits {
            max_message_len: 16384,
            max_frame_len: 1 << 20,
            messages_per_second: 20,
            heartbeat_timeout_ms: 30_000,
            max_file_size: 0,
        },
        class: Default::default(),
        room_records: false,
    });
    let conv = Conv::room("big");
    let senders = ["ada", "bob", "carol", "dave", "erin"];
    let start_ts = 1_700_000_000_000u64;
    let t = Instant::now();
    for i in 0..count {
        let text = match i % 7 {
            0 => format!(
                "message {i}: a longer line of text that will wrap on a narrow window, as chat often does when people explain things"
            ),
            3 => format!("message {i}\nwith a second line"),
            _ => format!("message {i}"),
        };
        let msg = ChatMessage {
            id: i + 1,
            conv: conv.clone(),
            from: senders[(i % 5) as usize].into(),
            ts: start_ts + i * 20_000,
            body: Body::Text { text },
            reply_to: None,
            edited: None,
            reactions: Vec::new(),
        };
        model.on_message(msg, Source::History);
    }
    model.select(conv.clone());
    let insert = t.elapsed();
    let after_model = rss_mib();
    if window {
        return run_window(model, count);
    }

    let t = Instant::now();
    let mut h = Harness::builder().with_size([1100.0, 720.0]).build_ui_state(
        |ui, s: &mut State| {
            let _ =
                chat_view::show(ui, &s.model, &Default::default(), &mut s.view, &Default::default(), false);
        },
        State { model, view: ChatViewState::default() },
    );
    let first = t.elapsed();
    let rows = h.state().view.layout(&conv).map(|l| l.row_count()).unwrap_or(0);
    let after_layout = rss_mib();

    // Scroll up three lines per frame, then jump around with big wheel steps.
    let mut times = Vec::new();
    h.hover_at(egui::pos2(550.0, 360.0));
    for frame in 0..600 {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, wheel_delta(frame)),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
        let t = Instant::now();
        h.step();
        let shapes = h.output().shapes.clone();
        let _mesh = h.ctx.tessellate(shapes, 1.0);
        let took = t.elapsed();
        if took > Duration::from_millis(50) {
            println!("slow frame {frame}: {took:.2?}");
        }
        times.push(took);
    }
    println!("messages: {count}, display rows: {rows}");
    println!("insert into model: {insert:.2?}");
    println!("first frame (lays out every row): {first:.2?}");
    print_stats("scrolling, per frame (UI + tessellation)", times);
    println!(
        "memory: {before:.0} MiB before, {after_model:.0} MiB with the messages, {after_layout:.0} MiB with their layout"
    );
    Ok(())
}

/// The wheel step of frame `frame`: three lines up, and now and then a big jump.
fn wheel_delta(frame: usize) -> f32 {
    if frame % 100 == 99 { 250_000.0 } else { 60.0 }
}

fn print_stats(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let Some(&max) = times.last() else { return };
    let median = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    println!("{what}: median {median:.2?}, p95 {p95:.2?}, max {max:.2?} ({} frames)", times.len());
}

/// Frames measured in the window, after the warm-up ones.
const WINDOW_FRAMES: usize = 600;
const WARM_UP_FRAMES: usize = 30;

struct WindowBench {
    state: State,
    frame: usize,
    last: Option<Instant>,
    intervals: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl eframe::App for WindowBench {
    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw_input: &mut egui::RawInput) {
        raw_input.events.push(egui::Event::PointerMoved(egui::pos2(550.0, 360.0)));
        raw_input.events.push(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, wheel_delta(self.frame)),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let now = Instant::now();
        if self.frame > WARM_UP_FRAMES {
            if let Some(last) = self.last {
                self.intervals.push(now - last);
            }
            if let Some(cpu) = frame.info().cpu_usage {
                self.cpu.push(Duration::from_secs_f32(cpu));
            }
        }
        self.last = Some(now);
        self.frame += 1;
        egui::CentralPanel::default().show(ui, |ui| {
            let _ = chat_view::show(
                ui,
                &self.state.model,
                &Default::default(),
                &mut self.state.view,
                &Default::default(),
                false,
            );
        });
        if self.intervals.len() >= WINDOW_FRAMES {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        } else {
            ui.ctx().request_repaint();
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        print_stats("whole frame, wall time between frames", std::mem::take(&mut self.intervals));
        print_stats("eframe cpu_usage (UI + paint calls)", std::mem::take(&mut self.cpu));
        println!("memory at the end: {:.0} MiB", rss_mib());
    }
}

fn run_window(model: Model, count: u64) -> eframe::Result {
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1100.0, 720.0]),
        ..Default::default()
    };
    options.glow_options.vsync = false;
    println!("messages: {count}; renderer: glow (set LIBGL_ALWAYS_SOFTWARE=1 for llvmpipe)");
    let bench = WindowBench {
        state: State { model, view: ChatViewState::default() },
        frame: 0,
        last: None,
        intervals: Vec::with_capacity(WINDOW_FRAMES),
        cpu: Vec::with_capacity(WINDOW_FRAMES),
    };
    eframe::run_native("scroll bench", options, Box::new(|_| Ok(Box::new(bench))))
}
