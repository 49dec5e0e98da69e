//! The transfers panel: every upload and download with a progress bar, speed, time left,
//! and Cancel, Retry, Open and Show in folder.

use egui::{RichText, Ui};

use crate::action::Action;
use crate::files::{Direction, Files, TransferState, human_duration, human_size};
use crate::ui::{a11y_label, conv_title};

pub fn show(ui: &mut Ui, files: &Files) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.horizontal(|ui| {
        ui.heading("Transfers");
        if ui.small_button("✖").on_hover_text("Hide the transfers").clicked() {
            actions.push(Action::ToggleTransfers);
        }
    });
    ui.separator();
    if files.transfers().next().is_none() {
        ui.label(RichText::new("No uploads or downloads yet. Drop files on the window to send them.").weak());
        return actions;
    }
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        for t in files.transfers().rev() {
            let arrow = match t.dir {
                Direction::Up => "⬆",
                Direction::Down => "⬇",
            };
            let r = ui.label(RichText::new(format!("{arrow} {}", t.name)).strong());
            if let Some(p) = t.peer.as_ref().filter(|p| p.relayed) {
                ui.label(RichText::new("relayed").small().color(ui.visuals().warn_fg_color)).on_hover_text(
                    format!("The two computers could not reach each other: the server passes the bytes on, still encrypted between you and {}", p.peer),
                );
            }
            let whither = match (&t.peer, t.dir) {
                (Some(p), Direction::Up) => format!("{} is fetching {} from you", p.peer, t.name),
                (Some(p), Direction::Down) if p.relayed => format!("from {} · relayed by the server", p.peer),
                (Some(p), Direction::Down) => format!("from {}, directly", p.peer),
                (None, Direction::Up) => format!("to {}", conv_title(&t.conv)),
                (None, Direction::Down) => format!("from {}", conv_title(&t.conv)),
            };
            ui.label(RichText::new(&whither).small().weak());
            let bar = egui::ProgressBar::new(t.fraction()).show_percentage();
            let bar = ui.add(bar);
            let status = match &t.state {
                TransferState::Running => {
                    let mut s = format!("{} of {}", human_size(t.done), human_size(t.total));
                    if t.speed >= 1.0 {
                        s.push_str(&format!(" · {}/s", human_size(t.speed as u64)));
                    }
                    if let Some(eta) = t.eta() {
                        s.push_str(&format!(" · {} left", human_duration(eta)));
                    }
                    s
                }
                TransferState::Done => format!("Done · {}", human_size(t.total)),
                TransferState::Failed(why) if t.resume_on_reconnect => {
                    format!("Paused ({why}); goes on after the reconnect")
                }
                TransferState::Failed(why) => format!("Failed: {why}"),
                TransferState::Cancelled => "Cancelled".into(),
                TransferState::Exists => format!("{} already exists.", t.path.display()),
            };
            let color = match t.state {
                TransferState::Failed(_) if t.resume_on_reconnect => ui.visuals().warn_fg_color,
                TransferState::Failed(_) => ui.visuals().error_fg_color,
                TransferState::Exists => ui.visuals().warn_fg_color,
                _ => ui.visuals().weak_text_color(),
            };
            let s = ui.label(RichText::new(&status).small().color(color));
            a11y_label(&s, format!("{}: {status}", t.name));
            a11y_label(
                &r,
                format!(
                    "{} {} {whither}",
                    if t.dir == Direction::Up { "Upload" } else { "Download" },
                    t.name
                ),
            );
            a11y_label(&bar, format!("{} progress {:.0}%", t.name, t.fraction() * 100.0));
            ui.horizontal_wrapped(|ui| match &t.state {
                TransferState::Running => {
                    let b = ui.small_button(if t.peer.is_some() && t.dir == Direction::Up { "Stop" } else { "Cancel" });
                    a11y_label(&b, format!("Cancel {}", t.name));
                    if b.clicked() {
                        actions.push(Action::CancelTransfer(t.id));
                    }
                }
                TransferState::Failed(_) | TransferState::Cancelled if t.peer.as_ref().is_some_and(|p| p.upload.is_some()) => {
                    if ui.small_button("Remove").clicked() {
                        actions.push(Action::ForgetTransfer(t.id));
                    }
                }
                TransferState::Failed(_) | TransferState::Cancelled => {
                    let b = ui.small_button("Retry").on_hover_text("Continues where it stopped");
                    a11y_label(&b, format!("Retry {}", t.name));
                    if b.clicked() {
                        actions.push(Action::RetryTransfer(t.id));
                    }
                    if ui.small_button("Remove").clicked() {
                        actions.push(Action::ForgetTransfer(t.id));
                    }
                }
                TransferState::Exists => {
                    let b = ui.small_button("Replace it");
                    a11y_label(&b, format!("Replace {}", t.path.display()));
                    if b.clicked() {
                        actions.push(Action::ReplaceDownload(t.id));
                    }
                    if t.peer.is_none() && ui.small_button("Save elsewhere…").clicked() {
                        actions.push(Action::SaveElsewhere(t.id));
                    }
                    if ui.small_button("Skip").clicked() {
                        actions.push(Action::ForgetTransfer(t.id));
                    }
                }
                TransferState::Done if t.dir == Direction::Up && t.peer.is_some() => {}
                TransferState::Done => {
                    if t.dir == Direction::Down && ui.small_button("Open").clicked() {
                        actions.push(Action::OpenPath(t.path.clone()));
                    }
                    let b = ui.small_button("Show in folder");
                    a11y_label(&b, format!("Show {} in its folder", t.name));
                    if b.clicked() {
                        actions.push(Action::ShowInFolder(t.path.clone()));
                    }
                }
            });
            ui.separator();
        }
    });
    actions
}
