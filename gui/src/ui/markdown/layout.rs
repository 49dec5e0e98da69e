//! Blocks to galleys and positions: everything [`super::Rendered::show`] paints is laid
//! out here, once per width and style.

use std::ops::Range;
use std::sync::Arc;

use egui::text::{CharIndex, LayoutJob, TextFormat};
use egui::{Color32, FontId, Galley, Pos2, Rect, Stroke, TextStyle, pos2, vec2};

use super::doc::{Block, Container, Kind, Style, Target};
use super::parse;
use super::{CodeLaid, Hot, MAX_ROWS, Options, Rendered, highlight};

/// Indent of a quote's contents; its bar is drawn in it.
pub const QUOTE_INDENT: f32 = 12.0;
/// Indent of a list item's contents; its marker is drawn in it.
pub const LIST_INDENT: f32 = 20.0;
/// Padding inside a code block's frame.
pub const CODE_PAD: f32 = 6.0;
/// Room left under code that scrolls sideways, for the (floating) scroll bar.
pub const SCROLLBAR_ROOM: f32 = 8.0;
/// Search hits painted in the source text at most (a search marks a few words).
const MAX_HITS: usize = 256;
/// Narrowest width laid out; narrower windows clip.
const MIN_WIDTH: f32 = 40.0;

/// One block as laid out, positioned relative to the message's top-left corner.
#[derive(Clone)]
pub struct Laid {
    pub rect: Rect,
    /// Quote bars: x, top, bottom.
    pub bars: Vec<(f32, f32, f32)>,
    pub marker: Option<(Pos2, Arc<Galley>)>,
    pub body: Body,
}

#[derive(Clone)]
pub enum Body {
    Text { galley: Arc<Galley>, hot: Vec<Hot> },
    Code(CodeLaid),
    Rule,
}

impl Laid {
    pub fn hot(&self) -> &[Hot] {
        match &self.body {
            Body::Text { hot, .. } => hot,
            Body::Code(_) | Body::Rule => &[],
        }
    }
}

/// The background of a search hit (orange, apart from the yellow of a mention of you).
pub fn hit_bg(dark_mode: bool) -> Color32 {
    if dark_mode { Color32::from_rgb(0x80, 0x50, 0x10) } else { Color32::from_rgb(0xff, 0xc0, 0x70) }
}

/// Fonts and colours of the style laid out in.
struct Palette {
    body: FontId,
    mono: FontId,
    small: FontId,
    row_h: f32,
    small_h: f32,
    text: Color32,
    strong: Color32,
    weak: Color32,
    link: Color32,
    code_bg: Color32,
    mention_bg: Color32,
    me_bg: Color32,
    me_fg: Color32,
    hit_bg: Color32,
}

impl Palette {
    fn new(ctx: &egui::Context, style: &egui::Style) -> Self {
        let v = &style.visuals;
        let body = TextStyle::Body.resolve(style);
        let mono = TextStyle::Monospace.resolve(style);
        let small = TextStyle::Small.resolve(style);
        let (row_h, small_h) = ctx.fonts_mut(|f| (f.row_height(&body), f.row_height(&small)));
        let (me_bg, me_fg, mention_bg) = if v.dark_mode {
            (
                Color32::from_rgb(0x5c, 0x4a, 0x12),
                Color32::from_rgb(0xff, 0xe0, 0x8a),
                Color32::from_rgba_unmultiplied(0x6c, 0xb6, 0xff, 0x30),
            )
        } else {
            (
                Color32::from_rgb(0xff, 0xec, 0x99),
                Color32::from_rgb(0x5a, 0x40, 0x00),
                Color32::from_rgba_unmultiplied(0x1a, 0x5f, 0xb4, 0x22),
            )
        };
        Self {
            body,
            mono,
            small,
            row_h,
            small_h,
            text: v.text_color(),
            strong: v.strong_text_color(),
            weak: v.weak_text_color(),
            link: v.hyperlink_color,
            code_bg: v.code_bg_color,
            mention_bg,
            me_bg,
            me_fg,
            hit_bg: hit_bg(v.dark_mode),
        }
    }

