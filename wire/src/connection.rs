//! Frames and sealed messages over any `AsyncRead + AsyncWrite`, used by both ends.
//!
//! A [`Connection`] speaks plaintext frames until the handshake; [`Connection::accept`]
//! (server) or [`Connection::connect`] (client) turn it into a [`SecureConnection`], whose
//! [`SecureReader`] and [`SecureWriter`] halves can live in different tasks.

use std::future::Future;
use std::task::Poll;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::chunk::{self, ChunkRecord};
use crate::crypto::{self, ClientKey, Opener, Role, Sealer, ServerHello, ServerKey};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::room_record::{self, RoomKeyMsg, RoomRecord, RoomSlots};
use crate::{frame, message};

/// How much the read buffer grows by when it needs room and no frame length is known yet,
/// and what it starts with when bytes keep coming.
const READ_CHUNK: usize = 4096;
/// What a reader with nothing buffered reads first, into an array in its own future (so in
/// the connection's task: every connection pays this much, allocated or not). It holds a
/// whole sealed chat request, ack or pong (about 80–200 bytes), so most frames that arrive
/// on an idle connection take one read and one allocation of their own size.
const IDLE_READ: usize = 256;
/// The most a [`SecureWriter`] keeps allocated between flushes: room for a few sealed chat
/// frames (a delivery is about 210 bytes), so a connection that sends one at a time does not
/// allocate for each, while a large batch (a login's catch-up, a burst) is not kept for the
/// connection's life.
pub const WRITE_BUF_KEEP: usize = 1024;
/// The most plaintext a [`SecureWriter`] puts in one frame when it combines several queued
/// messages (a message larger than this travels alone). One frame then costs one IV, one
/// padding block and one MAC for ~75 typical deliveries, and a reader's work per frame stays
/// small.
pub const RECORD_BATCH: usize = 16 * 1024;
/// Frame limit while handshaking: the hello and key frames are under 2 KiB even with an
/// 8192-bit key, so a peer that has proved nothing yet cannot make us reserve 1 MiB.
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 16 * 1024;

/// Reads whole frames from a byte stream.
///
/// An idle connection holds no read buffer. When the frames read have all been taken and
/// the stream has nothing more ready, the buffer is let go; the wait for the next bytes
/// reads into a small array ([`IDLE_READ`]) and then allocates what the arriving frame
/// needs. While frames stream in back to back, one buffer serves many of them. (A 4 KiB
/// buffer held for the connection's life was a third of the server's memory per idle
/// connection; BENCHMARKS.md, connect.)
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame_len: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R, max_frame_len: usize) -> Self {
        Self { io, buf: BytesMut::new(), max_frame_len }
    }

    /// The next frame body; `Ok(None)` when the peer closed cleanly between frames.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<BytesMut>> {
        loop {
            if let Some(body) = frame::decode(&mut self.buf, self.max_frame_len)? {
                return Ok(Some(body));
            }
            if self.buf.is_empty() {
                // Between frames. Bytes that are already there go into the buffer in hand;
                // if there are none, the buffer goes, and the wait holds nothing.
                if self.buf.capacity() > 0 {
                    match self.read_ready().await {
                        Some(Ok(0)) => return Ok(None),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                        None => self.buf = BytesMut::new(),
                    }
                }
                if !self.read_idle().await? {
                    return Ok(None);
                }
                continue;
            }
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_CHUNK);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed mid-frame",
                )
                .into());
            }
        }
    }

    /// Reads into the buffer's spare room what the stream has ready; `None`, having read
    /// nothing, if that is nothing. Never waits.
    async fn read_ready(&mut self) -> Option<std::io::Result<usize>> {
        let mut read = std::pin::pin!(self.io.read_buf(&mut self.buf));
        // Dropping a read that is not ready loses nothing: tokio's reads are cancel-safe.
        std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// With nothing buffered: waits for bytes without holding a buffer, then allocates for
    /// what arrived. `false` at a clean end of stream.
    async fn read_idle(&mut self) -> Result<bool> {
        let mut first = [0u8; IDLE_READ];
        let n = self.io.read(&mut first).await?;
        let Some(got) = first.get(..n).filter(|got| !got.is_empty()) else {
            return Ok(false);
        };
        // The length is checked before anything is allocated for the frame.
        let frame_len = frame::total_len(got, self.max_frame_len)?.unwrap_or(frame::HEADER_LEN);
        // A full first read means more is probably waiting: room to stream. Otherwise room for
        // this frame (or for what arrived, if that was more than one frame).
        let capacity = if n == IDLE_READ { frame_len.max(READ_CHUNK) } else { frame_len.max(n) };
        self.buf = BytesMut::with_capacity(capacity);
        self.buf.extend_from_slice(got);
        Ok(true)
    }

    /// What the read buffer holds allocated: 0 while a reader waits between frames with
    /// nothing ready.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The stream and the bytes read past the last frame returned, to hand the stream
    /// over to another protocol (the relay of a peer connection).
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buf)
    }

    fn set_max_frame_len(&mut self, max: usize) {
        self.max_frame_len = max;
    }
}

