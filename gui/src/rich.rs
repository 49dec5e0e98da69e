//! Replies, edits, deletes, reactions, typing and message search: the app's side of
//! PROTOCOL.md section 18.
//!
//! [`RichState`] is what the views need between frames (which message the composer
//! answers or edits, the emoji picker, the search panel, a message to scroll to);
//! [`RichAction`]s are what they ask for, applied by [`RichState::apply`] into
//! [`Effect`]s the app runs. Direct-message edits and deletes are sealed in the net task
//! ([`run`]), since only it holds the end-to-end keys.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use classchat_wire::e2e::{DmDelete, DmEdit};
use classchat_wire::{
    Body, Client, Conv, ErrorCode, MAX_SEARCH_PAGE, MessageId, Request, Response, SearchHit,
    TYPING_INTERVAL_MS,
};

use crate::class::Effect;
use crate::e2e::E2e;
use crate::model::{Content, Model};
use crate::ui::dialogs::Dialog;

/// Results asked for per search page.
pub const SEARCH_PAGE: u32 = 20;
const _: () = assert!(SEARCH_PAGE <= MAX_SEARCH_PAGE);
/// History pages loaded, at most, to reach a message the user wants to see.
pub const MAX_JUMP_PAGES: u32 = 50;

/// What the user did with a message, the composer's reply and edit modes, or search.
#[must_use = "an action does nothing until the app applies it"]
#[derive(Debug, Clone, PartialEq)]
pub enum RichAction {
    /// Answer message `id`: the composer shows a quote of it until sent or cancelled.
    Reply {
        conv: Conv,
        id: MessageId,
    },
    CancelReply(Conv),
    /// Edit your own message `id` in the composer.
    StartEdit {
        conv: Conv,
        id: MessageId,
    },
    CancelEdit,
    /// Ask before deleting message `id`.
    AskDelete {
        conv: Conv,
        id: MessageId,
    },
    Delete {
        conv: Conv,
        id: MessageId,
    },
    /// Add (`on`) or take back a reaction.
    React {
        conv: Conv,
        id: MessageId,
        emoji: String,
        on: bool,
    },
    /// Open the emoji picker for reacting to message `id` (`None` closes it).
    Picker(Option<(Conv, MessageId)>),
    /// The composer's text changed in `conv`: tell the others, at most every 3 s.
    Typing(Conv),
    /// Show message `id` of `conv`, loading older history until it is there.
    JumpTo {
        conv: Conv,
        id: MessageId,
    },
    /// The chat view brought the jump's message into view.
    Jumped,
    /// Open the search panel: in `conv` only (Ctrl+F), or everywhere (`None`).
    OpenSearch(Option<Conv>),
    CloseSearch,
    /// Search for `query` in `scope` at once (the sidebar's box, the panel's scope).
    SearchFor {
        scope: Option<Conv>,
        query: String,
    },
    /// Run the search in the panel (Enter), or fetch its next page.
    Search {
        more: bool,
    },
}

/// What the net task does for [`RichAction`]s that need the keys of direct messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RichCommand {
    Edit { conv: Conv, id: MessageId, text: String },
    Delete { conv: Conv, id: MessageId },
    Typing(Conv),
}

impl RichCommand {
    /// The request this command becomes, with an empty body (to report a failure).
    pub fn request_kind(&self) -> Option<Request> {
        match self {
            RichCommand::Edit { id, .. } => {
                Some(Request::Edit { id: *id, body: Body::Text { text: String::new() } })
            }
            RichCommand::Delete { id, .. } => Some(Request::Delete { id: *id, proof: None }),
            RichCommand::Typing(_) => None,
        }
    }
}

/// The composer is editing this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editing {
    pub conv: Conv,
    pub id: MessageId,
    /// What the composer held before, put back when the edit ends.
    pub saved_draft: String,
}

/// One search result, from the server (rooms) or from this computer (direct messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub conv: Conv,
    pub id: MessageId,
    pub from: String,
    pub ts: classchat_wire::Timestamp,
    pub text: String,
    /// Byte ranges of `text` that matched.
    pub highlights: Vec<(u32, u32)>,
}

