//! The end-to-end data a client decodes from what the server relays (another user wrote
//! it, the server only stored it): a DM `Envelope`, a `KeyGrant`, a directory entry's
//! public key (DER parsing of untrusted bytes) and the sealed identity-key backup.
//!
//! Properties: nothing panics; whatever decodes survives encode/decode unchanged; an
//! envelope, even made to name our key, never opens without the key's MAC; a backup
//! never opens without the backup key.
#![no_main]

use std::sync::OnceLock;

use classchat_wire::e2e::{self, DmKey, Envelope, KeyGrant, PublicIdentity};
use classchat_wire::message;
use libfuzzer_sys::fuzz_target;

fn key() -> &'static DmKey {
    static KEY: OnceLock<DmKey> = OnceLock::new();
    KEY.get_or_init(DmKey::generate)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::from_bytes(data) {
        assert_eq!(Envelope::from_bytes(&envelope.to_bytes()), Ok(envelope.clone()));
        let forged = Envelope { v: e2e::VERSION, key_id: key().id.to_vec(), ..envelope };
        assert!(forged.open_unsigned_bytes(key(), "alice", "bob").is_err(), "a forged envelope opened");
    }
    if let Ok(grant) = message::decode::<KeyGrant>(data) {
        let bytes = message::encode(&grant).expect("a decoded grant encodes");
        assert_eq!(message::decode::<KeyGrant>(&bytes).expect("an encoded grant decodes"), grant);
    }
    if let Ok(public) = PublicIdentity::from_der(data) {
        assert_eq!(public.der(), data);
    }
    assert!(e2e::open_backup(data, &[0x42; 32]).is_err(), "a forged backup opened");
});
