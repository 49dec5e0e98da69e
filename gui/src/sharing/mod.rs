//! Finding a file among classmates and fetching it straight from their machine
//! (issue 15), the app's half.
//!
//! - The user chooses a shared folder (nothing is shared before) and switches sharing on
//!   ("Share my files", off by default). [`index`] walks and hashes the folder off the UI
//!   thread; each file can be switched off on its own. What is shared goes to the net task
//!   ([`SharingCommand::Publish`]), whose [`net`] half answers classmates' searches from it
//!   and serves their fetches (at most N at once).
//! - `/whohas lab3` or the "Find a file" box asks the room; the answers arrive as
//!   [`Hit`]s. **Get** saves the file in Downloads (or where the user chooses), fetched
//!   from the sharer directly or, when the two cannot reach each other, relayed by the
//!   server. Progress, cancel and resume are those of the transfers panel.
//! - The sharer sees "ada is fetching lab3.csv from you" there and can stop it.
//!
//! # Layout
//! - [`command`]: `/share`, `/shared`, `/whohas`.
//! - [`index`]: the shared folder's index (bounded walk, SHA-256).
//! - [`net`]: the net task's half: the peer listener, search answers, fetches.
//! - this file: settings, the UI's state, actions and the events it takes in.

pub mod command;
pub mod index;
pub mod net;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use classchat_wire::Conv;
use classchat_wire::files::sanitize_file_name;
use serde::{Deserialize, Serialize};

use crate::class::Effect;
use crate::files::{Direction, Files, Transfer, TransferId, TransferUpdate, human_size};
use crate::model::{Notice, NoticeReason};
use crate::net::{Command, NetHandle};
use command::ChatCommand;
pub use index::IndexedFile;

/// "At most N uploads at once", unless the user changes it.
pub const DEFAULT_MAX_UPLOADS: u32 = 3;
/// The most the user may allow at once.
pub const MAX_UPLOADS_LIMIT: u32 = 20;
/// Answers kept for one search; the server caps them too, and more would not be read.
pub const MAX_HITS: usize = 500;
/// Longest query sent.
pub const MAX_QUERY_LEN: usize = 200;
/// After this the results list stops saying "searching" even if the server never said
/// the search was over (the server's own deadline is about 3 s).
pub const SEARCH_PATIENCE: Duration = Duration::from_secs(6);

/// What is persisted about sharing (in [`crate::Settings`]). No secret: a folder, a
/// switch, a number, the files switched off, and the index (names, sizes, hashes) so a
/// restart does not hash everything again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharingSettings {
    /// `None`: nothing is shared, whatever the switch says.
    pub folder: Option<PathBuf>,
    /// "Share my files". Off by default.
    pub enabled: bool,
    /// "At most N uploads at once".
    pub max_uploads: u32,
    /// Files of the folder the user switched off (paths below the folder, `/`-joined).
    pub off: BTreeSet<String>,
    /// The last index of `folder`.
    pub index: Vec<IndexedFile>,
}

impl Default for SharingSettings {
    fn default() -> Self {
        Self {
            folder: None,
            enabled: false,
            max_uploads: DEFAULT_MAX_UPLOADS,
            off: BTreeSet::new(),
            index: Vec::new(),
        }
    }
}

impl SharingSettings {
    /// Whether classmates can find `file`.
    pub fn is_shared(&self, file: &IndexedFile) -> bool {
        self.enabled && self.folder.is_some() && !self.off.contains(&file.rel)
    }

    /// The files classmates can find (none while sharing is off or no folder is chosen).
    pub fn shared_files(&self) -> impl Iterator<Item = &IndexedFile> {
        self.index.iter().filter(|f| self.is_shared(f))
    }

    /// The file `name` names: its path below the folder, or its file name if that is
    /// unique (either without regard to case).
    fn find(&self, name: &str) -> Result<&IndexedFile, String> {
        let name = name.trim().trim_start_matches("./");
        if let Some(f) = self.index.iter().find(|f| f.rel.eq_ignore_ascii_case(name)) {
            return Ok(f);
        }
        let mut by_name = self.index.iter().filter(|f| f.name().eq_ignore_ascii_case(name));
        match (by_name.next(), by_name.next()) {
            (Some(f), None) => Ok(f),
            (Some(_), Some(_)) => Err(format!(
                "Several files are called {name}; name one by its path, e.g. /share folder/{name} off"
            )),
            (None, _) => Err(format!("There is no {name} in the shared folder.")),
        }
    }
}

