//! The connect screen: server address, username, password; log in or create an account.
//! Errors appear in words under the field they concern.

use classchat_wire::discovery::FoundServer;
use classchat_wire::invite::{Invite, SCHEME};
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
    /// The invite the address came from: its key is trusted without the first-contact
    /// prompt, as long as the address still matches it.
    pub invite: Option<Invite>,
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

    /// Takes text typed or pasted into the address field, or an invite link the app was
    /// opened with: an invite becomes its address and pins its key; a broken invite is
    /// an error under the field. Anything else is an address as typed.
    pub fn set_server_text(&mut self, text: &str) {
        self.server_error = None;
        // An invite pasted into a field that already held an address: the invite counts.
        let Some(start) = text.to_ascii_lowercase().find(SCHEME) else {
            if self.invite.as_ref().is_some_and(|i| i.addr() != text.trim()) {
                self.invite = None;
            }
            self.server = text.to_owned();
            return;
        };
        let link = &text[start..];
        match Invite::parse(link) {
            Ok(invite) => {
                self.server = invite.addr();
                self.invite = Some(invite);
            }
            Err(e) => {
                self.server = link.to_owned();
                self.invite = None;
                self.server_error = Some(format!("Not a valid invite: {e}."));
            }
        }
    }

    /// The invite whose key should be trusted for a login to `addr`, if any.
    pub fn pinned_for(&self, addr: &str) -> Option<&Invite> {
        self.invite.as_ref().filter(|i| i.addr() == addr)
    }

    /// Every address of the server at `addr` when an invite listed them (empty: the app
    /// uses the ones it remembers).
    pub fn nodes_for(&self, addr: &str) -> Vec<String> {
        self.pinned_for(addr).map(Invite::addrs).unwrap_or_default()
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
        } else if looks_like_invite(&self.server)
            && let Err(e) = Invite::parse(&self.server)
        {
            self.server_error = Some(format!("Not a valid invite: {e}."));
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

fn looks_like_invite(text: &str) -> bool {
    text.trim().get(..SCHEME.len()).is_some_and(|p| p.eq_ignore_ascii_case(SCHEME))
}

/// Servers heard on the local network, for the list under the form.
#[derive(Debug, Clone, Copy)]
pub enum Nearby<'a> {
    /// Discovery is switched off (`--no-discovery`).
    Off,
    /// Discovery could not start; the string says why.
    Failed(&'a str),
    Found(&'a [FoundServer]),
}

pub fn show(ui: &mut Ui, form: &mut LoginForm, conn: &ConnState, nearby: Nearby<'_>) -> Vec<Action> {
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
                let label = ui.label("Server address or invite");
                let mut text = form.server.clone();
                let server = ui
                    .add_enabled(
                        enabled,
                        TextEdit::singleline(&mut text)
                            .hint_text("lab-pc:7420 or classchat://…")
                            .desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                if server.changed() {
                    form.set_server_text(&text);
                }
                field_error(ui, form.server_error.as_deref());
                if let Some(invite) = &form.invite {
                    let hex = invite.fingerprint.to_hex();
                    ui.label(
                        RichText::new(format!(
                            "🔒 From an invite: this server's key ({} … {}) is trusted.",
                            &hex[..8],
                            &hex[hex.len() - 8..]
                        ))
                        .small(),
                    );
                    if invite.nodes().len() > 1 {
                        ui.label(
                            RichText::new(format!(
                                "🔀 {} addresses: {}. The app uses whichever answers.",
                                invite.nodes().len(),
                                invite.addrs().join(", ")
                            ))
                            .small(),
                        );
                    }
                }
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
        ui.add_space(16.0);
        // As wide as the form's frame (its inner margin is 16 on each side).
        show_nearby(ui, form, nearby, width + 32.0);
    });
    actions
}

/// The servers found on the local network; a click fills in the address.
fn show_nearby(ui: &mut Ui, form: &mut LoginForm, nearby: Nearby<'_>, width: f32) {
    let servers = match nearby {
        Nearby::Off => return,
        Nearby::Failed(why) => {
            ui.label(RichText::new(format!("Cannot look for servers on this network: {why}")).small().weak());
            return;
        }
        Nearby::Found(servers) => servers,
    };
    ui.set_max_width(width);
    ui.with_layout(Layout::top_down(Align::Min), |ui| {
        ui.label(RichText::new("Servers on this network").strong());
        if servers.is_empty() {
            ui.label(
                RichText::new(
                    "Looking… none found yet. Servers in other rooms or networks need their address.",
                )
                .small()
                .weak(),
            );
        }
        for found in servers {
            let selected = form.server == found.addr;
            let button = egui::Button::selectable(selected, RichText::new(format!("🖧 {}", found.name)))
                .right_text(RichText::new(&found.addr).weak())
                .min_size(egui::vec2(width, 0.0));
            let response = ui
                .add_enabled(!form.busy, button)
                .on_hover_text(format!("Use {} ({})", found.name, found.addr));
            if response.clicked() {
                form.set_server_text(&found.addr);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn an_invite_becomes_its_address_and_pins_the_key() {
        let mut form = LoginForm::default();
        form.set_server_text(&format!("  classchat://lab-pc:7421#{FP} "));
        assert_eq!(form.server, "lab-pc:7421");
        assert_eq!(form.pinned_for("lab-pc:7421").map(|i| i.fingerprint.to_hex()), Some(FP.to_owned()));
        assert!(form.server_error.is_none());
        // The pin applies to that address only, and editing the address drops it.
        assert!(form.pinned_for("other:7421").is_none());
        form.set_server_text("lab-pc:742");
        assert!(form.invite.is_none());
    }

    #[test]
    fn a_broken_invite_is_an_error_under_the_field_and_pins_nothing() {
        for bad in ["classchat://lab-pc:7420", "classchat://lab-pc:7420#nothex", "CLASSCHAT://:x#00"] {
            let mut form = LoginForm::default();
            form.set_server_text(bad);
            assert!(form.invite.is_none(), "{bad}");
            assert!(
                form.server_error.as_deref().is_some_and(|e| e.starts_with("Not a valid invite")),
                "{bad}"
            );
            form.username = "ada".into();
            form.password = "long enough".into();
            assert!(!form.validate(false), "{bad} is not sent");
        }
    }

    #[test]
    fn a_multi_node_invite_is_filed_under_its_first_address_and_keeps_every_address() {
        let mut form = LoginForm::default();
        form.set_server_text(&format!("classchat://node1:7420,[::1]:9000,node3#{FP}"));
        assert_eq!(form.server, "node1:7420", "the field shows the server's name");
        assert_eq!(form.nodes_for("node1:7420"), ["node1:7420", "[::1]:9000", "node3:7420"]);
        assert!(form.nodes_for("node3:7420").is_empty(), "the list belongs to the server's name");
        // A repeated address is an error under the field, with the address.
        form.set_server_text(&format!("classchat://node1,node1:7420#{FP}"));
        assert!(form.invite.is_none());
        assert_eq!(
            form.server_error.as_deref(),
            Some("Not a valid invite: the invite lists node1:7420 twice.")
        );
    }

    #[test]
    fn an_invite_pasted_after_an_address_replaces_it() {
        let mut form = LoginForm { server: "127.0.0.1:7420".into(), ..LoginForm::default() };
        form.set_server_text(&format!("127.0.0.1:7420classchat://[::1]:9000#{FP}"));
        assert_eq!(form.server, "[::1]:9000");
        assert!(form.pinned_for("[::1]:9000").is_some());
    }

    #[test]
    fn a_plain_address_is_kept_as_typed() {
        let mut form = LoginForm::default();
        form.set_server_text("lab-pc");
        assert_eq!(form.server, "lab-pc");
        assert!(form.invite.is_none() && form.server_error.is_none());
    }
}
