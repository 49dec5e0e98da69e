//! End-to-end encryption of direct messages (sans-I/O).
//!
//! - Each user has an RSA identity key ([`Identity`]), made on their device. The public
//!   half is published in the server's key directory; the private half is kept locally
//!   and backed up on the server sealed under a password-derived key ([`seal_backup`]).
//! - A conversation key ([`DmKey`]) is 64 random bytes: 32 for AES-256-CBC, 32 for
//!   HMAC-SHA256. A [`KeyGrant`] carries it wrapped with RSA-OAEP-SHA256 for both
//!   parties, signed (RSA-PSS-SHA256) by its creator. Messages name their key by id, so
//!   reading history costs one RSA decryption per key, not per message.
//! - A message is an [`Envelope`]: encrypt-then-MAC under the conversation key, then
//!   signed by the sender's identity key, so neither the server nor anyone holding the
//!   conversation key alone can forge one.
//! - [`safety_number`] renders both fingerprints into digits both sides can compare.
//!
//! Usernames inside signed and MACed data are lowercased, so display case cannot matter.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use rand::Rng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::pss::{Signature, SigningKey, VerifyingKey};
use rsa::sha2::{Digest, Sha256, Sha512};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;

type HmacSha256 = Hmac<Sha256>;

/// Identity key size.
pub const IDENTITY_BITS: usize = 3072;
/// A sender starts a new conversation key after this many messages under one key.
pub const ROTATE_AFTER: u64 = 1000;
/// Length of a key id.
pub const KEY_ID_LEN: usize = 16;
/// Version byte of the backup blob and of envelopes.
pub const VERSION: u8 = 1;

/// Why end-to-end data was rejected. Shown to users as "could not be verified".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    #[error("the signature does not match the sender's key")]
    BadSignature,
    #[error("the message was altered (MAC mismatch)")]
    BadMac,
    #[error("the message does not decrypt")]
    BadCiphertext,
    #[error("the key was made for someone else or for another key")]
    NotForMe,
    #[error("malformed end-to-end data")]
    Malformed,
    #[error("RSA operation failed")]
    Rsa,
    #[error("the key backup does not open with this password")]
    BadBackup,
}

/// The public half of someone's identity key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicIdentity {
    key: RsaPublicKey,
    der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicIdentity({})", self.fingerprint)
    }
}

impl PublicIdentity {
    /// Parses a SubjectPublicKeyInfo DER (as stored in the key directory).
    pub fn from_der(der: &[u8]) -> Result<Self, E2eError> {
        let key = RsaPublicKey::from_public_key_der(der).map_err(|_| E2eError::Malformed)?;
        let bits = rsa::traits::PublicKeyParts::n_bits_precision(&key) as usize;
        if !(2048..=8192).contains(&bits) {
            return Err(E2eError::Malformed);
        }
        Ok(Self { key, der: der.to_vec(), fingerprint: Fingerprint::of_der(der) })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), E2eError> {
        let sig = Signature::try_from(sig).map_err(|_| E2eError::BadSignature)?;
        VerifyingKey::<Sha256>::new(self.key.clone()).verify(msg, &sig).map_err(|_| E2eError::BadSignature)
    }

    /// RSA-OAEP-SHA256 of `secret` under this key (the peer session's key exchange).
    pub(crate) fn wrap(&self, secret: &[u8]) -> Result<Vec<u8>, E2eError> {
        self.key.encrypt(&mut rand::rng(), Oaep::<Sha256>::new(), secret).map_err(|_| E2eError::Rsa)
    }
}

/// A user's identity key pair.
#[derive(Clone)]
pub struct Identity {
    private: RsaPrivateKey,
    public: PublicIdentity,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public.fingerprint)
    }
}

