//! A gallery of formatted messages, for looking at the markdown renderer (and taking
//! screenshots under Xvfb): code in several languages, quotes, lists, links, mentions,
//! emoji and bad input, in a wide and a narrow column.
//!
//!   cargo run -p classchat --example markdown_gallery [-- --light]

use std::collections::HashMap;

use classchat::ui::markdown::{self, CacheKey, MdAction, Options, Rendered};

const WIDE: &[(&str, &str)] = &[
    (
        "ada",
        "Plain text looks like plain text.\nA second line, and an empty one follows.\n\nThird paragraph.",
    ),
    (
        "bob",
        "**Bold**, *italic*, ~~struck~~, `inline code` and a [link](https://example.org/docs?page=1). \
         Bare URLs too: https://rust-lang.org. Not this one: [click me](javascript:alert(1)).",
    ),
    ("carol", "Thanks @ada! :tada: :+1: cc @bob @dave\n> Quoted reply with **bold**\n> > and a nested quote"),
    (
        "dave",
        "# Lab 3\n## Steps\n1. Clone the repo\n2. Run the tests\n   - unit\n   - integration\n3. Submit\n\n---\n- [ ] a task\n- [x] a done task\n- mail: <mailto:ta@example.org>",
    ),
    (
        "erin",
        "```python\ndef mean(xs: list[float]) -> float:\n    \"\"\"Average of xs.\"\"\"\n    return sum(xs) / len(xs)  # ZeroDivisionError on []\n```",
    ),
    (
        "frank",
        "```sql\nSELECT name, COUNT(*) AS n FROM messages WHERE room = 'physics' GROUP BY name ORDER BY n DESC;\n```\n```c\n#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n```",
    ),
];

const NARROW: &[(&str, &str)] = &[
    (
        "gina",
        "```rust\nfn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).filter(|x| x % 2 == 0).collect();\n    println!(\"{v:?}\");\n}\n```",
    ),
    ("hank", "```js\nconst sum = (xs) => xs.reduce((a, b) => a + b, 0); // a long line that scrolls\n```"),
    ("ivy", "```bash\nfor f in *.txt; do wc -l \"$f\"; done | sort -n | tail -3\n```"),
    ("jo", "evil: user\u{202E}gnp.exe and bell\u{7} and \u{2066}isolate\u{2069}"),
];

struct Gallery {
    cache: HashMap<(usize, u32, CacheKey), Rendered>,
    bad: Vec<(&'static str, String)>,
    clicked: Vec<String>,
    picker: classchat::ui::emoji::PickerState,
}

impl Gallery {
    fn message(&mut self, ui: &mut egui::Ui, key: usize, name: &str, text: &str, width: f32) {
        let style_key = CacheKey::of(ui.ctx());
        let r = self.cache.entry((key, width as u32, style_key)).or_insert_with(|| {
            // The first message shows what a search hit looks like.
            let highlights: &[(u32, u32)] = if key == 0 { &[(6, 10)] } else { &[] };
            markdown::layout(ui.ctx(), text, &Options { wrap_width: width, me: "ada", highlights })
        });
        ui.label(egui::RichText::new(name).strong().color(classchat::ui::name_color(ui, name)));
        let actions = ui.push_id(key, |ui| r.show(ui)).inner;
        for a in actions {
            self.clicked.push(match a {
                MdAction::OpenUrl(u) => format!("opened {u}"),
                MdAction::Mention(m) => format!("mention {m}"),
            });
        }
        ui.add_space(8.0);
    }
}

impl eframe::App for Gallery {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| {
                    ui.set_width(620.0);
                    egui::ScrollArea::vertical().id_salt("wide").show(ui, |ui| {
                        for (i, (name, text)) in WIDE.iter().enumerate() {
                            self.message(ui, i, name, text, 600.0);
                        }
                    });
                });
                ui.separator();
                ui.vertical(|ui| {
                    ui.set_width(300.0);
                    egui::ScrollArea::vertical().id_salt("narrow").show(ui, |ui| {
                        for (i, (name, text)) in NARROW.iter().enumerate() {
                            self.message(ui, 100 + i, name, text, 280.0);
                        }
                        let bad = self.bad.clone();
                        for (i, (name, text)) in bad.iter().enumerate() {
                            self.message(ui, 200 + i, name, text, 280.0);
                        }
                    });
                });
                ui.separator();
                ui.vertical(|ui| {
                    ui.label(egui::RichText::new("Emoji picker").strong());
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        if let Some(e) = classchat::ui::emoji::picker(ui, &mut self.picker) {
                            self.clicked.push(format!("picked {e}"));
                        }
                    });
                    for c in self.clicked.iter().rev().take(5) {
                        ui.label(c);
                    }
                });
            });
        });
    }
}

fn main() -> eframe::Result {
    let light = std::env::args().any(|a| a == "--light");
    let bad = vec![
        ("bad: 100,000 backticks", "`".repeat(100_000)),
        ("bad: 1,000 nested quotes", format!("{} deep", ">".repeat(1000))),
        ("bad: 30 KB of *_~[", "*_~[".repeat(7_500)),
    ];
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("markdown gallery")
            .with_inner_size([1280.0, 800.0]),
        ..Default::default()
    };
    eframe::run_native(
        "markdown gallery",
        options,
        Box::new(move |cc| {
            cc.egui_ctx.set_theme(if light { egui::Theme::Light } else { egui::Theme::Dark });
            Ok(Box::new(Gallery {
                cache: HashMap::new(),
                bad,
                clicked: Vec::new(),
                picker: Default::default(),
            }))
        }),
    )
}
