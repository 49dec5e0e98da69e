//! Room records (PROTOCOL.md section 4.1): `Opener::open_frame` of a client that takes them,
//! and `Opener::install_room_key`, with fixed session and room keys.
//!
//! The first byte picks a mode:
//! - 0 mod 3: open the rest as a frame body (a room record if its length is 4 mod 16). Nobody
//!   can forge the tag, so it must fail.
//! - 1 mod 3: the next two bytes name a bit; seal the rest as a room record's plaintext,
//!   check it opens to exactly that, then flip the named bit and check the tampered frame
//!   fails.
//! - 2 mod 3: the rest as a `room_key` message: installing it may fail, never panic.
#![no_main]

use bytes::BytesMut;
use classchat_wire::crypto::{self, Opener, Role, Sealer};
use classchat_wire::frame::HEADER_LEN;
use classchat_wire::room_record::{RoomKey, RoomKeyMsg, RoomRecord};
use libfuzzer_sys::fuzz_target;

const ROOM_KEY: [u8; 32] = [0x44; 32];

fn halves() -> (Sealer, Opener) {
    let keys = crypto::derive_keys(&[0x11; 32], &[0x22; 32], &[0x33; 32]);
    let (sealer, _) = keys.split(Role::Server);
    let (_, opener) = keys.split(Role::Client);
    let mut opener = opener.with_room_records();
    let install = classchat_wire::message::encode(&RoomKeyMsg::RoomKey {
        slot: 0,
        room: "lab".into(),
        key: ROOM_KEY.to_vec(),
    })
    .expect("encode");
    opener.install_room_key(&install).expect("install");
    (sealer, opener)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (mut sealer, mut opener) = halves();
    match mode % 3 {
        0 => {
            let mut body = BytesMut::from(rest);
            assert!(opener.open_frame(&mut body).is_err(), "a forged frame opened");
        }
        1 => {
            let Some((bit, plaintext)) = rest.split_first_chunk::<2>() else { return };
            let record = RoomRecord::seal("lab", &RoomKey::from_bytes(ROOM_KEY), bytes::Bytes::copy_from_slice(plaintext));
            let mut frame = BytesMut::new();
            sealer.seal_room_record(0, &record, &mut frame, usize::MAX).expect("seal");
            let mut body = frame.split_off(HEADER_LEN);
            let tampered_at = usize::from(u16::from_be_bytes(*bit)) % (body.len() * 8);
            let mut tampered = body.clone();
            tampered[tampered_at / 8] ^= 1 << (tampered_at % 8);
            opener.open_frame(&mut body).expect("a room record opens");
            assert_eq!(&body[..], plaintext);
            // A fresh opener at seq 0, so only the flipped bit differs.
            let (_, mut fresh) = halves();
            assert!(fresh.open_frame(&mut tampered).is_err(), "a tampered room record opened");
        }
        _ => {
            let _ = opener.install_room_key(rest);
        }
    }
});
