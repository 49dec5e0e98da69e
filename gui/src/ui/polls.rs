//! Polls: the cards in a room's tools panel (vote, live bar chart, close) and the
//! "New poll" dialog for room staff.

use classchat_wire::{
    MAX_POLL_OPTION_LEN, MAX_POLL_OPTIONS, MAX_POLL_QUESTION_LEN, MIN_POLL_OPTIONS, Poll, Request,
};
use egui::{Color32, RichText, Sense, TextEdit, Ui, vec2};

use crate::action::Action;
use crate::class::{ClassAction, ClassState, POLL_CLOSE_CHOICES, now_ms};
use crate::model::Model;
use crate::ui::{a11y_label, field_error};

/// Height of one bar of the chart.
const BAR_HEIGHT: f32 = 12.0;

/// The "New poll" dialog.
#[derive(Debug, Clone, PartialEq)]
pub struct PollForm {
    pub room: String,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    pub anonymous: bool,
    /// Minutes until it closes by itself (`None`: staff close it).
    pub closes_in: Option<u64>,
    pub error: Option<String>,
    pub busy: bool,
}

impl PollForm {
    pub fn new(room: &str) -> Self {
        Self {
            room: room.to_owned(),
            question: String::new(),
            options: vec![String::new(); MIN_POLL_OPTIONS],
            multiple: false,
            anonymous: false,
            closes_in: None,
            error: None,
            busy: false,
        }
    }

    /// The request this form makes, or what is wrong with it.
    pub fn request(&self, now: classchat_wire::Timestamp) -> Result<Request, String> {
        let question = self.question.trim();
        if question.is_empty() {
            return Err("Write the question.".into());
        }
        if question.len() > MAX_POLL_QUESTION_LEN {
            return Err(format!("The question is too long (at most {MAX_POLL_QUESTION_LEN} bytes)."));
        }
        let options: Vec<String> =
            self.options.iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect();
        if options.len() < MIN_POLL_OPTIONS {
            return Err(format!("Give at least {MIN_POLL_OPTIONS} options."));
        }
        if options.len() > MAX_POLL_OPTIONS {
            return Err(format!("At most {MAX_POLL_OPTIONS} options."));
        }
        if let Some(long) = options.iter().find(|o| o.len() > MAX_POLL_OPTION_LEN) {
            return Err(format!("\"{long}\" is too long (at most {MAX_POLL_OPTION_LEN} bytes)."));
        }
        for (i, o) in options.iter().enumerate() {
            if options[..i].iter().any(|p| p.to_lowercase() == o.to_lowercase()) {
                return Err(format!("\"{o}\" is there twice."));
            }
        }
        Ok(Request::CreatePoll {
            room: self.room.clone(),
            question: question.to_owned(),
            options,
            multiple: self.multiple,
            anonymous: self.anonymous,
            closes_at: self.closes_in.map(|m| now + m * 60_000),
        })
    }
}

/// The new-poll dialog.
pub fn new_poll_dialog(ui: &mut Ui, form: &mut PollForm, actions: &mut Vec<Action>) {
    ui.heading(format!("New poll in #{}", form.room));
    ui.add_space(4.0);
    let label = ui.label("Question");
    ui.add(TextEdit::multiline(&mut form.question).desired_rows(2).desired_width(f32::INFINITY))
        .labelled_by(label.id);
    ui.add_space(4.0);
    ui.label("Options");
    let mut remove = None;
    let count = form.options.len();
    for (i, option) in form.options.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            ui.label(format!("{}.", i + 1));
            let r = ui.add(
                TextEdit::singleline(option)
                    .hint_text(format!("Option {}", i + 1))
                    .desired_width(ui.available_width() - 36.0),
            );
            a11y_label(&r, format!("Option {}", i + 1));
            let x = ui.add_enabled(count > MIN_POLL_OPTIONS, egui::Button::new("🗑").small());
            a11y_label(&x, format!("Remove option {}", i + 1));
            if x.on_hover_text("Remove this option").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        form.options.remove(i);
    }
    let add = ui.add_enabled(form.options.len() < MAX_POLL_OPTIONS, egui::Button::new("➕ Add option"));
    a11y_label(&add, "Add option");
    if add.clicked() {
        form.options.push(String::new());
    }
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let r = ui.radio_value(&mut form.multiple, false, "One choice");
        a11y_label(&r, "One choice");
        let r = ui.radio_value(&mut form.multiple, true, "Several choices");
        a11y_label(&r, "Several choices");
    });
    let r = ui
        .checkbox(&mut form.anonymous, "Anonymous (nobody sees who chose what)")
        .on_hover_text("Not even the room's staff");
    a11y_label(&r, "Anonymous poll");
    ui.horizontal(|ui| {
        let label = ui.label("Closes");
        let selected = POLL_CLOSE_CHOICES.iter().find(|(_, m)| *m == form.closes_in).map_or("", |(l, _)| *l);
        let combo = egui::ComboBox::from_id_salt("poll-closes").selected_text(selected).show_ui(ui, |ui| {
            for (label, minutes) in POLL_CLOSE_CHOICES {
                let r = ui.selectable_value(&mut form.closes_in, minutes, label);
                a11y_label(&r, format!("Closes {label}"));
            }
        });
        combo.response.labelled_by(label.id);
    });
    field_error(ui, form.error.as_deref());
    ui.add_space(8.0);
    ui.horizontal(|ui| {
        let create = ui.add_enabled(!form.busy, egui::Button::new(RichText::new("Start the poll").strong()));
        a11y_label(&create, "Start the poll");
        if create.clicked() {
            match form.request(now_ms()) {
                Ok(request) => {
                    form.error = None;
                    form.busy = true;
                    actions.push(Action::Class(ClassAction::Request(request)));
                }
                Err(why) => form.error = Some(why),
            }
        }
        if ui.button("Cancel").clicked() {
            actions.push(Action::CloseDialog);
        }
    });
}

