//! The run directory as types: `summary.json` (its figures and, once judged, its verdicts),
//! `series.csv` and its tags, the raw histograms and how they are read back, the iteration
//! log and the plan as run. Everything a later `loadgen report` or `compare` reads.

pub(crate) mod data;
pub(crate) mod delivery;
mod generator;
pub(crate) mod iterations;
pub(crate) mod run_plan;
pub(crate) mod series;
pub(crate) mod server;
pub(crate) mod summary;
pub(crate) mod tag;
pub(crate) mod verdicts;
pub(crate) mod writes;

use std::path::{Path, PathBuf};

/// Creates `<out>/<timestamp>-<scenario>/`, adding a suffix if that name is taken.
pub(crate) fn create_run_dir(
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
