//! The settings dialog: theme, notifications, account.

use egui::{RichText, Ui};

use crate::action::Action;
use crate::app::{Settings, ThemeChoice};
use crate::model::Model;

pub fn show(ui: &mut Ui, settings: &Settings, model: &Model) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.heading("Settings");
    ui.add_space(6.0);
    ui.label(RichText::new("Theme").strong());
    ui.horizontal(|ui| {
        for (choice, label) in [
            (ThemeChoice::System, "Follow the system"),
            (ThemeChoice::Light, "Light"),
            (ThemeChoice::Dark, "Dark"),
        ] {
            if ui.radio(settings.theme == choice, label).clicked() {
                actions.push(Action::SetTheme(choice));
            }
        }
    });
    ui.add_space(6.0);
    let mut notify = settings.notifications;
    if ui
        .checkbox(
            &mut notify,
            "Notify me of direct messages and mentions while the window is in the background",
        )
        .changed()
    {
        actions.push(Action::SetNotifications(notify));
    }
    ui.add_space(6.0);
    ui.label(RichText::new("Shared folder").strong());
    ui.label(
        RichText::new("Classmates can find and fetch files from this folder while \"Share my files\" is on.")
            .small()
            .weak(),
    );
    crate::ui::shared_files::folder_row(ui, &settings.sharing, &mut actions);
    if ui.button("Shared files…").on_hover_text("Which files are shared, and the upload limit").clicked() {
        actions.push(Action::Sharing(crate::sharing::SharingAction::OpenPanel));
        actions.push(Action::CloseDialog);
    }
    ui.add_space(10.0);
    if let Some(me) = &model.me {
        ui.label(RichText::new("Account").strong());
        let role = if me.server_admin { " (instructor)" } else { "" };
        ui.label(format!("Signed in as {}{role} on {} ({}).", me.name, me.server_name, settings.server));
        if ui.button("Change password…").clicked() {
            actions.push(Action::OpenDialog(crate::ui::dialogs::Dialog::ChangePassword(Default::default())));
        }
        if ui
            .button("Log out")
            .on_hover_text("This computer forgets the session; log in again with your password")
            .clicked()
        {
            actions.push(Action::LogOut);
            actions.push(Action::CloseDialog);
        }
    }
    ui.add_space(10.0);
    if ui.button("Close").clicked() {
        actions.push(Action::CloseDialog);
    }
    actions
}