/// Connection before (and during) the handshake.
#[derive(Debug)]
pub struct Connection<R, W> {
    reader: FrameReader<R>,
    writer: W,
    max_frame_len: usize,
}

impl<S: AsyncRead + AsyncWrite> Connection<ReadHalf<S>, WriteHalf<S>> {
    /// Wraps any bidirectional stream.
    pub fn new(stream: S, max_frame_len: usize) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self::from_parts(r, w, max_frame_len)
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Connection<R, W> {
    /// Wraps separately owned halves (e.g. `TcpStream::into_split`, which avoids a lock).
    pub fn from_parts(reader: R, writer: W, max_frame_len: usize) -> Self {
        let handshake_max = max_frame_len.min(HANDSHAKE_MAX_FRAME_LEN);
        Self { reader: FrameReader::new(reader, handshake_max), writer, max_frame_len }
    }

    /// Reads one plaintext frame and decodes it.
    async fn read_plain<T: DeserializeOwned>(&mut self, what: &str) -> Result<T> {
        let body = self
            .reader
            .read_frame()
            .await?
            .ok_or_else(|| Error::Closed(format!("peer closed before sending its {what}")))?;
        message::decode(&body).map_err(|e| Error::Protocol(format!("bad {what}: {e}")))
    }

    async fn write_plain<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let mut buf = BytesMut::new();
        frame::encode(&message::encode(msg)?, &mut buf, self.max_frame_len)?;
        self.writer.write_all(&buf).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Server side of the handshake: send the hello, take the client's key.
    /// The caller bounds the time this may take.
    pub async fn accept(self, key: &ServerKey, server_name: &str) -> Result<SecureConnection<R, W>> {
        self.accept_with(key, server_name, || {}).await
    }

    /// As [`Connection::accept`], calling `got_client_key` once the client's `ClientKey`
    /// frame has arrived, before the RSA work on it: from then on the peer is one that
    /// speaks the protocol (the server's admission uses it to tell idle peers apart).
    pub async fn accept_with(
        mut self,
        key: &ServerKey,
        server_name: &str,
        got_client_key: impl FnOnce(),
    ) -> Result<SecureConnection<R, W>> {
        let hello = crypto::server_hello(key, server_name);
        self.write_plain(&hello).await?;
        let client_key: ClientKey = self.read_plain("client key").await?;
        got_client_key();
        let keys = crypto::server_accept(key, &hello, &client_key)?;
        let (sealer, opener) = keys.split(Role::Server);
        Ok(self.secure(sealer, opener))
    }

    /// Client side of the handshake. `verify` sees the server's hello and key fingerprint
    /// before anything is sent, and refuses the server by returning an error.
    pub async fn connect(
        mut self,
        verify: impl FnOnce(&ServerHello, &Fingerprint) -> Result<()>,
    ) -> Result<(SecureConnection<R, W>, ServerHello, Fingerprint)> {
        let hello: ServerHello = self.read_plain("server hello").await?;
        let (server_key, fingerprint) = crypto::check_server_hello(&hello)?;
        verify(&hello, &fingerprint)?;
        let (client_key, keys) = crypto::client_key_exchange(&hello, &server_key)?;
        self.write_plain(&client_key).await?;
        let (sealer, opener) = keys.split(Role::Client);
        Ok((self.secure(sealer, opener.with_room_records()), hello, fingerprint))
    }

    fn secure(mut self, sealer: Sealer, opener: Opener) -> SecureConnection<R, W> {
        self.reader.set_max_frame_len(self.max_frame_len);
        SecureConnection {
            reader: SecureReader { frames: self.reader, opener, rest: BytesMut::new() },
            writer: SecureWriter::new(self.writer, sealer, self.max_frame_len),
        }
    }
}

/// An established session.
#[derive(Debug)]
pub struct SecureConnection<R, W> {
    pub reader: SecureReader<R>,
    pub writer: SecureWriter<W>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> SecureConnection<R, W> {
    pub fn split(self) -> (SecureReader<R>, SecureWriter<W>) {
        (self.reader, self.writer)
    }

    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        self.reader.recv().await
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        self.writer.send(msg).await
    }
}

/// Receiving half of a session.
///
/// A frame's plaintext holds one or more messages back to back (PROTOCOL.md section 4);
/// [`SecureReader::recv`] hands them out one at a time.
#[derive(Debug)]
pub struct SecureReader<R> {
    frames: FrameReader<R>,
    opener: Opener,
    /// The opened plaintext of the last frame that has not been decoded yet; empty (and
    /// unallocated) once it has all been taken.
    rest: BytesMut,
}

impl<R: AsyncRead + Unpin> SecureReader<R> {
    /// The next message; `Ok(None)` when the peer closed cleanly. Any error means the
    /// session is over. Cancel-safe.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        if !self.fill().await? {
            return Ok(None);
        }
        let (msg, used) = message::decode_first(&self.rest)?;
        self.taken(used);
        Ok(Some(msg))
    }

    /// The room keys the server has installed on this connection so far (slot, room, key);
    /// empty if it sent no room record yet.
    pub fn room_keys(&self) -> Vec<(u32, String, [u8; 32])> {
        self.opener
            .room_keys()
            .map(|k| k.iter().map(|(slot, room, key)| (slot, room.to_owned(), *key)).collect())
            .unwrap_or_default()
    }

    /// The next message as its MessagePack bytes, handed to `f` undecoded, for a reader
    /// that picks out what it needs itself (the load generator's receivers). Checked and
    /// delimited exactly as [`SecureReader::recv`] does. Cancel-safe.
    pub async fn recv_with<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        if !self.fill().await? {
            return Ok(None);
        }
        let len = message::value_len(&self.rest)?;
        let r = f(&self.rest[..len]);
        self.taken(len);
        Ok(Some(r))
    }

    /// The next message, with a `chunk` taken out of the frame's buffer as it is (no copy,
    /// no serde: [`chunk::split_chunk`]) and anything else decoded as `T`. For the bulk
    /// connections' receivers; checked exactly as [`SecureReader::recv`] does. Cancel-safe.
    pub async fn recv_chunk_or<T: DeserializeOwned>(&mut self) -> Result<Option<Received<T>>> {
        if !self.fill().await? {
            return Ok(None);
        }
        if let Some((start, end)) = chunk::split_chunk(&self.rest) {
            let mut data = self.rest.split_to(end);
            self.taken(0);
            data.advance(start);
            return Ok(Some(Received::Chunk(data.freeze())));
        }
        let (msg, used) = message::decode_first(&self.rest)?;
        self.taken(used);
        Ok(Some(Received::Msg(msg)))
    }

    /// Makes sure `rest` holds undecoded plaintext, reading and opening the next frame if
    /// it does not; `false` at a clean end of the stream.
    ///
    /// A client's reader also opens room records and takes the [`RoomKeyMsg`]s that install
    /// their keys out of the stream here (section 4.1), so callers never see them.
    async fn fill(&mut self) -> Result<bool> {
        loop {
            if self.rest.is_empty() {
                let Some(mut body) = self.frames.read_frame().await? else {
                    return Ok(false);
                };
                self.opener.open_frame(&mut body)?;
                if body.is_empty() {
                    return Err(Error::Protocol("a sealed frame with no message in it".into()));
                }
                self.rest = body;
            }
            if !(self.opener.takes_room_records() && room_record::is_room_key_msg(&self.rest)) {
                return Ok(true);
            }
            let len = message::value_len(&self.rest)?;
            self.opener.install_room_key(&self.rest[..len])?;
            self.taken(len);
        }
    }

    /// The stream and the raw bytes read past the last frame, to hand the stream over to
    /// another protocol (the relay of a peer connection). Fails if the last frame still
    /// holds messages not taken.
    pub fn into_raw(self) -> Result<(R, BytesMut)> {
        if !self.rest.is_empty() {
            return Err(Error::Protocol("messages were sent after the last expected one".into()));
        }
        Ok(self.frames.into_parts())
    }

    /// The first `used` bytes of `rest` were one message.
    fn taken(&mut self, used: usize) {
        self.rest.advance(used);
        if self.rest.is_empty() {
            // Lets the frame's allocation go (it may be shared with the read buffer).
            self.rest = BytesMut::new();
        }
    }
}

