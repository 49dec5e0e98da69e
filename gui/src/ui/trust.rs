//! The server-key prompt: first contact asks the user to compare the fingerprint; a
//! changed key is a loud warning that refuses unless the user explicitly accepts.

use egui::{Id, Modal, RichText, Ui};

use crate::action::Action;
use crate::net::TrustPrompt;
use crate::ui::a11y_label;

/// The fingerprint in two lines of eight groups, easy to compare with a projector.
pub fn fingerprint_lines(fp: &classchat_wire::Fingerprint) -> String {
    let shown = fp.to_string();
    let groups: Vec<&str> = shown.split(' ').collect();
    groups.chunks(8).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n")
}

/// Shows the prompt. `acknowledged` is the "I have checked" box of the changed-key case.
pub fn show(ctx: &egui::Context, prompt: &TrustPrompt, acknowledged: &mut bool) -> Vec<Action> {
    let mut actions = Vec::new();
    let modal = Modal::new(Id::unique("trust-prompt")).show(ctx, |ui| {
        ui.set_max_width(480.0);
        match &prompt.changed_from {
            None => first_contact(ui, prompt, &mut actions),
            Some(old) => changed_key(ui, prompt, old, acknowledged, &mut actions),
        }
    });
    if modal.should_close() && actions.is_empty() {
        actions.push(Action::RejectServer);
    }
    actions
}

fn fingerprint_block(ui: &mut Ui, label: &str, fp: &classchat_wire::Fingerprint) {
    ui.label(RichText::new(label).strong());
    let text = fingerprint_lines(fp);
    let r = ui.label(RichText::new(&text).monospace().size(15.0));
    a11y_label(&r, format!("{label} {fp}"));
}

fn first_contact(ui: &mut Ui, prompt: &TrustPrompt, actions: &mut Vec<Action>) {
    ui.heading("New server");
    ui.add_space(4.0);
    ui.label(format!(
        "This is the first time this computer connects to {}. Check that the fingerprint below \
         matches the one the server printed when it started (your instructor can show it on the \
         projector). If it does not match, someone may be intercepting the connection.",
        prompt.addr
    ));
    ui.add_space(8.0);
    fingerprint_block(ui, "Server fingerprint", &prompt.fingerprint);
    ui.add_space(12.0);
    ui.horizontal(|ui| {
        if ui.button(RichText::new("Trust this server").strong()).clicked() {
            actions.push(Action::TrustServer { addr: prompt.addr.clone(), fingerprint: prompt.fingerprint });
        }
        if ui.button("Cancel").clicked() {
            actions.push(Action::RejectServer);
        }
    });
}

fn changed_key(
    ui: &mut Ui,
    prompt: &TrustPrompt,
    old: &classchat_wire::Fingerprint,
    acknowledged: &mut bool,
    actions: &mut Vec<Action>,
) {
    let red = ui.visuals().error_fg_color;
    ui.heading(RichText::new("⚠ The server's key has CHANGED").color(red).strong());
    ui.add_space(4.0);
    ui.label(format!(
        "The server at {} presented a different key from the one this computer saw before. This is \
         exactly what an attacker intercepting your connection would look like: they could read and \
         change everything you send. It also happens when the server is reinstalled. Ask your \
         instructor before you continue; the safe choice is to disconnect.",
        prompt.addr
    ));
    ui.add_space(8.0);
    fingerprint_block(ui, "Previously trusted", old);
    ui.add_space(4.0);
    fingerprint_block(ui, "Now presented", &prompt.fingerprint);
    ui.add_space(10.0);
    ui.checkbox(acknowledged, "I checked the new fingerprint with the server's owner");
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let disconnect = ui.button(RichText::new("Disconnect").strong());
        if disconnect.clicked() {
            actions.push(Action::RejectServer);
        }
        let accept =
            ui.add_enabled(*acknowledged, egui::Button::new(RichText::new("Trust the new key").color(red)));
        if accept.clicked() {
            actions.push(Action::TrustServer { addr: prompt.addr.clone(), fingerprint: prompt.fingerprint });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_shows_as_two_lines_of_eight_groups() {
        let fp = classchat_wire::Fingerprint::of_der(b"k");
        let text = fingerprint_lines(&fp);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.split(' ').count() == 8));
    }
}
