//! The composer: multi-line, Enter sends, Shift+Enter adds a line. Each conversation
//! keeps its own draft. When sending is impossible (offline, removed from the room) the
//! composer says why and keeps the text. The instructor tools add reasons of their own
//! ([`ClassState::send_block`]): a mute, an announcement room, exam mode (the field is
//! disabled), and slow mode (the field stays editable while the wait counts down).

use std::collections::HashMap;

use classchat_wire::{Conv, MessageId};
use egui::{Key, KeyboardShortcut, Modifiers, RichText, TextEdit, Ui};

use crate::action::Action;
use crate::class::{ClassState, now_ms};
use crate::model::Model;
use crate::net::ConnState;
use crate::rich::{RichAction, RichState, preview};
use crate::ui::a11y_label;
use crate::ui::dialogs::Dialog;

/// The accessible name of the message field.
pub const MESSAGE_FIELD: &str = "Message";

#[derive(Debug, Default)]
pub struct ComposerState {
    drafts: HashMap<Conv, String>,
    /// Focus the field on the next frame (after switching conversations).
    pub focus: bool,
    /// Put the cursor at the end of the text on the next frame (an edit began).
    pub cursor_to_end: bool,
    /// The emoji window is open.
    emoji_open: bool,
    picker: crate::ui::emoji::PickerState,
}

impl ComposerState {
    pub fn draft(&self, conv: &Conv) -> &str {
        self.drafts.get(conv).map(String::as_str).unwrap_or_default()
    }

    pub fn set_draft(&mut self, conv: &Conv, text: String) {
        self.drafts.insert(conv.clone(), text);
    }

    pub fn clear(&mut self, conv: &Conv) {
        self.drafts.remove(conv);
    }
}

/// Why the user cannot send right now, if they cannot.
pub fn blocked_reason(model: &Model, conn: &ConnState, conv: &Conv) -> Option<String> {
    if let Some(removed) = model.conversation(conv).and_then(|c| c.removed.as_ref()) {
        return Some(removed.clone());
    }
    if *conv == Conv::Announcements && !model.me.as_ref().is_some_and(|m| m.can_broadcast) {
        return Some("Only instructors can post announcements.".into());
    }
    match conn {
        ConnState::Online { .. } => None,
        ConnState::Reconnecting { retry_at, .. } => {
            let secs = retry_at.saturating_duration_since(std::time::Instant::now()).as_secs();
            Some(if secs > 0 {
                format!("Offline: reconnecting in {secs} s. Your text stays here until you can send it.")
            } else {
                "Offline: reconnecting… Your text stays here until you can send it.".into()
            })
        }
        ConnState::Connecting { .. } => {
            Some("Connecting… Your text stays here until you can send it.".into())
        }
        ConnState::Offline => Some("Offline. Your text stays here until you can send it.".into()),
    }
}

