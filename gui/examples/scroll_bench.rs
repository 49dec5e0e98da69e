//! Measures the chat view with a long conversation: the memory 100,000 messages take,
//! the first layout, and the time per frame while scrolling (UI code plus tessellation;
//! the GPU or llvmpipe rasterising the triangles comes on top).
//!
//! ```text
//! cargo run --release -p classchat --example scroll_bench -- [MESSAGES]
//! ```

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

fn main() {
    let count: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
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
        }],
        limits: Limits {
            max_message_len: 16384,
            max_frame_len: 1 << 20,
            messages_per_second: 20,
            heartbeat_timeout_ms: 30_000,
            max_file_size: 0,
        },
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
        };
        model.on_message(msg, Source::History);
    }
    model.select(conv.clone());
    let insert = t.elapsed();
    let after_model = rss_mib();

    let t = Instant::now();
    let mut h = Harness::builder().with_size([1100.0, 720.0]).build_ui_state(
        |ui, s: &mut State| {
            let _ = chat_view::show(ui, &s.model, &mut s.view, false);
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
        let delta = if frame % 100 == 99 { 250_000.0 } else { 60.0 };
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, delta),
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
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let p95 = times[times.len() * 95 / 100];
    let max = times[times.len() - 1];
    println!("messages: {count}, display rows: {rows}");
    println!("insert into model: {insert:.2?}");
    println!("first frame (lays out every row): {first:.2?}");
    println!("scrolling, per frame (UI + tessellation): mean {mean:.2?}, p95 {p95:.2?}, max {max:.2?}");
    println!(
        "memory: {before:.0} MiB before, {after_model:.0} MiB with the messages, {after_layout:.0} MiB with their layout"
    );
}