/// What [`SecureReader::recv_chunk_or`] received.
#[derive(Debug)]
pub enum Received<T> {
    /// The data of a `chunk` message.
    Chunk(Bytes),
    /// Any other message.
    Msg(T),
}

/// Sending half of a session. Messages can be queued and written in one go with
/// [`SecureWriter::flush`], so a busy connection pays one syscall for many messages. Queued
/// messages go into one frame, up to [`RECORD_BATCH`] bytes of plaintext, so they share one
/// IV, padding and MAC: the frame is sealed in place when it is full or at the flush.
#[derive(Debug)]
pub struct SecureWriter<W> {
    io: W,
    sealer: Sealer,
    /// The room keys this connection's slots hold, once the peer takes room records
    /// ([`SecureWriter::take_room_records`]); `None` before.
    rooms: Option<RoomSlots>,
    /// Sealed frames, then the open record (if any): [`crypto::RECORD_HEAD`] reserved bytes
    /// and the plaintext of the messages queued into it.
    buf: BytesMut,
    /// Where the open record starts in `buf`.
    open: Option<usize>,
    max_frame_len: usize,
}

impl<W: AsyncWrite + Unpin> SecureWriter<W> {
    fn new(io: W, sealer: Sealer, max_frame_len: usize) -> Self {
        Self { io, sealer, rooms: None, buf: BytesMut::new(), open: None, max_frame_len }
    }

