//! The server's RSA key on disk, and slow hashes of secrets (auth keys, room passwords).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use classchat_wire::crypto::ServerKey;
use rand::Rng;
use subtle::ConstantTimeEq;

/// File name of the server key inside the data dir (PKCS#8 DER, mode 0600).
pub const KEY_FILE: &str = "server_key.der";

/// Loads the server key from `data_dir`, creating it on first start.
pub fn load_or_create(data_dir: &Path, bits: usize) -> anyhow::Result<ServerKey> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(der) => ServerKey::from_pkcs8_der(&der)
            .map_err(|e| anyhow::anyhow!("server key {} is unreadable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(bits, "creating the server key (first start)");
            let key = ServerKey::generate(bits)?;
            classchat_wire::fingerprint::write_private(&path, &key.to_pkcs8_der()?)?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read server key {}: {e}", path.display())),
    }
}

/// A salted Argon2id hash with its parameters, stored as one 56-byte blob:
/// `m_kib u32 BE || t u32 BE || salt[16] || hash[32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash {
    m_kib: u32,
    t: u32,
    salt: [u8; 16],
    hash: [u8; 32],
}

impl SecretHash {
    /// Hashes `secret` with a fresh salt. Slow: call from a blocking thread.
    pub fn new(secret: &[u8], m_kib: u32, t: u32) -> anyhow::Result<Self> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let hash = argon(secret, &salt, m_kib, t)?;
        Ok(Self { m_kib, t, salt, hash })
    }

    /// Constant-time check of `secret` against this hash. Slow: call from a blocking thread.
    pub fn verify(&self, secret: &[u8]) -> bool {
        match argon(secret, &self.salt, self.m_kib, self.t) {
            Ok(h) => h.ct_eq(&self.hash).into(),
            Err(_) => false,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(56);
        v.extend_from_slice(&self.m_kib.to_be_bytes());
        v.extend_from_slice(&self.t.to_be_bytes());
        v.extend_from_slice(&self.salt);
        v.extend_from_slice(&self.hash);
        v
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 56 {
            return None;
        }
        Some(Self {
            m_kib: u32::from_be_bytes(b[0..4].try_into().ok()?),
            t: u32::from_be_bytes(b[4..8].try_into().ok()?),
            salt: b[8..24].try_into().ok()?,
            hash: b[24..56].try_into().ok()?,
        })
    }
}

fn argon(secret: &[u8], salt: &[u8], m_kib: u32, t: u32) -> anyhow::Result<[u8; 32]> {
    let params = Params::new(m_kib, t, 1, Some(32)).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(secret, salt, &mut out)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(out)
}

/// SHA-256 of a resume token: what the database keeps.
pub fn token_hash(token: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(token).to_vec()
}

/// Constant-time equality for token hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_round_trips_and_verifies() {
        let h = SecretHash::new(b"hunter2", 256, 1).expect("hash");
        assert!(h.verify(b"hunter2"));
        assert!(!h.verify(b"hunter3"));
        let back = SecretHash::from_bytes(&h.to_bytes()).expect("parse");
        assert_eq!(back, h);
        assert!(back.verify(b"hunter2"));
        assert!(SecretHash::from_bytes(&[0; 10]).is_none());
    }
}
