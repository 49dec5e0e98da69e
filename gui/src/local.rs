//! Files the app keeps under its data directory. Secrets live here, each in a file of
//! its own with owner-only (0600) permissions, and never in the eframe settings:
//!
//! - `known_servers`: server key fingerprints (trust on first use), see
//!   [`classchat_wire::KnownServers`];
//! - `resume_tokens`: one line per server and user, `host:port username hex-token`;
//! - `device_id`: a random id that names this installation to the server;
//! - `dm_contacts`: the people each user has direct-message conversations with, one line
//!   per `host:port username contact`. The server lists a user's rooms at login but not
//!   their DM partners, so without this a restart would hide quiet DM conversations.
//! - `keys/HOST_PORT-USER.pk8`: the user's end-to-end identity key (PKCS#8 DER), one file
//!   per server and user;
//! - `e2e_peers`: the contacts' identity keys this user accepted, one line per
//!   `host:port username contact state hex-der`, where state is `accepted`, `verified`
//!   (the user compared safety numbers) or `old` (replaced; kept to check old messages).
//! - `nodes`: the addresses of servers of several nodes and the one to try first, kept by
//!   [`crate::nodes`] (no secrets).
//!
//! Everything here does blocking file I/O: call it from the net task's blocking pool,
//! never from the UI thread.

use std::io;
use std::path::{Path, PathBuf};

use classchat_wire::KnownServers;
use classchat_wire::fingerprint::write_private;

