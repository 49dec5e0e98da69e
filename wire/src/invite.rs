//! Invite links: `classchat://host:port#fingerprint`, or for a server of several nodes
//! `classchat://host1:7420,host2:7420#fingerprint`.
//!
//! An invite names a server and pins its key, so a student who pastes it (or opens it as
//! a link) connects without the first-contact prompt: the fingerprint inside is what the
//! app trusts. Every node of one server presents the same key, so one fingerprint covers
//! all the addresses (PROTOCOL.md §12.7).

use std::fmt;

use crate::fingerprint::Fingerprint;

/// URI scheme of invite links.
pub const SCHEME: &str = "classchat://";
/// Port used when an invite or an address names none.
pub const DEFAULT_PORT: u16 = 7420;
/// Most addresses one invite may list: a department's nodes, not a directory of servers.
/// The app tries them in turn, so the bound also bounds one reconnect round.
pub const MAX_NODES: usize = 16;
/// Longest invite accepted: [`MAX_NODES`] addresses of the longest host name (253 bytes)
/// with a port and a comma each (260), the scheme, and a grouped fingerprint (79), with
/// room to spare.
const MAX_INVITE_LEN: usize = 4608;

/// One address an invite lists: a host name or IP address (IPv6 without brackets) and a
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl Node {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }

    /// The same address however it is spelled: host names without regard to case, IPv6
    /// addresses by value.
    fn same_as(&self, other: &Node) -> bool {
        self.port == other.port
            && match (self.host.parse::<std::net::IpAddr>(), other.host.parse::<std::net::IpAddr>()) {
                (Ok(a), Ok(b)) => a == b,
                _ => self.host.eq_ignore_ascii_case(&other.host),
            }
    }
}

/// `host:port`, IPv6 in brackets: what is dialled.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join_host_port(&self.host, self.port))
    }
}

/// A parsed invite: one to [`MAX_NODES`] distinct addresses and the server's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Never empty, at most [`MAX_NODES`], no address twice ([`Invite::new`] checks).
    nodes: Vec<Node>,
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
    /// `position` counts from 1.
    #[error("address {position} in the invite is empty (two commas, or a comma at an end)")]
    EmptyAddress { position: usize },
    #[error("the invite lists {count} addresses; at most {MAX_NODES} are allowed")]
    TooManyAddresses { count: usize },
    #[error("the server address {address:?} in the invite is not host:port")]
    BadAddress { address: String },
    #[error("the port in {address:?} is not a number from 1 to 65535")]
    BadPort { address: String },
    #[error("the invite lists {address} twice")]
    Duplicate { address: String },
    #[error("the invite is too long")]
    TooLong,
}

impl Invite {
    /// An invite for one address (the form single-node servers print).
    pub fn single(host: impl Into<String>, port: u16, fingerprint: Fingerprint) -> Self {
        Self { nodes: vec![Node::new(host, port)], fingerprint }
    }

    /// An invite for the nodes of one server, in the order clients should try them
    /// (checked with [`check_nodes`]).
    pub fn new(nodes: Vec<Node>, fingerprint: Fingerprint) -> Result<Self, InviteError> {
        check_nodes(&nodes)?;
        Ok(Self { nodes, fingerprint })
    }

    /// Parses `classchat://ADDR[,ADDR…][/]#fingerprint`, where ADDR is `host`,
    /// `host:port`, `[v6]` or `[v6]:port` (spaces around the whole invite and around each
    /// address are ignored). The grammar is in PROTOCOL.md §12.7.
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
        let (list, fp) = rest.split_once('#').ok_or(InviteError::NoFingerprint)?;
        let fingerprint = Fingerprint::parse(fp).ok_or(InviteError::BadFingerprint)?;
        let list = list.strip_suffix('/').unwrap_or(list);
        // Counted before anything is collected, so a flood of commas allocates nothing.
        let count = list.split(',').count();
        if count > MAX_NODES {
            return Err(InviteError::TooManyAddresses { count });
        }
        let nodes = list
            .split(',')
            .enumerate()
            .map(|(i, entry)| parse_node(entry.trim(), i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(nodes, fingerprint)
    }

    /// The first address, `host:port` (IPv6 in brackets): the one the app files the
    /// server under (known servers, saved sessions).
    pub fn addr(&self) -> String {
        self.nodes[0].to_string()
    }

    /// Every address, `host:port`, in the invite's order.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::to_string).collect()
    }

