//! The eframe app. [`Settings`] is what eframe persists (no secrets); everything else is
//! runtime state rebuilt at every start: the net handle, the model, the views' state.
//!
//! Every frame: drain the net events into the model, show the panels (each returns the
//! actions the user took), then apply those actions in one place.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use classchat_wire::discovery::{Browser, FoundServer, Scope};
use classchat_wire::{Conv, Event, Request, Response};
use egui::RichText;
use serde::{Deserialize, Serialize};

use crate::action::{Action, AdminOp};
use crate::class::{ClassState, Effect};
use crate::e2e::KeyStatus;
use crate::files::{Direction, FileCommand, Files, Offer, OfferSeal, OfferState, TransferId, TransferUpdate};
use crate::local::LocalStore;
use crate::model::{Model, Notice, NoticeReason, Source};
use crate::net::{self, Backoff, Command, ConnState, NetEvent, NetHandle, RequestError, TrustPrompt};
use crate::ui;
use crate::ui::chat_view::{ChatViewState, HISTORY_PAGE};
use crate::ui::composer::ComposerState;
use crate::ui::dialogs::Dialog;
use crate::ui::login::{LoginForm, Nearby};
use crate::ui::members::MembersState;
use classchat_wire::FileInfo;
use classchat_wire::files::sanitize_file_name;

/// How long an information banner stays up.
const BANNER_TIME: Duration = Duration::from_secs(8);

/// Light, dark, or whatever the desktop uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ThemeChoice {
    #[default]
    System,
    Light,
    Dark,
}

impl From<ThemeChoice> for egui::ThemePreference {
    fn from(t: ThemeChoice) -> Self {
        match t {
            ThemeChoice::System => egui::ThemePreference::System,
            ThemeChoice::Light => egui::ThemePreference::Light,
            ThemeChoice::Dark => egui::ThemePreference::Dark,
        }
    }
}

/// Persisted through `eframe::Storage`. Never the password, a token or a key: those live
/// in files of their own (see [`crate::local`]). The window size is persisted by eframe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: String,
    pub username: String,
    pub theme: ThemeChoice,
    pub notifications: bool,
    /// The shared folder, its switches and its index (nothing shared by default).
    pub sharing: crate::sharing::SharingSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: format!("127.0.0.1:{}", net::DEFAULT_PORT),
            username: String::new(),
            theme: ThemeChoice::System,
            notifications: true,
            sharing: Default::default(),
        }
    }
}

/// Where the app's notifications (a DM, a mention, an announcement while the window is
/// not focused) go.
#[derive(Debug, Clone)]
pub enum Notifier {
    /// The desktop's notification service (notify-rust, over D-Bus on Linux).
    Desktop,
    /// Nowhere.
    Off,
    /// Into this list as (summary, body): for tests.
    Record(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>),
}

/// How this run of the app is set up (command line, tests). Not persisted.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    /// `--server`: overrides the remembered server address.
    pub server: Option<String>,
    /// `--user`: overrides the remembered username.
    pub user: Option<String>,
    pub runtime: tokio::runtime::Handle,
    /// Log in with the saved session at start-up, if there is one.
    pub auto_resume: bool,
    /// Where notifications go (tests keep them in memory).
    pub notifier: Notifier,
    pub backoff: Backoff,
    /// Where to look for servers announced on the local network for the connect screen
    /// (`None`: do not look). `new` leaves it off; the binary turns it on.
    pub discovery: Option<Scope>,
    /// An invite link (`classchat://host:port#fingerprint`) the app was opened with.
    pub invite: Option<String>,
    /// Size of the identity key made at registration (tests use a smaller, faster one).
    pub identity_bits: usize,
    /// Tests: save downloads here (under their sanitised names) instead of asking with
    /// the native save dialog.
    pub save_dir_for_tests: Option<PathBuf>,
    /// `--share-folder`: the shared folder to use (sharing stays off until switched on).
    pub share_folder: Option<PathBuf>,
    /// `--peer-port`: the port to listen on for classmates' fetches (remembered).
    pub peer_port: Option<u16>,
}

