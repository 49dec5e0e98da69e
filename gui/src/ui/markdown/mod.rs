//! Message text as people expect it: CommonMark (bold, italic, strikethrough, inline
//! code, lists, quotes, links, headings, rules, fenced code with syntax highlighting and
//! a Copy button), bare URLs, @mentions and `:shortcode:` emoji.
//!
//! One entry point in two steps, because the chat view virtualises and must know a
//! message's height before drawing it:
//! - [`layout`] parses and lays out a message once for a width (every galley, the code
//!   highlighting, the link areas): cache the [`Rendered`] by [`CacheKey`].
//! - [`Rendered::show`] paints it at the cursor in exactly `wrap_width × height()` and
//!   returns what the user clicked.
//!
//! A message without markdown looks as plain text does: the Body font, one row of
//! `text_style_height(Body)` per line.
//!
//! Links: only http, https and mailto URLs become links ([`inline::url_allowed`]);
//! any other link shows its text as plain text. `show` opens a clicked link itself
//! (`ctx.open_url`) and also returns [`MdAction::OpenUrl`], for the caller's information
//! only: the caller must not open it again.
//!
//! Bad input is bounded in [`parse`]'s limits (source bytes, nesting depth, blocks, runs,
//! code lines) and in [`layout`]'s row budget, so the time and the height are bounded
//! whatever the message. Control and bidi characters are spelled out (`[U+202E]`).
//!
//! # Layout
//! - `doc.rs`: the parsed message (blocks, styled runs, source map).
//! - `parse.rs`: pulldown-cmark events to those blocks; the limits.
//! - `inline.rs`: bare URLs, mentions, shortcodes; hidden characters; allowed URLs.
//! - `highlight.rs`: syntect highlighting of code blocks; search-hit backgrounds.
//! - `layout.rs`: blocks to galleys and positions ([`Rendered`]).
//! - `show.rs`: painting and interaction.

mod doc;
mod highlight;
mod inline;
mod layout;
mod parse;
mod show;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use egui::{Galley, Rect, Vec2};

pub use inline::{is_hidden, url_allowed};
pub use parse::{CODE_MAX_LINE_CHARS, CODE_MAX_LINES, MAX_BLOCKS, MAX_DEPTH, MAX_SOURCE};

/// Rows (of text and code, blank lines included) one message may take; past this the
/// rest is counted in a note. Bounds the height of any message (about four screens).
pub const MAX_ROWS: usize = 200;

/// What [`layout`] needs besides the text.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Width available to the message, in points.
    pub wrap_width: f32,
    /// The user's own name: mentions of it are marked strongly.
    pub me: &'a str,
    /// Byte ranges of the source text to mark as search hits (may be empty).
    pub highlights: &'a [(u32, u32)],
}

/// What the user did in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum MdAction {
    /// A link (http, https or mailto) was clicked and has been opened already.
    OpenUrl(String),
    /// A mention was clicked: the user name, without `@`.
    Mention(String),
}

/// A message laid out for one width and style. Cheap to clone (galleys are shared).
#[derive(Clone)]
pub struct Rendered {
    blocks: Vec<layout::Laid>,
    width: f32,
    height: f32,
    plain: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered").field("blocks", &self.blocks.len()).field("height", &self.height).finish()
    }
}

/// Parses and lays out `text` for `opts.wrap_width`, in the context's global style
/// (dark or light visuals, the Body and Monospace text styles). Bounded in time and
/// height for any input.
pub fn layout(ctx: &egui::Context, text: &str, opts: &Options<'_>) -> Rendered {
    layout::layout(ctx, text, opts)
}

/// What a cached [`Rendered`] depends on besides the message text, the width and the
/// [`Options`]: the visuals and text styles of the context's global style. Key the cache
/// on `(message id or text, wrap width, me, highlights, CacheKey::of(ctx))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u64);

impl CacheKey {
    pub fn of(ctx: &egui::Context) -> Self {
        let style = ctx.global_style();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        style.visuals.dark_mode.hash(&mut h);
        for c in [
            style.visuals.text_color(),
            style.visuals.strong_text_color(),
            style.visuals.weak_text_color(),
            style.visuals.hyperlink_color,
            style.visuals.code_bg_color,
        ] {
            c.to_array().hash(&mut h);
        }
        for ts in [egui::TextStyle::Body, egui::TextStyle::Monospace, egui::TextStyle::Small] {
            let f = ts.resolve(&style);
            f.size.to_bits().hash(&mut h);
            f.family.hash(&mut h);
        }
        ctx.pixels_per_point().to_bits().hash(&mut h);
        Self(h.finish())
    }
}

impl Rendered {
    /// The exact height [`Rendered::show`] takes.
    pub fn height(&self) -> f32 {
        self.height
    }

    /// The width it was laid out for.
    pub fn width(&self) -> f32 {
        self.width
    }

    /// The message as plain text (list markers, code, emoji replaced, hidden characters
    /// spelled out): for accessibility labels and copying.
    pub fn plain_text(&self) -> &str {
        &self.plain
    }

    /// The link targets in order, as they are clickable (for tests and menus).
    pub fn links(&self) -> Vec<&str> {
        self.blocks.iter().flat_map(|b| b.hot()).filter_map(|h| h.url()).collect()
    }

    /// Paints at the cursor, in exactly `width() × height()`, and returns what was
    /// clicked. Ids of the code blocks' scroll areas and of links derive from `ui.id()`:
    /// give each message its own (`ui.push_id(message id, ...)`).
    #[must_use]
    pub fn show(&self, ui: &mut egui::Ui) -> Vec<MdAction> {
        show::show(self, ui)
    }
}

/// A clickable area in a laid-out text: its rectangles (one per row it spans), relative
/// to the galley.
#[derive(Clone, Debug)]
struct Hot {
    rects: Vec<Rect>,
    target: doc::Target,
    label: String,
}

impl Hot {
    fn url(&self) -> Option<&str> {
        match &self.target {
            doc::Target::Url(u) => Some(u),
            doc::Target::Mention(_) => None,
        }
    }
}

#[derive(Clone)]
struct CodeLaid {
    galley: Arc<Galley>,
    lang: Option<Arc<Galley>>,
    more: Option<Arc<Galley>>,
    code: String,
    header_h: f32,
    /// Room under the code for the scroll bar, when the code is wider than the block.
    scroll_room: f32,
    /// Offset of the code galley in the block.
    code_offset: Vec2,
}

#[cfg(test)]
mod tests;