/// The search panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchState {
    pub open: bool,
    /// `None`: every room, the announcements and the direct messages.
    pub scope: Option<Conv>,
    pub query: String,
    /// The query the results are for.
    pub ran: Option<String>,
    pub hits: Vec<Hit>,
    pub more: bool,
    pub busy: bool,
    pub error: Option<String>,
    /// Focus the query field on the next frame.
    pub focus: bool,
    /// Direct messages searched on this computer for this query.
    pub local_searched: usize,
    /// The sidebar's search box.
    pub global_query: String,
}

/// A message the chat view should bring into view, and how many history pages were
/// loaded looking for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub conv: Conv,
    pub id: MessageId,
    pub pages: u32,
    /// Set once the message is loaded: the chat view scrolls to it and clears the jump.
    pub found: bool,
}

#[derive(Debug, Default)]
pub struct RichState {
    /// The message each conversation's composer answers.
    pub reply: HashMap<Conv, MessageId>,
    pub editing: Option<Editing>,
    /// Reacting to this message with the emoji picker.
    pub picker: Option<(Conv, MessageId)>,
    /// The emoji picker's search and recently used (shared by reactions and the composer).
    pub emoji: crate::ui::emoji::PickerState,
    pub search: SearchState,
    pub jump: Option<Jump>,
    /// The message to flash briefly after a jump, and since when.
    pub flash: Option<(MessageId, Instant)>,
    typing_sent: HashMap<Conv, Instant>,
}

/// Is `request` one of ours (its reply goes to [`RichState::on_reply`])?
pub fn is_rich_request(request: &Request) -> bool {
    matches!(
        request,
        Request::Edit { .. }
            | Request::Delete { .. }
            | Request::React { .. }
            | Request::SearchMessages { .. }
    )
}

impl RichState {
    /// The composer's draft is needed by the edit mode; the app passes it in and takes
    /// back the one to show.
    pub fn apply(&mut self, model: &Model, action: RichAction, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        match action {
            RichAction::Reply { conv, id } => {
                self.reply.insert(conv, id);
                fx.push(Effect::FocusComposer);
            }
            RichAction::CancelReply(conv) => {
                self.reply.remove(&conv);
            }
            RichAction::StartEdit { conv, id } => {
                let Some(text) = editable_text(model, &conv, id) else { return fx };
                fx.push(Effect::StartEdit { conv, id, text });
            }
            RichAction::CancelEdit => {
                if let Some(e) = self.editing.take() {
                    fx.push(Effect::SetDraft { conv: e.conv, text: e.saved_draft });
                }
            }
            RichAction::AskDelete { conv, id } => {
                let preview = model
                    .conversation(&conv)
                    .and_then(|c| c.get(id))
                    .map(|m| preview(m.content.text(), 120))
                    .unwrap_or_default();
                fx.push(Effect::OpenDialog(Dialog::ConfirmDelete { conv, id, preview }));
            }
            RichAction::Delete { conv, id } => {
                fx.push(Effect::CloseDialog);
                fx.push(Effect::Rich(RichCommand::Delete { conv, id }));
            }
            RichAction::React { conv: _, id, emoji, on } => {
                self.picker = None;
                if on {
                    self.emoji.used(&emoji);
                }
                fx.push(Effect::Request(Request::React { id, emoji, on }));
            }
            RichAction::Picker(target) => self.picker = target,
            RichAction::Typing(conv) => {
                let due = self
                    .typing_sent
                    .get(&conv)
                    .is_none_or(|at| now.duration_since(*at) >= Duration::from_millis(TYPING_INTERVAL_MS));
                if due && conv != Conv::Announcements {
                    self.typing_sent.insert(conv.clone(), now);
                    fx.push(Effect::Rich(RichCommand::Typing(conv)));
                }
            }
            RichAction::JumpTo { conv, id } => {
                fx.push(Effect::Select(conv.clone()));
                let loaded = model.conversation(&conv).is_some_and(|c| c.get(id).is_some());
                self.jump = Some(Jump { conv: conv.clone(), id, pages: 0, found: loaded });
                if !loaded {
                    fx.extend(self.load_towards(model));
                }
            }
            RichAction::Jumped => self.jumped(now),
            RichAction::OpenSearch(scope) => {
                let s = &mut self.search;
                if s.scope != scope {
                    s.hits.clear();
                    s.ran = None;
                    s.more = false;
                }
                s.open = true;
                s.scope = scope;
                s.focus = true;
            }
            RichAction::CloseSearch => self.search.open = false,
            RichAction::SearchFor { scope, query } => {
                let s = &mut self.search;
                s.open = true;
                s.scope = scope;
                s.query = query;
                fx.extend(self.search(model, false));
            }
            RichAction::Search { more } => fx.extend(self.search(model, more)),
        }
        fx
    }

