//! "Find a file" in a room: the search box, and the list of classmates' answers with a
//! **Get** button each. Names from the network are shown through
//! [`display_name`](crate::sharing::display_name) only.

use classchat_wire::Conv;
use egui::{Key, RichText, TextEdit, Ui};

use crate::action::Action;
use crate::files::human_size;
use crate::model::Model;
use crate::sharing::{Sharing, SharingAction, display_name};
use crate::ui::a11y_label;

/// The accessible name of the search field.
pub const FIND_FIELD: &str = "Find a file";

/// The strip above the composer in a room: the box, and the results once there are any.
pub fn bottom_panel(ui: &mut Ui, model: &Model, sharing: &mut Sharing, online: bool) -> Vec<Action> {
    let Some(Conv::Room { name }) = model.current.clone() else { return Vec::new() };
    if !model.rooms.contains_key(&name) {
        return Vec::new();
    }
    egui::Panel::bottom("file-search").show(ui, |ui| show(ui, &name, sharing, online)).inner
}

pub fn show(ui: &mut Ui, room: &str, sharing: &mut Sharing, online: bool) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.add_space(3.0);
    ui.horizontal(|ui| {
        ui.label("🔎");
        let edit = TextEdit::singleline(&mut sharing.find_text)
            .hint_text(format!("Find a file among #{room}'s classmates (or type /whohas NAME)"))
            .desired_width(ui.available_width() - 90.0);
        let r = ui.add(edit);
        a11y_label(&r, FIND_FIELD);
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        let can = online && !sharing.find_text.trim().is_empty();
        let b = ui.add_enabled(can, egui::Button::new("Search"));
        let b = if online { b } else { b.on_disabled_hover_text("Offline") };
        a11y_label(&b, "Search for a file");
        if (b.clicked() || enter) && can {
            actions.push(Action::Sharing(SharingAction::Search {
                room: room.to_owned(),
                query: sharing.find_text.clone(),
            }));
        }
    });
    if let Some(search) = &sharing.search {
        results(ui, search, &mut actions);
    }
    ui.add_space(3.0);
    actions
}

fn results(ui: &mut Ui, search: &crate::sharing::Search, actions: &mut Vec<Action>) {
    let now = std::time::Instant::now();
    let waiting = search.waiting(now);
    if waiting {
        // The list says "searching" until the answers are in or patience runs out.
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(250));
    }
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.horizontal(|ui| {
            let n = search.hits.len();
            let head = match (&search.error, waiting, n) {
                (Some(e), _, _) => format!("Search for “{}” failed: {e}", search.query),
                (None, true, 0) => format!("Asking #{} who has “{}”…", search.room, search.query),
                (None, true, _) => format!("{n} found so far for “{}” in #{}…", search.query, search.room),
                (None, false, 0) => format!("Nobody in #{} shares a file matching “{}”.", search.room, search.query),
                (None, false, 1) => format!("1 file matches “{}” in #{}", search.query, search.room),
                (None, false, _) => format!("{n} files match “{}” in #{}", search.query, search.room),
            };
            if waiting {
                ui.spinner();
            }
            let r = ui.label(RichText::new(&head).strong());
            a11y_label(&r, format!("Search results: {head}"));
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let c = ui.small_button("✖").on_hover_text("Close the results");
                a11y_label(&c, "Close search results");
                if c.clicked() {
                    actions.push(Action::Sharing(SharingAction::CloseResults));
                }
            });
        });
        if search.hits.is_empty() {
            return;
        }
        let row_height = ui.spacing().interact_size.y + 4.0;
        egui::ScrollArea::vertical().id_salt("file-search-results").max_height(180.0).show_rows(
            ui,
            row_height,
            search.hits.len(),
            |ui, range| {
                for i in range {
                    let Some(hit) = search.hits.get(i) else { continue };
                    let name = display_name(&hit.name);
                    ui.horizontal(|ui| {
                        let r = ui.label(RichText::new(format!("📄 {name}")).strong());
                        r.on_hover_text(format!("SHA-256 {}", hex::encode(hit.sha256)));
                        ui.label(RichText::new(human_size(hit.size)).weak());
                        ui.label(format!("shared by {}", hit.sharer));
                        if hit.busy {
                            let b = ui.label(RichText::new("busy").color(ui.visuals().warn_fg_color));
                            b.on_hover_text(format!(
                                "{} is sending as many files as they allow right now: pick another sharer, or try again later",
                                hit.sharer
                            ));
                        }
                        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                            let save_as = ui.small_button("Save as…").on_hover_text("Choose where to save it");
                            a11y_label(&save_as, format!("Save {name} from {} as", hit.sharer));
                            if save_as.clicked() {
                                actions.push(Action::Sharing(SharingAction::Get { hit: i, ask_where: true }));
                            }
                            let get = ui.button("⬇ Get").on_hover_text(if hit.busy {
                                "The sharer is busy: it may have to wait, or pick another"
                            } else {
                                "Fetch it into Downloads, straight from their computer"
                            });
                            a11y_label(&get, format!("Get {name} from {}", hit.sharer));
                            if get.clicked() {
                                actions.push(Action::Sharing(SharingAction::Get { hit: i, ask_where: false }));
                            }
                        });
                    });
                }
            },
        );
        if search.truncated {
            ui.label(RichText::new("More answers came than are shown; narrow the search.").small().weak());
        }
    });
}
