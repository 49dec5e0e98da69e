//! Dialogs: create room, browse rooms, the password prompt of a locked room, room
//! settings (admin), the Ctrl+K quick switcher, the broadcast confirmation and the
//! settings; the instructor tools' dialogs (exam mode, audit log, new poll) live in their
//! own modules. One is open at a time; Esc or a click beside it closes it.

use classchat_wire::{Conv, RoomInfo};
use egui::{Id, Key, Modal, RichText, TextEdit, Ui};

use crate::action::{Action, AdminOp};
use crate::app::Settings;
use crate::class::ClassState;
use crate::model::Model;
use crate::ui::{a11y_label, conv_title, field_error, moderation};

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    CreateRoom(CreateRoomForm),
    Browse(BrowseState),
    JoinLocked(JoinForm),
    RoomSettings(RoomSettingsForm),
    Switcher(SwitcherState),
    ConfirmBroadcast {
        text: String,
    },
    Settings,
    /// A DM contact's key changed: accept the new key before `text` goes out?
    ConfirmKeyChange {
        peer: String,
        text: String,
    },
    /// The key backup did not open with this password: make a new key?
    NewKey,
    ChangePassword(ChangePasswordForm),
    /// Instructors: turn exam mode on or off.
    Exam(crate::ui::moderation::ExamForm),
    /// Instructors: the moderation audit log.
    Audit(crate::ui::moderation::AuditView),
    /// Room staff: a new poll.
    NewPoll(crate::ui::polls::PollForm),
    /// Delete message `id` (its first words in `preview`)?
    ConfirmDelete {
        conv: Conv,
        id: classchat_wire::MessageId,
        preview: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangePasswordForm {
    pub current: String,
    pub new: String,
    pub repeat: String,
    pub error: Option<String>,
    pub info: Option<String>,
    pub busy: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateRoomForm {
    pub name: String,
    pub topic: String,
    pub locked: bool,
    pub password: String,
    pub name_error: Option<String>,
    pub other_error: Option<String>,
    pub busy: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BrowseState {
    pub filter: String,
    pub error: Option<String>,
    /// The room a join is under way for.
    pub joining: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinForm {
    pub room: String,
    pub password: String,
    pub error: Option<String>,
    pub busy: bool,
    focused: bool,
}

impl JoinForm {
    pub fn new(room: impl Into<String>) -> Self {
        Self { room: room.into(), ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoomSettingsForm {
    pub room: String,
    pub topic: String,
    pub password: String,
    /// `None` until the server sent the list.
    pub bans: Option<Vec<String>>,
    pub hand_over_to: String,
    pub error: Option<String>,
    pub info: Option<String>,
}

impl RoomSettingsForm {
    pub fn new(room: &RoomInfo) -> Self {
        Self { room: room.name.clone(), topic: room.topic.clone(), ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SwitcherState {
    pub query: String,
    pub selected: usize,
    focused: bool,
}

/// Shows the open dialog; returns what the user did (`CloseDialog` when they closed it).
pub fn show(
    ctx: &egui::Context,
    dialog: &mut Dialog,
    model: &Model,
    settings: &Settings,
    class: &ClassState,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let modal = Modal::new(Id::unique("dialog")).show(ctx, |ui| {
        ui.set_width(420.0);
        match dialog {
            Dialog::CreateRoom(form) => create_room(ui, form, &mut actions),
            Dialog::Browse(state) => browse(ui, state, model, &mut actions),
            Dialog::JoinLocked(form) => join_locked(ui, form, &mut actions),
            Dialog::RoomSettings(form) => room_settings(ui, form, model, &mut actions),
            Dialog::Switcher(state) => switcher(ui, state, model, &mut actions),
            Dialog::ConfirmBroadcast { text } => confirm_broadcast(ui, text, &mut actions),
            Dialog::Settings => actions.extend(crate::ui::settings::show(ui, settings, model)),
            Dialog::ConfirmKeyChange { peer, text } => {
                confirm_key_change(ui, peer, text, model, &mut actions)
            }
            Dialog::NewKey => new_key(ui, &mut actions),
            Dialog::ChangePassword(form) => change_password(ui, form, &mut actions),
            Dialog::Exam(form) => moderation::exam_dialog(ui, form, model, class, &mut actions),
            Dialog::Audit(view) => moderation::audit_dialog(ui, view, class, &mut actions),
            Dialog::NewPoll(form) => crate::ui::polls::new_poll_dialog(ui, form, &mut actions),
            Dialog::ConfirmDelete { conv, id, preview } => {
                confirm_delete(ui, conv, *id, preview, &mut actions)
            }
        }
    });
    if modal.should_close() {
        actions.push(Action::CloseDialog);
    }
    actions
}

fn buttons(ui: &mut Ui, ok: &str, ok_enabled: bool) -> (bool, bool) {
    let mut result = (false, false);
    ui.horizontal(|ui| {
        result.0 = ui.add_enabled(ok_enabled, egui::Button::new(RichText::new(ok).strong())).clicked();
        result.1 = ui.button("Cancel").clicked();
    });
    result
}

fn create_room(ui: &mut Ui, form: &mut CreateRoomForm, actions: &mut Vec<Action>) {
    ui.heading("Create a room");
    ui.label(RichText::new("You will be the room's admin.").weak());
    ui.add_space(6.0);
    let label = ui.label("Room name");
    let name =
        ui.add(TextEdit::singleline(&mut form.name).hint_text("e.g. lab-3").desired_width(f32::INFINITY));
    let name = name.labelled_by(label.id);
    if name.changed() {
        form.name_error = None;
    }
    field_error(ui, form.name_error.as_deref());
    let label = ui.label("Topic (optional)");
    ui.add(TextEdit::singleline(&mut form.topic).desired_width(f32::INFINITY)).labelled_by(label.id);
    ui.checkbox(&mut form.locked, "Require a password to join");
    if form.locked {
        let label = ui.label("Room password");
        ui.add(TextEdit::singleline(&mut form.password).password(true).desired_width(f32::INFINITY))
            .labelled_by(label.id);
    }
    field_error(ui, form.other_error.as_deref());
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "Create", !form.busy);
    if cancel {
        actions.push(Action::CloseDialog);
    }
    if ok {
        let name = form.name.trim().to_owned();
        form.other_error = None;
        if !classchat_wire::valid_name(&name) {
            form.name_error = Some("Use 1–32 letters, digits, '.', '_' or '-' (no spaces).".into());
        } else if form.locked && form.password.is_empty() {
            form.other_error = Some("Enter a password, or untick the box.".into());
        } else {
            form.busy = true;
            actions.push(Action::CreateRoom {
                name,
                topic: form.topic.trim().to_owned(),
                password: form.locked.then(|| form.password.clone()),
            });
        }
    }
}

fn browse(ui: &mut Ui, state: &mut BrowseState, model: &Model, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading("Browse rooms");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("⟳ Refresh").clicked() {
                actions.push(Action::RefreshRooms);
            }
        });
    });
    let label = ui.label("Filter");
    ui.add(
        TextEdit::singleline(&mut state.filter).hint_text("room name or topic").desired_width(f32::INFINITY),
    )
    .labelled_by(label.id);
    field_error(ui, state.error.as_deref());
    ui.add_space(4.0);
    let filter = state.filter.to_lowercase();
    let rooms: Vec<&RoomInfo> = model
        .directory
        .iter()
        .filter(|r| {
            filter.is_empty()
                || r.name.to_lowercase().contains(&filter)
                || r.topic.to_lowercase().contains(&filter)
        })
        .collect();
    egui::ScrollArea::vertical()
        .max_height(440.0)
        .min_scrolled_height(400.0)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            if rooms.is_empty() {
                ui.label(
                    RichText::new(if model.directory.is_empty() { "Loading…" } else { "No room matches." })
                        .weak(),
                );
            }
            for r in rooms {
                ui.horizontal(|ui| {
                    ui.vertical(|ui| {
                        let mut title = format!("#{}", r.name);
                        if r.locked {
                            title.push_str(" 🔒");
                        }
                        ui.label(RichText::new(title).strong());
                        let members = if r.members == 1 {
                            "1 member".to_owned()
                        } else {
                            format!("{} members", r.members)
                        };
                        let line =
                            if r.topic.is_empty() { members } else { format!("{members} · {}", r.topic) };
                        ui.label(RichText::new(line).small().weak());
                    });
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        let joined = r.joined || model.rooms.contains_key(&r.name);
                        if joined {
                            let open = ui.button("Open");
                            a11y_label(&open, format!("Open #{}", r.name));
                            if open.clicked() {
                                actions.push(Action::Select(Conv::room(r.name.as_str())));
                                actions.push(Action::CloseDialog);
                            }
                        } else if state.joining.as_deref() == Some(r.name.as_str()) {
                            ui.spinner();
                        } else {
                            let text = if r.locked { "Join…" } else { "Join" };
                            let join = ui.button(text);
                            a11y_label(&join, format!("Join #{}", r.name));
                            if join.clicked() {
                                if r.locked {
                                    actions
                                        .push(Action::OpenDialog(Dialog::JoinLocked(JoinForm::new(&r.name))));
                                } else {
                                    state.joining = Some(r.name.clone());
                                    state.error = None;
                                    actions.push(Action::JoinRoom { name: r.name.clone(), password: None });
                                }
                            }
                        }
                    });
                });
                ui.separator();
            }
        });
    if ui.button("Close").clicked() {
        actions.push(Action::CloseDialog);
    }
}

fn join_locked(ui: &mut Ui, form: &mut JoinForm, actions: &mut Vec<Action>) {
    ui.heading(format!("Join #{}", form.room));
    ui.label("This room is locked. Ask its admin for the password.");
    ui.add_space(6.0);
    let label = ui.label("Room password");
    let field = ui
        .add(TextEdit::singleline(&mut form.password).password(true).desired_width(f32::INFINITY))
        .labelled_by(label.id);
    if !form.focused {
        field.request_focus();
        form.focused = true;
    }
    if field.changed() {
        form.error = None;
    }
    field_error(ui, form.error.as_deref());
    let enter = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "Join", !form.busy);
    if cancel {
        actions.push(Action::CloseDialog);
    }
    if (ok || enter) && !form.busy {
        if form.password.is_empty() {
            form.error = Some("Enter the room password.".into());
        } else {
            form.busy = true;
            form.error = None;
            actions.push(Action::JoinRoom { name: form.room.clone(), password: Some(form.password.clone()) });
        }
    }
}

