//! The handshake and the sealed session, sans-I/O.
//!
//! Handshake (both frames plaintext MessagePack):
//! 1. server → client: [`ServerHello`] (version, name, RSA public key as SPKI DER, nonce).
//! 2. client → server: [`ClientKey`] (version, 32-byte secret under RSA-OAEP-SHA256, nonce).
//! 3. Both derive four 32-byte keys with HKDF-SHA256 ([`derive_keys`]).
//!
//! Every later frame body is `IV(16) || AES-256-CBC-PKCS7(plaintext) || HMAC-SHA256(seq_be64 || IV || CT)`,
//! built by a [`Sealer`] and checked by an [`Opener`]. The two halves are independent, so a
//! reader task and a writer task can each own one.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, InnerIvInit, KeyInit};
use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, Mac};
use rand::Rng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::sha2::{Digest, Sha256};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

use crate::cbc_lanes::{LANES, Lane};
use crate::error::{CryptoError, Error, Result};
use crate::fingerprint::Fingerprint;
use crate::frame;
use crate::room_record::{self, ClientRoomKeys, RoomKeyMsg, RoomRecord};

type HmacSha256 = Hmac<Sha256>;
// Encryption is `crate::cbc_lanes` (several chains at once). Each frame's decryption works
// on its own copy of the key schedule.
type CbcDec = cbc::Decryptor<Aes256>;

/// Length of each side's handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Length of the client's session secret (HKDF input keying material).
pub const SECRET_LEN: usize = 32;
/// AES block / IV length.
pub const IV_LEN: usize = 16;
/// HMAC-SHA256 tag length.
pub const MAC_LEN: usize = 32;
/// Smallest possible sealed body: IV, one padding block, MAC.
pub const MIN_SEALED_LEN: usize = IV_LEN + 16 + MAC_LEN;
/// What a record reserves in front of its plaintext for [`Sealer::seal_record`]: the frame's
/// length prefix and the IV.
pub const RECORD_HEAD: usize = frame::HEADER_LEN + IV_LEN;
/// Default RSA modulus size for server keys.
pub const DEFAULT_RSA_BITS: usize = 3072;
/// Smallest RSA modulus a client accepts from a server.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus a client accepts from a server (bounds the client's work).
pub const MAX_RSA_BITS: usize = 8192;

/// HKDF `info` labels, one per derived key.
pub const LABEL_C2S_ENC: &[u8] = b"classchat v1 c2s aes";
pub const LABEL_C2S_MAC: &[u8] = b"classchat v1 c2s hmac";
pub const LABEL_S2C_ENC: &[u8] = b"classchat v1 s2c aes";
pub const LABEL_S2C_MAC: &[u8] = b"classchat v1 s2c hmac";

/// First frame of every connection, sent by the server in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    pub version: u16,
    pub server_name: String,
    /// RSA public key, SubjectPublicKeyInfo DER.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// Second frame, sent by the client in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKey {
    pub version: u16,
    /// The 32-byte session secret, RSA-OAEP (SHA-256, empty label) under the server key.
    #[serde(with = "serde_bytes")]
    pub encrypted_secret: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// A server's long-term RSA key.
#[derive(Clone)]
pub struct ServerKey {
    private: RsaPrivateKey,
    public_der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Generates a new key (slow: about a second for 3072 bits in release builds).
    pub fn generate(bits: usize) -> Result<Self> {
        let private = RsaPrivateKey::new(&mut rand::rng(), bits).map_err(|_| CryptoError::Rsa)?;
        Self::from_private(private)
    }

