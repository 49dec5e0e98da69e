//! The connect screen: server address, username, password; log in or create an account.
//! Errors appear in words under the field they concern.

use egui::{Align, Key, Layout, RichText, TextEdit, Ui};

use crate::action::Action;
use crate::net::{ConnState, Field};
use crate::ui::field_error;

/// Smallest password the app accepts when creating an account.
pub const MIN_PASSWORD_LEN: usize = 8;

/// The form's contents and its errors. The password lives here only until the login
/// succeeds (it is needed again if the user first has to confirm the server's key).
#[derive(Debug, Default)]
pub struct LoginForm {
    pub server: String,
    pub username: String,
    pub password: String,
    pub server_error: Option<String>,
    pub username_error: Option<String>,
    pub password_error: Option<String>,
    /// Something to say that belongs to no field (e.g. why the session ended).
    pub notice: Option<String>,
    /// A login is under way.
    pub busy: bool,
    /// Whether the last attempt was a registration (to repeat it after a key prompt).
    pub last_register: bool,
}

impl LoginForm {
    pub fn set_error(&mut self, field: Field, message: String) {
        self.clear_errors();
        match field {
            Field::Server => self.server_error = Some(message),
            Field::Username => self.username_error = Some(message),
            Field::Password => self.password_error = Some(message),
        }
    }

    pub fn clear_errors(&mut self) {
        self.server_error = None;
        self.username_error = None;
        self.password_error = None;
    }

    /// Checks what can be checked without the server. Returns true when the form is fit
    /// to send; otherwise the errors say what to fix.
    pub fn validate(&mut self, register: bool) -> bool {
        self.clear_errors();
        self.notice = None;
        if self.server.trim().is_empty() {
            self.server_error = Some("Enter the server's address, e.g. lab-pc:7420.".into());
        }
        let name = self.username.trim();
        if name.is_empty() {
            self.username_error = Some("Enter your username.".into());
        } else if !classchat_wire::valid_name(name) {
            self.username_error = Some("Use 1–32 letters, digits, '.', '_' or '-' (no spaces).".into());
        }
        if self.password.is_empty() {
            self.password_error = Some("Enter your password.".into());
        } else if register && self.password.chars().count() < MIN_PASSWORD_LEN {
            self.password_error = Some(format!("Use at least {MIN_PASSWORD_LEN} characters."));
        }
        self.server_error.is_none() && self.username_error.is_none() && self.password_error.is_none()
    }
}

pub fn show(ui: &mut Ui, form: &mut LoginForm, conn: &ConnState) -> Vec<Action> {
    let mut actions = Vec::new();
    let width = 360.0_f32.min(ui.available_width() - 32.0);
    ui.add_space((ui.available_height() * 0.12).min(80.0));
    ui.vertical_centered(|ui| {
        ui.heading(RichText::new("ClassChat").size(30.0).strong());
        ui.label(RichText::new("Chat for classes and labs").weak());
    });
    ui.add_space(16.0);
    ui.vertical_centered(|ui| {
        ui.set_max_width(width);
        egui::Frame::group(ui.style()).inner_margin(16.0).show(ui, |ui| {
            ui.set_width(width);
            ui.with_layout(Layout::top_down(Align::Min), |ui| {
                let enabled = !form.busy;
                let label = ui.label("Server address");
                let server = ui
                    .add_enabled(
                        enabled,
                        TextEdit::singleline(&mut form.server)
                            .hint_text("lab-pc:7420")
                            .desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                field_error(ui, form.server_error.as_deref());
                ui.add_space(6.0);

                let label = ui.label("Username");
                let username = ui
                    .add_enabled(
                        enabled,
                        TextEdit::singleline(&mut form.username)
                            .hint_text("e.g. ada")
                            .desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                field_error(ui, form.username_error.as_deref());
                ui.add_space(6.0);

                let label = ui.label("Password");
                let password = ui
                    .add_enabled(
                        enabled,
                        TextEdit::singleline(&mut form.password).password(true).desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                field_error(ui, form.password_error.as_deref());
                ui.add_space(10.0);

                if server.changed() {
                    form.server_error = None;
                }
                if username.changed() {
                    form.username_error = None;
                }
                if password.changed() {
                    form.password_error = None;
                }
                let enter = password.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));

                if form.busy {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        let what = match conn {
                            ConnState::Connecting { addr } => format!("Connecting to {addr}…"),
                            _ => "Signing in…".into(),
                        };
                        ui.label(what);
                        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                            if ui.button("Cancel").clicked() {
                                actions.push(Action::CancelLogin);
                            }
                        });
                    });
                } else {
                    ui.horizontal(|ui| {
                        let login = ui.add(egui::Button::new(RichText::new("Log in").strong()));
                        if login.clicked() || enter {
                            actions.push(Action::LogIn { register: false });
                        }
                        if ui.button("Create account").clicked() {
                            actions.push(Action::LogIn { register: true });
                        }
                    });
                }
                if let Some(notice) = &form.notice {
                    ui.add_space(8.0);
                    ui.label(RichText::new(notice).color(ui.visuals().warn_fg_color));
                }
            });
        });
        ui.add_space(8.0);
        ui.label(
            RichText::new(
                "Your password never leaves this computer; the server sees only a key derived from it.",
            )
            .small()
            .weak(),
        );
    });
    actions
}
