//! The centre: the current conversation with senders, times, day separators, system
//! lines, pending marks and announcements, and older history loaded as you scroll up.
//!
//! Long conversations go through `ScrollArea::show_rows`, which lays out only the rows in
//! view. That needs rows of one height, so each message is cut into display rows (a
//! header, then one row per wrapped line of text) once, when it arrives or when the width
//! changes, and kept in a per-conversation [`ConvLayout`]. Appending a message only lays
//! out that message; 100,000 messages cost a few megabytes of row indices and nothing per
//! frame beyond the rows on screen.

use std::collections::HashMap;
use std::ops::Range;

use classchat_wire::{Conv, MessageId, Timestamp};
use egui::{Align, FontId, Layout, RichText, Sense, TextStyle, TextWrapMode, Ui, UiBuilder, vec2};

use crate::action::{Action, AdminOp};
use crate::files::{Direction, Files, Offer, OfferSeal, OfferState, TransferState, human_size};
use crate::model::{Content, Conversation, GROUP_WINDOW_MS, Model, Msg, PendingState};
use crate::rich::{RichAction, RichState};
use crate::ui::dialogs::{Dialog, RoomSettingsForm};
use crate::ui::{a11y_label, conv_title, markdown, message_extras, name_color};

/// Messages asked for per history page.
pub const HISTORY_PAGE: u32 = 100;
/// Start loading older messages when the view is this many rows from the top.
const LOAD_MARGIN_ROWS: f32 = 10.0;
/// Widths are rounded down to this many points before wrapping, so resizing the window
/// re-wraps a conversation every few pixels rather than on every pixel.
const WIDTH_STEP: f32 = 24.0;
/// Text rows are indented under their header by this much.
const INDENT: f32 = 12.0;
/// How long a message that was jumped to stays highlighted.
const FLASH: std::time::Duration = std::time::Duration::from_millis(2000);
/// Signatures are checked for the rows on screen and this many rows either side, so a
/// slow scroll finds them ready.
const VERIFY_MARGIN_ROWS: usize = 30;

/// One display row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Row {
    /// "Beginning of the conversation" or "Loading older messages".
    Top,
    /// A day separator; holds the first message of that day.
    Day(MessageId),
    /// Sender and time.
    Header(MessageId),
    /// A wrapped line of a message's text (byte range).
    Line { id: MessageId, range: Range<u32> },
    /// A shared file: its name, size and buttons.
    File(MessageId),
    /// Part `part` of [`THUMB_ROWS`] of an image file's thumbnail.
    Thumb { id: MessageId, part: u8 },
    /// Row `part` of a message shown as markdown: the message is drawn whole once, at its
    /// first row on screen, over the rows it spans.
    Block { id: MessageId, part: u16 },
    /// The quote of the message this one answers.
    Reply(MessageId),
    /// "(edited)" and the reactions.
    Footer(MessageId),
}

/// Rows an image thumbnail spans (each row paints its slice, so it scrolls correctly).
const THUMB_ROWS: u8 = 6;

/// What grouping needs to know about the last laid-out message.
#[derive(Debug, Clone)]
struct Last {
    from: String,
    ts: Timestamp,
    kind: Kind,
    /// The local day of `ts`, as a half-open range of timestamps.
    day: Range<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    System,
    Announcement,
}

fn kind(content: &Content) -> Kind {
    match content {
        Content::Text(_)
        | Content::Unreadable(_)
        | Content::Sealed { .. }
        | Content::File(_)
        | Content::Deleted(_) => Kind::Text,
        Content::System(_) => Kind::System,
        Content::Announcement(_) => Kind::Announcement,
    }
}

/// The rows of one conversation, and what they were built for.
#[derive(Debug, Default)]
pub struct ConvLayout {
    rows: Vec<Row>,
    generation: u64,
    built_len: usize,
    width_key: u32,
    font_size_key: u32,
    last: Option<Last>,
    scroll_offset: f32,
    /// An offset to jump to on the next frame (to keep the view still after older
    /// messages were added above it).
    pending_scroll: Option<f32>,
    /// Messages shown as markdown, laid out for `md_key`, with the hash of their text.
    rendered: HashMap<MessageId, (u64, markdown::Rendered)>,
    md_key: Option<(u32, markdown::CacheKey, String)>,
}

impl ConvLayout {
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }
}

/// The chat view's own state: row layouts per conversation and the local time zone.
pub struct ChatViewState {
    layouts: HashMap<Conv, ConvLayout>,
    tz: jiff::tz::TimeZone,
}

impl Default for ChatViewState {
    fn default() -> Self {
        Self { layouts: HashMap::new(), tz: jiff::tz::TimeZone::system() }
    }
}

impl std::fmt::Debug for ChatViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatViewState").field("layouts", &self.layouts.len()).finish_non_exhaustive()
    }
}

impl ChatViewState {
    /// Forget the layout of a conversation (it left the sidebar).
    pub fn forget(&mut self, conv: &Conv) {
        self.layouts.remove(conv);
    }

    pub fn clear(&mut self) {
        self.layouts.clear();
    }

    /// The local time zone, for times shown elsewhere.
    pub fn tz(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }

    pub fn layout(&self, conv: &Conv) -> Option<&ConvLayout> {
        self.layouts.get(conv)
    }
}

