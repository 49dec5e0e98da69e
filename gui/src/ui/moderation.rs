//! Moderation views: the class banners (exam mode, office-hours places, "ready for you"),
//! the room modes in the room settings dialog, mute controls and markers, the instructor
//! menu, and the exam-mode and audit-log dialogs.

use classchat_wire::{AuditEntry, Conv, MuteScope, Request, RoomSettings, Timestamp};
use egui::{Color32, RichText, Ui};

use crate::action::Action;
use crate::class::{ClassAction, ClassState, MUTE_CHOICES, SLOW_MODE_CHOICES, interval_words, now_ms};
use crate::model::Model;
use crate::ui::{a11y_label, field_error};

/// The exam-mode dialog.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExamForm {
    /// The one room students may still post in.
    pub questions_room: Option<String>,
    pub error: Option<String>,
    pub busy: bool,
}

/// The audit-log dialog: the pages loaded so far, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditView {
    pub entries: Vec<AuditEntry>,
    pub more: bool,
    pub loading: bool,
    pub error: Option<String>,
}

impl AuditView {
    pub fn loading() -> Self {
        Self { loading: true, ..Self::default() }
    }

    /// A page arrived. Entries already listed (a page asked for twice) are not repeated.
    pub fn add_page(&mut self, entries: Vec<AuditEntry>, more: bool) {
        let oldest = self.entries.last().map(|e| e.id);
        self.entries.extend(entries.into_iter().filter(|e| oldest.is_none_or(|o| e.id < o)));
        self.more = more;
        self.loading = false;
        self.error = None;
    }
}

fn exam_color(ui: &Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(0xf0, 0x9a, 0x3e)
    } else {
        Color32::from_rgb(0xa8, 0x4b, 0x00)
    }
}

/// Whether [`banners`] has anything to show (the app gives it a panel only then).
pub fn has_banners(class: &ClassState) -> bool {
    class.exam.is_some() || class.queues().next().is_some() || class.called().next().is_some()
}

/// The strip across the top of the window: exam mode, the user's places in office-hours
/// queues, and instructors who are ready for the user.
pub fn banners(ui: &mut Ui, model: &Model, class: &ClassState) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.add_space(4.0);
    if let Some(exam) = &class.exam {
        let color = exam_color(ui);
        egui::Frame::new().fill(color.gamma_multiply(0.18)).inner_margin(8.0).corner_radius(4.0).show(
            ui,
            |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    let text = match &exam.questions_room {
                        Some(room) => format!("📝 Exam mode is on — only #{room} is open for questions"),
                        None => "📝 Exam mode is on — posting is closed".to_owned(),
                    };
                    let r = ui.label(RichText::new(&text).color(color).strong().size(16.0));
                    a11y_label(&r, text.trim_start_matches("📝 "));
                    let since = class.when(exam.since, now_ms());
                    ui.label(RichText::new(format!("since {since}, by {}", exam.by)).weak());
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ClassState::is_instructor(model) {
                            let b = ui.button("End exam mode");
                            a11y_label(&b, "End exam mode");
                            if b.clicked() {
                                actions.push(Action::Class(ClassAction::Request(Request::SetExamMode {
                                    on: false,
                                    questions_room: None,
                                })));
                            }
                        } else if let Some(room) = &exam.questions_room
                            && model.rooms.contains_key(room)
                            && model.current != Some(Conv::room(room.as_str()))
                            && ui.button(format!("Open #{room}")).clicked()
                        {
                            actions.push(Action::Select(Conv::room(room.as_str())));
                        }
                    });
                });
            },
        );
    }
    for instructor in class.called() {
        let color = Color32::from_rgb(0x2e, 0xb8, 0x5c);
        egui::Frame::new().fill(color.gamma_multiply(0.18)).inner_margin(8.0).corner_radius(4.0).show(
            ui,
            |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    let text = format!("🔔 {instructor} is ready for you");
                    let r = ui.label(RichText::new(&text).strong().size(16.0));
                    a11y_label(&r, format!("{instructor} is ready for you"));
                    ui.label(
                        RichText::new("Your office-hours turn: write to them in your direct messages.")
                            .weak(),
                    );
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        let dismiss = ui.small_button("Dismiss");
                        a11y_label(&dismiss, format!("Dismiss {instructor} is ready"));
                        if dismiss.clicked() {
                            actions.push(Action::Class(ClassAction::DismissCalled(instructor.to_owned())));
                        }
                        let conv = Conv::direct(instructor);
                        if model.current.as_ref() != Some(&conv)
                            && ui.button(format!("Open chat with {instructor}")).clicked()
                        {
                            actions.push(Action::Select(conv));
                        }
                    });
                });
            },
        );
    }
    for q in class.queues() {
        ui.horizontal(|ui| {
            let text = format!("🕑 You are #{} in {}'s queue", q.position, q.instructor);
            let r = ui.label(RichText::new(&text).strong());
            a11y_label(&r, format!("You are #{} in {}'s queue", q.position, q.instructor));
            if q.position == 1 {
                ui.label(RichText::new("(you are next)").weak());
            }
            let leave = ui.small_button("Leave queue");
            a11y_label(&leave, format!("Leave {}'s queue", q.instructor));
            if leave.clicked() {
                actions.push(Action::Class(ClassAction::Request(Request::LeaveQueue {
                    instructor: q.instructor.clone(),
                })));
            }
        });
    }
    ui.add_space(2.0);
    actions
}

