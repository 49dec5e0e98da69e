//! `{"search_messages": {"query": str, "room": str?, "offset": u32, "limit": u32}}` →
//! `Found`: full-text search of the room and announcement messages the user may read now
//! (PROTOCOL.md section 18.5).
//!
//! The query is cut into words the way the index's tokenizer (FTS5 `unicode61`) cuts
//! text: runs of letters and digits. Each word becomes a quoted FTS5 term (`"word"`), so
//! quotes, `*`, parentheses, `AND`, `NEAR` and the like are plain characters and no string
//! is a syntax error. The terms are ANDed, and ANDed with the conversation tokens of the
//! rooms the user is in now (plus announcements), so rooms left or banned from are never
//! searched.
//!
//! Words match by their English stem (`stem`: "segfault" finds "segfaults"), regardless
//! of case and accents, not by prefix: FTS5 answers a
//! prefix term by merging the postings of every word that starts with it before it
//! returns the first row, which for a short or common prefix in 10 million messages is
//! seconds; an exact term is read lazily, newest first, and stops after the page
//! (BENCHMARKS.md, search).
//!
//! Ranking is by recency: newest match first. bm25 must score every match before it can
//! return the first, which for a common word in a 10-million-message store is hundreds of
//! thousands of rows; newest-first walks the index backwards and stops after the page
//! (BENCHMARKS.md, search). Runs on a read connection (`Store::search`), never on the writer.
//! On a PostgreSQL store the same terms (accents folded) are a `TEXT[]` per message with a
//! GIN index, and the same query is "overlaps the word's terms in these conversations"
//! for every word, newest first (`store::postgres`).

use classchat_wire::{
    Conv, ErrorCode, MAX_SEARCH_DEPTH, MAX_SEARCH_PAGE, MAX_SEARCH_QUERY_LEN, Response, SearchHit,
};

use crate::handlers::messages::conv_key;
use crate::handlers::{ApiError, ApiResult, me};
use crate::session::Session;
use crate::state::{ANNOUNCEMENTS, State, room_conv};
use crate::store::rich::conv_token;

/// Words of a query that are searched; later ones are left out (each word costs one term
/// per conversation searched, and a user may be in 100 rooms).
pub const MAX_SEARCH_WORDS: usize = 8;

/// The words of `s`: runs of letters and digits (what the index holds, `store::rich::terms`).
pub fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.char_indices()
        .filter(|&(i, c)| {
            c.is_alphanumeric() && !s[..i].chars().next_back().is_some_and(char::is_alphanumeric)
        })
        .map(move |(start, _)| {
            let end = s[start..].find(|c: char| !c.is_alphanumeric()).map_or(s.len(), |n| start + n);
            (start, &s[start..end])
        })
}

/// What the index holds for a word, and what a query word is looked up by: its English
/// stem (Snowball), lowercased, so "segfault" finds "segfaults" and "segfaulted", and
/// "running" finds "run". Applied the same on both sides, so any language's words still
/// find themselves.
pub fn stem(word: &str) -> String {
    static STEMMER: std::sync::LazyLock<rust_stemmers::Stemmer> =
        std::sync::LazyLock::new(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English));
    STEMMER.stem(&word.to_lowercase()).into_owned()
}

/// The words of `query` that are searched: stemmed, each once, at most
/// [`MAX_SEARCH_WORDS`].
pub fn query_words(query: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for (_, w) in words(query) {
        let w = stem(w);
        if !seen.contains(&w) && seen.len() < MAX_SEARCH_WORDS {
            seen.push(w);
        }
    }
    seen
}

/// The FTS5 expression for `query` within conversations `convs` (database keys); `None`
/// when the query has no words.
pub fn expression(query: &str, convs: &[String]) -> Option<String> {
    expression_of(&query_words(query), convs)
}

/// The FTS5 expression for the stemmed `words` ([`query_words`]) within `convs`.
pub fn expression_of(words: &[String], convs: &[String]) -> Option<String> {
    if words.is_empty() || convs.is_empty() {
        return None;
    }
    let tokens: Vec<String> = convs.iter().map(|c| conv_token(c)).collect();
    // Each word in any of the conversations; every word. Terms are letters and digits
    // only (quoted anyway, so no word is ever an operator).
    let clauses: Vec<String> = words
        .iter()
        .map(|w| {
            let any: Vec<String> = tokens.iter().map(|t| format!("\"{t}x{w}\"")).collect();
            format!("({})", any.join(" OR "))
        })
        .collect();
    Some(clauses.join(" AND "))
}

