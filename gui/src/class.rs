//! The class state: what the instructor tools (PROTOCOL.md section 16) tell the app, kept
//! apart from the chat model. Exam mode, the user's own mutes, room modes (announce-only,
//! slow mode, Q&A) as they bear on sending, questions and polls per room, office-hours
//! queues, and the slow-mode timers the app keeps itself.
//!
//! One entry point each for what comes in: [`ClassState::on_welcome`],
//! [`ClassState::on_event`], [`ClassState::on_reply`] (for the [`is_class_request`]
//! requests), [`ClassState::on_send_refused`], and one for what the user does:
//! [`ClassState::apply`]. Each returns
//! [`Effect`]s that the app carries out (requests, banners, opening a conversation), so this
//! module never touches the network or the views.
//!
//! Who is who: an instructor is a server admin; the staff of a room are the instructors and
//! the room's admin ([`Model::is_room_admin`]); everyone else is a student there.
//!
//! Times from the server (`until`, `closes_at`) are compared with this computer's clock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use classchat_wire::{
    AuditEntry, Conv, ErrorCode, Event, ExamInfo, MuteInfo, MuteScope, Poll, PollId, Question, QuestionId,
    QueueEntry, QueuePosition, Request, Response, RoomSettings, Timestamp, Welcome,
};

use crate::model::{Model, Notice, NoticeReason};
use crate::net::{RequestError, refusal_text};
use crate::ui::dialogs::Dialog;

/// Audit entries asked for per page.
pub const AUDIT_PAGE: u32 = 50;

/// The timed mutes staff can choose: label and seconds (`None`: until lifted).
pub const MUTE_CHOICES: [(&str, Option<u64>); 4] =
    [("5 min", Some(300)), ("1 h", Some(3600)), ("1 day", Some(86_400)), ("until lifted", None)];

/// The slow-mode intervals offered: label and seconds (0: off).
pub const SLOW_MODE_CHOICES: [(&str, u32); 5] =
    [("Off", 0), ("10 s", 10), ("30 s", 30), ("1 min", 60), ("5 min", 300)];

/// Closing times offered for a new poll: label and minutes (`None`: closed by hand).
pub const POLL_CLOSE_CHOICES: [(&str, Option<u64>); 4] =
    [("When I close it", None), ("In 5 min", Some(5)), ("In 15 min", Some(15)), ("In 60 min", Some(60))];

/// Milliseconds since the Unix epoch on this computer's clock.
pub fn now_ms() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Timestamp).unwrap_or(0)
}

/// Something the app must do for the class state (it owns the net handle and the views).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Request(Request),
    Banner {
        text: String,
        error: bool,
    },
    /// Open this conversation.
    Select(Conv),
    Notify(Notice),
    OpenDialog(Dialog),
    CloseDialog,
    /// Put text the server refused back into the composer of `conv`.
    RestoreDraft {
        conv: Conv,
        text: String,
    },
    /// Give the composer the keyboard.
    FocusComposer,
    /// Replace the composer's text of `conv` (an edit ended).
    SetDraft {
        conv: Conv,
        text: String,
    },
    /// The composer edits message `id`, which reads `text`.
    StartEdit {
        conv: Conv,
        id: classchat_wire::MessageId,
        text: String,
    },
    /// An edit, delete or typing notice for the net task (see [`crate::rich`]).
    Rich(crate::rich::RichCommand),
    /// Ask for the next older history page of `conv`.
    LoadOlder(Conv),
}

/// What the user did with the instructor tools.
#[must_use = "an action does nothing until the app applies it"]
#[derive(Debug, Clone, PartialEq)]
pub enum ClassAction {
    /// Goes to the server as is; its reply comes back through [`ClassState::on_reply`].
    Request(Request),
    /// Instructors: the exam-mode dialog.
    OpenExamDialog,
    /// Instructors: the audit log, first page.
    OpenAudit,
    /// The next (older) page of the audit log.
    LoadOlderAudit,
    /// Room staff: the new-poll dialog for `room`.
    OpenNewPoll { room: String },
    /// Instructors: show or hide the office-hours panel.
    ToggleOfficeHours,
    /// Hide the "is ready for you" banner of this instructor.
    DismissCalled(String),
    /// Fold the room tools (polls, questions) to a thin bar, or unfold them.
    ToggleRoomTools,
    /// Show this tab of the room tools.
    RoomToolsTab(Tab),
}

/// The tabs of the room tools panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Polls,
    Questions,
}

/// What the user is trying to do in a room: the server holds each to different rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Post,
    Ask,
    Vote,
}

/// Why the user cannot post in a conversation right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendBlock {
    /// For people: "You are muted in #lab until 10:42".
    pub text: String,
    /// Only slow mode is soft: the composer stays editable and counts down.
    pub soft: bool,
}

/// A question being typed in a Q&A room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AskDraft {
    pub text: String,
    pub anonymous: bool,
    pub busy: bool,
}

/// Questions of one room, by id.
#[derive(Debug, Clone, Default)]
struct RoomQuestions {
    by_id: BTreeMap<QuestionId, Question>,
    /// The full list arrived since the last login (live events keep it current).
    loaded: bool,
}

/// Polls of one room, by id.
#[derive(Debug, Clone, Default)]
struct RoomPolls {
    by_id: BTreeMap<PollId, Poll>,
    loaded: bool,
}

/// Everything the instructor tools told this app.
#[derive(Debug)]
pub struct ClassState {
    pub exam: Option<ExamInfo>,
    /// The user's own mutes in force (and perhaps expired: see [`Self::mute_for`]).
    mutes: Vec<MuteInfo>,
    /// Queues the user waits in, by lowercase instructor name.
    queues: BTreeMap<String, QueuePosition>,
    /// Instructors: their own queue, once listed.
    pub my_queue: Option<Vec<QueueEntry>>,
    /// Instructors: everyone muted on the server, as last listed.
    pub server_mutes: Vec<MuteInfo>,
    /// Instructors who called the user and whose banner is still up, by lowercase name.
    called: BTreeMap<String, String>,
    questions: HashMap<String, RoomQuestions>,
    polls: HashMap<String, RoomPolls>,
    /// Slow mode: when the user may post in a room again (this computer's clock).
    slow_until: HashMap<String, Instant>,
    /// Settings sent but not confirmed yet: what they were before, to restore on refusal.
    settings_before: HashMap<String, RoomSettings>,
    /// What is being typed into each room's "Ask" box.
    pub ask: HashMap<String, AskDraft>,
    pub office_open: bool,
    pub tools_folded: bool,
    pub tab: Tab,
    tz: jiff::tz::TimeZone,
}

