//! The "Shared files" panel: the shared folder, the "Share my files" switch, "at most N
//! uploads at once", and every file of the folder with its own switch. Also the status
//! bar's button that opens it, and the settings dialog's "Shared folder" row.

use egui::{RichText, Ui};

use crate::action::Action;
use crate::files::human_size;
use crate::sharing::{MAX_UPLOADS_LIMIT, Sharing, SharingAction, SharingSettings};
use crate::ui::a11y_label;

/// The accessible names the tests (and screen readers) find the controls by.
pub const SHARE_SWITCH: &str = "Share my files";
pub const MAX_UPLOADS: &str = "At most this many uploads at once";
pub const CHOOSE_FOLDER: &str = "Choose the shared folder";
pub const PORT: &str = "Port for classmates' fetches";

fn act(a: SharingAction) -> Action {
    Action::Sharing(a)
}

/// The panel beside the chat, when open.
pub fn side_panel(ui: &mut Ui, sharing: &Sharing, settings: &SharingSettings) -> Vec<Action> {
    if !sharing.panel_open {
        return Vec::new();
    }
    egui::Panel::right("shared-files")
        .resizable(true)
        .default_size(320.0)
        .min_size(240.0)
        .show(ui, |ui| show(ui, sharing, settings))
        .inner
}

pub fn show(ui: &mut Ui, sharing: &Sharing, settings: &SharingSettings) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.horizontal(|ui| {
        ui.heading("Shared files");
        let close = ui.small_button("✖").on_hover_text("Hide the shared files");
        a11y_label(&close, "Hide shared files");
        if close.clicked() {
            actions.push(act(SharingAction::TogglePanel));
        }
    });
    ui.separator();
    folder_row(ui, settings, &mut actions);
    ui.add_space(4.0);

    let mut on = settings.enabled;
    let switch = ui.add_enabled(settings.folder.is_some(), egui::Checkbox::new(&mut on, SHARE_SWITCH));
    let switch = switch.on_disabled_hover_text("Choose a shared folder first");
    a11y_label(&switch, SHARE_SWITCH);
    if switch.changed() {
        actions.push(act(SharingAction::SetEnabled(on)));
    }
    ui.horizontal(|ui| {
        ui.label("At most");
        let mut n = settings.max_uploads;
        let r = ui.add(egui::DragValue::new(&mut n).range(1..=MAX_UPLOADS_LIMIT));
        a11y_label(&r, MAX_UPLOADS);
        if r.changed() {
            actions.push(act(SharingAction::SetMaxUploads(n)));
        }
        ui.label("uploads at once");
    });
    ui.horizontal(|ui| {
        ui.label("Port");
        let mut port = settings.port;
        let r = ui
            // Typed, not dragged, and taken on Enter or when the field is left: every value
            // on the way would restart the listener on another port.
            .add(egui::DragValue::new(&mut port).range(0..=u16::MAX).speed(0.0).update_while_editing(false))
            .on_hover_text("Where classmates' apps connect for a fetch. 0: any free port (the default); a fixed port is for a firewall rule.");
        a11y_label(&r, PORT);
        if r.changed() {
            actions.push(act(SharingAction::SetPort(port)));
        }
        let now = match &sharing.listening {
            Some(Ok(addrs)) if settings.enabled => match addrs.first() {
                Some(a) => format!("listening on {}", a.port()),
                None => String::new(),
            },
            _ if settings.port == 0 => "0: any free port".to_owned(),
            _ => String::new(),
        };
        let r = ui.label(RichText::new(&now).small().weak());
        a11y_label(&r, format!("Peer port: {now}"));
    });
    let state = state_line(sharing, settings);
    let r = ui.label(RichText::new(&state).small().color(if settings.enabled {
        ui.visuals().text_color()
    } else {
        ui.visuals().weak_text_color()
    }));
    a11y_label(&r, format!("Sharing state: {state}"));

    if let Some(indexing) = &sharing.indexing {
        let p = indexing.progress;
        let (fraction, text) = if p.found == 0 {
            (0.0, "Looking through the folder…".to_owned())
        } else {
            (p.hashed as f32 / p.found as f32, format!("Indexing: {} of {} files", p.hashed, p.found))
        };
        let bar = ui.add(egui::ProgressBar::new(fraction).text(text.as_str()));
        a11y_label(&bar, text);
    }
    if let Some(error) = &sharing.index_error {
        ui.label(RichText::new(error).color(ui.visuals().error_fg_color));
    }
    if sharing.truncated {
        ui.label(
            RichText::new(format!("Only the first {} files are indexed.", crate::sharing::index::MAX_FILES))
                .small()
                .color(ui.visuals().warn_fg_color),
        );
    }
    if !sharing.skipped.is_empty() {
        ui.label(RichText::new(format!("Left out: {}.", sharing.skipped.join(", "))).small().weak());
    }
    ui.separator();
    if settings.folder.is_some() && settings.index.is_empty() && sharing.indexing.is_none() {
        ui.label(RichText::new("The folder holds no files to share.").weak());
    }
    file_list(ui, settings, &mut actions);
    actions
}

