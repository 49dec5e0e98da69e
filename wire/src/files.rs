//! File transfers: safe file names, and the client side of bulk connections.
//!
//! A file moves over a *bulk connection* of its own (PROTOCOL.md section 15): a second
//! TCP connection to the same port with the same handshake, which then attaches to a
//! transfer by the token the chat connection was given. Chat therefore never waits
//! behind a file.
//!
//! - [`Uploader`] / [`Downloader`]: one bulk connection each, chunk by chunk.
//! - [`upload_path`] / [`download_path`]: a whole file from or to disk, resuming where
//!   an earlier attempt stopped, with reading, hashing and writing on a blocking thread
//!   so they overlap with the sealing and the network.
//! - [`upload_sealed_path`] / [`download_sealed_path`]: the same for a file sent to a
//!   person end to end encrypted ([`crate::sealed_file`]): sealed record by record on the
//!   way up, checked and decrypted on the way down.
//! - `Client::upload_file`, `Client::download_file`, `Client::answer_offer`,
//!   `Client::send_file`, `Client::upload_from`, `Client::download_to`: the same through
//!   a logged-in [`Client`].
//!
//! To cancel a transfer, drop its future: the server keeps what it received, and the
//! next attempt resumes from there.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::chunk::{ChunkRecord, SEAL_BATCH, SEND_CHUNK_LEN};
use crate::client::{Client, ClientConfig, open_session};
use crate::connection::{Received, SecureReader, SecureWriter};
use crate::error::{Error, Result};
use crate::message::{
    ClientMsg, Conv, FileId, FileInfo, MAX_CHUNK_LEN, MAX_FILE_NAME_LEN, Request, RequestId, Response,
    ServerMsg,
};
use crate::sealed_file::{
    FileKey, FileSecret, RECORD_LEN, SEALED_RECORD_LEN, record_count, record_plain_len, sealed_record_len,
    sealed_size,
};

/// Chunks waiting between the network task and the disk thread of a download. With
/// [`MAX_CHUNK_LEN`] chunks this bounds a download's buffered data to 2 MiB.
const PIPELINE_DEPTH: usize = 4;
/// Batches of [`SEAL_BATCH`] chunks of [`SEND_CHUNK_LEN`] waiting between an upload's disk
/// thread and its network task. With the batch being read and the one being sealed, an
/// upload holds at most 3 × 8 × 256 KiB = 6 MiB.
const BATCHES_IN_FLIGHT: usize = 1;
/// Sealed bytes queued before the uploader writes them to the socket.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;
/// Buffer of the sealed downloader's file writer (it writes 64 KiB records).
const FILE_BUFFER: usize = 1024 * 1024;
/// Buffer of the plain downloader's file writer: small chunks are gathered, while whole
/// chunks (512 KiB from this server) are larger and go straight to the file, not copied
/// through the buffer first.
const CHUNK_FILE_BUFFER: usize = 64 * 1024;
/// Request ids on a bulk connection: the attach, then (uploads) the finish.
const ATTACH_ID: RequestId = 1;
const FINISH_ID: RequestId = 2;

/// A safe file name made from one received over the network, for saving it or storing it.
///
/// Keeps only the last path component (either separator, so `../../etc/passwd` becomes
/// `passwd` and `C:\x` becomes `x`), drops control characters (NUL included), replaces
/// characters Windows forbids (`<>:"|?*`) with `_`, trims spaces and dots at both ends
/// (so `.` and `..` vanish and nothing is hidden), prefixes Windows device names
/// (`CON`, `NUL`, `COM1`, …) with `_`, and cuts the result to [`MAX_FILE_NAME_LEN`]
/// bytes at a character boundary, keeping a short extension. An empty result is `file`.
pub fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut out = truncate_keeping_extension(trimmed, MAX_FILE_NAME_LEN);
    let stem = out.split('.').next().unwrap_or_default().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        out.insert(0, '_');
        out = truncate_keeping_extension(&out, MAX_FILE_NAME_LEN);
    }
    if out.is_empty() { "file".to_owned() } else { out }
}

/// `name` cut to at most `max` bytes on a character boundary; an extension of up to 16
/// bytes survives the cut.
fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = match name.rfind('.') {
        Some(i) if name.len() - i <= 16 && i > 0 => &name[i..],
        _ => "",
    };
    let mut end = max - ext.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", &name[..end])
}