    /// From now on [`SecureWriter::queue_room`] sends room records (the client said it
    /// takes them; PROTOCOL.md section 4.1).
    pub fn take_room_records(&mut self) {
        if self.rooms.is_none() {
            self.rooms = Some(RoomSlots::default());
        }
    }

    /// Queues a message sealed once for a whole room. A peer that takes room records gets it
    /// as a room record in a frame of its own (after the [`RoomKeyMsg`] that installs its
    /// key, if this connection does not have that key yet); any other peer gets its
    /// plaintext in an ordinary frame, as [`SecureWriter::queue_encoded`] would send it.
    pub fn queue_room(&mut self, record: &RoomRecord) -> Result<()> {
        let Some(rooms) = self.rooms.as_mut() else {
            return self.queue_encoded(record.plaintext());
        };
        if frame::check_len(record.frame_body_len(), self.max_frame_len).is_err() {
            return self.queue_encoded(record.plaintext());
        }
        let (slot, install) = rooms.slot_for(record.key());
        if install {
            self.queue(&RoomKeyMsg::RoomKey {
                slot,
                room: record.room().to_owned(),
                key: record.key().bytes().to_vec(),
            })?;
        }
        self.seal_open()?;
        self.sealer.seal_room_record(slot, record, &mut self.buf, self.max_frame_len)
    }