/// Byte ranges of the words of `text` whose stem is a query word's stem (case-folded;
/// accents are not folded here, so a match the index made across accents is found but
/// not marked).
pub fn highlights(text: &str, query: &str) -> Vec<(u32, u32)> {
    let wanted: Vec<String> = words(query).map(|(_, w)| stem(w)).collect();
    words(text)
        .filter(|(_, w)| wanted.contains(&stem(w)))
        .filter_map(|(start, w)| Some((u32::try_from(start).ok()?, u32::try_from(start + w.len()).ok()?)))
        .collect()
}

pub async fn search(
    state: &State,
    session: &Session,
    query: String,
    room: Option<String>,
    offset: u32,
    limit: u32,
) -> ApiResult {
    let me = me(session)?;
    if query.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "the search is empty"));
    }
    if query.len() > MAX_SEARCH_QUERY_LEN {
        return Err(ApiError::new(
            ErrorCode::TooLong,
            format!("the search is {} bytes; the limit is {MAX_SEARCH_QUERY_LEN}", query.len()),
        ));
    }
    if !(1..=MAX_SEARCH_PAGE).contains(&limit) {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("limit must be 1 to {MAX_SEARCH_PAGE}")));
    }
    if offset.saturating_add(limit) > MAX_SEARCH_DEPTH {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("search pages reach only the first {MAX_SEARCH_DEPTH} hits"),
        ));
    }
    let convs = match &room {
        Some(name) => vec![conv_key(state, &me, &Conv::Room { name: name.clone() })?],
        None => {
            let inner = state.lock();
            let mut convs: Vec<String> = inner
                .users
                .get(&me)
                .map(|u| u.rooms.iter().map(|r| room_conv(r)).collect())
                .unwrap_or_default();
            convs.push(ANNOUNCEMENTS.to_owned());
            convs
        }
    };
    let words = query_words(&query);
    if words.is_empty() {
        return Ok(Response::Found { hits: Vec::new(), more: false });
    }
    let mut found = state.store.search(words, convs, offset, limit + 1).await.map_err(ApiError::internal)?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let inner = state.lock();
    let hits = found
        .into_iter()
        .map(|m| {
            let conv = match m.conv.strip_prefix("r:") {
                Some(r) => Conv::Room { name: State::display_room(&inner, r) },
                None => Conv::Announcements,
            };
            let highlights = match &m.body {
                classchat_wire::Body::Text { text } => highlights(text, &query),
                _ => Vec::new(),
            };
            SearchHit { message: m.to_chat(conv), highlights }
        })
        .collect();
    Ok(Response::Found { hits, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_string_makes_a_quoted_expression_or_none() {
        let convs = vec!["r:lobby".to_owned()];
        assert_eq!(expression("\"", &convs), None);
        assert_eq!(expression("*", &convs), None);
        assert_eq!(expression("(((", &convs), None);
        assert_eq!(
            expression("a AND A", &convs).as_deref(),
            Some("(\"k723a6c6f626279xa\") AND (\"k723a6c6f626279xand\")")
        );
        let two = vec!["r:lobby".to_owned(), "a".to_owned()];
        assert_eq!(expression("(rust*", &two).as_deref(), Some("(\"k723a6c6f626279xrust\" OR \"k61xrust\")"));
        let many = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";
        assert_eq!(expression(many, &convs).map(|e| e.matches(" AND ").count()), Some(MAX_SEARCH_WORDS - 1));
    }

    #[test]
    fn highlights_are_word_ranges_on_char_boundaries() {
        let text = "Ünïcode höhe: Rust rusty, trust";
        let h = highlights(text, "rust HÖHE");
        let got: Vec<&str> = h.iter().map(|&(a, b)| &text[a as usize..b as usize]).collect();
        assert_eq!(got, vec!["höhe", "Rust"]);
    }
}