/// Where [`download_path`] keeps a download until it is complete and verified.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// `UploadFile` accepted: the file's id and the token to attach a bulk connection with.
/// Keep it to resume an interrupted upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTicket {
    pub file: FileId,
    pub token: Vec<u8>,
}

/// `DownloadFile` allowed: what the file is, and the token to download it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadTicket {
    pub file: FileInfo,
    pub token: Vec<u8>,
}

/// Waits for the reply to `id` on a bulk connection. Pings need no answer there.
async fn bulk_reply(
    reader: &mut SecureReader<OwnedReadHalf>,
    id: RequestId,
    idle: std::time::Duration,
) -> Result<Response> {
    loop {
        let msg = tokio::time::timeout(idle, reader.recv::<ServerMsg>())
            .await
            .map_err(|_| Error::Closed(format!("server silent for {idle:?}")))??;
        match msg {
            None => return Err(Error::Closed("server closed the connection".into())),
            Some(ServerMsg::Ok { id: got, body }) if got == id => return Ok(body),
            Some(ServerMsg::Err { id: got, code, message }) if got == id => {
                return Err(Error::Server { code, message });
            }
            Some(ServerMsg::Event { event: crate::Event::Disconnect { reason } }) => {
                return Err(Error::Closed(format!("server: {reason}")));
            }
            Some(ServerMsg::Ping { .. } | ServerMsg::Event { .. }) => {}
            Some(other) => {
                return Err(Error::Protocol(format!("unexpected on a bulk connection: {other:?}")));
            }
        }
    }
}

/// One bulk connection attached to an upload.
#[derive(Debug)]
pub struct Uploader {
    reader: SecureReader<OwnedReadHalf>,
    writer: SecureWriter<OwnedWriteHalf>,
    offset: u64,
    idle: std::time::Duration,
}

impl Uploader {
    /// Opens a bulk connection and attaches it to the upload of `token`. The server says
    /// how much it already holds: continue from [`Uploader::offset`].
    pub async fn attach(config: &ClientConfig, token: &[u8]) -> Result<Uploader> {
        let (mut reader, mut writer, _, _) = open_session(config).await?;
        let attach = Request::AttachUpload { token: token.to_vec() };
        writer.send(&ClientMsg::Request { id: ATTACH_ID, body: attach }).await?;
        match bulk_reply(&mut reader, ATTACH_ID, config.idle_timeout).await? {
            Response::Attached { offset } => {
                Ok(Uploader { reader, writer, offset, idle: config.idle_timeout })
            }
            other => Err(Error::Protocol(format!("expected attached, got {other:?}"))),
        }
    }

    /// Bytes of the file the server has, or will have once queued chunks are written.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Sends the next `data.len()` bytes of the file (at most [`MAX_CHUNK_LEN`]).
    pub async fn send(&mut self, data: Vec<u8>) -> Result<()> {
        if data.len() > MAX_CHUNK_LEN {
            return Err(Error::Protocol(format!("a chunk is at most {MAX_CHUNK_LEN} bytes")));
        }
        self.offset += data.len() as u64;
        self.writer.queue(&ClientMsg::Chunk { data })?;
        if self.writer.queued_len() >= WRITE_BATCH_BYTES {
            self.writer.flush().await?;
        }
        Ok(())
    }

    /// Sends the next chunks of the file, sealed together, and writes them to the socket
    /// now (after anything [`Uploader::send`] queued). Empties `chunks`.
    pub async fn send_chunks(&mut self, chunks: &mut Vec<ChunkRecord>) -> Result<()> {
        self.offset += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        self.writer.send_chunks(chunks).await
    }

    /// Writes every queued chunk to the socket now ([`Uploader::send`] batches them).
    pub async fn flush(&mut self) -> Result<()> {
        self.writer.flush().await
    }

    /// Ends the upload: the server checks `sha256` against what it received and stores
    /// the file. A mismatch is [`Error::Server`] with `hash_mismatch`.
    pub async fn finish(mut self, sha256: &[u8]) -> Result<FileInfo> {
        let finish = Request::FinishUpload { sha256: sha256.to_vec() };
        self.writer.send(&ClientMsg::Request { id: FINISH_ID, body: finish }).await?;
        // Storing ends with an fsync of the whole file; give it more than the usual wait.
        match bulk_reply(&mut self.reader, FINISH_ID, self.idle.max(std::time::Duration::from_secs(120)))
            .await?
        {
            Response::File { file } => Ok(file),
            other => Err(Error::Protocol(format!("expected file, got {other:?}"))),
        }
    }
}

