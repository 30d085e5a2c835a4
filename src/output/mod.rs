//! What a run leaves behind: the run directory with `summary.json`, `series.csv` and the raw
//! histograms, the live progress line and the final table.

pub mod ci;
pub mod iterations;
pub mod progress;
pub mod run_plan;
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
    let _ = out
        .write_all(printable(text).as_bytes())
        .and_then(|_| out.flush());
}

/// `say` for stderr.
pub fn warn(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(printable(text).as_bytes());
}

/// `text` without control characters but newlines and tabs: what targets, APIs and scripts
/// said (an error body, a script's stderr) may carry terminal escapes, and is printed live.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if text.chars().any(unsafe_char) {
        std::borrow::Cow::Owned(text.chars().filter(|c| !unsafe_char(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
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

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_dropped_but_lines_and_tabs_kept() {
        assert!(matches!(
            printable("plain\ttext\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;pwned\u{7}red\rline\u{9b}31m\n"),
            "[2J]0;pwnedredline31m\n"
        );
    }
}