impl Identity {
    /// Makes a new key (slow: about a second for 3072 bits in a release build).
    pub fn generate(bits: usize) -> Result<Self, E2eError> {
        let private = RsaPrivateKey::new(&mut rand::rng(), bits).map_err(|_| E2eError::Rsa)?;
        Self::from_private(private)
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, E2eError> {
        Self::from_private(RsaPrivateKey::from_pkcs8_der(der).map_err(|_| E2eError::Malformed)?)
    }

    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, E2eError> {
        Ok(self.private.to_pkcs8_der().map_err(|_| E2eError::Rsa)?.as_bytes().to_vec())
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, E2eError> {
        let der =
            RsaPublicKey::from(&private).to_public_key_der().map_err(|_| E2eError::Rsa)?.as_bytes().to_vec();
        let public = PublicIdentity::from_der(&der)?;
        Ok(Self { private, public })
    }

    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// Undoes [`PublicIdentity::wrap`] with the private key.
    pub(crate) fn unwrap_secret(&self, wrapped: &[u8]) -> Result<Vec<u8>, E2eError> {
        self.private.decrypt(Oaep::<Sha256>::new(), wrapped).map_err(|_| E2eError::NotForMe)
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        SigningKey::<Sha256>::new(self.private.clone()).sign_with_rng(&mut rand::rng(), msg).to_vec()
    }
}

/// Length-prefixed concatenation under a domain label: the bytes that are MACed or signed.
pub(crate) fn transcript(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(label.as_bytes());
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    #[expect(clippy::expect_used)]
    hkdf::Hkdf::<Sha256>::new(None, ikm).expand(info, &mut out).expect("32-byte HKDF output");
    out
}

fn mac_of(key: &[u8; 32], data: &[u8]) -> HmacSha256 {
    #[expect(clippy::expect_used)]
    let mut m =
        <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Encrypt-then-MAC with a fresh IV: `(iv, ct, mac)` where the MAC covers `aad || iv || ct`.
fn seal_parts(enc: &[u8; 32], mac: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> ([u8; 16], Vec<u8>, Vec<u8>) {
    let iv = random::<16>();
    let ct = cbc::Encryptor::<Aes256>::new(enc.into(), &iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext);
    let tag = mac_of(mac, &transcript("", &[aad, &iv, &ct])).finalize().into_bytes().to_vec();
    (iv, ct, tag)
}

fn open_parts(
    enc: &[u8; 32],
    mac: &[u8; 32],
    aad: &[u8],
    iv: &[u8],
    ct: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, E2eError> {
    mac_of(mac, &transcript("", &[aad, iv, ct])).verify_slice(tag).map_err(|_| E2eError::BadMac)?;
    let iv: [u8; 16] = iv.try_into().map_err(|_| E2eError::Malformed)?;
    cbc::Decryptor::<Aes256>::new(enc.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(ct)
        .map_err(|_| E2eError::BadCiphertext)
}

/// Seals the identity key for the server's backup store under `backup_key`
/// ([`crate::auth::backup_key`]): `VERSION || IV || AES-256-CBC(PKCS#8 DER) || HMAC`.
pub fn seal_backup(identity: &Identity, backup_key: &[u8; 32]) -> Result<Vec<u8>, E2eError> {
    let enc = hkdf32(backup_key, b"classchat v1 backup aes");
    let mac = hkdf32(backup_key, b"classchat v1 backup hmac");
    let (iv, ct, tag) = seal_parts(&enc, &mac, &[VERSION], &identity.to_pkcs8_der()?);
    let mut out = vec![VERSION];
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a backup made by [`seal_backup`]. A wrong password is [`E2eError::BadBackup`].
pub fn open_backup(blob: &[u8], backup_key: &[u8; 32]) -> Result<Identity, E2eError> {
    if blob.len() < 1 + 16 + 16 + 32 || blob[0] != VERSION {
        return Err(E2eError::Malformed);
    }
    let enc = hkdf32(backup_key, b"classchat v1 backup aes");
    let mac = hkdf32(backup_key, b"classchat v1 backup hmac");
    let (iv, rest) = blob[1..].split_at(16);
    let (ct, tag) = rest.split_at(rest.len() - 32);
    let der = open_parts(&enc, &mac, &[VERSION], iv, ct, tag).map_err(|_| E2eError::BadBackup)?;
    Identity::from_pkcs8_der(&der)
}

/// A conversation key: 32 bytes for AES-256-CBC and 32 for HMAC-SHA256, named by a
/// random 16-byte id.
#[derive(Clone, PartialEq, Eq)]
pub struct DmKey {
    pub id: [u8; KEY_ID_LEN],
    enc: [u8; 32],
    mac: [u8; 32],
}

impl std::fmt::Debug for DmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DmKey({})", hex::encode(self.id))
    }
}

impl DmKey {
    pub fn generate() -> Self {
        Self { id: random(), enc: random(), mac: random() }
    }

    fn material(&self) -> [u8; 64] {
        let mut m = [0u8; 64];
        m[..32].copy_from_slice(&self.enc);
        m[32..].copy_from_slice(&self.mac);
        m
    }
}

/// A conversation key wrapped for both parties and signed by its creator (`from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    #[serde(with = "serde_bytes")]
    pub key_id: Vec<u8>,
    /// Creator, lowercased.
    pub from: String,
    /// The other party, lowercased.
    pub to: String,
    /// Identity fingerprints the key was wrapped for.
    #[serde(with = "serde_bytes")]
    pub from_fp: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub to_fp: Vec<u8>,
    /// RSA-OAEP-SHA256 of the 64-byte key under `from`'s and `to`'s identity keys.
    #[serde(with = "serde_bytes")]
    pub for_from: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub for_to: Vec<u8>,
    /// RSA-PSS-SHA256 by `from` over every field above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl KeyGrant {
    /// Wraps `key` for `me` and `peer` and signs it.
    pub fn new(
        key: &DmKey,
        me: &str,
        my_id: &Identity,
        peer: &str,
        peer_id: &PublicIdentity,
    ) -> Result<Self, E2eError> {
        let mut rng = rand::rng();
        let material = key.material();
        let for_from = my_id
            .public
            .key
            .encrypt(&mut rng, Oaep::<Sha256>::new(), &material)
            .map_err(|_| E2eError::Rsa)?;
        let for_to =
            peer_id.key.encrypt(&mut rng, Oaep::<Sha256>::new(), &material).map_err(|_| E2eError::Rsa)?;
        let mut grant = KeyGrant {
            key_id: key.id.to_vec(),
            from: me.to_ascii_lowercase(),
            to: peer.to_ascii_lowercase(),
            from_fp: my_id.public.fingerprint.0.to_vec(),
            to_fp: peer_id.fingerprint.0.to_vec(),
            for_from,
            for_to,
            signature: Vec::new(),
        };
        grant.signature = my_id.sign(&grant.signed_bytes());
        Ok(grant)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        transcript(
            "classchat dm key v1",
            &[
                &self.key_id,
                self.from.as_bytes(),
                self.to.as_bytes(),
                &self.from_fp,
                &self.to_fp,
                &self.for_from,
                &self.for_to,
            ],
        )
    }

    /// Verifies the creator's signature (with `creator`, the key the directory gave for
    /// `self.from`) and unwraps the key for `me`.
    pub fn open(&self, me: &str, my_id: &Identity, creator: &PublicIdentity) -> Result<DmKey, E2eError> {
        if creator.fingerprint.0[..] != self.from_fp[..] {
            return Err(E2eError::BadSignature);
        }
        creator.verify(&self.signed_bytes(), &self.signature)?;
        let me = me.to_ascii_lowercase();
        let (wrapped, fp) = if me == self.to {
            (&self.for_to, &self.to_fp)
        } else if me == self.from {
            (&self.for_from, &self.from_fp)
        } else {
            return Err(E2eError::NotForMe);
        };
        if my_id.public.fingerprint.0[..] != fp[..] {
            return Err(E2eError::NotForMe);
        }
        let material =
            my_id.private.decrypt(Oaep::<Sha256>::new(), wrapped).map_err(|_| E2eError::NotForMe)?;
        let material: [u8; 64] = material.try_into().map_err(|_| E2eError::Malformed)?;
        let id: [u8; KEY_ID_LEN] = self.key_id.as_slice().try_into().map_err(|_| E2eError::Malformed)?;
        let mut enc = [0u8; 32];
        let mut mac = [0u8; 32];
        enc.copy_from_slice(&material[..32]);
        mac.copy_from_slice(&material[32..]);
        Ok(DmKey { id, enc, mac })
    }
}

/// One encrypted, signed direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    #[serde(with = "serde_bytes")]
    pub key_id: Vec<u8>,
    /// The sender's counter under this key: together with `key_id` and the sender it
    /// names the message, so a replayed envelope is recognised.
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub iv: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
    /// RSA-PSS-SHA256 by the sender over the header, IV, ciphertext and MAC.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

fn envelope_aad(key_id: &[u8], from: &str, to: &str, seq: u64) -> Vec<u8> {
    transcript(
        "classchat dm msg v1",
        &[
            &[VERSION],
            key_id,
            from.to_ascii_lowercase().as_bytes(),
            to.to_ascii_lowercase().as_bytes(),
            &seq.to_be_bytes(),
        ],
    )
}

impl Envelope {
    /// Encrypts and signs `text` from `from` to `to` under `key`.
    pub fn seal(key: &DmKey, seq: u64, from: &str, to: &str, sender: &Identity, text: &str) -> Self {
        Self::seal_bytes(key, seq, from, to, sender, text.as_bytes())
    }

    /// [`Envelope::seal`] for bytes that are not message text, such as a
    /// [`crate::sealed_file::FileSecret`]. They share the sender's `seq` counter, so the
    /// replay check covers both.
    pub fn seal_bytes(
        key: &DmKey,
        seq: u64,
        from: &str,
        to: &str,
        sender: &Identity,
        plaintext: &[u8],
    ) -> Self {
        let aad = envelope_aad(&key.id, from, to, seq);
        let (iv, ct, mac) = seal_parts(&key.enc, &key.mac, &aad, plaintext);
        let sig = sender.sign(&transcript("", &[&aad, &iv, &ct, &mac]));
        Envelope { v: VERSION, key_id: key.id.to_vec(), seq, iv: iv.to_vec(), ct, mac, sig }
    }

    /// Checks the signature (with the sender's identity) and the MAC, then decrypts.
    /// Nothing is returned unless both hold.
    pub fn open(
        &self,
        key: &DmKey,
        from: &str,
        to: &str,
        sender: &PublicIdentity,
    ) -> Result<String, E2eError> {
        let (text, check) = self.open_unsigned(key, from, to)?;
        check.verify(sender)?;
        Ok(text)
    }

    /// The cheap half of [`Envelope::open`]: checks the MAC and decrypts (microseconds),
    /// and returns the signature check (an RSA operation, about a third of a millisecond)
    /// for later. A reader that shows many messages at once verifies only those on
    /// screen; the text must not be shown before [`SignatureCheck::verify`] passed.
    pub fn open_unsigned(
        &self,
        key: &DmKey,
        from: &str,
        to: &str,
    ) -> Result<(String, SignatureCheck), E2eError> {
        let (pt, check) = self.open_unsigned_bytes(key, from, to)?;
        let text = String::from_utf8(pt).map_err(|_| E2eError::Malformed)?;
        Ok((text, check))
    }

    /// [`Envelope::open_unsigned`] for bytes that are not message text.
    pub fn open_unsigned_bytes(
        &self,
        key: &DmKey,
        from: &str,
        to: &str,
    ) -> Result<(Vec<u8>, SignatureCheck), E2eError> {
        if self.v != VERSION || self.key_id[..] != key.id[..] {
            return Err(E2eError::Malformed);
        }
        let aad = envelope_aad(&self.key_id, from, to, self.seq);
        let pt = open_parts(&key.enc, &key.mac, &aad, &self.iv, &self.ct, &self.mac)?;
        let signed = transcript("", &[&aad, &self.iv, &self.ct, &self.mac]);
        Ok((pt, SignatureCheck { signed, sig: self.sig.clone() }))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        crate::message::encode(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, E2eError> {
        crate::message::decode(b).map_err(|_| E2eError::Malformed)
    }
}

/// The plaintext of the envelope that edits direct message `of` (`Request::Edit`),
/// sealed with [`Envelope::seal_bytes`] under the conversation's key.
///
/// The id inside the signed plaintext stops the server from applying an edit to another
/// message. A receiver applies an edit only when it comes from the message's sender and
/// its envelope's `seq` is above that of the text it shows, so an older edit cannot be
/// replayed over a newer one. A MessagePack map is never valid UTF-8 text, so an edit
/// cannot be passed off as a new message either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmEdit {
    pub of: u64,
    pub text: String,
}

/// The plaintext of the envelope with which a sender deletes their direct message `of`
/// (`Request::Delete`'s `proof`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmDelete {
    pub of: u64,
}

impl DmEdit {
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::message::encode(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, E2eError> {
        crate::message::decode(b).map_err(|_| E2eError::Malformed)
    }
}

impl DmDelete {
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::message::encode(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, E2eError> {
        crate::message::decode(b).map_err(|_| E2eError::Malformed)
    }
}

/// The sender's signature over an envelope, checked apart from decryption (see
/// [`Envelope::open_unsigned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    signed: Vec<u8>,
    sig: Vec<u8>,
}

impl SignatureCheck {
    pub fn verify(&self, sender: &PublicIdentity) -> Result<(), E2eError> {
        sender.verify(&self.signed, &self.sig)
    }
}

/// Opens many envelopes of one conversation (`from` → `to`, all under `key`) on every
/// core: what loading a conversation's history costs is dominated by the signature
/// checks, which are independent.
pub fn open_all(
    envelopes: &[Vec<u8>],
    key: &DmKey,
    from: &str,
    to: &str,
    sender: &PublicIdentity,
) -> Vec<Result<String, E2eError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let chunk = envelopes.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = envelopes
            .chunks(chunk)
            .map(|part| {
                let handle = s.spawn(move || {
                    part.iter()
                        .map(|b| Envelope::from_bytes(b).and_then(|e| e.open(key, from, to, sender)))
                        .collect::<Vec<_>>()
                });
                (part.len(), handle)
            })
            .collect();
        // A worker cannot panic on input, but if one did, its share counts as unverified.
        handles
            .into_iter()
            .flat_map(|(n, h)| h.join().unwrap_or_else(|_| vec![Err(E2eError::Malformed); n]))
            .collect()
    })
}

/// A number both parties of a conversation compute identically from the two usernames
/// and identity fingerprints: 60 digits in 12 groups of 5. If it matches when read aloud,
/// nobody in between substituted a key.
pub fn safety_number(user_a: &str, fp_a: &Fingerprint, user_b: &str, fp_b: &Fingerprint) -> String {
    let (a, b) = (user_a.to_ascii_lowercase(), user_b.to_ascii_lowercase());
    let ((a, fa), (b, fb)) = if (a.as_str(), fp_a) <= (b.as_str(), fp_b) {
        ((a, fp_a), (b, fp_b))
    } else {
        ((b, fp_b), (a, fp_a))
    };
    let digest =
        Sha512::digest(transcript("classchat safety number v1", &[a.as_bytes(), &fa.0, b.as_bytes(), &fb.0]));
    digest
        .chunks(5)
        .take(12)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn alice() -> &'static Identity {
        static K: OnceLock<Identity> = OnceLock::new();
        K.get_or_init(|| Identity::generate(2048).expect("keygen"))
    }
    fn bob() -> &'static Identity {
        static K: OnceLock<Identity> = OnceLock::new();
        K.get_or_init(|| Identity::generate(2048).expect("keygen"))
    }

