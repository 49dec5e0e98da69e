//! Server key fingerprints and the client's known-servers store (trust on first use).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// SHA-256 of a public key's SubjectPublicKeyInfo DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Lowercase hex without separators (64 characters): the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits; spaces and colons between them are ignored, so the grouped
    /// display form parses too.
    pub fn parse(s: &str) -> Option<Self> {
        let compact: String = s.chars().filter(|c| !matches!(c, ' ' | ':')).collect();
        let bytes = hex::decode(compact).ok()?;
        Some(Fingerprint(bytes.try_into().ok()?))
    }
}

/// Grouped hex, four digits a group, e.g. `3f2a 9c01 …` (16 groups). Easy to read aloud
/// or compare against a projector.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair.get(1).copied().unwrap_or(0))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// What the store says about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Seen before with this key.
    Known,
    /// Never seen: ask the user.
    Unknown,
    /// Seen before with a different key: warn loudly and refuse by default.
    Changed { expected: Fingerprint },
}

/// The client's memory of server keys, one line per server: `host:port <64 hex digits>`.
/// Lines starting with `#` are comments. Written atomically with 0600 permissions.
#[derive(Debug, Clone, Default)]
pub struct KnownServers {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Fingerprint>,
}

impl KnownServers {
    /// A store that lives only in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads the store at `path`; a missing file is an empty store.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let err = |reason: String| Error::KnownServers { path: path.display().to_string(), reason };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut entries = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(host), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err(format!("line {}: expected `host:port fingerprint`", n + 1)));
            };
            let fp = Fingerprint::parse(fp).ok_or_else(|| err(format!("line {}: bad fingerprint", n + 1)))?;
            entries.insert(host.to_owned(), fp);
        }
        Ok(Self { path: Some(path), entries })
    }

    pub fn check(&self, host: &str, fingerprint: &Fingerprint) -> Trust {
        match self.entries.get(host) {
            None => Trust::Unknown,
            Some(known) if known == fingerprint => Trust::Known,
            Some(known) => Trust::Changed { expected: *known },
        }
    }

    pub fn get(&self, host: &str) -> Option<&Fingerprint> {
        self.entries.get(host)
    }

    /// Remembers `fingerprint` for `host` (replacing any earlier key) and saves the file.
    pub fn trust(&mut self, host: &str, fingerprint: Fingerprint) -> Result<()> {
        self.entries.insert(host.to_owned(), fingerprint);
        self.save()
    }

    fn save(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let err = |e: std::io::Error| Error::KnownServers {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut text = String::from("# ClassChat known servers: host:port SHA-256 of the server key\n");
        for (host, fp) in &self.entries {
            text.push_str(&format!("{host} {}\n", fp.to_hex()));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        write_private(path, text.as_bytes()).map_err(err)
    }
}

/// Writes `bytes` to `path` atomically (temp file + rename) with owner-only permissions.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_grouped_and_parses_back() {
        let fp = Fingerprint::of_der(b"some key");
        let shown = fp.to_string();
        assert_eq!(shown.split(' ').count(), 16);
        assert!(shown.split(' ').all(|g| g.len() == 4));
        assert_eq!(Fingerprint::parse(&shown), Some(fp));
        assert_eq!(Fingerprint::parse(&fp.to_hex()), Some(fp));
        assert_eq!(Fingerprint::parse("abc"), None);
    }

    #[test]
    fn store_trusts_on_first_use_and_flags_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_servers");
        let a = Fingerprint::of_der(b"key a");
        let b = Fingerprint::of_der(b"key b");
        let mut store = KnownServers::load(&path).expect("empty store");
        assert_eq!(store.check("lab:7420", &a), Trust::Unknown);
        store.trust("lab:7420", a).expect("save");

        let store = KnownServers::load(&path).expect("reload");
        assert_eq!(store.check("lab:7420", &a), Trust::Known);
        assert_eq!(store.check("lab:7420", &b), Trust::Changed { expected: a });
        assert_eq!(store.check("other:7420", &a), Trust::Unknown);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_store_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_servers");
        std::fs::write(&path, "lab:7420 nothex\n").expect("write");
        let err = KnownServers::load(&path).expect_err("must fail");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