/// The shared folder and the button that picks it (the panel and the settings dialog).
pub fn folder_row(ui: &mut Ui, settings: &SharingSettings, actions: &mut Vec<Action>) {
    ui.horizontal_wrapped(|ui| {
        match &settings.folder {
            Some(folder) => {
                let r = ui.label(RichText::new(format!("📂 {}", folder.display())).monospace());
                a11y_label(&r, format!("Shared folder: {}", folder.display()));
            }
            None => {
                let r = ui.label(RichText::new("No shared folder: nothing is shared.").weak());
                a11y_label(&r, "Shared folder: none");
            }
        }
        let b = ui.button(if settings.folder.is_some() { "Change…" } else { "Choose folder…" });
        a11y_label(&b, CHOOSE_FOLDER);
        if b.clicked() {
            actions.push(act(SharingAction::ChooseFolder));
        }
        if settings.folder.is_some() {
            let r = ui.small_button("⟳").on_hover_text("Look through the folder again");
            a11y_label(&r, "Index the shared folder again");
            if r.clicked() {
                actions.push(act(SharingAction::Reindex));
            }
        }
    });
}

/// One line on what classmates can see.
fn state_line(sharing: &Sharing, settings: &SharingSettings) -> String {
    if settings.folder.is_none() {
        return "Nothing is shared until you choose a folder and switch sharing on.".into();
    }
    if !settings.enabled {
        return "Sharing is off: classmates find nothing of yours.".into();
    }
    let n = settings.shared_files().count();
    let mut s = format!("Classmates can find {n} of {} files.", settings.index.len());
    if let Some(Err(why)) = &sharing.listening {
        s.push_str(&format!(" Classmates cannot fetch from you: {why}."));
    }
    s
}

fn file_list(ui: &mut Ui, settings: &SharingSettings, actions: &mut Vec<Action>) {
    let row_height = ui.spacing().interact_size.y + 2.0;
    egui::ScrollArea::vertical().id_salt("shared-files-list").auto_shrink([false, false]).show_rows(
        ui,
        row_height,
        settings.index.len(),
        |ui, range| {
            for file in &settings.index[range] {
                ui.horizontal(|ui| {
                    let mut on = !settings.off.contains(&file.rel);
                    let r = ui.add_enabled(settings.enabled, egui::Checkbox::without_text(&mut on));
                    a11y_label(&r, format!("Share {}", file.rel));
                    if r.changed() {
                        actions.push(act(SharingAction::SetFileShared { rel: file.rel.clone(), on }));
                    }
                    let text = RichText::new(&file.rel);
                    let text = if settings.is_shared(file) { text } else { text.weak() };
                    ui.label(text).on_hover_text(format!("SHA-256 {}", hex::encode(file.sha256)));
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        ui.label(RichText::new(human_size(file.size)).small().weak());
                    });
                });
            }
        },
    );
}

/// The status bar's button: opens the panel, and says whether sharing is on.
pub fn status_button(ui: &mut Ui, settings: &SharingSettings, actions: &mut Vec<Action>) {
    let on = settings.enabled && settings.folder.is_some();
    let text = if on { "📂 Sharing on" } else { "📂 Shared files" };
    let r = ui.button(text).on_hover_text("Your shared folder: what classmates can find and fetch");
    a11y_label(&r, "Shared files");
    if r.clicked() {
        actions.push(act(SharingAction::TogglePanel));
    }
}
