//! Emoji: the picker, `:shortcode` completion for the composer, and the quick reactions.
//! Only emoji that the bundled fonts draw are offered (egui's monochrome emoji fonts
//! lack most sequences: flags, skin tones, ZWJ families).

use std::collections::HashSet;
use std::sync::OnceLock;

use egui::{RichText, ScrollArea, Ui};

/// The reactions offered in one click under a message (all drawn by the bundled fonts).
pub const QUICK_REACTIONS: [&str; 6] = ["👍", "❤", "😂", "🎉", "😮", "👀"];

/// Recently used emoji kept by a picker (most recent first).
pub const MAX_RECENT: usize = 24;
/// Results shown for a search in the picker.
const MAX_RESULTS: usize = 120;
/// Size of an emoji in the picker's grid.
const CELL: f32 = 28.0;

/// An emoji the fonts draw: the text to insert, its name and its first shortcode.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub emoji: &'static str,
    pub name: &'static str,
    pub group: emojis::Group,
    source: &'static emojis::Emoji,
}

impl Entry {
    pub fn shortcodes(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.source.shortcodes()
    }
}

/// Every emoji the bundled fonts draw, in Unicode's order, with variation selectors
/// (U+FE0F) removed: the fonts have no glyph for them and egui would draw a box.
pub fn drawable() -> &'static [Entry] {
    static LIST: OnceLock<Vec<Entry>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut fonts = egui::epaint::text::Fonts::new(
            egui::epaint::text::TextOptions::default(),
            egui::FontDefinitions::default(),
        );
        let mut view = fonts.with_pixels_per_point(1.0);
        let font = egui::FontId::proportional(14.0);
        emojis::iter()
            .filter_map(|e| {
                let text = e.as_str();
                let bare: String = text.chars().filter(|c| *c != '\u{FE0F}').collect();
                let single = bare.chars().count() == 1;
                (single && view.has_glyphs(&font, &bare)).then(|| Entry {
                    emoji: leak_bare(text, &bare),
                    name: e.name(),
                    group: e.group(),
                    source: e,
                })
            })
            .collect()
    })
}

/// Whether the bundled fonts draw `emoji` (one of [`drawable`]).
pub fn is_drawable(emoji: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| drawable().iter().map(|e| e.emoji).collect()).contains(emoji)
}

/// The emoji text without U+FE0F, as a `'static` str: a suffix-free prefix of the
/// `emojis` string when it is one (nearly always), else the bare form kept once.
fn leak_bare(full: &'static str, bare: &str) -> &'static str {
    if full.starts_with(bare) {
        &full[..bare.len()]
    } else {
        // A selector in the middle (never in the current data); the char itself is
        // in the first position, so take it from there.
        let end = full.char_indices().nth(1).map_or(full.len(), |(i, _)| i);
        &full[..end]
    }
}

/// Shortcodes starting with `prefix` (without the colon), with their emoji: exact match
/// first, then shorter codes first. For the composer's `:tad` completion.
pub fn complete_shortcode(prefix: &str, max: usize) -> Vec<(&'static str, &'static str)> {
    let prefix = prefix.trim_start_matches(':').to_ascii_lowercase();
    if prefix.is_empty() || max == 0 {
        return Vec::new();
    }
    let mut found: Vec<(&'static str, &'static str)> = drawable()
        .iter()
        .flat_map(|e| e.shortcodes().filter(|s| s.starts_with(&prefix)).map(|s| (s, e.emoji)))
        .collect();
    found.sort_by_key(|(code, _)| (code.len(), *code));
    found.truncate(max);
    found
}

/// What a picker keeps between frames.
#[derive(Debug, Clone, Default)]
pub struct PickerState {
    pub query: String,
    /// Most recent first, at most [`MAX_RECENT`].
    pub recent: Vec<String>,
}

impl PickerState {
    /// Puts `emoji` first in the recently used.
    pub fn used(&mut self, emoji: &str) {
        self.recent.retain(|e| e != emoji);
        self.recent.insert(0, emoji.to_owned());
        self.recent.truncate(MAX_RECENT);
    }
}

fn group_name(g: emojis::Group) -> &'static str {
    match g {
        emojis::Group::SmileysAndEmotion => "Smileys & emotion",
        emojis::Group::PeopleAndBody => "People & body",
        emojis::Group::AnimalsAndNature => "Animals & nature",
        emojis::Group::FoodAndDrink => "Food & drink",
        emojis::Group::TravelAndPlaces => "Travel & places",
        emojis::Group::Activities => "Activities",
        emojis::Group::Objects => "Objects",
        emojis::Group::Symbols => "Symbols",
        emojis::Group::Flags => "Flags",
    }
}