    /// The composer now edits `id`; `draft` is what it held.
    pub fn begin_edit(&mut self, conv: Conv, id: MessageId, draft: String) {
        self.editing = Some(Editing { conv, id, saved_draft: draft });
    }

    /// The composer's Enter while editing: the edit goes out, the old draft comes back.
    pub fn finish_edit(&mut self, model: &Model, text: String) -> Vec<Effect> {
        let Some(e) = self.editing.take() else { return Vec::new() };
        let mut fx = vec![Effect::SetDraft { conv: e.conv.clone(), text: e.saved_draft }];
        let unchanged = editable_text(model, &e.conv, e.id).is_some_and(|old| old == text);
        if !unchanged && !text.trim().is_empty() {
            fx.push(Effect::Rich(RichCommand::Edit { conv: e.conv, id: e.id, text }));
        }
        fx
    }

    /// Older history arrived in `conv`: is the message we are looking for there now?
    pub fn on_history(&mut self, model: &Model, conv: &Conv) -> Vec<Effect> {
        let Some(j) = &mut self.jump else { return Vec::new() };
        if &j.conv != conv || j.found {
            return Vec::new();
        }
        j.pages += 1;
        if model.conversation(conv).is_some_and(|c| c.get(j.id).is_some()) {
            j.found = true;
            return Vec::new();
        }
        self.load_towards(model)
    }

    /// Asks for the next older page of the jump's conversation, unless it is exhausted.
    fn load_towards(&mut self, model: &Model) -> Vec<Effect> {
        let Some(j) = &self.jump else { return Vec::new() };
        let c = model.conversation(&j.conv);
        let oldest = c.and_then(|c| c.oldest_id());
        let exhausted = c.is_some_and(|c| !c.more_history) || oldest.is_some_and(|o| o <= j.id);
        if exhausted || j.pages >= MAX_JUMP_PAGES {
            self.jump = None;
            return vec![Effect::Banner {
                text: "That message is no longer in the history.".into(),
                error: false,
            }];
        }
        vec![Effect::LoadOlder(j.conv.clone())]
    }

    fn jumped(&mut self, now: Instant) {
        if let Some(j) = self.jump.take() {
            self.flash = Some((j.id, now));
        }
    }

    fn search(&mut self, model: &Model, more: bool) -> Vec<Effect> {
        let s = &mut self.search;
        let query = if more { s.ran.clone().unwrap_or_default() } else { s.query.trim().to_owned() };
        if query.is_empty() {
            return Vec::new();
        }
        if !more {
            s.hits = local_hits(model, s.scope.as_ref(), &query);
            s.local_searched = model_dm_count(model, s.scope.as_ref());
            s.ran = Some(query.clone());
            s.more = false;
        }
        s.error = None;
        let room = match &s.scope {
            Some(Conv::Room { name }) => Some(name.clone()),
            // Direct messages are searched here only; the announcements are the server's.
            Some(Conv::Direct { .. }) => return Vec::new(),
            Some(Conv::Announcements) | None => None,
        };
        let offset =
            if more { s.hits.iter().filter(|h| !matches!(h.conv, Conv::Direct { .. })).count() } else { 0 };
        s.busy = true;
        vec![Effect::Request(Request::SearchMessages {
            query,
            room,
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
            limit: SEARCH_PAGE,
        })]
    }

