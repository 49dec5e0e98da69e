//! Direct-message bodies.
//!
//! The server treats a direct message as opaque bytes (`Request::SendDirect { body }`,
//! `Body::Opaque { data }`). This module is the only place that turns text into those
//! bytes and back, so end-to-end encryption (a later issue) replaces exactly these two
//! functions.
//!
//! Format for now: one format byte, then the payload. `0` means plain UTF-8 text: not yet
//! end-to-end encrypted, and the app says so in the conversation header.

/// Format byte of a plaintext body.
const PLAIN_UTF8: u8 = 0;

/// What a received direct-message body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmBody {
    Text(String),
    /// Not something this version can show; the string says why, for people.
    Unreadable(String),
}

/// The bytes sent for `text`.
pub fn encode_dm(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(PLAIN_UTF8);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads a received body. Never fails: a body it cannot read becomes
/// [`DmBody::Unreadable`], which the conversation shows as such and never as text.
pub fn decode_dm(data: &[u8]) -> DmBody {
    match data.split_first() {
        Some((&PLAIN_UTF8, rest)) => match std::str::from_utf8(rest) {
            Ok(text) => DmBody::Text(text.to_owned()),
            Err(_) => DmBody::Unreadable("message is not valid text".into()),
        },
        Some((format, _)) => {
            DmBody::Unreadable(format!("message in a format this version cannot read ({format})"))
        }
        None => DmBody::Unreadable("empty message".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for text in ["", "hi", "zwei\nZeilen", "émoji 🎉"] {
            assert_eq!(decode_dm(&encode_dm(text)), DmBody::Text(text.into()));
        }
    }

    #[test]
    fn unknown_formats_are_not_shown_as_text() {
        assert!(matches!(decode_dm(b""), DmBody::Unreadable(_)));
        assert!(matches!(decode_dm(b"\x07secret"), DmBody::Unreadable(_)));
        assert!(matches!(decode_dm(b"\x00\xff\xfe"), DmBody::Unreadable(_)));
    }
}