pub fn show(
    ui: &mut Ui,
    model: &Model,
    files: &Files,
    state: &mut ChatViewState,
    rich: &RichState,
    online: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let Some(c) = model.current_conversation() else {
        ui.centered_and_justified(|ui| ui.label(RichText::new("Pick a room on the left.").weak()));
        return actions;
    };
    header(ui, model, c, &mut actions);
    ui.separator();

    let body_font = TextStyle::Body.resolve(ui.style());
    let row_h = ui.text_style_height(&TextStyle::Body);
    let spacing = ui.spacing().item_spacing.y;
    let text_width = (ui.available_width() - INDENT - 24.0).max(80.0);
    let width_key = ((text_width / WIDTH_STEP).floor().max(1.0)) as u32;
    let wrap_width = width_key as f32 * WIDTH_STEP;

    let tz = state.tz.clone();
    let layout = state.layouts.entry(c.conv.clone()).or_default();
    let me = model.my_name().unwrap_or_default();
    update_layout(ui.ctx(), layout, c, width_key, wrap_width, &body_font, &tz, me);
    let pending = pending_rows(ui.ctx(), c, wrap_width, &body_font);

    // A message to bring into view (a search result, a reply's original): three rows
    // above it stay visible.
    if let Some(j) = &rich.jump
        && j.found
        && j.conv == c.conv
        && let Some(index) = layout.rows.iter().position(|r| row_id(r) == Some(j.id))
    {
        layout.pending_scroll = Some(index.saturating_sub(3) as f32 * (row_h + spacing));
        actions.push(Action::Rich(RichAction::Jumped));
    }
    let flash = rich.flash.filter(|(_, at)| at.elapsed() < FLASH).map(|(id, _)| id);
    let mut area = egui::ScrollArea::vertical()
        .id_salt(("chat", &c.conv))
        .auto_shrink([false, false])
        .max_height((ui.available_height() - row_h - spacing).max(row_h))
        .stick_to_bottom(true);
    if let Some(offset) = layout.pending_scroll.take() {
        area = area.vertical_scroll_offset(offset);
    }
    let offers: Vec<&Offer> = match &c.conv {
        Conv::Direct { user } => files.offers_with(user).collect(),
        _ => Vec::new(),
    };
    let total = layout.rows.len() + pending.len() + offers.len();
    let mut to_verify = Vec::new();
    let output = area.show_rows(ui, row_h, total, |ui, range| {
        if matches!(c.conv, Conv::Direct { .. }) {
            let around = range.start.saturating_sub(VERIFY_MARGIN_ROWS)
                ..(range.end + VERIFY_MARGIN_ROWS).min(layout.rows.len());
            to_verify = unchecked_ids(&layout.rows[around], c);
        }
        let mut prev_id = range.start.checked_sub(1).and_then(|i| layout.rows.get(i)).and_then(row_id);
        let mut hovered = None;
        let mut drawn_block = None;
        for i in range {
            let (rect, _) = ui.allocate_exact_size(vec2(ui.available_width(), row_h), Sense::hover());
            let builder = UiBuilder::new().id_salt(("row", i)).max_rect(rect);
            let mut row_ui = ui.new_child(builder.layout(Layout::left_to_right(Align::Center)));
            let id = layout.rows.get(i).and_then(row_id);
            if id.is_some() && id == flash {
                let band = rect.expand2(vec2(0.0, spacing / 2.0));
                row_ui.painter().rect_filled(
                    band,
                    0.0,
                    row_ui.visuals().selection.bg_fill.gamma_multiply(0.35),
                );
            }
            if id.is_some() && id == c.unread_from && prev_id != id {
                message_extras::new_messages_line(&row_ui, rect);
            }
            prev_id = id;
            if let Some(id) = id
                && ui.rect_contains_pointer(rect.expand2(vec2(0.0, spacing / 2.0)))
            {
                hovered = Some((id, rect));
            }
            match layout.rows.get(i) {
                Some(Row::Block { id, part }) => {
                    if drawn_block != Some(*id) {
                        drawn_block = Some(*id);
                        let top = rect.top() - f32::from(*part) * (row_h + spacing);
                        show_block(ui, layout, c, *id, egui::pos2(rect.left() + INDENT, top), &mut actions);
                    }
                }
                Some(row) => show_row(&mut row_ui, row, c, model, files, &tz, online, &mut actions),
                None => {
                    let i = i - layout.rows.len();
                    if let Some(p) = pending.get(i) {
                        show_pending_row(&mut row_ui, p, c, model, &mut actions);
                    } else if let Some(o) = offers.get(i - pending.len()) {
                        show_offer_row(&mut row_ui, o, files, online, &mut actions);
                    }
                }
            }
        }
        // Drawn last, so it is on top of the row's text and gets the clicks.
        if let Some((id, rect)) = hovered
            && online
            && c.removed.is_none()
            && let Some(m) = c.get(id)
        {
            message_extras::toolbar(ui, rect, c, m, model, &mut actions);
        }
    });
    message_extras::typing_line(ui, c, row_h);
    let max_offset = (output.content_size.y - output.inner_rect.height()).max(0.0);
    if output.state.clamped_offset().y < max_offset - 3.0 * (row_h + spacing) {
        let size = vec2(150.0, row_h + 8.0);
        let at =
            egui::pos2(output.inner_rect.right() - size.x - 16.0, output.inner_rect.bottom() - size.y - 8.0);
        let b = ui.put(egui::Rect::from_min_size(at, size), egui::Button::new("⬇ Jump to latest"));
        if b.clicked() {
            layout.pending_scroll = Some(output.content_size.y);
            ui.ctx().request_repaint();
        }
    }
    if !to_verify.is_empty() {
        actions.push(Action::VerifyRows { conv: c.conv.clone(), ids: to_verify });
    }
    layout.scroll_offset = output.state.clamped_offset().y;
    let near_top = output.state.clamped_offset().y <= LOAD_MARGIN_ROWS * (row_h + spacing);
    if near_top && c.more_history && !c.loading_older && online && c.removed.is_none() {
        actions.push(Action::LoadOlder(c.conv.clone()));
    }
    actions
}

/// The text of a message shown as markdown: a text message (or a direct message being
/// verified) with something markdown would change. Plain text stays on the fast path of
/// wrapped lines.
fn markdown_text(content: &Content) -> Option<&str> {
    let text = match content {
        Content::Text(t) | Content::Sealed { text: t, .. } => t,
        _ => return None,
    };
    wants_markdown(text).then_some(text.as_str())
}

