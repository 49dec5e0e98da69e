//! Looking for text in the server's data dir: every file under it (the database, its
//! write-ahead log and shared memory, stored uploads), read as raw bytes.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Most bytes read per file (bounds the scan on a data dir holding large uploads).
const MAX_SCAN_PER_FILE: u64 = 4 << 30;
/// Files scanned at most.
const MAX_FILES: usize = 10_000;

#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    /// For each needle, the files it was found in.
    pub found: Vec<Vec<PathBuf>>,
}

/// Scans every file under `dir` for each of `needles`.
pub fn scan(dir: &Path, needles: &[Vec<u8>]) -> std::io::Result<Scan> {
    let mut out = Scan { found: vec![Vec::new(); needles.len()], ..Scan::default() };
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() && out.files.len() < MAX_FILES {
                scan_file(&entry.path(), needles, &mut out)?;
            }
        }
    }
    out.files.sort();
    Ok(out)
}

/// Reads the file in blocks, keeping the last `longest - 1` bytes of each block in front of
/// the next, so a needle that straddles two blocks is found.
fn scan_file(path: &Path, needles: &[Vec<u8>], out: &mut Scan) -> std::io::Result<()> {
    let longest = needles.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        // The server may remove its -shm or a finished upload's part file meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut reader = file.take(MAX_SCAN_PER_FILE);
    let mut window: Vec<u8> = Vec::with_capacity((1 << 20) + longest);
    let mut block = vec![0u8; 1 << 20];
    let mut hit = vec![false; needles.len()];
    loop {
        let n = reader.read(&mut block)?;
        if n == 0 {
            break;
        }
        out.bytes += n as u64;
        window.extend_from_slice(&block[..n]);
        for (i, needle) in needles.iter().enumerate() {
            if !hit[i] && contains(&window, needle) {
                hit[i] = true;
            }
        }
        let keep = window.len().min(longest - 1);
        window.drain(..window.len() - keep);
    }
    for (i, h) in hit.into_iter().enumerate() {
        if h {
            out.found[i].push(path.to_owned());
        }
    }
    out.files.push(path.to_owned());
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else { return true };
    // Jump between occurrences of the first byte instead of comparing every window.
    let mut start = 0;
    while let Some(pos) = haystack[start..].iter().position(|&b| b == first) {
        let at = start + pos;
        if haystack.len() - at < needle.len() {
            return false;
        }
        if &haystack[at..at + needle.len()] == needle {
            return true;
        }
        start = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_across_block_edges_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = vec![b'x'; (1 << 20) - 3];
        bytes.extend_from_slice(b"secret words");
        std::fs::write(dir.path().join("a.db-wal"), &bytes).expect("write");
        std::fs::create_dir(dir.path().join("files")).expect("mkdir");
        std::fs::write(dir.path().join("files/b"), b"nothing here").expect("write");
        let s = scan(dir.path(), &[b"secret words".to_vec(), b"absent".to_vec()]).expect("scan");
        assert_eq!(s.files.len(), 2);
        assert_eq!(s.found[0], vec![dir.path().join("a.db-wal")]);
        assert!(s.found[1].is_empty());
    }
}
