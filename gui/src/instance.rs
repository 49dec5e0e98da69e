//! One data directory per running app window.
//!
//! Two windows on one data directory would share the saved session and log in as the
//! same person, and would overwrite each other's settings. So each running app holds an
//! exclusive lock on `instance.lock` in its directory; a second app started while the
//! first runs gets a directory of its own (`instance-2/` under the first, and so on),
//! with its own settings and sessions. That is what makes "run it twice and chat with
//! yourself" work. Which server keys are trusted is this account's decision, not a
//! window's: a new instance directory starts with a copy of the first one's
//! `known_servers`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use crate::local::LocalStore;

/// Most app windows at once on one account's data directory.
pub const MAX_INSTANCES: u32 = 9;

/// A claimed data directory; the claim lasts as long as this value.
#[derive(Debug)]
pub struct Instance {
    /// Which window this is: 1 for the first.
    pub number: u32,
    pub dir: PathBuf,
    _lock: File,
}

/// Claims `base`, or when another running app holds it, the first free `instance-N`
/// directory under it.
pub fn claim(base: &Path) -> io::Result<Instance> {
    for number in 1..=MAX_INSTANCES {
        let dir = if number == 1 { base.to_path_buf() } else { base.join(format!("instance-{number}")) };
        std::fs::create_dir_all(&dir)?;
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("instance.lock"))?;
        match lock.try_lock() {
            Ok(()) => {
                let known = LocalStore::new(&dir).known_servers_path();
                let first_known = LocalStore::new(base).known_servers_path();
                if number > 1 && !known.exists() && first_known.exists() {
                    // fs::copy keeps the file's owner-only permissions.
                    std::fs::copy(first_known, known)?;
                }
                return Ok(Instance { number, dir, _lock: lock });
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    Err(io::Error::other(format!("{MAX_INSTANCES} ClassChat windows are already open for this account")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_app_gets_a_directory_of_its_own_until_the_first_exits() {
        let base = tempfile::tempdir().expect("tempdir");
        std::fs::write(base.path().join("known_servers"), "lab:7420 00ff\n").expect("write");
        let first = claim(base.path()).expect("first");
        assert_eq!((first.number, first.dir.as_path()), (1, base.path()));
        let second = claim(base.path()).expect("second");
        assert_eq!((second.number, second.dir.clone()), (2, base.path().join("instance-2")));
        let known = std::fs::read_to_string(second.dir.join("known_servers")).expect("copied");
        assert_eq!(known, "lab:7420 00ff\n", "the second window trusts what the first did");
        let third = claim(base.path()).expect("third");
        assert_eq!(third.number, 3);
        drop(first);
        // The first window closed: the next app takes over its directory and sessions.
        assert_eq!(claim(base.path()).expect("again").number, 1);
    }
}