/// One answer to a search: a file a classmate shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Who shares it (the server names them, not the answer).
    pub sharer: String,
    /// The name as the sharer's app sent it. Shown only through [`display_name`].
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The sharer is at their upload limit right now.
    pub busy: bool,
}

/// A file name from the network, made harmless to show: no folders, no control or
/// direction-changing characters, no characters a file system refuses.
pub fn display_name(name: &str) -> String {
    let stripped: String = name.chars().filter(|c| !is_bidi_control(*c)).collect();
    sanitize_file_name(&stripped)
}

/// Characters that reorder the text around them (`invoice\u{202E}fdp.exe` would show as
/// `invoiceexe.pdf`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Where a transfer between two classmates goes, for the transfers panel and a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoute {
    /// The other classmate.
    pub peer: String,
    /// The server relays the bytes (the two machines could not reach each other).
    pub relayed: bool,
    /// We fetch: the answer we fetch from (a retry asks for it again).
    pub hit: Option<Hit>,
    /// They fetch from us: the net task's number for this upload.
    pub upload: Option<u64>,
}

/// A search the user made, and what came back.
#[derive(Debug, Clone)]
pub struct Search {
    pub id: u64,
    pub room: String,
    pub query: String,
    pub started: Instant,
    pub hits: Vec<Hit>,
    /// The server said the search is over.
    pub done: bool,
    /// Answers past [`MAX_HITS`] were dropped.
    pub truncated: bool,
    pub error: Option<String>,
}

impl Search {
    /// Still waiting for answers.
    pub fn waiting(&self, now: Instant) -> bool {
        !self.done && self.error.is_none() && now < self.started + SEARCH_PATIENCE
    }
}

/// An index run under way.
#[derive(Debug)]
pub struct Indexing {
    pub progress: index::Progress,
    generation: u64,
    cancel: Arc<AtomicBool>,
}

/// Work for the net task's sharing half ([`net`]).
#[derive(Debug, Clone)]
pub enum SharingCommand {
    /// What classmates may find and fetch from now on. An empty list with `enabled` false
    /// stops the peer listener.
    Publish { enabled: bool, max_uploads: u32, root: Option<PathBuf>, files: Arc<Vec<IndexedFile>> },
    /// Ask `room` who has `query`.
    Search { search: u64, room: String, query: String },
    /// Fetch `hit` (found in `room`) into `dest`; an existing `dest` is replaced only with
    /// `replace`.
    Fetch { id: TransferId, room: String, hit: Hit, dest: PathBuf, replace: bool },
    /// Stop a fetch (ours) or an upload (theirs).
    Cancel { id: TransferId, upload: Option<u64> },
}

/// What the net task's sharing half tells the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum SharingEvent {
    /// Answers to search `search` (more may follow).
    Hits {
        search: u64,
        hits: Vec<Hit>,
    },
    /// The search is over; `error` if it could not be made.
    SearchDone {
        search: u64,
        error: Option<String>,
    },
    /// The peer listener: `Ok(addresses)` it listens on, or why it could not start.
    Listening(Result<Vec<std::net::SocketAddr>, String>),
    /// A classmate started fetching one of our files.
    UploadStarted {
        upload: u64,
        peer: String,
        name: String,
        total: u64,
        relayed: bool,
    },
    UploadProgress {
        upload: u64,
        done: u64,
        total: u64,
    },
    /// It ended: `None` when complete, else why it stopped.
    UploadEnded {
        upload: u64,
        error: Option<String>,
    },
    /// A fetch of ours goes through the server.
    Relayed {
        id: TransferId,
    },
}

/// What the user did with sharing.
#[must_use = "an action does nothing until the app applies it"]
#[derive(Debug, Clone, PartialEq)]
pub enum SharingAction {
    TogglePanel,
    OpenPanel,
    /// Open the native folder picker.
    ChooseFolder,
    /// Share this folder (picked, or set by a test).
    SetFolder(PathBuf),
    SetEnabled(bool),
    SetMaxUploads(u32),
    SetFileShared {
        rel: String,
        on: bool,
    },
    /// Walk and hash the folder again.
    Reindex,
    Search {
        room: String,
        query: String,
    },
    /// Fetch the search's hit number `hit`; `ask_where` opens the save dialog, otherwise
    /// it goes to Downloads.
    Get {
        hit: usize,
        ask_where: bool,
    },
    CloseResults,
}