/// The instructor menu in the status bar: office hours, exam mode, the audit log.
pub fn instructor_menu(ui: &mut Ui, model: &Model, class: &ClassState, actions: &mut Vec<Action>) {
    if !ClassState::is_instructor(model) {
        return;
    }
    let waiting = class.my_queue.as_ref().map_or(0, Vec::len);
    let office =
        if waiting > 0 { format!("🕑 Office hours ({waiting})") } else { "🕑 Office hours".into() };
    let r =
        ui.selectable_label(class.office_open, office).on_hover_text("Show or hide your office-hours queue");
    a11y_label(&r, "Office hours");
    if r.clicked() {
        actions.push(Action::Class(ClassAction::ToggleOfficeHours));
    }
    let exam = if class.exam.is_some() { "📝 Exam mode: on" } else { "📝 Exam mode…" };
    let r = ui.button(exam).on_hover_text("Turn exam mode on or off for the whole server");
    a11y_label(&r, "Exam mode…");
    if r.clicked() {
        actions.push(Action::Class(ClassAction::OpenExamDialog));
    }
    let r = ui.button("📜 Audit log").on_hover_text("Who muted, kicked or banned whom, and when");
    a11y_label(&r, "Audit log");
    if r.clicked() {
        actions.push(Action::Class(ClassAction::OpenAudit));
    }
}

/// The room modes in the room settings dialog (room staff). Each change is sent at once.
pub fn room_modes(ui: &mut Ui, room: &str, model: &Model, actions: &mut Vec<Action>) {
    let current = model.rooms.get(room).map(|r| r.settings.clone()).unwrap_or_default();
    let mut next = current.clone();
    ui.label(RichText::new("Class modes").strong());
    let r = ui
        .checkbox(&mut next.announce_only, "Announcement room (only admins post)")
        .on_hover_text("Students read; the room's admin and instructors post");
    a11y_label(&r, "Announcement room (only admins post)");
    ui.horizontal(|ui| {
        let label = ui.label("Slow mode");
        let selected = SLOW_MODE_CHOICES
            .iter()
            .find(|(_, s)| *s == next.slow_mode_secs)
            .map(|(l, _)| (*l).to_owned())
            .unwrap_or_else(|| interval_words(next.slow_mode_secs));
        let combo =
            egui::ComboBox::from_id_salt(("slow-mode", room)).selected_text(selected).show_ui(ui, |ui| {
                for (label, secs) in SLOW_MODE_CHOICES {
                    let r = ui.selectable_value(&mut next.slow_mode_secs, secs, label);
                    a11y_label(&r, format!("Slow mode {label}"));
                }
            });
        combo.response.labelled_by(label.id);
        ui.label(RichText::new("between a student's messages").weak().small());
    });
    let r = ui
        .checkbox(&mut next.qa, "Q&A room")
        .on_hover_text("The room gets a questions list students can upvote");
    a11y_label(&r, "Q&A room");
    if next != current {
        actions.push(Action::Class(ClassAction::Request(Request::SetRoomSettings {
            room: room.to_owned(),
            settings: next,
        })));
    }
}

