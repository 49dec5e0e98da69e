//! The parsed message: flat blocks, each with its containers (quotes, lists) and its
//! styled runs of text, and where each run came from in the source.

use std::ops::Range;

/// How a run of text looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub strong: bool,
    pub emph: bool,
    pub strike: bool,
    pub code: bool,
    /// A marker the renderer adds (a hidden character spelled out, a "more" note).
    pub weak: bool,
    /// An emoji from a `:shortcode:` (drawn a little larger).
    pub emoji: bool,
}

/// What clicking a run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An http, https or mailto URL (others never become targets).
    Url(String),
    /// A user name, without the `@`.
    Mention(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub text: String,
    pub style: Style,
    pub target: Option<Target>,
}

/// Where output text came from in the source: `out` (bytes of the block's text) is
/// `src` (bytes of the message) exactly when `exact`, else only roughly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrcMap {
    pub out: Range<usize>,
    pub src: Range<usize>,
    pub exact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A block quote; the id tells apart two quotes that follow each other.
    Quote(u32),
    List,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Para,
    Heading(u8),
    /// `code` is what is shown (limits applied), `full` what Copy copies.
    Code {
        lang: String,
        code: String,
        full: String,
        more_lines: usize,
    },
    Rule,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub kind: Kind,
    pub containers: Vec<Container>,
    /// The list marker ("•", "3.") when this block is the first of a list item.
    pub marker: Option<String>,
    pub spans: Vec<Span>,
    pub map: Vec<SrcMap>,
    /// Blank source lines before this block.
    pub gap_lines: u8,
}

#[derive(Debug, Default)]
pub struct Doc {
    pub blocks: Vec<Block>,
    /// The message as plain text (for screen readers and copying), with markers.
    pub plain: String,
}

/// The blocks as plain text, a line per block.
pub fn plain_text(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        if !out.is_empty() {
            out.push('\n');
        }
        if let Some(m) = &b.marker {
            out.push_str(m);
            out.push(' ');
        }
        match &b.kind {
            Kind::Code { code, .. } => out.push_str(code),
            Kind::Rule => out.push_str("———"),
            _ => b.spans.iter().for_each(|s| out.push_str(&s.text)),
        }
    }
    out
}