fn room_settings(ui: &mut Ui, form: &mut RoomSettingsForm, model: &Model, actions: &mut Vec<Action>) {
    let room = form.room.clone();
    ui.heading(format!("#{room} settings"));
    ui.add_space(6.0);
    let label = ui.label("Topic");
    ui.horizontal(|ui| {
        ui.add(TextEdit::singleline(&mut form.topic).desired_width(ui.available_width() - 90.0))
            .labelled_by(label.id);
        if ui.button("Save topic").clicked() {
            actions.push(Action::RoomAdmin(AdminOp::SetTopic {
                room: room.clone(),
                topic: form.topic.trim().into(),
            }));
        }
    });
    ui.add_space(6.0);
    let locked = model.rooms.get(&room).is_some_and(|r| r.locked);
    let label = ui.label(if locked { "New room password" } else { "Room password" });
    ui.horizontal(|ui| {
        ui.add(
            TextEdit::singleline(&mut form.password)
                .password(true)
                .desired_width(ui.available_width() - 110.0),
        )
        .labelled_by(label.id);
        if ui.add_enabled(!form.password.is_empty(), egui::Button::new("Set password")).clicked() {
            actions.push(Action::RoomAdmin(AdminOp::SetPassword {
                room: room.clone(),
                password: Some(std::mem::take(&mut form.password)),
            }));
        }
    });
    if locked && ui.button("Remove password (unlock)").clicked() {
        actions.push(Action::RoomAdmin(AdminOp::SetPassword { room: room.clone(), password: None }));
    }
    ui.add_space(8.0);
    moderation::room_modes(ui, &room, model, actions);
    ui.add_space(8.0);
    ui.label(RichText::new("Banned").strong());
    match &form.bans {
        None => {
            ui.spinner();
        }
        Some(bans) if bans.is_empty() => {
            ui.label(RichText::new("Nobody is banned.").weak());
        }
        Some(bans) => {
            for user in bans {
                ui.horizontal(|ui| {
                    ui.label(user);
                    let unban = ui.small_button("Unban");
                    a11y_label(&unban, format!("Unban {user}"));
                    if unban.clicked() {
                        actions.push(Action::RoomAdmin(AdminOp::Unban {
                            room: room.clone(),
                            user: user.clone(),
                        }));
                    }
                });
            }
        }
    }
    ui.add_space(8.0);
    ui.label(RichText::new("Hand over the admin role").strong());
    let others: Vec<String> = model
        .members
        .get(&room)
        .map(|ms| ms.iter().filter(|m| !model.is_me(&m.name)).map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    ui.horizontal(|ui| {
        egui::ComboBox::from_id_salt("hand-over")
            .selected_text(if form.hand_over_to.is_empty() { "Choose a member" } else { &form.hand_over_to })
            .show_ui(ui, |ui| {
                for name in &others {
                    ui.selectable_value(&mut form.hand_over_to, name.clone(), name);
                }
            });
        if ui.add_enabled(!form.hand_over_to.is_empty(), egui::Button::new("Hand over")).clicked() {
            actions.push(Action::RoomAdmin(AdminOp::HandOver {
                room: room.clone(),
                user: form.hand_over_to.clone(),
            }));
        }
    });
    if let Some(info) = &form.info {
        ui.label(RichText::new(info).color(ui.visuals().hyperlink_color));
    }
    field_error(ui, form.error.as_deref());
    ui.add_space(8.0);
    if ui.button("Close").clicked() {
        actions.push(Action::CloseDialog);
    }
}

/// The switcher's entries for `query`: conversations first, then people to message.
pub fn switcher_matches(model: &Model, query: &str) -> Vec<(String, Action)> {
    let q = query.trim().trim_start_matches(['#', '@']).to_lowercase();
    let mut out: Vec<(String, Action)> = model
        .ordered_conversations()
        .into_iter()
        .filter(|c| conv_title(c).to_lowercase().contains(&q))
        .map(|c| (conv_title(&c), Action::Select(c)))
        .collect();
    for u in model.users.values() {
        let conv = Conv::direct(u.name.as_str());
        if !model.is_me(&u.name) && model.conversation(&conv).is_none() && u.name.to_lowercase().contains(&q)
        {
            out.push((format!("@{} (new message)", u.name), Action::OpenDm(u.name.clone())));
        }
    }
    out
}

fn switcher(ui: &mut Ui, state: &mut SwitcherState, model: &Model, actions: &mut Vec<Action>) {
    ui.heading("Jump to a conversation");
    let field = ui
        .add(TextEdit::singleline(&mut state.query).hint_text("room or person").desired_width(f32::INFINITY));
    a11y_label(&field, "Jump to");
    if !state.focused {
        field.request_focus();
        state.focused = true;
    }
    if field.changed() {
        state.selected = 0;
    }
    let matches = switcher_matches(model, &state.query);
    let (up, down, enter) = ui.input_mut(|i| {
        (
            i.consume_key(egui::Modifiers::NONE, Key::ArrowUp),
            i.consume_key(egui::Modifiers::NONE, Key::ArrowDown),
            i.consume_key(egui::Modifiers::NONE, Key::Enter),
        )
    });
    if down && state.selected + 1 < matches.len() {
        state.selected += 1;
    }
    if up {
        state.selected = state.selected.saturating_sub(1);
    }
    state.selected = state.selected.min(matches.len().saturating_sub(1));
    ui.add_space(4.0);
    egui::ScrollArea::vertical().max_height(300.0).show(ui, |ui| {
        for (i, (title, action)) in matches.iter().enumerate() {
            let r = ui.selectable_label(i == state.selected, title);
            if r.clicked() {
                actions.push(action.clone());
                actions.push(Action::CloseDialog);
            }
        }
        if matches.is_empty() {
            ui.label(RichText::new("Nothing matches.").weak());
        }
    });
    if (enter || field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)))
        && let Some((_, action)) = matches.get(state.selected)
    {
        actions.push(action.clone());
        actions.push(Action::CloseDialog);
    }
    ui.label(RichText::new("Up/Down to choose, Enter to open, Esc to close").small().weak());
}

