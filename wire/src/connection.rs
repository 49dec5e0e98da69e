//! Frames and sealed messages over any `AsyncRead + AsyncWrite`, used by both ends.
//!
//! A [`Connection`] speaks plaintext frames until the handshake; [`Connection::accept`]
//! (server) or [`Connection::connect`] (client) turn it into a [`SecureConnection`], whose
//! [`SecureReader`] and [`SecureWriter`] halves can live in different tasks.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::crypto::{self, ClientKey, Opener, Role, Sealer, ServerHello, ServerKey};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::{frame, message};

/// How much the read buffer grows by when it needs room and no frame length is known yet.
const READ_CHUNK: usize = 4096;
/// Frame limit while handshaking: the hello and key frames are under 2 KiB even with an
/// 8192-bit key, so a peer that has proved nothing yet cannot make us reserve 1 MiB.
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 16 * 1024;

/// Reads whole frames from a byte stream.
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
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_CHUNK);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-frame")
                        .into())
                };
            }
        }
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
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
    pub async fn accept(mut self, key: &ServerKey, server_name: &str) -> Result<SecureConnection<R, W>> {
        let hello = crypto::server_hello(key, server_name);
        self.write_plain(&hello).await?;
        let client_key: ClientKey = self.read_plain("client key").await?;
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
        Ok((self.secure(sealer, opener), hello, fingerprint))
    }

    fn secure(mut self, sealer: Sealer, opener: Opener) -> SecureConnection<R, W> {
        self.reader.set_max_frame_len(self.max_frame_len);
        SecureConnection {
            reader: SecureReader { frames: self.reader, opener },
            writer: SecureWriter {
                io: self.writer,
                sealer,
                buf: BytesMut::new(),
                max_frame_len: self.max_frame_len,
            },
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
#[derive(Debug)]
pub struct SecureReader<R> {
    frames: FrameReader<R>,
    opener: Opener,
}

impl<R: AsyncRead + Unpin> SecureReader<R> {
    /// The next message; `Ok(None)` when the peer closed cleanly. Any error means the
    /// session is over. Cancel-safe.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(mut body) = self.frames.read_frame().await? else {
            return Ok(None);
        };
        let plaintext = self.opener.open(&mut body)?;
        Ok(Some(message::decode(plaintext)?))
    }
}

/// Sending half of a session. Messages can be queued and written in one go with
/// [`SecureWriter::flush`], so a busy connection pays one syscall for many frames.
#[derive(Debug)]
pub struct SecureWriter<W> {
    io: W,
    sealer: Sealer,
    buf: BytesMut,
    max_frame_len: usize,
}

impl<W: AsyncWrite + Unpin> SecureWriter<W> {
    /// Seals `msg` into the outgoing buffer without writing it.
    pub fn queue<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let plaintext = message::encode(msg)?;
        self.queue_encoded(&plaintext)
    }

    /// Seals an already encoded message (e.g. one encoded once for many recipients).
    pub fn queue_encoded(&mut self, plaintext: &[u8]) -> Result<()> {
        self.sealer.seal_frame(plaintext, &mut self.buf, self.max_frame_len)
    }

    /// Bytes queued and not yet written.
    pub fn queued_len(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.io.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.io.flush().await?;
        Ok(())
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
}
