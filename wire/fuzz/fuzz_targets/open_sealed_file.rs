//! End-to-end encrypted file content (`sealed_file`) with a fixed key.
//!
//! The first byte picks a mode:
//! - 0: parse the rest as a file secret's plaintext; it must never panic.
//! - 1: open the rest as a sealed record, first and last; nobody can forge the MAC, so
//!   it must fail.
//! - otherwise: seal the rest (cut to a record) as record 0 and check it opens to exactly
//!   that, then check that the same bytes fail as another index or with the other
//!   "last" flag.
#![no_main]

use classchat_wire::sealed_file::{FileKey, FileSecret, RECORD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(key) = FileKey::from_bytes(&[0x5a; 64]) else { return };
    let mut out = Vec::new();
    match mode {
        0 => {
            let _ = FileSecret::from_plaintext(rest, rest.len() as u64);
        }
        1 => {
            assert!(key.open_record(0, true, rest, &mut out).is_err(), "a forged record opened");
            assert!(out.is_empty(), "nothing is written for a record that fails");
        }
        _ => {
            let plain = &rest[..rest.len().min(RECORD_LEN)];
            let mut sealed = Vec::new();
            key.seal_record(0, true, plain, &mut sealed);
            key.open_record(0, true, &sealed, &mut out).expect("a sealed record opens");
            assert_eq!(out, plain);
            assert!(key.open_record(1, true, &sealed, &mut Vec::new()).is_err(), "moved to another index");
            assert!(key.open_record(0, false, &sealed, &mut Vec::new()).is_err(), "no longer the last");
        }
    }
});