fn confirm_broadcast(ui: &mut Ui, text: &str, actions: &mut Vec<Action>) {
    ui.heading("Broadcast to everyone?");
    ui.label("Everyone on the server will get this as an announcement, including people offline now.");
    ui.add_space(6.0);
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.label(text);
    });
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "📢 Broadcast", !text.trim().is_empty());
    if ok {
        actions.push(Action::Broadcast(text.trim_end().to_owned()));
        actions.push(Action::CloseDialog);
    }
    if cancel {
        actions.push(Action::CloseDialog);
    }
}

fn confirm_delete(
    ui: &mut Ui,
    conv: &Conv,
    id: classchat_wire::MessageId,
    preview: &str,
    actions: &mut Vec<Action>,
) {
    ui.heading("Delete this message?");
    ui.label("It is removed for everyone, also from the server's history. This cannot be undone.");
    ui.add_space(6.0);
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.label(RichText::new(preview).weak());
    });
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "🗑 Delete", true);
    if ok {
        actions.push(Action::Rich(crate::rich::RichAction::Delete { conv: conv.clone(), id }));
    }
    if cancel {
        actions.push(Action::CloseDialog);
    }
}

fn confirm_key_change(ui: &mut Ui, peer: &str, text: &str, model: &Model, actions: &mut Vec<Action>) {
    let red = ui.visuals().error_fg_color;
    ui.heading(RichText::new(format!("⚠ {peer}'s key has changed")).color(red).strong());
    ui.label(format!(
        "The server now gives a different encryption key for {peer}. This happens when {peer} \
         reinstalled or lost their key, but it is also what someone reading your messages would \
         look like. Compare the new safety number with {peer} in person before you send anything \
         private."
    ));
    if let Some(number) = model.peer(peer).and_then(|p| p.changed_to.clone()) {
        ui.add_space(4.0);
        ui.label(RichText::new("New safety number").strong());
        let r = ui.label(RichText::new(crate::ui::chat_view::safety_lines(&number)).monospace());
        a11y_label(&r, format!("New safety number {number}"));
    }
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "Accept the new key and send", true);
    if ok {
        actions.push(Action::AcceptKey { peer: peer.to_owned(), then_send: Some(text.to_owned()) });
        actions.push(Action::CloseDialog);
    }
    if cancel {
        actions.push(Action::CloseDialog);
    }
}

