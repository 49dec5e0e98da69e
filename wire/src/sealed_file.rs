//! End-to-end encrypted file content (sans-I/O): how a file sent to a person is sealed
//! before it leaves the sender, so the server stores and relays only ciphertext.
//!
//! Each file gets a fresh 64-byte [`FileKey`] (32 bytes for AES-256-CBC, 32 for
//! HMAC-SHA256). The sender tells the recipient the key, the real name and the real size
//! in a [`FileSecret`], sealed as a direct-message envelope under the conversation key
//! (it travels as the file's `meta`, PROTOCOL.md section 15.5).
//!
//! The content is cut into records of [`RECORD_LEN`] plaintext bytes (the last one
//! shorter, and an empty file is one empty record). Record `i` is
//! `AES-256-CBC-PKCS7(enc, IV_i, plaintext) || HMAC-SHA256(mac, "classchat file record v1",
//! i, last, ciphertext)` with `IV_i` derived from `mac` and `i`. The IVs are derived
//! rather than random so that sealing is deterministic: an interrupted upload re-seals
//! the part the server already holds to hash it, and resumes mid-record. The MAC covers
//! the index (no reordering) and whether the record is the last (no truncation).
//! Records have a fixed sealed size, so a download resumes at a record boundary.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::message::FileInfo;

type HmacSha256 = Hmac<Sha256>;

/// Plaintext bytes per record: large enough that the per-record MAC, IV and padding
/// (48 bytes) cost under 0.1%, small enough that a resumed download redoes little.
pub const RECORD_LEN: usize = 64 * 1024;
/// A record's sealed size is its padded ciphertext plus this MAC.
const TAG_LEN: usize = 32;
/// Sealed size of a full record: 65,536 bytes of plaintext pad to 65,552, plus the MAC.
pub const SEALED_RECORD_LEN: usize = RECORD_LEN + 16 + TAG_LEN;
/// The first byte of a sealed [`FileSecret`]'s plaintext. It never starts UTF-8 text,
/// so a file secret cannot be passed off as a direct message or the other way round.
const SECRET_MARK: u8 = 0xFF;
/// Version of the record format and of [`FileSecret`].
const VERSION: u8 = 1;

/// What can go wrong opening sealed content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedFileError {
    #[error("a record of the file failed its integrity check")]
    BadRecord,
    #[error("the file's encrypted size does not fit its description")]
    BadSize,
    #[error("the file's key is malformed")]
    Malformed,
}

/// A file's content key: 32 bytes for AES-256-CBC, then 32 for HMAC-SHA256.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey([u8; 64]);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl FileKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 64];
        rand::rng().fill_bytes(&mut k);
        FileKey(k)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, SealedFileError> {
        Ok(FileKey(b.try_into().map_err(|_| SealedFileError::Malformed)?))
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    fn enc(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.0[..32]);
        k
    }

    fn mac(&self) -> HmacSha256 {
        #[expect(clippy::expect_used)]
        <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(&self.0[32..])
            .expect("HMAC takes any key length")
    }

    fn iv(&self, index: u64) -> [u8; 16] {
        let mut m = self.mac();
        update_transcript(&mut m, b"classchat file iv v1", &[&index.to_be_bytes()]);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&m.finalize().into_bytes()[..16]);
        iv
    }

    fn tag(&self, index: u64, last: bool, ct: &[u8]) -> HmacSha256 {
        let mut m = self.mac();
        update_transcript(
            &mut m,
            b"classchat file record v1",
            &[&index.to_be_bytes(), &[u8::from(last)], ct],
        );
        m
    }

    /// Appends record `index` (plaintext `plain`, at most [`RECORD_LEN`] bytes) sealed to `out`.
    pub fn seal_record(&self, index: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) {
        debug_assert!(plain.len() <= RECORD_LEN);
        let start = out.len();
        let ct_len = padded_len(plain.len());
        out.resize(start + ct_len, 0);
        let enc = cbc::Encryptor::<Aes256>::new(&self.enc().into(), &self.iv(index).into());
        // The slice is exactly the padded length, which is all PKCS#7 needs.
        if enc.encrypt_padded_b2b::<Pkcs7>(plain, &mut out[start..]).is_err() {
            out.truncate(start);
            return;
        }
        let tag = self.tag(index, last, &out[start..]).finalize().into_bytes();
        out.extend_from_slice(&tag);
    }

    /// Checks and decrypts sealed record `index`, appending its plaintext to `out`.
    /// Nothing is appended unless the MAC holds.
    pub fn open_record(
        &self,
        index: u64,
        last: bool,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealedFileError> {
        let ct_len = sealed.len().checked_sub(TAG_LEN).ok_or(SealedFileError::BadRecord)?;
        if ct_len == 0 || !ct_len.is_multiple_of(16) || ct_len > SEALED_RECORD_LEN - TAG_LEN {
            return Err(SealedFileError::BadRecord);
        }
        let (ct, tag) = sealed.split_at(ct_len);
        self.tag(index, last, ct).verify_slice(tag).map_err(|_| SealedFileError::BadRecord)?;
        let start = out.len();
        out.resize(start + ct_len, 0);
        let dec = cbc::Decryptor::<Aes256>::new(&self.enc().into(), &self.iv(index).into());
        match dec.decrypt_padded_b2b::<Pkcs7>(ct, &mut out[start..]) {
            Ok(pt) => {
                let n = pt.len();
                out.truncate(start + n);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(SealedFileError::BadRecord)
            }
        }
    }
}

