//! Which node of a server to dial: the addresses a multi-node invite listed, the one to
//! try first, and the file that remembers both.
//!
//! A server of several nodes is filed under one name, its invite's first address: the
//! known key, the saved session, the DM contacts and the identity key all hang off that
//! name, and every node serves them (the nodes share one database and one key,
//! PROTOCOL.md §12.7). This module only decides which address is dialled:
//!
//! - a login or a start-up resume tries the node that worked last time first, then the
//!   others in the invite's order;
//! - after a connection drops (or a round fails at some node), the next round starts at
//!   the node after it, so a dead node is not hammered while another can serve.
//!
//! The file `nodes` in the data directory holds one line per server,
//! `server preferred node…`; it is rewritten whole, holds no secret, and keeps the
//! [`MAX_SERVERS`] servers used last.

use std::io;
use std::path::{Path, PathBuf};

use classchat_wire::invite::MAX_NODES;

/// Servers whose nodes are remembered; older lines are dropped (a student uses a
/// handful of servers, so this only bounds a file nobody prunes).
pub const MAX_SERVERS: usize = 64;

/// The addresses of one server and where the next round of attempts starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// Never empty, no address twice, at most [`MAX_NODES`].
    addrs: Vec<String>,
    /// Index into `addrs` of the node tried first.
    next: usize,
}

impl Nodes {
    /// A server known by one address only.
    pub fn single(addr: &str) -> Self {
        Self { addrs: vec![addr.to_owned()], next: 0 }
    }

