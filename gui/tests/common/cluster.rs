//! The nodes of one server for the failover tests: every node on its own 127.0.0.1 port,
//! all with the same server key (one fingerprint, one invite), on one throwaway PostgreSQL
//! store and joined by a throwaway NATS bus (`classchat_server::services`), as an
//! operator runs them (README, "Running more than one node").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use classchat_server::services::nats::Nats;
use classchat_server::services::postgres::Postgres;
use classchat_wire::invite::{Invite, Node};

use super::{TestServer, any_port, fingerprint_of, server_key};

pub struct Cluster {
    dir: PathBuf,
    /// One per node; `None` while the node is stopped.
    nodes: Vec<Option<TestServer>>,
    /// The nodes' addresses, fixed for the cluster's life (a stopped node keeps its port
    /// in the invite, as a crashed machine keeps its name).
    pub addrs: Vec<SocketAddr>,
    // Dropped after the nodes (fields drop in order).
    _nats: Nats,
    _pg: Postgres,
}

impl Cluster {
    /// Starts `n` nodes under `dir`, all with the test server key, on one new PostgreSQL
    /// database and one new NATS server.
    pub fn start(rt: &tokio::runtime::Runtime, dir: &Path, n: usize) -> Self {
        let pg = Postgres::start().expect("a throwaway PostgreSQL (apt-get install postgresql)");
        let nats = Nats::start().expect("a throwaway nats-server (apt-get install nats-server)");
        let nodes: Vec<Option<TestServer>> = (0..n)
            .map(|i| {
                let (store, bus) = (pg.url(), nats.url());
                Some(TestServer::start_with(rt, &node_dir(dir, i), server_key(), any_port(), move |c| {
                    c.store = Some(store);
                    c.bus = bus;
                    c.node_name = format!("node{}", i + 1);
                }))
            })
            .collect();
        let addrs = nodes.iter().flatten().map(|s| s.addr).collect();
        Self { dir: dir.to_path_buf(), nodes, addrs, _nats: nats, _pg: pg }
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

    /// Stops node `i`; the other nodes go on serving its users from the shared database.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            node.stop();
        }
    }

    /// Where node `i` keeps its key and its own files.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        node_dir(&self.dir, i)
    }
}

fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node{}", i + 1))
}