pub fn show(
    ui: &mut Ui,
    model: &Model,
    state: &mut ComposerState,
    conn: &ConnState,
    class: &ClassState,
    rich: &RichState,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let Some(conv) = model.current.clone() else { return actions };
    let class_block = class.send_block(model, &conv, now_ms(), std::time::Instant::now());
    // A refusal of the room comes first, then the class rules, then the connection.
    let removed = model.conversation(&conv).is_some_and(|c| c.removed.is_some());
    let (blocked, editable) = match (&class_block, removed) {
        (Some(b), false) => (Some(b.text.clone()), b.soft),
        _ => (blocked_reason(model, conn, &conv), true),
    };
    let files_refused = class.files_refused(model, &conv);
    let can_broadcast = model.me.as_ref().is_some_and(|m| m.can_broadcast);
    ui.add_space(4.0);
    if let Some(reason) = &blocked {
        let icon = if class_block.as_ref().is_some_and(|b| b.soft) { "⏳" } else { "⛔" };
        let r = ui.label(RichText::new(format!("{icon} {reason}")).color(ui.visuals().warn_fg_color));
        a11y_label(&r, format!("Cannot send: {reason}"));
    }
    let editing = rich.editing.as_ref().filter(|e| e.conv == conv).map(|e| e.id);
    reply_or_edit_bar(ui, model, rich, &conv, editing, &mut actions);
    let draft = state.drafts.entry(conv.clone()).or_default();
    let mut send = false;
    ui.horizontal(|ui| {
        let buttons_width = if can_broadcast { 230.0 } else { 120.0 };
        let hint = match &conv {
            Conv::Room { name } => format!("Message #{name}  (Enter sends, Shift+Enter for a new line)"),
            Conv::Direct { user } => format!("Message {user}"),
            Conv::Announcements => "Announcement to everyone".into(),
        };
        // A named id: an automatic one counts the widgets before it, and a side panel that
        // opens (`/shared`, the transfers) would change it and take the keyboard away.
        let id = ui.make_persistent_id("composer");
        let edit = TextEdit::multiline(draft)
            .hint_text(hint)
            .desired_rows(2)
            .desired_width(ui.available_width() - buttons_width - 30.0)
            .return_key(KeyboardShortcut::new(Modifiers::SHIFT, Key::Enter));
        // Disabled (its text kept) while a class rule says the user may not post here.
        // `@na` and `:shortc` open a list of names or emoji; Tab or Enter takes one.
        let out = ui
            .add_enabled_ui(editable, |ui| {
                egui::CompletionPopup::new(id).show(ui, edit, |q| suggestions(model, &conv, q.word))
            })
            .inner;
        let response = out.text_edit.response;
        a11y_label(&response, MESSAGE_FIELD);
        if state.focus {
            response.request_focus();
            state.focus = false;
        }
        if std::mem::take(&mut state.cursor_to_end) {
            let mut s = out.text_edit.state;
            let end = egui::text::CCursor::new(draft.chars().count());
            s.cursor.set_char_range(Some(egui::text::CCursorRange::one(end)));
            s.store(ui.ctx(), response.id);
        }
        let emoji = ui.add_enabled(editable, egui::Button::new("☺")).on_hover_text("Emoji (or type :name)");
        a11y_label(&emoji, "Insert an emoji");
        if emoji.clicked() {
            state.emoji_open = !state.emoji_open;
        }
        let enter = response.has_focus() && plain_enter_pressed(ui);
        if response.has_focus() || response.lost_focus() {
            keys(ui, model, &conv, draft, editing, &mut actions);
        }
        if response.changed() && !draft.is_empty() && editing.is_none() {
            actions.push(Action::Rich(RichAction::Typing(conv.clone())));
        }
        if conv != Conv::Announcements {
            let attach =
                ui.add_enabled(blocked.is_none() && files_refused.is_none(), egui::Button::new("📎"));
            let what = match &conv {
                Conv::Direct { user } => format!("Send a file to {user}"),
                _ => "Send a file to this room".to_owned(),
            };
            let attach = match &files_refused {
                Some(why) => attach.on_disabled_hover_text(why),
                None => attach.on_hover_text(&what),
            };
            a11y_label(&attach, "Attach a file");
            if attach.clicked() {
                actions.push(Action::Attach(conv.clone()));
            }
        }
        let button = ui.add_enabled(blocked.is_none() && !draft.trim().is_empty(), egui::Button::new("Send"));
        if let Some(reason) = &blocked {
            button.clone().on_disabled_hover_text(reason.as_str());
        }
        if (enter || button.clicked()) && blocked.is_none() {
            send = true;
        }
        if can_broadcast && conv != Conv::Announcements {
            let b = ui.add_enabled(
                blocked.is_none() && !draft.trim().is_empty(),
                egui::Button::new("📢 Broadcast"),
            );
            let b = b.on_hover_text("Send this text to everyone on the server as an announcement");
            if b.clicked() {
                actions.push(Action::OpenDialog(Dialog::ConfirmBroadcast { text: draft.clone() }));
            }
        }
    });
    if state.emoji_open {
        let mut open = true;
        egui::Window::new("Emoji")
            .id(egui::Id::unique("composer_emoji"))
            .collapsible(false)
            .resizable(false)
            .open(&mut open)
            .show(ui.ctx(), |ui| {
                if let Some(e) = crate::ui::emoji::picker(ui, &mut state.picker) {
                    draft.push_str(&e);
                    state.emoji_open = false;
                    state.focus = true;
                    state.cursor_to_end = true;
                }
            });
        state.emoji_open &= open;
    }
    if send {
        let text = draft.trim_end().to_owned();
        if !text.trim().is_empty() {
            actions.push(Action::Send { conv, text });
        }
    }
    actions
}

