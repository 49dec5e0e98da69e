//! `chunk` messages built and taken apart by hand, so a file's bytes are copied by neither
//! end on their way through a bulk connection (PROTOCOL.md section 15).
//!
//! A chunk is `{"chunk": {"data": <bin>}}` in `ClientMsg` and `ServerMsg` alike: a fixed
//! prefix, then the bin's marker and length in the shortest form (what `rmp_serde` writes),
//! then the bytes. A [`ChunkRecord`] is a frame buffer laid out for
//! `crate::crypto::Sealer::seal_records`: the reserved head, that encoding, and room for
//! the data, which is read from the file straight into it and sealed in place. On the
//! receiving side [`split_chunk`] recognises the same encoding in an opened frame, so the
//! data is cut out of the frame's buffer instead of decoded into a new `Vec`; anything
//! else goes through serde as before. The frames are byte for byte those of
//! `SecureWriter::queue(&ClientMsg::Chunk { data })`: the tests hold the hand-made
//! encoding to `rmp_serde`'s.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};

use crate::crypto::{self, RECORD_HEAD};
use crate::error::{Error, Result};
use crate::message::MAX_CHUNK_LEN;

/// How many chunks the reference client and the server read, then seal at once: as many
/// CBC chains as `Sealer::seal_records` runs in lockstep.
pub const SEAL_BATCH: usize = 8;
/// The size of the chunks they send (the protocol allows up to [`MAX_CHUNK_LEN`]): a batch
/// of 8 is 2 MiB, as 4 of the largest would be, and fills all 8 lanes (8 chains encrypt
/// about 1.8 times as fast as 4).
pub const SEND_CHUNK_LEN: usize = 256 * 1024;

/// `{"chunk": {"data": ` in MessagePack: a map of one entry, the key `chunk`, a map of one
/// entry, the key `data`. The bin's marker and length follow.
const PREFIX: &[u8] = b"\x81\xa5chunk\x81\xa4data";
/// MessagePack's bin markers with a 1-, 2- and 4-byte length.
const BIN8: u8 = 0xc4;
const BIN16: u8 = 0xc5;
const BIN32: u8 = 0xc6;

/// Length of the encoding of a chunk of `len` bytes before its data.
pub const fn header_len(len: usize) -> usize {
    PREFIX.len()
        + if len <= 0xff {
            2
        } else if len <= 0xffff {
            3
        } else {
            5
        }
}

/// Appends the encoding of a chunk of `len` bytes up to its data.
fn put_header(dst: &mut impl BufMut, len: usize) {
    dst.put_slice(PREFIX);
    // `len` is at most MAX_CHUNK_LEN (checked by every caller), so each cast is exact.
    if len <= 0xff {
        dst.put_u8(BIN8);
        dst.put_u8(len as u8);
    } else if len <= 0xffff {
        dst.put_u8(BIN16);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(BIN32);
        dst.put_u32(len as u32);
    }
}

/// Where the data of the chunk message at the start of `plaintext` lies, and where the
/// message ends: `Some((data_start, end))` when `plaintext` starts with a whole chunk in the
/// encoding above, `None` for any other message (which the caller decodes with serde, so a
/// chunk encoded some other valid way still works).
pub fn split_chunk(plaintext: &[u8]) -> Option<(usize, usize)> {
    let rest = plaintext.strip_prefix(PREFIX)?;
    let (&marker, rest) = rest.split_first()?;
    let (len_bytes, len) = match marker {
        BIN8 => (1, usize::from(*rest.first()?)),
        BIN16 => (2, usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?))),
        BIN32 => (4, usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?),
        _ => return None,
    };
    let start = PREFIX.len() + 1 + len_bytes;
    let end = start.checked_add(len)?;
    (end <= plaintext.len()).then_some((start, end))
}

/// What a record of `len` bytes of data needs allocated: its head, encoding and data, and
/// the padding and MAC sealing adds.
const fn capacity(len: usize) -> usize {
    RECORD_HEAD + header_len(len) + crypto::sealed_len(len) - crypto::IV_LEN
}

/// One `chunk` message in a frame buffer, ready to be filled and sealed: the record head
/// `crate::crypto::Sealer` reserves, the chunk's encoding, then its data. Its capacity
/// includes the padding and the MAC, so sealing it in place does not reallocate.
#[derive(Debug)]
pub struct ChunkRecord {
    buf: BytesMut,
    /// Where the data starts in `buf` (it runs to the end).
    data_start: usize,
}

