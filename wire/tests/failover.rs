//! `failover::connect_any` against real handshakes on loopback: a node that is down is
//! passed over, the key is checked under the server's name whichever node answers, and a
//! node with another key stops the walk instead of being skipped.

mod common;

use classchat_wire::connection::Connection;
use classchat_wire::failover::{self, Connected};
use classchat_wire::{ClientConfig, ClientMsg, Error, KnownServers, MAX_FRAME_LEN, TrustPolicy};
use common::{accept_session, accept_tcp, listen, other_key, server_key, within};

/// A loopback address where nothing listens (a node that is down): bound, then closed.
async fn dead_addr() -> String {
    let (listener, addr) = listen().await;
    drop(listener);
    addr
}

/// The server's name in the known-servers store: its invite's first address.
const SERVER: &str = "node1.example.edu:7420";

fn known() -> TrustPolicy {
    let mut store = KnownServers::in_memory();
    store.trust(SERVER, *server_key().fingerprint()).expect("in-memory trust");
    TrustPolicy::KnownServers(store)
}

#[tokio::test]
async fn a_node_that_is_down_is_passed_over_and_the_key_is_checked_under_the_servers_name() {
    let (listener, live) = listen().await;
    let server = tokio::spawn(async move {
        let mut session = accept_session(&listener, server_key()).await;
        while let Ok(Some(_)) = session.recv::<ClientMsg>().await {}
    });
    let nodes = [dead_addr().await, live.clone()];
    let config = ClientConfig::new(SERVER, known());
    let Connected { client, addr, index, .. } =
        within("connect_any", failover::connect_any(&config, &nodes)).await.expect("the second node");
    assert_eq!((addr.as_str(), index), (live.as_str(), 1));
    assert_eq!(client.fingerprint(), server_key().fingerprint());
    // Bulk connections (file transfers) go to the node that answered.
    assert_eq!(client.bulk_config().addr, live);
    client.close().await;
    within("server ends", server).await.expect("server task");
}

#[tokio::test]
async fn a_node_with_another_key_stops_the_walk() {
    let (impostor, impostor_addr) = listen().await;
    let (honest, honest_addr) = listen().await;
    tokio::spawn(async move {
        let (r, w) = accept_tcp(&impostor).await.into_split();
        // The client hangs up once it sees the key: the handshake ends in an error here.
        let _ = Connection::from_parts(r, w, MAX_FRAME_LEN).accept(other_key(), "impostor").await;
    });
    let config = ClientConfig::new(SERVER, known());
    let nodes = [impostor_addr, honest_addr];
    let result = within("connect_any", failover::connect_any(&config, &nodes)).await;
    match result {
        Err(Error::ServerKeyChanged { host, actual, .. }) => {
            assert_eq!(host, SERVER, "the warning names the server, not the node");
            assert_eq!(&actual, other_key().fingerprint());
        }
        other => panic!("expected a changed key, got {other:?}"),
    }
    // The second node was never dialled.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(200), honest.accept()).await;
    assert!(waited.is_err(), "the walk went on past a changed key");
}

#[tokio::test]
async fn every_node_down_is_the_last_nodes_error_and_no_list_means_the_config_address() {
    let nodes = [dead_addr().await, dead_addr().await];
    let config = ClientConfig::new(SERVER, TrustPolicy::AnyKey);
    match within("connect_any", failover::connect_any(&config, &nodes)).await {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected connection refused, got {other:?}"),
    }
    let alone = ClientConfig::new(dead_addr().await, TrustPolicy::AnyKey);
    let result = within("connect_any", failover::connect_any(&alone, &[])).await;
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
}
