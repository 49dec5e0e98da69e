//! What CommonMark leaves as plain text but a chat shows specially: bare URLs, @mentions
//! and `:shortcode:` emoji; and the characters that must never reach the screen as they
//! are (controls and bidi overrides).

use std::ops::Range;

/// Longest user name a mention can carry (the wire's `MAX_USERNAME_LEN`).
const MAX_MENTION_LEN: usize = classchat_wire::MAX_USERNAME_LEN;

/// Longest `:shortcode:` looked up; the longest in `emojis` is under 40 bytes.
const MAX_SHORTCODE_LEN: usize = 48;

/// A piece of a text run, by what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Plain,
    /// A bare `http://` or `https://` URL.
    Url,
    /// `@name`: the range includes the `@`.
    Mention,
    /// A known `:shortcode:`, shown as this emoji.
    Emoji(&'static str),
}

/// Splits `text` into plain runs, bare URLs, mentions and known emoji shortcodes.
/// The ranges cover `text` in order, without gaps. Linear in the length of `text`.
pub fn split(text: &str, emoji_ok: &mut impl FnMut(&str) -> bool) -> Vec<(Range<usize>, Piece)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut plain_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let found = match bytes[i] {
            b'h' | b'H' if word_start(bytes, i) => url_at(text, i).map(|end| (end, Piece::Url)),
            b'@' if mention_start(bytes, i) => mention_at(bytes, i).map(|end| (end, Piece::Mention)),
            b':' => emoji_at(text, i, emoji_ok),
            _ => None,
        };
        match found {
            Some((end, piece)) => {
                if plain_start < i {
                    out.push((plain_start..i, Piece::Plain));
                }
                out.push((i..end, piece));
                i = end;
                plain_start = end;
            }
            None => i += 1,
        }
    }
    if plain_start < bytes.len() || out.is_empty() {
        out.push((plain_start..bytes.len(), Piece::Plain));
    }
    out
}

fn word_start(bytes: &[u8], i: usize) -> bool {
    i == 0 || !bytes[i - 1].is_ascii_alphanumeric()
}

/// `@` starts a mention after a space or punctuation, not inside `ada@example.org`.
fn mention_start(bytes: &[u8], i: usize) -> bool {
    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b'.' | b'-' | b'@'))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// The end of the mention at `i` (the `@`), if there is one.
fn mention_at(bytes: &[u8], i: usize) -> Option<usize> {
    let run = bytes[i + 1..].iter().take_while(|b| is_name_byte(**b)).count();
    // A trailing full stop ends the sentence, not the name: "thanks @bob."
    let name = bytes[i + 1..i + 1 + run].iter().rev().skip_while(|b| **b == b'.').count();
    (1..=MAX_MENTION_LEN).contains(&name).then_some(i + 1 + name)
}