    /// Queues `msg` to be sealed and written at the next flush.
    pub fn queue<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let plaintext = message::encode(msg)?;
        self.queue_encoded(&plaintext)
    }

    /// Queues an already encoded message (e.g. one encoded once for many recipients). A
    /// message too large for one frame is refused here, and nothing else queued is lost.
    pub fn queue_encoded(&mut self, plaintext: &[u8]) -> Result<()> {
        frame::check_len(crypto::sealed_len(plaintext.len()), self.max_frame_len)?;
        if let Some(start) = self.open {
            let open_len = self.buf.len() - start - crypto::RECORD_HEAD;
            let joined = open_len + plaintext.len();
            if joined > RECORD_BATCH || crypto::sealed_len(joined) > self.max_frame_len {
                self.seal_open()?;
            }
        }
        if self.open.is_none() {
            self.open = Some(self.buf.len());
            self.buf.put_bytes(0, crypto::RECORD_HEAD);
        }
        self.buf.extend_from_slice(plaintext);
        Ok(())
    }

    /// Seals the open record, if there is one, into a frame.
    fn seal_open(&mut self) -> Result<()> {
        match self.open.take() {
            Some(start) => self.sealer.seal_record(&mut self.buf, start, self.max_frame_len),
            None => Ok(()),
        }
    }

    /// Makes room for `plaintext` more bytes of messages and their sealing, so queueing a
    /// batch whose size is known allocates once instead of growing the buffer step by step.
    pub fn reserve(&mut self, plaintext: usize) {
        let records = plaintext / RECORD_BATCH + 1;
        // Each record adds its length prefix, IV, up to a block of padding and its MAC.
        self.buf.reserve(plaintext + records * (frame::HEADER_LEN + crypto::sealed_len(0)));
    }

    /// Bytes queued and not yet written (sealed frames and open plaintext).
    pub fn queued_len(&self) -> usize {
        self.buf.len()
    }

    /// Seals what is queued and writes it. A buffer that grew past [`WRITE_BUF_KEEP`] is let
    /// go afterwards, so a connection keeps the memory of a large batch only while it sends one.
    pub async fn flush(&mut self) -> Result<()> {
        self.seal_open()?;
        if !self.buf.is_empty() {
            self.io.write_all(&self.buf).await?;
            self.buf.clear();
        }
        if self.buf.capacity() > WRITE_BUF_KEEP {
            self.buf = BytesMut::new();
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Seals `chunks` together and writes them after anything queued, one `chunk` message
    /// per frame, exactly the frames [`SecureWriter::queue`] would make of them one by one;
    /// their CBC chains run in lockstep (`Sealer::seal_records`), and each buffer goes to
    /// the socket as it is. Empties `chunks`.
    pub async fn send_chunks(&mut self, chunks: &mut Vec<ChunkRecord>) -> Result<()> {
        let mut records: Vec<BytesMut> = chunks.drain(..).map(ChunkRecord::into_record).collect();
        self.seal_open()?;
        self.sealer.seal_records(&mut records, self.max_frame_len)?;
        if !self.buf.is_empty() {
            self.io.write_all(&self.buf).await?;
            self.buf.clear();
        }
        for record in &records {
            self.io.write_all(record).await?;
        }
        self.io.flush().await?;
        Ok(())
    }

    /// What the write buffer holds allocated.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Queues and writes one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        self.queue(msg)?;
        self.flush().await
    }

    /// Shuts down the write direction (the peer sees a clean close).
    pub async fn shutdown(&mut self) -> Result<()> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The stream, to hand it over to another protocol. Fails if anything queued was not
    /// flushed.
    pub fn into_inner(self) -> Result<W> {
        if !self.buf.is_empty() || self.open.is_some() {
            return Err(Error::Protocol("a writer handed over with unsent messages".into()));
        }
        Ok(self.io)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Waker};

    use tokio::io::{AsyncWriteExt, DuplexStream, duplex};

    use super::*;
    use crate::frame::MAX_FRAME_LEN;

    /// Polls `fut` once: what a reader does when nothing more arrives.
    fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
        pin!(fut).poll(&mut Context::from_waker(Waker::noop()))
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame::encode(body, &mut out, MAX_FRAME_LEN).expect("frame");
        out.to_vec()
    }

    fn body(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// A reader over one end of a pipe with room for `pipe` bytes, and the other end.
    fn reader(pipe: usize) -> (FrameReader<DuplexStream>, DuplexStream) {
        let (ours, theirs) = duplex(pipe);
        (FrameReader::new(ours, MAX_FRAME_LEN), theirs)
    }

    #[tokio::test]
    async fn a_reader_waiting_between_frames_holds_no_buffer() {
        let (mut frames, mut peer) = reader(1 << 20);
        assert_eq!(frames.buffer_capacity(), 0, "nothing before the first read");
        // Smaller than the first read, larger, and larger than a read chunk.
        for len in [150, IDLE_READ - frame::HEADER_LEN, 700, 3 * READ_CHUNK] {
            let sent = body(len, len as u8);
            peer.write_all(&framed(&sent)).await.expect("write");
            let got = frames.read_frame().await.expect("read").expect("a frame");
            assert_eq!(&got[..], &sent[..], "{len} bytes");
            assert!(poll_once(frames.read_frame()).is_pending(), "nothing more was sent");
            assert_eq!(frames.buffer_capacity(), 0, "idle after a {len}-byte frame");
        }
    }

    #[tokio::test]
    async fn frames_streaming_in_back_to_back_share_one_buffer() {
        let (mut frames, mut peer) = reader(1 << 20);
        let sent: Vec<Vec<u8>> = (0..60).map(|i| body(100 + i, i as u8)).collect();
        peer.write_all(&sent.iter().flat_map(|b| framed(b)).collect::<Vec<u8>>()).await.expect("write");
        let mut got = Vec::new();
        for _ in &sent {
            got.push(frames.read_frame().await.expect("read").expect("a frame"));
            assert!(frames.buffer_capacity() > 0 || got.len() == sent.len(), "kept while bytes are waiting");
        }
        assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), sent);
        // A body that starts right after the previous one (and its successor's prefix) was cut
        // from the same allocation: no allocation or copy for it.
        let fresh = got
            .windows(2)
            .filter(|w| w[0].as_ptr().wrapping_add(w[0].len() + frame::HEADER_LEN) != w[1].as_ptr())
            .count();
        let bytes: usize = sent.iter().map(|b| b.len() + frame::HEADER_LEN).sum();
        assert!(fresh <= bytes / READ_CHUNK + 1, "{fresh} allocations for {bytes} bytes");
        assert!(poll_once(frames.read_frame()).is_pending());
        assert_eq!(frames.buffer_capacity(), 0, "idle once they are all read");
    }

    #[tokio::test]
    async fn a_frame_split_across_many_tiny_reads_decodes() {
        // The pipe passes at most 3 bytes at a time.
        let (mut frames, mut peer) = reader(3);
        let sent = [body(1000, 1), body(0, 0), body(90, 2), body(IDLE_READ * 2, 3)];
        let wire: Vec<u8> = sent.iter().flat_map(|b| framed(b)).collect();
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(7) {
                peer.write_all(piece).await.expect("write");
            }
        });
        for expected in &sent {
            let got = frames.read_frame().await.expect("read").expect("a frame");
            assert_eq!(&got[..], &expected[..]);
        }
        writer.await.expect("writer");
        assert!(frames.read_frame().await.expect("clean end").is_none());
        assert_eq!(frames.buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn an_oversized_prefix_on_an_idle_reader_allocates_nothing() {
        let (ours, mut peer) = duplex(64);
        let mut frames = FrameReader::new(ours, 1000);
        peer.write_all(&1001u32.to_be_bytes()).await.expect("write");
        let err = frames.read_frame().await.expect_err("over the limit");
        assert!(matches!(err, Error::FrameTooLarge { size: 1001, max: 1000 }), "{err:?}");
        assert_eq!(frames.buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn the_end_of_the_stream_after_buffered_frames_is_clean_and_inside_one_is_not() {
        let (mut frames, mut peer) = reader(1 << 16);
        let sent = [body(300, 1), body(300, 2)];
        peer.write_all(&sent.iter().flat_map(|b| framed(b)).collect::<Vec<u8>>()).await.expect("write");
        drop(peer);
        for expected in &sent {
            assert_eq!(&frames.read_frame().await.expect("read").expect("a frame")[..], &expected[..]);
        }
        assert!(frames.read_frame().await.expect("clean end").is_none());

        let (mut frames, mut peer) = reader(1 << 16);
        let mut wire = framed(&body(300, 1));
        wire.extend_from_slice(&framed(&body(300, 2))[..200]);
        peer.write_all(&wire).await.expect("write");
        drop(peer);
        assert!(frames.read_frame().await.expect("read").is_some());
        let err = frames.read_frame().await.expect_err("cut inside the second frame");
        assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{err:?}");
    }

    fn secure_pair() -> (SecureWriter<DuplexStream>, SecureReader<DuplexStream>) {
        let keys = crypto::derive_keys(&[1; 32], &[2; 32], &[3; 32]);
        let (sealer, _) = keys.split(Role::Client);
        let (_, opener) = keys.split(Role::Server);
        let (a, b) = duplex(1 << 20);
        let writer = SecureWriter::new(a, sealer, MAX_FRAME_LEN);
        (writer, SecureReader { frames: FrameReader::new(b, MAX_FRAME_LEN), opener, rest: BytesMut::new() })
    }

    /// A message of about `len` bytes once encoded.
    fn msg(tag: u32, len: usize) -> (u32, serde_bytes::ByteBuf) {
        (tag, serde_bytes::ByteBuf::from(vec![tag as u8; len]))
    }

    #[tokio::test]
    async fn a_writer_keeps_a_small_buffer_and_lets_a_large_batch_go() {
        let (mut writer, mut reader) = secure_pair();
        writer.queue(&msg(0, 100)).expect("queue");
        writer.flush().await.expect("flush");
        let small = writer.buffer_capacity();
        assert!(small > 0 && small <= WRITE_BUF_KEEP, "one small frame's room is kept: {small}");

        for i in 1..=40 {
            writer.queue(&msg(i, 200)).expect("queue");
        }
        assert!(writer.buffer_capacity() > WRITE_BUF_KEEP);
        writer.flush().await.expect("flush");
        assert_eq!(writer.buffer_capacity(), 0, "the batch's buffer is gone after the flush");

        // Everything arrived, in order.
        for i in 0..=40 {
            let got: (u32, serde_bytes::ByteBuf) = reader.recv().await.expect("read").expect("a message");
            assert_eq!(got, msg(i, if i == 0 { 100 } else { 200 }));
        }
    }

    #[tokio::test]
    async fn reserve_sizes_the_buffer_for_a_batch_once() {
        let (mut writer, mut reader) = secure_pair();
        let batch: Vec<_> = (0..40).map(|i| msg(i, 200)).collect();
        let encoded: Vec<Vec<u8>> = batch.iter().map(|m| message::encode(m).expect("encode")).collect();
        writer.reserve(encoded.iter().map(Vec::len).sum());
        let reserved = writer.buffer_capacity();
        for e in &encoded {
            writer.queue_encoded(e).expect("queue");
        }
        writer.seal_open().expect("seal");
        assert_eq!(writer.buffer_capacity(), reserved, "the batch and its sealing fit what was reserved");
        writer.flush().await.expect("flush");
        for m in batch {
            let got: (u32, serde_bytes::ByteBuf) = reader.recv().await.expect("read").expect("a message");
            assert_eq!(got, m);
        }
    }

    #[tokio::test]
    async fn queued_messages_share_frames_of_at_most_a_record_batch() {
        let (mut writer, mut reader) = secure_pair();
        // 200 messages of ~210 bytes: 42,000 bytes, so three frames of up to 16 KiB.
        let sent: Vec<_> = (0..200).map(|i| msg(i, 204)).collect();
        for m in &sent {
            writer.queue(m).expect("queue");
        }
        writer.flush().await.expect("flush");
        let encoded = message::encode(&sent[0]).expect("encode").len();
        let per_frame = RECORD_BATCH / encoded;
        for (i, m) in sent.iter().enumerate() {
            let got: (u32, serde_bytes::ByteBuf) = reader.recv().await.expect("read").expect("a message");
            assert_eq!(&got, m);
            // Frames are counted by the opener's sequence number.
            assert_eq!(reader.opener.seq(), (i / per_frame + 1) as u64, "message {i}");
        }
        assert_eq!(reader.opener.seq(), sent.len().div_ceil(per_frame) as u64);
        assert_eq!(reader.rest.capacity(), 0, "nothing is held once every message is taken");
        assert!(poll_once(reader.recv::<(u32, serde_bytes::ByteBuf)>()).is_pending());
    }

    #[tokio::test]
    async fn a_large_message_travels_alone_and_one_too_large_is_refused_without_losing_the_rest() {
        let (mut writer, mut reader) = secure_pair();
        writer.queue(&msg(1, 10)).expect("queue");
        writer.queue(&msg(2, RECORD_BATCH + 100)).expect("a large message");
        writer.queue(&msg(3, 10)).expect("queue");
        let err = writer.queue(&msg(4, MAX_FRAME_LEN)).expect_err("over the frame limit");
        assert!(matches!(err, Error::FrameTooLarge { .. }), "{err:?}");
        writer.queue(&msg(5, 10)).expect("queue");
        writer.flush().await.expect("flush");
        for (tag, len, frames) in [(1, 10, 1), (2, RECORD_BATCH + 100, 2), (3, 10, 3), (5, 10, 3)] {
            let got: (u32, serde_bytes::ByteBuf) = reader.recv().await.expect("read").expect("a message");
            assert_eq!(got, msg(tag, len));
            assert_eq!(reader.opener.seq(), frames, "message {tag}");
        }
    }

    #[tokio::test]
    async fn recv_with_hands_out_each_message_of_a_frame_as_its_encoding() {
        let (mut writer, mut reader) = secure_pair();
        let sent: Vec<_> = (0..5).map(|i| msg(i, 10 + i as usize)).collect();
        for m in &sent {
            writer.queue(m).expect("queue");
        }
        writer.flush().await.expect("flush");
        for m in &sent {
            let got = reader.recv_with(<[u8]>::to_vec).await.expect("read").expect("a message");
            assert_eq!(got, message::encode(m).expect("encode"));
        }
        assert_eq!(reader.opener.seq(), 1, "all five came in one frame");
        assert!(poll_once(reader.recv_with(<[u8]>::len)).is_pending());
    }

    #[tokio::test]
    async fn a_frame_with_no_message_or_with_a_broken_one_after_a_good_one_ends_the_session() {
        for plaintext in [Vec::new(), [message::encode(&msg(1, 5)).expect("encode"), vec![0xc1]].concat()] {
            let (mut writer, mut reader) = secure_pair();
            writer.sealer.seal_frame(&plaintext, &mut writer.buf, MAX_FRAME_LEN).expect("seal");
            writer.flush().await.expect("flush");
            if !plaintext.is_empty() {
                let first: (u32, serde_bytes::ByteBuf) =
                    reader.recv().await.expect("read").expect("the good one");
                assert_eq!(first, msg(1, 5));
            }
            assert!(reader.recv::<(u32, serde_bytes::ByteBuf)>().await.is_err(), "{plaintext:?}");
        }
    }
}