impl Default for ClassState {
    fn default() -> Self {
        Self {
            exam: None,
            mutes: Vec::new(),
            queues: BTreeMap::new(),
            my_queue: None,
            server_mutes: Vec::new(),
            called: BTreeMap::new(),
            questions: HashMap::new(),
            polls: HashMap::new(),
            slow_until: HashMap::new(),
            settings_before: HashMap::new(),
            ask: HashMap::new(),
            office_open: false,
            tools_folded: false,
            tab: Tab::default(),
            tz: jiff::tz::TimeZone::system(),
        }
    }
}

/// Whether the reply to `request` is the class state's to handle.
pub fn is_class_request(request: &Request) -> bool {
    matches!(
        request,
        Request::SetRoomSettings { .. }
            | Request::Mute { .. }
            | Request::Unmute { .. }
            | Request::ListMutes { .. }
            | Request::SetExamMode { .. }
            | Request::AuditLog { .. }
            | Request::AskQuestion { .. }
            | Request::Upvote { .. }
            | Request::MarkAnswered { .. }
            | Request::Questions { .. }
            | Request::CreatePoll { .. }
            | Request::Vote { .. }
            | Request::ClosePoll { .. }
            | Request::Polls { .. }
            | Request::JoinQueue { .. }
            | Request::LeaveQueue { .. }
            | Request::OfficeQueue
            | Request::NextInQueue
    )
}

/// A refused message whose text goes back into the composer: the refusal is about who may
/// post where and when, so the same text can go out later.
pub fn keeps_draft(code: Option<ErrorCode>) -> bool {
    matches!(code, Some(ErrorCode::Muted | ErrorCode::SlowMode | ErrorCode::ReadOnly | ErrorCode::ExamMode))
}