impl AppConfig {
    pub fn new(data_dir: PathBuf, runtime: tokio::runtime::Handle) -> Self {
        Self {
            data_dir,
            server: None,
            user: None,
            runtime,
            auto_resume: true,
            notifier: Notifier::Desktop,
            backoff: Backoff::default(),
            discovery: None,
            invite: None,
            identity_bits: crate::e2e::DEFAULT_BITS,
            save_dir_for_tests: None,
            share_folder: None,
            peer_port: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Login,
    Main,
}

#[derive(Debug)]
struct Banner {
    text: String,
    error: bool,
    until: Instant,
}

pub struct ClassChatApp {
    pub settings: Settings,
    config: AppConfig,
    net: NetHandle,
    events: Receiver<NetEvent>,
    pub model: Model,
    pub conn: ConnState,
    pub screen: Screen,
    login: LoginForm,
    trust: Option<TrustPrompt>,
    trust_ack: bool,
    pub dialog: Option<Dialog>,
    composer: ComposerState,
    chat: ChatViewState,
    /// Replies, edits, reactions, the search panel.
    pub rich: crate::rich::RichState,
    members: MembersState,
    banner: Option<Banner>,
    /// Between a login and `CaughtUp`, messages are catch-up, not live.
    catching_up: bool,
    applied_theme: Option<ThemeChoice>,
    focused: bool,
    /// DM partners already saved in the contact list (lowercase).
    known_dms: std::collections::HashSet<String>,
    /// The unread count shown in the window title.
    title_unread: Option<u32>,
    /// LAN discovery while the connect screen shows (or why it could not start).
    nearby: Option<Result<Browser, String>>,
    /// A DM to send once its recipient's new key is accepted: (peer, conversation, text).
    send_after_accept: Option<(String, Conv, String)>,
    /// Transfers, offers, thumbnails.
    pub files: Files,
    /// The instructor tools: exam mode, mutes, polls, questions, office hours.
    pub class: ClassState,
    /// Shared files, searches among classmates, fetches from them.
    pub sharing: crate::sharing::Sharing,
    /// Answers of the native file dialogs, which run on the tokio runtime.
    picks_tx: std::sync::mpsc::Sender<Picked>,
    picks: Receiver<Picked>,
    ctx: egui::Context,
}

/// What [`crate::sharing`] works with: the persisted settings, the transfers, the net.
macro_rules! sharing_env {
    ($app:expr) => {
        crate::sharing::Env { settings: &mut $app.settings.sharing, files: &mut $app.files, net: &$app.net }
    };
}

/// What a native file dialog came back with.
#[derive(Debug)]
enum Picked {
    Send {
        conv: Conv,
        paths: Vec<PathBuf>,
    },
    /// Where to save `file`; `offer` if saving it accepts an offer; `retry` if it is an
    /// existing transfer whose destination existed.
    Save {
        file: FileInfo,
        conv: Conv,
        dest: PathBuf,
        offer: bool,
        retry: Option<TransferId>,
    },
}

impl std::fmt::Debug for ClassChatApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassChatApp")
            .field("screen", &self.screen)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl ClassChatApp {
    pub fn new(cc: &eframe::CreationContext<'_>, mut config: AppConfig) -> Self {
        let mut settings: Settings =
            cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)).unwrap_or_default();
        if let Some(server) = &config.server {
            settings.server = server.clone();
        }
        if let Some(user) = &config.user {
            settings.username = user.clone();
        }
        let ctx = cc.egui_ctx.clone();
        let (picks_tx, picks) = std::sync::mpsc::channel();
        let (net, events) = net::spawn(
            &config.runtime,
            LocalStore::new(&config.data_dir),
            config.backoff,
            config.identity_bits,
            move || ctx.request_repaint(),
        );
        let mut login = LoginForm {
            server: settings.server.clone(),
            username: settings.username.clone(),
            ..LoginForm::default()
        };
        if let Some(link) = &config.invite {
            login.set_server_text(link);
            if login.invite.is_some() && login.server != settings.server {
                // A different server than last time: its saved session does not apply.
                settings.server = login.server.clone();
                config.auto_resume = false;
            }
        }
        let sharing = crate::sharing::Sharing::new(
            config.runtime.clone(),
            cc.egui_ctx.clone(),
            config.save_dir_for_tests.clone(),
        );
        let mut app = Self {
            settings,
            config,
            net,
            events,
            model: Model::new(),
            conn: ConnState::Offline,
            screen: Screen::Login,
            login,
            trust: None,
            trust_ack: false,
            dialog: None,
            composer: ComposerState::default(),
            chat: ChatViewState::default(),
            rich: Default::default(),
            members: MembersState::default(),
            banner: None,
            catching_up: false,
            applied_theme: None,
            focused: true,
            known_dms: Default::default(),
            title_unread: None,
            nearby: None,
            send_after_accept: None,
            files: Files::default(),
            class: ClassState::new(),
            sharing,
            picks_tx,
            picks,
            ctx: cc.egui_ctx.clone(),
        };
        app.sharing.start(sharing_env!(app));
        if let Some(port) = app.config.peer_port {
            app.sharing_action(crate::sharing::SharingAction::SetPort(port));
        }
        if let Some(folder) = app.config.share_folder.clone() {
            app.sharing_action(crate::sharing::SharingAction::SetFolder(folder));
        }
        if app.config.auto_resume && !app.settings.username.is_empty() && !app.settings.server.is_empty() {
            app.login.busy = true;
            app.net.send(Command::Resume {
                addr: app.settings.server.clone(),
                username: app.settings.username.clone(),
            });
        }
        app
    }

    /// The connect screen's form.
    pub fn login_form(&self) -> &LoginForm {
        &self.login
    }

    /// The trust prompt currently shown, if any.
    pub fn trust_prompt(&self) -> Option<&TrustPrompt> {
        self.trust.as_ref()
    }

    pub fn chat_view(&self) -> &ChatViewState {
        &self.chat
    }

    // ---- net events -------------------------------------------------------------------

