//! `message::decode_first::<ClientMsg>` on arbitrary bytes, message after message (what a server decodes after a frame
//! opens). Must never panic; whatever decodes must survive encode/decode unchanged.
#![no_main]

use classchat_wire::{ClientMsg, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A frame's plaintext holds messages back to back; decode them the way a reader does.
    let mut rest = data;
    while let Ok((msg, used)) = message::decode_first::<ClientMsg>(rest) {
        assert!(used > 0 && used <= rest.len(), "a message takes some of what is there");
        rest = &rest[used..];
        let bytes = message::encode(&msg).expect("a decoded message encodes");
        let again: ClientMsg = message::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again, msg);
    }
});