    /// `addrs` in the order given (repeats and anything past [`MAX_NODES`] dropped), with
    /// `preferred` tried first when it is one of them; `server` alone if `addrs` is empty.
    pub fn new(server: &str, addrs: &[String], preferred: Option<&str>) -> Self {
        let mut list: Vec<String> = Vec::new();
        for a in addrs {
            if list.len() < MAX_NODES && !list.contains(a) {
                list.push(a.clone());
            }
        }
        if list.is_empty() {
            return Self::single(server);
        }
        let next = preferred.and_then(|p| list.iter().position(|a| a == p)).unwrap_or(0);
        Self { addrs: list, next }
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The node the next round tries first.
    pub fn preferred(&self) -> &str {
        &self.addrs[self.next]
    }

    /// Every node once, for one round: the preferred one, then the rest in order,
    /// wrapping around.
    pub fn order(&self) -> Vec<String> {
        self.addrs[self.next..].iter().chain(&self.addrs[..self.next]).cloned().collect()
    }

    /// `node` answered: the next round (and the next start of the app) begins there.
    pub fn worked(&mut self, node: &str) {
        if let Some(i) = self.addrs.iter().position(|a| a == node) {
            self.next = i;
        }
    }

    /// `node` dropped the connection or was the last one tried: the next round begins at
    /// the node after it.
    pub fn failed(&mut self, node: &str) {
        if let Some(i) = self.addrs.iter().position(|a| a == node) {
            self.next = (i + 1) % self.addrs.len();
        }
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join("nodes")
}

/// The nodes remembered for `server` (a server of one node if none are). Blocking.
pub fn load(dir: &Path, server: &str) -> Nodes {
    let text = std::fs::read_to_string(path(dir)).unwrap_or_default();
    parse(&text).into_iter().find(|(s, ..)| s == server).map_or_else(
        || Nodes::single(server),
        |(_, preferred, addrs)| Nodes::new(server, &addrs, Some(&preferred)),
    )
}

/// Remembers `nodes` for `server`, replacing what was there. Blocking.
pub fn save(dir: &Path, server: &str, nodes: &Nodes) -> io::Result<()> {
    let text = match std::fs::read_to_string(path(dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut lines = parse(&text);
    lines.retain(|(s, ..)| s != server);
    lines.push((server.to_owned(), nodes.preferred().to_owned(), nodes.addrs.clone()));
    let skip = lines.len().saturating_sub(MAX_SERVERS);
    let mut out = String::from("# ClassChat servers' nodes: server preferred-node node...\n");
    for (s, p, addrs) in &lines[skip..] {
        out.push_str(&format!("{s} {p} {}\n", addrs.join(" ")));
    }
    std::fs::create_dir_all(dir)?;
    classchat_wire::fingerprint::write_private(&path(dir), out.as_bytes())
}

type Line = (String, String, Vec<String>);

/// Lines of `server preferred node…`; malformed ones are skipped (the file is ours and
/// rewritten whole, so a bad line can only come from a crash or a hand edit).
fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (server, preferred) = (parts.next()?, parts.next()?);
            let addrs: Vec<String> = parts.take(MAX_NODES).map(str::to_owned).collect();
            (!addrs.is_empty()).then(|| (server.to_owned(), preferred.to_owned(), addrs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Nodes {
        let addrs = ["a:1", "b:2", "c:3"].map(String::from);
        Nodes::new("a:1", &addrs, None)
    }

    #[test]
    fn a_round_starts_at_the_preferred_node_and_wraps_around() {
        let mut nodes = three();
        assert_eq!(nodes.order(), ["a:1", "b:2", "c:3"]);
        nodes.worked("b:2");
        assert_eq!(nodes.order(), ["b:2", "c:3", "a:1"]);
        // b dropped: the next round goes to c first, b last.
        nodes.failed("b:2");
        assert_eq!(nodes.order(), ["c:3", "a:1", "b:2"]);
        nodes.failed("c:3");
        assert_eq!(nodes.preferred(), "a:1");
        // An address that is not one of the nodes changes nothing.
        nodes.failed("z:9");
        nodes.worked("z:9");
        assert_eq!(nodes.preferred(), "a:1");
    }

    #[test]
    fn new_drops_repeats_keeps_at_most_sixteen_and_never_is_empty() {
        let nodes = Nodes::new("a:1", &["a:1", "b:2", "a:1"].map(String::from), Some("b:2"));
        assert_eq!(nodes.addrs(), ["a:1", "b:2"]);
        assert_eq!(nodes.preferred(), "b:2");
        assert_eq!(Nodes::new("a:1", &[], Some("b:2")), Nodes::single("a:1"));
        let many: Vec<String> = (0..40).map(|i| format!("n{i}:1")).collect();
        assert_eq!(Nodes::new("n0:1", &many, Some("n30:1")).addrs().len(), MAX_NODES);
    }

    #[test]
    fn remembered_per_server_with_the_preferred_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path(), "a:1"), Nodes::single("a:1"), "nothing saved yet");
        let mut nodes = three();
        nodes.worked("c:3");
        save(dir.path(), "a:1", &nodes).expect("save");
        save(dir.path(), "other:7420", &Nodes::single("other:7420")).expect("save another");
        assert_eq!(load(dir.path(), "a:1"), nodes);
        assert_eq!(load(dir.path(), "a:1").order(), ["c:3", "a:1", "b:2"]);
        nodes.worked("a:1");
        save(dir.path(), "a:1", &nodes).expect("save again");
        let text = std::fs::read_to_string(dir.path().join("nodes")).expect("read");
        assert_eq!(text.lines().filter(|l| l.starts_with("a:1 ")).count(), 1, "{text}");
        assert_eq!(load(dir.path(), "a:1").preferred(), "a:1");
        for i in 0..MAX_SERVERS + 5 {
            save(dir.path(), &format!("s{i}:1"), &Nodes::single(&format!("s{i}:1"))).expect("save");
        }
        let text = std::fs::read_to_string(dir.path().join("nodes")).expect("read");
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), MAX_SERVERS);
        assert_eq!(load(dir.path(), "a:1"), Nodes::single("a:1"), "the oldest server was dropped");
    }

    #[test]
    fn a_damaged_file_is_read_as_far_as_it_goes() {
        let lines = parse("# comment\nbroken\n\na:1 b:2 a:1 b:2\nonly:1 two:2\n");
        assert_eq!(lines, [("a:1".to_owned(), "b:2".to_owned(), vec!["a:1".to_owned(), "b:2".to_owned()])]);
    }
}