/// Messages from the folder picker and the indexer to the UI.
#[derive(Debug)]
enum Msg {
    Folder(PathBuf),
    SaveTo { hit: Hit, room: String, dest: PathBuf },
    Progress { generation: u64, progress: index::Progress },
    Indexed { generation: u64, result: Result<index::Outcome, index::IndexError> },
}

/// The UI's sharing state (not persisted: that is [`SharingSettings`]).
pub struct Sharing {
    pub panel_open: bool,
    pub indexing: Option<Indexing>,
    /// Why the last index failed, or what it left out.
    pub index_error: Option<String>,
    pub skipped: Vec<String>,
    pub truncated: bool,
    /// The latest search.
    pub search: Option<Search>,
    /// The text of the "Find a file" box.
    pub find_text: String,
    /// The peer listener's state, as last reported.
    pub listening: Option<Result<Vec<std::net::SocketAddr>, String>>,
    next_search: u64,
    generation: u64,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    runtime: tokio::runtime::Handle,
    ctx: egui::Context,
    /// Tests: save here instead of Downloads or the save dialog.
    save_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharing")
            .field("indexing", &self.indexing)
            .field("search", &self.search)
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

/// What the app hands [`Sharing`] to work with.
pub struct Env<'a> {
    pub settings: &'a mut SharingSettings,
    pub files: &'a mut Files,
    pub net: &'a NetHandle,
}

impl Sharing {
    pub fn new(runtime: tokio::runtime::Handle, ctx: egui::Context, save_dir: Option<PathBuf>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        Self {
            panel_open: false,
            indexing: None,
            index_error: None,
            skipped: Vec::new(),
            truncated: false,
            search: None,
            find_text: String::new(),
            listening: None,
            next_search: 0,
            generation: 0,
            tx,
            rx,
            runtime,
            ctx,
            save_dir,
        }
    }

    /// At start-up: share what the saved index holds at once, and index the folder again
    /// in the background (files may have changed while the app was closed).
    pub fn start(&mut self, env: Env<'_>) {
        self.publish(env.settings, env.net);
        if env.settings.folder.is_some() {
            self.reindex(env.settings);
        }
    }