impl ChunkRecord {
    /// A record for `len` bytes of data (zeroed until filled through
    /// [`ChunkRecord::data_mut`]). At most [`MAX_CHUNK_LEN`] bytes.
    pub fn new(len: usize) -> Result<Self> {
        if len > MAX_CHUNK_LEN {
            return Err(Error::Protocol(format!("a chunk is at most {MAX_CHUNK_LEN} bytes")));
        }
        let data_start = RECORD_HEAD + header_len(len);
        let mut buf = BytesMut::with_capacity(capacity(len));
        buf.put_bytes(0, RECORD_HEAD);
        put_header(&mut buf, len);
        buf.resize(data_start + len, 0);
        Ok(Self { buf, data_start })
    }

    /// A record of the next bytes of `src`: `len` of them (at most [`MAX_CHUNK_LEN`]), or
    /// fewer where `src` ends first. They are read straight into the record's buffer, which
    /// is not zeroed first.
    pub fn read_from(src: &mut impl Read, len: usize) -> std::io::Result<Self> {
        if len > MAX_CHUNK_LEN {
            return Err(std::io::Error::other(format!("a chunk is at most {MAX_CHUNK_LEN} bytes")));
        }
        let data_start = RECORD_HEAD + header_len(len);
        let mut buf = Vec::with_capacity(capacity(len));
        buf.put_bytes(0, RECORD_HEAD);
        put_header(&mut buf, len);
        // `read_to_end` reads into the spare capacity as it is.
        let got = src.take(len as u64).read_to_end(&mut buf)?;
        // A `Vec` with room to spare becomes a `BytesMut` over the same allocation.
        let record = Self { buf: BytesMut::from(Bytes::from(buf)), data_start };
        if got < len {
            // The header says `len`: make it again for what there is (once per file at most).
            return Self::from_data(record.data()).map_err(|e| std::io::Error::other(e.to_string()));
        }
        Ok(record)
    }

    /// A record holding a copy of `data`.
    pub fn from_data(data: &[u8]) -> Result<Self> {
        let mut record = Self::new(data.len())?;
        record.data_mut().copy_from_slice(data);
        Ok(record)
    }