/// What a [`Downloader`] received next.
#[derive(Debug)]
pub enum DownloadStep {
    /// The next bytes of the file.
    Chunk(Bytes),
    /// The whole file was sent; `sha256` in it is the hash of the complete file.
    Done(FileInfo),
}

/// One bulk connection attached to a download.
#[derive(Debug)]
pub struct Downloader {
    reader: SecureReader<OwnedReadHalf>,
    // Held open: closing our sending side would tell the server we left.
    _writer: SecureWriter<OwnedWriteHalf>,
    offset: u64,
    idle: std::time::Duration,
    done: bool,
}

impl Downloader {
    /// Opens a bulk connection and asks for the file of `token` from byte `offset`.
    pub async fn attach(config: &ClientConfig, token: &[u8], offset: u64) -> Result<Downloader> {
        let (reader, mut writer, _, _) = open_session(config).await?;
        let attach = Request::AttachDownload { token: token.to_vec(), offset };
        writer.send(&ClientMsg::Request { id: ATTACH_ID, body: attach }).await?;
        Ok(Downloader { reader, _writer: writer, offset, idle: config.idle_timeout, done: false })
    }

    /// Bytes received so far, counting from the start of the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next chunk, or the end. While the file is still being uploaded this waits for
    /// the uploader (the server keeps the connection alive meanwhile).
    pub async fn next(&mut self) -> Result<DownloadStep> {
        if self.done {
            return Err(Error::Protocol("the download is over".into()));
        }
        loop {
            let msg = tokio::time::timeout(self.idle, self.reader.recv_chunk_or::<ServerMsg>())
                .await
                .map_err(|_| Error::Closed(format!("server silent for {:?}", self.idle)))??;
            // A chunk comes out of the frame's buffer as it is; one encoded some other way
            // (serde still reads it) is taken as well.
            let msg = match msg {
                Some(Received::Chunk(data)) => return Ok(self.chunk(data)),
                Some(Received::Msg(ServerMsg::Chunk { data })) => return Ok(self.chunk(Bytes::from(data))),
                Some(Received::Msg(msg)) => msg,
                None => return Err(Error::Closed("server closed the connection".into())),
            };
            match msg {
                ServerMsg::Ok { id: ATTACH_ID, body: Response::File { file } } => {
                    self.done = true;
                    return Ok(DownloadStep::Done(file));
                }
                ServerMsg::Err { id: ATTACH_ID, code, message } => {
                    self.done = true;
                    return Err(Error::Server { code, message });
                }
                ServerMsg::Event { event: crate::Event::Disconnect { reason } } => {
                    return Err(Error::Closed(format!("server: {reason}")));
                }
                ServerMsg::Ping { .. } | ServerMsg::Event { .. } => {}
                other => return Err(Error::Protocol(format!("unexpected in a download: {other:?}"))),
            }
        }
    }

    fn chunk(&mut self, data: Bytes) -> DownloadStep {
        self.offset += data.len() as u64;
        DownloadStep::Chunk(data)
    }
}

/// Uploads the file at `path` for the upload of `token`, starting where the server's
/// copy ends (so a second call resumes an interrupted one). The file is read and hashed
/// on a blocking thread while the previous chunks are sealed and sent. `progress` sees
/// the number of bytes the server holds or has been sent, from the resume point on.
pub async fn upload_path(
    config: &ClientConfig,
    token: &[u8],
    path: &Path,
    progress: impl FnMut(u64) + Send,
) -> Result<FileInfo> {
    let path = path.to_owned();
    upload_with(config, token, progress, move |start, tx| read_and_hash(&path, start, tx)).await
}

/// [`upload_path`] for a file sent end to end encrypted: the content of `path` (the
/// first `sealed.size` bytes, as announced) goes up sealed under `sealed`'s key
/// ([`crate::sealed_file`]), announced with [`sealed_size`] bytes. Sealing is
/// deterministic, so a second call resumes where the server's copy ends.
pub async fn upload_sealed_path(
    config: &ClientConfig,
    token: &[u8],
    path: &Path,
    sealed: &FileSecret,
    progress: impl FnMut(u64) + Send,
) -> Result<FileInfo> {
    let key = sealed.file_key().map_err(|e| Error::Protocol(e.to_string()))?;
    let (path, size) = (path.to_owned(), sealed.size);
    upload_with(config, token, progress, move |start, tx| seal_and_hash(&path, &key, size, start, tx)).await
}

