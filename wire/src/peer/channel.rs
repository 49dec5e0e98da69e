//! Frames and sealed records between peers (PROTOCOL.md section 17.5).
//!
//! The frames are those of the server protocol (a 4-byte big-endian length, then the
//! body); after the handshake every body is sealed with the session's [`Sealer`] /
//! [`Opener`] exactly like a server session's frame. A record's plaintext starts with a
//! tag byte: [`TAG_DATA`] and raw file content, or [`TAG_CONTROL`] and one MessagePack
//! [`PeerMsg`]. Content is read from the file straight into the frame buffer after the
//! reserved head and sealed in place, so a byte of content is copied once on each side.
//!
//! Frames are read with exact reads (the length, then the body), never past the frame,
//! so a stream can change hands between the handshake and the session.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PeerError;
use super::proto::{PEER_MAX_FRAME_LEN, PeerMsg, TAG_CONTROL, TAG_DATA};
use crate::connection::HANDSHAKE_MAX_FRAME_LEN;
use crate::crypto::{Opener, RECORD_HEAD, Sealer};
use crate::error::{Error, Result};
use crate::{frame, message};

/// Reads one frame body of at most `max` bytes; `Ok(None)` at a clean end of the stream
/// before a frame starts. The length is checked before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> Result<Option<BytesMut>> {
    let mut head = [0u8; frame::HEADER_LEN];
    let mut got = 0;
    while got < head.len() {
        let n = io.read(&mut head[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-frame").into());
        }
        got += n;
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(Error::FrameTooLarge { size: len, max });
    }
    let mut body = BytesMut::zeroed(len);
    io.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Reads one plaintext handshake message.
pub async fn read_plain<R: AsyncRead + Unpin, T: DeserializeOwned>(io: &mut R, what: &str) -> Result<T> {
    let body = read_frame(io, HANDSHAKE_MAX_FRAME_LEN)
        .await?
        .ok_or_else(|| Error::Closed(format!("the peer closed before sending its {what}")))?;
    message::decode(&body).map_err(|e| PeerError::Protocol(format!("bad {what}: {e}")).into())
}

/// Writes one plaintext handshake message.
pub async fn write_plain<W: AsyncWrite + Unpin, T: Serialize>(io: &mut W, msg: &T) -> Result<()> {
    let mut buf = BytesMut::new();
    frame::encode(&message::encode(msg)?, &mut buf, HANDSHAKE_MAX_FRAME_LEN)?;
    io.write_all(&buf).await?;
    io.flush().await?;
    Ok(())
}

/// The sending half of a peer session: seals records into buffers.
#[derive(Debug)]
pub struct RecordSealer {
    sealer: Sealer,
}

impl RecordSealer {
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer }
    }

    /// Appends the sealed frame of a control message to `dst`.
    pub fn control(&mut self, msg: &PeerMsg, dst: &mut BytesMut) -> Result<()> {
        let start = dst.len();
        dst.put_bytes(0, RECORD_HEAD);
        dst.put_u8(TAG_CONTROL);
        dst.extend_from_slice(&message::encode(msg)?);
        self.sealer.seal_record(dst, start, PEER_MAX_FRAME_LEN)
    }

    /// A buffer for a data record of `len` content bytes: `buf[data_start()..]` is where
    /// the content goes; then [`RecordSealer::seal_data`].
    pub fn data_buffer(len: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(RECORD_HEAD + 1 + len + 64);
        buf.put_bytes(0, RECORD_HEAD);
        buf.put_u8(TAG_DATA);
        buf.resize(RECORD_HEAD + 1 + len, 0);
        buf
    }

    /// Where a data buffer's content starts.
    pub const fn data_start() -> usize {
        RECORD_HEAD + 1
    }

    /// Seals a buffer from [`RecordSealer::data_buffer`] in place into one frame.
    pub fn seal_data(&mut self, buf: &mut BytesMut) -> Result<()> {
        self.sealer.seal_record(buf, 0, PEER_MAX_FRAME_LEN)
    }
}

/// One opened record.
#[derive(Debug)]
pub enum Record<'a> {
    Data(&'a [u8]),
    Control(PeerMsg),
}

/// The receiving half of a peer session.
#[derive(Debug)]
pub struct RecordOpener {
    opener: Opener,
}

impl RecordOpener {
    pub fn new(opener: Opener) -> Self {
        Self { opener }
    }

    /// Checks and opens one frame body in place. Any error ends the session.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<Record<'a>> {
        let plain = self.opener.open(body)?;
        match plain.split_first() {
            Some((&TAG_DATA, data)) => Ok(Record::Data(data)),
            Some((&TAG_CONTROL, msg)) => Ok(Record::Control(message::decode(msg)?)),
            _ => Err(PeerError::Protocol("a record with an unknown tag".into()).into()),
        }
    }

    /// Reads and opens the next record, which must be a control message.
    pub async fn recv_control<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Option<PeerMsg>> {
        let Some(mut body) = read_frame(io, PEER_MAX_FRAME_LEN).await? else {
            return Ok(None);
        };
        match self.open(&mut body)? {
            Record::Control(msg) => Ok(Some(msg)),
            Record::Data(_) => Err(PeerError::Protocol("content before the transfer started".into()).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Role, derive_keys};

    #[tokio::test]
    async fn data_and_control_records_round_trip_and_frames_are_read_exactly() {
        let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
        let mut sealer = RecordSealer::new(keys.split(Role::Client).0);
        let mut opener = RecordOpener::new(keys.split(Role::Server).1);
        let mut wire = BytesMut::new();
        sealer.control(&PeerMsg::Get { offset: 5 }, &mut wire).expect("control");
        let mut data = RecordSealer::data_buffer(1000);
        data[RecordSealer::data_start()..].copy_from_slice(&[9u8; 1000]);
        sealer.seal_data(&mut data).expect("seal");
        wire.extend_from_slice(&data);
        wire.extend_from_slice(b"trailing bytes of someone else");
        let mut io = &wire[..];
        assert_eq!(opener.recv_control(&mut io).await.expect("read"), Some(PeerMsg::Get { offset: 5 }));
        let mut body = read_frame(&mut io, PEER_MAX_FRAME_LEN).await.expect("read").expect("a frame");
        assert!(matches!(opener.open(&mut body).expect("open"), Record::Data(d) if d == [9u8; 1000]));
        assert_eq!(io, b"trailing bytes of someone else", "nothing read past the frame");
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_allocating() {
        let wire = (u32::MAX).to_be_bytes();
        let err = read_frame(&mut &wire[..], PEER_MAX_FRAME_LEN).await.expect_err("too large");
        assert!(matches!(err, Error::FrameTooLarge { .. }));
    }
}