    fn drain_events(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.on_net_event(ev);
        }
        while let Ok(picked) = self.picks.try_recv() {
            self.on_picked(picked);
        }
        let fx = self.sharing.drain(sharing_env!(self));
        self.run_class_effects(fx);
    }

    fn on_net_event(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::State(state) => {
                self.model.set_in_flight_state(state.is_online());
                if state == ConnState::Offline && self.screen == Screen::Login {
                    self.login.busy = false;
                }
                self.conn = state;
            }
            NetEvent::LoginFailed { field, message } => {
                self.login.busy = false;
                self.login.set_error(field, message);
            }
            NetEvent::Trust(prompt) => {
                self.login.busy = false;
                self.trust_ack = false;
                self.trust = Some(prompt);
            }
            NetEvent::NeedPassword => {
                self.login.busy = false;
                self.screen = Screen::Login;
            }
            NetEvent::LoggedIn { addr, welcome, resumed, dm_contacts } => {
                let reconnect = self.screen == Screen::Main && resumed;
                let same_user = self.model.is_me(&welcome.user);
                if !same_user {
                    self.chat.clear();
                }
                let class_fx = self.class.on_welcome(&welcome, &self.model);
                self.model.on_welcome(&welcome);
                self.known_dms.clear();
                for contact in dm_contacts {
                    self.known_dms.insert(contact.to_ascii_lowercase());
                    self.model.conversation_mut(&Conv::direct(contact));
                }
                // On a new machine the server's list brings the DM conversations back.
                for peer in &welcome.dm_peers {
                    if !self.model.conversations_has_dm(peer) {
                        self.model.conversation_mut(&Conv::direct(peer.as_str()));
                    }
                }
                // Signature checks in flight when the connection dropped are asked again.
                self.model.reset_checks();
                self.settings.server = addr;
                self.settings.username = welcome.user.clone();
                self.login.password.clear();
                self.login.busy = false;
                self.login.clear_errors();
                self.login.notice = None;
                self.screen = Screen::Main;
                // Stop listening to the network's announcements; it starts again at logout.
                self.nearby = None;
                self.catching_up = true;
                if reconnect {
                    self.show_banner("Reconnected.", false);
                }
                self.request(Request::ListUsers);
                if same_user {
                    // Uploads and downloads the lost connection stopped go on where they were.
                    for id in self.files.interrupted() {
                        self.start_transfer(id, false);
                    }
                }
                if let Some(Conv::Room { name }) = self.model.current.clone() {
                    self.request(Request::RoomMembers { name });
                }
                self.run_class_effects(class_fx);
                if let Some(current) = &self.model.current {
                    self.run_class_effects(self.class.on_select(&self.model, current));
                }
                self.composer.focus = true;
            }
            NetEvent::LoggedOut { reason } => {
                self.screen = Screen::Login;
                self.login.busy = false;
                self.login.notice = reason;
                self.login.server = self.settings.server.clone();
                self.login.username = self.settings.username.clone();
                self.model = Model::new();
                self.class = ClassState::new();
                self.chat.clear();
                self.dialog = None;
            }
            NetEvent::Server(ev) => self.on_server_event(ev),
            NetEvent::Offer { file, seal } => self.on_offer(file, seal),
            NetEvent::Transfer { id, update } => self.on_transfer(id, update),
            NetEvent::Thumb(thumb) => self.files.on_thumb(&self.ctx, thumb),
            NetEvent::Sharing(ev) => {
                let fx = self.sharing.on_event(&mut self.files, ev);
                self.run_class_effects(fx);
            }
            NetEvent::Reply { request, result } => self.on_reply(request, result),
            NetEvent::Sent { local_id, id, ts } => self.model.on_sent(local_id, id, ts),
            NetEvent::SendFailed { local_id, reason, code } => {
                if crate::class::keeps_draft(code)
                    && let Some((conv, text)) = self.model.take_pending(local_id)
                {
                    let fx =
                        self.class.on_send_refused(&self.model, conv, code, reason, text, Instant::now());
                    self.run_class_effects(fx);
                } else {
                    self.model.on_send_failed(local_id, reason);
                }
            }
            NetEvent::Dm { conv, msg, live } => {
                let source = if live { Source::Live } else { Source::CatchUp };
                if let Some(notice) = self.model.on_dm(conv, msg, source)
                    && live
                {
                    self.notify(&notice);
                }
            }
            NetEvent::DmHistory { conv, msgs, more } => {
                self.model.on_dm_history(&conv, msgs, more);
                let fx = self.rich.on_history(&self.model, &conv);
                self.run_class_effects(fx);
            }
            NetEvent::DmEdited { conv, id, content, ts, envelope } => {
                self.model.on_edited(&conv, id, content, ts, envelope)
            }
            NetEvent::Peer(info) => {
                let peer = info.peer.to_ascii_lowercase();
                let accepted = info.changed_to.is_none();
                self.model.peers.insert(peer.clone(), info);
                if accepted
                    && self.send_after_accept.as_ref().is_some_and(|(p, ..)| *p == peer)
                    && let Some((_, conv, text)) = self.send_after_accept.take()
                {
                    self.send(conv, text);
                }
            }
            NetEvent::Verified { conv, results } => self.model.on_verified(&conv, results),
            NetEvent::KeyStatus(status) => {
                match &status {
                    KeyStatus::BackupUnreadable => self.dialog = Some(Dialog::NewKey),
                    KeyStatus::Missing(why) => {
                        self.show_banner(format!("Direct messages are unavailable: {why}"), true)
                    }
                    KeyStatus::Ready => {
                        if self.dialog == Some(Dialog::NewKey) {
                            self.dialog = None;
                        }
                        // The open DM's contact, now that there is a key to compare with.
                        if let Some(Conv::Direct { user }) = self.model.current.clone() {
                            self.net.send(Command::CheckPeer { peer: user });
                        }
                    }
                }
                self.model.key_status = Some(status);
            }
            NetEvent::PasswordChanged(result) => {
                if let Some(Dialog::ChangePassword(form)) = &mut self.dialog {
                    form.busy = false;
                    match result {
                        Ok(()) => {
                            *form = Default::default();
                            form.info =
                                Some("Password changed. Your key backup is sealed with the new one.".into());
                        }
                        Err(e) => form.error = Some(e),
                    }
                }
            }
        }
    }

    fn on_server_event(&mut self, ev: Event) {
        match ev {
            ev @ (Event::RoomSettings { .. }
            | Event::MuteChanged { .. }
            | Event::ExamMode { .. }
            | Event::Question { .. }
            | Event::Poll { .. }
            | Event::QueueChanged { .. }
            | Event::QueueMoved { .. }
            | Event::Called { .. }) => {
                let fx = self.class.on_event(&mut self.model, ev);
                self.run_class_effects(fx);
            }
            Event::Message { message } => {
                let source = if self.catching_up { Source::CatchUp } else { Source::Live };
                if let Some(notice) = self.model.on_message(message, source)
                    && source == Source::Live
                {
                    self.notify(&notice);
                }
            }
            Event::CaughtUp => self.catching_up = false,
            // The net task's sharing half takes these (`crate::sharing::net`).
            Event::SearchRequest { .. }
            | Event::SearchResults { .. }
            | Event::SearchDone { .. }
            | Event::FetchRequest { .. }
            | Event::RelayRequest { .. } => {}
            Event::Edited { conv, id, body, ts } => {
                // Direct messages' edits reach the app opened, as `NetEvent::DmEdited`.
                if let classchat_wire::Body::Text { text } = body {
                    self.model.on_edited(&conv, id, crate::model::Content::Text(text), ts, None);
                }
            }
            Event::Deleted { conv, id, by, .. } => self.model.on_deleted(&conv, id, &by),
            Event::Reactions { conv, id, reactions } => self.model.on_reactions(&conv, id, reactions),
            Event::Typing { conv, user } => {
                self.model.on_typing(&conv, &user, Instant::now());
                self.ctx.request_repaint_after(Duration::from_millis(classchat_wire::TYPING_SHOW_MS + 100));
            }
            Event::Presence { user, online } => self.model.on_presence(&user, online),
            Event::RemovedFromRoom { room, reason } => {
                self.model.on_removed(&room, &reason);
                let text = self
                    .model
                    .conversation(&Conv::room(room.as_str()))
                    .and_then(|c| c.removed.clone())
                    .unwrap_or_default();
                self.show_banner(text, true);
            }
            Event::KeyChanged { user } => {
                // The net task checks the directory and reports through `NetEvent::Peer`.
                tracing::info!(%user, "a contact's identity key changed");
            }
            Event::Disconnect { reason } => {
                self.show_banner(format!("The server closed the connection: {reason}"), true)
            }
            // The net task's E2E worker turns offers into `NetEvent::Offer`; one that
            // came another way has not been opened.
            Event::FileOffer { file } => {
                let seal = if crate::files::claims_sealed(&file) {
                    OfferSeal::Unverified("it was not opened".into())
                } else {
                    OfferSeal::Plain
                };
                self.on_offer(file, seal);
            }
            Event::OfferAnswered { file, user, accepted } => {
                let state = if accepted { OfferState::Accepted } else { OfferState::Declined };
                self.files.set_offer_state(file, false, state);
                let name = self.files.offers().find(|o| o.file.id == file).map(|o| o.file.name.clone());
                let what = name.unwrap_or_else(|| "your file".into());
                self.show_banner(
                    format!("{user} {} {what}.", if accepted { "accepted" } else { "declined" }),
                    false,
                );
            }
        }
    }

    /// A file offered to us: shown in the DM, counted unread there, and notified like a
    /// direct message. An offer repeated at the next login changes nothing.
    fn on_offer(&mut self, file: FileInfo, seal: OfferSeal) {
        let peer = file.from.clone();
        let conv = Conv::direct(peer.as_str());
        let what = match &seal {
            OfferSeal::Unverified(_) => "a file that could not be verified".to_owned(),
            _ => format!("{} ({})", file.name, crate::files::human_size(file.size)),
        };
        let offer = Offer { file, peer: peer.clone(), incoming: true, state: OfferState::Pending, seal };
        if !self.files.add_offer(offer) {
            return;
        }
        self.model.on_offer(&conv);
        self.show_banner(format!("{peer} offers you {what}."), false);
        self.notify(&Notice { conv, from: peer, text: what, reason: NoticeReason::FileOffer });
    }

    fn notify(&self, notice: &Notice) {
        if self.focused || !self.settings.notifications {
            return;
        }
        let summary = match notice.reason {
            NoticeReason::DirectMessage => format!("{} (direct message)", notice.from),
            NoticeReason::Mention => {
                format!("{} mentioned you in {}", notice.from, ui::conv_title(&notice.conv))
            }
            NoticeReason::Announcement => format!("Announcement from {}", notice.from),
            NoticeReason::FileOffer => format!("{} offers you a file", notice.from),
            NoticeReason::Called => format!("{} is ready for you", notice.from),
            NoticeReason::Fetching => format!("{} is fetching a file from you", notice.from),
        };
        let body: String = notice.text.chars().take(200).collect();
        match &self.config.notifier {
            Notifier::Desktop => self.net.send(Command::Notify { summary, body }),
            Notifier::Off => {}
            Notifier::Record(list) => {
                if let Ok(mut list) = list.lock() {
                    list.push((summary, body));
                }
            }
        }
    }

    fn on_reply(&mut self, request: Request, result: Result<Response, RequestError>) {
        if crate::rich::is_rich_request(&request) {
            let fx = self.rich.on_reply(request, result);
            self.run_class_effects(fx);
            return;
        }
        if crate::class::is_class_request(&request) {
            let fx = self.class.on_reply(&mut self.model, &mut self.dialog, request, result);
            self.run_class_effects(fx);
            return;
        }
        match (request, result) {
            (_, Ok(Response::Rooms { rooms })) => {
                self.model.on_rooms(rooms);
                if let Some(Dialog::Browse(b)) = &mut self.dialog {
                    b.error = None;
                }
            }
            (Request::CreateRoom { .. } | Request::JoinRoom { .. }, Ok(Response::Room { room })) => {
                let conv = Conv::room(room.name.as_str());
                self.model.on_joined(room);
                self.dialog = None;
                self.select(conv);
            }
            (Request::CreateRoom { .. }, Err(e)) => match &mut self.dialog {
                Some(Dialog::CreateRoom(form)) => {
                    form.busy = false;
                    match e.code {
                        Some(classchat_wire::ErrorCode::RoomExists) => {
                            form.name_error =
                                Some("A room with this name exists; browse rooms to join it.".into());
                        }
                        Some(classchat_wire::ErrorCode::InvalidRoomName) => {
                            form.name_error = Some(e.message);
                        }
                        _ => form.other_error = Some(e.message),
                    }
                }
                _ => self.show_banner(format!("Could not create the room: {e}"), true),
            },
            (Request::JoinRoom { name, .. }, Err(e)) => {
                let message = match e.code {
                    Some(code) => net::refusal_text(code, &e.message),
                    None => e.message,
                };
                match &mut self.dialog {
                    Some(Dialog::JoinLocked(form)) if form.room == name => {
                        form.busy = false;
                        form.error = Some(message);
                    }
                    Some(Dialog::Browse(b)) => {
                        b.joining = None;
                        b.error = Some(format!("#{name}: {message}"));
                    }
                    _ => self.show_banner(format!("Could not join #{name}: {message}"), true),
                }
            }
            (Request::LeaveRoom { name }, Ok(_)) => {
                self.model.on_left(&name);
                self.chat.forget(&Conv::room(name.as_str()));
                self.show_banner(format!("You left #{name}."), false);
            }
            (_, Ok(Response::Members { room, members })) => self.model.on_members(&room, members),
            (Request::ListUsers, Ok(Response::Users { users })) => self.model.on_users(users),
            (_, Ok(Response::History { conv, messages, more })) => {
                self.model.on_history(&conv, messages, more);
                let fx = self.rich.on_history(&self.model, &conv);
                self.run_class_effects(fx);
            }
            (Request::History { conv, .. }, Err(e)) => {
                let c = self.model.conversation_mut(&conv);
                c.loading_older = false;
                // Do not ask again in a loop; scrolling up after a reconnect retries.
                c.more_history = e.code.is_none();
                if e.code.is_some() {
                    self.show_banner(format!("Could not load older messages: {e}"), true);
                }
            }
            (_, Ok(Response::Bans { room, users })) => {
                if let Some(Dialog::RoomSettings(form)) = &mut self.dialog
                    && form.room == room
                {
                    form.bans = Some(users);
                }
            }
            (request @ (Request::Kick { .. } | Request::Ban { .. } | Request::Unban { .. }), Ok(_)) => {
                let (room, text) = match &request {
                    Request::Kick { room, user } => {
                        (room.clone(), format!("{user} was removed from #{room}."))
                    }
                    Request::Ban { room, user } => (room.clone(), format!("{user} is banned from #{room}.")),
                    Request::Unban { room, user } => {
                        (room.clone(), format!("{user} may join #{room} again."))
                    }
                    _ => (String::new(), String::new()),
                };
                self.request(Request::RoomMembers { name: room.clone() });
                if let Some(Dialog::RoomSettings(form)) = &mut self.dialog {
                    form.info = Some(text);
                    self.request(Request::ListBans { room });
                } else {
                    self.show_banner(text, false);
                }
            }
            (
                Request::SetTopic { room, .. }
                | Request::SetRoomPassword { room, .. }
                | Request::HandOverAdmin { room, .. },
                Ok(_),
            ) => {
                if let Some(Dialog::RoomSettings(form)) = &mut self.dialog {
                    form.error = None;
                    form.info = Some("Saved.".into());
                }
                self.request(Request::RoomMembers { name: room });
            }
            (
                Request::Kick { .. }
                | Request::Ban { .. }
                | Request::Unban { .. }
                | Request::ListBans { .. }
                | Request::SetTopic { .. }
                | Request::SetRoomPassword { .. }
                | Request::HandOverAdmin { .. },
                Err(e),
            ) => {
                let message = e.code.map(|c| net::refusal_text(c, &e.message)).unwrap_or(e.message);
                match &mut self.dialog {
                    Some(Dialog::RoomSettings(form)) => form.error = Some(message),
                    _ => self.show_banner(message, true),
                }
            }
            (
                Request::Ping | Request::OnlineUsers | Request::RoomMembers { .. } | Request::ListRooms,
                Err(e),
            ) => {
                tracing::debug!("background request failed: {e}");
            }
            (request, Err(e)) => {
                tracing::debug!(?request, "request failed: {e}");
                self.show_banner(e.message, true);
            }
            (_, Ok(_)) => {}
        }
    }

    fn request(&self, request: Request) {
        self.net.send(Command::Request(request));
    }

    fn show_banner(&mut self, text: impl Into<String>, error: bool) {
        self.banner = Some(Banner { text: text.into(), error, until: Instant::now() + BANNER_TIME });
    }

    fn select(&mut self, conv: Conv) {
        if let Conv::Room { name } = &conv {
            self.request(Request::RoomMembers { name: name.clone() });
        }
        if let Conv::Direct { user } = &conv {
            self.net.send(Command::CheckPeer { peer: user.clone() });
        }
        let fx = self.class.on_select(&self.model, &conv);
        self.model.select(conv);
        self.members.expanded = None;
        self.composer.focus = true;
        self.run_class_effects(fx);
    }

    /// Carries out what the class state asked for.
    fn run_class_effects(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Request(request) => self.request(request),
                Effect::Banner { text, error } => self.show_banner(text, error),
                Effect::Select(conv) => self.select(conv),
                Effect::Notify(notice) => self.notify(&notice),
                Effect::OpenDialog(dialog) => self.dialog = Some(dialog),
                Effect::CloseDialog => self.dialog = None,
                Effect::RestoreDraft { conv, text } => self.restore_draft(&conv, text),
                Effect::FocusComposer => self.composer.focus = true,
                Effect::SetDraft { conv, text } => self.composer.set_draft(&conv, text),
                Effect::StartEdit { conv, id, text } => {
                    let draft = self.composer.draft(&conv).to_owned();
                    self.rich.begin_edit(conv.clone(), id, draft);
                    self.composer.set_draft(&conv, text);
                    self.composer.focus = true;
                    self.composer.cursor_to_end = true;
                }
                Effect::Rich(cmd) => self.net.send(Command::Rich(cmd)),
                Effect::LoadOlder(conv) => self.apply(Action::LoadOlder(conv)),
            }
        }
    }

    /// Puts text that did not go out back into `conv`'s composer, before what is there.
    fn restore_draft(&mut self, conv: &Conv, text: String) {
        let draft = self.composer.draft(conv);
        let text = if draft.is_empty() { text } else { format!("{text}\n{draft}") };
        self.composer.set_draft(conv, text);
        self.composer.focus = true;
    }

    // ---- actions ----------------------------------------------------------------------

    fn apply(&mut self, action: Action) {
        match action {
            Action::LogIn { register } => {
                if self.login.validate(register) {
                    self.login.busy = true;
                    self.login.last_register = register;
                    self.login.username = self.login.username.trim().to_owned();
                    self.settings.server = net::normalize_addr(&self.login.server);
                    self.login.server = self.settings.server.clone();
                    self.settings.username = self.login.username.clone();
                    if let Some(invite) = self.login.pinned_for(&self.settings.server) {
                        // The invite's key replaces any remembered one; the connect below
                        // waits for it to be saved, and refuses a server that shows another.
                        self.net.send(Command::TrustServer {
                            addr: self.settings.server.clone(),
                            fingerprint: invite.fingerprint,
                        });
                    }
                    self.net.send(Command::LogIn {
                        addr: self.settings.server.clone(),
                        nodes: self.login.nodes_for(&self.settings.server),
                        username: self.login.username.clone(),
                        password: self.login.password.clone(),
                        register,
                    });
                }
            }
            Action::CancelLogin => {
                self.login.busy = false;
                self.net.send(Command::CancelLogin);
            }
            Action::TrustServer { addr, fingerprint } => {
                self.trust = None;
                self.net.send(Command::TrustServer { addr: addr.clone(), fingerprint });
                // Carry on with what the prompt interrupted.
                if self.screen == Screen::Login && !self.login.password.is_empty() {
                    self.login.busy = true;
                    self.net.send(Command::LogIn {
                        nodes: self.login.nodes_for(&addr),
                        addr,
                        username: self.login.username.clone(),
                        password: self.login.password.clone(),
                        register: self.login.last_register,
                    });
                } else {
                    self.login.busy = true;
                    self.net.send(Command::Resume { addr, username: self.settings.username.clone() });
                }
            }
            Action::RejectServer => {
                let changed = self.trust.as_ref().is_some_and(|t| t.changed_from.is_some());
                self.trust = None;
                self.login.busy = false;
                self.login.set_error(
                    net::Field::Server,
                    if changed {
                        "Refused: the server's key has changed. Nothing was sent.".into()
                    } else {
                        "Not connected: the server's key was not trusted. Nothing was sent.".into()
                    },
                );
            }
            Action::Select(conv) => self.select(conv),
            Action::SelectRelative(delta) => {
                let order = self.model.ordered_conversations();
                if order.is_empty() {
                    return;
                }
                let at =
                    self.model.current.as_ref().and_then(|c| order.iter().position(|o| o == c)).unwrap_or(0);
                let len = order.len() as i64;
                let next = (at as i64 + i64::from(delta)).rem_euclid(len) as usize;
                if let Some(conv) = order.get(next) {
                    self.select(conv.clone());
                }
            }
            Action::OpenDm(user) => {
                if !self.model.is_me(&user) {
                    self.select(Conv::direct(user));
                }
            }
            Action::OpenDialog(dialog) => {
                if matches!(dialog, Dialog::Browse(_)) {
                    self.request(Request::ListRooms);
                }
                self.dialog = Some(dialog);
            }
            Action::CloseDialog => self.dialog = None,
            Action::CreateRoom { name, topic, password } => {
                self.request(Request::CreateRoom { name, topic, password });
            }
            Action::RefreshRooms => self.request(Request::ListRooms),
            Action::JoinRoom { name, password } => self.request(Request::JoinRoom { name, password }),
            Action::LeaveRoom(name) => self.request(Request::LeaveRoom { name }),
            Action::RoomAdmin(op) => {
                if let AdminOp::SetPassword { .. } | AdminOp::SetTopic { .. } = &op
                    && let Some(Dialog::RoomSettings(form)) = &mut self.dialog
                {
                    form.info = None;
                    form.error = None;
                }
                self.request(op.into_request());
            }
            Action::Send { conv, text } if crate::sharing::command::parse(&text).is_some() => {
                let Some(cmd) = crate::sharing::command::parse(&text) else { return };
                self.composer.clear(&conv);
                let fx = self.sharing.on_command(sharing_env!(self), &conv, cmd);
                self.run_class_effects(fx);
            }
            Action::Sharing(action) => self.sharing_action(action),
            Action::Send { conv, text } => {
                let changed = match &conv {
                    Conv::Direct { user } => self.model.peer(user).is_some_and(|p| p.changed_to.is_some()),
                    _ => false,
                };
                if let (true, Conv::Direct { user }) = (changed, &conv) {
                    // Nothing more goes to a changed key until the user accepts it.
                    self.dialog = Some(Dialog::ConfirmKeyChange { peer: user.clone(), text });
                } else {
                    self.send(conv, text);
                }
            }
            Action::AcceptKey { peer, then_send } => {
                self.net.send(Command::AcceptKey { peer: peer.clone() });
                if let Some(info) = self.model.peers.get_mut(&peer.to_ascii_lowercase()) {
                    info.safety_number = info.changed_to.take().or(info.safety_number.take());
                    info.verified = false;
                }
                // Messages signed with the new key can be checked now: load them again.
                let conv = Conv::direct(peer.as_str());
                self.model.reload(&conv);
                self.chat.forget(&conv);
                if let Some(text) = then_send {
                    // Sent once the net task reports the key accepted (`NetEvent::Peer`):
                    // sending at once could reach the engine before the acceptance does.
                    self.send_after_accept = Some((peer.to_ascii_lowercase(), conv, text));
                }
            }
            Action::MarkVerified { peer, verified } => {
                self.net.send(Command::MarkVerified { peer, verified });
            }
            Action::VerifyRows { conv, ids } => {
                let checks = self.model.take_checks(&conv, &ids);
                if !checks.is_empty() {
                    self.net.send(Command::Verify { conv, checks });
                }
            }
            Action::NewIdentity => self.net.send(Command::NewIdentity),
            Action::ChangePassword { current, new } => {
                self.net.send(Command::ChangePassword { current, new });
            }
            Action::Broadcast(text) => {
                if let Some(current) = self.model.current.clone() {
                    self.composer.clear(&current);
                }
                self.send(Conv::Announcements, text);
            }
            Action::LoadOlder(conv) => {
                let c = self.model.conversation_mut(&conv);
                if c.loading_older || !c.more_history {
                    return;
                }
                c.loading_older = true;
                let before = c.oldest_id();
                self.request(Request::History { conv, before, limit: HISTORY_PAGE });
            }
            Action::RetryPending(local_id) => {
                if let Some((conv, text)) = self.model.take_pending(local_id) {
                    self.send(conv, text);
                }
            }
            Action::DiscardPending(local_id) => {
                self.net.send(Command::Unsend { local_id });
                if let Some((conv, text)) = self.model.take_pending(local_id) {
                    self.restore_draft(&conv, text);
                }
            }
            Action::SetTheme(theme) => self.settings.theme = theme,
            Action::SetNotifications(on) => self.settings.notifications = on,
            Action::SendFiles { conv, paths } => self.send_files(conv, paths),
            Action::Attach(conv) => {
                let tx = self.picks_tx.clone();
                let ctx = self.ctx.clone();
                // The dialog is async and runs on the runtime: the window keeps drawing.
                self.config.runtime.spawn(async move {
                    if let Some(handles) =
                        rfd::AsyncFileDialog::new().set_title("Send files").pick_files().await
                    {
                        let paths = handles.iter().map(|h| h.path().to_path_buf()).collect();
                        let _ = tx.send(Picked::Send { conv, paths });
                        ctx.request_repaint();
                    }
                });
            }
            Action::Download { file, conv } => self.ask_where_to_save(file, conv, false, None),
            Action::AcceptOffer(file) => {
                let conv = Conv::direct(file.from.as_str());
                self.ask_where_to_save(file, conv, true, None);
            }
            Action::DeclineOffer(file) => {
                self.files.set_offer_state(file.id, true, OfferState::Declined);
                self.request(Request::AnswerOffer { file: file.id, accept: false });
            }
            Action::CancelTransfer(id) => {
                match self.files.transfer(id).and_then(crate::sharing::cancel_command) {
                    Some(cmd) => self.net.send(cmd),
                    None => self.net.send(Command::Files(FileCommand::Cancel { id })),
                }
            }
            Action::RetryTransfer(id) => self.start_transfer(id, false),
            Action::ReplaceDownload(id) => self.start_transfer(id, true),
            Action::SaveElsewhere(id) => {
                if let Some(t) = self.files.transfer(id)
                    && let Some(file) = t.file.clone()
                {
                    let conv = t.conv.clone();
                    self.ask_where_to_save(file, conv, false, Some(id));
                }
            }
            Action::ForgetTransfer(id) => self.files.forget(id),
            Action::OpenPath(path) => self.net.send(Command::Files(FileCommand::Open { path })),
            Action::ShowInFolder(path) => {
                if let Some(dir) = path.parent() {
                    self.net.send(Command::Files(FileCommand::Open { path: dir.to_path_buf() }));
                }
            }
            Action::Thumbnail(file) => {
                self.files.thumb_requested(file.id);
                let cache = self.config.data_dir.join("thumbnails");
                self.net.send(Command::Files(FileCommand::Thumbnail { file, cache }));
            }
            Action::ToggleTransfers => self.files.panel_open = !self.files.panel_open,
            Action::Rich(action) => {
                let fx = self.rich.apply(&self.model, action, Instant::now());
                self.run_class_effects(fx);
            }
            Action::Class(action) => {
                let fx = self.class.apply(&mut self.model, &mut self.dialog, action);
                self.run_class_effects(fx);
            }
            Action::LogOut => {
                self.net.send(Command::LogOut);
                self.settings.username.clear();
                self.login.username.clear();
            }
        }
    }

    /// Applies a sharing action (the shared-files panel, the search, Get). Public so
    /// tests can choose a folder without the native picker.
    pub fn sharing_action(&mut self, action: crate::sharing::SharingAction) {
        let fx = self.sharing.apply(sharing_env!(self), action);
        self.run_class_effects(fx);
    }

    // ---- files ------------------------------------------------------------------------

    fn on_transfer(&mut self, id: TransferId, update: TransferUpdate) {
        let started = matches!(update, TransferUpdate::Started { .. });
        let failed = match &update {
            TransferUpdate::Failed(why) => Some(why.clone()),
            _ => None,
        };
        let me = self.model.my_name().unwrap_or_default().to_owned();
        let Some(t) = self.files.update(id, update) else { return };
        if let Some(why) = failed {
            let text = format!(
                "{} {} failed: {why}",
                if t.dir == Direction::Up { "Sending" } else { "Saving" },
                t.name
            );
            self.show_banner(text, true);
            return;
        }
        // An upload to a person is an offer: show it in the conversation.
        if started
            && t.dir == Direction::Up
            && let (Conv::Direct { user }, Some(file)) = (&t.conv, t.file_id)
        {
            let offer = Offer {
                file: FileInfo {
                    id: file,
                    from: me,
                    name: sanitize_file_name(&t.name),
                    size: t.total,
                    sha256: Vec::new(),
                    meta: None,
                },
                peer: user.clone(),
                incoming: false,
                state: OfferState::Pending,
                seal: OfferSeal::Encrypted,
            };
            self.files.add_offer(offer);
        }
    }

    fn send_files(&mut self, conv: Conv, paths: Vec<PathBuf>) {
        if conv == Conv::Announcements {
            self.show_banner("Files cannot be sent to the announcements.", true);
            return;
        }
        if let Some(why) = self.class.files_refused(&self.model, &conv) {
            self.show_banner(why, true);
            return;
        }
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let id = self.files.add(Direction::Up, name, path, conv.clone(), None);
            self.start_transfer(id, false);
        }
        self.files.panel_open = true;
    }

    /// (Re)starts transfer `id`; it resumes where an earlier attempt stopped.
    fn start_transfer(&mut self, id: TransferId, replace: bool) {
        let Some(t) = self.files.restart(id) else { return };
        if let Some(cmd) = crate::sharing::restart_command(t, replace) {
            self.net.send(cmd);
            return;
        }
        let cmd = match (t.dir, &t.file) {
            (Direction::Up, _) => FileCommand::Upload { id, conv: t.conv.clone(), path: t.path.clone() },
            (Direction::Down, Some(file)) => FileCommand::Download {
                id,
                conv: t.conv.clone(),
                file: file.clone(),
                dest: t.path.clone(),
                replace,
            },
            (Direction::Down, None) => return,
        };
        self.net.send(Command::Files(cmd));
    }

    /// The native save dialog (off the UI thread), or the tests' folder.
    fn ask_where_to_save(&mut self, file: FileInfo, conv: Conv, offer: bool, retry: Option<TransferId>) {
        let name = sanitize_file_name(&file.name);
        if let Some(dir) = &self.config.save_dir_for_tests {
            let dest = dir.join(&name);
            self.on_picked(Picked::Save { file, conv, dest, offer, retry });
            return;
        }
        let tx = self.picks_tx.clone();
        let ctx = self.ctx.clone();
        self.config.runtime.spawn(async move {
            let dialog = rfd::AsyncFileDialog::new().set_title("Save file").set_file_name(&name);
            if let Some(handle) = dialog.save_file().await {
                let dest = handle.path().to_path_buf();
                let _ = tx.send(Picked::Save { file, conv, dest, offer, retry });
                ctx.request_repaint();
            }
        });
    }

    fn on_picked(&mut self, picked: Picked) {
        match picked {
            Picked::Send { conv, paths } => self.send_files(conv, paths),
            Picked::Save { file, conv, dest, offer, retry } => {
                if offer {
                    self.files.set_offer_state(file.id, true, OfferState::Accepted);
                }
                if let Some(id) = retry {
                    self.files.forget(id);
                }
                let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let id = self.files.add(Direction::Down, name, dest, conv, Some(file));
                // Never replaces an existing file: the net task reports it and the
                // transfers panel asks.
                self.start_transfer(id, false);
            }
        }
    }

    fn send(&mut self, conv: Conv, text: String) {
        if let Some(me) = &self.model.me {
            let limit = me.limits.max_message_len as usize;
            let len = match conv {
                Conv::Direct { .. } => crate::e2e::sealed_len(text.len()),
                _ => text.len(),
            };
            if len > limit {
                self.show_banner(
                    format!("That message is {len} bytes; the server takes at most {limit}. It is still in the composer."),
                    true,
                );
                return;
            }
        }
        if self.rich.editing.as_ref().is_some_and(|e| e.conv == conv) {
            let fx = self.rich.finish_edit(&self.model, text);
            self.run_class_effects(fx);
            return;
        }
        if conv != Conv::Announcements {
            self.composer.clear(&conv);
        }
        self.class.on_send(&self.model, &conv, Instant::now());
        let reply_to = self.rich.reply.remove(&conv);
        let local_id = self.model.queue_send(&conv, text.clone(), reply_to);
        self.net.send(Command::Send { local_id, conv, text, reply_to });
    }

    // ---- the frame ----------------------------------------------------------------------

    fn shortcuts(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        use egui::{Key, Modifiers};
        if self.screen != Screen::Main {
            return;
        }
        let (switcher, up, down, find) = ctx.input_mut(|i| {
            (
                i.consume_key(Modifiers::COMMAND, Key::K),
                i.consume_key(Modifiers::ALT, Key::ArrowUp),
                i.consume_key(Modifiers::ALT, Key::ArrowDown),
                i.consume_key(Modifiers::COMMAND, Key::F),
            )
        });
        if find {
            actions.push(Action::Rich(crate::rich::RichAction::OpenSearch(self.model.current.clone())));
        }
        if switcher {
            actions.push(Action::OpenDialog(Dialog::Switcher(Default::default())));
        }
        if self.dialog.is_none() {
            if up {
                actions.push(Action::SelectRelative(-1));
            }
            if down {
                actions.push(Action::SelectRelative(1));
            }
        }
    }

    fn show_banner_ui(&mut self, ui: &mut egui::Ui) {
        let Some(banner) = &self.banner else { return };
        let now = Instant::now();
        if now >= banner.until {
            self.banner = None;
            return;
        }
        ui.ctx().request_repaint_after(banner.until - now);
        let color = if banner.error { ui.visuals().error_fg_color } else { ui.visuals().hyperlink_color };
        let mut close = false;
        egui::Frame::new().fill(color.gamma_multiply(0.12)).inner_margin(6.0).corner_radius(4.0).show(
            ui,
            |ui| {
                // The close button at the right, the text wrapping in the rest of the width
                // (a long path or sentence must not run under the panels beside the chat).
                ui.with_layout(egui::Layout::right_to_left(egui::Align::TOP), |ui| {
                    close = ui.small_button("❌").clicked();
                    ui.with_layout(egui::Layout::left_to_right(egui::Align::TOP), |ui| {
                        ui.add(egui::Label::new(egui::RichText::new(&banner.text).color(color)).wrap());
                    });
                });
            },
        );
        if close {
            self.banner = None;
        }
    }

    /// Starts LAN discovery the first time the connect screen shows and takes in what it
    /// heard since (never blocks).
    fn poll_nearby<'a>(
        nearby: &'a mut Option<Result<Browser, String>>,
        scope: Option<Scope>,
        ctx: &egui::Context,
    ) -> Nearby<'a> {
        let Some(scope) = scope else { return Nearby::Off };
        let nearby = nearby.get_or_insert_with(|| Browser::start(scope).map_err(|e| e.to_string()));
        match nearby {
            Ok(browser) => {
                // Announcements arrive in the background; look again in a second.
                ctx.request_repaint_after(Duration::from_secs(1));
                Nearby::Found(browser.poll())
            }
            Err(why) => Nearby::Failed(why),
        }
    }

    /// The servers the connect screen lists (empty before it first showed).
    pub fn nearby_servers(&self) -> &[FoundServer] {
        match &self.nearby {
            Some(Ok(browser)) => browser.found(),
            _ => &[],
        }
    }

    /// One frame of the whole app (what `eframe::App::ui` calls).
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.drain_events();
        self.focused = ctx.input(|i| i.focused);
        if self.applied_theme != Some(self.settings.theme) {
            ctx.set_theme(self.settings.theme);
            self.applied_theme = Some(self.settings.theme);
        }
        let mut actions = Vec::new();
        self.shortcuts(&ctx, &mut actions);

        match self.screen {
            Screen::Login => {
                let nearby = Self::poll_nearby(&mut self.nearby, self.config.discovery, &ctx);
                egui::CentralPanel::default().show(ui, |ui| {
                    actions.extend(ui::login::show(ui, &mut self.login, &self.conn, nearby));
                });
            }
            Screen::Main => {
                actions.extend(ui::moderation::top_panel(ui, &self.model, &self.class));
                egui::Panel::bottom("status").show(ui, |ui| {
                    actions.extend(ui::status_bar::show(
                        ui,
                        &self.model,
                        &self.conn,
                        self.settings.theme,
                        self.files.running_count(),
                        &self.class,
                        &self.settings.sharing,
                    ));
                });
                actions.extend(ui::shared_files::side_panel(ui, &self.sharing, &self.settings.sharing));
                egui::Panel::left("rooms").resizable(true).default_size(210.0).min_size(150.0).show(
                    ui,
                    |ui| {
                        actions.extend(ui::search::global_box(ui, &mut self.rich));
                        actions.extend(ui::rooms::show(ui, &self.model));
                    },
                );
                if self.files.panel_open {
                    egui::Panel::right("transfers").resizable(true).default_size(280.0).min_size(200.0).show(
                        ui,
                        |ui| {
                            actions.extend(ui::transfers::show(ui, &self.files));
                        },
                    );
                }
                actions.extend(ui::office_hours::side_panel(ui, &self.model, &self.class));
                egui::Panel::right("members").resizable(true).default_size(210.0).min_size(150.0).show(
                    ui,
                    |ui| {
                        actions.extend(ui::members::show(ui, &self.model, &mut self.members, &self.class));
                    },
                );
                actions.extend(ui::room_tools::side_panel(ui, &self.model, &mut self.class));
                actions.extend(ui::search::side_panel(ui, &self.model, &mut self.rich, self.chat.tz()));
                egui::Panel::bottom("composer").show(ui, |ui| {
                    actions.extend(ui::composer::show(
                        ui,
                        &self.model,
                        &mut self.composer,
                        &self.conn,
                        &self.class,
                        &self.rich,
                    ));
                    ui.add_space(4.0);
                });
                actions.extend(ui::file_search::bottom_panel(
                    ui,
                    &self.model,
                    &mut self.sharing,
                    self.conn.is_online(),
                ));
                egui::CentralPanel::default().show(ui, |ui| {
                    self.show_banner_ui(ui);
                    actions.extend(ui::chat_view::show(
                        ui,
                        &self.model,
                        &self.files,
                        &mut self.chat,
                        &self.rich,
                        self.conn.is_online(),
                    ));
                });
                if let Some(dialog) = &mut self.dialog {
                    actions.extend(ui::dialogs::show(&ctx, dialog, &self.model, &self.settings, &self.class));
                }
                if let Some(target) = self.rich.picker.clone() {
                    ui::message_extras::picker_window(
                        &ctx,
                        &target,
                        &self.model,
                        &mut self.rich.emoji,
                        &mut actions,
                    );
                }
                actions.extend(self.drag_and_drop(&ctx));
            }
        }
        if let Some(prompt) = &self.trust {
            actions.extend(ui::trust::show(&ctx, prompt, &mut self.trust_ack));
        }
        // Countdowns in the status bar and the composer tick once a second.
        if matches!(self.conn, ConnState::Reconnecting { .. }) {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        // So do slow mode's, and a mute ends by itself with no event.
        if let Some(after) = self.class.next_change(crate::class::now_ms(), Instant::now()) {
            ctx.request_repaint_after(after);
        }
        for action in actions {
            self.apply(action);
        }
        self.remember_new_dms();
        let unread = self.model.total_unread();
        if self.title_unread != Some(unread) {
            self.title_unread = Some(unread);
            let title = if unread > 0 { format!("ClassChat ({unread})") } else { "ClassChat".into() };
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title));
        }
    }

    /// Files dragged over the window: an overlay says where they go. Dropped: they are sent
    /// to the open conversation.
    fn drag_and_drop(&self, ctx: &egui::Context) -> Vec<Action> {
        let (hovering, dropped) = ctx.input(|i| {
            let paths: Vec<PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
            (!i.raw.hovered_files.is_empty(), paths)
        });
        let Some(conv) = self.model.current.clone() else { return Vec::new() };
        let target = match &conv {
            Conv::Room { name } => Some(format!("#{name}")),
            Conv::Direct { user } => Some(user.clone()),
            Conv::Announcements => None,
        };
        let refused = self.class.files_refused(&self.model, &conv);
        if hovering {
            let text = match (&target, &refused) {
                (_, Some(why)) => why.clone(),
                (Some(t), None) => format!("Drop to send to {t}"),
                (None, None) => "Files cannot be sent to the announcements".into(),
            };
            let screen = ctx.content_rect();
            egui::Area::new(egui::Id::unique("drop-overlay"))
                .order(egui::Order::Foreground)
                .fixed_pos(screen.min)
                .interactable(false)
                .show(ctx, |ui| {
                    let fill = ui.visuals().selection.bg_fill.gamma_multiply(0.35);
                    ui.painter().rect_filled(screen, 0.0, fill);
                    ui.painter().rect_stroke(
                        screen.shrink(6.0),
                        8.0,
                        egui::Stroke::new(3.0, ui.visuals().selection.stroke.color),
                        egui::StrokeKind::Inside,
                    );
                    ui.scope_builder(egui::UiBuilder::new().max_rect(screen), |ui| {
                        ui.centered_and_justified(|ui| {
                            ui.label(RichText::new(text).heading().strong());
                        });
                    });
                });
        }
        if dropped.is_empty() || target.is_none() {
            return Vec::new();
        }
        vec![Action::SendFiles { conv, paths: dropped }]
    }

    /// Saves DM partners the model learned about (a new conversation, or one opened by
    /// the user), so they are still listed after a restart.
    fn remember_new_dms(&mut self) {
        if self.screen != Screen::Main {
            return;
        }
        for conv in self.model.ordered_conversations() {
            if let Conv::Direct { user } = conv
                && self.known_dms.insert(user.to_ascii_lowercase())
            {
                self.net.send(Command::RememberDm { contact: user });
            }
        }
    }
}

impl eframe::App for ClassChatApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Drain here too, so events do not pile up while the window is hidden.
        self.drain_events();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}
