//! `frame::decode` on arbitrary bytes, with a limit the input also chooses.
//!
//! Properties: it never panics; every frame it returns is within the limit; an oversized
//! prefix is `FrameTooLarge` and nothing else; and re-encoding the frames it took off
//! gives back exactly the bytes it consumed.
#![no_main]

use bytes::BytesMut;
use classchat_wire::{Error, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((limit, stream)) = data.split_first_chunk::<2>() else { return };
    let max = usize::from(u16::from_be_bytes(*limit));
    let mut buf = BytesMut::from(stream);
    let mut reencoded = BytesMut::new();
    loop {
        match frame::decode(&mut buf, max) {
            Ok(Some(body)) => {
                assert!(body.len() <= max);
                frame::encode(&body, &mut reencoded, max).expect("a decoded frame re-encodes");
            }
            Ok(None) => break,
            Err(Error::FrameTooLarge { size, max: m }) => {
                assert_eq!(m, max);
                assert!(size > max);
                break;
            }
            Err(e) => panic!("frame::decode failed with {e:?}"),
        }
    }
    assert_eq!(&reencoded[..], &stream[..reencoded.len()], "frames round-trip byte-exact");
    assert_eq!(&buf[..], &stream[reencoded.len()..], "what was not consumed is left as it was");
});
