//! Parse and layout results, limits on bad input, and layout times (printed; run with
//! `--nocapture` to see them).

use std::time::{Duration, Instant};

use super::doc::{self, Kind, Target};
use super::parse;
use super::*;

/// Runs `f` inside a frame of a context with the default (bundled) fonts and style.
fn with_ctx<R>(f: impl FnOnce(&egui::Context) -> R) -> R {
    let ctx = egui::Context::default();
    let mut out = None;
    let mut f = Some(f);
    let mut output = ctx.run_ui(egui::RawInput::default(), |ui| {
        if let Some(f) = f.take() {
            out = Some(f(ui.ctx()));
        }
    });
    output.textures_delta.clear();
    out.expect("the frame ran")
}

fn opts(width: f32) -> Options<'static> {
    Options { wrap_width: width, me: "ada", highlights: &[] }
}

fn doc(text: &str) -> doc::Doc {
    parse::parse(text, &mut |_| true)
}

fn targets(d: &doc::Doc) -> Vec<Target> {
    d.blocks.iter().flat_map(|b| b.spans.iter().filter_map(|s| s.target.clone())).collect()
}

#[test]
fn only_web_and_mail_links_are_links() {
    let d = doc(
        "[a](https://example.org) [b](javascript:alert(1)) [c](file:///etc/passwd) [d](mailto:x@y.z) [e](rel/path) <http://auto.org> <ta@example.org> <javascript:alert(2)> and https://bare.org/x.",
    );
    assert_eq!(
        targets(&d),
        [
            Target::Url("https://example.org".into()),
            Target::Url("mailto:x@y.z".into()),
            Target::Url("http://auto.org".into()),
            Target::Url("mailto:ta@example.org".into()),
            Target::Url("https://bare.org/x".into()),
        ]
    );
    // The refused links keep their text, as plain text.
    assert!(d.plain.contains("b c d e"), "{}", d.plain);
    assert!(d.plain.contains("javascript:alert(2) and"), "{}", d.plain);
}

#[test]
fn mentions_are_found_outside_code_only() {
    let d = doc("hi @bob and @ada, `@carol` \n```\n@dave\n```");
    assert_eq!(targets(&d), [Target::Mention("bob".into()), Target::Mention("ada".into())]);
}

#[test]
fn shortcodes_become_emoji_outside_code() {
    let d = doc(":tada: :+1: :thumbsup: :nosuchcode: `:tada:`");
    assert_eq!(d.plain, "🎉 👍 👍 :nosuchcode: :tada:");
    assert_eq!(doc(":heart:").plain, "❤", "drawn without the presentation selector");
}

#[test]
fn formatting_becomes_styles_and_blocks() {
    let d = doc(
        "# Title\n\n**bold** *it* ~~gone~~ `code`\n\n> quoted\n\n- one\n- two\n  1. nested\n\n---\n\n```rust\nfn main() {}\n```",
    );
    let kinds: Vec<_> = d.blocks.iter().map(|b| std::mem::discriminant(&b.kind)).collect();
    assert_eq!(kinds.len(), 8, "{:#?}", d.blocks);
    assert!(matches!(d.blocks[0].kind, Kind::Heading(1)));
    let styles: Vec<_> = d.blocks[1]
        .spans
        .iter()
        .filter(|s| s.text.trim() != "")
        .map(|s| (s.text.as_str(), s.style))
        .collect();
    assert!(styles[0].1.strong && styles[1].1.emph && styles[2].1.strike && styles[3].1.code, "{styles:?}");
    assert_eq!(d.blocks[2].containers.len(), 1);
    assert_eq!(d.blocks[3].marker.as_deref(), Some("•"));
    assert_eq!(d.blocks[5].marker.as_deref(), Some("1."));
    assert_eq!(d.blocks[5].containers, [doc::Container::List, doc::Container::List]);
    assert!(matches!(d.blocks[6].kind, Kind::Rule));
    assert!(
        matches!(&d.blocks[7].kind, Kind::Code { lang, code, .. } if lang == "rust" && code == "fn main() {}")
    );
}

#[test]
fn html_is_shown_as_text() {
    let d = doc("<div>\n<b>hi</b>\n</div>\n\nafter <i>x</i>");
    assert_eq!(d.plain, "<div>\n<b>hi</b>\n</div>\nafter <i>x</i>");
}

#[test]
fn bidi_and_control_characters_are_spelled_out() {
    let evil = "user\u{202E}gnp.exe \u{2066}x\u{2069} bell\u{7} nul\u{0}";
    let d = doc(evil);
    assert_eq!(d.plain, "user[U+202E]gnp.exe [U+2066]x[U+2069] bell[U+0007] nul[U+0000]");
    let code = doc("```\nlet s = \"\u{202E}\";\n```");
    assert!(code.plain.contains("[U+202E]"), "{}", code.plain);
    assert!(!code.plain.chars().any(super::inline::is_hidden));
}

