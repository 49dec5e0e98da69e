//! Q&A: a room's questions (unanswered first, then most upvoted, then oldest), upvotes,
//! "Mark answered" for staff, and the "Ask" box with its anonymous choice.

use classchat_wire::{Conv, MAX_QUESTION_LEN, MessageId, Question, Request};
use egui::{RichText, TextEdit, Ui};

use crate::action::Action;
use crate::class::{AskDraft, ClassAction, ClassState, now_ms};
use crate::model::{Content, Model};
use crate::ui::{a11y_label, name_color};

/// The accessible name of the question field.
pub const ASK_FIELD: &str = "Your question";

/// The Q&A tab of `room`.
pub fn show(ui: &mut Ui, model: &Model, class: &mut ClassState, room: &str, actions: &mut Vec<Action>) {
    if !model.rooms.get(room).is_some_and(|r| r.settings.qa) {
        ui.label(
            RichText::new("Questions are off in this room. Its admin can turn Q&A on in the room settings.")
                .weak(),
        );
        return;
    }
    let ask_block = class.ask_block(model, room);
    let vote_block = class.vote_block(model, room);
    ask_box(ui, class.ask.entry(room.to_owned()).or_default(), room, ask_block.as_deref(), actions);
    ui.separator();
    let staff = model.is_room_admin(room);
    let latest = latest_message(model, room);
    let questions = class.questions(room);
    if questions.is_empty() {
        let text = if class.questions_loaded(room) {
            "No questions yet. Ask the first one."
        } else {
            "Loading questions…"
        };
        ui.label(RichText::new(text).weak());
    }
    let now = now_ms();
    for q in questions {
        let card =
            Card { staff, instructor: ClassState::is_instructor(model), vote_block: vote_block.as_deref() };
        question_card(ui, model, class, q, &card, latest.as_ref(), now, actions);
        ui.add_space(4.0);
    }
}

/// The newest text message of the room, to link as the answer: (id, who, text).
fn latest_message(model: &Model, room: &str) -> Option<(MessageId, String, String)> {
    let c = model.conversation(&Conv::room(room))?;
    c.messages()
        .iter()
        .rev()
        .find(|m| matches!(m.content, Content::Text(_)))
        .map(|m| (m.id, m.from.clone(), m.content.text().to_owned()))
}

fn ask_box(ui: &mut Ui, draft: &mut AskDraft, room: &str, blocked: Option<&str>, actions: &mut Vec<Action>) {
    if let Some(why) = blocked {
        let r = ui.label(RichText::new(format!("⛔ {why}")).color(ui.visuals().warn_fg_color));
        a11y_label(&r, format!("Cannot ask: {why}"));
    }
    let r = ui.add(
        TextEdit::multiline(&mut draft.text)
            .id_salt("ask-field")
            .hint_text("Ask the class or the instructor…")
            .desired_rows(2)
            .desired_width(f32::INFINITY)
            .interactive(!draft.busy && blocked.is_none()),
    );
    a11y_label(&r, ASK_FIELD);
    ui.horizontal(|ui| {
        let c = ui
            .checkbox(&mut draft.anonymous, "Ask anonymously")
            .on_hover_text("Classmates and the room's admin do not see your name; instructors do");
        a11y_label(&c, "Ask anonymously");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let text = draft.text.trim();
            let ok = !text.is_empty() && text.len() <= MAX_QUESTION_LEN && !draft.busy && blocked.is_none();
            let b = ui.add_enabled(ok, egui::Button::new(RichText::new("Ask").strong()));
            a11y_label(&b, "Ask");
            if text.len() > MAX_QUESTION_LEN {
                b.clone().on_disabled_hover_text(format!("At most {MAX_QUESTION_LEN} bytes"));
            }
            if b.clicked() {
                actions.push(Action::Class(ClassAction::Request(Request::AskQuestion {
                    room: room.to_owned(),
                    text: text.to_owned(),
                    anonymous: draft.anonymous,
                })));
            }
        });
    });
}

/// What a question card needs to know about the viewer.
struct Card<'a> {
    /// Staff of the room: may mark answered.
    staff: bool,
    /// Sees anonymous authors (the server sends them to instructors only).
    instructor: bool,
    /// Why upvoting is closed now (exam mode), if it is.
    vote_block: Option<&'a str>,
}

/// Who asked, as this user may see it.
pub fn author_text(q: &Question, instructor: bool) -> (String, Option<&'static str>) {
    match (&q.author, q.mine) {
        (_, true) if q.anonymous => ("You".into(), Some("anonymous to classmates")),
        (_, true) => ("You".into(), None),
        (Some(author), false) if q.anonymous && instructor => {
            (author.clone(), Some("anonymous to classmates"))
        }
        (Some(author), false) => (author.clone(), None),
        (None, false) => ("Anonymous".into(), None),
    }
}