/// The end of the bare `http(s)://` URL at `i`, if there is one. Trailing punctuation
/// belongs to the sentence, and a `)` only to the URL when it closes a `(` inside it.
fn url_at(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i..];
    let scheme = ["https://", "http://"]
        .into_iter()
        .find(|s| rest.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))?;
    let len = rest
        .find(|c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`') || is_hidden(c)
        })
        .unwrap_or(rest.len());
    let mut url = &rest[..len];
    loop {
        let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '*', '_', '~']);
        let trimmed = if trimmed.ends_with(')') && trimmed.matches(')').count() > trimmed.matches('(').count()
        {
            &trimmed[..trimmed.len() - 1]
        } else {
            trimmed
        };
        if trimmed.len() == url.len() {
            break;
        }
        url = trimmed;
    }
    (url.len() > scheme.len()).then_some(i + url.len())
}

/// The known `:shortcode:` at `i`, if there is one and the fonts draw its emoji.
fn emoji_at(text: &str, i: usize, emoji_ok: &mut impl FnMut(&str) -> bool) -> Option<(usize, Piece)> {
    let rest = &text.as_bytes()[i + 1..];
    let len = rest
        .iter()
        .take(MAX_SHORTCODE_LEN)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
        .count();
    if len == 0 || rest.get(len) != Some(&b':') {
        return None;
    }
    let code = &text[i + 1..i + 1 + len];
    // The fonts have no glyph for the emoji presentation selector (U+FE0F): ":heart:"
    // is drawn as the bare heart. A selector inside a sequence stays, and fails the check.
    let emoji = emojis::get_by_shortcode(code)?.as_str().trim_end_matches('\u{FE0F}');
    emoji_ok(emoji).then_some((i + len + 2, Piece::Emoji(emoji)))
}

/// Characters that could hide or reorder text: controls other than newline and tab, and
/// the bidi embeddings, overrides, isolates and marks.
pub fn is_hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// What a hidden character is shown as: its code point, spelled out, so a right-to-left
/// override cannot reorder the text after it and a control cannot vanish.
pub fn marker(c: char) -> String {
    format!("[U+{:04X}]", u32::from(c))
}

/// `text` with every hidden character replaced by its marker ([`marker`]); a `\r` before
/// `\n` is dropped. Borrowed when there is nothing to replace (nearly always).
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_hidden(c) { out.push_str(&marker(c)) } else { out.push(c) }
    }
    out.into()
}

/// Runs of `text`: `(range, hidden)`, where a hidden run is one hidden character.
pub fn hidden_runs(text: &str) -> Vec<(Range<usize>, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_hidden(c) {
            if start < i {
                out.push((start..i, false));
            }
            out.push((i..i + c.len_utf8(), true));
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        out.push((start..text.len(), false));
    }
    out
}

/// Whether a link to `url` may be opened: http, https and mailto only, and nothing
/// hidden in it.
pub fn url_allowed(url: &str) -> bool {
    let lower = url.trim_start().get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:"))
        && !url.chars().any(|c| is_hidden(c) || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<(&str, Piece)> {
        split(text, &mut |_| true).into_iter().map(|(r, p)| (&text[r], p)).collect()
    }

    #[test]
    fn finds_urls_mentions_and_shortcodes() {
        assert_eq!(
            pieces("see https://example.org/a_(b). @bob: :tada: :nope:"),
            [
                ("see ", Piece::Plain),
                ("https://example.org/a_(b)", Piece::Url),
                (". ", Piece::Plain),
                ("@bob", Piece::Mention),
                (": ", Piece::Plain),
                (":tada:", Piece::Emoji("🎉")),
                (" :nope:", Piece::Plain),
            ]
        );
        assert_eq!(pieces("mail ada@example.org"), [("mail ada@example.org", Piece::Plain)]);
        assert_eq!(
            pieces("thanks @bob."),
            [("thanks ", Piece::Plain), ("@bob", Piece::Mention), (".", Piece::Plain)]
        );
        assert_eq!(
            pieces("(http://x.org)"),
            [("(", Piece::Plain), ("http://x.org", Piece::Url), (")", Piece::Plain)]
        );
        assert_eq!(pieces("https:// alone"), [("https:// alone", Piece::Plain)]);
        assert_eq!(
            pieces(&format!("@{}", "a".repeat(33))),
            [(&*format!("@{}", "a".repeat(33)), Piece::Plain)]
        );
        assert_eq!(pieces(""), [("", Piece::Plain)]);
    }

    #[test]
    fn only_web_and_mail_links_open() {
        for ok in ["https://example.org", "HTTP://x.y/", "mailto:ada@example.org"] {
            assert!(url_allowed(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/html,x",
            "ftp://x",
            "/relative",
            "x",
            "https://a\u{202E}b",
        ] {
            assert!(!url_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn hidden_characters_become_visible_markers() {
        assert_eq!(sanitize("abc\u{202E}def"), "abc[U+202E]def");
        assert_eq!(sanitize("a\u{0}b\u{7}\u{2066}\u{200F}"), "a[U+0000]b[U+0007][U+2066][U+200F]");
        assert_eq!(sanitize("line\r\nnext\ttab"), "line\nnext\ttab");
        assert!(matches!(sanitize("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
