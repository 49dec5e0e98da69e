//! Office hours: the instructor's queue panel ("Next" opens the DM with the first student)
//! and the students' "Join office hours" / "Leave queue" buttons beside an instructor.

use classchat_wire::{Conv, Request};
use egui::{RichText, Ui};

use crate::action::Action;
use crate::class::{ClassAction, ClassState, now_ms};
use crate::model::Model;
use crate::ui::{a11y_label, name_color, presence_dot};

/// The instructor's panel: who waits, in order, and "Next".
pub fn panel(ui: &mut Ui, model: &Model, class: &ClassState) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.heading("Office hours");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let close = ui.small_button("❌").on_hover_text("Hide the office-hours panel");
            a11y_label(&close, "Hide office hours");
            if close.clicked() {
                actions.push(Action::Class(ClassAction::ToggleOfficeHours));
            }
        });
    });
    ui.label(
        RichText::new("Students join your queue from the people list; take them one at a time.")
            .weak()
            .small(),
    );
    ui.add_space(4.0);
    let queue = class.my_queue.as_deref();
    let waiting = queue.map_or(0, <[_]>::len);
    let next = ui.add_enabled(waiting > 0, egui::Button::new(RichText::new("▶ Next").strong()));
    a11y_label(&next, "Next student");
    let next =
        next.on_hover_text("Take the first student off the queue and open your conversation with them");
    if next.clicked() {
        actions.push(Action::Class(ClassAction::Request(Request::NextInQueue)));
    }
    ui.add_space(6.0);
    match queue {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Loading…");
            });
        }
        Some([]) => {
            ui.label(RichText::new("Nobody is waiting.").weak());
        }
        Some(entries) => {
            ui.label(RichText::new(format!("{waiting} waiting")).strong());
            let now = now_ms();
            egui::ScrollArea::vertical().auto_shrink([false, true]).show(ui, |ui| {
                for (i, e) in entries.iter().enumerate() {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(format!("{}.", i + 1)).monospace());
                        let online =
                            model.users.get(&e.student.to_ascii_lowercase()).is_some_and(|u| u.online);
                        presence_dot(ui, online);
                        let r = ui.add(
                            egui::Button::new(RichText::new(&e.student).color(name_color(ui, &e.student)))
                                .frame(false),
                        );
                        a11y_label(&r, format!("Queue {}: {}", i + 1, e.student));
                        if r.on_hover_text(format!("Message {}", e.student)).clicked() {
                            actions.push(Action::Select(Conv::direct(e.student.as_str())));
                        }
                        let waited = now.saturating_sub(e.since) / 60_000;
                        let text = if waited == 0 { "just now".to_owned() } else { format!("{waited} min") };
                        ui.label(RichText::new(text).small().weak());
                    });
                }
            });
        }
    }
    actions
}

/// "Join office hours" (or the place and "Leave queue") beside an instructor, for students.
pub fn queue_button(
    ui: &mut Ui,
    model: &Model,
    class: &ClassState,
    instructor: &str,
    actions: &mut Vec<Action>,
) {
    if model.is_me(instructor) || ClassState::is_instructor(model) {
        return;
    }
    match class.queue_position(instructor) {
        Some(position) => {
            let b = ui.small_button(format!("#{position} · Leave queue"));
            a11y_label(&b, format!("Leave {instructor}'s queue"));
            if b.on_hover_text(format!("You are #{position} in {instructor}'s queue")).clicked() {
                actions.push(Action::Class(ClassAction::Request(Request::LeaveQueue {
                    instructor: instructor.to_owned(),
                })));
            }
        }
        None => {
            let b = ui.small_button("Join office hours");
            a11y_label(&b, format!("Join {instructor}'s office hours"));
            if b.on_hover_text(format!("Wait in {instructor}'s queue; you are told when it is your turn"))
                .clicked()
            {
                actions.push(Action::Class(ClassAction::Request(Request::JoinQueue {
                    instructor: instructor.to_owned(),
                })));
            }
        }
    }
}

/// The office-hours panel at the window's right edge while an instructor has it open.
pub fn side_panel(ui: &mut Ui, model: &Model, class: &ClassState) -> Vec<Action> {
    if !class.office_open || !ClassState::is_instructor(model) {
        return Vec::new();
    }
    egui::Panel::right("office-hours")
        .resizable(true)
        .default_size(230.0)
        .min_size(180.0)
        .show(ui, |ui| panel(ui, model, class))
        .inner
}
