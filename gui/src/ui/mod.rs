//! The views: one file per panel or dialog. A view reads the model and its own widget
//! state, and returns the [`Action`](crate::action::Action)s the user took. It never
//! touches the network.
//!
//! Widgets carry accessibility labels (what a screen reader announces); the tests find
//! widgets by those same labels.

pub mod chat_view;
pub mod composer;
pub mod dialogs;
pub mod emoji;
pub mod file_search;
pub mod login;
pub mod markdown;
pub mod members;
pub mod message_extras;
pub mod moderation;
pub mod office_hours;
pub mod polls;
pub mod questions;
pub mod room_tools;
pub mod rooms;
pub mod search;
pub mod settings;
pub mod shared_files;
pub mod status_bar;
pub mod transfers;
pub mod trust;

use egui::{Color32, Response, RichText, Ui};

/// Sets the name a screen reader announces for this widget (and a test finds it by).
/// A text label carries its text as the accessibility *value*, so that is what it sets
/// there; other widgets get a label.
pub fn a11y_label(response: &Response, label: impl Into<String>) {
    let label = label.into();
    response.ctx.accesskit_node_builder(response.id, |node| {
        if node.role() == egui::accesskit::Role::Label {
            node.set_value(label);
        } else {
            node.set_label(label);
        }
    });
}

/// A red line under a form field; nothing when there is no error.
pub fn field_error(ui: &mut Ui, error: Option<&str>) {
    if let Some(error) = error {
        ui.label(RichText::new(error).color(ui.visuals().error_fg_color).small());
    }
}

/// Green for online, grey for offline.
pub fn presence_color(ui: &Ui, online: bool) -> Color32 {
    if online { Color32::from_rgb(0x2e, 0xb8, 0x5c) } else { ui.visuals().weak_text_color() }
}

/// A small filled circle: the online dot.
pub fn presence_dot(ui: &mut Ui, online: bool) -> Response {
    let size = ui.spacing().icon_width * 0.5;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), size * 0.45, presence_color(ui, online));
    response
}

/// A stable colour per user name, readable on both light and dark backgrounds.
pub fn name_color(ui: &Ui, name: &str) -> Color32 {
    const DARK: [Color32; 6] = [
        Color32::from_rgb(0x6c, 0xb6, 0xff),
        Color32::from_rgb(0xf2, 0x8b, 0x82),
        Color32::from_rgb(0x81, 0xc9, 0x95),
        Color32::from_rgb(0xe6, 0xb4, 0x5e),
        Color32::from_rgb(0xc3, 0x9b, 0xf0),
        Color32::from_rgb(0x5f, 0xd3, 0xd0),
    ];
    const LIGHT: [Color32; 6] = [
        Color32::from_rgb(0x1a, 0x5f, 0xb4),
        Color32::from_rgb(0xb3, 0x26, 0x1e),
        Color32::from_rgb(0x1e, 0x7b, 0x34),
        Color32::from_rgb(0x98, 0x5f, 0x00),
        Color32::from_rgb(0x6f, 0x3c, 0xb0),
        Color32::from_rgb(0x00, 0x72, 0x70),
    ];
    let hash = name.bytes().fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b.to_ascii_lowercase()));
    let palette = if ui.visuals().dark_mode { &DARK } else { &LIGHT };
    palette[hash as usize % palette.len()]
}

/// How a conversation is named in the sidebar, the header and the switcher.
pub fn conv_title(conv: &classchat_wire::Conv) -> String {
    match conv {
        classchat_wire::Conv::Room { name } => format!("#{name}"),
        classchat_wire::Conv::Direct { user } => format!("@{user}"),
        classchat_wire::Conv::Announcements => "Announcements".into(),
    }
}
