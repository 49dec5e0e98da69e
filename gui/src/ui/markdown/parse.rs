//! CommonMark (pulldown-cmark) to a flat list of blocks, each with its containers (quotes
//! and lists) and its styled runs of text. Every limit is applied here, so that what
//! layout gets is bounded whatever the message is.

use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, LinkType, Options, Parser, Tag, TagEnd};

use super::doc::{Block, Container, Doc, Kind, Span, SrcMap, Style, Target, plain_text};
use super::inline::{self, Piece};

/// Bytes of a message that are parsed and shown; the rest is counted in a note. A chat
/// message is rarely over a few KiB (300 lines of code are about 10); this keeps the
/// worst message's layout near 10 ms (BENCHMARKS.md), where 32 KiB took 40.
pub const MAX_SOURCE: usize = 16 * 1024;
/// Quotes and lists nested deeper than this are shown at this depth (flattened).
pub const MAX_DEPTH: usize = 8;
/// Blocks (paragraphs, items, code blocks, rules) shown; the rest is counted in a note.
pub const MAX_BLOCKS: usize = 200;
/// Styled runs in the whole message; past this, text keeps the last run's style.
pub const MAX_SPANS: usize = 500;
/// Links and mentions that are clickable in one message; later ones are plain text
/// (each is a widget in every frame the message is visible).
pub const MAX_TARGETS: usize = 100;
/// Lines of a code block shown; the rest is counted ("… 12 more lines").
pub const CODE_MAX_LINES: usize = 150;
/// Characters of one code line shown (it scrolls sideways); the rest is cut with "…".
pub const CODE_MAX_LINE_CHARS: usize = 400;
/// List bullets by depth (the bundled proportional font draws these three).
pub const BULLETS: [&str; 3] = ["•", "–", "▪"];
/// Task list boxes, unchecked and checked (drawn by the bundled fonts).
pub const TASK_BOXES: [&str; 2] = ["☐ ", "☑ "];
/// Blank lines between two paragraphs that are kept as space (as plain text shows them).
const MAX_GAP_LINES: u8 = 3;

struct ListState {
    next: Option<u64>,
}

#[derive(Default)]
struct Parse<'s> {
    src: &'s str,
    doc: Doc,
    /// Containers open now (the full depth; blocks get the first MAX_DEPTH).
    open: Vec<Container>,
    lists: Vec<ListState>,
    quote_ids: u32,
    pending_marker: Option<String>,
    /// The block being filled, if any.
    cur: Option<Block>,
    style: Style,
    links: Vec<Option<String>>,
    in_code: bool,
    spans: usize,
    targets: usize,
    /// Where the last content (text, or a block's end) ended in the source.
    last_end: usize,
    full: bool,
}

/// Parses `source` (a message) into blocks, applying every limit above.
pub fn parse(source: &str, emoji_ok: &mut impl FnMut(&str) -> bool) -> Doc {
    let cut = source.floor_char_boundary(MAX_SOURCE);
    let src = &source[..cut];
    let mut p = Parse { src, ..Default::default() };
    let opts = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    for (event, range) in Parser::new_ext(src, opts).into_offset_iter() {
        p.event(event, range, emoji_ok);
        if p.full {
            break;
        }
    }
    p.close_block();
    if p.doc.blocks.is_empty() {
        // An empty (or blank) message is one empty row, as in the plain view.
        p.begin_block(Kind::Para, 0);
        p.close_block();
    }
    let shown_to = if p.full { p.last_end } else { cut };
    if shown_to < source.len() {
        let more = source.len() - shown_to;
        p.note(format!("… {more} more bytes not shown"));
    }
    p.doc.plain = plain_text(&p.doc.blocks);
    p.doc
}

