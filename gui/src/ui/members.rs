//! Right sidebar: the members of the current room (online dots, the admin and instructors
//! marked, admin actions and mutes for the room's staff) and everyone known to the server
//! (server-wide mutes for instructors, "Join office hours" beside an instructor for
//! students). Clicking a person opens a direct-message conversation.

use classchat_wire::{Conv, MuteScope};
use egui::{RichText, Ui};

use crate::action::{Action, AdminOp};
use crate::class::{ClassState, now_ms};
use crate::model::Model;
use crate::ui::{a11y_label, moderation, name_color, office_hours, presence_dot};

/// Which member's admin actions are unfolded.
#[derive(Debug, Default)]
pub struct MembersState {
    pub expanded: Option<String>,
    /// Instructors: whose server-wide actions are unfolded in the everyone list.
    pub expanded_user: Option<String>,
}

pub fn show(ui: &mut Ui, model: &Model, state: &mut MembersState, class: &ClassState) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.add_space(6.0);
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        match &model.current {
            Some(Conv::Room { name }) => room_members(ui, model, name, state, class, &mut actions),
            Some(Conv::Direct { user }) => {
                ui.heading("Conversation");
                let online = model.users.get(&user.to_ascii_lowercase()).is_some_and(|u| u.online);
                ui.horizontal(|ui| {
                    presence_dot(ui, online);
                    ui.label(RichText::new(user).color(name_color(ui, user)).strong());
                    ui.label(RichText::new(if online { "online" } else { "offline" }).weak());
                });
            }
            Some(Conv::Announcements) | None => {}
        }
        ui.add_space(10.0);
        everyone(ui, model, state, class, &mut actions);
    });
    actions
}

fn room_members(
    ui: &mut Ui,
    model: &Model,
    room: &str,
    state: &mut MembersState,
    class: &ClassState,
    actions: &mut Vec<Action>,
) {
    let Some(members) = model.members.get(room) else {
        ui.heading("Members");
        if model.rooms.contains_key(room) {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Loading…");
            });
        }
        return;
    };
    let online = members.iter().filter(|m| m.online).count();
    ui.heading(format!("Members ({})", members.len()));
    ui.label(RichText::new(format!("{online} online")).weak().small());
    let i_am_admin = model.is_room_admin(room);
    for m in members {
        let me = model.is_me(&m.name);
        ui.horizontal(|ui| {
            presence_dot(ui, m.online);
            let mut text = RichText::new(&m.name).color(name_color(ui, &m.name));
            if me {
                text = text.strong();
            }
            let r = ui.add(egui::Button::new(text).frame(false));
            let mut label = format!("{}, {}", m.name, if m.online { "online" } else { "offline" });
            if m.admin {
                label.push_str(", room admin");
            }
            if m.instructor {
                label.push_str(", instructor");
            }
            if i_am_admin && m.muted {
                label.push_str(", muted");
            }
            a11y_label(&r, label);
            if r.clicked() && !me {
                actions.push(Action::OpenDm(m.name.clone()));
            }
            if !me {
                r.on_hover_text(format!("Message {}", m.name));
            }
            if m.admin {
                ui.label(RichText::new("★ admin").small().color(ui.visuals().warn_fg_color));
            }
            if m.instructor {
                ui.label(RichText::new("🎓").small()).on_hover_text("Instructor");
            }
            if me {
                ui.label(RichText::new("(you)").small().weak());
            }
            if i_am_admin && m.muted {
                moderation::muted_marker(ui, class, &m.name, m.muted_until);
            }
            if m.instructor && !me {
                office_hours::queue_button(ui, model, class, &m.name, actions);
            }
            if i_am_admin && !me {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let open = state.expanded.as_deref() == Some(m.name.as_str());
                    let toggle = ui.selectable_label(open, "…");
                    a11y_label(&toggle, format!("Manage {}", m.name));
                    if toggle.clicked() {
                        state.expanded = if open { None } else { Some(m.name.clone()) };
                    }
                });
            }
        });
        if i_am_admin && !me && state.expanded.as_deref() == Some(m.name.as_str()) {
            ui.indent(("manage", &m.name), |ui| {
                ui.horizontal_wrapped(|ui| {
                    let (room, user) = (room.to_owned(), m.name.clone());
                    let kick = ui.button("Kick").on_hover_text("Remove from the room; they may join again");
                    a11y_label(&kick, format!("Kick {user}"));
                    if kick.clicked() {
                        actions.push(Action::RoomAdmin(AdminOp::Kick {
                            room: room.clone(),
                            user: user.clone(),
                        }));
                        state.expanded = None;
                    }
                    let ban = ui.button("Ban").on_hover_text("Remove from the room and refuse later joins");
                    a11y_label(&ban, format!("Ban {user}"));
                    if ban.clicked() {
                        actions
                            .push(Action::RoomAdmin(AdminOp::Ban { room: room.clone(), user: user.clone() }));
                        state.expanded = None;
                    }
                    let hand = ui.button("Make admin").on_hover_text("Hand the room admin role over");
                    a11y_label(&hand, format!("Make {user} the room admin"));
                    if hand.clicked() {
                        actions.push(Action::RoomAdmin(AdminOp::HandOver { room, user }));
                        state.expanded = None;
                    }
                });
                // Staff cannot be muted: the room's admin and instructors are not offered it.
                if !m.admin && !m.instructor {
                    let muted = m.muted && m.muted_until.is_none_or(|u| u > now_ms());
                    ui.horizontal_wrapped(|ui| {
                        moderation::mute_buttons(
                            ui,
                            &MuteScope::Room { name: room.to_owned() },
                            &m.name,
                            muted,
                            actions,
                        );
                    });
                }
            });
        }
    }
}

