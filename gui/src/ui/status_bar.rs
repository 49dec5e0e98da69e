//! The status bar: connection state, server, who you are, and quick switches.

use egui::{Align, Layout, RichText, Ui};

use crate::action::Action;
use crate::app::ThemeChoice;
use crate::class::ClassState;
use crate::model::Model;
use crate::net::ConnState;
use crate::ui::dialogs::Dialog;
use crate::ui::{a11y_label, presence_dot};

/// The connection state in words.
pub fn conn_text(conn: &ConnState) -> String {
    match conn {
        ConnState::Offline => "Offline".into(),
        ConnState::Connecting { addr } => format!("Connecting to {addr}…"),
        ConnState::Online { addr, .. } => format!("Connected to {addr}"),
        // `addr` is the node tried first: after a drop, another node of the server if it
        // has several.
        ConnState::Reconnecting { addr, attempt, retry_at, reason } => {
            let secs = retry_at.saturating_duration_since(std::time::Instant::now()).as_secs();
            if secs > 0 {
                format!("Connection lost ({reason}). Reconnecting to {addr} in {secs} s (attempt {attempt})")
            } else {
                format!("Connection lost ({reason}). Reconnecting to {addr}… (attempt {attempt})")
            }
        }
    }
}

/// `transfers`: how many transfers run (for the Transfers button); `sharing`: for the
/// Shared files button. Instructors get their tools (office hours, exam mode, audit log)
/// here too.
pub fn show(
    ui: &mut Ui,
    model: &Model,
    conn: &ConnState,
    theme: ThemeChoice,
    transfers: usize,
    class: &ClassState,
    sharing: &crate::sharing::SharingSettings,
) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.horizontal(|ui| {
        presence_dot(ui, conn.is_online());
        let text = conn_text(conn);
        let color = match conn {
            ConnState::Online { .. } => ui.visuals().text_color(),
            ConnState::Offline => ui.visuals().error_fg_color,
            _ => ui.visuals().warn_fg_color,
        };
        let r = ui.label(RichText::new(&text).color(color));
        a11y_label(&r, format!("Status: {text}"));
        if let Some(me) = &model.me {
            ui.separator();
            ui.label(RichText::new(&me.server_name).strong());
            ui.separator();
            let role = if me.server_admin { " (instructor)" } else { "" };
            ui.label(format!("Signed in as {}{role}", me.name));
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if ui.button("⚙").on_hover_text("Settings").clicked() {
                actions.push(Action::OpenDialog(Dialog::Settings));
            }
            let (icon, next, tip) = match theme {
                ThemeChoice::System => ("🖥", ThemeChoice::Dark, "Theme: follows the system (click for dark)"),
                ThemeChoice::Dark => ("🌙", ThemeChoice::Light, "Theme: dark (click for light)"),
                ThemeChoice::Light => ("☀", ThemeChoice::System, "Theme: light (click to follow the system)"),
            };
            let r = ui.button(icon).on_hover_text(tip);
            a11y_label(&r, "Switch theme");
            if r.clicked() {
                actions.push(Action::SetTheme(next));
            }
            let text = if transfers > 0 {
                format!("⬆⬇ Transfers ({transfers})")
            } else {
                "⬆⬇ Transfers".into()
            };
            let r = ui.button(text).on_hover_text("Show or hide the uploads and downloads");
            a11y_label(&r, "Transfers");
            if r.clicked() {
                actions.push(Action::ToggleTransfers);
            }
            crate::ui::shared_files::status_button(ui, sharing, &mut actions);
            crate::ui::moderation::instructor_menu(ui, model, class, &mut actions);
        });
    });
    actions
}