/// Where an upload's disk thread hands over its chunks, [`SEAL_BATCH`] at a time.
type Batches = mpsc::Sender<Vec<ChunkRecord>>;

/// Attaches to the upload, runs `produce` on a blocking thread to make the chunks from
/// the server's offset on (it returns the SHA-256 of everything uploaded), and sends them.
async fn upload_with(
    config: &ClientConfig,
    token: &[u8],
    mut progress: impl FnMut(u64) + Send,
    produce: impl FnOnce(u64, &Batches) -> Result<[u8; 32]> + Send + 'static,
) -> Result<FileInfo> {
    let mut up = Uploader::attach(config, token).await?;
    let start = up.offset();
    progress(start);
    let (tx, mut rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    let reader = tokio::task::spawn_blocking(move || produce(start, &tx));
    while let Some(mut batch) = rx.recv().await {
        up.send_chunks(&mut batch).await?;
        progress(up.offset());
    }
    let sha256 = reader.await.map_err(|e| Error::Io(std::io::Error::other(e)))??;
    up.finish(&sha256).await
}

/// Seals the first `size` bytes of `path` record by record, hashes all of the sealed
/// bytes, and sends those from `start` on in chunks of whole records (the first one cut
/// at `start`). Returns the hash of the whole sealed content.
fn seal_and_hash(path: &Path, key: &FileKey, size: u64, start: u64, tx: &Batches) -> Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut batch = Vec::with_capacity(SEAL_BATCH);
    let mut plain = vec![0u8; RECORD_LEN];
    let mut out = Vec::with_capacity(SEND_CHUNK_LEN);
    // Sealed bytes before `out[0]`.
    let mut at = 0u64;
    let records = record_count(size);
    for index in 0..records {
        let want = record_plain_len(size, index);
        let n = read_full(&mut file, &mut plain[..want])?;
        if n != want {
            return Err(Error::Protocol(format!("{} got shorter while it was being sent", path.display())));
        }
        let before = out.len();
        key.seal_record(index, index + 1 == records, &plain[..n], &mut out);
        hasher.update(&out[before..]);
        if at + (out.len() as u64) <= start {
            // The server holds this record already; it was sealed only to be hashed.
            at += out.len() as u64;
            out.clear();
        } else if at < start {
            let skip = (start - at) as usize;
            out.drain(..skip);
            at = start;
        }
        if out.len() + SEALED_RECORD_LEN > SEND_CHUNK_LEN || index + 1 == records {
            at += out.len() as u64;
            if !out.is_empty() {
                batch.push(ChunkRecord::from_data(&out)?);
                out.clear();
            }
            let full = batch.len() == SEAL_BATCH || index + 1 == records;
            if full && !batch.is_empty() && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                // The network side gave up; its error is the one reported.
                break;
            }
        }
    }
    Ok(hasher.finalize().into())
}