/// The app's data directory and the files in it.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The per-user data directory (`~/.local/share/classchat` on Linux).
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "ClassChat", "classchat").map(|d| d.data_dir().to_path_buf())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn known_servers_path(&self) -> PathBuf {
        self.dir.join("known_servers")
    }

    /// The known-servers store; a missing file is an empty store.
    pub fn known_servers(&self) -> classchat_wire::Result<KnownServers> {
        KnownServers::load(self.known_servers_path())
    }

    /// This installation's device id, created on first use.
    pub fn device_id(&self) -> io::Result<String> {
        let path = self.dir.join("device_id");
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let nonce = classchat_wire::crypto::random_nonce();
        let id = format!("desktop-{}", hex::encode(&nonce[..12]));
        self.ensure_dir()?;
        write_private(&path, format!("{id}\n").as_bytes())?;
        Ok(id)
    }

    /// The resume token saved for `user` on `addr`, if any.
    pub fn resume_token(&self, addr: &str, user: &str) -> Option<Vec<u8>> {
        let text = std::fs::read_to_string(self.tokens_path()).ok()?;
        parse_tokens(&text)
            .into_iter()
            .find(|(a, u, _)| a == addr && u.eq_ignore_ascii_case(user))
            .map(|(_, _, token)| token)
    }

    /// Saves (or with `None`, forgets) the resume token of `user` on `addr`.
    pub fn set_resume_token(&self, addr: &str, user: &str, token: Option<&[u8]>) -> io::Result<()> {
        let text = match std::fs::read_to_string(self.tokens_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut entries = parse_tokens(&text);
        entries.retain(|(a, u, _)| !(a == addr && u.eq_ignore_ascii_case(user)));
        if let Some(token) = token {
            entries.push((addr.to_owned(), user.to_owned(), token.to_vec()));
        }
        let mut out = String::from("# ClassChat resume tokens: host:port username token\n");
        for (a, u, t) in &entries {
            out.push_str(&format!("{a} {u} {}\n", hex::encode(t)));
        }
        self.ensure_dir()?;
        write_private(&self.tokens_path(), out.as_bytes())
    }

    /// The people `user` on `addr` has direct-message conversations with.
    pub fn dm_contacts(&self, addr: &str, user: &str) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.dir.join("dm_contacts")) else { return Vec::new() };
        text.lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let (a, u, contact) = (parts.next()?, parts.next()?, parts.next()?);
                (a == addr && u.eq_ignore_ascii_case(user)).then(|| contact.to_owned())
            })
            .collect()
    }

    /// Remembers that `user` on `addr` has a conversation with `contact`.
    pub fn add_dm_contact(&self, addr: &str, user: &str, contact: &str) -> io::Result<()> {
        let path = self.dir.join("dm_contacts");
        let mut text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        if self.dm_contacts(addr, user).iter().any(|c| c.eq_ignore_ascii_case(contact)) {
            return Ok(());
        }
        text.push_str(&format!("{addr} {user} {contact}\n"));
        self.ensure_dir()?;
        write_private(&path, text.as_bytes())
    }

    fn identity_path(&self, addr: &str, user: &str) -> PathBuf {
        // Usernames are [A-Za-z0-9_.-]; the address may hold ':' and brackets.
        let host: String =
            addr.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
        self.dir.join("keys").join(format!("{host}-{}.pk8", user.to_ascii_lowercase()))
    }

    /// The identity key (PKCS#8 DER) of `user` on `addr` saved on this machine, if any.
    pub fn identity(&self, addr: &str, user: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.identity_path(addr, user)) {
            Ok(der) => Ok(Some(der)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves the identity key of `user` on `addr`, readable by the owner only.
    pub fn set_identity(&self, addr: &str, user: &str, pkcs8_der: &[u8]) -> io::Result<()> {
        self.ensure_dir()?;
        let path = self.identity_path(addr, user);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        write_private(&path, pkcs8_der)
    }

    /// The contacts' keys `user` on `addr` accepted: `(contact, state, der)`.
    pub fn peer_keys(&self, addr: &str, user: &str) -> Vec<(String, PeerKeyState, Vec<u8>)> {
        let Ok(text) = std::fs::read_to_string(self.dir.join("e2e_peers")) else { return Vec::new() };
        parse_peer_keys(&text)
            .into_iter()
            .filter(|(a, u, ..)| a == addr && u.eq_ignore_ascii_case(user))
            .map(|(_, _, c, s, d)| (c, s, d))
            .collect()
    }

    /// Replaces the keys `user` on `addr` accepted for `contact`.
    pub fn set_peer_keys(
        &self,
        addr: &str,
        user: &str,
        contact: &str,
        keys: &[(PeerKeyState, Vec<u8>)],
    ) -> io::Result<()> {
        let path = self.dir.join("e2e_peers");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut entries = parse_peer_keys(&text);
        entries.retain(|(a, u, c, ..)| {
            !(a == addr && u.eq_ignore_ascii_case(user) && c.eq_ignore_ascii_case(contact))
        });
        for (state, der) in keys {
            entries.push((addr.to_owned(), user.to_owned(), contact.to_owned(), *state, der.clone()));
        }
        let mut out = String::from("# ClassChat contacts' keys: host:port username contact state key\n");
        for (a, u, c, s, d) in &entries {
            out.push_str(&format!("{a} {u} {c} {} {}\n", s.as_str(), hex::encode(d)));
        }
        self.ensure_dir()?;
        write_private(&path, out.as_bytes())
    }

    fn tokens_path(&self) -> PathBuf {
        self.dir.join("resume_tokens")
    }

    fn ensure_dir(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
}

/// How far the user trusts a contact's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKeyState {
    /// The key in use, accepted on first contact or after a change.
    Accepted,
    /// The key in use, and the user compared the safety number.
    Verified,
    /// A key the contact used before; old messages signed with it can still be checked.
    Old,
}

impl PeerKeyState {
    fn as_str(self) -> &'static str {
        match self {
            PeerKeyState::Accepted => "accepted",
            PeerKeyState::Verified => "verified",
            PeerKeyState::Old => "old",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(PeerKeyState::Accepted),
            "verified" => Some(PeerKeyState::Verified),
            "old" => Some(PeerKeyState::Old),
            _ => None,
        }
    }
}

type PeerKeyLine = (String, String, String, PeerKeyState, Vec<u8>);

