//! Invite links: `classchat://host:port#fingerprint`.
//!
//! An invite names a server and pins its key, so a student who pastes it (or opens it as
//! a link) connects without the first-contact prompt: the fingerprint inside is what the
//! app trusts.

use std::fmt;

use crate::fingerprint::Fingerprint;

/// URI scheme of invite links.
pub const SCHEME: &str = "classchat://";
/// Port used when an invite or an address names none.
pub const DEFAULT_PORT: u16 = 7420;
/// Longest invite accepted (a hostname is at most 253 bytes).
const MAX_INVITE_LEN: usize = 512;

/// A parsed invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Hostname or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub fingerprint: Fingerprint,
}

/// Why an invite did not parse; the message is meant for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("an invite starts with classchat://")]
    Scheme,
    #[error("the invite has no server fingerprint after '#'")]
    NoFingerprint,
    #[error("the fingerprint in the invite is not 64 hex digits")]
    BadFingerprint,
    #[error("the server address in the invite is not host:port")]
    BadAddress,
    #[error("the invite is too long")]
    TooLong,
}

impl Invite {
    /// Parses `classchat://host[:port][/]#fingerprint` (spaces around it are ignored).
    pub fn parse(text: &str) -> Result<Self, InviteError> {
        let text = text.trim();
        if text.len() > MAX_INVITE_LEN {
            return Err(InviteError::TooLong);
        }
        let rest = text
            .get(..SCHEME.len())
            .filter(|p| p.eq_ignore_ascii_case(SCHEME))
            .map(|_| &text[SCHEME.len()..])
            .ok_or(InviteError::Scheme)?;
        let (addr, fp) = rest.split_once('#').ok_or(InviteError::NoFingerprint)?;
        let fingerprint = Fingerprint::parse(fp).ok_or(InviteError::BadFingerprint)?;
        let (host, port) = split_host_port(addr.trim_end_matches('/')).ok_or(InviteError::BadAddress)?;
        Ok(Invite { host, port, fingerprint })
    }

    /// `host:port` for connecting (IPv6 in brackets); also the known-servers key.
    pub fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}#{}", self.addr(), self.fingerprint.to_hex())
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 7420.
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p.strip_prefix(':')?.parse().ok().filter(|p| *p != 0)?,
        };
        return Some((host.to_owned(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if valid_host(host) => {
            Some((host.to_owned(), port.parse().ok().filter(|p| *p != 0)?))
        }
        Some(_) => None,
        None if valid_host(addr) => Some((addr.to_owned(), DEFAULT_PORT)),
        None => None,
    }
}

/// Joins a host and port, bracketing IPv6 addresses.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint::of_der(b"server key")
    }

    #[test]
    fn round_trips_and_pins_the_fingerprint() {
        for host in ["lab-pc.local", "192.168.1.20", "::1"] {
            let invite = Invite { host: host.into(), port: 7420, fingerprint: fp() };
            let text = invite.to_string();
            assert!(text.starts_with("classchat://"));
            let back = Invite::parse(&text).expect("parses");
            assert_eq!(back, invite);
            assert_eq!(back.fingerprint, fp());
        }
        assert_eq!(
            Invite::parse(&format!("classchat://[::1]:9000#{}", fp().to_hex())).expect("v6").addr(),
            "[::1]:9000"
        );
    }

    #[test]
    fn accepts_grouped_fingerprints_default_port_and_whitespace() {
        let text = format!("  classchat://lab/#{}  ", fp());
        let invite = Invite::parse(&text).expect("parses");
        assert_eq!(invite.addr(), "lab:7420");
        assert_eq!(invite.fingerprint, fp());
    }

    #[test]
    fn rejects_bad_invites_with_a_reason() {
        let hex = fp().to_hex();
        assert_eq!(Invite::parse(&format!("http://lab:7420#{hex}")), Err(InviteError::Scheme));
        assert_eq!(Invite::parse("classchat://lab:7420"), Err(InviteError::NoFingerprint));
        assert_eq!(Invite::parse("classchat://lab:7420#abcd"), Err(InviteError::BadFingerprint));
        assert_eq!(Invite::parse(&format!("classchat://lab:99999#{hex}")), Err(InviteError::BadAddress));
        assert_eq!(Invite::parse(&format!("classchat://la b:7420#{hex}")), Err(InviteError::BadAddress));
        assert_eq!(Invite::parse(&format!("classchat://lab:0#{hex}")), Err(InviteError::BadAddress));
        // Found by the parse_invite fuzz target (input `[::1]:0`, after 216,000 runs): port 0
        // was refused after a host name but accepted after an IPv6 address.
        assert_eq!(Invite::parse(&format!("classchat://[::1]:0#{hex}")), Err(InviteError::BadAddress));
        assert_eq!(split_host_port("[::1]:0"), None);
        assert_eq!(Invite::parse(&"x".repeat(600)), Err(InviteError::TooLong));
    }
}
