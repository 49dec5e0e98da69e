//! `message::decode::<ServerMsg>` on arbitrary bytes (what a client decodes). Must never
//! panic; whatever decodes must survive encode/decode unchanged.
#![no_main]

use classchat_wire::{ServerMsg, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = message::decode::<ServerMsg>(data) {
        let bytes = message::encode(&msg).expect("a decoded message encodes");
        let again: ServerMsg = message::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again, msg);
    }
});
