//! The shared folder's index: every regular file under the folder, its size, and the
//! SHA-256 of its content, which is what a classmate's search matches against (by name
//! substring or by exact hash) and what a fetch is verified against.
//!
//! Walking and hashing are blocking: [`build`] runs on the runtime's blocking pool, never
//! on the UI thread, and reports progress as it goes. It is bounded: at most
//! [`MAX_FILES`] files and [`MAX_DEPTH`] folders deep; symbolic links are never followed
//! (a link could lead out of the folder, to files the user never meant to share), and
//! hidden files and folders (a leading dot) are left out. A file whose size and
//! modification time did not change since the last index keeps its hash, so indexing
//! again is cheap.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Files indexed at most: a search answer lists matches from this many, and the index is
/// kept in the settings.
pub const MAX_FILES: usize = 5_000;
/// Folders below the shared folder looked into at most.
pub const MAX_DEPTH: usize = 8;
/// Directory entries looked at in all, files or not: a folder holding millions of entries
/// cannot keep the indexer busy for ever.
pub const MAX_ENTRIES: usize = 100_000;
/// Read buffer for hashing.
const HASH_BUF: usize = 256 * 1024;

/// One file of the shared folder, as indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedFile {
    /// The path below the shared folder, components joined with `/`.
    pub rel: String,
    pub size: u64,
    /// Modification time, in nanoseconds since the Unix epoch (0 when unknown).
    pub modified: u128,
    pub sha256: [u8; 32],
}

impl IndexedFile {
    /// The file name without its folders.
    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }

    /// Where it is on this computer.
    pub fn path(&self, root: &Path) -> PathBuf {
        self.rel.split('/').fold(root.to_path_buf(), |p, c| p.join(c))
    }
}

/// How far an index run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Files found so far (the walk comes first).
    pub found: usize,
    /// Files hashed (or reused from the last index) so far.
    pub hashed: usize,
    pub bytes_hashed: u64,
}

/// What an index run found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub files: Vec<IndexedFile>,
    /// Entries left out, in words, e.g. "3 symbolic links (not followed)".
    pub skipped: Vec<String>,
    /// A bound was reached: not everything in the folder is indexed.
    pub truncated: bool,
}

/// Why an index run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// The shared folder cannot be read.
    Folder(String),
    Cancelled,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::Folder(why) => f.write_str(why),
            IndexError::Cancelled => f.write_str("indexing was stopped"),
        }
    }
}

#[derive(Default)]
struct Skips {
    links: usize,
    hidden: usize,
    unreadable: usize,
    too_deep: usize,
    other: usize,
}

impl Skips {
    fn words(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut say = |n: usize, what: &str| {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        };
        say(self.links, "symbolic links (not followed)");
        say(self.hidden, "hidden files or folders");
        say(self.unreadable, "unreadable entries");
        say(self.too_deep, "folders nested too deep");
        say(self.other, "special files");
        out
    }
}

/// Walks `root` and hashes what it finds. `previous` is the last index of the same
/// folder: an unchanged file keeps its hash. `progress` is called now and then;
/// `cancel` stops the run between two reads. Blocking.
pub fn build(
    root: &Path,
    previous: &[IndexedFile],
    cancel: &AtomicBool,
    mut progress: impl FnMut(Progress),
) -> Result<Outcome, IndexError> {
    let meta = std::fs::metadata(root).map_err(|e| IndexError::Folder(format!("{}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err(IndexError::Folder(format!("{} is not a folder", root.display())));
    }
    let mut skips = Skips::default();
    let mut truncated = false;
    let mut found: Vec<(String, u64, u128)> = Vec::new();
    let mut entries_seen = 0usize;
    // Depth-first, each folder's entries in name order, so the list is stable.
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    'walk: while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            skips.unreadable += 1;
            continue;
        };
        let mut names: Vec<_> = read.flatten().collect();
        names.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in names {
            entries_seen += 1;
            if entries_seen > MAX_ENTRIES || found.len() >= MAX_FILES {
                truncated = true;
                break 'walk;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(IndexError::Cancelled);
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                // Not UTF-8: it could not be named in a search answer.
                skips.other += 1;
                continue;
            };
            if name.starts_with('.') {
                skips.hidden += 1;
                continue;
            }
            // `DirEntry::file_type` does not follow symbolic links.
            let Ok(kind) = entry.file_type() else {
                skips.unreadable += 1;
                continue;
            };
            let child = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            if kind.is_symlink() {
                skips.links += 1;
            } else if kind.is_dir() {
                if depth + 1 > MAX_DEPTH {
                    skips.too_deep += 1;
                } else {
                    subdirs.push((entry.path(), child, depth + 1));
                }
            } else if kind.is_file() {
                match entry.metadata() {
                    Ok(m) => found.push((child, m.len(), modified_ns(&m))),
                    Err(_) => skips.unreadable += 1,
                }
            } else {
                skips.other += 1;
            }
        }
        // Reversed, so the stack pops them in name order.
        stack.extend(subdirs.into_iter().rev());
        progress(Progress { found: found.len(), hashed: 0, bytes_hashed: 0 });
    }

    let old: HashMap<&str, &IndexedFile> = previous.iter().map(|f| (f.rel.as_str(), f)).collect();
    let mut files = Vec::with_capacity(found.len());
    let mut done = Progress { found: found.len(), ..Progress::default() };
    let mut buf = vec![0u8; HASH_BUF];
    for (rel, size, modified) in found {
        let reused =
            old.get(rel.as_str()).filter(|f| f.size == size && f.modified == modified && modified != 0);
        let sha256 = match reused {
            Some(f) => f.sha256,
            None => {
                let path = rel.split('/').fold(root.to_path_buf(), |p, c| p.join(c));
                match hash_file(&path, &mut buf, cancel, |n| {
                    done.bytes_hashed += n;
                })? {
                    Some(h) => h,
                    None => {
                        skips.unreadable += 1;
                        continue;
                    }
                }
            }
        };
        files.push(IndexedFile { rel, size, modified, sha256 });
        done.hashed += 1;
        progress(done);
    }
    Ok(Outcome { files, skipped: skips.words(), truncated })
}

