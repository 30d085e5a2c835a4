//! What a run leaves behind: the run directory with `summary.json`, `series.csv` and the raw
//! histograms, the live progress line and the final table.

pub mod progress;
pub mod series;
pub mod summary;
pub mod table;
pub mod verdict_lines;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes to stdout, best effort: a terminal that went away (EIO after a hang-up) or a
/// closed pipe must not panic a run that is still recovering its faults (`print!` would).
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// `say` for stderr.
pub fn warn(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Creates `<out>/<timestamp>-<scenario>/`, adding a suffix if that name is taken.
pub fn create_run_dir(
    out: &Path,
    scenario: &str,
    started: jiff::Timestamp,
) -> std::io::Result<PathBuf> {
    let stamp = started.strftime("%Y%m%dT%H%M%SZ").to_string();
    let safe: String = scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::create_dir_all(out)?;
    for attempt in 0..1000 {
        let name = if attempt == 0 {
            format!("{stamp}-{safe}")
        } else {
            format!("{stamp}-{safe}-{attempt}")
        };
        let dir = out.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "could not find a free run directory name",
    ))
}

/// Writes a file through a temporary name and a rename, so a reader never sees half of it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}
