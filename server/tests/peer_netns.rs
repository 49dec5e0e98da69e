//! Peer-to-peer fetches between two network namespaces (issue 15): the real server on the
//! host end of a veth link, the sharer and the fetcher as processes in their own
//! namespaces. Run through `classchat-bench peer --netns` (which creates the namespaces
//! and removes them afterwards, also on failure), on a small file.
//!
//! Without root or the `ip` command the bench reports `skipped` with the reason; these
//! tests then print it and pass without checking anything, as they cannot.

use std::process::Command;

use serde_json::Value;

/// Runs the scenario; `None` (after printing why) when namespaces are not available here.
fn run(block_direct: bool) -> Option<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_classchat-bench"));
    cmd.args(["--rsa-bits", "2048", "peer", "--netns", "--mib", "8", "--runs", "1"]);
    if block_direct {
        cmd.arg("--block-direct");
    }
    let out = cmd.output().expect("run classchat-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "classchat-bench peer --netns failed");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("\"scenario\":\"peer\""))
        .map(str::to_owned)
        .expect("the scenario's JSON line");
    let v: Value = serde_json::from_str(&line).expect("json");
    if let Some(why) = v["skipped"].as_str() {
        eprintln!("SKIPPED: network namespaces are not available here: {why}");
        return None;
    }
    Some(v)
}

#[test]
fn a_direct_fetch_between_two_namespaces_does_not_pass_through_the_server() {
    let Some(v) = run(false) else { return };
    assert_eq!(v["routes"][0], "direct", "{v}");
    assert_eq!(v["verified"], true, "{v}");
    // The server's own counters: nothing relayed, no file content carried.
    assert_eq!(v["server_relayed_bytes"], 0, "{v}");
    assert_eq!(v["server_bulk_bytes"], 0, "{v}");
    // And the sharer's link to the host (where the server is) carried only chat: far
    // less than the 8 MiB that went over the direct link.
    let link = v["sharer_link_bytes"].as_u64().expect("link bytes");
    assert!(link < 1 << 20, "{link} bytes crossed the sharer's link to the host: {v}");
}

#[test]
fn with_the_direct_path_blocked_the_relay_delivers_the_same_bytes() {
    let Some(v) = run(true) else { return };
    assert_eq!(v["routes"][0], "relayed", "{v}");
    assert_eq!(v["verified"], true, "{v}");
    let relayed = v["server_relayed_bytes"].as_u64().expect("relayed bytes");
    assert!(relayed >= 8 << 20, "the relay carried the sealed content: {v}");
    assert_eq!(v["server_bulk_bytes"], 0, "{v}");
}