/// A row of the picker's list: a heading or up to [`PER_ROW`] emoji.
enum Row<'a> {
    Heading(&'static str),
    Emoji(&'a [Entry]),
}

/// Emoji in a row of the picker.
const PER_ROW: usize = 8;

/// The picker's rows: headings and emoji rows, so the list scrolls through `show_rows`
/// (only the visible rows are built; there are over a thousand emoji).
fn rows<'a>(groups: &'a [(&'static str, Vec<Entry>)]) -> Vec<Row<'a>> {
    let mut out = Vec::new();
    for (name, entries) in groups.iter().filter(|(_, e)| !e.is_empty()) {
        out.push(Row::Heading(name));
        out.extend(entries.chunks(PER_ROW).map(Row::Emoji));
    }
    out
}

/// The body of an emoji picker (the caller puts it in a popup): a search field, the
/// recently used, then every group in a scrolling grid. Returns the emoji clicked, and
/// records it in `state.recent`.
pub fn picker(ui: &mut Ui, state: &mut PickerState) -> Option<String> {
    let mut picked = None;
    ui.set_width(PER_ROW as f32 * CELL + 16.0);
    let search = ui.add(
        egui::TextEdit::singleline(&mut state.query).hint_text("Search emoji").desired_width(f32::INFINITY),
    );
    super::a11y_label(&search, "Search emoji");
    let query = state.query.trim().to_ascii_lowercase();
    let all = drawable();
    let mut groups: Vec<(&'static str, Vec<Entry>)> = Vec::new();
    if query.is_empty() {
        let recent =
            state.recent.iter().filter_map(|r| all.iter().find(|e| e.emoji == r.as_str())).copied().collect();
        groups.push(("Recently used", recent));
        for e in all {
            match groups.last_mut() {
                Some((name, list)) if *name == group_name(e.group) => list.push(*e),
                _ => groups.push((group_name(e.group), vec![*e])),
            }
        }
    } else {
        let found = all
            .iter()
            .filter(|e| e.name.contains(&query) || e.shortcodes().any(|s| s.contains(&query)))
            .take(MAX_RESULTS)
            .copied()
            .collect();
        groups.push(("Found", found));
    }
    let rows = rows(&groups);
    if rows.is_empty() {
        ui.label(RichText::new("No emoji found").weak());
    }
    ScrollArea::vertical().max_height(PER_ROW as f32 * CELL).auto_shrink([false, true]).show_rows(
        ui,
        CELL,
        rows.len(),
        |ui, range| {
            ui.spacing_mut().item_spacing = egui::vec2(0.0, 0.0);
            for row in &rows[range] {
                match row {
                    Row::Heading(name) => {
                        // Exactly one row high, as show_rows counts.
                        let (rect, _) = ui.allocate_exact_size(
                            egui::vec2(ui.available_width(), CELL),
                            egui::Sense::hover(),
                        );
                        let text = rect.with_min_y(rect.bottom() - CELL * 0.6);
                        let layout = egui::Layout::left_to_right(egui::Align::Center);
                        ui.scope_builder(egui::UiBuilder::new().max_rect(text).layout(layout), |ui| {
                            ui.label(RichText::new(*name).small().weak());
                        });
                    }
                    Row::Emoji(entries) => {
                        ui.horizontal(|ui| {
                            for e in *entries {
                                if emoji_button(ui, e) {
                                    picked = Some(e.emoji.to_owned());
                                }
                            }
                        });
                    }
                }
            }
        },
    );
    if let Some(p) = &picked {
        state.used(p);
    }
    picked
}

/// One emoji of the grid; true when clicked.
fn emoji_button(ui: &mut Ui, e: &Entry) -> bool {
    let b = egui::Button::new(RichText::new(e.emoji).size(CELL * 0.65))
        .frame(false)
        .min_size(egui::vec2(CELL, CELL));
    let r = ui.add(b);
    super::a11y_label(&r, e.name);
    let tip = e.shortcodes().next().map_or_else(|| e.name.to_owned(), |s| format!(":{s}:  {}", e.name));
    r.on_hover_text(tip).clicked()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_reactions_and_common_emoji_are_drawable() {
        let all = drawable();
        assert!(all.len() > 300, "only {} drawable emoji", all.len());
        for q in QUICK_REACTIONS {
            assert!(all.iter().any(|e| e.emoji == q), "{q} is not drawable");
        }
        assert!(all.iter().all(|e| !e.emoji.contains('\u{FE0F}') && e.emoji.chars().count() == 1));
    }

    #[test]
    fn shortcodes_complete_by_prefix() {
        let tada = complete_shortcode("tad", 5);
        assert_eq!(tada.first(), Some(&("tada", "🎉")));
        let thumbs = complete_shortcode(":thumbs", 10);
        assert!(thumbs.iter().any(|(c, e)| *c == "thumbsup" && *e == "👍"), "{thumbs:?}");
        assert!(complete_shortcode("", 5).is_empty());
        assert!(complete_shortcode("zzzzqqq", 5).is_empty());
        assert!(complete_shortcode("s", 3).len() <= 3);
    }

    #[test]
    fn recent_is_most_recent_first_and_bounded() {
        let mut s = PickerState::default();
        for e in ["a", "b", "a"] {
            s.used(e);
        }
        assert_eq!(s.recent, ["a", "b"]);
        for i in 0..100 {
            s.used(&i.to_string());
        }
        assert_eq!(s.recent.len(), MAX_RECENT);
    }
}