    /// Length of the data.
    pub fn len(&self) -> usize {
        self.buf.len() - self.data_start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.data_start..]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.data_start..]
    }

    /// The record as `crate::crypto::Sealer::seal_records` takes it.
    pub fn into_record(self) -> BytesMut {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{IV_LEN, Role, derive_keys};
    use crate::frame::{self, MAX_FRAME_LEN};
    use crate::message::{self, ClientMsg, ServerMsg};

    /// Every length at which the bin's form changes, and the largest chunk.
    const LENGTHS: [usize; 7] = [0, 1, 255, 256, 65535, 65536, MAX_CHUNK_LEN];

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(len as u8)).collect()
    }

    #[test]
    fn the_hand_made_encoding_is_rmp_serdes_for_both_directions() {
        for len in LENGTHS {
            let data = data(len);
            let client = message::encode(&ClientMsg::Chunk { data: data.clone() }).expect("encode");
            let server = message::encode(&ServerMsg::Chunk { data: data.clone() }).expect("encode");
            let record = ChunkRecord::from_data(&data).expect("record");
            assert_eq!(record.len(), len);
            let built = record.into_record();
            assert_eq!(&built[..RECORD_HEAD], &[0u8; RECORD_HEAD][..]);
            assert_eq!(&built[RECORD_HEAD..], &client[..], "{len} bytes");
            assert_eq!(client, server, "{len} bytes");
            assert_eq!(header_len(len), client.len() - len, "{len} bytes");
            assert_eq!(split_chunk(&client), Some((header_len(len), client.len())), "{len} bytes");
        }
    }

    #[test]
    fn a_record_read_from_a_source_is_the_one_made_from_its_bytes_even_when_it_ends_early() {
        let source = data(3 * 65_536 + 10);
        for (want, available) in [(65_536, source.len()), (MAX_CHUNK_LEN, source.len()), (300, 200), (300, 0)]
        {
            let mut src = &source[..available];
            let record = ChunkRecord::read_from(&mut src, want).expect("read");
            let got = want.min(available);
            assert_eq!(record.len(), got);
            let expected = ChunkRecord::from_data(&source[..got]).expect("record").into_record();
            let built = record.into_record();
            assert_eq!(built, expected, "{want} of {available}");
            assert!(built.capacity() >= capacity(got), "room for the padding and the MAC");
        }
        assert!(ChunkRecord::read_from(&mut &source[..], MAX_CHUNK_LEN + 1).is_err());
        assert!(ChunkRecord::new(MAX_CHUNK_LEN + 1).is_err());
    }

    #[test]
    fn other_messages_and_cut_chunks_are_left_to_serde() {
        let ping = message::encode(&ServerMsg::Ping { nonce: 3 }).expect("encode");
        assert_eq!(split_chunk(&ping), None);
        let chunk = message::encode(&ServerMsg::Chunk { data: data(300) }).expect("encode");
        for cut in 0..chunk.len() {
            assert_eq!(split_chunk(&chunk[..cut]), None, "cut at {cut}");
        }
        // Followed by another message in the same frame: the chunk ends where it ends.
        let both = [chunk.clone(), ping].concat();
        assert_eq!(split_chunk(&both), Some((header_len(300), chunk.len())));
    }

    #[test]
    fn wherever_the_shortcut_answers_serde_reads_the_same_chunk() {
        // Every value of every header byte, on chunks of each form followed by a ping:
        // where `split_chunk` takes the bytes for a chunk, serde decodes that chunk too.
        let ping = message::encode(&ClientMsg::Pong { nonce: 9 }).expect("encode");
        let mut answered = 0;
        for len in [0, 1, 255, 256, 65_536] {
            let base =
                [message::encode(&ClientMsg::Chunk { data: data(len) }).expect("encode"), ping.clone()]
                    .concat();
            for at in 0..header_len(len) {
                for value in 0..=255u8 {
                    let mut bytes = base.clone();
                    bytes[at] = value;
                    if let Some((start, end)) = split_chunk(&bytes) {
                        answered += 1;
                        let (msg, used) = message::decode_first::<ClientMsg>(&bytes).expect("serde reads it");
                        assert_eq!((msg, used), (ClientMsg::Chunk { data: bytes[start..end].to_vec() }, end));
                    }
                }
            }
        }
        assert!(answered > 5, "the untouched encodings at least");
    }

    #[test]
    fn a_batch_of_chunk_records_sealed_together_is_what_sealing_each_alone_gives_and_opens() {
        let keys = derive_keys(&[4; 32], &[5; 32], &[6; 32]);
        let (mut together, _) = keys.split(Role::Server);
        let (mut alone, _) = keys.split(Role::Server);
        let (_, mut opener) = keys.split(Role::Client);
        // More than one group of lanes, mixed lengths and forms, an empty chunk.
        let lengths = [MAX_CHUNK_LEN, 1, 65_536, 0, 300, 70_001, MAX_CHUNK_LEN, 16, 255, 4096, 100_000];
        let sent: Vec<Vec<u8>> = lengths.iter().map(|&l| data(l)).collect();
        let ivs: Vec<[u8; IV_LEN]> = (0..sent.len()).map(|i| [i as u8 ^ 0x5a; IV_LEN]).collect();

        let mut records: Vec<BytesMut> =
            sent.iter().map(|d| ChunkRecord::from_data(d).expect("record").into_record()).collect();
        together.seal_records_with_ivs(&mut records, &ivs, MAX_FRAME_LEN).expect("seal together");
        let mut one_by_one = BytesMut::new();
        for (d, iv) in sent.iter().zip(&ivs) {
            let plain = message::encode(&ServerMsg::Chunk { data: d.clone() }).expect("encode");
            alone.seal_frame_with_iv(&plain, iv, &mut one_by_one, MAX_FRAME_LEN).expect("seal alone");
        }
        assert_eq!(records.concat(), one_by_one.to_vec());
        assert_eq!(together.seq(), alone.seq());

        for (record, d) in records.iter_mut().zip(&sent) {
            let mut body = record.split_off(frame::HEADER_LEN);
            let plain = opener.open(&mut body).expect("open");
            let (start, end) = split_chunk(plain).expect("a chunk");
            assert_eq!((&plain[start..end], end), (&d[..], plain.len()));
        }
    }
}
