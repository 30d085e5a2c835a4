//! Files a reader may open at any moment (summary.json, state files) are written whole.

use std::path::Path;

/// Writes a file through a temporary name and a rename, so a reader never sees half of it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}
