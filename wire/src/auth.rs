//! Password-derived keys, computed on the client. Every client must compute the same
//! values, so the parameters are part of the protocol (PROTOCOL.md, "Accounts").

use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{CryptoError, Result};

/// Argon2id memory cost, KiB (19 MiB: OWASP's recommended minimum for Argon2id).
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const ARGON2_T: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_P: u32 = 1;
/// Length of every derived key.
pub const KEY_LEN: usize = 32;

/// Salt prefix of the login key.
pub const AUTH_SALT_PREFIX: &str = "classchat-auth:";
/// Salt prefix of the key that encrypts the identity-key backup.
pub const BACKUP_SALT_PREFIX: &str = "classchat-backup:";

fn derive(password: &str, salt: &str) -> Result<[u8; KEY_LEN]> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(KEY_LEN))
        .map_err(|_| CryptoError::BadKeyLength)?;
    let mut out = [0u8; KEY_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt.as_bytes(), &mut out)
        .map_err(|_| CryptoError::BadKeyLength)?;
    Ok(out)
}

/// `Argon2id(password, "classchat-auth:" + lowercase(username))`: what `Register` and
/// `Login` send instead of the password. Slow on purpose (tens of milliseconds).
pub fn auth_key(username: &str, password: &str) -> Result<[u8; KEY_LEN]> {
    derive(password, &format!("{AUTH_SALT_PREFIX}{}", username.to_ascii_lowercase()))
}

/// `Argon2id(password, "classchat-backup:" + lowercase(username))`: encrypts the identity
/// key backup kept on the server. Never sent.
pub fn backup_key(username: &str, password: &str) -> Result<[u8; KEY_LEN]> {
    derive(password, &format!("{BACKUP_SALT_PREFIX}{}", username.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_key_ignores_username_case_and_differs_from_backup_key() {
        let a = auth_key("Alice", "correct horse").expect("derive");
        let b = auth_key("alice", "correct horse").expect("derive");
        assert_eq!(a, b);
        assert_ne!(a, auth_key("alice", "wrong horse").expect("derive"));
        assert_ne!(a, backup_key("alice", "correct horse").expect("derive"));
    }
}