/// Whether `text` holds anything markdown shows differently from plain text: markup,
/// links, mentions, `:shortcodes:`, list items, or hidden characters it spells out.
pub fn wants_markdown(text: &str) -> bool {
    let markup = text
        .bytes()
        .any(|b| matches!(b, b'`' | b'*' | b'_' | b'~' | b'#' | b'>' | b'[' | b'|' | b'<' | b'&' | b'\\'));
    // Tabs too: the renderer lays them out, the plain path would not.
    let hidden = text.chars().any(|c| c == '\t' || markdown::is_hidden(c));
    let links = text.contains("://") || text.contains("www.") || text.contains("mailto:");
    let mention =
        text.match_indices('@').any(|(i, _)| text[i + 1..].starts_with(|c: char| c.is_ascii_alphanumeric()));
    let shortcode = text.split(':').skip(1).any(|w| {
        !w.is_empty()
            && w.len() <= 40
            && w.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
    }) && text.matches(':').count() >= 2;
    let list = text.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with("- ")
            || t.starts_with("+ ")
            || t.split_once(". ")
                .is_some_and(|(n, _)| !n.is_empty() && n.len() < 10 && n.bytes().all(|b| b.is_ascii_digit()))
    });
    markup || hidden || links || mention || shortcode || list
}

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Draws markdown message `id` whole with its top left at `at` (rows above the view are
/// clipped away); a direct message still being verified shows only that.
fn show_block(
    ui: &mut Ui,
    layout: &ConvLayout,
    c: &Conversation,
    id: MessageId,
    at: egui::Pos2,
    actions: &mut Vec<Action>,
) {
    let (Some(m), Some((_, r))) = (c.get(id), layout.rendered.get(&id)) else { return };
    let rect = egui::Rect::from_min_size(at, vec2(r.width(), r.height()));
    let builder = UiBuilder::new().id_salt(("block", id)).max_rect(rect);
    let mut child = ui.new_child(builder.layout(Layout::top_down(Align::Min)));
    if let Content::Sealed { .. } = m.content {
        child.horizontal(|ui| {
            ui.spinner();
            ui.label(RichText::new("verifying…").weak().italics());
        });
        return;
    }
    let clicked = child.push_id(("md", id), |ui| r.show(ui)).inner;
    for a in clicked {
        // Links are opened by the renderer itself; a mention opens a DM with that person.
        if let markdown::MdAction::Mention(name) = a {
            actions.push(Action::OpenDm(name));
        }
    }
}

/// Messages among `rows` whose signature has not been asked to be checked yet.
fn unchecked_ids(rows: &[Row], c: &Conversation) -> Vec<MessageId> {
    let mut ids: Vec<MessageId> = Vec::new();
    for row in rows {
        if let Some(id) = row_id(row)
            && ids.last() != Some(&id)
            && matches!(c.get(id).map(|m| &m.content), Some(Content::Sealed { requested: false, .. }))
        {
            ids.push(id);
        }
    }
    ids
}

/// Point size of safety numbers: big enough to read aloud or from across a lab.
const SAFETY_NUMBER_SIZE: f32 = 15.0;

/// A safety number (12 groups of 5 digits) as two lines of six groups.
pub fn safety_lines(number: &str) -> String {
    let groups: Vec<&str> = number.split(' ').collect();
    groups.chunks(6).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n")
}

/// The DM header's second part: the lock, the safety number, "mark as verified", and a
/// loud warning when the contact's key changed.
fn dm_header(ui: &mut Ui, model: &Model, user: &str, actions: &mut Vec<Action>) {
    use crate::e2e::KeyStatus;
    let warn = ui.visuals().warn_fg_color;
    let red = ui.visuals().error_fg_color;
    if let Some(KeyStatus::Missing(_) | KeyStatus::BackupUnreadable) = &model.key_status {
        let r = ui.label(
            RichText::new("🔓 Direct messages are unavailable: this computer has no key for them.")
                .color(red),
        );
        a11y_label(&r, "Direct messages are unavailable: no key on this computer");
        return;
    }
    let peer = model.peer(user);
    match peer {
        Some(p) if p.safety_number.is_some() => {
            let number = p.safety_number.clone().unwrap_or_default();
            ui.horizontal(|ui| {
                let (lock, hover) = if p.verified {
                    ("🔒 Encrypted · verified", "You compared the safety number with this person")
                } else {
                    ("🔒 Encrypted · not verified", "Compare the safety number with this person, then mark it verified")
                };
                let r = ui.label(RichText::new(lock).strong()).on_hover_text(hover);
                a11y_label(&r, if p.verified { "End-to-end encrypted, verified" } else { "End-to-end encrypted, not verified" });
                let r = ui.label(RichText::new(safety_lines(&number)).monospace().size(SAFETY_NUMBER_SIZE));
                a11y_label(&r, format!("Safety number with {user}: {number}"));
                if p.verified {
                    if ui.small_button("Unmark").on_hover_text("Mark the safety number as not verified").clicked() {
                        actions.push(Action::MarkVerified { peer: user.to_owned(), verified: false });
                    }
                } else {
                    let b = ui.button("✔ Mark as verified").on_hover_text(
                        "Do this after comparing the safety number with the other person (read it aloud or show it on the projector)",
                    );
                    if b.clicked() {
                        actions.push(Action::MarkVerified { peer: user.to_owned(), verified: true });
                    }
                }
            });
        }
        Some(p) if p.no_key => {
            let r = ui.label(
                RichText::new(format!(
                    "🔓 {user} has no encryption key yet: messages can be sent once they log in with an up-to-date app."
                ))
                .color(warn),
            );
            a11y_label(&r, format!("{user} has no encryption key yet"));
        }
        _ => {
            ui.label(RichText::new("🔒 Encrypted · getting the key…").weak());
        }
    }
    if let Some(new_number) = peer.and_then(|p| p.changed_to.clone()) {
        egui::Frame::new().fill(red.gamma_multiply(0.15)).inner_margin(6.0).corner_radius(4.0).show(
            ui,
            |ui| {
                ui.set_width(ui.available_width());
                let r = ui.label(
                    RichText::new(format!(
                        "⚠ {user}'s encryption key has changed. Compare the new safety number with {user} \
                     before you trust new messages; the app asks before sending anything."
                    ))
                    .color(red)
                    .strong(),
                );
                a11y_label(&r, format!("Warning: {user}'s key has changed"));
                ui.horizontal(|ui| {
                    let r = ui
                        .label(RichText::new(safety_lines(&new_number)).monospace().size(SAFETY_NUMBER_SIZE));
                    a11y_label(&r, format!("New safety number with {user}: {new_number}"));
                    if ui.button("Accept the new key").clicked() {
                        actions.push(Action::AcceptKey { peer: user.to_owned(), then_send: None });
                    }
                });
            },
        );
    }
}

fn header(ui: &mut Ui, model: &Model, c: &Conversation, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading(RichText::new(conv_title(&c.conv)).strong());
        match &c.conv {
            Conv::Room { name } => {
                if let Some(room) = model.rooms.get(name) {
                    if room.locked {
                        ui.label("🔒").on_hover_text("Joining needs the room password");
                    }
                    if !room.topic.is_empty() {
                        ui.label(RichText::new(&room.topic).weak());
                    }
                    ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                        if name != classchat_wire::DEFAULT_ROOM {
                            let leave = ui.button("Leave");
                            a11y_label(&leave, format!("Leave #{name}"));
                            if leave.clicked() {
                                actions.push(Action::LeaveRoom(name.clone()));
                            }
                        }
                        if model.is_room_admin(name) {
                            let settings = ui.button("⚙ Room settings");
                            if settings.clicked() {
                                actions.push(Action::OpenDialog(Dialog::RoomSettings(
                                    RoomSettingsForm::new(room),
                                )));
                                actions.push(Action::RoomAdmin(AdminOp::ListBans { room: name.clone() }));
                            }
                        }
                    });
                }
            }
            Conv::Direct { .. } => {
                ui.label(RichText::new("Direct message").weak().small());
            }
            Conv::Announcements => {
                ui.label(RichText::new("Messages to everyone on the server").weak());
            }
        }
    });
    if let Conv::Direct { user } = &c.conv {
        dm_header(ui, model, user, actions);
    }
    if let Some(removed) = &c.removed {
        let frame = egui::Frame::new()
            .fill(ui.visuals().error_fg_color.gamma_multiply(0.15))
            .inner_margin(6.0)
            .corner_radius(4.0);
        frame.show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(removed).color(ui.visuals().error_fg_color).strong());
        });
    }
}

