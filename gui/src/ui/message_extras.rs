//! What the chat view shows around a message's text: the quote of the message it
//! answers, the "edited" mark and the reactions under it, the toolbar on hover (reply,
//! react, edit, delete), the "New messages" line, who is typing, and "Jump to latest".

use classchat_wire::{Conv, MessageId, Reaction};
use egui::{Align, Layout, Rect, RichText, Sense, Ui, UiBuilder, vec2};

use crate::action::Action;
use crate::model::{Content, Conversation, Model, Msg};
use crate::rich::{RichAction, preview};
use crate::ui::a11y_label;
use crate::ui::emoji::QUICK_REACTIONS;

/// Reaction chips shown under a message; the rest are counted in a "+N" chip.
const MAX_CHIPS: usize = 12;

fn act(actions: &mut Vec<Action>, a: RichAction) {
    actions.push(Action::Rich(a));
}

/// The quote above a reply: who wrote the original and its first words; clicking it
/// shows the original (loading older history when it is not loaded yet).
pub fn reply_row(ui: &mut Ui, c: &Conversation, m: &Msg, indent: f32, actions: &mut Vec<Action>) {
    let Some(orig_id) = m.meta.reply_to else { return };
    ui.add_space(indent);
    let rect = ui.max_rect();
    let bar = Rect::from_min_size(rect.left_top() + vec2(indent - 6.0, 2.0), vec2(3.0, rect.height() - 4.0));
    ui.painter().rect_filled(bar, 1.0, ui.visuals().weak_text_color().gamma_multiply(0.6));
    let (who, text) = match c.get(orig_id) {
        Some(o) => (o.from.clone(), quote_text(o)),
        None => (String::new(), "an earlier message (click to load it)".to_owned()),
    };
    let label = if who.is_empty() {
        RichText::new(format!("↪ Reply to {text}")).small().weak()
    } else {
        RichText::new(format!("↪ {who}: {text}")).small().weak()
    };
    let r = ui.add(egui::Label::new(label).truncate().sense(Sense::click()));
    let r = r.on_hover_text("Show the message this answers").on_hover_cursor(egui::CursorIcon::PointingHand);
    let name = if who.is_empty() {
        "Reply to an earlier message".to_owned()
    } else {
        format!("Reply to {who}: {text}")
    };
    a11y_label(&r, name);
    if r.clicked() {
        act(actions, RichAction::JumpTo { conv: c.conv.clone(), id: orig_id });
    }
}

fn quote_text(o: &Msg) -> String {
    match &o.content {
        Content::Sealed { .. } => "(verifying…)".to_owned(),
        Content::File(f) => format!("📄 {}", f.name),
        other => preview(other.text(), 80),
    }
}

/// Under a message: "(edited)", then one chip per reaction (emoji and count, yours
/// highlighted; who reacted on hover; a click adds or takes back yours), then a button to
/// add another.
#[allow(clippy::too_many_arguments, reason = "a row of the chat view sees what the view sees")]
pub fn footer_row(
    ui: &mut Ui,
    c: &Conversation,
    m: &Msg,
    model: &Model,
    indent: f32,
    tz: &jiff::tz::TimeZone,
    online: bool,
    actions: &mut Vec<Action>,
) {
    ui.add_space(indent);
    ui.spacing_mut().item_spacing.x = 4.0;
    if let Some(ts) = m.meta.edited {
        let r = ui.label(RichText::new("(edited)").small().weak());
        r.on_hover_text(format!("Edited {}", crate::ui::chat_view::clock(ts, tz)));
    }
    let me = model.my_name().unwrap_or_default();
    for r in m.meta.reactions.iter().take(MAX_CHIPS) {
        reaction_chip(ui, &c.conv, m.id, r, me, online, actions);
    }
    let extra = m.meta.reactions.len().saturating_sub(MAX_CHIPS);
    if extra > 0 {
        ui.label(RichText::new(format!("+{extra}")).small().weak());
    }
    if !m.meta.reactions.is_empty() {
        let add = ui.add_enabled(online, egui::Button::new(RichText::new("☺+").small()).small());
        let add = add.on_hover_text("Add a reaction");
        a11y_label(&add, format!("Add a reaction to {}'s message", m.from));
        if add.clicked() {
            act(actions, RichAction::Picker(Some((c.conv.clone(), m.id))));
        }
    }
}