/// Above the field: the message being answered or edited, with a way out (Esc too).
fn reply_or_edit_bar(
    ui: &mut Ui,
    model: &Model,
    rich: &RichState,
    conv: &Conv,
    editing: Option<MessageId>,
    actions: &mut Vec<Action>,
) {
    let c = model.conversation(conv);
    let (what, cancel) = if let Some(id) = editing {
        let text = c.and_then(|c| c.get(id)).map(|m| preview(m.content.text(), 60)).unwrap_or_default();
        (format!("✏ Editing your message: {text}   (Enter saves, Esc cancels)"), RichAction::CancelEdit)
    } else if let Some(id) = rich.reply.get(conv) {
        let (who, text) = c
            .and_then(|c| c.get(*id))
            .map(|m| (m.from.clone(), preview(m.content.text(), 60)))
            .unwrap_or_else(|| (String::new(), "an earlier message".into()));
        (format!("↪ Replying to {who}: {text}"), RichAction::CancelReply(conv.clone()))
    } else {
        return;
    };
    ui.horizontal(|ui| {
        let r = ui.add(egui::Label::new(RichText::new(&what).small().strong()).truncate());
        a11y_label(&r, what.clone());
        let b = ui.small_button("✖").on_hover_text("Cancel (Esc)");
        a11y_label(&b, if editing.is_some() { "Cancel the edit" } else { "Cancel the reply" });
        if b.clicked() {
            actions.push(Action::Rich(cancel));
        }
    });
}

/// Esc leaves an edit or a reply; Up in an empty field edits your last message.
fn keys(
    ui: &mut Ui,
    model: &Model,
    conv: &Conv,
    draft: &str,
    editing: Option<MessageId>,
    actions: &mut Vec<Action>,
) {
    let (esc, up) = ui.input(|i| (i.key_pressed(Key::Escape), i.key_pressed(Key::ArrowUp)));
    if esc {
        actions.push(Action::Rich(if editing.is_some() {
            RichAction::CancelEdit
        } else {
            RichAction::CancelReply(conv.clone())
        }));
    }
    if up
        && draft.is_empty()
        && editing.is_none()
        && let Some(id) = crate::rich::last_editable(model, conv)
    {
        actions.push(Action::Rich(RichAction::StartEdit { conv: conv.clone(), id }));
    }
}

/// What completes the word at the cursor: `@na` a name, `:tad` an emoji.
fn suggestions(model: &Model, conv: &Conv, word: &str) -> Vec<egui::Suggestion> {
    if word.starts_with('@') {
        return mention_completions(model, conv, word)
            .into_iter()
            .map(|name| egui::Suggestion::new(format!("@{name} ")).content(format!("@{name}")))
            .collect();
    }
    match word.strip_prefix(':') {
        Some(code) if code.len() >= 2 && !code.contains(':') => crate::ui::emoji::complete_shortcode(code, 8)
            .into_iter()
            .map(|(code, emoji)| {
                egui::Suggestion::new(format!("{emoji} ")).content(format!("{emoji}  :{code}:"))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Names that complete the `@word` at the end of `draft`: members of the room (or the
/// DM's other party), at most eight, in name order.
pub fn mention_completions(model: &Model, conv: &Conv, draft: &str) -> Vec<String> {
    let Some(word) = draft.rsplit(char::is_whitespace).next() else { return Vec::new() };
    let Some(prefix) = word.strip_prefix('@') else { return Vec::new() };
    if prefix.chars().any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Vec::new();
    }
    let prefix = prefix.to_ascii_lowercase();
    let names: Vec<String> = match conv {
        Conv::Room { name } => {
            model.members.get(name).map(|m| m.iter().map(|m| m.name.clone()).collect()).unwrap_or_default()
        }
        Conv::Direct { user } => vec![user.clone()],
        Conv::Announcements => model.users.values().map(|u| u.name.clone()).collect(),
    };
    names
        .into_iter()
        .filter(|n| !model.is_me(n))
        .filter(|n| n.to_ascii_lowercase().starts_with(&prefix) && !n.eq_ignore_ascii_case(&prefix))
        .take(8)
        .collect()
}

/// Enter without Shift (which adds a line) or any other modifier. egui's shortcut matching
/// ignores an extra Shift, so the key events are checked directly.
fn plain_enter_pressed(ui: &Ui) -> bool {
    ui.input(|i| {
        i.events.iter().any(|e| {
            matches!(e, egui::Event::Key { key: Key::Enter, pressed: true, modifiers, .. }
                if !modifiers.shift && !modifiers.alt && !modifiers.command && !modifiers.ctrl)
        })
    })
}