    /// Takes in what the picker and the indexer sent since the last frame.
    pub fn drain(&mut self, env: Env<'_>) -> Vec<Effect> {
        let mut effects = Vec::new();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Folder(path) => {
                    let env = Env { settings: &mut *env.settings, files: &mut *env.files, net: env.net };
                    effects.extend(self.apply(env, SharingAction::SetFolder(path)));
                }
                Msg::SaveTo { hit, room, dest } => self.fetch(env.files, env.net, hit, room, dest),
                Msg::Progress { generation, progress } => {
                    if let Some(i) = self.indexing.as_mut().filter(|i| i.generation == generation) {
                        i.progress = progress;
                    }
                }
                Msg::Indexed { generation, result } => {
                    if self.indexing.as_ref().is_none_or(|i| i.generation != generation) {
                        continue;
                    }
                    self.indexing = None;
                    match result {
                        Ok(outcome) => {
                            // Files gone from the folder no longer need their switch.
                            let present: BTreeSet<&str> =
                                outcome.files.iter().map(|f| f.rel.as_str()).collect();
                            env.settings.off.retain(|rel| present.contains(rel.as_str()));
                            env.settings.index = outcome.files;
                            self.skipped = outcome.skipped;
                            self.truncated = outcome.truncated;
                            self.index_error = None;
                            self.publish(env.settings, env.net);
                        }
                        Err(index::IndexError::Cancelled) => {}
                        Err(e) => {
                            self.index_error = Some(format!("The shared folder could not be read: {e}"));
                            // Nothing stale is offered from a folder that is gone.
                            env.settings.index.clear();
                            self.publish(env.settings, env.net);
                        }
                    }
                }
            }
        }
        effects
    }

    /// Sends the net task what classmates may find now.
    fn publish(&self, settings: &SharingSettings, net: &NetHandle) {
        let files: Vec<IndexedFile> = settings.shared_files().cloned().collect();
        net.send(Command::Sharing(SharingCommand::Publish {
            enabled: settings.enabled && settings.folder.is_some(),
            max_uploads: settings.max_uploads.clamp(1, MAX_UPLOADS_LIMIT),
            root: settings.folder.clone(),
            files: Arc::new(files),
        }));
    }

    fn reindex(&mut self, settings: &SharingSettings) {
        let Some(root) = settings.folder.clone() else { return };
        if let Some(old) = self.indexing.take() {
            old.cancel.store(true, Ordering::Relaxed);
        }
        self.generation += 1;
        let generation = self.generation;
        let cancel = Arc::new(AtomicBool::new(false));
        self.indexing =
            Some(Indexing { progress: index::Progress::default(), generation, cancel: Arc::clone(&cancel) });
        let previous = settings.index.clone();
        let (tx, ctx) = (self.tx.clone(), self.ctx.clone());
        self.runtime.spawn_blocking(move || {
            let mut last = Instant::now();
            let result = index::build(&root, &previous, &cancel, |progress| {
                // A few updates a second are plenty for a progress bar.
                if last.elapsed() >= Duration::from_millis(100) {
                    last = Instant::now();
                    let _ = tx.send(Msg::Progress { generation, progress });
                    ctx.request_repaint();
                }
            });
            let _ = tx.send(Msg::Indexed { generation, result });
            ctx.request_repaint();
        });
    }

    /// A chat command typed in `conv`'s composer.
    pub fn on_command(&mut self, env: Env<'_>, conv: &Conv, cmd: ChatCommand) -> Vec<Effect> {
        let banner = |text: String, error: bool| vec![Effect::Banner { text, error }];
        match cmd {
            ChatCommand::Usage(text) => banner(text.into(), true),
            ChatCommand::ShareAll(on) => {
                if on && env.settings.folder.is_none() {
                    self.panel_open = true;
                    return banner(
                        "Choose a shared folder first (Settings > Shared folder, or the Shared files panel)."
                            .into(),
                        true,
                    );
                }
                let mut fx = self.apply(env, SharingAction::SetEnabled(on));
                fx.push(Effect::Banner {
                    text: if on {
                        "Sharing is on: classmates can find your shared files.".into()
                    } else {
                        "Sharing is off: classmates find nothing of yours.".into()
                    },
                    error: false,
                });
                fx
            }
            ChatCommand::ShareFile { file, on } => match env.settings.find(&file) {
                Ok(f) => {
                    let rel = f.rel.clone();
                    let mut fx = self.apply(env, SharingAction::SetFileShared { rel: rel.clone(), on });
                    fx.push(Effect::Banner {
                        text: format!("{rel} is {}.", if on { "shared" } else { "not shared" }),
                        error: false,
                    });
                    fx
                }
                Err(why) => banner(why, true),
            },
            ChatCommand::Shared => {
                self.panel_open = true;
                banner(summary(env.settings), false)
            }
            ChatCommand::WhoHas(query) => match conv {
                Conv::Room { name } => self.apply(env, SharingAction::Search { room: name.clone(), query }),
                _ => banner("/whohas asks a room: open one of your rooms first.".into(), true),
            },
        }
    }

    pub fn apply(&mut self, env: Env<'_>, action: SharingAction) -> Vec<Effect> {
        let mut effects = Vec::new();
        match action {
            SharingAction::TogglePanel => self.panel_open = !self.panel_open,
            SharingAction::OpenPanel => self.panel_open = true,
            SharingAction::ChooseFolder => {
                let (tx, ctx) = (self.tx.clone(), self.ctx.clone());
                self.runtime.spawn(async move {
                    let dialog = rfd::AsyncFileDialog::new().set_title("Choose the folder to share");
                    if let Some(handle) = dialog.pick_folder().await {
                        let _ = tx.send(Msg::Folder(handle.path().to_path_buf()));
                        ctx.request_repaint();
                    }
                });
            }
            SharingAction::SetFolder(path) => {
                if env.settings.folder.as_ref() != Some(&path) {
                    env.settings.folder = Some(path);
                    env.settings.index.clear();
                    env.settings.off.clear();
                    self.skipped.clear();
                    self.truncated = false;
                    self.index_error = None;
                    self.publish(env.settings, env.net);
                }
                self.reindex(env.settings);
            }
            SharingAction::SetEnabled(on) => {
                env.settings.enabled = on && env.settings.folder.is_some();
                self.publish(env.settings, env.net);
            }
            SharingAction::SetMaxUploads(n) => {
                env.settings.max_uploads = n.clamp(1, MAX_UPLOADS_LIMIT);
                self.publish(env.settings, env.net);
            }
            SharingAction::SetFileShared { rel, on } => {
                if on {
                    env.settings.off.remove(&rel);
                } else if env.settings.index.iter().any(|f| f.rel == rel) {
                    env.settings.off.insert(rel);
                }
                self.publish(env.settings, env.net);
            }
            SharingAction::Reindex => self.reindex(env.settings),
            SharingAction::Search { room, query } => {
                let query = query.trim().to_owned();
                if query.is_empty() {
                    return effects;
                }
                if query.len() > MAX_QUERY_LEN {
                    effects.push(Effect::Banner {
                        text: format!("Search for at most {MAX_QUERY_LEN} characters."),
                        error: true,
                    });
                    return effects;
                }
                self.next_search += 1;
                let id = self.next_search;
                self.search = Some(Search {
                    id,
                    room: room.clone(),
                    query: query.clone(),
                    started: Instant::now(),
                    hits: Vec::new(),
                    done: false,
                    truncated: false,
                    error: None,
                });
                env.net.send(Command::Sharing(SharingCommand::Search { search: id, room, query }));
            }
            SharingAction::Get { hit, ask_where } => {
                let Some(search) = &self.search else { return effects };
                let Some(hit) = search.hits.get(hit).cloned() else { return effects };
                let room = search.room.clone();
                let name = display_name(&hit.name);
                // Without a Downloads folder, ask.
                if !ask_where && let Some(dir) = self.save_dir.clone().or_else(downloads_dir) {
                    self.fetch(env.files, env.net, hit, room, dir.join(name));
                    return effects;
                }
                let (tx, ctx) = (self.tx.clone(), self.ctx.clone());
                self.runtime.spawn(async move {
                    let dialog = rfd::AsyncFileDialog::new().set_title("Save file").set_file_name(&name);
                    if let Some(handle) = dialog.save_file().await {
                        let _ = tx.send(Msg::SaveTo { hit, room, dest: handle.path().to_path_buf() });
                        ctx.request_repaint();
                    }
                });
            }
            SharingAction::CloseResults => self.search = None,
        }
        effects
    }

    /// Adds the fetch to the transfers panel and starts it.
    fn fetch(&mut self, files: &mut Files, net: &NetHandle, hit: Hit, room: String, dest: PathBuf) {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let route =
            PeerRoute { peer: hit.sharer.clone(), relayed: false, hit: Some(hit.clone()), upload: None };
        let id =
            files.add_peer(Direction::Down, name, dest.clone(), Conv::room(room.as_str()), hit.size, route);
        files.panel_open = true;
        net.send(Command::Sharing(SharingCommand::Fetch { id, room, hit, dest, replace: false }));
    }

    /// An event of the net task's sharing half.
    pub fn on_event(&mut self, files: &mut Files, ev: SharingEvent) -> Vec<Effect> {
        let mut effects = Vec::new();
        match ev {
            SharingEvent::Hits { search, hits } => {
                let Some(s) = self.search.as_mut().filter(|s| s.id == search) else { return effects };
                for hit in hits {
                    if s.hits.len() >= MAX_HITS {
                        s.truncated = true;
                        break;
                    }
                    let dup = s
                        .hits
                        .iter()
                        .any(|h| h.sharer.eq_ignore_ascii_case(&hit.sharer) && h.sha256 == hit.sha256);
                    if !dup {
                        s.hits.push(hit);
                    }
                }
                // Free sharers first, then by name, then by who.
                s.hits.sort_by(|a, b| {
                    (a.busy, display_name(&a.name).to_lowercase(), a.sharer.to_lowercase()).cmp(&(
                        b.busy,
                        display_name(&b.name).to_lowercase(),
                        b.sharer.to_lowercase(),
                    ))
                });
            }
            SharingEvent::SearchDone { search, error } => {
                if let Some(s) = self.search.as_mut().filter(|s| s.id == search) {
                    s.done = true;
                    s.error = error;
                }
            }
            SharingEvent::Listening(state) => self.listening = Some(state),
            SharingEvent::UploadStarted { upload, peer, name, total, relayed } => {
                let name = display_name(&name);
                let route = PeerRoute { peer: peer.clone(), relayed, hit: None, upload: Some(upload) };
                files.add_peer(
                    Direction::Up,
                    name.clone(),
                    PathBuf::new(),
                    Conv::direct(peer.as_str()),
                    total,
                    route,
                );
                files.panel_open = true;
                let text = format!("{peer} is fetching {name} from you");
                effects.push(Effect::Banner {
                    text: format!("{text}. You can stop it in the transfers panel."),
                    error: false,
                });
                effects.push(Effect::Notify(Notice {
                    conv: Conv::direct(peer.as_str()),
                    from: peer,
                    text,
                    reason: NoticeReason::Fetching,
                }));
            }
            SharingEvent::UploadProgress { upload, done, total } => {
                if let Some(id) = files.upload_transfer(upload) {
                    let _ = files.update(id, TransferUpdate::Progress { done, total });
                }
            }
            SharingEvent::UploadEnded { upload, error } => {
                if let Some(id) = files.upload_transfer(upload) {
                    let update = match error {
                        None => TransferUpdate::Finished,
                        Some(why) => TransferUpdate::Failed(why),
                    };
                    let _ = files.update(id, update);
                }
            }
            SharingEvent::Relayed { id } => {
                if let Some(route) = files.transfer_mut(id).and_then(|t| t.peer.as_mut()) {
                    route.relayed = true;
                }
            }
        }
        effects
    }
}

