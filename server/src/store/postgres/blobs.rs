//! The content of shared files in PostgreSQL (`file_blobs`), so that a node serves a file
//! another node received: written when an upload completes, before it is acknowledged,
//! and fetched into the node's own `files/` cache when it lacks a file it must serve.

use std::io::{Read as _, Write as _};
use std::path::Path;

use postgres::Client;
use sha2::Digest as _;

use super::error_text;

/// Bytes of content per row: one row is in memory at a time, either way.
pub(super) const CHUNK: usize = 1024 * 1024;

fn db(e: postgres::Error) -> anyhow::Error {
    anyhow::anyhow!("PostgreSQL: {}", error_text(&e))
}

/// Stores the content at `path` under `sha256`, in one transaction (unless it is there).
pub(super) fn put(client: &mut Client, sha256: &[u8], path: &Path) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut tx = client.transaction().map_err(db)?;
    let have = tx
        .query_opt("SELECT 1 FROM file_blobs WHERE sha256 = $1 AND chunk_no = 0", &[&sha256])
        .map_err(db)?;
    if have.is_some() {
        return Ok(());
    }
    let stmt =
        tx.prepare("INSERT INTO file_blobs(sha256, chunk_no, data) VALUES ($1, $2, $3)").map_err(db)?;
    let mut buf = vec![0u8; CHUNK];
    for n in 0i32.. {
        let len = read_full(&mut file, &mut buf)?;
        if len == 0 && n > 0 {
            break;
        }
        tx.execute(&stmt, &[&sha256, &n, &&buf[..len]]).map_err(db)?;
        if len < CHUNK {
            break;
        }
    }
    tx.commit().map_err(db)
}

/// Writes the content stored under `sha256` to `dest` (through a temporary file beside
/// it, renamed once its hash is checked); `false` when none is stored.
pub(super) fn fetch(client: &mut Client, sha256: &[u8], dest: &Path) -> anyhow::Result<bool> {
    let tmp = dest.with_extension(format!("fetch-{:016x}", rand::random::<u64>()));
    let result = fetch_to(client, sha256, dest, &tmp);
    if !matches!(result, Ok(true)) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn fetch_to(client: &mut Client, sha256: &[u8], dest: &Path, tmp: &Path) -> anyhow::Result<bool> {
    let stmt =
        client.prepare("SELECT data FROM file_blobs WHERE sha256 = $1 AND chunk_no = $2").map_err(db)?;
    let mut out: Option<(std::fs::File, sha2::Sha256)> = None;
    for n in 0i32.. {
        let Some(row) = client.query_opt(&stmt, &[&sha256, &n]).map_err(db)? else { break };
        let data: &[u8] = row.try_get(0).map_err(db)?;
        let (file, hash) = match &mut out {
            Some(o) => o,
            None => out.insert((std::fs::File::create(tmp)?, sha2::Sha256::new())),
        };
        file.write_all(data)?;
        hash.update(data);
    }
    let Some((file, hash)) = out else { return Ok(false) };
    anyhow::ensure!(
        hash.finalize().as_slice() == sha256,
        "the content of file {} stored in PostgreSQL is damaged",
        hex::encode(sha256)
    );
    file.sync_all()?;
    std::fs::rename(tmp, dest)?;
    Ok(true)
}

/// Fills `buf` from `file` unless the end comes first; returns how much it read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