/// Brings the rows up to date with the conversation: appends what is new, or rebuilds
/// when something changed above the end (history, a late message) or the width changed.
#[allow(clippy::too_many_arguments, reason = "what a layout depends on")]
fn update_layout(
    ctx: &egui::Context,
    layout: &mut ConvLayout,
    c: &Conversation,
    width_key: u32,
    wrap_width: f32,
    font: &FontId,
    tz: &jiff::tz::TimeZone,
    me: &str,
) {
    let font_size_key = font.size.to_bits();
    let msgs = c.messages();
    let md_key = (width_key, markdown::CacheKey::of(ctx), me.to_owned());
    if layout.md_key.as_ref() != Some(&md_key) {
        layout.rendered.clear();
        layout.rows.clear();
        layout.md_key = Some(md_key);
    }
    let rebuild = layout.rows.is_empty()
        || layout.generation != c.generation()
        || layout.width_key != width_key
        || layout.font_size_key != font_size_key
        || msgs.len() < layout.built_len;
    if !rebuild && msgs.len() == layout.built_len {
        return;
    }
    // To keep the view still when older messages appear above it.
    let anchor = if rebuild { first_message_row(&layout.rows) } else { None };
    if rebuild {
        layout.rows.clear();
        layout.rows.push(Row::Top);
        layout.last = None;
        layout.built_len = 0;
    }
    let new = &msgs[layout.built_len..];
    // Markdown is laid out before the font lock below (it takes the lock itself), and only
    // again when a message's text changed.
    let row_step = font_row_height(ctx, font) + ctx.global_style().spacing.item_spacing.y;
    let mut md_rows: HashMap<MessageId, u16> = HashMap::new();
    for m in new {
        let Some(text) = markdown_text(&m.content) else { continue };
        let hash = text_hash(text);
        let fresh = layout.rendered.get(&m.id).is_some_and(|(h, _)| *h == hash);
        if !fresh {
            let opts = markdown::Options { wrap_width, me, highlights: &[] };
            layout.rendered.insert(m.id, (hash, markdown::layout(ctx, text, &opts)));
        }
        if let Some((_, r)) = layout.rendered.get(&m.id) {
            let rows = ((r.height() + row_step - font_row_height(ctx, font)) / row_step).ceil().max(1.0);
            md_rows.insert(m.id, rows.min(f32::from(u16::MAX)) as u16);
        }
    }
    ctx.fonts_mut(|fonts| {
        let mut ascii = [0.0f32; 128];
        for (i, w) in ascii.iter_mut().enumerate() {
            *w = fonts.glyph_width(font, char::from(i as u8));
        }
        let mut width = |ch: char| {
            if ch.is_ascii() { ascii[ch as usize] } else { fonts.glyph_width(font, ch) }
        };
        for m in new {
            let md = md_rows.get(&m.id).copied();
            push_message(&mut layout.rows, &mut layout.last, m, md, wrap_width, &mut width, tz);
        }
    });
    layout.built_len = msgs.len();
    layout.generation = c.generation();
    layout.width_key = width_key;
    layout.font_size_key = font_size_key;
    if let Some((id, old_index)) = anchor
        && let Some(new_index) = layout.rows.iter().position(|r| row_id(r) == Some(id))
        && new_index > old_index
    {
        let row_h = font_row_height(ctx, font);
        let spacing = ctx.global_style().spacing.item_spacing.y;
        layout.pending_scroll =
            Some(layout.scroll_offset + (new_index - old_index) as f32 * (row_h + spacing));
    }
}

