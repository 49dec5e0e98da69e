//! `message::decode::<ClientMsg>` on arbitrary bytes (what a server decodes after a frame
//! opens). Must never panic; whatever decodes must survive encode/decode unchanged.
#![no_main]

use classchat_wire::{ClientMsg, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = message::decode::<ClientMsg>(data) {
        let bytes = message::encode(&msg).expect("a decoded message encodes");
        let again: ClientMsg = message::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again, msg);
    }
});
