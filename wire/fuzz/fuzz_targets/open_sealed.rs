//! `Opener::open` with fixed keys.
//!
//! The first byte picks a mode:
//! - even: open the rest as a sealed body. Nobody can forge the MAC, so it must fail.
//! - odd: the next two bytes name a bit; seal the rest as a plaintext, check it opens to
//!   exactly that, then flip the named bit and check the tampered frame fails.
#![no_main]

use bytes::BytesMut;
use classchat_wire::crypto::{self, Opener, Role, Sealer};
use classchat_wire::frame::HEADER_LEN;
use libfuzzer_sys::fuzz_target;

fn halves() -> (Sealer, Opener) {
    let keys = crypto::derive_keys(&[0x11; 32], &[0x22; 32], &[0x33; 32]);
    let (sealer, _) = keys.split(Role::Client);
    let (_, opener) = keys.split(Role::Server);
    (sealer, opener)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (mut sealer, mut opener) = halves();
    if mode % 2 == 0 {
        let mut body = rest.to_vec();
        assert!(opener.open(&mut body).is_err(), "a forged frame opened");
        return;
    }
    let Some((bit, plaintext)) = rest.split_first_chunk::<2>() else { return };
    let mut frame = BytesMut::new();
    sealer.seal_frame(plaintext, &mut frame, usize::MAX).expect("seal");
    let mut body = frame[HEADER_LEN..].to_vec();
    let tampered_at = usize::from(u16::from_be_bytes(*bit)) % (body.len() * 8);
    let mut tampered = body.clone();
    tampered[tampered_at / 8] ^= 1 << (tampered_at % 8);
    assert_eq!(opener.open(&mut body).expect("a sealed frame opens"), plaintext);
    // A fresh opener at seq 0, so only the flipped bit differs.
    let (_, mut fresh) = halves();
    assert!(fresh.open(&mut tampered).is_err(), "a tampered frame opened");
});