    fn format(&self, style: Style, target: Option<&Target>, me: &str, heading: Option<u8>) -> TextFormat {
        let size = match heading {
            Some(1) => self.body.size * 1.4,
            Some(2) => self.body.size * 1.25,
            Some(3) => self.body.size * 1.1,
            _ => self.body.size,
        };
        // The monochrome emoji are hard to make out at text size; the row stays as high.
        let size = if style.emoji { size * 1.25 } else { size };
        let mut f = TextFormat {
            font_id: if style.code {
                FontId::new(size, self.mono.family.clone())
            } else {
                FontId::new(size, self.body.family.clone())
            },
            color: if heading.is_some() || style.strong { self.strong } else { self.text },
            // Every row of a paragraph is one Body row high, inline code and emoji too, so
            // plain text is exactly as high as the plain view made it.
            line_height: heading.is_none().then_some(self.row_h),
            italics: style.emph,
            ..Default::default()
        };
        if style.code {
            f.background = self.code_bg;
        }
        if style.strike {
            f.strikethrough = Stroke::new(1.0, f.color);
        }
        if style.weak {
            f.color = self.weak;
        }
        match target {
            Some(Target::Url(_)) => {
                f.color = self.link;
                f.underline = Stroke::new(1.0, self.link.gamma_multiply(0.5));
            }
            Some(Target::Mention(name)) if !me.is_empty() && name.eq_ignore_ascii_case(me) => {
                f.color = self.me_fg;
                f.background = self.me_bg;
            }
            Some(Target::Mention(_)) => {
                f.color = self.link;
                f.background = self.mention_bg;
            }
            None => {}
        }
        f
    }
}