/// The command that (re)starts `t` if it is a transfer between classmates, else `None`.
pub fn restart_command(t: &Transfer, replace: bool) -> Option<Command> {
    let route = t.peer.as_ref()?;
    let hit = route.hit.clone()?;
    let Conv::Room { name: room } = &t.conv else { return None };
    Some(Command::Sharing(SharingCommand::Fetch {
        id: t.id,
        room: room.clone(),
        hit,
        dest: t.path.clone(),
        replace,
    }))
}

/// The command that stops `t` if it is a transfer between classmates, else `None`.
pub fn cancel_command(t: &Transfer) -> Option<Command> {
    let route = t.peer.as_ref()?;
    Some(Command::Sharing(SharingCommand::Cancel { id: t.id, upload: route.upload }))
}

/// What `/shared` says.
pub fn summary(settings: &SharingSettings) -> String {
    let Some(folder) = &settings.folder else {
        return "No shared folder is chosen: nothing of yours can be found.".into();
    };
    let shared = settings.shared_files().count();
    let total = settings.index.len();
    let bytes: u64 = settings.shared_files().map(|f| f.size).sum();
    if settings.enabled {
        format!(
            "Sharing is on: classmates can find {shared} of {total} files ({}) in {}; at most {} uploads at once.",
            human_size(bytes),
            folder.display(),
            settings.max_uploads
        )
    } else {
        format!("Sharing is off: classmates find nothing of yours ({total} files in {}).", folder.display())
    }
}