fn modified_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

/// The SHA-256 of the file at `path`; `None` if it cannot be read. Symbolic links are not
/// followed here either: the file could have been replaced by one since the walk.
fn hash_file(
    path: &Path,
    buf: &mut [u8],
    cancel: &AtomicBool,
    mut read: impl FnMut(u64),
) -> Result<Option<[u8; 32]>, IndexError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let Ok(mut file) = std::fs::File::open(path) else { return Ok(None) };
    let mut hasher = Sha256::new();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(IndexError::Cancelled);
        }
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                read(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(hasher.finalize().into()))
}

/// SHA-256 of `bytes` (tests and checks).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(root: &Path, previous: &[IndexedFile]) -> Outcome {
        build(root, previous, &AtomicBool::new(false), |_| {}).expect("index")
    }

    #[test]
    fn files_are_listed_with_their_hashes_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b.txt"), b"bee").expect("write");
        std::fs::create_dir(dir.path().join("labs")).expect("mkdir");
        std::fs::write(dir.path().join("labs").join("lab3.csv"), b"1,2,3\n").expect("write");
        std::fs::write(dir.path().join("a.txt"), b"ay").expect("write");
        let out = run(dir.path(), &[]);
        let rels: Vec<&str> = out.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["a.txt", "b.txt", "labs/lab3.csv"]);
        assert_eq!(out.files[2].sha256, sha256(b"1,2,3\n"));
        assert_eq!(out.files[2].size, 6);
        assert_eq!(out.files[2].name(), "lab3.csv");
        assert_eq!(out.files[2].path(dir.path()), dir.path().join("labs").join("lab3.csv"));
        assert!(!out.truncated);
    }

    #[test]
    fn links_hidden_entries_and_deep_folders_are_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret.txt"), b"private").expect("write");
        std::fs::write(dir.path().join("ok.txt"), b"ok").expect("write");
        std::fs::write(dir.path().join(".hidden"), b"h").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).expect("symlink");
            std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("s.txt"))
                .expect("symlink");
        }
        let mut deep = dir.path().to_path_buf();
        for i in 0..MAX_DEPTH + 2 {
            deep = deep.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).expect("deep");
        std::fs::write(deep.join("bottom.txt"), b"too deep").expect("write");
        let out = run(dir.path(), &[]);
        let rels: Vec<&str> = out.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["ok.txt"]);
        assert!(out.skipped.iter().any(|s| s.contains("hidden")), "{:?}", out.skipped);
        assert!(out.skipped.iter().any(|s| s.contains("too deep")), "{:?}", out.skipped);
        #[cfg(unix)]
        assert!(out.skipped.iter().any(|s| s.starts_with("2 symbolic links")), "{:?}", out.skipped);
    }

    #[test]
    fn the_file_count_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..MAX_FILES + 5 {
            std::fs::write(dir.path().join(format!("f{i:05}")), b"").expect("write");
        }
        let out = run(dir.path(), &[]);
        assert_eq!(out.files.len(), MAX_FILES);
        assert!(out.truncated);
    }

    #[test]
    fn an_unchanged_file_keeps_its_hash_and_a_changed_one_is_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), b"one").expect("write");
        std::fs::write(dir.path().join("b"), b"two").expect("write");
        let mut first = run(dir.path(), &[]);
        // A stale hash for "a" that the reuse must keep (size and time unchanged)...
        first.files[0].sha256 = [7; 32];
        // ...and "b" changes size, so its hash is computed again.
        std::fs::write(dir.path().join("b"), b"three").expect("write");
        let second = run(dir.path(), &first.files);
        assert_eq!(second.files[0].sha256, [7; 32]);
        assert_eq!(second.files[1].sha256, sha256(b"three"));
    }

    #[test]
    fn a_missing_folder_is_an_error_and_a_cancel_stops_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(matches!(run_err(&missing, false), IndexError::Folder(_)));
        std::fs::write(dir.path().join("a"), b"x").expect("write");
        assert_eq!(run_err(dir.path(), true), IndexError::Cancelled);
    }

    fn run_err(root: &Path, cancelled: bool) -> IndexError {
        build(root, &[], &AtomicBool::new(cancelled), |_| {}).expect_err("fails")
    }
}
