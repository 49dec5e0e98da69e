//! The sharer's list of shared files, and how a search matches it.
//!
//! The app fills a [`SharedIndex`] (from the shared folder it scans) and the
//! [`Sharer`](super::Sharer) answers searches from it: the server never learns what a user
//! shares beyond the answers.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::proto::{MAX_FILES_PER_ANSWER, SHA256_LEN, SearchQuery, SharedFile};
use crate::files::sanitize_file_name;

/// One shared file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// Where the content is read from when someone fetches it.
    pub path: PathBuf,
    /// The name reported in answers (sanitised: never a path).
    pub name: String,
    pub size: u64,
    pub sha256: [u8; SHA256_LEN],
    /// Per-file switch: a switched-off file is never reported or served.
    pub enabled: bool,
}

impl SharedEntry {
    /// Reads and hashes the file at `path` (blocking: a 1 GiB file takes about a second;
    /// run it on a blocking thread). Enabled, named after the file.
    pub fn from_path(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Self {
            path: path.to_owned(),
            name: sanitize_file_name(&name),
            size,
            sha256: hasher.finalize().into(),
            enabled: true,
        })
    }

    fn matches(&self, query: &SearchQuery, needle: &str) -> bool {
        match &query.sha256 {
            Some(hash) => hash.as_slice() == self.sha256,
            None => !needle.is_empty() && self.name.to_lowercase().contains(needle),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    enabled: bool,
    entries: Vec<SharedEntry>,
}

/// The files a user shares, and the global "Share my files" switch (off at first).
/// Cheap to clone: clones share the list.
#[derive(Debug, Clone, Default)]
pub struct SharedIndex {
    inner: Arc<Mutex<Inner>>,
}

impl SharedIndex {
    /// An empty index with sharing off.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The global switch: off, nothing is reported or served.
    pub fn set_enabled(&self, on: bool) {
        self.lock().enabled = on;
    }

    pub fn enabled(&self) -> bool {
        self.lock().enabled
    }

    /// Adds `entry`, replacing one with the same path. Its name is sanitised.
    pub fn insert(&self, mut entry: SharedEntry) {
        entry.name = sanitize_file_name(&entry.name);
        let mut inner = self.lock();
        inner.entries.retain(|e| e.path != entry.path);
        inner.entries.push(entry);
    }

    /// Replaces the whole list (e.g. after rescanning the shared folder).
    pub fn replace_all(&self, entries: Vec<SharedEntry>) {
        let mut inner = self.lock();
        inner.entries.clear();
        drop(inner);
        for e in entries {
            self.insert(e);
        }
    }

    /// Removes the entry for `path`; `false` if there was none.
    pub fn remove(&self, path: &Path) -> bool {
        let mut inner = self.lock();
        let before = inner.entries.len();
        inner.entries.retain(|e| e.path != path);
        inner.entries.len() != before
    }

    /// Switches one file on or off; `false` if no entry has that path.
    pub fn set_file_enabled(&self, path: &Path, on: bool) -> bool {
        let mut inner = self.lock();
        match inner.entries.iter_mut().find(|e| e.path == path) {
            Some(e) => {
                e.enabled = on;
                true
            }
            None => false,
        }
    }

    /// Every entry, in insertion order (for the "Shared files" panel).
    pub fn entries(&self) -> Vec<SharedEntry> {
        self.lock().entries.clone()
    }

    /// The answer to `query`: enabled files whose name contains `query.name` (ignoring
    /// case) or whose content has `query.sha256`, at most [`MAX_FILES_PER_ANSWER`], each
    /// marked `busy` as given. Empty when sharing is off.
    pub fn search(&self, query: &SearchQuery, busy: bool) -> Vec<SharedFile> {
        let inner = self.lock();
        if !inner.enabled {
            return Vec::new();
        }
        let needle = query.name.trim().to_lowercase();
        inner
            .entries
            .iter()
            .filter(|e| e.enabled && e.matches(query, &needle))
            .take(MAX_FILES_PER_ANSWER)
            .map(|e| SharedFile { name: e.name.clone(), size: e.size, sha256: e.sha256.to_vec(), busy })
            .collect()
    }

    /// The enabled entry with content `sha256`, if sharing is on: what a fetch serves.
    pub fn serving(&self, sha256: &[u8]) -> Option<SharedEntry> {
        let inner = self.lock();
        if !inner.enabled {
            return None;
        }
        inner.entries.iter().find(|e| e.enabled && e.sha256.as_slice() == sha256).cloned()
    }
}

impl SearchQuery {
    /// What a user typed after `/whohas`: 64 hex digits are an exact content hash,
    /// anything else a name substring.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        match hex::decode(text) {
            Ok(hash) if hash.len() == SHA256_LEN => SearchQuery { name: String::new(), sha256: Some(hash) },
            _ => SearchQuery { name: text.to_owned(), sha256: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, byte: u8, enabled: bool) -> SharedEntry {
        SharedEntry {
            path: PathBuf::from(format!("/s/{name}")),
            name: name.into(),
            size: 3,
            sha256: [byte; 32],
            enabled,
        }
    }

    #[test]
    fn matches_by_name_ignoring_case_or_by_exact_hash_and_only_when_enabled() {
        let index = SharedIndex::new();
        index.insert(entry("Lab3-data.CSV", 1, true));
        index.insert(entry("lab3-notes.txt", 2, false));
        index.insert(entry("essay.pdf", 3, true));
        let q = SearchQuery::parse("lab3");
        assert!(index.search(&q, false).is_empty(), "sharing is off until switched on");
        index.set_enabled(true);
        let names: Vec<_> = index.search(&q, false).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["Lab3-data.CSV"], "the switched-off file is not reported");
        let by_hash = index.search(&SearchQuery::parse(&hex::encode([3u8; 32])), true);
        assert_eq!(by_hash.len(), 1);
        assert_eq!(by_hash[0].name, "essay.pdf");
        assert!(by_hash[0].busy);
        assert!(index.search(&SearchQuery::parse("  "), false).is_empty(), "an empty query matches nothing");
        assert!(index.serving(&[2; 32]).is_none(), "a switched-off file is not served");
        assert!(index.set_file_enabled(Path::new("/s/lab3-notes.txt"), true));
        assert!(index.serving(&[2; 32]).is_some());
    }

    #[test]
    fn answers_are_capped_and_names_are_sanitised() {
        let index = SharedIndex::new();
        index.set_enabled(true);
        for i in 0..(MAX_FILES_PER_ANSWER + 20) {
            index.insert(entry(&format!("f{i}.txt"), i as u8, true));
        }
        index.insert(SharedEntry { name: "../../etc/passwd".into(), ..entry("x", 250, true) });
        assert_eq!(index.search(&SearchQuery::parse("f"), false).len(), MAX_FILES_PER_ANSWER);
        assert_eq!(index.search(&SearchQuery::parse("passwd"), false)[0].name, "passwd");
    }
}