    #[test]
    fn a_grant_opens_for_both_parties_and_nobody_else() {
        let key = DmKey::generate();
        let grant = KeyGrant::new(&key, "Alice", alice(), "bob", bob().public()).expect("grant");
        assert_eq!(grant.open("bob", bob(), alice().public()).expect("bob opens"), key);
        assert_eq!(grant.open("alice", alice(), alice().public()).expect("alice opens"), key);
        assert_eq!(grant.open("carol", bob(), alice().public()), Err(E2eError::NotForMe));
        // A grant claimed to come from bob, checked with bob's key, fails.
        assert_eq!(grant.open("bob", bob(), bob().public()), Err(E2eError::BadSignature));
    }

    #[test]
    fn tampered_grants_are_rejected() {
        let key = DmKey::generate();
        let grant = KeyGrant::new(&key, "alice", alice(), "bob", bob().public()).expect("grant");
        let fields: [fn(&mut KeyGrant) -> &mut Vec<u8>; 4] =
            [|g| &mut g.key_id, |g| &mut g.for_to, |g| &mut g.signature, |g| &mut g.to_fp];
        for f in fields {
            let mut bad = grant.clone();
            let v = f(&mut bad);
            let last = v.len() - 1;
            v[last] ^= 1;
            assert!(bad.open("bob", bob(), alice().public()).is_err());
        }
    }

