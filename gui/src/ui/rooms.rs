//! Left sidebar: joined rooms (unread counts, a lock on password rooms), direct-message
//! conversations, the announcements, and the buttons to create or browse rooms.

use classchat_wire::Conv;
use egui::{RichText, Ui};

use crate::action::Action;
use crate::model::Model;
use crate::ui::dialogs::{BrowseState, CreateRoomForm, Dialog, SwitcherState};
use crate::ui::{a11y_label, conv_title};

pub fn show(ui: &mut Ui, model: &Model) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.heading("Rooms");
    });
    ui.horizontal_wrapped(|ui| {
        if ui.button("➕ Create room").clicked() {
            actions.push(Action::OpenDialog(Dialog::CreateRoom(CreateRoomForm::default())));
        }
        if ui.button("🔍 Browse rooms").clicked() {
            actions.push(Action::OpenDialog(Dialog::Browse(BrowseState::default())));
        }
    });
    ui.add_space(4.0);
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        let convs = model.ordered_conversations();
        for conv in convs.iter().filter(|c| matches!(c, Conv::Room { .. })) {
            entry(ui, model, conv, &mut actions);
        }
        ui.add_space(8.0);
        ui.label(RichText::new("Direct messages").strong());
        let mut any_dm = false;
        for conv in convs.iter().filter(|c| matches!(c, Conv::Direct { .. })) {
            any_dm = true;
            entry(ui, model, conv, &mut actions);
        }
        if !any_dm {
            ui.label(RichText::new("Click a person on the right to start one.").weak().small());
        }
        if convs.contains(&Conv::Announcements) {
            ui.add_space(8.0);
            entry(ui, model, &Conv::Announcements, &mut actions);
        }
        ui.add_space(8.0);
        let hint = ui.add(egui::Button::new(RichText::new("Jump to… (Ctrl+K)").small()).frame(false));
        if hint.clicked() {
            actions.push(Action::OpenDialog(Dialog::Switcher(SwitcherState::default())));
        }
    });
    actions
}

/// The accessible name of a sidebar entry, e.g. "#lab, 2 unread".
pub fn entry_label(model: &Model, conv: &Conv) -> String {
    let mut label = conv_title(conv);
    if let Conv::Room { name } = conv
        && model.rooms.get(name).is_some_and(|r| r.locked)
    {
        label.push_str(", locked");
    }
    if let Some(c) = model.conversation(conv) {
        if c.removed.is_some() {
            label.push_str(", removed");
        }
        if c.unread > 0 {
            label.push_str(&format!(", {} unread", c.unread));
        }
        if c.mentioned {
            label.push_str(", mentions you");
        }
    }
    label
}

fn entry(ui: &mut Ui, model: &Model, conv: &Conv, actions: &mut Vec<Action>) {
    let Some(c) = model.conversation(conv) else { return };
    let selected = model.current.as_ref() == Some(conv);
    let locked = matches!(conv, Conv::Room { name } if model.rooms.get(name).is_some_and(|r| r.locked));
    let mut text = conv_title(conv);
    if matches!(conv, Conv::Announcements) {
        text = format!("📢 {text}");
    }
    if locked {
        text.push_str(" 🔒");
    }
    let mut rich = RichText::new(text);
    if c.unread > 0 {
        rich = rich.strong();
    }
    if c.removed.is_some() {
        rich = rich.strikethrough().weak();
    }
    let response = ui
        .horizontal(|ui| {
            let r = ui.selectable_label(selected, rich);
            if c.unread > 0 {
                let color =
                    if c.mentioned { ui.visuals().error_fg_color } else { ui.visuals().selection.bg_fill };
                let badge = RichText::new(format!(" {} ", c.unread))
                    .small()
                    .strong()
                    .color(egui::Color32::WHITE)
                    .background_color(color);
                ui.label(badge);
            }
            r
        })
        .inner;
    a11y_label(&response, entry_label(model, conv));
    if response.clicked() {
        actions.push(Action::Select(conv.clone()));
    }
}
