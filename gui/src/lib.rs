//! ClassChat's desktop app: an eframe/egui client for the ClassChat server.
//!
//! The UI thread never blocks and never touches a socket. A tokio runtime owns the
//! connection (through `classchat-wire`'s client); the UI sends [`net::Command`]s down a
//! channel and the net task sends [`net::NetEvent`]s back, waking the UI each time.
//!
//! # Layout
//! - [`app`]: the eframe app: persisted settings, runtime state, the per-frame loop that
//!   drains net events, shows the panels and applies the actions they return.
//! - [`action`]: everything a view can ask for, applied once at the end of a frame.
//! - [`class`]: the instructor tools' state: exam mode, mutes, room modes as they bear on
//!   sending, questions, polls, office-hours queues, slow-mode timers.
//! - [`net`]: the net task: login, reconnect with backoff, the outbox of unsent messages.
//! - [`nodes`]: which address of a server of several nodes to dial, and remembering them.
//! - [`model`]: conversations, messages by id, members, presence, unread counts.
//! - [`local`]: files under the data dir: known servers, resume tokens, device id.
//! - [`instance`]: one data directory per running window (the second gets its own).
//! - [`e2e`]: end-to-end encrypted direct messages: identity keys, conversation keys,
//!   sealing and opening envelopes, contacts' keys and safety numbers.
//! - [`rich`]: replies, edits, deletes, reactions, typing and message search.
//! - [`sharing`]: the shared folder and its index, `/whohas` and the "Find a file" box,
//!   fetches straight from a classmate's machine and theirs from ours.
//! - [`ui`]: one file per panel and dialog; views read state and return actions.

pub mod action;
pub mod app;
pub mod class;
pub mod e2e;
pub mod files;
pub mod instance;
pub mod local;
pub mod model;
pub mod net;
pub mod nodes;
pub mod rich;
pub mod sharing;
pub mod ui;

pub use app::{AppConfig, ClassChatApp, Settings};

/// The window icon, built from icons/classchat.svg (icons/build.sh).
pub fn app_icon() -> Option<egui::IconData> {
    eframe::icon_data::from_png_bytes(include_bytes!("../../icons/png/classchat-256.png")).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_icon_decodes() {
        let icon = super::app_icon().expect("icon decodes");
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
    }
}