    /// Loads a key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let private = RsaPrivateKey::from_pkcs8_der(der).map_err(|_| CryptoError::BadPublicKey)?;
        Self::from_private(private)
    }

    /// The private key as PKCS#8 DER, for storing (with 0600 permissions).
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>> {
        let doc = self.private.to_pkcs8_der().map_err(|_| CryptoError::Rsa)?;
        Ok(doc.as_bytes().to_vec())
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self> {
        let public_der = RsaPublicKey::from(&private)
            .to_public_key_der()
            .map_err(|_| CryptoError::BadPublicKey)?
            .as_bytes()
            .to_vec();
        let fingerprint = Fingerprint::of_der(&public_der);
        Ok(Self { private, public_der, fingerprint })
    }

    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// The four keys of a session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub c2s_enc: [u8; 32],
    pub c2s_mac: [u8; 32],
    pub s2c_enc: [u8; 32],
    pub s2c_mac: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// HKDF-SHA256 with `ikm = secret`, `salt = server_nonce || client_nonce`, one `info`
/// label per key.
pub fn derive_keys(secret: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> SessionKeys {
    let mut salt = Vec::with_capacity(server_nonce.len() + client_nonce.len());
    salt.extend_from_slice(server_nonce);
    salt.extend_from_slice(client_nonce);
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut keys = SessionKeys { c2s_enc: [0; 32], c2s_mac: [0; 32], s2c_enc: [0; 32], s2c_mac: [0; 32] };
    for (label, out) in [
        (LABEL_C2S_ENC, &mut keys.c2s_enc),
        (LABEL_C2S_MAC, &mut keys.c2s_mac),
        (LABEL_S2C_ENC, &mut keys.s2c_enc),
        (LABEL_S2C_MAC, &mut keys.s2c_mac),
    ] {
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
        #[expect(clippy::expect_used)]
        hk.expand(label, out).expect("32-byte HKDF output is always valid");
    }
    keys
}

/// Which end of the connection this is; picks the direction of each half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

impl SessionKeys {
    /// The (sealer, opener) pair for `role`.
    pub fn split(&self, role: Role) -> (Sealer, Opener) {
        match role {
            Role::Client => {
                (Sealer::new(&self.c2s_enc, &self.c2s_mac), Opener::new(&self.s2c_enc, &self.s2c_mac))
            }
            Role::Server => {
                (Sealer::new(&self.s2c_enc, &self.s2c_mac), Opener::new(&self.c2s_enc, &self.c2s_mac))
            }
        }
    }
}

fn cipher(key: &[u8; 32]) -> Aes256 {
    Aes256::new(key.into())
}

fn mac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC accepts any key length; 32 bytes cannot fail.
    #[expect(clippy::expect_used)]
    <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

/// Length of the sealed body for a plaintext of `len` bytes.
pub const fn sealed_len(len: usize) -> usize {
    IV_LEN + (len / 16 + 1) * 16 + MAC_LEN
}

/// The sending half: seals plaintexts into frame bodies, counting `seq` from 0.
pub struct Sealer {
    cipher: Aes256,
    mac: HmacSha256,
    seq: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(enc_key: &[u8; 32], mac_key: &[u8; 32]) -> Self {
        Self { cipher: cipher(enc_key), mac: mac(mac_key), seq: 0 }
    }

    /// Sequence number the next sealed frame will carry.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Appends one whole frame (length prefix + sealed body) for `plaintext` to `dst`,
    /// with a fresh random IV. Fails, leaving `dst` as it was, if the sealed body would
    /// exceed `max_frame_len`.
    pub fn seal_frame(&mut self, plaintext: &[u8], dst: &mut BytesMut, max_frame_len: usize) -> Result<()> {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        self.seal_frame_with_iv(plaintext, &iv, dst, max_frame_len)
    }

    /// As [`Sealer::seal_frame`] with a caller-chosen IV. Only for test vectors: an IV must
    /// never repeat under one key.
    #[doc(hidden)]
    pub fn seal_frame_with_iv(
        &mut self,
        plaintext: &[u8],
        iv: &[u8; IV_LEN],
        dst: &mut BytesMut,
        max_frame_len: usize,
    ) -> Result<()> {
        let body_len = sealed_len(plaintext.len());
        frame::check_len(body_len, max_frame_len)?;
        let start = dst.len();
        dst.reserve(frame::HEADER_LEN + body_len);
        dst.put_bytes(0, RECORD_HEAD);
        dst.extend_from_slice(plaintext);
        self.seal_record_with_iv(dst, start, iv, max_frame_len)
    }

    /// Seals, in place, the record that starts at `dst[start]`: [`RECORD_HEAD`] reserved
    /// bytes (for the length prefix and the IV) followed by the plaintext, which runs to the
    /// end of `dst`. Afterwards `dst[start..]` is one whole frame. This is how a writer puts
    /// several messages in one frame without copying them: it appends each one's encoding
    /// after the head and seals once. On an error the record is removed from `dst`.
    pub fn seal_record(&mut self, dst: &mut BytesMut, start: usize, max_frame_len: usize) -> Result<()> {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        self.seal_record_with_iv(dst, start, &iv, max_frame_len)
    }

    fn seal_record_with_iv(
        &mut self,
        dst: &mut BytesMut,
        start: usize,
        iv: &[u8; IV_LEN],
        max_frame_len: usize,
    ) -> Result<()> {
        self.seal_in_place(&mut [(dst, start)], &[*iv], max_frame_len)
    }

    /// Seals several records at once, each a buffer laid out as for
    /// [`Sealer::seal_record`] from its start (`RECORD_HEAD` bytes, then the plaintext), in
    /// order: they carry consecutive sequence numbers and must be sent in this order. The
    /// frames are exactly what sealing them one by one gives, but their CBC chains run in
    /// lockstep (up to 8 at a time), which encrypts several times faster than one chain
    /// after another. On an error nothing is sealed, every record is emptied and the
    /// sequence number has not moved.
    pub fn seal_records(&mut self, records: &mut [BytesMut], max_frame_len: usize) -> Result<()> {
        let mut ivs = vec![[0u8; IV_LEN]; records.len()];
        let mut rng = rand::rng();
        for iv in &mut ivs {
            rng.fill_bytes(iv);
        }
        self.seal_records_with_ivs(records, &ivs, max_frame_len)
    }

    /// As [`Sealer::seal_records`] with caller-chosen IVs. Only for tests: an IV must never
    /// repeat under one key.
    #[doc(hidden)]
    pub fn seal_records_with_ivs(
        &mut self,
        records: &mut [BytesMut],
        ivs: &[[u8; IV_LEN]],
        max_frame_len: usize,
    ) -> Result<()> {
        let mut records: Vec<(&mut BytesMut, usize)> = records.iter_mut().map(|r| (r, 0)).collect();
        self.seal_in_place(&mut records, ivs, max_frame_len)
    }

    /// Seals each `(buffer, start)` record in place with its IV, in order. One record (every
    /// chat frame) allocates nothing here.
    fn seal_in_place(
        &mut self,
        records: &mut [(&mut BytesMut, usize)],
        ivs: &[[u8; IV_LEN]],
        max_frame_len: usize,
    ) -> Result<()> {
        // Every check before any change, so a failure leaves the sequence where it was.
        let checked = (|| {
            if ivs.len() != records.len() {
                return Err(Error::Protocol("one IV per record".into()));
            }
            for (dst, start) in records.iter() {
                record_prefix(dst, *start, max_frame_len)?;
            }
            let first = self.seq;
            let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
            self.seq = first.checked_add(count).ok_or(Error::Protocol("sequence number exhausted".into()))?;
            Ok(first)
        })();
        let first = match checked {
            Ok(first) => first,
            Err(e) => {
                for (dst, start) in records.iter_mut() {
                    dst.truncate(*start);
                }
                return Err(e);
            }
        };
        // Head (length prefix, IV) and PKCS#7 padding, then every chain at once, then the
        // MACs (each over its sequence number, IV and ciphertext).
        for ((dst, start), iv) in records.iter_mut().zip(ivs) {
            let start = *start;
            // Checked above: the same record, the same answer.
            let (prefix, pt_len) = record_prefix(dst, start, max_frame_len)?;
            dst[start..start + frame::HEADER_LEN].copy_from_slice(&prefix.to_be_bytes());
            dst[start + frame::HEADER_LEN..start + RECORD_HEAD].copy_from_slice(iv);
            let pad = 16 - pt_len % 16;
            dst.put_bytes(pad as u8, pad);
        }
        for (group, ivs) in records.chunks_mut(LANES).zip(ivs.chunks(LANES)) {
            let n = group.len();
            let mut lanes: [Lane<'_>; LANES] =
                std::array::from_fn(|_| (<&mut [u8]>::default(), aes::Block::default()));
            for (lane, ((dst, start), iv)) in lanes.iter_mut().zip(group.iter_mut().zip(ivs)) {
                *lane = (&mut dst[*start + RECORD_HEAD..], (*iv).into());
            }
            crate::cbc_lanes::encrypt(&self.cipher, &mut lanes[..n]);
        }
        for (seq, (dst, start)) in (first..).zip(records.iter_mut()) {
            let mut m = self.mac.clone();
            m.update(&seq.to_be_bytes());
            m.update(&dst[*start + frame::HEADER_LEN..]);
            let tag = m.finalize().into_bytes();
            dst.extend_from_slice(&tag);
        }
        Ok(())
    }
}

impl Sealer {
    /// Appends one whole frame for `record` on this connection, with the room key in
    /// `slot` (PROTOCOL.md section 4.1): the length prefix, `slot`, the record's shared
    /// `IV || CT`, and this connection's tag over its sequence number, `slot` and the
    /// record's digest. Costs two SHA-256 blocks however long the record is. Fails,
    /// leaving `dst` and the sequence number as they were, if the frame would be too long.
    pub fn seal_room_record(
        &mut self,
        slot: u32,
        record: &RoomRecord,
        dst: &mut BytesMut,
        max_frame_len: usize,
    ) -> Result<()> {
        let prefix = frame::check_len(record.frame_body_len(), max_frame_len)?;
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Error::Protocol("sequence number exhausted".into()))?;
        let mut m = self.mac.clone();
        m.update(&room_record::tag_input(seq, slot, record.digest()));
        let tag = m.finalize().into_bytes();
        dst.reserve(frame::HEADER_LEN + record.frame_body_len());
        dst.put_u32(prefix);
        dst.put_u32(slot);
        dst.extend_from_slice(record.body());
        dst.extend_from_slice(&tag);
        Ok(())
    }
}

/// The frame's length prefix and the plaintext's length for the record at `dst[start..]`,
/// or why it cannot be sealed.
fn record_prefix(dst: &BytesMut, start: usize, max_frame_len: usize) -> Result<(u32, usize)> {
    let pt_len = dst
        .len()
        .checked_sub(start + RECORD_HEAD)
        .ok_or_else(|| Error::Protocol("a record shorter than its head".into()))?;
    Ok((frame::check_len(sealed_len(pt_len), max_frame_len)?, pt_len))
}

/// The receiving half: checks and opens sealed bodies in order.
pub struct Opener {
    cipher: Aes256,
    mac: HmacSha256,
    seq: u64,
    /// A client's room keys (section 4.1); `None` on the server, which takes no room
    /// records.
    room_keys: Option<ClientRoomKeys>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Opener {
    pub fn new(enc_key: &[u8; 32], mac_key: &[u8; 32]) -> Self {
        Self { cipher: cipher(enc_key), mac: mac(mac_key), seq: 0, room_keys: None }
    }

    /// An opener that also takes room records (section 4.1): a client's, from the start of
    /// the session. Their keys arrive as [`RoomKeyMsg`]s, handed to
    /// [`Opener::install_room_key`].
    pub fn with_room_records(mut self) -> Self {
        self.room_keys = Some(ClientRoomKeys::new());
        self
    }

    /// Whether this opener takes room records.
    pub fn takes_room_records(&self) -> bool {
        self.room_keys.is_some()
    }

    /// Installs a room key from a [`RoomKeyMsg`] (an encoded one, as it came in a frame).
    pub fn install_room_key(&mut self, msg: &[u8]) -> Result<()> {
        let Some(keys) = self.room_keys.as_mut() else {
            return Err(Error::Protocol("a room key on a connection that takes no room records".into()));
        };
        let RoomKeyMsg::RoomKey { slot, room, key } = crate::message::decode(msg)?;
        keys.install(slot, room, &key)
    }

    /// The room keys installed so far (slot, room, key), for diagnostics and tests.
    pub fn room_keys(&self) -> Option<&ClientRoomKeys> {
        self.room_keys.as_ref()
    }

    /// Checks and opens the frame `body` in place: afterwards it holds just the plaintext.
    /// Takes ordinary frames and, if this opener takes them, room records (told apart by
    /// their length: section 4.1). Errors as [`Opener::open`].
    pub fn open_frame(&mut self, body: &mut BytesMut) -> Result<(), CryptoError> {
        if room_record::is_room_record_len(body.len()) && self.room_keys.is_some() {
            let len = self.open_room_record(body)?.len();
            body.advance(room_record::SLOT_LEN + IV_LEN);
            body.truncate(len);
        } else {
            let len = self.open(body)?.len();
            body.advance(IV_LEN);
            body.truncate(len);
        }
        Ok(())
    }

    /// Checks (in constant time) and decrypts a room record in place, returning the
    /// plaintext: the tag over `seq || slot || SHA-256(IV || CT)` under this connection's
    /// MAC key first, then the decryption with the key in `slot`.
    fn open_room_record<'a>(&mut self, body: &'a mut [u8]) -> Result<&'a [u8], CryptoError> {
        // `open_frame` sends only bodies of a room record's length class here.
        if body.len() < room_record::MIN_ROOM_RECORD_LEN {
            return Err(CryptoError::Truncated);
        }
        let (slot, rest) = body.split_at_mut(room_record::SLOT_LEN);
        let slot = u32::from_be_bytes([slot[0], slot[1], slot[2], slot[3]]);
        let (signed, tag) = rest.split_at_mut(rest.len() - MAC_LEN);
        let digest: [u8; 32] = Sha256::digest(&*signed).into();
        let mut m = self.mac.clone();
        m.update(&room_record::tag_input(self.seq, slot, &digest));
        m.verify_slice(tag).map_err(|_| CryptoError::BadMac)?;
        // An authentic record names a slot the server filled; one it did not fill is the
        // server's mistake, reported like a key that does not fit.
        let cipher = self.room_keys.as_ref().and_then(|k| k.get(slot)).ok_or(CryptoError::UnknownRoomKey)?;
        let (iv, ct) = signed.split_at_mut(IV_LEN);
        let iv: &[u8; IV_LEN] = (&*iv).try_into().map_err(|_| CryptoError::Truncated)?;
        let dec = CbcDec::inner_iv_init(cipher.clone(), iv.into());
        let pt = dec.decrypt_padded::<Pkcs7>(ct).map_err(|_| CryptoError::BadPadding)?;
        self.seq += 1;
        Ok(pt)
    }

    /// Frames opened so far (the sequence number the next one must carry).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Verifies (in constant time) and decrypts `body` in place, returning the plaintext.
    ///
    /// The MAC covers the expected sequence number, so a replayed, reordered or dropped
    /// frame fails exactly like a forged one. On any error the session must be closed:
    /// the expected sequence number has not advanced and never will.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<&'a [u8], CryptoError> {
        if body.len() < MIN_SEALED_LEN || !(body.len() - IV_LEN - MAC_LEN).is_multiple_of(16) {
            return Err(CryptoError::Truncated);
        }
        let (signed, tag) = body.split_at_mut(body.len() - MAC_LEN);
        let mut m = self.mac.clone();
        m.update(&self.seq.to_be_bytes());
        m.update(signed);
        m.verify_slice(tag).map_err(|_| CryptoError::BadMac)?;
        let (iv, ct) = signed.split_at_mut(IV_LEN);
        let iv: &[u8; IV_LEN] = (&*iv).try_into().map_err(|_| CryptoError::Truncated)?;
        let dec = CbcDec::inner_iv_init(self.cipher.clone(), iv.into());
        let pt = dec.decrypt_padded::<Pkcs7>(ct).map_err(|_| CryptoError::BadPadding)?;
        self.seq += 1;
        Ok(pt)
    }
}