    #[test]
    fn envelopes_round_trip_and_reject_any_flipped_bit() {
        let key = DmKey::generate();
        let env = Envelope::seal(&key, 7, "alice", "Bob", alice(), "meet at the lab at 3");
        let back = Envelope::from_bytes(&env.to_bytes()).expect("decodes");
        assert_eq!(back.open(&key, "alice", "bob", alice().public()).expect("opens"), "meet at the lab at 3");
        // Wrong sender key, wrong direction, wrong seq: all rejected.
        assert_eq!(back.open(&key, "alice", "bob", bob().public()), Err(E2eError::BadSignature));
        assert!(back.open(&key, "bob", "alice", alice().public()).is_err());
        let mut reseq = back.clone();
        reseq.seq += 1;
        assert!(reseq.open(&key, "alice", "bob", alice().public()).is_err());
        for field in 0..4 {
            let mut bad = back.clone();
            let v = match field {
                0 => &mut bad.ct,
                1 => &mut bad.mac,
                2 => &mut bad.sig,
                _ => &mut bad.iv,
            };
            v[0] ^= 0x80;
            assert!(bad.open(&key, "alice", "bob", alice().public()).is_err(), "field {field}");
        }
    }

    #[test]
    fn unsigned_opening_defers_only_the_signature() {
        let key = DmKey::generate();
        let env = Envelope::seal(&key, 3, "alice", "bob", alice(), "later");
        let (text, check) = env.open_unsigned(&key, "alice", "bob").expect("MAC holds");
        assert_eq!(text, "later");
        assert_eq!(check.verify(alice().public()), Ok(()));
        assert_eq!(check.verify(bob().public()), Err(E2eError::BadSignature));
        let mut bad = env.clone();
        bad.sig[0] ^= 1;
        let (_, check) =
            bad.open_unsigned(&key, "alice", "bob").expect("the MAC does not cover the signature");
        assert_eq!(check.verify(alice().public()), Err(E2eError::BadSignature));
        let mut bad = env;
        bad.ct[0] ^= 1;
        assert_eq!(bad.open_unsigned(&key, "alice", "bob").map(|_| ()), Err(E2eError::BadMac));
    }