/// "in 5 min", "for 1 h": a mute's length in words.
pub fn duration_words(secs: Option<u64>) -> String {
    match secs {
        None => "until lifted".into(),
        Some(s) if s % 86_400 == 0 => plural(s / 86_400, "day"),
        Some(s) if s % 3600 == 0 => format!("{} h", s / 3600),
        Some(s) if s % 60 == 0 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// A slow-mode interval in words: "30 s", "1 min", "2 min 30 s".
pub fn interval_words(secs: u32) -> String {
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// The wait a server's sentence names, in seconds: the length after its last " in "
/// ("… you can post again in 2 h 5 min" → 7500). Units: s, min, h, day(s).
fn wait_secs(text: &str) -> Option<u64> {
    let (_, tail) = text.rsplit_once(" in ")?;
    let mut words = tail.split_whitespace();
    let mut total = None;
    while let Some(word) = words.next() {
        let Ok(n) = word.parse::<u64>() else { break };
        let unit = words.next()?.trim_end_matches(['.', ',', ')']);
        let scale = match unit {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "day" | "days" => 86_400,
            _ => return None,
        };
        total = Some(total.unwrap_or(0) + n * scale);
    }
    total
}

/// A server's message as a sentence: capital first letter, full stop at the end.
fn sentence(text: &str) -> String {
    let text = text.trim();
    let mut chars = text.chars();
    let Some(first) = chars.next() else { return String::new() };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn scope_words(scope: &MuteScope) -> String {
    match scope {
        MuteScope::Room { name } => format!("in #{name}"),
        MuteScope::Server => "on this server".into(),
    }
}

fn error_text(e: &RequestError) -> String {
    e.code.map(|c| refusal_text(c, &e.message)).unwrap_or_else(|| e.message.clone())
}

impl ClassState {
    pub fn new() -> Self {
        Self::default()
    }

    // ---- reading ----------------------------------------------------------------------

    /// "10:42" today, "Tue 10:42" this week, "3 Mar 10:42" later: local time.
    pub fn when(&self, ts: Timestamp, now: Timestamp) -> String {
        let zoned = |t: Timestamp| {
            jiff::Timestamp::from_millisecond(i64::try_from(t).ok()?)
                .ok()
                .map(|t| t.to_zoned(self.tz.clone()))
        };
        let (Some(at), Some(today)) = (zoned(ts), zoned(now)) else { return String::new() };
        if at.date() == today.date() {
            at.strftime("%H:%M").to_string()
        } else if ts > now && ts - now < 6 * 86_400_000 {
            at.strftime("%a %H:%M").to_string()
        } else {
            at.strftime("%-d %b %H:%M").to_string()
        }
    }

    /// "until 10:42" or "until an instructor lifts it".
    pub fn until_words(&self, until: Option<Timestamp>, now: Timestamp) -> String {
        match until {
            Some(t) => format!("until {}", self.when(t, now)),
            None => "until an instructor lifts it".into(),
        }
    }

    /// The user's mute in `scope` if it is still in force at `now`.
    pub fn mute_for(&self, scope: &MuteScope, now: Timestamp) -> Option<&MuteInfo> {
        self.mutes.iter().find(|m| &m.scope == scope && m.until.is_none_or(|u| u > now))
    }

    /// Whether an instructor may use the class tools.
    pub fn is_instructor(model: &Model) -> bool {
        model.me.as_ref().is_some_and(|m| m.server_admin)
    }

    /// Why the user cannot post to `conv` now (`None`: they can), in the order the server
    /// checks (PROTOCOL.md 16.1). `now` is [`now_ms`]; `instant` is `Instant::now()`
    /// (slow-mode timers run on it).
    pub fn send_block(
        &self,
        model: &Model,
        conv: &Conv,
        now: Timestamp,
        instant: Instant,
    ) -> Option<SendBlock> {
        let hard = |text: String| Some(SendBlock { text, soft: false });
        match conv {
            Conv::Room { name } => {
                if let Some(text) = self.room_block(model, name, now, Act::Post) {
                    return hard(text);
                }
                let staff = model.is_room_admin(name);
                let settings = model.rooms.get(name).map(|r| &r.settings);
                if !staff && settings.is_some_and(|s| s.announce_only) {
                    return hard(format!("Only admins post in #{name}."));
                }
                if !staff
                    && settings.is_some_and(|s| s.slow_mode_secs > 0)
                    && let Some(until) = self.slow_until.get(name)
                    && *until > instant
                {
                    let left = (*until - instant).as_secs_f32().ceil() as u64;
                    return Some(SendBlock {
                        text: format!("Slow mode: you can send again in {left} s."),
                        soft: true,
                    });
                }
                None
            }
            Conv::Direct { user } => {
                if Self::is_instructor(model) {
                    return None;
                }
                if let Some(text) = self.server_mute_text(now) {
                    return hard(text);
                }
                let peer_instructor = model.users.get(&lower(user)).is_some_and(|u| u.server_admin);
                if self.exam.is_some() && !peer_instructor {
                    return hard("Exam mode: direct messages go to instructors only.".into());
                }
                None
            }
            Conv::Announcements => {
                if Self::is_instructor(model) {
                    return None;
                }
                self.server_mute_text(now).and_then(hard)
            }
        }
    }

    fn server_mute_text(&self, now: Timestamp) -> Option<String> {
        let m = self.mute_for(&MuteScope::Server, now)?;
        Some(format!("You are muted on this server {}.", self.until_words(m.until, now)))
    }

    /// The rules of a room that asking a question shares with posting: a server mute,
    /// exam mode, a mute in the room (a vote is held by exam mode only).
    fn room_block(&self, model: &Model, room: &str, now: Timestamp, act: Act) -> Option<String> {
        if Self::is_instructor(model) {
            return None;
        }
        if act != Act::Vote
            && let Some(text) = self.server_mute_text(now)
        {
            return Some(text);
        }
        if let Some(exam) = &self.exam
            && exam.questions_room.as_deref() != Some(room)
        {
            return Some(match &exam.questions_room {
                Some(q) => format!("Exam mode: only #{q} is open for questions."),
                None => "Exam mode: rooms are read-only until the exam ends.".into(),
            });
        }
        if act != Act::Vote
            && !model.is_room_admin(room)
            && let Some(m) = self.mute_for(&MuteScope::Room { name: room.to_owned() }, now)
        {
            return Some(format!("You are muted in #{room} {}.", self.until_words(m.until, now)));
        }
        None
    }

    /// Why the user cannot ask a question in `room` now.
    pub fn ask_block(&self, model: &Model, room: &str) -> Option<String> {
        self.room_block(model, room, now_ms(), Act::Ask)
    }

    /// Why the user cannot vote (on a poll) or upvote (a question) in `room` now.
    pub fn vote_block(&self, model: &Model, room: &str) -> Option<String> {
        self.room_block(model, room, now_ms(), Act::Vote)
    }

    /// Why files cannot be sent to `conv` now, if they cannot.
    pub fn files_refused(&self, model: &Model, conv: &Conv) -> Option<String> {
        if self.exam.is_some() && !Self::is_instructor(model) {
            return Some("Files cannot be sent while exam mode is on.".into());
        }
        let block = self.send_block(model, conv, now_ms(), Instant::now())?;
        (!block.soft).then(|| format!("Files cannot be sent: {}", block.text))
    }

    /// When something shown changes by itself: a mute or a slow-mode wait ends, a
    /// countdown ticks, a poll's closing time comes.
    pub fn next_change(&self, now: Timestamp, instant: Instant) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut consider = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
        for m in &self.mutes {
            if let Some(u) = m.until
                && u > now
            {
                consider(Duration::from_millis(u - now));
            }
        }
        if self.slow_until.values().any(|u| *u > instant) {
            consider(Duration::from_secs(1));
        }
        let closing =
            self.polls.values().flat_map(|p| p.by_id.values()).any(|p| !p.closed && p.closes_at.is_some());
        if closing {
            // The "closes in" line counts down.
            consider(Duration::from_secs(1));
        }
        next
    }

    /// A room's questions: unanswered first, then most votes, then oldest.
    pub fn questions(&self, room: &str) -> Vec<&Question> {
        let mut list: Vec<&Question> =
            self.questions.get(room).map(|q| q.by_id.values().collect()).unwrap_or_default();
        list.sort_by(|a, b| {
            a.answered
                .cmp(&b.answered)
                .then(b.votes.cmp(&a.votes))
                .then(a.ts.cmp(&b.ts))
                .then(a.id.cmp(&b.id))
        });
        list
    }

    pub fn questions_loaded(&self, room: &str) -> bool {
        self.questions.get(room).is_some_and(|q| q.loaded)
    }

    /// A room's polls: open ones first, newest first within each.
    pub fn polls(&self, room: &str) -> Vec<&Poll> {
        let mut list: Vec<&Poll> =
            self.polls.get(room).map(|p| p.by_id.values().collect()).unwrap_or_default();
        list.sort_by(|a, b| a.closed.cmp(&b.closed).then(b.id.cmp(&a.id)));
        list
    }

    pub fn polls_loaded(&self, room: &str) -> bool {
        self.polls.get(room).is_some_and(|p| p.loaded)
    }

    pub fn open_poll_count(&self, room: &str) -> usize {
        self.polls.get(room).map(|p| p.by_id.values().filter(|p| !p.closed).count()).unwrap_or(0)
    }

    pub fn unanswered_count(&self, room: &str) -> usize {
        self.questions.get(room).map(|q| q.by_id.values().filter(|q| !q.answered).count()).unwrap_or(0)
    }

    /// The queues the user waits in: instructor and place (1 is next).
    pub fn queues(&self) -> impl Iterator<Item = &QueuePosition> {
        self.queues.values()
    }

    pub fn queue_position(&self, instructor: &str) -> Option<u32> {
        self.queues.get(&lower(instructor)).map(|q| q.position)
    }

    /// Instructors who are ready for the user.
    pub fn called(&self) -> impl Iterator<Item = &str> {
        self.called.values().map(String::as_str)
    }

    /// Whether the room tools (polls, questions) are worth showing for `room`.
    pub fn room_tools_apply(&self, model: &Model, room: &str) -> bool {
        let qa = model.rooms.get(room).is_some_and(|r| r.settings.qa);
        qa || model.is_room_admin(room) || self.polls.get(room).is_some_and(|p| !p.by_id.is_empty())
    }

    /// Whether `user` is muted on the server (what instructors last listed).
    pub fn server_mute_of(&self, user: &str, now: Timestamp) -> Option<&MuteInfo> {
        self.server_mutes
            .iter()
            .find(|m| m.user.eq_ignore_ascii_case(user) && m.until.is_none_or(|u| u > now))
    }

    // ---- what comes in ------------------------------------------------------------------

    /// A login: exam mode, the user's mutes and queues. Everything listed per room is
    /// asked for again when its room is next opened. Returns the requests to make.
    pub fn on_welcome(&mut self, welcome: &Welcome, model: &Model) -> Vec<Effect> {
        let same_user = model.is_me(&welcome.user);
        if !same_user {
            *self = Self { tz: self.tz.clone(), ..Self::default() };
        }
        self.exam = welcome.class.exam.clone();
        self.mutes = welcome.class.mutes.clone();
        self.queues = welcome.class.queues.iter().map(|q| (lower(&q.instructor), q.clone())).collect();
        for q in self.questions.values_mut() {
            q.loaded = false;
        }
        for p in self.polls.values_mut() {
            p.loaded = false;
        }
        let mut fx = Vec::new();
        if welcome.server_admin {
            fx.push(Effect::Request(Request::OfficeQueue));
            fx.push(Effect::Request(Request::ListMutes { scope: MuteScope::Server }));
        } else {
            self.my_queue = None;
            self.office_open = false;
        }
        fx
    }

    /// A conversation was opened: load what its room tools show, unless live events keep
    /// it current already.
    pub fn on_select(&self, model: &Model, conv: &Conv) -> Vec<Effect> {
        let Conv::Room { name } = conv else { return Vec::new() };
        if !model.rooms.contains_key(name) {
            return Vec::new();
        }
        let mut fx = Vec::new();
        if !self.polls_loaded(name) {
            fx.push(Effect::Request(Request::Polls { room: name.clone() }));
        }
        if model.rooms.get(name).is_some_and(|r| r.settings.qa) && !self.questions_loaded(name) {
            fx.push(Effect::Request(Request::Questions { room: name.clone() }));
        }
        fx
    }

    /// The user sent a message to `conv`: in a slow-mode room a student waits now.
    pub fn on_send(&mut self, model: &Model, conv: &Conv, instant: Instant) {
        let Conv::Room { name } = conv else { return };
        let secs = model.rooms.get(name).map_or(0, |r| r.settings.slow_mode_secs);
        if secs > 0 && !model.is_room_admin(name) {
            self.slow_until.insert(name.clone(), instant + Duration::from_secs(u64::from(secs)));
        }
    }

    /// The server refused a message for a class reason (see [`keeps_draft`]): its text goes
    /// back into the composer, the reason is shown, and a slow-mode wait starts over.
    pub fn on_send_refused(
        &mut self,
        model: &Model,
        conv: Conv,
        code: Option<ErrorCode>,
        reason: String,
        text: String,
        instant: Instant,
    ) -> Vec<Effect> {
        if let (Some(ErrorCode::SlowMode), Conv::Room { name }) = (code, &conv) {
            let interval = model.rooms.get(name).map_or(0, |r| u64::from(r.settings.slow_mode_secs));
            // The server says how long; without a length, the whole interval.
            let secs = wait_secs(&reason).filter(|s| *s > 0).unwrap_or(interval.max(1));
            self.slow_until.insert(name.clone(), instant + Duration::from_secs(secs));
        }
        vec![
            Effect::RestoreDraft { conv, text },
            Effect::Banner {
                text: format!("Not sent: {} Your text is back in the composer.", sentence(&reason)),
                error: true,
            },
        ]
    }

    /// A server event of the instructor tools (others are ignored).
    pub fn on_event(&mut self, model: &mut Model, event: Event) -> Vec<Effect> {
        let now = now_ms();
        let mut fx = Vec::new();
        match event {
            Event::RoomSettings { room, settings } => {
                let qa_now = settings.qa && !model.rooms.get(&room).is_some_and(|r| r.settings.qa);
                set_room_settings(model, &room, settings);
                self.settings_before.remove(&room);
                if qa_now && model.current == Some(Conv::room(room.as_str())) {
                    fx.push(Effect::Request(Request::Questions { room }));
                }
            }
            Event::MuteChanged { scope, muted, until, by } => {
                let me = model.my_name().unwrap_or_default().to_owned();
                self.mutes.retain(|m| m.scope != scope);
                let text = if muted {
                    let text =
                        format!("{by} muted you {} {}.", scope_words(&scope), self.until_words(until, now));
                    self.mutes.push(MuteInfo { scope, user: me, until, by });
                    text
                } else {
                    format!("You can post {} again.", scope_words(&scope))
                };
                fx.push(Effect::Banner { text, error: muted });
            }
            Event::ExamMode { exam } => {
                let text = match (&exam, &self.exam) {
                    (Some(_), None) => Some("Exam mode is on.".to_owned()),
                    (None, Some(_)) => Some("Exam mode has ended.".to_owned()),
                    _ => None,
                };
                self.exam = exam;
                if let Some(text) = text {
                    fx.push(Effect::Banner { text, error: false });
                }
            }
            Event::Question { question } => self.put_question(question),
            Event::Poll { poll } => self.put_poll(poll),
            Event::QueueChanged { students } => self.my_queue = Some(students),
            Event::QueueMoved { instructor, position } => match position {
                Some(position) => {
                    self.queues.insert(lower(&instructor), QueuePosition { instructor, position });
                }
                None => {
                    self.queues.remove(&lower(&instructor));
                }
            },
            Event::Called { instructor } => {
                self.queues.remove(&lower(&instructor));
                self.called.insert(lower(&instructor), instructor.clone());
                let conv = Conv::direct(instructor.as_str());
                fx.push(Effect::Select(conv.clone()));
                fx.push(Effect::Notify(Notice {
                    conv,
                    from: instructor.clone(),
                    text: format!("{instructor} is ready for you: your office-hours turn has come."),
                    reason: NoticeReason::Called,
                }));
            }
            _ => {}
        }
        fx
    }

    /// The reply to a request of [`is_class_request`]. `dialog` is the open dialog, which
    /// some replies fill in or close.
    pub fn on_reply(
        &mut self,
        model: &mut Model,
        dialog: &mut Option<Dialog>,
        request: Request,
        result: Result<Response, RequestError>,
    ) -> Vec<Effect> {
        let now = now_ms();
        let mut fx = Vec::new();
        let banner = |text: String, error: bool| Effect::Banner { text, error };
        match (request, result) {
            (Request::SetRoomSettings { room, .. }, Ok(Response::Room { room: info })) => {
                self.settings_before.remove(&room);
                set_room_settings(model, &room, info.settings.clone());
                model.rooms.insert(room, info);
                if let Some(Dialog::RoomSettings(form)) = dialog {
                    form.error = None;
                    form.info = Some("Saved.".into());
                }
            }
            (Request::SetRoomSettings { room, .. }, Err(e)) => {
                if let Some(before) = self.settings_before.remove(&room) {
                    set_room_settings(model, &room, before);
                }
                let text = error_text(&e);
                match dialog {
                    Some(Dialog::RoomSettings(form)) => form.error = Some(text),
                    _ => fx.push(banner(format!("#{room} settings were not changed: {text}"), true)),
                }
            }
            (Request::Mute { scope, user, secs }, Ok(_)) => {
                fx.push(banner(
                    format!("{user} is muted {} {}.", scope_words(&scope), duration_phrase(secs)),
                    false,
                ));
                fx.extend(refresh_mutes(&scope));
            }
            (Request::Unmute { scope, user }, Ok(_)) => {
                fx.push(banner(format!("{user} may post {} again.", scope_words(&scope)), false));
                fx.extend(refresh_mutes(&scope));
            }
            (Request::Mute { user, .. }, Err(e)) => {
                fx.push(banner(format!("Could not mute {user}: {}", error_text(&e)), true))
            }
            (Request::Unmute { user, .. }, Err(e)) => {
                fx.push(banner(format!("Could not unmute {user}: {}", error_text(&e)), true))
            }
            (Request::ListMutes { scope: MuteScope::Server }, Ok(Response::Mutes { mutes })) => {
                self.server_mutes = mutes;
            }
            (Request::SetExamMode { on, .. }, Ok(_)) => {
                if !on {
                    self.exam = None;
                }
                if matches!(dialog, Some(Dialog::Exam(_))) {
                    fx.push(Effect::CloseDialog);
                }
            }
            (Request::SetExamMode { .. }, Err(e)) => match dialog {
                Some(Dialog::Exam(form)) => {
                    form.busy = false;
                    form.error = Some(error_text(&e));
                }
                _ => fx.push(banner(format!("Exam mode: {}", error_text(&e)), true)),
            },
            (Request::AuditLog { .. }, Ok(Response::Audit { entries, more })) => {
                if let Some(Dialog::Audit(view)) = dialog {
                    view.add_page(entries, more);
                }
            }
            (Request::AuditLog { .. }, Err(e)) => {
                if let Some(Dialog::Audit(view)) = dialog {
                    view.loading = false;
                    view.error = Some(error_text(&e));
                }
            }
            (Request::AskQuestion { room, .. }, Ok(Response::Question { question })) => {
                self.ask.remove(&room);
                self.put_question(question);
            }
            (Request::AskQuestion { room, .. }, Err(e)) => {
                if let Some(draft) = self.ask.get_mut(&room) {
                    draft.busy = false;
                }
                fx.push(banner(
                    format!("Your question was not sent: {} It is still in the box.", error_text(&e)),
                    true,
                ));
            }
            (Request::Upvote { .. } | Request::MarkAnswered { .. }, Ok(Response::Question { question })) => {
                self.put_question(question)
            }
            (Request::Questions { room, .. }, Ok(Response::Questions { questions, .. })) => {
                let q = self.questions.entry(room).or_default();
                q.by_id = questions.into_iter().map(|q| (q.id, q)).collect();
                q.loaded = true;
            }
            (
                Request::CreatePoll { .. } | Request::Vote { .. } | Request::ClosePoll { .. },
                Ok(Response::Poll { poll }),
            ) => {
                if matches!(dialog, Some(Dialog::NewPoll(_))) {
                    fx.push(Effect::CloseDialog);
                }
                self.put_poll(poll);
            }
            (Request::CreatePoll { .. }, Err(e)) => match dialog {
                Some(Dialog::NewPoll(form)) => {
                    form.busy = false;
                    form.error = Some(error_text(&e));
                }
                _ => fx.push(banner(format!("The poll was not created: {}", error_text(&e)), true)),
            },
            (Request::Polls { room }, Ok(Response::Polls { polls, .. })) => {
                let p = self.polls.entry(room).or_default();
                p.by_id = polls.into_iter().map(|p| (p.id, p)).collect();
                p.loaded = true;
            }
            (Request::JoinQueue { .. }, Ok(Response::Queued { position })) => {
                let text = format!("You are #{} in {}'s queue.", position.position, position.instructor);
                self.queues.insert(lower(&position.instructor), position);
                fx.push(banner(text, false));
            }
            (Request::LeaveQueue { instructor }, Ok(_)) => {
                self.queues.remove(&lower(&instructor));
                fx.push(banner(format!("You left {instructor}'s queue."), false));
            }
            (Request::OfficeQueue, Ok(Response::Queue { students })) => self.my_queue = Some(students),
            (Request::NextInQueue, Ok(Response::Next { student })) => match student {
                Some(student) => {
                    if let Some(queue) = &mut self.my_queue {
                        queue.retain(|e| !e.student.eq_ignore_ascii_case(&student));
                    }
                    fx.push(Effect::Select(Conv::direct(student.as_str())));
                    fx.push(banner(
                        format!("{student} is told you are ready; your conversation is open."),
                        false,
                    ));
                }
                None => fx.push(banner("Nobody is waiting in your queue.".into(), false)),
            },
            // Background loads: the next opening of the room asks again.
            (
                Request::Questions { .. }
                | Request::Polls { .. }
                | Request::OfficeQueue
                | Request::ListMutes { .. },
                Err(e),
            ) => {
                tracing::debug!("class list request failed: {e}");
            }
            (Request::Upvote { .. }, Err(e)) if e.code == Some(ErrorCode::AlreadyDone) => {}
            (request, Err(e)) => {
                tracing::debug!(?request, "class request failed: {e}");
                fx.push(banner(error_text(&e), true));
            }
            (_, Ok(_)) => {}
        }
        let _ = now;
        fx
    }

    // ---- what the user does ----------------------------------------------------------------

    /// What the user did. `dialog` is the open dialog (the audit log pages in it).
    pub fn apply(
        &mut self,
        model: &mut Model,
        dialog: &mut Option<Dialog>,
        action: ClassAction,
    ) -> Vec<Effect> {
        match action {
            ClassAction::Request(request) => {
                match &request {
                    // Shown at once; put back if the server refuses.
                    Request::SetRoomSettings { room, settings } => {
                        if let Some(info) = model.rooms.get(room) {
                            self.settings_before.entry(room.clone()).or_insert_with(|| info.settings.clone());
                        }
                        set_room_settings(model, room, settings.clone());
                    }
                    Request::AskQuestion { room, .. } => {
                        if let Some(draft) = self.ask.get_mut(room) {
                            draft.busy = true;
                        }
                    }
                    _ => {}
                }
                vec![Effect::Request(request)]
            }
            ClassAction::OpenExamDialog => {
                let mut form = crate::ui::moderation::ExamForm::default();
                if let Some(exam) = &self.exam {
                    form.questions_room = exam.questions_room.clone();
                }
                vec![Effect::Request(Request::ListRooms), Effect::OpenDialog(Dialog::Exam(form))]
            }
            ClassAction::OpenAudit => vec![
                Effect::OpenDialog(Dialog::Audit(crate::ui::moderation::AuditView::loading())),
                Effect::Request(Request::AuditLog { before: None, limit: AUDIT_PAGE }),
            ],
            ClassAction::LoadOlderAudit => Self::older_audit(dialog),
            ClassAction::OpenNewPoll { room } => {
                vec![Effect::OpenDialog(Dialog::NewPoll(crate::ui::polls::PollForm::new(&room)))]
            }
            ClassAction::ToggleOfficeHours => {
                self.office_open = !self.office_open;
                if self.office_open { vec![Effect::Request(Request::OfficeQueue)] } else { Vec::new() }
            }
            ClassAction::DismissCalled(instructor) => {
                self.called.remove(&lower(&instructor));
                Vec::new()
            }
            ClassAction::ToggleRoomTools => {
                self.tools_folded = !self.tools_folded;
                Vec::new()
            }
            ClassAction::RoomToolsTab(tab) => {
                self.tab = tab;
                self.tools_folded = false;
                Vec::new()
            }
        }
    }

    /// The next audit page, for the open audit dialog.
    fn older_audit(dialog: &mut Option<Dialog>) -> Vec<Effect> {
        let Some(Dialog::Audit(view)) = dialog else { return Vec::new() };
        if view.loading || !view.more {
            return Vec::new();
        }
        view.loading = true;
        let before = view.entries.last().map(|e: &AuditEntry| e.id);
        vec![Effect::Request(Request::AuditLog { before, limit: AUDIT_PAGE })]
    }

    fn put_question(&mut self, question: Question) {
        self.questions.entry(question.room.clone()).or_default().by_id.insert(question.id, question);
    }

    fn put_poll(&mut self, poll: Poll) {
        self.polls.entry(poll.room.clone()).or_default().by_id.insert(poll.id, poll);
    }
}

/// "for 5 min", "until lifted".
fn duration_phrase(secs: Option<u64>) -> String {
    match secs {
        None => "until lifted".into(),
        s => format!("for {}", duration_words(s)),
    }
}

/// After a mute changed: the lists that show it.
fn refresh_mutes(scope: &MuteScope) -> Vec<Effect> {
    match scope {
        MuteScope::Room { name } => vec![Effect::Request(Request::RoomMembers { name: name.clone() })],
        MuteScope::Server => vec![Effect::Request(Request::ListMutes { scope: MuteScope::Server })],
    }
}

fn set_room_settings(model: &mut Model, room: &str, settings: RoomSettings) {
    if let Some(r) = model.rooms.get_mut(room) {
        r.settings = settings.clone();
    }
    if let Some(r) = model.directory.iter_mut().find(|r| r.name == room) {
        r.settings = settings;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use classchat_wire::{ClassStatus, Limits, RoomInfo, UserInfo};

    const NOW: Timestamp = 1_800_000_000_000;

    fn room(name: &str, admin: &str, settings: RoomSettings) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            topic: String::new(),
            members: 2,
            locked: false,
            admin: admin.into(),
            joined: true,
            settings,
        }
    }

    fn welcome(user: &str, admin: bool, rooms: Vec<RoomInfo>, class: ClassStatus) -> Welcome {
        Welcome {
            user: user.into(),
            server_name: "Lab".into(),
            resume_token: vec![1; 32],
            server_admin: admin,
            can_broadcast: admin,
            rooms,
            dm_peers: Vec::new(),
            limits: Limits {
                max_message_len: 16384,
                max_frame_len: 1 << 20,
                messages_per_second: 20,
                heartbeat_timeout_ms: 30000,
                max_file_size: 0,
            },
            class,
            room_records: false,
        }
    }

    /// alice, a student, in #lab (admin carol), #news (announce-only), #help and #slow.
    fn student(class: ClassStatus) -> (Model, ClassState) {
        let rooms = vec![
            room("lab", "carol", RoomSettings::default()),
            room("news", "carol", RoomSettings { announce_only: true, ..Default::default() }),
            room("help", "carol", RoomSettings { qa: true, ..Default::default() }),
            room("slow", "carol", RoomSettings { slow_mode_secs: 30, ..Default::default() }),
        ];
        let w = welcome("alice", false, rooms, class);
        let mut model = Model::new();
        model.on_welcome(&w);
        model.on_users(vec![
            UserInfo { name: "alice".into(), online: true, server_admin: false },
            UserInfo { name: "bob".into(), online: true, server_admin: false },
            UserInfo { name: "prof".into(), online: true, server_admin: true },
        ]);
        let mut class = ClassState::new();
        let fx = class.on_welcome(&w, &model);
        assert!(fx.is_empty(), "a student loads nothing at login: {fx:?}");
        (model, class)
    }

    fn mute(scope: MuteScope, until: Option<Timestamp>) -> MuteInfo {
        MuteInfo { scope, user: "alice".into(), until, by: "prof".into() }
    }

    fn block(class: &ClassState, model: &Model, conv: &Conv, now: Timestamp) -> Option<String> {
        class.send_block(model, conv, now, Instant::now()).map(|b| b.text)
    }

    #[test]
    fn a_room_mute_blocks_that_room_until_it_ends() {
        let until = NOW + 600_000;
        let lab = MuteScope::Room { name: "lab".into() };
        let (model, class) =
            student(ClassStatus { mutes: vec![mute(lab, Some(until))], ..Default::default() });
        let text = block(&class, &model, &Conv::room("lab"), NOW).expect("blocked");
        assert_eq!(text, format!("You are muted in #lab until {}.", class.when(until, NOW)));
        assert!(block(&class, &model, &Conv::room("help"), NOW).is_none(), "other rooms are open");
        // No event comes when it ends: the clock alone lifts it.
        assert!(block(&class, &model, &Conv::room("lab"), until).is_none());
        assert_eq!(class.next_change(NOW, Instant::now()), Some(Duration::from_millis(600_000)));
    }

    #[test]
    fn a_server_mute_until_lifted_blocks_everything_and_the_event_lifts_it() {
        let (mut model, mut class) =
            student(ClassStatus { mutes: vec![mute(MuteScope::Server, None)], ..Default::default() });
        for conv in [Conv::room("lab"), Conv::direct("prof")] {
            assert_eq!(
                block(&class, &model, &conv, NOW).as_deref(),
                Some("You are muted on this server until an instructor lifts it.")
            );
        }
        assert!(class.files_refused(&model, &Conv::room("lab")).is_some());
        let fx = class.on_event(
            &mut model,
            Event::MuteChanged { scope: MuteScope::Server, muted: false, until: None, by: "prof".into() },
        );
        assert!(matches!(&fx[..], [Effect::Banner { error: false, .. }]));
        assert!(block(&class, &model, &Conv::room("lab"), NOW).is_none());
    }

    #[test]
    fn a_muted_student_may_still_vote_but_not_ask() {
        let lab = MuteScope::Room { name: "help".into() };
        let (model, class) = student(ClassStatus { mutes: vec![mute(lab, None)], ..Default::default() });
        assert_eq!(
            class.ask_block(&model, "help").as_deref(),
            Some("You are muted in #help until an instructor lifts it.")
        );
        assert!(class.vote_block(&model, "help").is_none());
    }

    #[test]
    fn mute_events_add_and_replace_mutes() {
        let (mut model, mut class) = student(ClassStatus::default());
        let lab = MuteScope::Room { name: "lab".into() };
        class.on_event(
            &mut model,
            Event::MuteChanged {
                scope: lab.clone(),
                muted: true,
                until: Some(now_ms() + 60_000),
                by: "carol".into(),
            },
        );
        assert!(block(&class, &model, &Conv::room("lab"), now_ms()).is_some());
        class.on_event(
            &mut model,
            Event::MuteChanged { scope: lab.clone(), muted: true, until: None, by: "carol".into() },
        );
        assert_eq!(class.mutes.len(), 1, "muting again replaces the mute");
        assert_eq!(class.mute_for(&lab, u64::MAX).map(|m| m.until), Some(None));
    }

    #[test]
    fn announce_only_blocks_students_but_not_staff() {
        let (mut model, class) = student(ClassStatus::default());
        assert_eq!(
            block(&class, &model, &Conv::room("news"), NOW).as_deref(),
            Some("Only admins post in #news.")
        );
        // The room's admin posts.
        model.rooms.get_mut("news").expect("news").admin = "alice".into();
        assert!(block(&class, &model, &Conv::room("news"), NOW).is_none());
    }

    #[test]
    fn slow_mode_counts_down_after_a_send_for_students_only() {
        let (mut model, mut class) = student(ClassStatus::default());
        let slow = Conv::room("slow");
        let t0 = Instant::now();
        assert!(class.send_block(&model, &slow, NOW, t0).is_none());
        class.on_send(&model, &slow, t0);
        let b = class.send_block(&model, &slow, NOW, t0 + Duration::from_millis(18_500)).expect("waiting");
        assert!(b.soft);
        assert_eq!(b.text, "Slow mode: you can send again in 12 s.");
        assert!(class.send_block(&model, &slow, NOW, t0 + Duration::from_secs(30)).is_none());
        // Sending elsewhere starts nothing; the room admin is exempt.
        class.on_send(&model, &Conv::room("lab"), t0);
        assert!(class.send_block(&model, &Conv::room("lab"), NOW, t0).is_none());
        model.rooms.get_mut("slow").expect("slow").admin = "alice".into();
        class.slow_until.clear();
        class.on_send(&model, &slow, t0);
        assert!(class.send_block(&model, &slow, NOW, t0).is_none());
    }

    #[test]
    fn a_slow_mode_refusal_restores_the_text_and_waits_what_the_server_says() {
        let (model, mut class) = student(ClassStatus::default());
        let t0 = Instant::now();
        let fx = class.on_send_refused(
            &model,
            Conv::room("slow"),
            Some(ErrorCode::SlowMode),
            "slow mode is on in #slow: you can post again in 7 s".into(),
            "my answer".into(),
            t0,
        );
        assert_eq!(fx[0], Effect::RestoreDraft { conv: Conv::room("slow"), text: "my answer".into() });
        let b = class.send_block(&model, &Conv::room("slow"), NOW, t0).expect("waiting");
        assert_eq!(b.text, "Slow mode: you can send again in 7 s.");
        assert!(
            keeps_draft(Some(ErrorCode::Muted))
                && !keeps_draft(Some(ErrorCode::TooLong))
                && !keeps_draft(None)
        );
    }

    #[test]
    fn exam_mode_leaves_students_the_questions_room_and_dms_to_instructors() {
        let exam = ExamInfo { questions_room: Some("help".into()), since: NOW, by: "prof".into() };
        let (model, class) = student(ClassStatus { exam: Some(exam), ..Default::default() });
        assert_eq!(
            block(&class, &model, &Conv::room("lab"), NOW).as_deref(),
            Some("Exam mode: only #help is open for questions.")
        );
        assert!(block(&class, &model, &Conv::room("help"), NOW).is_none());
        assert!(class.vote_block(&model, "lab").is_some() && class.vote_block(&model, "help").is_none());
        assert!(block(&class, &model, &Conv::direct("prof"), NOW).is_none());
        assert_eq!(
            block(&class, &model, &Conv::direct("bob"), NOW).as_deref(),
            Some("Exam mode: direct messages go to instructors only.")
        );
        assert_eq!(
            class.files_refused(&model, &Conv::room("help")).as_deref(),
            Some("Files cannot be sent while exam mode is on.")
        );
    }

    #[test]
    fn instructors_are_not_held_by_exam_mode_and_load_their_queue_at_login() {
        let exam = ExamInfo { questions_room: None, since: NOW, by: "prof".into() };
        let w = welcome(
            "prof",
            true,
            vec![room("lab", "carol", RoomSettings { announce_only: true, slow_mode_secs: 60, qa: false })],
            ClassStatus { exam: Some(exam), ..Default::default() },
        );
        let mut model = Model::new();
        model.on_welcome(&w);
        let mut class = ClassState::new();
        let fx = class.on_welcome(&w, &model);
        assert!(fx.contains(&Effect::Request(Request::OfficeQueue)));
        assert!(block(&class, &model, &Conv::room("lab"), NOW).is_none());
        assert!(block(&class, &model, &Conv::direct("bob"), NOW).is_none());
        assert!(class.files_refused(&model, &Conv::room("lab")).is_none());
    }

    fn question(id: QuestionId, votes: u32, answered: bool, ts: Timestamp) -> Question {
        Question {
            id,
            room: "help".into(),
            text: format!("q{id}"),
            author: None,
            anonymous: true,
            mine: false,
            votes,
            voted: false,
            answered,
            answer: None,
            ts,
        }
    }

    #[test]
    fn questions_sort_unanswered_then_votes_then_oldest_and_live_events_move_them() {
        let (mut model, mut class) = student(ClassStatus::default());
        let mut dialog = None;
        let list = vec![
            question(1, 5, true, 10),
            question(2, 1, false, 20),
            question(3, 1, false, 15),
            question(4, 3, false, 30),
        ];
        class.on_reply(
            &mut model,
            &mut dialog,
            Request::Questions { room: "help".into() },
            Ok(Response::Questions { room: "help".into(), questions: list }),
        );
        let ids = |c: &ClassState| c.questions("help").iter().map(|q| q.id).collect::<Vec<_>>();
        assert_eq!(ids(&class), [4, 3, 2, 1]);
        assert!(class.questions_loaded("help"));
        class.on_event(&mut model, Event::Question { question: question(2, 4, false, 20) });
        assert_eq!(ids(&class), [2, 4, 3, 1]);
        class.on_event(&mut model, Event::Question { question: question(5, 0, false, 40) });
        assert_eq!(ids(&class), [2, 4, 3, 5, 1]);
        assert_eq!(class.unanswered_count("help"), 4);
    }

    fn poll(id: PollId, closed: bool, counts: Vec<u32>) -> Poll {
        Poll {
            id,
            room: "lab".into(),
            question: "Which?".into(),
            options: vec!["a".into(), "b".into()],
            multiple: false,
            anonymous: false,
            by: "carol".into(),
            ts: NOW,
            closes_at: None,
            closed,
            voters: counts.iter().sum(),
            counts,
            mine: Vec::new(),
            names: vec![Vec::new(), Vec::new()],
        }
    }

    #[test]
    fn polls_list_open_first_then_newest_and_update_live() {
        let (mut model, mut class) = student(ClassStatus::default());
        let mut dialog = None;
        class.on_reply(
            &mut model,
            &mut dialog,
            Request::Polls { room: "lab".into() },
            Ok(Response::Polls {
                room: "lab".into(),
                polls: vec![poll(3, true, vec![1, 0]), poll(1, false, vec![0, 0])],
            }),
        );
        class.on_event(&mut model, Event::Poll { poll: poll(2, false, vec![0, 0]) });
        let ids: Vec<PollId> = class.polls("lab").iter().map(|p| p.id).collect();
        assert_eq!(ids, [2, 1, 3]);
        class.on_event(&mut model, Event::Poll { poll: poll(1, false, vec![2, 1]) });
        let p1 = class.polls("lab").into_iter().find(|p| p.id == 1).expect("poll 1");
        assert_eq!((p1.counts.clone(), p1.voters), (vec![2, 1], 3));
        assert_eq!(class.open_poll_count("lab"), 2);
        assert!(class.room_tools_apply(&model, "lab"));
    }

    #[test]
    fn opening_a_room_loads_its_polls_and_questions_once() {
        let (mut model, mut class) = student(ClassStatus::default());
        let fx = class.on_select(&model, &Conv::room("help"));
        assert_eq!(
            fx,
            [
                Effect::Request(Request::Polls { room: "help".into() }),
                Effect::Request(Request::Questions { room: "help".into() })
            ]
        );
        // Not a Q&A room: polls only.
        assert_eq!(
            class.on_select(&model, &Conv::room("lab")),
            [Effect::Request(Request::Polls { room: "lab".into() })]
        );
        let mut dialog = None;
        class.on_reply(
            &mut model,
            &mut dialog,
            Request::Polls { room: "lab".into() },
            Ok(Response::Polls { room: "lab".into(), polls: Vec::new() }),
        );
        assert!(class.on_select(&model, &Conv::room("lab")).is_empty());
    }

    #[test]
    fn queue_positions_move_and_a_call_opens_the_dm_and_notifies() {
        let (mut model, mut class) = student(ClassStatus {
            queues: vec![QueuePosition { instructor: "prof".into(), position: 3 }],
            ..Default::default()
        });
        assert_eq!(class.queue_position("prof"), Some(3));
        class.on_event(&mut model, Event::QueueMoved { instructor: "prof".into(), position: Some(1) });
        assert_eq!(class.queue_position("Prof"), Some(1));
        let fx = class.on_event(&mut model, Event::Called { instructor: "prof".into() });
        assert_eq!(fx[0], Effect::Select(Conv::direct("prof")));
        assert!(matches!(&fx[1], Effect::Notify(n) if n.reason == NoticeReason::Called));
        assert_eq!(class.queue_position("prof"), None);
        assert_eq!(class.called().collect::<Vec<_>>(), ["prof"]);
        let _ = class.apply(&mut model, &mut None, ClassAction::DismissCalled("prof".into()));
        assert_eq!(class.called().count(), 0);
    }

    #[test]
    fn next_in_queue_opens_the_students_dm() {
        let (mut model, mut class) = student(ClassStatus::default());
        let mut dialog = None;
        let fx = class.on_reply(
            &mut model,
            &mut dialog,
            Request::NextInQueue,
            Ok(Response::Next { student: Some("bob".into()) }),
        );
        assert_eq!(fx[0], Effect::Select(Conv::direct("bob")));
        let fx = class.on_reply(
            &mut model,
            &mut dialog,
            Request::NextInQueue,
            Ok(Response::Next { student: None }),
        );
        assert!(matches!(&fx[..], [Effect::Banner { .. }]));
    }

    #[test]
    fn room_settings_show_at_once_and_are_put_back_when_refused() {
        let (mut model, mut class) = student(ClassStatus::default());
        let on = RoomSettings { announce_only: true, ..Default::default() };
        let _ = class.apply(
            &mut model,
            &mut None,
            ClassAction::Request(Request::SetRoomSettings { room: "lab".into(), settings: on.clone() }),
        );
        assert_eq!(model.rooms["lab"].settings, on);
        let mut dialog = None;
        let fx = class.on_reply(
            &mut model,
            &mut dialog,
            Request::SetRoomSettings { room: "lab".into(), settings: on },
            Err(RequestError { code: Some(ErrorCode::NotRoomAdmin), message: String::new() }),
        );
        assert_eq!(model.rooms["lab"].settings, RoomSettings::default());
        assert!(matches!(&fx[..], [Effect::Banner { error: true, .. }]));
        // Everybody's view follows the event.
        let qa = RoomSettings { qa: true, ..Default::default() };
        class.on_event(&mut model, Event::RoomSettings { room: "lab".into(), settings: qa.clone() });
        assert_eq!(model.rooms["lab"].settings, qa);
    }

    #[test]
    fn words_for_durations_and_numbers() {
        assert_eq!(duration_words(Some(300)), "5 min");
        assert_eq!(duration_words(Some(3600)), "1 h");
        assert_eq!(duration_words(Some(86_400)), "1 day");
        assert_eq!(duration_words(None), "until lifted");
        assert_eq!(interval_words(90), "1 min 30 s");
        assert_eq!(wait_secs("slow mode is on in #lab: you can post again in 12 s"), Some(12));
        assert_eq!(wait_secs("… again in 2 h 5 min"), Some(7500));
        assert_eq!(wait_secs("you can post again in 1 min"), Some(60));
        assert_eq!(wait_secs("no length here"), None);
        assert_eq!(
            sentence("you are muted in #lab for another 4 min"),
            "You are muted in #lab for another 4 min."
        );
    }
}