    /// The answer to one of [`is_rich_request`]'s requests.
    pub fn on_reply(
        &mut self,
        request: Request,
        result: Result<Response, crate::net::RequestError>,
    ) -> Vec<Effect> {
        match (request, result) {
            (Request::SearchMessages { query, room, .. }, result) => {
                let s = &mut self.search;
                if s.ran.as_deref() != Some(query.as_str()) {
                    return Vec::new();
                }
                s.busy = false;
                match result {
                    Ok(Response::Found { hits, more }) => {
                        let only_announcements = s.scope == Some(Conv::Announcements);
                        s.hits.extend(
                            hits.into_iter()
                                .filter(|h| !only_announcements || h.message.conv == Conv::Announcements)
                                .filter_map(server_hit),
                        );
                        s.more = more;
                    }
                    Ok(other) => s.error = Some(format!("Unexpected answer from the server: {other:?}")),
                    Err(e) => {
                        let _ = room;
                        s.error = Some(e.message);
                    }
                }
                Vec::new()
            }
            (_, Ok(_)) => Vec::new(),
            (request, Err(e)) => {
                let what = match request {
                    Request::Edit { .. } => "edit the message",
                    Request::Delete { .. } => "delete the message",
                    Request::React { .. } => "add the reaction",
                    _ => "do that",
                };
                let why = match e.code {
                    Some(ErrorCode::NotYourMessage) => "it is not your message".to_owned(),
                    Some(ErrorCode::MessageDeleted) => "it was deleted".to_owned(),
                    Some(ErrorCode::NoSuchMessage) => "it is no longer there".to_owned(),
                    _ => e.message,
                };
                vec![Effect::Banner { text: format!("Could not {what}: {why}"), error: true }]
            }
        }
    }
}

/// The text of your own message `id`, if it can be edited (text, not deleted).
pub fn editable_text(model: &Model, conv: &Conv, id: MessageId) -> Option<String> {
    let m = model.conversation(conv)?.get(id)?;
    if !model.is_me(&m.from) {
        return None;
    }
    match &m.content {
        Content::Text(t) | Content::Announcement(t) => Some(t.clone()),
        _ => None,
    }
}

/// The newest of your own messages in `conv` that can be edited (Up in an empty composer).
pub fn last_editable(model: &Model, conv: &Conv) -> Option<MessageId> {
    let c = model.conversation(conv)?;
    c.messages()
        .iter()
        .rev()
        .take(200)
        .find(|m| model.is_me(&m.from) && matches!(m.content, Content::Text(_) | Content::Announcement(_)))
        .map(|m| m.id)
}

/// The first `max` characters of `text` on one line, with "…" when cut, and without the
/// markdown that would show as clutter there (code fences, backticks, stars, quote and
/// heading marks).
pub fn preview(text: &str, max: usize) -> String {
    let lines = text.lines().filter(|l| !l.trim_start().starts_with("```"));
    let bare: String = lines
        .map(|l| l.trim_start().trim_start_matches(['#', '>']).trim_start())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !matches!(c, '`' | '*'))
        .collect();
    let one_line: String = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        out.push('…');
    }
    out
}

fn server_hit(h: SearchHit) -> Option<Hit> {
    let Body::Text { text } = h.message.body else { return None };
    // Ranges must fall on character boundaries of this text; others are dropped.
    let highlights = h
        .highlights
        .into_iter()
        .filter(|(a, b)| a < b && text.is_char_boundary(*a as usize) && text.is_char_boundary(*b as usize))
        .filter(|(_, b)| (*b as usize) <= text.len())
        .collect();
    Some(Hit {
        conv: h.message.conv,
        id: h.message.id,
        from: h.message.from,
        ts: h.message.ts,
        text,
        highlights,
    })
}

fn model_dm_count(model: &Model, scope: Option<&Conv>) -> usize {
    dm_convs(model, scope).filter_map(|c| model.conversation(&c)).map(|c| c.messages().len()).sum()
}

fn dm_convs<'a>(model: &'a Model, scope: Option<&'a Conv>) -> impl Iterator<Item = Conv> + 'a {
    model.ordered_conversations().into_iter().filter(move |c| match scope {
        None => matches!(c, Conv::Direct { .. }),
        Some(s) => matches!(s, Conv::Direct { .. }) && s == c,
    })
}

