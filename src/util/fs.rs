//! File-system helpers.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Write `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over it,
/// so a reader sees the old contents or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // One temporary name per process, so two processes writing the same file (a shared index
    // cache) cannot interleave their bytes.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Persist the rename itself; failure here only weakens durability, not correctness.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// `value` as JSON, written atomically: the caches of file indexes.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// The JSON at `path`, or `None` when it is missing or does not parse as `T` (a cache that is
/// gone, foreign or damaged is rebuilt, not trusted).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