#[test]
fn nesting_is_capped() {
    let quotes = format!("{} deep", ">".repeat(1000));
    let d = doc(&quotes);
    assert!(d.blocks.iter().all(|b| b.containers.len() <= MAX_DEPTH));
    assert!(d.plain.contains("deep"));
    let lists: String = (0..50).map(|i| format!("{}- level {i}\n", "  ".repeat(i))).collect();
    let d = doc(&lists);
    assert!(d.blocks.iter().all(|b| b.containers.len() <= MAX_DEPTH));
    assert!(d.blocks.iter().any(|b| b.containers.len() == MAX_DEPTH));
    assert!(d.plain.contains("level 49"), "deep items are flattened, not dropped");
}

#[test]
fn code_blocks_show_the_first_lines_and_count_the_rest() {
    let n = CODE_MAX_LINES + 25;
    let code: String = (0..n).map(|i| format!("line {i}\n")).collect();
    let d = doc(&format!("```\n{code}```"));
    let Kind::Code { code: shown, full, more_lines, .. } = &d.blocks[0].kind else { panic!("not code") };
    assert_eq!(shown.lines().count(), CODE_MAX_LINES);
    assert_eq!(*more_lines, 25);
    assert_eq!(full.lines().count(), n, "Copy copies all of it");
    let long = format!("```\n{}\n```", "x".repeat(CODE_MAX_LINE_CHARS * 3));
    let d = doc(&long);
    let Kind::Code { code: shown, .. } = &d.blocks[0].kind else { panic!("not code") };
    assert_eq!(shown.chars().count(), CODE_MAX_LINE_CHARS + 1);
    assert!(shown.ends_with('…'));
}

#[test]
fn plain_text_is_as_high_as_its_lines() {
    with_ctx(|ctx| {
        let body = egui::TextStyle::Body.resolve(&ctx.global_style());
        let row = ctx.fonts_mut(|f| f.row_height(&body));
        for (text, lines) in
            [("hello", 1.0), ("one\ntwo\nthree", 3.0), ("para\n\nnext", 3.0), ("a\n\n\nb", 4.0), ("", 1.0)]
        {
            let r = layout(ctx, text, &opts(600.0));
            assert!(
                (r.height() - lines * row).abs() < 0.01,
                "{text:?}: {} vs {lines} rows of {row}",
                r.height()
            );
        }
        let wrapped = layout(ctx, &"word ".repeat(200), &opts(200.0));
        let rows = (wrapped.height() / row).round();
        assert!(rows > 5.0 && (wrapped.height() - rows * row).abs() < 0.01, "{}", wrapped.height());
    });
}

#[test]
fn links_that_are_not_allowed_are_not_clickable() {
    with_ctx(|ctx| {
        let r = layout(
            ctx,
            "[x](javascript:alert(1)) [y](https://example.org) [z](data:text/html,hi)",
            &opts(400.0),
        );
        assert_eq!(r.links(), ["https://example.org"]);
    });
}

/// The worst messages: each lays out, and the height stays under the row budget.
fn bad_inputs() -> Vec<(&'static str, String)> {
    vec![
        ("100,000 backticks", "`".repeat(100_000)),
        ("1,000 nested quotes", format!("{} x", ">".repeat(1000))),
        ("1,000 nested lists", (0..1000).map(|i| format!("{}- {i}\n", " ".repeat(2 * i))).collect()),
        ("100 KB of *_~[", "*_~[".repeat(25_000)),
        ("2 MB on one line", "ab ".repeat(700_000)),
        ("10,000 lines", "line\n".repeat(10_000)),
        ("5,000 code fences", "```\nx\n```\n".repeat(5_000)),
        ("10,000 mentions and emoji", "@bob :tada: https://x.org ".repeat(10_000)),
    ]
}