/// Hashes the first `start` bytes of `path`, then sends the rest in batches of chunks while
/// hashing them, each read straight into the buffer it is sealed in. Returns the hash of
/// the whole file.
fn read_and_hash(path: &Path, start: u64, tx: &Batches) -> Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let copied = std::io::copy(&mut (&mut file).take(start), &mut HashWriter(&mut hasher))?;
    if copied != start {
        return Err(Error::Protocol(format!(
            "the server holds {start} bytes but {} has only {copied}",
            path.display()
        )));
    }
    file.seek(SeekFrom::Start(start))?;
    let mut ended = false;
    while !ended {
        let mut batch = Vec::with_capacity(SEAL_BATCH);
        while batch.len() < SEAL_BATCH && !ended {
            let record = ChunkRecord::read_from(&mut file, SEND_CHUNK_LEN)?;
            ended = record.len() < SEND_CHUNK_LEN;
            if !record.is_empty() {
                hasher.update(record.data());
                batch.push(record);
            }
        }
        if !batch.is_empty() && tx.blocking_send(batch).is_err() {
            // The network side gave up; its error is the one reported.
            break;
        }
    }
    Ok(hasher.finalize().into())
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Feeds what is written into a hasher (for `std::io::copy`).
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Downloads the file of `token` to `dest`. The bytes go to [`part_path`]`(dest)` first,
/// which a later call resumes from; only a complete file whose SHA-256 matches the
/// server's is renamed to `dest` (replacing it: ask the user before calling). A mismatch
/// deletes the part file and is [`Error::HashMismatch`]. Writing and hashing run on a
/// blocking thread. `progress` sees the bytes received so far, from the start of the file.
pub async fn download_path(
    config: &ClientConfig,
    token: &[u8],
    dest: &Path,
    progress: impl FnMut(u64) + Send,
) -> Result<FileInfo> {
    let part = part_path(dest);
    let writer_part = part.clone();
    let (file, written) =
        download_with(config, token, progress, move |start, rx| write_and_hash(&writer_part, start, rx))
            .await?;
    let (len, sha256) = written;
    if len != file.size || sha256.as_slice() != file.sha256.as_slice() {
        let _ = std::fs::remove_file(&part);
        return Err(Error::HashMismatch { name: file.name });
    }
    std::fs::rename(&part, dest)?;
    Ok(file)
}

/// [`download_path`] for an end-to-end encrypted file: the sealed records are checked and
/// decrypted as they arrive, and the part file holds plaintext, whole records only, so a
/// later call resumes at the last whole record. `sealed` is the sender's description
/// (opened from the file's `meta`); it must match the server's size. A record that fails
/// its check deletes the part file and is [`Error::SealedMismatch`]. `progress` sees
/// sealed bytes, from the start of the file. Returns the file with its real name and size
/// ([`FileSecret::reveal`]).
pub async fn download_sealed_path(
    config: &ClientConfig,
    token: &[u8],
    dest: &Path,
    sealed: &FileSecret,
    progress: impl FnMut(u64) + Send,
) -> Result<FileInfo> {
    let part = part_path(dest);
    let key = sealed.file_key().map_err(|e| Error::Protocol(e.to_string()))?;
    let (writer_part, size) = (part.clone(), sealed.size);
    let sealed_total = sealed_size(size);
    let result = download_with(config, token, progress, move |start, rx| {
        open_and_write(&writer_part, &key, size, start, rx)
    })
    .await;
    let name = sanitize_file_name(&sealed.name);
    match result {
        Ok((file, len)) if len == size && file.size == sealed_total => {
            std::fs::rename(&part, dest)?;
            Ok(sealed.reveal(file))
        }
        Ok(_) | Err(Error::SealedMismatch { .. }) => {
            let _ = std::fs::remove_file(&part);
            Err(Error::SealedMismatch { name })
        }
        Err(e) => Err(e),
    }
}

/// Runs `write` on a blocking thread: it opens (or continues) the part file, says through
/// its oneshot from which offset to download, and consumes the chunks. Attaches at that
/// offset and feeds it the file's chunks. Returns the server's description and what
/// `write` returned.
async fn download_with<T: Send + 'static>(
    config: &ClientConfig,
    token: &[u8],
    mut progress: impl FnMut(u64) + Send,
    write: impl FnOnce(tokio::sync::oneshot::Sender<u64>, mpsc::Receiver<Bytes>) -> Result<T> + Send + 'static,
) -> Result<(FileInfo, T)> {
    let (tx, rx) = mpsc::channel::<Bytes>(PIPELINE_DEPTH);
    let (start_tx, start_rx) = tokio::sync::oneshot::channel();
    let writer = tokio::task::spawn_blocking(move || write(start_tx, rx));
    let Ok(start) = start_rx.await else {
        // The writer could not open the part file; its error says why.
        return Err(writer
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
            .err()
            .unwrap_or_else(|| Error::Protocol("the download writer stopped".into())));
    };
    progress(start);
    let mut down = Downloader::attach(config, token, start).await?;
    let file = loop {
        match down.next().await? {
            DownloadStep::Chunk(data) => {
                if tx.send(data).await.is_err() {
                    break None;
                }
                progress(down.offset());
            }
            DownloadStep::Done(file) => break Some(file),
        }
    };
    drop(tx);
    let written = writer.await.map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let file = file.ok_or_else(|| Error::Protocol("the download writer stopped".into()))?;
    Ok((file, written))
}