pub fn layout(ctx: &egui::Context, text: &str, opts: &Options<'_>) -> Rendered {
    let style = ctx.global_style();
    let pal = Palette::new(ctx, &style);
    let width = opts.wrap_width.max(MIN_WIDTH);
    let hits: Vec<Range<usize>> = opts
        .highlights
        .iter()
        .take(MAX_HITS)
        .map(|&(s, e)| s as usize..e as usize)
        .filter(|r| r.start < r.end)
        .collect();
    // Not under the context's lock (fonts_mut): parsing a long message takes a while.
    let doc = parse::parse(text, &mut crate::ui::emoji::is_drawable);

    let mut out: Vec<Laid> = Vec::with_capacity(doc.blocks.len());
    let mut y = 0.0;
    let mut rows_left = MAX_ROWS;
    let mut prev: Option<&Block> = None;
    for (i, b) in doc.blocks.iter().enumerate() {
        let gap = gap_before(prev, b, pal.row_h);
        rows_left = rows_left.saturating_sub(usize::from(b.gap_lines));
        if rows_left == 0 {
            let left = doc.blocks.len() - i;
            let note = ctx.fonts_mut(|f| {
                f.layout_no_wrap(format!("… {left} more blocks not shown"), pal.body.clone(), pal.weak)
            });
            let h = note.size().y;
            out.push(Laid {
                rect: Rect::from_min_size(pos2(0.0, y), vec2(width, h)),
                bars: Vec::new(),
                marker: None,
                body: Body::Text { galley: note, hot: Vec::new() },
            });
            y += h;
            break;
        }
        y += gap;
        // Indents; squeezed into half the width, so deep nesting in a narrow window
        // still leaves room for the text.
        let mut x: f32 = 0.0;
        let mut bar_xs = Vec::new();
        for c in &b.containers {
            match c {
                Container::Quote(_) => {
                    bar_xs.push(x + 2.0);
                    x += QUOTE_INDENT;
                }
                Container::List => x += LIST_INDENT,
            }
        }
        let squeeze = if x > width * 0.5 { width * 0.5 / x } else { 1.0 };
        let x = x * squeeze;
        bar_xs.iter_mut().for_each(|bx| *bx *= squeeze);
        let avail = width - x;
        let b_hits = block_hits(b, &hits);
        let (h, body) = match &b.kind {
            Kind::Para | Kind::Heading(_) => {
                let heading = if let Kind::Heading(l) = b.kind { Some(l) } else { None };
                let (galley, hot) = text_galley(ctx, &pal, b, opts.me, heading, avail, rows_left, &b_hits);
                rows_left = rows_left.saturating_sub(galley.rows.len().max(1));
                // A paragraph's rows are each exactly one Body row (line_height): the
                // galley's own size is rounded to pixels, a row count is not.
                let h = if heading.is_some() {
                    galley.size().y
                } else {
                    galley.rows.len().max(1) as f32 * pal.row_h
                };
                (h, Body::Text { galley, hot })
            }
            Kind::Code { lang, code, full, more_lines } => {
                let mut c = code_block(ctx, &style, &pal, lang, code, *more_lines, rows_left, &b_hits);
                c.code.clone_from(full);
                if c.galley.size().x > avail - 2.0 * CODE_PAD {
                    c.scroll_room = SCROLLBAR_ROOM;
                }
                let h = c.code_offset.y
                    + c.galley.size().y
                    + c.scroll_room
                    + c.more.as_ref().map_or(0.0, |m| m.size().y)
                    + CODE_PAD;
                rows_left = rows_left.saturating_sub(c.galley.rows.len() + 2);
                (h, Body::Code(c))
            }
            Kind::Rule => {
                rows_left = rows_left.saturating_sub(1);
                (pal.row_h, Body::Rule)
            }
        };
        let rect = Rect::from_min_size(pos2(x, y), vec2(avail, h));
        let prev_laid = out.last();
        let bars = bar_xs
            .iter()
            .enumerate()
            .map(|(k, bx)| {
                // A bar continues across the gap from the block above in the same quote.
                let same = prev.is_some_and(|p| {
                    p.containers.iter().filter(|c| matches!(c, Container::Quote(_))).nth(k)
                        == b.containers.iter().filter(|c| matches!(c, Container::Quote(_))).nth(k)
                });
                let top = if same { prev_laid.map_or(y, |l| l.rect.bottom()) } else { y };
                (*bx, top, y + h)
            })
            .collect();
        let marker = b.marker.as_ref().map(|m| {
            let g = ctx.fonts_mut(|f| f.layout_no_wrap(m.clone(), pal.body.clone(), pal.weak));
            (pos2(x - g.size().x - 5.0, y), g)
        });
        out.push(Laid { rect, bars, marker, body });
        y += h;
        prev = Some(b);
    }
    Rendered { blocks: out, width, height: y, plain: doc.plain }
}

/// Space above a block: blank source lines between paragraphs are kept as rows (as
/// plain text shows them); other blocks get a little air.
fn gap_before(prev: Option<&Block>, b: &Block, row_h: f32) -> f32 {
    let Some(p) = prev else { return 0.0 };
    let texty = |k: &Kind| matches!(k, Kind::Para | Kind::Heading(_));
    if texty(&p.kind)
        && texty(&b.kind)
        && p.containers == b.containers
        && p.marker.is_none()
        && b.marker.is_none()
    {
        f32::from(b.gap_lines) * row_h
    } else if matches!(b.kind, Kind::Code { .. } | Kind::Rule)
        || matches!(p.kind, Kind::Code { .. } | Kind::Rule)
    {
        4.0
    } else if b.gap_lines > 0 {
        row_h * 0.5
    } else {
        0.0
    }
}