fn everyone(
    ui: &mut Ui,
    model: &Model,
    state: &mut MembersState,
    class: &ClassState,
    actions: &mut Vec<Action>,
) {
    let instructor_me = ClassState::is_instructor(model);
    let now = now_ms();
    let online = model.users.values().filter(|u| u.online).count();
    ui.label(RichText::new(format!("Everyone ({online}/{} online)", model.users.len())).strong());
    // Online people first, then by name.
    let mut users: Vec<_> = model.users.values().collect();
    users.sort_by_key(|u| (!u.online, u.name.to_ascii_lowercase()));
    for u in users {
        let me = model.is_me(&u.name);
        ui.horizontal(|ui| {
            presence_dot(ui, u.online);
            let r =
                ui.add(egui::Button::new(RichText::new(&u.name).color(name_color(ui, &u.name))).frame(false));
            let presence = if u.online { "online" } else { "offline" };
            a11y_label(&r, format!("{} ({presence})", u.name));
            if u.server_admin {
                ui.label(RichText::new("instructor").small().weak());
                // Offered once: beside them in the room's members when they are listed there.
                if !me && !in_current_room(model, &u.name) {
                    office_hours::queue_button(ui, model, class, &u.name, actions);
                }
            }
            let server_mute = class.server_mute_of(&u.name, now);
            if instructor_me && let Some(m) = server_mute {
                moderation::muted_marker(ui, class, &u.name, m.until);
            }
            if r.clicked() && !me {
                actions.push(Action::OpenDm(u.name.clone()));
            }
            if instructor_me && !me && !u.server_admin {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let open = state.expanded_user.as_deref() == Some(u.name.as_str());
                    let toggle = ui.selectable_label(open, "…");
                    a11y_label(&toggle, format!("Moderate {}", u.name));
                    if toggle.clicked() {
                        state.expanded_user = if open { None } else { Some(u.name.clone()) };
                    }
                });
            }
        });
        if instructor_me && !me && state.expanded_user.as_deref() == Some(u.name.as_str()) {
            ui.indent(("moderate", &u.name), |ui| {
                ui.horizontal_wrapped(|ui| {
                    let muted = class.server_mute_of(&u.name, now).is_some();
                    moderation::mute_buttons(ui, &MuteScope::Server, &u.name, muted, actions);
                });
            });
        }
    }
}

/// Whether `user` is listed among the members of the open room.
fn in_current_room(model: &Model, user: &str) -> bool {
    let Some(Conv::Room { name }) = &model.current else { return false };
    model.members.get(name).is_some_and(|ms| ms.iter().any(|m| m.name.eq_ignore_ascii_case(user)))
}
