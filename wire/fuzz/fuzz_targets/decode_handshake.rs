//! The plaintext handshake frames, from both ends: a hostile server's `ServerHello`
//! (decoded, then its version, nonce and RSA key checked: DER parsing of untrusted bytes)
//! and a hostile client's `ClientKey` (decoded, then unwrapped with the server key).
#![no_main]

use std::sync::OnceLock;

use classchat_wire::crypto::{self, ClientKey, ServerHello, ServerKey};
use classchat_wire::message;
use libfuzzer_sys::fuzz_target;

fn key() -> &'static (ServerKey, ServerHello) {
    static KEY: OnceLock<(ServerKey, ServerHello)> = OnceLock::new();
    KEY.get_or_init(|| {
        // Small, because it is generated once per run under the sanitizer; the server
        // side does not care about the size of its own key.
        let key = ServerKey::generate(1024).expect("generate a key");
        let hello = crypto::server_hello(&key, "fuzz");
        (key, hello)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = message::decode::<ServerHello>(data) {
        let _ = crypto::check_server_hello(&hello);
    }
    if let Ok(client_key) = message::decode::<ClientKey>(data) {
        let (key, hello) = key();
        // Never an error for a bad secret (implicit rejection); only for a bad shape.
        let result = crypto::server_accept(key, hello, &client_key);
        if client_key.version == classchat_wire::PROTOCOL_VERSION
            && client_key.nonce.len() == crypto::NONCE_LEN
        {
            assert!(result.is_ok(), "a well-formed ClientKey is accepted: {result:?}");
        } else {
            assert!(result.is_err());
        }
    }
});