/// The search hits of the message mapped to byte ranges of the block's text.
fn block_hits(b: &Block, hits: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for m in &b.map {
        for h in hits.iter().filter(|h| h.start < m.src.end && m.src.start < h.end) {
            if m.exact {
                let s = h.start.max(m.src.start) - m.src.start;
                let e = h.end.min(m.src.end) - m.src.start;
                out.push(m.out.start + s..m.out.start + e);
            } else {
                out.push(m.out.clone());
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn text_galley(
    ctx: &egui::Context,
    pal: &Palette,
    b: &Block,
    me: &str,
    heading: Option<u8>,
    width: f32,
    max_rows: usize,
    hits: &[Range<usize>],
) -> (Arc<Galley>, Vec<Hot>) {
    let mut job = LayoutJob::default();
    let mut targets = Vec::new();
    let mut chars = 0;
    let mut newlines = 0;
    for s in &b.spans {
        // Rows past the budget are never shown: stop before laying them out.
        let text = match s.text.match_indices('\n').nth(max_rows.saturating_sub(newlines + 1)) {
            Some((cut, _)) if newlines + s.text.matches('\n').count() >= max_rows => &s.text[..cut],
            _ => &s.text[..],
        };
        newlines += text.matches('\n').count();
        let n = text.chars().count();
        if let Some(t) = &s.target {
            targets.push((chars..chars + n, t.clone(), text.to_owned()));
        }
        chars += n;
        job.append(text, 0.0, pal.format(s.style, s.target.as_ref(), me, heading));
        if text.len() < s.text.len() {
            job.append("\n…", 0.0, pal.format(Style { weak: true, ..Style::default() }, None, me, heading));
            break;
        }
    }
    if job.sections.is_empty() {
        job.append("", 0.0, pal.format(Style::default(), None, me, heading));
    }
    job.wrap.max_width = width;
    job.wrap.max_rows = max_rows.max(1);
    highlight::mark_hits(&mut job, hits, pal.hit_bg);
    let galley = ctx.fonts_mut(|f| f.layout_job(job));
    let hot = targets
        .into_iter()
        .map(|(range, target, label)| Hot { rects: char_rects(&galley, range), target, label })
        .filter(|h| !h.rects.is_empty())
        .collect();
    (galley, hot)
}

/// The rectangles (one per row) covering the chars `range` of the galley.
fn char_rects(galley: &Galley, range: Range<usize>) -> Vec<Rect> {
    let mut out = Vec::new();
    let mut start = 0;
    for row in &galley.rows {
        let n = row.char_count_excluding_newline().0;
        let (a, b) = (range.start.max(start), range.end.min(start + n));
        if a < b {
            let x0 = row.pos.x + row.x_offset(CharIndex(a - start));
            let x1 = row.pos.x + row.x_offset(CharIndex(b - start));
            let r = row.rect();
            out.push(Rect::from_x_y_ranges(x0..=x1, r.y_range()));
        }
        start += row.char_count_including_newline().0;
        if start >= range.end {
            break;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn code_block(
    ctx: &egui::Context,
    style: &egui::Style,
    pal: &Palette,
    lang: &str,
    code: &str,
    more_lines: usize,
    rows_left: usize,
    hits: &[Range<usize>],
) -> CodeLaid {
    // The row budget may cut the block further than the parser did.
    let room = rows_left.saturating_sub(2).max(1);
    let (code, more_lines) = match code.match_indices('\n').nth(room - 1) {
        Some((cut, _)) => (&code[..cut], more_lines + code[cut..].matches('\n').count()),
        None => (code, more_lines),
    };
    let mut job = highlight::code_job(ctx, style, code, lang, &pal.mono, pal.text);
    let hits: Vec<Range<usize>> =
        hits.iter().map(|h| h.start.min(code.len())..h.end.min(code.len())).collect();
    highlight::mark_hits(&mut job, &hits, pal.hit_bg);
    let galley = ctx.fonts_mut(|f| f.layout_job(job));
    let (lang_g, more) = ctx.fonts_mut(|f| {
        let lang_g =
            (!lang.is_empty()).then(|| f.layout_no_wrap(lang.to_owned(), pal.small.clone(), pal.weak));
        let more = (more_lines > 0).then(|| {
            let s = if more_lines == 1 { "" } else { "s" };
            f.layout_no_wrap(format!("… {more_lines} more line{s}"), pal.small.clone(), pal.weak)
        });
        (lang_g, more)
    });
    // The Copy button (small text in a button's padding) fits the header.
    let header_h = pal.small_h + 2.0 * style.spacing.button_padding.y + 2.0;
    CodeLaid {
        galley,
        lang: lang_g,
        more,
        code: code.to_owned(),
        header_h,
        scroll_room: 0.0,
        code_offset: vec2(CODE_PAD, CODE_PAD * 0.5 + header_h),
    }
}