/// A short line of the room's modes for the header of the room tools ("Slow mode 30 s").
pub fn modes_summary(settings: &RoomSettings) -> Option<String> {
    let mut parts = Vec::new();
    if settings.announce_only {
        parts.push("📢 Announcement room".to_owned());
    }
    if settings.slow_mode_secs > 0 {
        parts.push(format!("🐢 Slow mode {}", interval_words(settings.slow_mode_secs)));
    }
    if settings.qa {
        parts.push("❓ Q&A".to_owned());
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// "🔇 until 10:42": who is muted, for staff.
pub fn muted_marker(ui: &mut Ui, class: &ClassState, user: &str, until: Option<Timestamp>) {
    let now = now_ms();
    if until.is_some_and(|u| u <= now) {
        return;
    }
    let words = class.until_words(until, now);
    let r = ui
        .label(RichText::new("🔇").color(ui.visuals().error_fg_color))
        .on_hover_text(format!("Muted {words}"));
    a11y_label(&r, format!("{user} is muted {words}"));
}

/// "Mute 5 min / 1 h / 1 day / until lifted" and "Unmute" for `user` in `scope`.
pub fn mute_buttons(ui: &mut Ui, scope: &MuteScope, user: &str, muted: bool, actions: &mut Vec<Action>) {
    let (where_, prefix) = match scope {
        MuteScope::Room { .. } => ("", "Mute"),
        MuteScope::Server => (" on the server", "Mute on server"),
    };
    ui.label(RichText::new(format!("{prefix}:")).small());
    for (label, secs) in MUTE_CHOICES {
        let b =
            ui.small_button(label).on_hover_text(format!("{user} may not post{where_} {}", mute_words(secs)));
        a11y_label(&b, format!("{prefix} {user} {label}"));
        if b.clicked() {
            actions.push(Action::Class(ClassAction::Request(Request::Mute {
                scope: scope.clone(),
                user: user.to_owned(),
                secs,
            })));
        }
    }
    if muted {
        let b = ui.small_button("Unmute");
        let label = match scope {
            MuteScope::Room { .. } => format!("Unmute {user}"),
            MuteScope::Server => format!("Unmute {user} on server"),
        };
        a11y_label(&b, label);
        if b.clicked() {
            actions.push(Action::Class(ClassAction::Request(Request::Unmute {
                scope: scope.clone(),
                user: user.to_owned(),
            })));
        }
    }
}

fn mute_words(secs: Option<u64>) -> String {
    match secs {
        None => "until someone lifts the mute".into(),
        s => format!("for {}", crate::class::duration_words(s)),
    }
}

/// The exam-mode dialog (instructors).
pub fn exam_dialog(
    ui: &mut Ui,
    form: &mut ExamForm,
    model: &Model,
    class: &ClassState,
    actions: &mut Vec<Action>,
) {
    ui.heading("Exam mode");
    ui.label(
        "While exam mode is on, students cannot post in any room except the questions room, cannot \
         send direct messages except to instructors, and cannot send files.",
    );
    ui.add_space(6.0);
    // Every room on the server when listed, else the rooms the instructor is in.
    let mut rooms: Vec<String> = model.directory.iter().map(|r| r.name.clone()).collect();
    if rooms.is_empty() {
        rooms = model.rooms.keys().cloned().collect();
    }
    let on = class.exam.is_some();
    ui.add_enabled_ui(!on, |ui| {
        ui.horizontal(|ui| {
            let label = ui.label("Questions room");
            let selected =
                form.questions_room.as_ref().map_or("None: nobody posts".to_owned(), |r| format!("#{r}"));
            let combo = egui::ComboBox::from_id_salt("exam-room")
                .selected_text(selected)
                .width(200.0)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut form.questions_room, None, "None: nobody posts");
                    for room in &rooms {
                        let r = ui.selectable_value(
                            &mut form.questions_room,
                            Some(room.clone()),
                            format!("#{room}"),
                        );
                        a11y_label(&r, format!("Questions room #{room}"));
                    }
                });
            combo.response.labelled_by(label.id);
        });
    });
    field_error(ui, form.error.as_deref());
    ui.add_space(8.0);
    ui.horizontal(|ui| {
        let (text, request) = if on {
            ("End exam mode", Request::SetExamMode { on: false, questions_room: None })
        } else {
            (
                "Turn on exam mode",
                Request::SetExamMode { on: true, questions_room: form.questions_room.clone() },
            )
        };
        let b = ui.add_enabled(!form.busy, egui::Button::new(RichText::new(text).strong()));
        a11y_label(&b, text);
        if b.clicked() {
            form.busy = true;
            form.error = None;
            actions.push(Action::Class(ClassAction::Request(request)));
        }
        if ui.button("Cancel").clicked() {
            actions.push(Action::CloseDialog);
        }
    });
}