/// Makes a fresh random nonce.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}

/// Server side, step 1: the hello for a new connection.
pub fn server_hello(key: &ServerKey, server_name: &str) -> ServerHello {
    ServerHello {
        version: crate::PROTOCOL_VERSION,
        server_name: server_name.to_owned(),
        public_key: key.public_der.clone(),
        nonce: random_nonce().to_vec(),
    }
}

/// Checks a hello's shape and parses its key; returns the key and its fingerprint.
pub fn check_server_hello(hello: &ServerHello) -> Result<(RsaPublicKey, Fingerprint)> {
    if hello.version != crate::PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "server speaks protocol version {}, this client speaks {}",
            hello.version,
            crate::PROTOCOL_VERSION
        )));
    }
    if hello.nonce.len() != NONCE_LEN {
        return Err(Error::Protocol("server nonce must be 32 bytes".into()));
    }
    let key = RsaPublicKey::from_public_key_der(&hello.public_key).map_err(|_| CryptoError::BadPublicKey)?;
    let bits = rsa::traits::PublicKeyParts::n_bits_precision(&key) as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(Error::Protocol(format!("server key of {bits} bits is outside 2048..=8192")));
    }
    Ok((key, Fingerprint::of_der(&hello.public_key)))
}

/// Client side, step 2: make the secret, wrap it, derive the session.
pub fn client_key_exchange(
    hello: &ServerHello,
    server_key: &RsaPublicKey,
) -> Result<(ClientKey, SessionKeys)> {
    let mut rng = rand::rng();
    let mut secret = [0u8; SECRET_LEN];
    rng.fill_bytes(&mut secret);
    let nonce = random_nonce();
    let encrypted_secret =
        server_key.encrypt(&mut rng, Oaep::<Sha256>::new(), &secret).map_err(|_| CryptoError::Rsa)?;
    let keys = derive_keys(&secret, &hello.nonce, &nonce);
    Ok((ClientKey { version: crate::PROTOCOL_VERSION, encrypted_secret, nonce: nonce.to_vec() }, keys))
}

