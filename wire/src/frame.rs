//! Length-delimited framing: a 4-byte big-endian length, then that many bytes of body.
//!
//! This module is sans-I/O: it works on byte buffers. [`crate::connection`] drives it over
//! a socket.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::{Error, Result};

/// Default upper bound on a frame body, in bytes.
///
/// Big enough for a file chunk plus sealing overhead, small enough that a hostile length
/// prefix cannot make a peer allocate much. Checked before any allocation, both ways.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Takes one complete frame body off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame ("not enough bytes yet" is
/// not an error), and [`Error::FrameTooLarge`] as soon as the length prefix announces more
/// than `max` bytes: the body is never buffered. When only a prefix has arrived, `buf` is
/// grown just enough to hold the frame, so the caller's next read fills it in one go.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>> {
    let Some(total) = total_len(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    Ok(Some(buf.split_to(total - HEADER_LEN)))
}

/// The length of the frame at the front of `bytes`, prefix included, once the prefix has
/// arrived (`Ok(None)` before that). [`Error::FrameTooLarge`] if the body would exceed
/// `max`, so a caller can size a buffer from the answer.
pub fn total_len(bytes: &[u8], max: usize) -> Result<Option<usize>> {
    let Some(&[a, b, c, d]) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > max {
        return Err(Error::FrameTooLarge { size: len, max });
    }
    Ok(Some(HEADER_LEN + len))
}

/// Appends `body` to `dst` as one frame.
pub fn encode(body: &[u8], dst: &mut BytesMut, max: usize) -> Result<()> {
    let len = check_len(body.len(), max)?;
    dst.reserve(HEADER_LEN + body.len());
    dst.put_u32(len);
    dst.extend_from_slice(body);
    Ok(())
}

/// Checks an outgoing body length against `max` and converts it for the prefix.
pub fn check_len(len: usize, max: usize) -> Result<u32> {
    if len > max {
        return Err(Error::FrameTooLarge { size: len, max });
    }
    u32::try_from(len).map_err(|_| Error::FrameTooLarge { size: len, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_byte_exact() {
        let mut buf = BytesMut::new();
        encode(b"hello", &mut buf, MAX_FRAME_LEN).expect("encode");
        assert_eq!(&buf[..], b"\x00\x00\x00\x05hello");
        let body = decode(&mut buf, MAX_FRAME_LEN).expect("decode").expect("whole frame");
        assert_eq!(&body[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut buf = BytesMut::from(&b"\x00\x00"[..]);
        assert!(decode(&mut buf, 16).expect("ok").is_none());
        buf.extend_from_slice(b"\x00\x03ab");
        assert!(decode(&mut buf, 16).expect("ok").is_none());
        buf.extend_from_slice(b"cX");
        let body = decode(&mut buf, 16).expect("ok").expect("frame");
        assert_eq!(&body[..], b"abc");
        assert_eq!(&buf[..], b"X");
    }

    #[test]
    fn empty_frame_is_allowed() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00"[..]);
        let body = decode(&mut buf, 16).expect("ok").expect("frame");
        assert!(body.is_empty());
    }

    #[test]
    fn oversized_prefix_is_refused_without_allocating() {
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        let cap_before = buf.capacity();
        match decode(&mut buf, MAX_FRAME_LEN) {
            Err(Error::FrameTooLarge { size, max }) => {
                assert_eq!(size, u32::MAX as usize);
                assert_eq!(max, MAX_FRAME_LEN);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert_eq!(buf.capacity(), cap_before, "nothing was reserved for the body");
    }

    #[test]
    fn limit_is_inclusive_and_applies_to_encoding() {
        let mut buf = BytesMut::new();
        encode(&[0u8; 8], &mut buf, 8).expect("exactly the limit is fine");
        assert!(matches!(
            encode(&[0u8; 9], &mut BytesMut::new(), 8),
            Err(Error::FrameTooLarge { size: 9, max: 8 })
        ));
        let mut one_over = BytesMut::from(&b"\x00\x00\x00\x09"[..]);
        assert!(matches!(decode(&mut one_over, 8), Err(Error::FrameTooLarge { .. })));
    }
}
