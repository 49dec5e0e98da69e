//! A server of several nodes, from the app's side: a multi-address invite pasted on the
//! connect screen, a first node that is down, and the node in use going away while the
//! user is signed in. Real servers on 127.0.0.1 sharing one key ([`common::cluster`]).

mod common;

use classchat::nodes;
use classchat_wire::{Conv, Request, Response};
use common::cluster::Cluster;
use common::*;
use egui_kittest::kittest::Queryable;

#[test]
fn with_the_first_node_down_the_app_connects_through_the_second_and_remembers_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(&rt, &dir.path().join("cluster"), 2);
    cluster.stop_node(0);
    let app_dir = dir.path().join("alice");
    let mut h = app_with(&rt, &app_dir, |c| c.server = None);

    type_into(&mut h, "Server address or invite", &cluster.invite());
    assert_eq!(h.state().login_form().server, cluster.addr(0), "filed under the first address");
    assert!(
        has_text(&h, &format!("2 addresses: {}, {}", cluster.addr(0), cluster.addr(1))),
        "the form lists the nodes: {:?}",
        labels(&h)
    );
    submit_login(&mut h, "alice", "correct horse", true);
    wait_until(&mut h, "alice to be signed in", |h| {
        assert!(h.state().trust_prompt().is_none(), "one fingerprint covers every node");
        h.state().model.me.as_ref().is_some_and(|me| me.name == "alice")
    });
    wait_for_text(&mut h, &format!("Connected to {}", cluster.addr(1)));

    // The app remembers both addresses and that the second one worked, under the
    // server's name; a restart of the app resumes the session through it.
    let remembered = nodes::load(&app_dir, &cluster.addr(0));
    assert_eq!(remembered.addrs(), [cluster.addr(0), cluster.addr(1)]);
    assert_eq!(remembered.order(), [cluster.addr(1), cluster.addr(0)], "the node that worked goes first");
    drop(h);
    let mut h = app_with(&rt, &app_dir, |c| {
        c.server = Some(cluster.addr(0));
        c.user = Some("alice".into());
        c.auto_resume = true;
    });
    wait_for_text(&mut h, &format!("Connected to {}", cluster.addr(1)));
    assert!(h.state().model.me.as_ref().is_some_and(|me| me.name == "alice"), "resumed without a password");
}

#[test]
fn when_the_node_in_use_stops_the_app_moves_to_the_next_node_and_loses_nothing() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(&rt, &dir.path().join("cluster"), 2);
    let bob = rt.block_on(wire_user(&cluster.addr(0), "bob"));
    // Opened with the invite, as a link from the instructor would open it.
    let mut h = app_with(&rt, &dir.path().join("alice"), |c| {
        c.server = None;
        c.invite = Some(cluster.invite());
    });
    submit_login(&mut h, "alice", "correct horse", true);
    wait_for_text(&mut h, &format!("Connected to {}", cluster.addr(0)));
    wait_for_text(&mut h, "#lobby");
    let lobby =
        Request::SendRoom { room: "lobby".into(), text: "before the failover".into(), reply_to: None };
    rt.block_on(bob.client.request(lobby)).expect("bob sends");
    wait_for_text(&mut h, "before the failover");
    drop(bob);

    // Node 1 goes away; nobody touches the app.
    cluster.stop_node(0);
    wait_for_text(&mut h, &format!("Connected to {}", cluster.addr(1)));
    assert!(h.state().model.me.as_ref().is_some_and(|me| me.name == "alice"), "the same session, resumed");
    let remembered = nodes::load(&dir.path().join("alice"), &cluster.addr(0));
    assert_eq!(remembered.preferred(), cluster.addr(1), "the next start of the app tries node 2 first");

    // On node 2, both ways work, and the catch-up repeated nothing.
    let mut bob = rt.block_on(wire_login(&cluster.addr(1), "bob", "wire-password-1"));
    let lobby = Request::SendRoom { room: "lobby".into(), text: "after the failover".into(), reply_to: None };
    let reply = rt.block_on(bob.client.request(lobby));
    assert!(matches!(reply, Ok(Response::Sent { .. })), "{reply:?}");
    wait_for_text(&mut h, "after the failover");
    assert_eq!(h.query_all_by_label("before the failover").count(), 1, "shown exactly once");
    assert_eq!(h.state().model.current, Some(Conv::Room { name: "lobby".into() }));
    type_into(&mut h, "Message", "hello from node 2");
    h.key_press(egui::Key::Enter);
    wait_until(&mut h, "alice's message to be acknowledged", |h| h.state().model.pending_count() == 0);
    rt.block_on(bob.expect_text("hello from node 2"));
}
