//! The message renderer in a real egui frame (egui_kittest): the Copy button copies the
//! code, only http(s)/mailto links open, hovering a link shows its URL, wide code scrolls
//! sideways in a narrow window instead of wrapping, and the emoji picker returns the
//! emoji clicked.

use classchat::ui::emoji::{self, PickerState};
use classchat::ui::markdown::{self, MdAction, Options};
use egui::OutputCommand;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

/// What the frames produced: the renderer's actions and the commands sent to the
/// platform (clipboard, open URL).
#[derive(Default)]
struct Seen {
    actions: Vec<MdAction>,
    commands: Vec<OutputCommand>,
}

/// A harness drawing one message at `width`, re-laid out only when the width changes
/// (as the chat view caches it).
fn message(text: &'static str, width: f32) -> Harness<'static, Seen> {
    let mut cached: Option<markdown::Rendered> = None;
    // Tooltips wait a few frames before they show.
    Harness::builder().with_size(egui::vec2(width, 300.0)).with_max_steps(30).build_ui_state(
        move |ui, seen: &mut Seen| {
            let w = ui.available_width();
            let r = match &cached {
                Some(r) if r.width() == w => r.clone(),
                _ => {
                    let r = markdown::layout(
                        ui.ctx(),
                        text,
                        &Options { wrap_width: w, me: "ada", highlights: &[] },
                    );
                    cached = Some(r.clone());
                    r
                }
            };
            let top = ui.cursor().top();
            seen.actions.extend(ui.push_id("message", |ui| r.show(ui)).inner);
            assert!(
                (ui.cursor().top() - top - r.height()).abs() < 1.0 + ui.spacing().item_spacing.y,
                "show took its height"
            );
            seen.commands.extend(ui.ctx().output(|o| o.commands.clone()));
        },
        Seen::default(),
    )
}

fn opened(seen: &Seen) -> Vec<String> {
    seen.commands
        .iter()
        .filter_map(|c| match c {
            OutputCommand::OpenUrl(u) => Some(u.url.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_text_is_there_for_screen_readers() {
    let mut h = message("**Office hours** moved to *Thursday*\n\n- room 4.12", 400.0);
    h.run();
    assert!(h.query_by_label("Office hours moved to Thursday").is_some());
    assert!(h.query_by_label("room 4.12").is_some());
}

#[test]
fn copy_copies_the_whole_code() {
    let mut h = message("Try this:\n```python\nprint('hi')\nx = [i * i for i in range(10)]\n```", 500.0);
    h.run();
    h.get_by_label("Copy").click();
    h.run();
    let copied: Vec<&String> = h
        .state()
        .commands
        .iter()
        .filter_map(|c| if let OutputCommand::CopyText(t) = c { Some(t) } else { None })
        .collect();
    assert_eq!(copied, ["print('hi')\nx = [i * i for i in range(10)]"]);
}

#[test]
fn an_https_link_opens_and_a_javascript_one_does_not() {
    let mut h = message("[docs](https://example.org/docs)", 400.0);
    h.run();
    let link = h.get_by_role_and_label(egui::accesskit::Role::Link, "docs");
    link.click();
    h.run();
    assert_eq!(opened(h.state()), ["https://example.org/docs"]);
    assert_eq!(h.state().actions, [MdAction::OpenUrl("https://example.org/docs".into())]);

    let mut h = message("[docs](javascript:alert(1))", 400.0);
    h.run();
    // Click where the text is drawn: the first row, near the left.
    let at = egui::pos2(12.0, 8.0);
    h.hover_at(at);
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    h.run();
    assert!(opened(h.state()).is_empty(), "{:?}", opened(h.state()));
    assert!(h.state().actions.is_empty());
    assert!(h.query_by_role(egui::accesskit::Role::Link).is_none(), "a javascript: link is no link");
}

#[test]
fn hovering_a_link_shows_its_url() {
    let mut h = message("see [the notes](https://example.org/notes/week-3.pdf) first", 400.0);
    h.run();
    assert!(h.query_by_value("https://example.org/notes/week-3.pdf").is_none());
    h.get_by_role_and_label(egui::accesskit::Role::Link, "the notes").hover();
    h.run();
    assert!(h.query_by_value("https://example.org/notes/week-3.pdf").is_some(), "the tooltip shows the URL");
}

#[test]
fn a_mention_click_is_reported() {
    let mut h = message("ping @bob please", 400.0);
    h.run();
    h.get_by_role_and_label(egui::accesskit::Role::Link, "@bob").click();
    h.run();
    assert_eq!(h.state().actions, [MdAction::Mention("bob".into())]);
    assert!(opened(h.state()).is_empty());
}

#[test]
fn wide_code_scrolls_sideways_in_a_narrow_window() {
    const LONG: &str = "```rust\nlet total: u64 = values.iter().copied().filter(|v| v % 3 == 0).map(|v| v * v).sum(); // a long line\n```";
    let mut h = message(LONG, 220.0);
    h.run();
    let code = h.get_by_label("rust code");
    let before = code.rect();
    assert!(before.width() > 400.0, "the line is not wrapped: {before:?}");
    assert!(before.height() < 30.0, "one row: {before:?}");
    // Scroll sideways over the code (shift+wheel is sideways too; a horizontal delta is
    // what a touchpad sends).
    let at = before.center().clamp(egui::pos2(10.0, 10.0), egui::pos2(200.0, 290.0));
    h.hover_at(at);
    h.event(egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(-150.0, 0.0),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Unknown,
        modifiers: egui::Modifiers::NONE,
    });
    h.run();
    let after = h.get_by_label("rust code").rect();
    assert!(after.left() < before.left() - 50.0, "the code scrolled: {before:?} -> {after:?}");
}

#[test]
fn a_picker_click_returns_the_emoji() {
    let mut h = Harness::builder().with_size(egui::vec2(320.0, 400.0)).build_ui_state(
        |ui, state: &mut (PickerState, Vec<String>)| {
            if let Some(e) = emoji::picker(ui, &mut state.0) {
                state.1.push(e);
            }
        },
        (PickerState::default(), Vec::new()),
    );
    h.run();
    h.get_by_label("Search emoji").focus();
    h.get_by_label("Search emoji").type_text("party");
    h.run();
    h.get_by_label("party popper").click();
    h.run();
    assert_eq!(h.state().1, ["🎉"]);
    assert_eq!(h.state().0.recent, ["🎉"], "the picked emoji is recently used");
}