/// MACs the transcript of `label` and `parts` (PROTOCOL.md section 14) without copying
/// the parts into one buffer.
fn update_transcript(m: &mut HmacSha256, label: &[u8], parts: &[&[u8]]) {
    m.update(label);
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
}

/// PKCS#7 always adds 1 to 16 bytes.
fn padded_len(plain: usize) -> usize {
    (plain / 16 + 1) * 16
}

/// How many records a file of `plain` bytes has (an empty file has one, empty).
pub fn record_count(plain: u64) -> u64 {
    plain.div_ceil(RECORD_LEN as u64).max(1)
}

/// Plaintext length of record `index` of a file of `plain` bytes.
pub fn record_plain_len(plain: u64, index: u64) -> usize {
    let before = index.saturating_mul(RECORD_LEN as u64);
    plain.saturating_sub(before).min(RECORD_LEN as u64) as usize
}

/// The size the server sees for a file of `plain` bytes; `u64::MAX` when that does not
/// fit in a u64 (a size only a hostile [`FileSecret`] claims: no server takes such a file).
pub fn sealed_size(plain: u64) -> u64 {
    let n = record_count(plain);
    let last = record_plain_len(plain, n - 1);
    (n - 1).saturating_mul(SEALED_RECORD_LEN as u64).saturating_add((padded_len(last) + TAG_LEN) as u64)
}

/// Sealed length of record `index` of a file whose sealed size is `sealed`, and whether
/// it is the last; `None` past the end or for a size no file seals to.
pub fn sealed_record_len(sealed: u64, index: u64) -> Option<(usize, bool)> {
    let full = SEALED_RECORD_LEN as u64;
    let n = sealed.div_ceil(full);
    if index >= n {
        return None;
    }
    let last = index + 1 == n;
    let len = if last { sealed - index * full } else { full };
    let valid = len > TAG_LEN as u64 && (len - TAG_LEN as u64).is_multiple_of(16);
    valid.then_some((len as usize, last))
}

/// Seals a whole file held in memory (small files, tests): the records back to back.
pub fn seal_all(key: &FileKey, plain: &[u8]) -> Vec<u8> {
    let n = record_count(plain.len() as u64);
    let mut out = Vec::with_capacity(sealed_size(plain.len() as u64) as usize);
    for (i, record) in (0..n).zip(plain.chunks(RECORD_LEN).chain(std::iter::once(&[][..]))) {
        key.seal_record(i, i + 1 == n, record, &mut out);
    }
    out
}

/// Opens what [`seal_all`] made, checking every record.
pub fn open_all(key: &FileKey, sealed: &[u8]) -> Result<Vec<u8>, SealedFileError> {
    let mut out = Vec::with_capacity(sealed.len());
    let (mut index, mut at) = (0, 0);
    while at < sealed.len() {
        let (len, last) = sealed_record_len(sealed.len() as u64, index).ok_or(SealedFileError::BadSize)?;
        key.open_record(index, last, &sealed[at..at + len], &mut out)?;
        at += len;
        index += 1;
    }
    if index == 0 {
        return Err(SealedFileError::BadSize);
    }
    Ok(out)
}

/// What the sender tells the recipient about a sealed file: sealed with the
/// conversation key as a direct-message envelope, carried as the file's `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSecret {
    pub v: u8,
    /// The real name (sanitised again by the recipient before use).
    pub name: String,
    /// The plaintext size; the server sees [`sealed_size`] of it.
    pub size: u64,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
}

impl FileSecret {
    pub fn new(name: &str, size: u64, key: &FileKey) -> Self {
        FileSecret { v: VERSION, name: name.to_owned(), size, key: key.as_bytes().to_vec() }
    }

    /// `file` (as the server describes it) with the real name, sanitised, and size.
    pub fn reveal(&self, file: FileInfo) -> FileInfo {
        FileInfo { name: crate::files::sanitize_file_name(&self.name), size: self.size, ..file }
    }

    pub fn file_key(&self) -> Result<FileKey, SealedFileError> {
        FileKey::from_bytes(&self.key)
    }

    /// The bytes to seal: the mark, then MessagePack.
    pub fn to_plaintext(&self) -> Vec<u8> {
        let mut out = vec![SECRET_MARK];
        out.extend(crate::message::encode(self).unwrap_or_default());
        out
    }