/// The user's Downloads folder: the one the desktop names, else `~/Downloads`.
fn downloads_dir() -> Option<PathBuf> {
    let dirs = directories::UserDirs::new()?;
    Some(dirs.download_dir().map_or_else(|| dirs.home_dir().join("Downloads"), Path::to_path_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str) -> IndexedFile {
        IndexedFile { rel: rel.into(), size: 1, modified: 1, sha256: [0; 32] }
    }

    #[test]
    fn nothing_is_shared_without_a_folder_and_the_switch() {
        let mut s = SharingSettings { index: vec![file("a.txt"), file("b.txt")], ..Default::default() };
        assert_eq!(s.shared_files().count(), 0, "off by default");
        s.enabled = true;
        assert_eq!(s.shared_files().count(), 0, "no folder chosen");
        s.folder = Some(PathBuf::from("/tmp/share"));
        assert_eq!(s.shared_files().count(), 2);
        s.off.insert("b.txt".into());
        let names: Vec<&str> = s.shared_files().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["a.txt"]);
    }

    #[test]
    fn files_are_found_by_path_or_unique_name() {
        let s = SharingSettings {
            index: vec![file("labs/lab3.csv"), file("a/notes.txt"), file("b/notes.txt")],
            ..Default::default()
        };
        assert_eq!(s.find("LAB3.csv").map(|f| f.rel.as_str()), Ok("labs/lab3.csv"));
        assert_eq!(s.find("b/notes.txt").map(|f| f.rel.as_str()), Ok("b/notes.txt"));
        assert!(s.find("notes.txt").is_err_and(|e| e.contains("Several")));
        assert!(s.find("nope").is_err_and(|e| e.contains("no nope")));
    }

    #[test]
    fn hostile_names_are_shown_harmless() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("a\u{7}b\r\nc.txt"), "abc.txt");
        assert_eq!(display_name("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(display_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(display_name(""), "file");
    }
}