fn font_row_height(ctx: &egui::Context, font: &FontId) -> f32 {
    ctx.fonts_mut(|f| f.row_height(font))
}

fn row_id(row: &Row) -> Option<MessageId> {
    match row {
        Row::Top => None,
        Row::Day(id) | Row::Header(id) => Some(*id),
        Row::Line { id, .. }
        | Row::File(id)
        | Row::Thumb { id, .. }
        | Row::Reply(id)
        | Row::Footer(id)
        | Row::Block { id, .. } => Some(*id),
    }
}

fn first_message_row(rows: &[Row]) -> Option<(MessageId, usize)> {
    rows.iter().enumerate().find_map(|(i, r)| row_id(r).map(|id| (id, i)))
}

/// Adds the rows of `m`: `md_rows` rows of markdown when it is shown as markdown, wrapped
/// lines otherwise.
fn push_message(
    rows: &mut Vec<Row>,
    last: &mut Option<Last>,
    m: &Msg,
    md_rows: Option<u16>,
    wrap_width: f32,
    width: &mut impl FnMut(char) -> f32,
    tz: &jiff::tz::TimeZone,
) {
    let ts = i64::try_from(m.ts).unwrap_or(i64::MAX);
    let k = kind(&m.content);
    let new_day = last.as_ref().is_none_or(|l| !l.day.contains(&ts));
    let day = if new_day {
        rows.push(Row::Day(m.id));
        day_range(ts, tz)
    } else {
        last.as_ref().map(|l| l.day.clone()).unwrap_or(ts..ts + 1)
    };
    let is_file = matches!(m.content, Content::File(_));
    let grouped = !new_day
        && !is_file
        && k == Kind::Text
        && last.as_ref().is_some_and(|l| {
            l.kind == Kind::Text && l.from == m.from && m.ts.saturating_sub(l.ts) < GROUP_WINDOW_MS
        });
    if !grouped && k != Kind::System {
        rows.push(Row::Header(m.id));
    }
    let deleted = matches!(m.content, Content::Deleted(_));
    if m.meta.reply_to.is_some() && !deleted {
        rows.push(Row::Reply(m.id));
    }
    if let Content::File(f) = &m.content {
        rows.push(Row::File(m.id));
        if crate::files::is_image(&f.name) && f.size <= crate::files::MAX_THUMB_SOURCE {
            rows.extend((0..THUMB_ROWS).map(|part| Row::Thumb { id: m.id, part }));
        }
        // A file message ends a group: the next text gets its header back.
        if m.meta.has_footer() {
            rows.push(Row::Footer(m.id));
        }
        *last = Some(Last { from: String::new(), ts: m.ts, kind: k, day });
        return;
    }
    let text = m.content.text();
    let avail = if k == Kind::System { wrap_width - 16.0 } else { wrap_width };
    match md_rows {
        Some(n) => rows.extend((0..n).map(|part| Row::Block { id: m.id, part })),
        None => {
            for range in wrap_lines(text, avail, width) {
                rows.push(Row::Line { id: m.id, range: to_u32_range(range) });
            }
        }
    }
    if m.meta.has_footer() && !deleted {
        rows.push(Row::Footer(m.id));
    }
    *last = Some(Last { from: m.from.clone(), ts: m.ts, kind: k, day });
}

fn to_u32_range(r: Range<usize>) -> Range<u32> {
    // Message texts are bounded far below 4 GiB by the frame limit.
    u32::try_from(r.start).unwrap_or(u32::MAX)..u32::try_from(r.end).unwrap_or(u32::MAX)
}

/// The local day containing `ts` (milliseconds), as a half-open millisecond range.
fn day_range(ts: i64, tz: &jiff::tz::TimeZone) -> Range<i64> {
    let Ok(t) = jiff::Timestamp::from_millisecond(ts) else { return ts..ts.saturating_add(1) };
    let zoned = t.to_zoned(tz.clone());
    let start = zoned.start_of_day().map(|z| z.timestamp().as_millisecond()).unwrap_or(ts);
    let end = zoned
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(start.saturating_add(86_400_000));
    start..end
}

fn zoned(ts: Timestamp, tz: &jiff::tz::TimeZone) -> Option<jiff::Zoned> {
    let t = jiff::Timestamp::from_millisecond(i64::try_from(ts).ok()?).ok()?;
    Some(t.to_zoned(tz.clone()))
}

/// "14:05".
pub fn clock(ts: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    zoned(ts, tz).map(|z| z.strftime("%H:%M").to_string()).unwrap_or_default()
}

/// "Tuesday, 3 March 2026".
pub fn day_label(ts: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    zoned(ts, tz).map(|z| z.strftime("%A, %-d %B %Y").to_string()).unwrap_or_default()
}