    /// Parses [`FileSecret::to_plaintext`], checking that it describes `sealed` bytes.
    pub fn from_plaintext(b: &[u8], sealed: u64) -> Result<Self, SealedFileError> {
        let body = b.strip_prefix(&[SECRET_MARK]).ok_or(SealedFileError::Malformed)?;
        let secret: FileSecret = crate::message::decode(body).map_err(|_| SealedFileError::Malformed)?;
        if secret.v != VERSION || secret.key.len() != 64 {
            return Err(SealedFileError::Malformed);
        }
        let expected = sealed_size(secret.size);
        if expected == u64::MAX || expected != sealed {
            return Err(SealedFileError::BadSize);
        }
        Ok(secret)
    }
}

/// Whether `plaintext` (an opened envelope) is a file secret rather than message text.
pub fn is_file_secret(plaintext: &[u8]) -> bool {
    plaintext.first() == Some(&SECRET_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn sizes_round_trip_at_every_boundary() {
        let key = FileKey::generate();
        for n in [0, 1, 15, 16, 17, RECORD_LEN - 1, RECORD_LEN, RECORD_LEN + 1, 3 * RECORD_LEN + 5] {
            let plain = data(n);
            let sealed = seal_all(&key, &plain);
            assert_eq!(sealed.len() as u64, sealed_size(n as u64), "size of {n}");
            assert_eq!(open_all(&key, &sealed).as_deref(), Ok(plain.as_slice()), "content of {n}");
        }
    }

    #[test]
    fn sealing_is_deterministic_so_a_resume_reproduces_the_bytes() {
        let key = FileKey::generate();
        let plain = data(2 * RECORD_LEN + 100);
        assert_eq!(seal_all(&key, &plain), seal_all(&key, &plain));
        assert_ne!(seal_all(&key, &plain), seal_all(&FileKey::generate(), &plain));
    }

    #[test]
    fn a_flipped_bit_a_swap_or_a_truncation_is_caught() {
        let key = FileKey::generate();
        let plain = data(3 * RECORD_LEN);
        let sealed = seal_all(&key, &plain);

        let mut flipped = sealed.clone();
        flipped[RECORD_LEN + 100] ^= 1;
        assert_eq!(open_all(&key, &flipped), Err(SealedFileError::BadRecord));

        let mut swapped = sealed.clone();
        swapped[..2 * SEALED_RECORD_LEN].rotate_left(SEALED_RECORD_LEN);
        assert_eq!(open_all(&key, &swapped), Err(SealedFileError::BadRecord));

        // Cut after two whole records: the second was not sealed as the last.
        let cut = &sealed[..2 * SEALED_RECORD_LEN];
        assert_eq!(open_all(&key, cut), Err(SealedFileError::BadRecord));

        assert_eq!(open_all(&FileKey::generate(), &sealed), Err(SealedFileError::BadRecord));
    }

    #[test]
    fn sizes_no_file_seals_to_are_refused() {
        assert_eq!(sealed_record_len(0, 0), None);
        assert_eq!(sealed_record_len(47, 0), None);
        assert_eq!(sealed_record_len(48, 0), Some((48, true)));
        assert_eq!(sealed_record_len(50, 0), None);
        assert_eq!(sealed_record_len(48, 1), None);
        let two = SEALED_RECORD_LEN as u64 + 48;
        assert_eq!(sealed_record_len(two, 0), Some((SEALED_RECORD_LEN, false)));
        assert_eq!(sealed_record_len(two, 1), Some((48, true)));
    }

    #[test]
    fn a_secret_round_trips_and_must_match_the_sealed_size() {
        let key = FileKey::generate();
        let secret = FileSecret::new("notes.pdf", 1000, &key);
        let bytes = secret.to_plaintext();
        assert!(is_file_secret(&bytes));
        assert!(std::str::from_utf8(&bytes).is_err(), "never mistaken for message text");
        assert_eq!(FileSecret::from_plaintext(&bytes, sealed_size(1000)), Ok(secret.clone()));
        assert_eq!(FileSecret::from_plaintext(&bytes, sealed_size(1100)), Err(SealedFileError::BadSize));
        assert_eq!(secret.file_key(), Ok(key));
        assert_eq!(FileSecret::from_plaintext(b"hello", 48), Err(SealedFileError::Malformed));
    }

    /// The reproducer of wire/fuzz/seeds/open_sealed_file/crash-size-u64-max: a peer's
    /// file secret claiming u64::MAX bytes made `sealed_size` overflow (a panic in a debug
    /// build, a wrapped size in a release build).
    #[test]
    fn a_secret_claiming_an_absurd_size_is_refused_without_overflow() {
        let key = FileKey::generate();
        for size in [u64::MAX, u64::MAX / 2, 1 << 50] {
            let bytes = FileSecret::new("big.iso", size, &key).to_plaintext();
            for sealed in [0, 48, 1 << 40, u64::MAX] {
                assert_eq!(FileSecret::from_plaintext(&bytes, sealed), Err(SealedFileError::BadSize));
            }
        }
        assert_eq!(sealed_size(u64::MAX), u64::MAX);
        assert_eq!(sealed_size(1 << 50), (1 << 34) * SEALED_RECORD_LEN as u64);
    }
}
