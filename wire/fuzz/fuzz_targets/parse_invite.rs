//! What a person pastes or a link opens (`Invite::parse`), and the parts it is made of
//! that also take input from the network: `Fingerprint::parse` (the `fp` of an mDNS
//! announcement) and `split_host_port` (a typed server address).
//!
//! Properties: nothing panics; port 0 is never accepted; whatever parses prints to text
//! that parses back to the same thing.
#![no_main]

use classchat_wire::Fingerprint;
use classchat_wire::invite::{self, Invite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(fp) = Fingerprint::parse(text) {
        assert_eq!(Fingerprint::parse(&fp.to_hex()), Some(fp));
        assert_eq!(Fingerprint::parse(&fp.to_string()), Some(fp));
    }
    if let Some((host, port)) = invite::split_host_port(text) {
        assert_ne!(port, 0, "port 0 accepted in {text:?}");
        let joined = invite::join_host_port(&host, port);
        assert_eq!(invite::split_host_port(&joined), Some((host, port)));
    }
    if let Ok(parsed) = Invite::parse(text) {
        assert!(parsed.nodes().iter().all(|n| n.port != 0), "port 0 accepted in {text:?}");
        assert!((1..=invite::MAX_NODES).contains(&parsed.nodes().len()), "{text:?}");
        assert_eq!(Invite::parse(&parsed.to_string()), Ok(parsed));
    }
});
