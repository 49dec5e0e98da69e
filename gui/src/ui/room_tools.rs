//! The room tools panel beside the chat: a room's polls and (in a Q&A room) its questions,
//! in two tabs. It folds to a thin bar of icons.

use egui::{RichText, Ui};

use crate::action::Action;
use crate::class::{ClassAction, ClassState, Tab};
use crate::model::Model;
use crate::ui::{a11y_label, moderation, polls, questions};

/// The unfolded panel for `room`.
pub fn show(ui: &mut Ui, model: &Model, class: &mut ClassState, room: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    let qa = model.rooms.get(room).is_some_and(|r| r.settings.qa);
    let tab = if qa { class.tab } else { Tab::Polls };
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let open = class.open_poll_count(room);
        let polls_title = if open > 0 { format!("📊 Polls ({open})") } else { "📊 Polls".into() };
        let r = ui.selectable_label(tab == Tab::Polls, RichText::new(polls_title).strong());
        a11y_label(&r, "Polls tab");
        if r.clicked() {
            actions.push(Action::Class(ClassAction::RoomToolsTab(Tab::Polls)));
        }
        if qa {
            let unanswered = class.unanswered_count(room);
            let title =
                if unanswered > 0 { format!("❓ Questions ({unanswered})") } else { "❓ Questions".into() };
            let r = ui.selectable_label(tab == Tab::Questions, RichText::new(title).strong());
            a11y_label(&r, "Questions tab");
            if r.clicked() {
                actions.push(Action::Class(ClassAction::RoomToolsTab(Tab::Questions)));
            }
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let fold = ui.small_button("⏵").on_hover_text("Fold the polls and questions away");
            a11y_label(&fold, "Fold room tools");
            if fold.clicked() {
                actions.push(Action::Class(ClassAction::ToggleRoomTools));
            }
        });
    });
    if let Some(summary) = model.rooms.get(room).and_then(|r| moderation::modes_summary(&r.settings)) {
        ui.label(RichText::new(summary).small().weak());
    }
    ui.separator();
    egui::ScrollArea::vertical().id_salt(("room-tools", room)).auto_shrink([false, false]).show(ui, |ui| {
        match tab {
            Tab::Polls => polls::show(ui, model, class, room, &mut actions),
            Tab::Questions => questions::show(ui, model, class, room, &mut actions),
        }
    });
    actions
}

/// The folded bar: one icon per tab, with its count.
pub fn folded(ui: &mut Ui, model: &Model, class: &ClassState, room: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.add_space(6.0);
    ui.vertical_centered(|ui| {
        let open = class.open_poll_count(room);
        let r = ui.button(if open > 0 { format!("📊\n{open}") } else { "📊".into() }).on_hover_text("Polls");
        a11y_label(&r, "Show polls");
        if r.clicked() {
            actions.push(Action::Class(ClassAction::RoomToolsTab(Tab::Polls)));
        }
        if model.rooms.get(room).is_some_and(|r| r.settings.qa) {
            let n = class.unanswered_count(room);
            let r =
                ui.button(if n > 0 { format!("❓\n{n}") } else { "❓".into() }).on_hover_text("Questions");
            a11y_label(&r, "Show questions");
            if r.clicked() {
                actions.push(Action::Class(ClassAction::RoomToolsTab(Tab::Questions)));
            }
        }
    });
    actions
}

/// The room tools beside the chat of the open room, when they apply to it: unfolded or as
/// the thin bar.
pub fn side_panel(ui: &mut Ui, model: &Model, class: &mut ClassState) -> Vec<Action> {
    let Some(classchat_wire::Conv::Room { name }) = &model.current else { return Vec::new() };
    if !model.rooms.contains_key(name) || !class.room_tools_apply(model, name) {
        return Vec::new();
    }
    if class.tools_folded {
        egui::Panel::right("room-tools-folded")
            .exact_size(48.0)
            .show(ui, |ui| folded(ui, model, class, name))
            .inner
    } else {
        egui::Panel::right("room-tools")
            .resizable(true)
            .default_size(330.0)
            .min_size(240.0)
            .show(ui, |ui| show(ui, model, class, name))
            .inner
    }
}

#[cfg(test)]
mod tests {
    /// The instructor tools' views draw only characters the bundled fonts have: egui
    /// panics on a missing glyph.
    #[test]
    fn every_symbol_of_the_class_views_is_in_the_bundled_fonts() {
        let sources = [
            include_str!("room_tools.rs"),
            include_str!("polls.rs"),
            include_str!("questions.rs"),
            include_str!("office_hours.rs"),
            include_str!("moderation.rs"),
            include_str!("composer.rs"),
            include_str!("members.rs"),
        ];
        let ctx = egui::Context::default();
        // Fonts exist after the first pass; its textures are not needed.
        let mut output = ctx.run_ui(Default::default(), |_| {});
        output.textures_delta.clear();
        let font = egui::FontId::proportional(14.0);
        let mut missing: Vec<char> = sources
            .iter()
            .flat_map(|s| s.chars())
            .filter(|c| !c.is_ascii())
            .filter(|c| !ctx.fonts_mut(|f| f.has_glyph(&font, *c)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        assert!(missing.is_empty(), "no glyph for {missing:?}");
    }
}