fn reaction_chip(
    ui: &mut Ui,
    conv: &Conv,
    id: MessageId,
    r: &Reaction,
    me: &str,
    online: bool,
    actions: &mut Vec<Action>,
) {
    let mine = r.users.iter().any(|u| u.eq_ignore_ascii_case(me));
    let text = RichText::new(format!("{} {}", r.emoji, r.users.len()));
    let chip = egui::Button::new(text).small().selected(mine).corner_radius(8.0);
    let resp = ui.add_enabled(online, chip);
    let who = who_reacted(&r.users, me);
    let resp = resp.on_hover_text(format!("{who} reacted with {}", r.emoji));
    let verb = if mine { "Take back" } else { "Add" };
    a11y_label(&resp, format!("{} {} ({}): {verb} your reaction", r.emoji, r.users.len(), who));
    if resp.clicked() {
        act(actions, RichAction::React { conv: conv.clone(), id, emoji: r.emoji.clone(), on: !mine });
    }
}

/// "you, bob and 3 others".
pub fn who_reacted(users: &[String], me: &str) -> String {
    let names: Vec<&str> =
        users.iter().map(|u| if u.eq_ignore_ascii_case(me) { "you" } else { u.as_str() }).collect();
    match names.as_slice() {
        [] => String::new(),
        [a] => (*a).to_owned(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c] => format!("{a}, {b} and {c}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} others", rest.len()),
    }
}

/// What may be done to a message from the toolbar.
fn can_react(m: &Msg) -> bool {
    matches!(m.content, Content::Text(_) | Content::Announcement(_) | Content::File(_))
}

/// The toolbar at the right end of the row under the pointer: quick reactions, Reply,
/// More reactions, and for your own messages Edit and Delete (Delete also for a room's
/// admin and server admins).
pub fn toolbar(ui: &mut Ui, row: Rect, c: &Conversation, m: &Msg, model: &Model, actions: &mut Vec<Action>) {
    if !can_react(m) && !matches!(m.content, Content::Unreadable(_)) {
        return;
    }
    let mine = model.is_me(&m.from);
    let admin = match &c.conv {
        Conv::Room { name } => model.is_room_admin(name),
        Conv::Announcements => model.me.as_ref().is_some_and(|me| me.server_admin),
        Conv::Direct { .. } => false,
    };
    let editable = mine && matches!(m.content, Content::Text(_) | Content::Announcement(_));
    let deletable = mine || admin;
    let width = 250.0;
    let rect = Rect::from_min_size(
        egui::pos2(row.right() - width - 4.0, row.top() - 2.0),
        vec2(width, row.height() + 4.0),
    );
    // Its own id: the rows' children would otherwise share ids with its buttons.
    let builder = UiBuilder::new().id_salt(("toolbar", m.id)).max_rect(rect);
    let mut ui = ui.new_child(builder.layout(Layout::right_to_left(Align::Center)));
    egui::Frame::popup(ui.style()).inner_margin(egui::Margin::symmetric(4, 0)).show(&mut ui, |ui| {
        ui.spacing_mut().item_spacing.x = 2.0;
        ui.spacing_mut().button_padding = vec2(3.0, 0.0);
        let conv = &c.conv;
        if deletable {
            let b = ui.small_button("🗑").on_hover_text("Delete");
            a11y_label(&b, format!("Delete {}'s message", m.from));
            if b.clicked() {
                act(actions, RichAction::AskDelete { conv: conv.clone(), id: m.id });
            }
        }
        if editable {
            let b = ui.small_button("✏").on_hover_text("Edit (Up in an empty composer)");
            a11y_label(&b, "Edit your message");
            if b.clicked() {
                act(actions, RichAction::StartEdit { conv: conv.clone(), id: m.id });
            }
        }
        if can_react(m) {
            let b = ui.small_button("↪").on_hover_text("Reply");
            a11y_label(&b, format!("Reply to {}", m.from));
            if b.clicked() {
                act(actions, RichAction::Reply { conv: conv.clone(), id: m.id });
            }
            let b = ui.small_button("☺+").on_hover_text("More reactions");
            a11y_label(&b, format!("More reactions to {}'s message", m.from));
            if b.clicked() {
                act(actions, RichAction::Picker(Some((conv.clone(), m.id))));
            }
            let me = model.my_name().unwrap_or_default();
            for emoji in QUICK_REACTIONS.iter().rev() {
                let already = m
                    .meta
                    .reactions
                    .iter()
                    .any(|r| r.emoji == *emoji && r.users.iter().any(|u| u.eq_ignore_ascii_case(me)));
                let b = ui.add(egui::Button::new(*emoji).small().selected(already));
                a11y_label(&b, format!("React {emoji} to {}'s message", m.from));
                if b.clicked() {
                    act(
                        actions,
                        RichAction::React {
                            conv: conv.clone(),
                            id: m.id,
                            emoji: (*emoji).to_owned(),
                            on: !already,
                        },
                    );
                }
            }
        }
    });
}

