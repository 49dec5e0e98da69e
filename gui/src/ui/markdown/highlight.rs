//! Code blocks: syntax highlighting through syntect (egui_extras), once, at layout time;
//! and search-hit backgrounds laid over any job.

use std::ops::Range;

use egui::text::{LayoutJob, LayoutSection, TextFormat};
use egui::{Color32, FontId};
use egui_extras::syntax_highlighting::{CodeTheme, highlight};

/// The syntect name (a file extension it knows) for a fence's language tag, or `None`
/// when there is no tag or syntect has no grammar for it (plain monospace then).
pub fn syntax_for(lang: &str) -> Option<&'static str> {
    let lang = lang.trim().to_ascii_lowercase();
    Some(match lang.as_str() {
        "python" | "py" | "python3" | "py3" | "pycon" => "py",
        "java" => "java",
        "c" | "h" => "c",
        "cpp" | "c++" | "cxx" | "cc" | "hpp" | "hxx" => "cpp",
        "rust" | "rs" => "rs",
        // syntect's defaults have no TypeScript; JavaScript's grammar reads most of it.
        "javascript" | "js" | "jsx" | "mjs" | "node" | "typescript" | "ts" => "js",
        "sql" | "sqlite" | "postgresql" | "mysql" => "sql",
        "sh" | "bash" | "shell" | "zsh" | "console" | "shell-session" => "sh",
        "go" | "golang" => "go",
        "json" => "json",
        "html" | "htm" => "html",
        "xml" => "xml",
        "css" => "css",
        "yaml" | "yml" => "yaml",
        "diff" | "patch" => "diff",
        "csharp" | "cs" | "c#" => "cs",
        "ruby" | "rb" => "rb",
        "php" => "php",
        "haskell" | "hs" => "hs",
        "latex" | "tex" => "tex",
        "makefile" | "make" => "make",
        "lua" => "lua",
        "r" => "r",
        "scala" => "scala",
        "matlab" | "m" => "m",
        _ => return None,
    })
}

/// The code laid out in `font`, coloured for dark or light mode. Unknown languages are
/// plain text in `plain` colour. Never wraps (the block scrolls sideways).
pub fn code_job(
    ctx: &egui::Context,
    style: &egui::Style,
    code: &str,
    lang: &str,
    font: &FontId,
    plain: Color32,
) -> LayoutJob {
    let mut job = match syntax_for(lang) {
        Some(syntax) => {
            let theme = CodeTheme::from_style(style).with_font_id(font.clone());
            highlight(ctx, style, &theme, code, syntax)
        }
        None => LayoutJob::default(),
    };
    if job.sections.is_empty() || job.text != code {
        job = LayoutJob::simple(code.to_owned(), font.clone(), plain, f32::INFINITY);
    }
    job.wrap.max_width = f32::INFINITY;
    for s in &mut job.sections {
        s.format.font_id = font.clone();
    }
    job
}

/// Paints `bg` behind the byte ranges `hits` of the job's text, splitting sections at
/// their edges. Ranges are clamped to the text and to char boundaries.
pub fn mark_hits(job: &mut LayoutJob, hits: &[Range<usize>], bg: Color32) {
    if hits.is_empty() {
        return;
    }
    let text = &job.text;
    let mut cuts: Vec<usize> =
        hits.iter().flat_map(|h| [h.start, h.end]).map(|i| text.floor_char_boundary(i)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let inside = |a: usize, b: usize| hits.iter().any(|h| h.start < b && a < h.end && h.start < h.end);
    let mut out: Vec<LayoutSection> = Vec::with_capacity(job.sections.len() + cuts.len());
    for s in job.sections.drain(..) {
        let (start, end) = (s.byte_range.start.0, s.byte_range.end.0);
        let mut from = start;
        for &c in cuts.iter().filter(|c| **c > start && **c < end).chain(std::iter::once(&end)) {
            let mut format: TextFormat = s.format.clone();
            if inside(from, c) {
                format.background = bg;
            }
            out.push(LayoutSection {
                leading_space: if from == start { s.leading_space } else { 0.0 },
                byte_range: egui::text::ByteIndex(from)..egui::text::ByteIndex(c),
                format,
            });
            from = c;
        }
    }
    job.sections = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_languages_of_a_class_have_grammars() {
        let ctx = egui::Context::default();
        let style = egui::Style::default();
        let font = FontId::monospace(12.0);
        for lang in ["python", "java", "c", "cpp", "rust", "javascript", "sql", "bash"] {
            let job = code_job(&ctx, &style, "x = 1 # y\nif x: return", lang, &font, Color32::WHITE);
            let colours: std::collections::HashSet<_> = job.sections.iter().map(|s| s.format.color).collect();
            assert!(colours.len() > 1, "{lang} is not highlighted: {colours:?}");
            assert_eq!(job.wrap.max_width, f32::INFINITY);
        }
        let plain = code_job(&ctx, &style, "whatever", "klingon", &font, Color32::WHITE);
        assert_eq!(plain.sections.len(), 1);
    }

    #[test]
    fn hits_split_sections_and_get_a_background() {
        let mut job = LayoutJob::simple("hello world".into(), FontId::monospace(12.0), Color32::WHITE, 100.0);
        mark_hits(&mut job, &[0..1, 6..11], Color32::RED);
        let marked: Vec<_> = job
            .sections
            .iter()
            .map(|s| {
                (&job.text[s.byte_range.start.0..s.byte_range.end.0], s.format.background == Color32::RED)
            })
            .collect();
        assert_eq!(marked, [("h", true), ("ello ", false), ("world", true)]);
    }
}
