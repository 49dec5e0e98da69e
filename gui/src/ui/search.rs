//! Message search: the box at the top of the sidebar (everywhere), Ctrl+F (the open
//! conversation), and the panel with the results, the matches highlighted. Clicking a
//! result opens its conversation at that message.

use classchat_wire::Conv;
use egui::text::{LayoutJob, TextFormat};
use egui::{Key, RichText, Sense, TextEdit, Ui};

use crate::action::Action;
use crate::model::Model;
use crate::rich::{Hit, RichAction, RichState};
use crate::ui::{a11y_label, conv_title};

/// The accessible name of the query field in the panel.
pub const QUERY_FIELD: &str = "Search messages";
/// Characters of a result's text shown around its first match.
const SNIPPET_CHARS: usize = 160;

fn act(actions: &mut Vec<Action>, a: RichAction) {
    actions.push(Action::Rich(a));
}

/// The search box at the top of the sidebar: Enter searches everywhere.
pub fn global_box(ui: &mut Ui, rich: &mut RichState) -> Vec<Action> {
    let mut actions = Vec::new();
    let r = ui.add(
        TextEdit::singleline(&mut rich.search.global_query)
            .id_salt("global_search")
            .hint_text("🔍 Search messages")
            .desired_width(ui.available_width()),
    );
    a11y_label(&r, "Search all messages");
    if r.lost_focus()
        && ui.input(|i| i.key_pressed(Key::Enter))
        && !rich.search.global_query.trim().is_empty()
    {
        let query = rich.search.global_query.trim().to_owned();
        act(&mut actions, RichAction::SearchFor { scope: None, query });
    }
    actions
}

/// The results panel, on the right while a search is open.
pub fn side_panel(ui: &mut Ui, model: &Model, rich: &mut RichState, tz: &jiff::tz::TimeZone) -> Vec<Action> {
    let mut actions = Vec::new();
    if !rich.search.open {
        return actions;
    }
    egui::Panel::right("search").resizable(true).default_size(320.0).min_size(240.0).show(ui, |ui| {
        body(ui, model, rich, tz, &mut actions);
    });
    actions
}

fn body(
    ui: &mut Ui,
    model: &Model,
    rich: &mut RichState,
    tz: &jiff::tz::TimeZone,
    actions: &mut Vec<Action>,
) {
    let s = &mut rich.search;
    ui.horizontal(|ui| {
        ui.heading("Search");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let close = ui.small_button("✖").on_hover_text("Close (Esc)");
            a11y_label(&close, "Close the search");
            if close.clicked() {
                act(actions, RichAction::CloseSearch);
            }
        });
    });
    let current = model.current.clone();
    ui.horizontal(|ui| {
        if let Some(conv) = &current {
            let here = s.scope.as_ref() == Some(conv);
            let b = ui.selectable_label(here, format!("In {}", conv_title(conv)));
            if b.clicked() && !here {
                act(actions, RichAction::SearchFor { scope: Some(conv.clone()), query: s.query.clone() });
            }
        }
        let b = ui.selectable_label(s.scope.is_none(), "Everywhere");
        if b.clicked() && s.scope.is_some() {
            act(actions, RichAction::SearchFor { scope: None, query: s.query.clone() });
        }
    });
    let r = ui.add(
        TextEdit::singleline(&mut s.query)
            .id_salt("search_query")
            .hint_text("Words to find (Enter)")
            .desired_width(ui.available_width()),
    );
    a11y_label(&r, QUERY_FIELD);
    if s.focus {
        r.request_focus();
        s.focus = false;
    }
    if r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
        act(actions, RichAction::Search { more: false });
    }
    if ui.input(|i| i.key_pressed(Key::Escape)) && (r.has_focus() || r.lost_focus()) {
        act(actions, RichAction::CloseSearch);
    }
    if let Some(e) = &s.error {
        ui.label(RichText::new(format!("⚠ {e}")).color(ui.visuals().error_fg_color));
    }
    if let Some(ran) = &s.ran {
        let n = s.hits.len();
        let status = match (s.busy, n) {
            (true, _) => format!("Searching for “{ran}”…"),
            (false, 0) => format!("Nothing found for “{ran}”."),
            (false, 1) => format!("1 message for “{ran}”"),
            (false, n) => format!("{n}{} messages for “{ran}”", if s.more { "+" } else { "" }),
        };
        let r = ui.label(RichText::new(&status).small().weak());
        a11y_label(&r, status);
        let dms = matches!(s.scope, None | Some(Conv::Direct { .. }));
        if dms {
            ui.label(
                RichText::new(format!(
                    "Direct messages are end-to-end encrypted, so they are searched on this computer ({} loaded).",
                    s.local_searched
                ))
                .small()
                .weak(),
            );
        }
    }
    ui.separator();
    let hits = s.hits.clone();
    let more = s.more && !s.busy;
    egui::ScrollArea::vertical().id_salt("search_results").auto_shrink([false, false]).show(ui, |ui| {
        for (i, hit) in hits.iter().enumerate() {
            result(ui, i, hit, tz, actions);
        }
        if more {
            let b = ui.button("More results");
            if b.clicked() {
                act(actions, RichAction::Search { more: true });
            }
        }
    });
}