fn new_key(ui: &mut Ui, actions: &mut Vec<Action>) {
    let red = ui.visuals().error_fg_color;
    ui.heading(RichText::new("Your old direct messages cannot be opened").color(red).strong());
    ui.label(
        "The copy of your encryption key kept on the server does not open with this password. \
         That happens when an administrator reset your password. Without that key, the direct \
         messages you sent and received before are unreadable, on this computer and on every \
         other one. If you still have the old password, log out and log in with it instead.",
    );
    ui.add_space(4.0);
    ui.label(
        "If you create a new key, you can send and receive new direct messages. Your contacts will \
         be told that your key changed, and your old messages stay unreadable.",
    );
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "Create a new key", true);
    if ok {
        actions.push(Action::NewIdentity);
        actions.push(Action::CloseDialog);
    }
    if cancel {
        actions.push(Action::CloseDialog);
    }
}

fn change_password(ui: &mut Ui, form: &mut ChangePasswordForm, actions: &mut Vec<Action>) {
    ui.heading("Change password");
    ui.label(
        RichText::new(
            "Your encryption key backup on the server is sealed again with the new password. \
             Other computers are signed out.",
        )
        .weak(),
    );
    ui.add_space(6.0);
    for (label, value) in [
        ("Current password", &mut form.current),
        ("New password", &mut form.new),
        ("Repeat the new password", &mut form.repeat),
    ] {
        let l = ui.label(label);
        ui.add(TextEdit::singleline(value).password(true).desired_width(f32::INFINITY)).labelled_by(l.id);
    }
    field_error(ui, form.error.as_deref());
    if let Some(info) = &form.info {
        ui.label(RichText::new(info).color(ui.visuals().hyperlink_color));
    }
    ui.add_space(8.0);
    let (ok, cancel) = buttons(ui, "Save the new password", !form.busy);
    if cancel {
        actions.push(Action::CloseDialog);
    }
    if ok {
        form.info = None;
        if form.new.chars().count() < 8 {
            form.error = Some("Use at least 8 characters.".into());
        } else if form.new != form.repeat {
            form.error = Some("The new passwords do not match.".into());
        } else {
            form.error = None;
            form.busy = true;
            actions.push(Action::ChangePassword { current: form.current.clone(), new: form.new.clone() });
        }
    }
}