    #[test]
    fn open_all_keeps_order_and_flags_each_bad_envelope() {
        let key = DmKey::generate();
        let mut all: Vec<Vec<u8>> = (0..9u64)
            .map(|i| Envelope::seal(&key, i, "alice", "bob", alice(), &format!("m{i}")).to_bytes())
            .collect();
        all[4] = vec![0xc1];
        let out = open_all(&all, &key, "alice", "bob", alice().public());
        assert_eq!(out.len(), 9);
        for (i, r) in out.iter().enumerate() {
            if i == 4 {
                assert!(r.is_err());
            } else {
                assert_eq!(r.as_deref(), Ok(format!("m{i}").as_str()));
            }
        }
    }

    #[test]
    fn backup_opens_only_with_the_right_key() {
        let right = [3u8; 32];
        let blob = seal_backup(alice(), &right).expect("seal");
        let restored = open_backup(&blob, &right).expect("opens");
        assert_eq!(restored.public().fingerprint(), alice().public().fingerprint());
        assert_eq!(open_backup(&blob, &[4u8; 32]).map(|_| ()), Err(E2eError::BadBackup));
    }

    #[test]
    fn safety_numbers_match_on_both_sides_and_change_with_a_key() {
        let (fa, fb) = (alice().public().fingerprint(), bob().public().fingerprint());
        let n1 = safety_number("Alice", fa, "bob", fb);
        let n2 = safety_number("bob", fb, "alice", fa);
        assert_eq!(n1, n2);
        assert_eq!(n1.split(' ').count(), 12);
        assert!(n1.split(' ').all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        assert_ne!(n1, safety_number("alice", fb, "bob", fb));
    }
}
