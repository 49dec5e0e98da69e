//! The net task's half of sharing: what classmates may find (published by the UI), the
//! peer listener while sharing is on, answers to searches, fetches and their progress.
//! `net.rs` hands this module its sharing commands and every server event first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use classchat_wire::{Client, Event};
use tokio::task::JoinHandle;

use super::{IndexedFile, SharingCommand, SharingEvent};
use crate::e2e::E2e;
use crate::files::{TransferId, TransferUpdate};
use crate::net::NetEvent;

/// Where the net task's events go (the UI's channel, which wakes it).
pub type Send = Arc<dyn Fn(NetEvent) + std::marker::Send + Sync>;

/// What the user shares, as last published.
#[derive(Debug, Clone, Default)]
struct Published {
    enabled: bool,
    max_uploads: u32,
    root: Option<PathBuf>,
    files: Arc<Vec<IndexedFile>>,
}

/// The sharing state of the net task.
#[derive(Default)]
pub struct PeerTasks {
    published: Published,
    /// The chat connection and the user's keys, while logged in.
    online: Option<(Client, Option<E2e>)>,
    fetches: HashMap<TransferId, JoinHandle<()>>,
}

impl std::fmt::Debug for PeerTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTasks")
            .field("enabled", &self.published.enabled)
            .field("files", &self.published.files.len())
            .field("fetches", &self.fetches.len())
            .finish_non_exhaustive()
    }
}

impl PeerTasks {
    /// Logged in (again): a new session must be told where we listen.
    pub fn on_connected(&mut self, client: Client, _user: String, e2e: Option<E2e>, send: &Send) {
        self.online = Some((client, e2e));
        self.restart_listener(send);
    }

    /// The connection went: nothing can be searched or fetched until the next login.
    pub fn on_disconnected(&mut self) {
        self.online = None;
    }

    /// A server event: `None` if it was ours (a search asked of us, its answers, a
    /// ticket), else the event to pass on.
    pub fn on_server_event(&mut self, ev: Event, _send: &Send) -> Option<Event> {
        Some(ev)
    }

    pub fn on_command(&mut self, cmd: SharingCommand, send: &Send) {
        self.fetches.retain(|_, t| !t.is_finished());
        match cmd {
            SharingCommand::Publish { enabled, max_uploads, root, files } => {
                self.published = Published { enabled, max_uploads, root, files };
                self.restart_listener(send);
            }
            SharingCommand::Search { search, .. } => {
                send(NetEvent::Sharing(SharingEvent::SearchDone {
                    search,
                    error: Some("searching among classmates is not available yet".into()),
                }));
            }
            SharingCommand::Fetch { id, .. } => {
                send(NetEvent::Transfer {
                    id,
                    update: TransferUpdate::Failed("fetching from classmates is not available yet".into()),
                });
            }
            SharingCommand::Cancel { id, upload: _ } => {
                if let Some(task) = self.fetches.remove(&id) {
                    task.abort();
                }
                send(NetEvent::Transfer { id, update: TransferUpdate::Cancelled });
            }
        }
    }

    fn restart_listener(&mut self, _send: &Send) {}
}