#[allow(clippy::too_many_arguments)]
fn question_card(
    ui: &mut Ui,
    model: &Model,
    class: &ClassState,
    q: &Question,
    card: &Card<'_>,
    latest: Option<&(MessageId, String, String)>,
    now: classchat_wire::Timestamp,
    actions: &mut Vec<Action>,
) {
    let frame = egui::Frame::group(ui.style()).corner_radius(6.0).inner_margin(6.0);
    let frame = if q.answered { frame.fill(ui.visuals().faint_bg_color) } else { frame };
    frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            // The upvote toggle and its count, on the left like a forum's.
            ui.vertical(|ui| {
                let arrow = if q.voted {
                    RichText::new("⬆").strong().color(ui.visuals().selection.bg_fill)
                } else {
                    RichText::new("⬆").weak()
                };
                let can = !q.mine && card.vote_block.is_none();
                let b = ui.add_enabled(can, egui::Button::new(arrow).selected(q.voted).small());
                let what = if q.voted { "Take back upvote" } else { "Upvote" };
                a11y_label(&b, format!("{what}: {}", q.text));
                let b = match (q.mine, card.vote_block) {
                    (true, _) => b.on_disabled_hover_text("You cannot upvote your own question"),
                    (false, Some(why)) => b.on_disabled_hover_text(why),
                    (false, None) => b.on_hover_text(what),
                };
                if b.clicked() && can {
                    actions.push(Action::Class(ClassAction::Request(Request::Upvote {
                        question: q.id,
                        up: !q.voted,
                    })));
                }
                let r = ui.label(RichText::new(q.votes.to_string()).strong());
                let votes = if q.votes == 1 { "1 vote".to_owned() } else { format!("{} votes", q.votes) };
                a11y_label(&r, format!("{votes}: {}", q.text));
            });
            ui.vertical(|ui| {
                let r = ui.label(&q.text);
                a11y_label(&r, format!("Question: {}", q.text));
                ui.horizontal_wrapped(|ui| {
                    let (who, hint) = author_text(q, card.instructor);
                    let color = if q.author.is_some() && !q.mine {
                        name_color(ui, &who)
                    } else {
                        ui.visuals().weak_text_color()
                    };
                    ui.label(RichText::new(&who).small().color(color));
                    if let Some(hint) = hint {
                        ui.label(RichText::new(format!("({hint})")).small().italics().weak());
                    }
                    ui.label(RichText::new(class.when(q.ts, now)).small().weak());
                    if q.answered {
                        let r = ui.label(
                            RichText::new(" ✔ Answered ")
                                .small()
                                .strong()
                                .color(egui::Color32::WHITE)
                                .background_color(egui::Color32::from_rgb(0x2e, 0x8b, 0x57)),
                        );
                        a11y_label(&r, format!("Answered: {}", q.text));
                    }
                });
                if let Some(answer) =
                    q.answer.and_then(|id| model.conversation(&Conv::room(q.room.as_str()))?.get(id).cloned())
                {
                    let text: String = answer.content.text().chars().take(140).collect();
                    ui.label(RichText::new(format!("↪ {}: {text}", answer.from)).small().italics());
                }
                if card.staff {
                    ui.horizontal(|ui| {
                        if q.answered {
                            let b = ui.small_button("Reopen");
                            a11y_label(&b, format!("Reopen: {}", q.text));
                            if b.clicked() {
                                actions.push(mark(q, false, None));
                            }
                        } else {
                            let b = ui.small_button("Mark answered");
                            a11y_label(&b, format!("Mark answered: {}", q.text));
                            if b.clicked() {
                                actions.push(mark(q, true, None));
                            }
                            if let Some((id, from, text)) = latest {
                                let preview: String = text.chars().take(80).collect();
                                let b = ui
                                    .small_button("Answered by the latest message")
                                    .on_hover_text(format!("Links {from}: \"{preview}\""));
                                a11y_label(&b, format!("Mark answered with the latest message: {}", q.text));
                                if b.clicked() {
                                    actions.push(mark(q, true, Some(*id)));
                                }
                            }
                        }
                    });
                }
            });
        });
    });
}

fn mark(q: &Question, answered: bool, answer: Option<MessageId>) -> Action {
    Action::Class(ClassAction::Request(Request::MarkAnswered { question: q.id, answered, answer }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(author: Option<&str>, anonymous: bool, mine: bool) -> Question {
        Question {
            id: 1,
            room: "help".into(),
            text: "why?".into(),
            author: author.map(Into::into),
            anonymous,
            mine,
            votes: 0,
            voted: false,
            answered: false,
            answer: None,
            ts: 0,
        }
    }

    #[test]
    fn authors_show_as_the_viewer_may_see_them() {
        assert_eq!(author_text(&q(None, true, false), false), ("Anonymous".into(), None));
        assert_eq!(
            author_text(&q(Some("bob"), true, false), true),
            ("bob".into(), Some("anonymous to classmates"))
        );
        assert_eq!(author_text(&q(Some("bob"), false, false), false), ("bob".into(), None));
        assert_eq!(author_text(&q(None, true, true), false), ("You".into(), Some("anonymous to classmates")));
    }
}