fn result(ui: &mut Ui, index: usize, hit: &Hit, tz: &jiff::tz::TimeZone, actions: &mut Vec<Action>) {
    let frame = egui::Frame::group(ui.style()).inner_margin(6.0);
    let inner = frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(RichText::new(conv_title(&hit.conv)).small().strong());
            ui.label(RichText::new(&hit.from).small());
            let when = format!(
                "{} {}",
                crate::ui::chat_view::day_label(hit.ts, tz),
                crate::ui::chat_view::clock(hit.ts, tz)
            );
            ui.label(RichText::new(when).small().weak());
        });
        let job = snippet_job(ui, &hit.text, &hit.highlights);
        ui.add(egui::Label::new(job).wrap());
    });
    let r = ui.interact(inner.response.rect, ui.scope_id().with(("hit", index)), Sense::click());
    let r = r
        .on_hover_cursor(egui::CursorIcon::PointingHand)
        .on_hover_text("Open the conversation at this message");
    a11y_label(
        &r,
        format!(
            "Result in {} from {}: {}",
            conv_title(&hit.conv),
            hit.from,
            crate::rich::preview(&hit.text, 80)
        ),
    );
    if r.clicked() {
        act(actions, RichAction::JumpTo { conv: hit.conv.clone(), id: hit.id });
    }
}

/// The text around the first match, the matches on a highlighted background. Control
/// and direction-changing characters are shown as visible marks, never obeyed.
fn snippet_job(ui: &Ui, text: &str, highlights: &[(u32, u32)]) -> LayoutJob {
    let (start, end) = snippet_window(text, highlights);
    let font = egui::TextStyle::Body.resolve(ui.style());
    let normal = TextFormat { font_id: font.clone(), color: ui.visuals().text_color(), ..Default::default() };
    let marked = TextFormat {
        font_id: font,
        color: ui.visuals().strong_text_color(),
        background: ui.visuals().selection.bg_fill.gamma_multiply(0.6),
        ..Default::default()
    };
    let mut job = LayoutJob::default();
    let mut at = start;
    if start > 0 {
        job.append("…", 0.0, normal.clone());
    }
    for (a, b) in highlights.iter().map(|(a, b)| (*a as usize, *b as usize)) {
        if b <= at || a >= end {
            continue;
        }
        let (a, b) = (a.max(at), b.min(end));
        job.append(&harmless(&text[at..a]), 0.0, normal.clone());
        job.append(&harmless(&text[a..b]), 0.0, marked.clone());
        at = b;
    }
    job.append(&harmless(&text[at..end]), 0.0, normal.clone());
    if end < text.len() {
        job.append("…", 0.0, normal);
    }
    job
}

/// Byte range of `text` to show: about [`SNIPPET_CHARS`] characters starting a little
/// before the first match, on character boundaries.
fn snippet_window(text: &str, highlights: &[(u32, u32)]) -> (usize, usize) {
    let first = highlights.first().map_or(0, |(a, _)| *a as usize).min(text.len());
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let pos = starts.partition_point(|i| *i < first);
    let from = pos.saturating_sub(40);
    let start = if from == 0 { 0 } else { starts[from] };
    let end = starts.get(from + SNIPPET_CHARS).copied().unwrap_or(text.len());
    (start, end)
}

/// Newlines become spaces; control and bidirectional-override characters become
/// visible marks, so a result cannot reorder or hide its text.
pub fn harmless(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if crate::ui::markdown::is_hidden(c) => '�',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_start_near_the_first_match_on_char_boundaries() {
        let text = format!("{}needle{}", "é".repeat(100), "x".repeat(500));
        let at = text.find("needle").unwrap_or_default() as u32;
        let (start, end) = snippet_window(&text, &[(at, at + 6)]);
        assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
        assert!(start < at as usize && (at as usize) < end);
        assert_eq!(text[start..end].chars().count(), SNIPPET_CHARS);
    }

    #[test]
    fn bidi_and_control_characters_are_shown_not_obeyed() {
        assert_eq!(harmless("a\u{202E}b\u{0007}c\nd"), "a�b�c d");
    }
}