/// The audit-log dialog (instructors): newest first, "Load older" pages back.
pub fn audit_dialog(ui: &mut Ui, view: &AuditView, class: &ClassState, actions: &mut Vec<Action>) {
    ui.set_width(680.0);
    ui.heading("Audit log");
    ui.label(RichText::new("Moderation actions on this server, newest first.").weak());
    ui.add_space(4.0);
    let now = now_ms();
    egui::ScrollArea::vertical().max_height(420.0).auto_shrink([false, true]).show(ui, |ui| {
        egui::Grid::new("audit").num_columns(5).striped(true).spacing([12.0, 4.0]).show(ui, |ui| {
            for h in ["Time", "Who", "Action", "Target", "Detail"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for e in &view.entries {
                ui.label(class.when(e.ts, now));
                ui.label(&e.actor);
                ui.label(RichText::new(e.action.as_str().replace('_', " ")).monospace());
                ui.label(if e.target.is_empty() { "—" } else { &e.target });
                let r = ui.label(&e.detail);
                a11y_label(
                    &r,
                    format!("{} {} {} {}", e.actor, e.action.as_str(), e.target, e.detail)
                        .trim_end()
                        .to_owned(),
                );
                ui.end_row();
            }
        });
        if view.entries.is_empty() && !view.loading {
            ui.label(RichText::new("Nothing has happened yet.").weak());
        }
    });
    field_error(ui, view.error.as_deref());
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        if view.loading {
            ui.spinner();
        } else if view.more {
            let b = ui.button("Load older");
            a11y_label(&b, "Load older");
            if b.clicked() {
                actions.push(Action::Class(ClassAction::LoadOlderAudit));
            }
        }
        if ui.button("Close").clicked() {
            actions.push(Action::CloseDialog);
        }
    });
}

/// The class banners as a strip across the top of the window, when there is one.
pub fn top_panel(ui: &mut Ui, model: &Model, class: &ClassState) -> Vec<Action> {
    if !has_banners(class) {
        return Vec::new();
    }
    egui::Panel::top("class-banners").show(ui, |ui| banners(ui, model, class)).inner
}