/// Server side, step 3: unwrap the client's secret and derive the session.
///
/// A secret that does not unwrap is replaced by a random one instead of failing here, so
/// the connection dies at the first MAC check like any other bad session, and the timing
/// and behaviour of this step tell an attacker nothing about the RSA decryption.
pub fn server_accept(key: &ServerKey, hello: &ServerHello, client: &ClientKey) -> Result<SessionKeys> {
    if client.version != crate::PROTOCOL_VERSION {
        return Err(Error::Protocol(format!("client speaks protocol version {}", client.version)));
    }
    if client.nonce.len() != NONCE_LEN {
        return Err(Error::Protocol("client nonce must be 32 bytes".into()));
    }
    let secret = match key.private.decrypt(Oaep::<Sha256>::new(), &client.encrypted_secret) {
        Ok(s) if s.len() == SECRET_LEN => s,
        _ => random_nonce().to_vec(),
    };
    Ok(derive_keys(&secret, &hello.nonce, &client.nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Sealer, Opener) {
        let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
        let (sealer, _) = keys.split(Role::Client);
        let (_, opener) = keys.split(Role::Server);
        (sealer, opener)
    }

    fn seal(s: &mut Sealer, pt: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        s.seal_frame(pt, &mut out, frame::MAX_FRAME_LEN).expect("seal");
        out[frame::HEADER_LEN..].to_vec()
    }

    #[test]
    fn seal_open_round_trip_for_many_lengths() {
        let (mut s, mut o) = pair();
        for len in [0, 1, 15, 16, 17, 31, 32, 100, 4096] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut body = seal(&mut s, &pt);
            assert_eq!(body.len(), sealed_len(len));
            assert_eq!(o.open(&mut body).expect("open"), &pt[..]);
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let (mut s, _) = pair();
        let body = seal(&mut s, b"attack at dawn, bring snacks");
        for bit in 0..body.len() * 8 {
            let (_, mut o) = pair();
            let mut tampered = body.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(o.open(&mut tampered), Err(CryptoError::BadMac), "bit {bit}");
        }
    }

    #[test]
    fn replayed_reordered_and_dropped_frames_are_rejected() {
        let (mut s, mut o) = pair();
        let first = seal(&mut s, b"one");
        let second = seal(&mut s, b"two");
        let third = seal(&mut s, b"three");
        // reordered: second before first
        assert_eq!(o.clone_for_test().open(&mut second.clone()), Err(CryptoError::BadMac));
        assert_eq!(o.open(&mut first.clone()).expect("first"), b"one");
        // replayed
        assert_eq!(o.clone_for_test().open(&mut first.clone()), Err(CryptoError::BadMac));
        // dropped: third without second
        assert_eq!(o.clone_for_test().open(&mut third.clone()), Err(CryptoError::BadMac));
        assert_eq!(o.open(&mut second.clone()).expect("second"), b"two");
        assert_eq!(o.open(&mut third.clone()).expect("third"), b"three");
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let (mut s, _) = pair();
        let body = seal(&mut s, b"0123456789abcdef0123");
        for cut in 0..body.len() {
            let (_, mut o) = pair();
            let mut short = body[..cut].to_vec();
            assert!(o.open(&mut short).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn directions_use_different_keys() {
        let keys = derive_keys(&[9; 32], &[8; 32], &[7; 32]);
        let (mut client_sealer, _) = keys.split(Role::Client);
        let (_, mut client_opener) = keys.split(Role::Client);
        let mut body = seal(&mut client_sealer, b"reflected");
        // A frame reflected back at its sender must not open.
        assert_eq!(client_opener.open(&mut body), Err(CryptoError::BadMac));
    }

    /// The construction written out from scratch for every frame: a fresh CBC encryptor on
    /// its own copy of the key schedule and a fresh HMAC, the way `seal_frame` was built
    /// before it borrowed the schedule. Sealing must match it byte for byte.
    fn reference_frame(keys: &SessionKeys, seq: u64, iv: &[u8; IV_LEN], plaintext: &[u8]) -> Vec<u8> {
        use aes::cipher::{BlockModeEncrypt, KeyIvInit};
        let ct = cbc::Encryptor::<Aes256>::new(&keys.c2s_enc.into(), iv.into())
            .encrypt_padded_vec::<Pkcs7>(plaintext);
        let mut m = mac(&keys.c2s_mac);
        m.update(&seq.to_be_bytes());
        m.update(iv);
        m.update(&ct);
        let body = [&iv[..], &ct, &m.finalize().into_bytes()].concat();
        let len = u32::try_from(body.len()).expect("small frame");
        [&len.to_be_bytes()[..], &body].concat()
    }

    const REFERENCE_LENGTHS: [usize; 10] = [0, 1, 15, 16, 17, 31, 32, 100, 210, 4096];

    #[test]
    fn sealing_is_byte_identical_to_the_reference_construction() {
        let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
        let (mut sealer, _) = keys.split(Role::Client);
        for (seq, len) in REFERENCE_LENGTHS.into_iter().enumerate() {
            let seq = seq as u64;
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let iv = [seq as u8 ^ 0xa5; IV_LEN];
            let mut out = BytesMut::new();
            sealer.seal_frame_with_iv(&plaintext, &iv, &mut out, frame::MAX_FRAME_LEN).expect("seal");
            assert_eq!(
                &out[..],
                &reference_frame(&keys, seq, &iv, &plaintext)[..],
                "{len} bytes at seq {seq}"
            );
        }
    }

    #[test]
    fn reference_frames_open_in_order() {
        let keys = derive_keys(&[1; 32], &[2; 32], &[3; 32]);
        let (_, mut opener) = keys.split(Role::Server);
        for (seq, len) in REFERENCE_LENGTHS.into_iter().enumerate() {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 5 + 1) as u8).collect();
            let mut wire = reference_frame(&keys, seq as u64, &[0x3c; IV_LEN], &plaintext);
            assert_eq!(opener.open(&mut wire[frame::HEADER_LEN..]).expect("open"), &plaintext[..]);
        }
    }

    #[test]
    fn one_sealer_seals_frames_into_one_buffer_back_to_back() {
        // The writer queues many frames into one buffer; each must be what sealing it alone gives.
        let keys = derive_keys(&[4; 32], &[5; 32], &[6; 32]);
        let (mut sealer, _) = keys.split(Role::Client);
        let mut out = BytesMut::new();
        let mut expected = Vec::new();
        for (seq, len) in REFERENCE_LENGTHS.into_iter().enumerate() {
            let plaintext = vec![len as u8; len];
            let iv = [seq as u8; IV_LEN];
            sealer.seal_frame_with_iv(&plaintext, &iv, &mut out, frame::MAX_FRAME_LEN).expect("seal");
            expected.extend_from_slice(&reference_frame(&keys, seq as u64, &iv, &plaintext));
        }
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn a_batch_of_records_is_what_sealing_each_alone_gives() {
        let keys = derive_keys(&[7; 32], &[8; 32], &[9; 32]);
        let (mut sealer, _) = keys.split(Role::Client);
        sealer.seal_frame(b"one before", &mut BytesMut::new(), frame::MAX_FRAME_LEN).expect("seal");
        // Batches of 1 to 19 records (past two groups of 8 chains), of the reference lengths.
        let mut seq = 1u64;
        for count in 1..20usize {
            let plaintexts: Vec<Vec<u8>> = (0..count)
                .map(|i| vec![(i + count) as u8; REFERENCE_LENGTHS[(i + count) % REFERENCE_LENGTHS.len()]])
                .collect();
            let ivs: Vec<[u8; IV_LEN]> = (0..count).map(|i| [(i * 3 + count) as u8; IV_LEN]).collect();
            let mut records: Vec<BytesMut> = plaintexts
                .iter()
                .map(|p| {
                    let mut r = BytesMut::new();
                    r.put_bytes(0, RECORD_HEAD);
                    r.extend_from_slice(p);
                    r
                })
                .collect();
            sealer.seal_records_with_ivs(&mut records, &ivs, frame::MAX_FRAME_LEN).expect("seal");
            for ((record, p), iv) in records.iter().zip(&plaintexts).zip(&ivs) {
                assert_eq!(&record[..], &reference_frame(&keys, seq, iv, p)[..], "record at seq {seq}");
                seq += 1;
            }
        }
        assert_eq!(sealer.seq(), seq);
    }

    #[test]
    fn a_batch_with_one_record_too_long_seals_nothing() {
        let keys = derive_keys(&[7; 32], &[8; 32], &[9; 32]);
        let (mut sealer, _) = keys.split(Role::Client);
        let mut records: Vec<BytesMut> = [10usize, 5000, 10]
            .iter()
            .map(|&n| {
                let mut r = BytesMut::new();
                r.put_bytes(0, RECORD_HEAD + n);
                r
            })
            .collect();
        let ivs = [[1u8; IV_LEN]; 3];
        assert!(sealer.seal_records_with_ivs(&mut records, &ivs, 1024).is_err());
        assert_eq!(sealer.seq(), 0, "the sequence has not moved");
        assert!(records.iter().all(BytesMut::is_empty), "every record emptied");
        assert!(sealer.seal_records_with_ivs(&mut records[..1], &ivs, 1024).is_err(), "one IV per record");
    }

    impl Opener {
        fn clone_for_test(&self) -> Opener {
            Opener { cipher: self.cipher.clone(), mac: self.mac.clone(), seq: self.seq, room_keys: None }
        }
    }
}