fn parse_peer_keys(text: &str) -> Vec<PeerKeyLine> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut p = line.split_whitespace();
            let (a, u, c, s, d) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
            Some((a.to_owned(), u.to_owned(), c.to_owned(), PeerKeyState::parse(s)?, hex::decode(d).ok()?))
        })
        .collect()
}

/// Lines of `host:port username hex`; anything malformed is skipped (the file is ours and
/// is rewritten whole, so a bad line can only come from a crash or a hand edit).
fn parse_tokens(text: &str) -> Vec<(String, String, Vec<u8>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (addr, user, token) = (parts.next()?, parts.next()?, parts.next()?);
            Some((addr.to_owned(), user.to_owned(), hex::decode(token).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_per_server_and_user_in_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("data"));
        assert_eq!(store.resume_token("lab:7420", "alice"), None);
        store.set_resume_token("lab:7420", "alice", Some(b"tok-a")).expect("save");
        store.set_resume_token("lab:7420", "bob", Some(b"tok-b")).expect("save");
        store.set_resume_token("other:7420", "alice", Some(b"tok-c")).expect("save");
        assert_eq!(store.resume_token("lab:7420", "Alice").as_deref(), Some(&b"tok-a"[..]));
        store.set_resume_token("lab:7420", "alice", Some(b"tok-a2")).expect("replace");
        assert_eq!(store.resume_token("lab:7420", "alice").as_deref(), Some(&b"tok-a2"[..]));
        store.set_resume_token("lab:7420", "alice", None).expect("forget");
        assert_eq!(store.resume_token("lab:7420", "alice"), None);
        assert_eq!(store.resume_token("lab:7420", "bob").as_deref(), Some(&b"tok-b"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.tokens_path()).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn dm_contacts_are_kept_per_server_and_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path());
        assert!(store.dm_contacts("lab:7420", "alice").is_empty());
        store.add_dm_contact("lab:7420", "alice", "bob").expect("save");
        store.add_dm_contact("lab:7420", "alice", "Bob").expect("no duplicate");
        store.add_dm_contact("lab:7420", "alice", "carol").expect("save");
        store.add_dm_contact("lab:7420", "dave", "erin").expect("save");
        assert_eq!(store.dm_contacts("lab:7420", "ALICE"), ["bob", "carol"]);
        assert_eq!(store.dm_contacts("other:7420", "alice"), Vec::<String>::new());
    }

    #[test]
    fn identity_keys_are_private_files_per_server_and_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("data"));
        assert_eq!(store.identity("lab:7420", "alice").expect("read"), None);
        store.set_identity("lab:7420", "Alice", b"der").expect("save");
        assert_eq!(store.identity("lab:7420", "alice").expect("read").as_deref(), Some(&b"der"[..]));
        assert_eq!(store.identity("lab:7421", "alice").expect("read"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = store.identity_path("lab:7420", "alice");
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn peer_keys_are_replaced_per_contact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path());
        store.set_peer_keys("lab:7420", "alice", "bob", &[(PeerKeyState::Accepted, vec![1])]).expect("save");
        store
            .set_peer_keys("lab:7420", "alice", "carol", &[(PeerKeyState::Verified, vec![2])])
            .expect("save");
        store
            .set_peer_keys(
                "lab:7420",
                "alice",
                "Bob",
                &[(PeerKeyState::Old, vec![1]), (PeerKeyState::Accepted, vec![3])],
            )
            .expect("replace");
        let keys = store.peer_keys("lab:7420", "ALICE");
        assert_eq!(
            keys,
            [
                ("carol".to_owned(), PeerKeyState::Verified, vec![2]),
                ("Bob".to_owned(), PeerKeyState::Old, vec![1]),
                ("Bob".to_owned(), PeerKeyState::Accepted, vec![3]),
            ]
        );
        assert!(store.peer_keys("lab:7420", "bob").is_empty());
    }

    #[test]
    fn device_id_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path());
        let id = store.device_id().expect("create");
        assert!(id.starts_with("desktop-"));
        assert_eq!(store.device_id().expect("read"), id);
    }
}