/// The polls of `room`: a "New poll" button for staff, then one card per poll.
pub fn show(ui: &mut Ui, model: &Model, class: &ClassState, room: &str, actions: &mut Vec<Action>) {
    let staff = model.is_room_admin(room);
    if staff {
        let b = ui.button("📊 New poll");
        a11y_label(&b, "New poll");
        if b.clicked() {
            actions.push(Action::Class(ClassAction::OpenNewPoll { room: room.to_owned() }));
        }
        ui.add_space(4.0);
    }
    let polls = class.polls(room);
    if polls.is_empty() {
        let text = if !class.polls_loaded(room) {
            "Loading polls…"
        } else if staff {
            "No polls yet. Start one to ask the whole room."
        } else {
            "No polls yet."
        };
        ui.label(RichText::new(text).weak());
        return;
    }
    let vote_block = class.vote_block(model, room);
    for poll in polls {
        card(ui, poll, staff, vote_block.as_deref(), class, actions);
        ui.add_space(6.0);
    }
}

/// The part of the voters who chose an option, 0..=1.
pub fn share(count: u32, voters: u32) -> f32 {
    if voters == 0 { 0.0 } else { (count as f32 / voters as f32).min(1.0) }
}

fn percent(count: u32, voters: u32) -> u32 {
    (share(count, voters) * 100.0).round() as u32
}