/// Direct messages are end-to-end encrypted, so the server cannot search them: the ones
/// this app has opened are searched here, every word of the query as a prefix of a word,
/// newest first.
pub fn local_hits(model: &Model, scope: Option<&Conv>, query: &str) -> Vec<Hit> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for conv in dm_convs(model, scope) {
        let Some(c) = model.conversation(&conv) else { continue };
        for m in c.messages().iter().rev() {
            let Content::Text(text) = &m.content else { continue };
            if let Some(highlights) = match_words(text, &words) {
                out.push(Hit {
                    conv: conv.clone(),
                    id: m.id,
                    from: m.from.clone(),
                    ts: m.ts,
                    text: text.clone(),
                    highlights,
                });
            }
        }
    }
    out.sort_by_key(|h| std::cmp::Reverse(h.ts));
    out.truncate(200);
    out
}

/// The byte ranges of the words of `text` that start with one of `words`, if every
/// query word matched one.
fn match_words(text: &str, words: &[String]) -> Option<Vec<(u32, u32)>> {
    let mut found = vec![false; words.len()];
    let mut ranges = Vec::new();
    let mut start = None;
    let check = |s: usize, e: usize, found: &mut Vec<bool>, ranges: &mut Vec<(u32, u32)>| {
        let word = text[s..e].to_lowercase();
        let mut hit = false;
        for (i, q) in words.iter().enumerate() {
            if word.starts_with(q.as_str()) {
                found[i] = true;
                hit = true;
            }
        }
        if hit {
            ranges.push((u32::try_from(s).unwrap_or(u32::MAX), u32::try_from(e).unwrap_or(u32::MAX)));
        }
    };
    for (i, ch) in text.char_indices() {
        match (ch.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                check(s, i, &mut found, &mut ranges);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        check(s, text.len(), &mut found, &mut ranges);
    }
    found.iter().all(|f| *f).then_some(ranges)
}

/// Runs a [`RichCommand`] on the net task: direct-message edits and deletes are sealed
/// first (the server never sees an edit's text). The request and its result go back to
/// the UI like any other reply.
pub async fn run(
    client: &Client,
    e2e: Option<&E2e>,
    cmd: RichCommand,
) -> Option<(Request, Result<Response, classchat_wire::Error>)> {
    let sealed = |e: String| classchat_wire::Error::Protocol(e);
    let failed = cmd.request_kind();
    let request = match cmd {
        RichCommand::Typing(conv) => {
            let _ = client.typing(conv).await;
            return None;
        }
        RichCommand::Edit { conv: Conv::Direct { user }, id, text } => {
            let sealed_edit = match e2e {
                Some(e2e) => e2e.seal_bytes(client, &user, DmEdit { of: id, text }.to_bytes()).await,
                None => Err(NO_KEYS.to_owned()),
            };
            match sealed_edit {
                Ok(data) => Request::Edit { id, body: Body::Opaque { data } },
                Err(e) => return failed.map(|r| (r, Err(sealed(e)))),
            }
        }
        RichCommand::Edit { conv: _, id, text } => Request::Edit { id, body: Body::Text { text } },
        RichCommand::Delete { conv: Conv::Direct { user }, id } => {
            // The proof is a courtesy to the other side; without keys the delete still goes.
            let proof = match e2e {
                Some(e2e) => e2e.seal_bytes(client, &user, DmDelete { of: id }.to_bytes()).await.ok(),
                None => None,
            };
            Request::Delete { id, proof }
        }
        RichCommand::Delete { conv: _, id } => Request::Delete { id, proof: None },
    };
    let result = client.request(request.clone()).await;
    Some((request, result))
}

const NO_KEYS: &str = "direct messages are not set up on this computer";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_match_as_prefixes_and_all_must_match() {
        let w = |q: &str| q.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(match_words("Segfault in lab3!", &w("seg lab")), Some(vec![(0, 8), (12, 16)]));
        assert_eq!(match_words("Segfault in lab3!", &w("seg exam")), None);
        assert_eq!(match_words("Ünïcode wörds", &w("wö")), Some(vec![(10, 16)]));
    }

    #[test]
    fn previews_are_one_line_and_cut() {
        assert_eq!(preview("a\n  b\tc", 10), "a b c");
        assert_eq!(preview("abcdef", 3), "abc…");
        assert_eq!(preview("Why *this*?\n```c\nint x;\n```\n> `quoted`", 80), "Why this? int x; quoted");
    }
}
