//! The nodes of one server for the failover tests: every node on its own 127.0.0.1 port,
//! all with the same server key (one fingerprint, one invite).
//!
//! Stand-in until the multi-node server (PostgreSQL + NATS, issue 18) is in: today each
//! node is a single-node server with a data directory of its own, and what a shared
//! database would give the others (the accounts, the saved sessions, the messages) they
//! get from a copy of the data of the node that stops. Only [`Cluster::start`] and
//! [`Cluster::stop_node`] know this: with real nodes on one database, `start` starts them
//! on it and `stop_node` just stops the one node; the tests stay as they are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use classchat_wire::invite::{Invite, Node};

use super::{TestServer, any_port, fingerprint_of, server_key};

pub struct Cluster {
    dir: PathBuf,
    rt: tokio::runtime::Handle,
    /// One per node; `None` while the node is stopped.
    nodes: Vec<Option<TestServer>>,
    /// The nodes' addresses, fixed for the cluster's life (a stopped node keeps its port
    /// in the invite, as a crashed machine keeps its name).
    pub addrs: Vec<SocketAddr>,
}

impl Cluster {
    /// Starts `n` nodes under `dir`, all with the test server key.
    pub fn start(rt: &tokio::runtime::Runtime, dir: &Path, n: usize) -> Self {
        let nodes: Vec<Option<TestServer>> = (0..n)
            .map(|i| Some(TestServer::start(rt, &node_dir(dir, i), server_key(), any_port())))
            .collect();
        let addrs = nodes.iter().flatten().map(|s| s.addr).collect();
        Self { dir: dir.to_path_buf(), rt: rt.handle().clone(), nodes, addrs }
    }

    /// `127.0.0.1:PORT` of node `i`.
    pub fn addr(&self, i: usize) -> String {
        self.addrs[i].to_string()
    }

    /// The invite a student gets: every node, in order, and the one fingerprint.
    pub fn invite(&self) -> String {
        let nodes = self.addrs.iter().map(|a| Node::new(a.ip().to_string(), a.port())).collect();
        Invite::new(nodes, fingerprint_of(server_key())).expect("a valid invite").to_string()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// Stops node `i` (cleanly: what it acknowledged is stored), and the other nodes go
    /// on serving its users. Stand-in for the shared database: the other running nodes
    /// stop first (no client may reach one with stale data), take a copy of node `i`'s
    /// data, and start again on their ports.
    pub fn stop_node(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&j| j != i && self.is_running(j)).collect();
        for &j in &others {
            if let Some(mut node) = self.nodes[j].take() {
                node.stop();
            }
        }
        if let Some(mut node) = self.nodes[i].take() {
            node.stop();
        }
        for &j in &others {
            let to = node_dir(&self.dir, j);
            std::fs::remove_dir_all(&to).expect("remove the node's old data");
            copy_data(&node_dir(&self.dir, i), &to);
            self.nodes[j] = Some(TestServer::start_on(&self.rt, &to, server_key(), self.addrs[j]));
        }
    }
}

fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node{}", i + 1))
}

/// A copy of a node's data: the database through SQLite (a consistent snapshot even
/// while the stopped node's store thread still checkpoints), the rest file by file.
fn copy_data(from: &Path, to: &Path) {
    let db = classchat_server::DB_FILE;
    copy_dir(from, to, &|name| !name.starts_with(db));
    let source = rusqlite::Connection::open(from.join(db)).expect("open the node's database");
    let target = to.join(db);
    let target = target.to_str().expect("a UTF-8 temp path");
    source.execute("VACUUM INTO ?1", [target]).expect("snapshot the node's database");
}

fn copy_dir(from: &Path, to: &Path, wanted: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the node's data").flatten() {
        if !wanted(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&path, &target, &|_| true);
        } else if kind.is_file() {
            match std::fs::copy(&path, &target) {
                Ok(_) => {}
                // Gone between the listing and the copy: a temporary file of the node's.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copy {}: {e}", path.display()),
            }
        }
        // Sockets (the admin socket) and the like belong to the running node only.
    }
}
