//! `message::decode_first::<ServerMsg>` on arbitrary bytes, message after message (what a client decodes). Must never
//! panic; whatever decodes must survive encode/decode unchanged.
#![no_main]

use classchat_wire::{ServerMsg, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A frame's plaintext holds messages back to back; decode them the way a reader does.
    let mut rest = data;
    while let Ok((msg, used)) = message::decode_first::<ServerMsg>(rest) {
        assert!(used > 0 && used <= rest.len(), "a message takes some of what is there");
        rest = &rest[used..];
        let bytes = message::encode(&msg).expect("a decoded message encodes");
        let again: ServerMsg = message::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again, msg);
    }
});