    /// The addresses as host and port.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{node}")?;
        }
        write!(f, "#{}", self.fingerprint.to_hex())
    }
}

/// Whether `nodes` can be an invite's list: 1 to [`MAX_NODES`] addresses, each a valid
/// host (or IPv6 address) with a port from 1 to 65535, none twice.
pub fn check_nodes(nodes: &[Node]) -> Result<(), InviteError> {
    if nodes.is_empty() {
        return Err(InviteError::EmptyAddress { position: 1 });
    }
    if nodes.len() > MAX_NODES {
        return Err(InviteError::TooManyAddresses { count: nodes.len() });
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.port == 0 {
            return Err(InviteError::BadPort { address: node.to_string() });
        }
        if split_host_port(&node.to_string()).is_none() {
            return Err(InviteError::BadAddress { address: node.to_string() });
        }
        if nodes[..i].iter().any(|earlier| earlier.same_as(node)) {
            return Err(InviteError::Duplicate { address: node.to_string() });
        }
    }
    Ok(())
}

/// One address of the list, `position` counting from 1 for the error.
fn parse_node(entry: &str, position: usize) -> Result<Node, InviteError> {
    if entry.is_empty() {
        return Err(InviteError::EmptyAddress { position });
    }
    if let Some((host, port)) = split_host_port(entry) {
        return Ok(Node { host, port });
    }
    // Say which part is wrong: a port that is not 1..=65535 after a host that would do.
    let port_part = match entry.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").map(|(_, port)| port),
        None => entry.rsplit_once(':').map(|(_, port)| port),
    };
    let host_ok = split_host_port(&entry[..entry.len() - port_part.map_or(0, |p| p.len() + 1)]).is_some();
    Err(match port_part {
        Some(_) if host_ok => InviteError::BadPort { address: entry.to_owned() },
        _ => InviteError::BadAddress { address: entry.to_owned() },
    })
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

    fn parse(list: &str) -> Result<Invite, InviteError> {
        Invite::parse(&format!("classchat://{list}#{}", fp().to_hex()))
    }

    #[test]
    fn round_trips_and_pins_the_fingerprint() {
        for host in ["lab-pc.local", "192.168.1.20", "::1"] {
            let invite = Invite::single(host, 7420, fp());
            let text = invite.to_string();
            assert!(text.starts_with("classchat://"));
            let back = Invite::parse(&text).expect("parses");
            assert_eq!(back, invite);
            assert_eq!(back.fingerprint, fp());
        }
        assert_eq!(parse("[::1]:9000").expect("v6").addr(), "[::1]:9000");
    }

    #[test]
    fn accepts_grouped_fingerprints_default_port_and_whitespace() {
        let text = format!("  classchat://lab/#{}  ", fp());
        let invite = Invite::parse(&text).expect("parses");
        assert_eq!(invite.addr(), "lab:7420");
        assert_eq!(invite.addrs(), ["lab:7420"]);
        assert_eq!(invite.fingerprint, fp());
    }

    #[test]
    fn lists_several_nodes_in_order_with_default_ports_and_ipv6() {
        let invite = parse("node1.example.edu:7420, node2.example.edu,[2001:db8::7]:9000,10.0.0.3:7421/")
            .expect("parses");
        assert_eq!(
            invite.addrs(),
            ["node1.example.edu:7420", "node2.example.edu:7420", "[2001:db8::7]:9000", "10.0.0.3:7421"]
        );
        assert_eq!(invite.addr(), "node1.example.edu:7420", "the first address names the server");
        assert_eq!(invite.nodes()[2], Node::new("2001:db8::7", 9000));
        // Printed without the spaces and with every port, and parsed back to the same.
        let text = invite.to_string();
        assert!(
            text.starts_with("classchat://node1.example.edu:7420,node2.example.edu:7420,[2001:db8::7]:9000,")
        );
        assert_eq!(Invite::parse(&text), Ok(invite));
        let most = (1..=MAX_NODES).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse(&most).expect("16 addresses").addrs().len(), MAX_NODES);
    }

    #[test]
    fn rejects_bad_invites_with_a_reason() {
        let hex = fp().to_hex();
        let bad_address = |a: &str| InviteError::BadAddress { address: a.into() };
        let bad_port = |a: &str| InviteError::BadPort { address: a.into() };
        assert_eq!(Invite::parse(&format!("http://lab:7420#{hex}")), Err(InviteError::Scheme));
        assert_eq!(Invite::parse("classchat://lab:7420"), Err(InviteError::NoFingerprint));
        assert_eq!(Invite::parse("classchat://lab:7420#abcd"), Err(InviteError::BadFingerprint));
        assert_eq!(parse("lab:99999"), Err(bad_port("lab:99999")));
        assert_eq!(parse("lab:seven"), Err(bad_port("lab:seven")));
        assert_eq!(parse("la b:7420"), Err(bad_address("la b:7420")));
        assert_eq!(parse("lab:0"), Err(bad_port("lab:0")));
        // Found by the parse_invite fuzz target (input `[::1]:0`, after 216,000 runs): port 0
        // was refused after a host name but accepted after an IPv6 address.
        assert_eq!(parse("[::1]:0"), Err(bad_port("[::1]:0")));
        assert_eq!(split_host_port("[::1]:0"), None);
        assert_eq!(parse("[::g]:7420"), Err(bad_address("[::g]:7420")));
        assert_eq!(parse("::1"), Err(bad_address("::1")), "IPv6 needs its brackets");
        assert_eq!(Invite::parse(&"x".repeat(MAX_INVITE_LEN + 1)), Err(InviteError::TooLong));
        assert_eq!(parse(""), Err(InviteError::EmptyAddress { position: 1 }));
    }

    #[test]
    fn rejects_bad_lists_and_names_the_entry() {
        assert_eq!(parse("a:7420,,b:7420"), Err(InviteError::EmptyAddress { position: 2 }));
        assert_eq!(parse("a:7420,"), Err(InviteError::EmptyAddress { position: 2 }));
        assert_eq!(parse(",a:7420"), Err(InviteError::EmptyAddress { position: 1 }));
        assert_eq!(parse("a:7420, ,b"), Err(InviteError::EmptyAddress { position: 2 }));
        assert_eq!(parse("a:7420,b:70000"), Err(InviteError::BadPort { address: "b:70000".into() }));
        let too_many = (1..=MAX_NODES + 1).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse(&too_many), Err(InviteError::TooManyAddresses { count: MAX_NODES + 1 }));
        // A flood of commas is refused by its count, before any entry is looked at.
        assert_eq!(parse(&",".repeat(1000)), Err(InviteError::TooManyAddresses { count: 1001 }));
        // The same address twice, however it is spelled.
        let dup = |a: &str| Err(InviteError::Duplicate { address: a.into() });
        assert_eq!(parse("lab:7420,LAB"), dup("LAB:7420"));
        assert_eq!(parse("[::1]:9000,[0:0::1]:9000"), dup("[0:0::1]:9000"));
        assert!(parse("lab:7420,lab:7421").is_ok(), "another port is another node");
        let error = parse("a:7420,a:7420").expect_err("duplicate");
        assert_eq!(error.to_string(), "the invite lists a:7420 twice");
    }

    #[test]
    fn new_checks_what_parse_checks() {
        assert_eq!(Invite::new(Vec::new(), fp()), Err(InviteError::EmptyAddress { position: 1 }));
        assert_eq!(
            Invite::new(vec![Node::new("lab", 0)], fp()),
            Err(InviteError::BadPort { address: "lab:0".into() })
        );
        assert_eq!(
            Invite::new(vec![Node::new("la b", 1)], fp()),
            Err(InviteError::BadAddress { address: "la b:1".into() })
        );
        let two = Invite::new(vec![Node::new("a", 1), Node::new("b", 2)], fp()).expect("two nodes");
        assert_eq!(two.to_string(), format!("classchat://a:1,b:2#{}", fp().to_hex()));
    }
}