/// Cuts `text` into lines no wider than `max_width`, breaking after spaces where it can
/// and inside a word only when the word alone is too wide. Newlines always break.
/// Returns byte ranges of `text`; an empty line is an empty range.
pub fn wrap_lines(text: &str, max_width: f32, width: &mut impl FnMut(char) -> f32) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for hard in text.split('\n') {
        let hard_start = offset;
        offset += hard.len() + 1;
        let line = hard.strip_suffix('\r').unwrap_or(hard);
        let end = hard_start + line.len();
        let mut start = hard_start;
        let mut w = 0.0;
        // The last place we may break (after a space), and the width from there on.
        let mut brk: Option<usize> = None;
        let mut w_since_brk = 0.0;
        for (i, ch) in line.char_indices() {
            let at = hard_start + i;
            let cw = if ch == '\t' { width(' ') * 4.0 } else { width(ch) };
            if w + cw > max_width && at > start {
                match brk {
                    Some(b) if b > start => {
                        out.push(start..b);
                        start = b;
                        w = w_since_brk;
                    }
                    _ => {
                        out.push(start..at);
                        start = at;
                        w = 0.0;
                    }
                }
                brk = None;
                w_since_brk = 0.0;
            }
            w += cw;
            w_since_brk += cw;
            if ch == ' ' {
                brk = Some(at + 1);
                w_since_brk = 0.0;
            }
        }
        out.push(start..end);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn show_row(
    ui: &mut Ui,
    row: &Row,
    c: &Conversation,
    model: &Model,
    files: &Files,
    tz: &jiff::tz::TimeZone,
    online: bool,
    actions: &mut Vec<Action>,
) {
    match row {
        // Drawn whole by `show_block`, at its first row on screen.
        Row::Block { .. } => {}
        Row::File(id) => {
            let Some(Content::File(f)) = c.get(*id).map(|m| &m.content) else { return };
            ui.add_space(INDENT);
            file_line(ui, f, &c.conv, files, online, actions);
        }
        Row::Thumb { id, part } => {
            let Some(Content::File(f)) = c.get(*id).map(|m| &m.content) else { return };
            match files.thumb(f.id) {
                None => {
                    if *part == 0 && online {
                        actions.push(Action::Thumbnail((**f).clone()));
                    }
                }
                Some(None) => {}
                Some(Some(texture)) => paint_thumb_slice(ui, texture, *part),
            }
        }
        Row::Reply(id) => {
            let Some(m) = c.get(*id) else { return };
            message_extras::reply_row(ui, c, m, INDENT, actions);
        }
        Row::Footer(id) => {
            let Some(m) = c.get(*id) else { return };
            message_extras::footer_row(ui, c, m, model, INDENT, tz, online, actions);
        }
        Row::Top => {
            let text = if c.loading_older {
                ui.spinner();
                "Loading older messages…".to_owned()
            } else if c.more_history {
                if online { "Scroll up for older messages".to_owned() } else { String::new() }
            } else {
                format!("This is the beginning of {}.", conv_title(&c.conv))
            };
            ui.label(RichText::new(text).weak().italics());
        }
        Row::Day(id) => {
            let Some(m) = c.get(*id) else { return };
            let text = day_label(m.ts, tz);
            let rect = ui.max_rect();
            let y = rect.center().y;
            let stroke = ui.visuals().widgets.noninteractive.bg_stroke;
            let galley_w = ui.fonts_mut(|f| {
                f.layout_no_wrap(text.clone(), TextStyle::Small.resolve(ui.style()), egui::Color32::WHITE)
                    .size()
                    .x
            });
            let mid = rect.center().x;
            ui.painter().hline(rect.left()..=mid - galley_w / 2.0 - 8.0, y, stroke);
            ui.painter().hline(mid + galley_w / 2.0 + 8.0..=rect.right(), y, stroke);
            ui.with_layout(Layout::centered_and_justified(egui::Direction::LeftToRight), |ui| {
                ui.label(RichText::new(text).small().weak());
            });
        }
        Row::Header(id) => {
            let Some(m) = c.get(*id) else { return };
            if let Content::Announcement(_) = m.content {
                paint_announcement_bg(ui);
                ui.label(
                    RichText::new(format!("📢 Announcement from {}", m.from)).strong().color(announce_fg(ui)),
                );
            } else {
                ui.label(RichText::new(&m.from).strong().color(name_color(ui, &m.from)));
            }
            ui.label(RichText::new(clock(m.ts, tz)).small().weak());
        }
        Row::Line { id, range } => {
            let Some(m) = c.get(*id) else { return };
            let text = m.content.text().get(range.start as usize..range.end as usize).unwrap_or_default();
            match &m.content {
                // Laid out as `Row::File`, never as lines.
                Content::File(_) => {}
                Content::Text(full) => {
                    let me = model.my_name().unwrap_or_default();
                    if !model.is_me(&m.from) && crate::model::mentions(full, me) {
                        let rect = ui.max_rect().expand2(vec2(0.0, ui.spacing().item_spacing.y / 2.0));
                        ui.painter().rect_filled(
                            rect,
                            0.0,
                            ui.visuals().selection.bg_fill.gamma_multiply(0.25),
                        );
                    }
                    ui.add_space(INDENT);
                    ui.add(egui::Label::new(text).wrap_mode(TextWrapMode::Truncate));
                }
                Content::Announcement(_) => {
                    paint_announcement_bg(ui);
                    ui.add_space(INDENT);
                    ui.add(
                        egui::Label::new(RichText::new(text).color(announce_fg(ui)))
                            .wrap_mode(TextWrapMode::Truncate),
                    );
                }
                Content::System(_) => {
                    ui.add_space(INDENT);
                    let prefix = if range.start == 0 { "» " } else { "   " };
                    ui.add(
                        egui::Label::new(RichText::new(format!("{prefix}{text}")).italics().weak())
                            .wrap_mode(TextWrapMode::Truncate),
                    )
                    .on_hover_text(clock(m.ts, tz));
                }
                Content::Unreadable(why) => {
                    ui.add_space(INDENT);
                    if range.start == 0 {
                        ui.add(
                            egui::Label::new(
                                RichText::new(format!("⚠ {why}")).color(ui.visuals().warn_fg_color),
                            )
                            .wrap_mode(TextWrapMode::Truncate),
                        );
                    }
                }
                Content::Deleted(_) => {
                    ui.add_space(INDENT);
                    let r = ui.add(
                        egui::Label::new(RichText::new(format!("🗑 {text}")).italics().weak())
                            .wrap_mode(TextWrapMode::Truncate),
                    );
                    a11y_label(&r, text);
                }
                Content::Sealed { .. } => {
                    // Not shown until the sender's signature checked out.
                    ui.add_space(INDENT);
                    if range.start == 0 {
                        ui.spinner();
                        ui.label(RichText::new("verifying…").weak().italics());
                    }
                }
            }
        }
    }
}

fn announce_fg(ui: &Ui) -> egui::Color32 {
    if ui.visuals().dark_mode {
        egui::Color32::from_rgb(0xff, 0xd5, 0x80)
    } else {
        egui::Color32::from_rgb(0x7a, 0x4b, 0x00)
    }
}

fn paint_announcement_bg(ui: &mut Ui) {
    let fill = if ui.visuals().dark_mode {
        egui::Color32::from_rgb(0x4a, 0x3b, 0x10)
    } else {
        egui::Color32::from_rgb(0xff, 0xf1, 0xc7)
    };
    let rect = ui.max_rect().expand2(vec2(0.0, ui.spacing().item_spacing.y / 2.0));
    ui.painter().rect_filled(rect, 0.0, fill);
}

/// Display rows of the messages still on their way.
#[derive(Debug)]
enum PendingRow {
    Header(u64),
    Line { local_id: u64, range: Range<usize> },
}

fn pending_rows(ctx: &egui::Context, c: &Conversation, wrap_width: f32, font: &FontId) -> Vec<PendingRow> {
    if c.pending.is_empty() {
        return Vec::new();
    }
    ctx.fonts_mut(|fonts| {
        let mut width = |ch: char| fonts.glyph_width(font, ch);
        let mut rows = Vec::new();
        for p in &c.pending {
            rows.push(PendingRow::Header(p.local_id));
            for range in wrap_lines(&p.text, wrap_width, &mut width) {
                rows.push(PendingRow::Line { local_id: p.local_id, range });
            }
        }
        rows
    })
}

fn show_pending_row(
    ui: &mut Ui,
    row: &PendingRow,
    c: &Conversation,
    model: &Model,
    actions: &mut Vec<Action>,
) {
    match row {
        PendingRow::Header(local_id) => {
            let Some(p) = c.pending.iter().find(|p| p.local_id == *local_id) else { return };
            let me = model.my_name().unwrap_or("you");
            ui.label(RichText::new(me).strong().color(name_color(ui, me)));
            match &p.state {
                PendingState::Sending => {
                    ui.label(RichText::new("⏳ sending…").small().weak());
                }
                PendingState::WaitingForConnection => {
                    ui.label(
                        RichText::new("⏳ not sent yet: goes out when the connection is back")
                            .small()
                            .color(ui.visuals().warn_fg_color),
                    );
                }
                PendingState::Failed(reason) => {
                    ui.label(
                        RichText::new(format!("⚠ not sent: {reason}"))
                            .small()
                            .color(ui.visuals().error_fg_color),
                    );
                    if ui.small_button("Retry").clicked() {
                        actions.push(Action::RetryPending(*local_id));
                    }
                    if ui.small_button("Edit").on_hover_text("Put the text back in the composer").clicked() {
                        actions.push(Action::DiscardPending(*local_id));
                    }
                }
            }
        }
        PendingRow::Line { local_id, range } => {
            let Some(p) = c.pending.iter().find(|p| p.local_id == *local_id) else { return };
            let text = p.text.get(range.clone()).unwrap_or_default();
            ui.add_space(INDENT);
            let r = ui.add(egui::Label::new(RichText::new(text).weak()).wrap_mode(TextWrapMode::Truncate));
            let state = match p.state {
                PendingState::Sending => "sending",
                PendingState::WaitingForConnection => "waiting for connection",
                PendingState::Failed(_) => "not sent",
            };
            a11y_label(&r, format!("{text} ({state})"));
        }
    }
}

/// Paints part `part` of a thumbnail that spans [`THUMB_ROWS`] rows: each row shows its
/// horizontal slice of the image, so the picture stays whole while the view scrolls.
fn paint_thumb_slice(ui: &mut Ui, texture: &egui::TextureHandle, part: u8) {
    let spacing = ui.spacing().item_spacing.y;
    let rect = ui.max_rect().expand2(vec2(0.0, spacing / 2.0));
    let full_h = rect.height() * f32::from(THUMB_ROWS);
    let [w, h] = texture.size();
    let scale = (full_h / h.max(1) as f32).min(1.0);
    let (img_w, img_h) = (w as f32 * scale, h as f32 * scale);
    // Centred vertically in the rows' height.
    let top_pad = (full_h - img_h) / 2.0;
    let y0 = rect.top() - f32::from(part) * rect.height();
    let img_rect =
        egui::Rect::from_min_size(egui::pos2(rect.left() + INDENT, y0 + top_pad), vec2(img_w, img_h));
    let visible = img_rect.intersect(rect);
    if visible.height() <= 0.0 {
        return;
    }
    let uv = egui::Rect::from_min_max(
        egui::pos2(0.0, (visible.top() - img_rect.top()) / img_h),
        egui::pos2(1.0, (visible.bottom() - img_rect.top()) / img_h),
    );
    ui.painter().image(texture.id(), visible, uv, egui::Color32::WHITE);
    if part == 0 {
        ui.allocate_rect(visible, Sense::hover()).on_hover_text("Image preview");
    }
}

/// The buttons of a file that can be downloaded: Download, or the download's progress,
/// or Open and Show in folder once it is saved.
fn file_buttons(
    ui: &mut Ui,
    f: &classchat_wire::FileInfo,
    conv: &Conv,
    files: &Files,
    online: bool,
    actions: &mut Vec<Action>,
) {
    match files.download_of(f.id) {
        Some(t) if t.is_running() => {
            ui.add(egui::ProgressBar::new(t.fraction()).desired_width(120.0).show_percentage());
            if ui.small_button("Cancel").clicked() {
                actions.push(Action::CancelTransfer(t.id));
            }
        }
        Some(t) if t.state == TransferState::Done => {
            let open = ui.small_button("Open");
            a11y_label(&open, format!("Open {}", f.name));
            if open.clicked() {
                actions.push(Action::OpenPath(t.path.clone()));
            }
            if ui.small_button("Show in folder").clicked() {
                actions.push(Action::ShowInFolder(t.path.clone()));
            }
        }
        Some(t) if matches!(t.state, TransferState::Exists) => {
            ui.label(
                RichText::new("already exists: see Transfers").small().color(ui.visuals().warn_fg_color),
            );
        }
        _ => {
            let b = ui.add_enabled(online, egui::Button::new("⬇ Download").small());
            a11y_label(&b, format!("Download {}", f.name));
            if b.clicked() {
                actions.push(Action::Download { file: f.clone(), conv: conv.clone() });
            }
        }
    }
}

fn file_icon(name: &str) -> &'static str {
    if crate::files::is_image(name) { "🖼" } else { "📄" }
}