/// Continues the plaintext part file of a sealed download at its last whole record,
/// reports the sealed offset to download from, then opens and writes each record as it
/// completes. Returns the plaintext length written.
fn open_and_write(
    part: &Path,
    key: &FileKey,
    size: u64,
    start: tokio::sync::oneshot::Sender<u64>,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<u64> {
    let sealed_total = sealed_size(size);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(part)?;
    // Redo the last record even when all are there: the download then always ends with
    // the record sealed as the last, which is what proves nothing was cut off.
    let mut index = (file.metadata()?.len() / RECORD_LEN as u64).min(record_count(size) - 1);
    let mut len = index * RECORD_LEN as u64;
    file.set_len(len)?;
    file.seek(SeekFrom::Start(len))?;
    if start.send(index * SEALED_RECORD_LEN as u64).is_err() {
        return Ok(len);
    }
    let mut out = std::io::BufWriter::with_capacity(FILE_BUFFER, file);
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_CHUNK_LEN + SEALED_RECORD_LEN);
    let mut plain = Vec::with_capacity(RECORD_LEN + 16);
    let damaged = || Error::SealedMismatch { name: part.display().to_string() };
    while let Some(data) = rx.blocking_recv() {
        pending.extend_from_slice(&data);
        let mut used = 0;
        loop {
            let Some((rlen, last)) = sealed_record_len(sealed_total, index) else {
                if used < pending.len() {
                    // More bytes than the size allows.
                    return Err(damaged());
                }
                break;
            };
            if pending.len() - used < rlen {
                break;
            }
            plain.clear();
            key.open_record(index, last, &pending[used..used + rlen], &mut plain).map_err(|_| damaged())?;
            out.write_all(&plain)?;
            len += plain.len() as u64;
            used += rlen;
            index += 1;
        }
        pending.drain(..used);
    }
    out.flush()?;
    if index != record_count(size) {
        return Err(Error::Protocol("the download ended before the file did".into()));
    }
    Ok(len)
}