fn card(
    ui: &mut Ui,
    poll: &Poll,
    staff: bool,
    vote_block: Option<&str>,
    class: &ClassState,
    actions: &mut Vec<Action>,
) {
    let now = now_ms();
    let closed = poll.closed;
    let can_vote = !closed && vote_block.is_none();
    egui::Frame::group(ui.style()).corner_radius(6.0).inner_margin(8.0).show(ui, |ui| {
        ui.set_width(ui.available_width());
        let r = ui.label(RichText::new(format!("📊 {}", poll.question)).strong());
        a11y_label(&r, format!("Poll: {}", poll.question));
        let mut line = vec![format!("by {}", poll.by)];
        line.push(if poll.multiple { "several choices".into() } else { "one choice".into() });
        if poll.anonymous {
            line.push("anonymous".into());
        }
        ui.label(RichText::new(line.join(" · ")).small().weak());
        if closed {
            let r = ui.label(RichText::new("🔒 Closed").strong().color(ui.visuals().warn_fg_color));
            a11y_label(&r, format!("Poll closed: {}", poll.question));
        } else if let Some(why) = vote_block {
            ui.label(RichText::new(why).small().color(ui.visuals().warn_fg_color));
        }
        if let (false, Some(at)) = (closed, poll.closes_at) {
            let text = if at > now {
                let mins = (at - now).div_ceil(60_000);
                if mins <= 1 {
                    format!("Closes in {} s", (at - now).div_ceil(1000))
                } else {
                    format!("Closes in {mins} min (at {})", class.when(at, now))
                }
            } else {
                "Closing…".into()
            };
            ui.label(RichText::new(text).small());
        }
        ui.add_space(4.0);
        let bar_color = ui.visuals().selection.bg_fill;
        let track = ui.visuals().faint_bg_color.lerp_to_gamma(ui.visuals().weak_text_color(), 0.25);
        for (i, option) in poll.options.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let mine = poll.mine.contains(&index);
            let count = poll.counts.get(i).copied().unwrap_or(0);
            ui.horizontal_wrapped(|ui| {
                // A vote needs at least one choice: the last one cannot be taken back.
                let last = poll.multiple && mine && poll.mine.len() == 1;
                let response = if poll.multiple {
                    let mut checked = mine;
                    ui.add_enabled(can_vote, egui::Checkbox::new(&mut checked, option.as_str()))
                } else {
                    ui.add_enabled(can_vote, egui::RadioButton::new(mine, option.as_str()))
                };
                a11y_label(&response, format!("Vote {option}"));
                let response = if last {
                    response.on_hover_text("Choose another option first: a vote needs at least one")
                } else {
                    response
                };
                if response.clicked() && can_vote && !last {
                    let choices = if poll.multiple {
                        let mut set: Vec<u32> = poll.mine.iter().copied().filter(|c| *c != index).collect();
                        if !mine {
                            set.push(index);
                        }
                        set.sort_unstable();
                        set
                    } else {
                        vec![index]
                    };
                    if choices != poll.mine {
                        actions.push(Action::Class(ClassAction::Request(Request::Vote {
                            poll: poll.id,
                            choices,
                        })));
                    }
                }
                if mine {
                    ui.label(RichText::new("✔ your vote").small().color(bar_color));
                }
            });
            let result = bar(ui, share(count, poll.voters), bar_color, track, |ui| {
                let votes = if count == 1 { "1 vote".to_owned() } else { format!("{count} votes") };
                let text = format!("{votes} · {}%", percent(count, poll.voters));
                let r = ui.label(RichText::new(text).small().monospace());
                a11y_label(&r, format!("{option}: {votes}, {}%", percent(count, poll.voters)));
            });
            let names = poll.names.get(i).filter(|n| !n.is_empty());
            if !poll.anonymous
                && let Some(names) = names
            {
                result.on_hover_text(names.join(", "));
            }
        }
        ui.add_space(2.0);
        ui.horizontal(|ui| {
            let voters = if poll.voters == 1 {
                "1 person voted".to_owned()
            } else {
                format!("{} people voted", poll.voters)
            };
            let r = ui.label(RichText::new(voters).small().weak());
            a11y_label(&r, format!("{}: {} voted", poll.question, poll.voters));
            if !poll.anonymous && poll.voters > 0 {
                ui.label(RichText::new("(hover a bar for names)").small().weak());
            }
            if staff && !closed {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let b = ui.small_button("Close poll");
                    a11y_label(&b, format!("Close poll {}", poll.question));
                    if b.clicked() {
                        actions
                            .push(Action::Class(ClassAction::Request(Request::ClosePoll { poll: poll.id })));
                    }
                });
            }
        });
    });
}

/// One bar of the chart: a track across the width with `fraction` of it filled, and the
/// count beside it. Returns the row's response (hover shows who chose it).
fn bar(
    ui: &mut Ui,
    fraction: f32,
    fill: Color32,
    track: Color32,
    label: impl FnOnce(&mut Ui),
) -> egui::Response {
    ui.horizontal(|ui| {
        let width = (ui.available_width() - 96.0).max(40.0);
        let (rect, response) = ui.allocate_exact_size(vec2(width, BAR_HEIGHT), Sense::hover());
        let painter = ui.painter();
        painter.rect_filled(rect, 3.0, track);
        if fraction > 0.0 {
            let mut filled = rect;
            filled.set_width((rect.width() * fraction).max(3.0));
            painter.rect_filled(filled, 3.0, fill);
        }
        label(ui);
        response
    })
    .inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_checks_before_sending() {
        let mut form = PollForm::new("lab");
        assert_eq!(form.request(0), Err("Write the question.".into()));
        form.question = "  Which lens?  ".into();
        form.options = vec!["convex".into(), " ".into()];
        assert!(form.request(0).is_err(), "one real option is not a poll");
        form.options = vec!["convex".into(), "Convex".into()];
        assert_eq!(form.request(0), Err("\"Convex\" is there twice.".into()));
        form.options = vec![" convex ".into(), "concave".into(), String::new()];
        form.closes_in = Some(5);
        let Ok(Request::CreatePoll { question, options, closes_at, .. }) = form.request(1000) else {
            panic!("a valid poll")
        };
        assert_eq!(question, "Which lens?");
        assert_eq!(options, ["convex", "concave"], "blank options are dropped, the rest trimmed");
        assert_eq!(closes_at, Some(1000 + 5 * 60_000));
    }

    #[test]
    fn shares_are_of_the_voters() {
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(3, 3), 100);
    }
}