/// The red "New messages" line across the top of `row`.
pub fn new_messages_line(ui: &Ui, row: Rect) {
    let color = ui.visuals().error_fg_color;
    let y = row.top() - ui.spacing().item_spacing.y / 2.0;
    ui.painter().hline(row.left()..=row.right() - 110.0, y, egui::Stroke::new(1.0, color));
    ui.painter().text(
        egui::pos2(row.right() - 4.0, y),
        egui::Align2::RIGHT_CENTER,
        "New messages",
        egui::FontId::proportional(11.0),
        color,
    );
}

/// "bob is typing…" (or nothing) in a row of its own under the conversation.
pub fn typing_line(ui: &mut Ui, c: &Conversation, height: f32) {
    let who = c.typing_now(std::time::Instant::now());
    let text = match who.as_slice() {
        [] => String::new(),
        [a] => format!("{a} is typing…"),
        [a, b] => format!("{a} and {b} are typing…"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more are typing…", rest.len()),
    };
    let (rect, _) = ui.allocate_exact_size(vec2(ui.available_width(), height), Sense::hover());
    if !text.is_empty() {
        let mut child =
            ui.new_child(UiBuilder::new().max_rect(rect).layout(Layout::left_to_right(Align::Center)));
        let r = child.label(RichText::new(text.clone()).small().italics().weak());
        a11y_label(&r, text);
        // The line goes when the last typist's notice runs out.
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(500));
    }
}

/// The emoji picker for reacting to a message, in a window of its own: the quick
/// reactions (yours highlighted), then every emoji the fonts draw, searchable.
pub fn picker_window(
    ctx: &egui::Context,
    target: &(Conv, MessageId),
    model: &Model,
    state: &mut crate::ui::emoji::PickerState,
    actions: &mut Vec<Action>,
) {
    let (conv, id) = target;
    let Some(m) = model.conversation(conv).and_then(|c| c.get(*id)) else {
        act(actions, RichAction::Picker(None));
        return;
    };
    let me = model.my_name().unwrap_or_default();
    let mine = |emoji: &str| {
        m.meta
            .reactions
            .iter()
            .any(|r| r.emoji == emoji && r.users.iter().any(|u| u.eq_ignore_ascii_case(me)))
    };
    let mut open = true;
    egui::Window::new("React")
        .id(egui::Id::unique("reaction_picker"))
        .collapsible(false)
        .resizable(false)
        .open(&mut open)
        .show(ctx, |ui| {
            ui.label(
                RichText::new(format!("to {}: {}", m.from, preview(m.content.text(), 40))).small().weak(),
            );
            ui.horizontal(|ui| {
                for emoji in QUICK_REACTIONS {
                    let b = ui.add(egui::Button::new(RichText::new(emoji).size(18.0)).selected(mine(emoji)));
                    a11y_label(&b, format!("React {emoji}"));
                    if b.clicked() {
                        let on = !mine(emoji);
                        act(
                            actions,
                            RichAction::React { conv: conv.clone(), id: *id, emoji: emoji.to_owned(), on },
                        );
                    }
                }
            });
            ui.separator();
            if let Some(emoji) = crate::ui::emoji::picker(ui, state) {
                let on = !mine(&emoji);
                act(actions, RichAction::React { conv: conv.clone(), id: *id, emoji, on });
            }
        });
    if !open {
        act(actions, RichAction::Picker(None));
    }
}