impl Parse<'_> {
    fn event(&mut self, event: Event<'_>, range: Range<usize>, emoji_ok: &mut impl FnMut(&str) -> bool) {
        match event {
            Event::Start(tag) => self.start(tag, range),
            Event::End(tag) => self.end(tag, range),
            Event::Text(t) if self.in_code => self.code_text(&t, range),
            Event::Text(t) => self.text(&t, range, emoji_ok),
            Event::Code(t) => {
                let inner = self.src.get(range.clone()).and_then(|s| s.find(&*t)).map(|i| range.start + i);
                let src = inner.map_or(range, |i| i..i + t.len());
                let style = Style { code: true, ..self.style };
                self.push(&t, src, style, self.link_target(), true);
            }
            // A chat shows HTML as the text it is.
            Event::Html(t) | Event::InlineHtml(t) => {
                self.push(&t, range, self.style, self.link_target(), true)
            }
            Event::SoftBreak | Event::HardBreak => self.push("\n", range, self.style, None, false),
            Event::Rule => {
                self.begin_block(Kind::Rule, range.start);
                self.close_block();
                self.last_end = range.end;
            }
            Event::TaskListMarker(done) => {
                self.push(TASK_BOXES[usize::from(done)], range, self.style, None, false)
            }
            Event::FootnoteReference(_) | Event::InlineMath(_) | Event::DisplayMath(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>, range: Range<usize>) {
        match tag {
            Tag::Paragraph | Tag::HtmlBlock => self.begin_block(Kind::Para, range.start),
            Tag::Heading { level, .. } => {
                let level = match level {
                    HeadingLevel::H1 => 1,
                    HeadingLevel::H2 => 2,
                    HeadingLevel::H3 => 3,
                    _ => 4,
                };
                self.begin_block(Kind::Heading(level), range.start);
            }
            Tag::CodeBlock(kind) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or("").to_owned(),
                    // Indented code is how plain text indented by four spaces parses: a
                    // chat shows it as the text it is, not as code.
                    CodeBlockKind::Indented => {
                        self.begin_block(Kind::Para, range.start);
                        return;
                    }
                };
                let lang = inline::sanitize(&lang).chars().take(32).collect();
                self.begin_block(
                    Kind::Code { lang, code: String::new(), full: String::new(), more_lines: 0 },
                    range.start,
                );
                self.in_code = true;
            }
            Tag::BlockQuote(_) => {
                self.close_block();
                self.quote_ids += 1;
                self.open.push(Container::Quote(self.quote_ids));
            }
            Tag::List(start) => {
                self.close_block();
                self.open.push(Container::List);
                self.lists.push(ListState { next: start });
            }
            Tag::Item => {
                self.close_block();
                let depth = self.lists.len();
                let marker = match self.lists.last_mut() {
                    Some(ListState { next: Some(n) }) => {
                        let m = format!("{n}.");
                        *n = n.saturating_add(1);
                        m
                    }
                    _ => BULLETS[depth.saturating_sub(1) % BULLETS.len()].to_owned(),
                };
                self.pending_marker = Some(marker);
            }
            Tag::Emphasis => self.style.emph = true,
            Tag::Strong => self.style.strong = true,
            Tag::Strikethrough => self.style.strike = true,
            Tag::Link { link_type, dest_url, .. } | Tag::Image { link_type, dest_url, .. } => {
                // `<ada@example.org>` is an autolink to an address without its scheme.
                let url = match link_type {
                    LinkType::Email => format!("mailto:{dest_url}"),
                    _ => dest_url.into_string(),
                };
                self.links.push(inline::url_allowed(&url).then_some(url));
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd, range: Range<usize>) {
        match tag {
            TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::HtmlBlock => {
                self.close_block();
                self.last_end = range.end;
            }
            TagEnd::CodeBlock => {
                self.in_code = false;
                self.finish_code();
                self.close_block();
                self.last_end = range.end;
            }
            TagEnd::BlockQuote(_) => {
                self.close_block();
                self.open.pop();
            }
            TagEnd::List(_) => {
                self.close_block();
                self.open.pop();
                self.lists.pop();
            }
            TagEnd::Item => {
                if self.pending_marker.is_some() {
                    // An empty item still shows its marker.
                    self.begin_block(Kind::Para, range.start);
                }
                self.close_block();
                self.last_end = self.last_end.max(range.end);
            }
            TagEnd::Emphasis => self.style.emph = false,
            TagEnd::Strong => self.style.strong = false,
            TagEnd::Strikethrough => self.style.strike = false,
            TagEnd::Link | TagEnd::Image => {
                self.links.pop();
            }
            _ => {}
        }
    }

    fn link_target(&self) -> Option<Target> {
        self.links.last().cloned().flatten().map(Target::Url)
    }

    fn begin_block(&mut self, kind: Kind, start: usize) {
        self.close_block();
        if self.doc.blocks.len() >= MAX_BLOCKS {
            self.full = true;
            return;
        }
        let gap_lines = if self.doc.blocks.is_empty() { 0 } else { self.blank_lines_before(start) };
        self.cur = Some(Block {
            kind,
            containers: self.open.iter().take(MAX_DEPTH).copied().collect(),
            marker: self.pending_marker.take(),
            spans: Vec::new(),
            map: Vec::new(),
            gap_lines,
        });
    }

    /// Blank source lines between the end of the last content and `start`: whole lines
    /// only (the last piece is the new block's own line prefix, the first is the rest of
    /// the last block's line unless that ended with its newline).
    fn blank_lines_before(&self, start: usize) -> u8 {
        let from = self.last_end.min(start);
        let between = self.src.get(from..start).unwrap_or("");
        let at_line_start = from == 0 || self.src.as_bytes().get(from - 1) == Some(&b'\n');
        let mut segs: Vec<&str> = between.split('\n').collect();
        segs.pop();
        let skip = usize::from(!at_line_start);
        let blank = segs.iter().skip(skip).filter(|l| is_blank_line(l)).count();
        blank.min(usize::from(MAX_GAP_LINES)) as u8
    }

    fn close_block(&mut self) {
        if let Some(mut b) = self.cur.take() {
            if let Kind::Para | Kind::Heading(_) = b.kind {
                // Trailing newlines (a break at the end, an HTML block's own newline)
                // would add an empty row.
                while let Some(last) = b.spans.last_mut() {
                    let kept = last.text.trim_end_matches('\n').len();
                    last.text.truncate(kept);
                    if !last.text.is_empty() || b.spans.len() == 1 {
                        break;
                    }
                    b.spans.pop();
                }
            }
            self.doc.blocks.push(b);
        }
    }

    /// Adds text to the current block (opening a paragraph for a tight list item's
    /// text), split where a hidden character must be spelled out.
    fn push(
        &mut self,
        text: &str,
        src: Range<usize>,
        style: Style,
        target: Option<Target>,
        exact_if_same: bool,
    ) {
        if self.cur.is_none() {
            self.begin_block(Kind::Para, src.start);
        }
        let exact = exact_if_same && self.src.get(src.clone()) == Some(text);
        for (r, hidden) in inline::hidden_runs(text) {
            let sub = if exact { src.start + r.start..src.start + r.end } else { src.clone() };
            if hidden {
                let c = text[r].chars().next().unwrap_or(' ');
                let style = Style { weak: true, ..style };
                self.push_run(&inline::marker(c), sub, style, None, false);
            } else {
                self.push_run(&text[r], sub, style, target.clone(), exact);
            }
        }
    }

    fn push_run(&mut self, text: &str, src: Range<usize>, style: Style, target: Option<Target>, exact: bool) {
        self.last_end = self.last_end.max(src.end);
        let target = target.filter(|_| self.targets < MAX_TARGETS);
        let Some(b) = self.cur.as_mut() else { return };
        let new_target = target.is_some() && b.spans.last().is_none_or(|l| l.target != target);
        if new_target {
            self.targets += 1;
        }
        // Every run is mapped, in order: the last mapping ends where the text does.
        let start = b.map.last().map_or(0, |m| m.out.end);
        match b.spans.last_mut() {
            Some(last) if (last.style == style && last.target == target) || self.spans >= MAX_SPANS => {
                last.text.push_str(text);
            }
            _ => {
                self.spans += 1;
                b.spans.push(Span { text: text.to_owned(), style, target });
            }
        }
        b.map.push(SrcMap { out: start..start + text.len(), src, exact });
    }

    fn text(&mut self, text: &str, range: Range<usize>, emoji_ok: &mut impl FnMut(&str) -> bool) {
        let in_link = !self.links.is_empty();
        let exact = self.src.get(range.clone()) == Some(text);
        if in_link {
            self.push(text, range, self.style, self.link_target(), true);
            return;
        }
        for (r, piece) in inline::split(text, emoji_ok) {
            let src = if exact { range.start + r.start..range.start + r.end } else { range.clone() };
            let part = &text[r];
            match piece {
                Piece::Plain => self.push(part, src, self.style, None, exact),
                Piece::Url => self.push(part, src, self.style, Some(Target::Url(part.to_owned())), exact),
                Piece::Mention => {
                    let target = Target::Mention(part[1..].to_owned());
                    self.push(part, src, self.style, Some(target), exact);
                }
                Piece::Emoji(e) => self.push(e, src, Style { emoji: true, ..self.style }, None, false),
            }
        }
    }

    fn code_text(&mut self, text: &str, range: Range<usize>) {
        if self.cur.is_none() {
            return;
        }
        let exact = self.src.get(range.clone()) == Some(text);
        self.last_end = self.last_end.max(range.end);
        if let Some(b) = self.cur.as_mut()
            && let Kind::Code { code, .. } = &mut b.kind
        {
            let start = code.len();
            code.push_str(text);
            b.map.push(SrcMap { out: start..code.len(), src: range, exact });
        }
    }

    /// Applies the code limits: lines cut at [`CODE_MAX_LINE_CHARS`], at most
    /// [`CODE_MAX_LINES`] lines, hidden characters spelled out. Where the text changed,
    /// the source map becomes approximate.
    fn finish_code(&mut self) {
        let Some(b) = self.cur.as_mut() else { return };
        let Kind::Code { code, full, more_lines, .. } = &mut b.kind else { return };
        let raw = code.strip_suffix('\n').unwrap_or(code);
        let total = raw.split('\n').count();
        let mut out = String::with_capacity(raw.len());
        for line in raw.split('\n').take(CODE_MAX_LINES) {
            let cut = line.char_indices().nth(CODE_MAX_LINE_CHARS).map_or(line.len(), |(i, _)| i);
            let shown = inline::sanitize(&line[..cut]);
            out.push_str(&shown);
            if cut < line.len() {
                out.push('…');
            }
            out.push('\n');
        }
        out.pop();
        *more_lines = total.saturating_sub(CODE_MAX_LINES);
        if out.as_str() != raw {
            let len = out.len();
            let src =
                b.map.first().map_or(0..0, |m| m.src.start..b.map.last().map_or(m.src.end, |l| l.src.end));
            b.map = vec![SrcMap { out: 0..len, src, exact: false }];
        }
        *full = raw.to_owned();
        *code = out;
    }

    /// A weak line at the end (what was left out).
    fn note(&mut self, text: String) {
        self.close_block();
        self.doc.blocks.push(Block {
            kind: Kind::Para,
            containers: Vec::new(),
            marker: None,
            spans: vec![Span { text, style: Style { weak: true, ..Style::default() }, target: None }],
            map: Vec::new(),
            gap_lines: 0,
        });
    }
}

fn is_blank_line(line: &str) -> bool {
    line.chars().all(|c| c.is_whitespace() || c == '>')
}