/// Opens (or continues) the part file, reports its length through `start`, then writes
/// and hashes every chunk. Returns the length and the hash of the whole file.
fn write_and_hash(
    part: &Path,
    start: tokio::sync::oneshot::Sender<u64>,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<(u64, [u8; 32])> {
    let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(part)?;
    let mut hasher = Sha256::new();
    let mut len = std::io::copy(&mut file, &mut HashWriter(&mut hasher))?;
    if start.send(len).is_err() {
        return Ok((len, hasher.finalize().into()));
    }
    let mut out = std::io::BufWriter::with_capacity(CHUNK_FILE_BUFFER, file);
    while let Some(data) = rx.blocking_recv() {
        hasher.update(&data);
        out.write_all(&data)?;
        len += data.len() as u64;
    }
    out.flush()?;
    Ok((len, hasher.finalize().into()))
}

impl Client {
    /// Announces a file for a room or a user (`UploadFile`); refused up front when it is
    /// too large or over a quota. Then send the bytes with [`Client::upload_from`].
    pub async fn upload_file(
        &self,
        conv: Conv,
        name: &str,
        size: u64,
        meta: Option<Vec<u8>>,
    ) -> Result<UploadTicket> {
        match self.request(Request::UploadFile { conv, name: name.to_owned(), size, meta }).await? {
            Response::Upload { file, token } => Ok(UploadTicket { file, token }),
            other => Err(Error::Protocol(format!("expected upload, got {other:?}"))),
        }
    }

    /// Sends (or resumes sending) the file at `path` for `ticket`. See [`upload_path`].
    pub async fn upload_from(
        &self,
        ticket: &UploadTicket,
        path: &Path,
        progress: impl FnMut(u64) + Send,
    ) -> Result<FileInfo> {
        upload_path(self.bulk_config(), &ticket.token, path, progress).await
    }

    /// Sends (or resumes sending) the file at `path` end to end encrypted under
    /// `sealed`'s key. The ticket must have been asked for with
    /// [`crate::sealed_file::sealed_size`]`(sealed.size)` bytes. See [`upload_sealed_path`].
    pub async fn upload_sealed_from(
        &self,
        ticket: &UploadTicket,
        path: &Path,
        sealed: &FileSecret,
        progress: impl FnMut(u64) + Send,
    ) -> Result<FileInfo> {
        upload_sealed_path(self.bulk_config(), &ticket.token, path, sealed, progress).await
    }

    /// Announces and uploads the file at `path` in one go, named after its last path
    /// component. To be able to resume after a failure, use [`Client::upload_file`] and
    /// [`Client::upload_from`] and keep the ticket.
    pub async fn send_file(
        &self,
        conv: Conv,
        path: &Path,
        progress: impl FnMut(u64) + Send,
    ) -> Result<FileInfo> {
        let size = std::fs::metadata(path)?.len();
        let name = sanitize_file_name(&path.file_name().unwrap_or_default().to_string_lossy());
        let ticket = self.upload_file(conv, &name, size, None).await?;
        self.upload_from(&ticket, path, progress).await
    }

    /// Permission and a token to download `file` (`DownloadFile`). For the recipient of a
    /// pending offer this accepts it.
    pub async fn download_file(&self, file: FileId) -> Result<DownloadTicket> {
        match self.request(Request::DownloadFile { file }).await? {
            Response::Download { file, token } => Ok(DownloadTicket { file, token }),
            other => Err(Error::Protocol(format!("expected download, got {other:?}"))),
        }
    }

    /// Downloads (or resumes downloading) `ticket`'s file to `dest`. See [`download_path`].
    pub async fn download_to(
        &self,
        ticket: &DownloadTicket,
        dest: &Path,
        progress: impl FnMut(u64) + Send,
    ) -> Result<FileInfo> {
        download_path(self.bulk_config(), &ticket.token, dest, progress).await
    }

    /// Downloads (or resumes downloading) an end-to-end encrypted file to `dest`,
    /// decrypting it on the way. See [`download_sealed_path`].
    pub async fn download_sealed_to(
        &self,
        ticket: &DownloadTicket,
        dest: &Path,
        sealed: &FileSecret,
        progress: impl FnMut(u64) + Send,
    ) -> Result<FileInfo> {
        if ticket.file.size != sealed_size(sealed.size) {
            return Err(Error::SealedMismatch { name: sanitize_file_name(&sealed.name) });
        }
        download_sealed_path(self.bulk_config(), &ticket.token, dest, sealed, progress).await
    }

    /// Accepts or declines an offer (`AnswerOffer`). Declining deletes the file.
    pub async fn answer_offer(&self, file: FileId, accept: bool) -> Result<()> {
        self.request(Request::AnswerOffer { file, accept }).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_neutralised() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("a/b"), "b");
        assert_eq!(sanitize_file_name("C:\\x"), "x");
        assert_eq!(sanitize_file_name("C:x"), "C_x");
        assert_eq!(sanitize_file_name("evil\0name.txt"), "evilname.txt");
        assert_eq!(sanitize_file_name("line\nbreak\u{7f}"), "linebreak");
        assert_eq!(sanitize_file_name(".."), "file");
        assert_eq!(sanitize_file_name("dir/"), "file");
        assert_eq!(sanitize_file_name(""), "file");
        assert_eq!(sanitize_file_name(" .hidden. "), "hidden");
        assert_eq!(sanitize_file_name("nul.txt"), "_nul.txt");
        assert_eq!(sanitize_file_name("COM1"), "_COM1");
        assert_eq!(sanitize_file_name("COMMA.txt"), "COMMA.txt");
        assert_eq!(sanitize_file_name("report (final) é.pdf"), "report (final) é.pdf");
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_keeping_the_extension() {
        let long = format!("{}.tar.gz", "é".repeat(2500));
        let cut = sanitize_file_name(&long);
        assert!(cut.len() <= MAX_FILE_NAME_LEN, "{}", cut.len());
        assert!(cut.ends_with(".gz"), "{cut}");
        assert!(cut.starts_with('é'));
        let plain = sanitize_file_name(&"x".repeat(5000));
        assert_eq!(plain.len(), MAX_FILE_NAME_LEN);
    }

    #[test]
    fn sanitising_is_idempotent() {
        for name in ["../../etc/passwd", "C:\\x", "a\0b", &"y".repeat(5000), "nul", "...", "x.txt"] {
            let once = sanitize_file_name(name);
            assert_eq!(sanitize_file_name(&once), once, "{name:?}");
        }
    }

    #[test]
    fn part_path_appends_a_suffix() {
        assert_eq!(part_path(Path::new("/tmp/a.txt")), PathBuf::from("/tmp/a.txt.part"));
    }
}
