//! File-system helpers.

use std::fs::File;
use std::io::Write;
use std::path::Path;

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
