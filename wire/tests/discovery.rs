//! mDNS on the loopback interface only: a server announced here is found by a browser.

use std::time::{Duration, Instant};

use classchat_wire::Fingerprint;
use classchat_wire::discovery::{Browser, Scope, announce};

#[test]
fn an_announced_server_is_found_with_its_name_port_and_fingerprint() {
    let fp = Fingerprint::of_der(b"discovery test key");
    // A port nobody uses in this test binary, so parallel runs do not see each other's.
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let _announcement = announce("Room 101 test", port, &fp, Scope::Loopback).expect("announce");
    let mut browser = Browser::start(Scope::Loopback).expect("browse");
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        if let Some(s) = browser.poll().iter().find(|s| s.addr.ends_with(&format!(":{port}"))) {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "the announced server was not discovered within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(found.name, "Room 101 test");
    assert_eq!(found.addr, format!("127.0.0.1:{port}"));
    assert_eq!(found.fingerprint, Some(fp));
}