#[test]
fn bad_input_lays_out_with_a_bounded_height() {
    with_ctx(|ctx| {
        let body = egui::TextStyle::Body.resolve(&ctx.global_style());
        let row = ctx.fonts_mut(|f| f.row_height(&body));
        // Every row of the budget at the tallest (an h1 row), plus block gaps and frames.
        let bound = MAX_ROWS as f32 * row * 2.0;
        for (name, text) in bad_inputs() {
            let r = layout(ctx, &text, &opts(300.0));
            assert!(r.height() > 0.0 && r.height() < bound, "{name}: height {} over {bound}", r.height());
            assert!(r.plain_text().len() <= MAX_SOURCE * 2, "{name}");
        }
    });
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// Layout times, a measurement (printed, never asserted, so not part of the suite):
/// `cargo test --release -p classchat --lib markdown::tests::layout_times -- --ignored
/// --nocapture --test-threads=1` (BENCHMARKS.md, "Message rendering").
#[test]
#[ignore = "a measurement, not a check: run it with --ignored --nocapture"]
fn layout_times() {
    with_ctx(|ctx| {
        let typical = "Hi @ada, the fix is in `parse.rs` :tada:\n\n```python\ndef f(x):\n    return x * §\n```\nSee https://example.org/docs for **more**.";
        let mut cases = vec![("typical", typical.to_owned())];
        cases.extend(bad_inputs());
        for (name, text) in cases {
            let runs = if text.len() > 10_000 { 15 } else { 30 };
            let times: Vec<Duration> = (0..runs)
                .map(|i| {
                    // A different text each run: egui caches galleys by their text.
                    let text = format!("{i} {}", text.replace('§', &i.to_string()));
                    let t = Instant::now();
                    let r = layout(ctx, &text, &opts(500.0));
                    std::hint::black_box(r.height());
                    let all = t.elapsed();
                    let t = Instant::now();
                    std::hint::black_box(parse::parse(&text, &mut |_| true).blocks.len());
                    if i == 0 {
                        println!("  ({name}: parse alone {:?})", t.elapsed());
                    }
                    all
                })
                .collect();
            println!("markdown layout {name}: median {:?} over {runs} runs", median(times));
        }
    });
}

#[test]
fn search_hits_get_a_background() {
    with_ctx(|ctx| {
        let hits = [(9u32, 15u32)];
        let r =
            layout(ctx, "find the needle here", &Options { wrap_width: 400.0, me: "", highlights: &hits });
        assert_eq!(marked(ctx, &r), ["needle"]);
    });
}

#[test]
fn the_symbols_the_renderer_adds_are_in_the_bundled_fonts() {
    let mut fonts = egui::epaint::text::Fonts::new(
        egui::epaint::text::TextOptions::default(),
        egui::FontDefinitions::default(),
    );
    let mut v = fonts.with_pixels_per_point(1.0);
    let body = egui::FontId::proportional(12.5);
    let mono = egui::FontId::monospace(12.0);
    let marker = super::inline::marker('\u{202E}');
    for s in parse::BULLETS.iter().chain(&parse::TASK_BOXES).chain(&["…", marker.as_str(), "Copy"]) {
        assert!(v.has_glyphs(&body, s.trim()), "{s:?} has no glyph in the Body font");
    }
    assert!(v.has_glyphs(&mono, "…"), "code lines are cut with …");
}

/// The texts marked as search hits in the laid-out blocks, in order.
fn marked(ctx: &egui::Context, r: &Rendered) -> Vec<String> {
    let hit = layout::hit_bg(ctx.global_style().visuals.dark_mode);
    r.blocks
        .iter()
        .filter_map(|b| match &b.body {
            layout::Body::Text { galley, .. } => Some(galley.clone()),
            layout::Body::Code(c) => Some(c.galley.clone()),
            layout::Body::Rule => None,
        })
        .flat_map(|g| {
            g.job
                .sections
                .iter()
                .filter(|s| s.format.background == hit)
                .map(|s| g.job.text[s.byte_range.start.0..s.byte_range.end.0].to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn search_hits_map_through_formatting_and_code() {
    with_ctx(|ctx| {
        let text = "a **bold needle** and\n```\nlet needle = 1;\n```";
        let at = |from: usize| {
            let i = text[from..].find("needle").expect("needle") + from;
            (i as u32, (i + 6) as u32)
        };
        let first = at(0);
        let second = at(first.1 as usize);
        let hits = [first, second];
        let r = layout(ctx, text, &Options { wrap_width: 400.0, me: "", highlights: &hits });
        assert_eq!(marked(ctx, &r), ["needle", "needle"]);
    });
}

#[test]
fn the_cache_key_follows_the_theme_and_text_size() {
    let ctx = egui::Context::default();
    ctx.set_theme(egui::Theme::Dark);
    let dark = CacheKey::of(&ctx);
    ctx.set_theme(egui::Theme::Light);
    let light = CacheKey::of(&ctx);
    assert_ne!(dark, light);
    assert_eq!(light, CacheKey::of(&ctx));
    ctx.global_style_mut(|s| {
        if let Some(f) = s.text_styles.get_mut(&egui::TextStyle::Body) {
            f.size += 2.0;
        }
    });
    assert_ne!(light, CacheKey::of(&ctx));
}