fn file_line(
    ui: &mut Ui,
    f: &classchat_wire::FileInfo,
    conv: &Conv,
    files: &Files,
    online: bool,
    actions: &mut Vec<Action>,
) {
    let r = ui.label(RichText::new(format!("{} {}", file_icon(&f.name), f.name)).strong());
    a11y_label(&r, format!("File {} ({}) from {}", f.name, human_size(f.size), f.from));
    ui.label(RichText::new(human_size(f.size)).small().weak());
    file_buttons(ui, f, conv, files, online, actions);
}

fn show_offer_row(ui: &mut Ui, o: &Offer, files: &Files, online: bool, actions: &mut Vec<Action>) {
    let f = &o.file;
    let size = human_size(f.size);
    if o.incoming {
        if let OfferSeal::Unverified(why) = &o.seal {
            let text = format!("⚠ {} offered a file that could not be verified ({why})", o.peer);
            let r = ui.label(RichText::new(&text).color(ui.visuals().warn_fg_color));
            a11y_label(&r, text);
            if o.state == OfferState::Pending {
                let decline = ui.add_enabled(online, egui::Button::new("Decline").small());
                a11y_label(&decline, "Decline the unverified file");
                if decline.clicked() {
                    actions.push(Action::DeclineOffer(f.clone()));
                }
            }
            return;
        }
        let r = ui.label(RichText::new(format!("📎 {} offers you {} ({size})", o.peer, f.name)).strong());
        a11y_label(&r, format!("{} offers you {} ({size})", o.peer, f.name));
        if o.seal == OfferSeal::Plain {
            let r = ui.label(RichText::new("not end-to-end encrypted").small().weak());
            a11y_label(&r, format!("{} is not end-to-end encrypted", f.name));
        }
        match o.state {
            OfferState::Pending => {
                let accept = ui.add_enabled(online, egui::Button::new("Accept…").small());
                a11y_label(&accept, format!("Accept {}", f.name));
                if accept.clicked() {
                    actions.push(Action::AcceptOffer(f.clone()));
                }
                let decline = ui.add_enabled(online, egui::Button::new("Decline").small());
                a11y_label(&decline, format!("Decline {}", f.name));
                if decline.clicked() {
                    actions.push(Action::DeclineOffer(f.clone()));
                }
            }
            OfferState::Accepted => {
                let conv = Conv::direct(o.peer.as_str());
                file_buttons(ui, f, &conv, files, online, actions);
            }
            OfferState::Declined => {
                ui.label(RichText::new("declined").small().weak());
            }
        }
    } else {
        let upload = files.transfers().rev().find(|t| t.dir == Direction::Up && t.file_id == Some(f.id));
        let status = match (o.state, upload) {
            (OfferState::Accepted, _) => format!("{} accepted", o.peer),
            (OfferState::Declined, _) => format!("{} declined", o.peer),
            (OfferState::Pending, Some(t)) if t.is_running() => "uploading…".to_owned(),
            (OfferState::Pending, _) => format!("waiting for {} to answer", o.peer),
        };
        let r = ui.label(RichText::new(format!("📎 You offered {} ({size})", f.name)).strong());
        a11y_label(&r, format!("You offered {} to {}", f.name, o.peer));
        let s = ui.label(RichText::new(&status).small().weak());
        a11y_label(&s, format!("{}: {status}", f.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(text: &str, max: f32) -> Vec<&str> {
        // Every character is 1 point wide.
        wrap_lines(text, max, &mut |_| 1.0).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn wraps_at_spaces_and_keeps_every_byte() {
        assert_eq!(wrap("hello world", 20.0), ["hello world"]);
        assert_eq!(wrap("hello world again", 11.0), ["hello ", "world again"]);
        assert_eq!(wrap("hello world again", 8.0), ["hello ", "world ", "again"]);
    }

    #[test]
    fn long_words_break_inside_and_newlines_always_break() {
        assert_eq!(wrap("abcdefghij", 4.0), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\n\nb\r\nc", 10.0), ["a", "", "b", "c"]);
        assert_eq!(wrap("", 10.0), [""]);
        assert_eq!(wrap("ünïcödé wörds", 8.0), ["ünïcödé ", "wörds"]);
    }

    #[test]
    fn rows_group_messages_and_separate_days() {
        let tz = jiff::tz::TimeZone::UTC;
        let day = 86_400_000;
        let msg = |id, from: &str, ts, content| Msg::new(id, from, ts, content);
        let msgs = [
            msg(1, "ann", day + 1000, Content::Text("one".into())),
            msg(2, "ann", day + 2000, Content::Text("two".into())),
            msg(3, "bob", day + 3000, Content::System("bob joined".into())),
            msg(4, "bob", day + 4000, Content::Text("hi".into())),
            msg(5, "bob", 2 * day + 10, Content::Text("next day".into())),
        ];
        let mut rows = Vec::new();
        let mut last = None;
        for m in &msgs {
            push_message(&mut rows, &mut last, m, None, 100.0, &mut |_| 1.0, &tz);
        }
        let line = |id, len| Row::Line { id, range: 0..len };
        assert_eq!(
            rows,
            [
                Row::Day(1),
                Row::Header(1),
                line(1, 3),
                line(2, 3),
                line(3, 10),
                Row::Header(4),
                line(4, 2),
                Row::Day(5),
                Row::Header(5),
                line(5, 8),
            ]
        );
    }

    #[test]
    fn day_ranges_cover_the_local_day() {
        let tz = jiff::tz::TimeZone::UTC;
        let r = day_range(86_400_000 + 5, &tz);
        assert_eq!(r, 86_400_000..2 * 86_400_000);
        assert_eq!(clock(86_400_000 + 3_600_000 * 14 + 60_000 * 5, &tz), "14:05");
        assert_eq!(day_label(0, &tz), "Thursday, 1 January 1970");
    }
}
