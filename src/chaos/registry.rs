//! The run registry: one small file per run that may still have a fault applied, in a
//! state directory outside any run directory, so a bare `loadgen recover` finds every such
//! run from anywhere — also one written with `--out` elsewhere and then killed mid-fault.
//!
//! The ledger keeps it (`ledger.rs`): a run is registered (file synced, then its directory)
//! before its ledger records the first `applying` entry, and unregistered once every entry
//! of its ledger is `recovered`. A registered run whose ledger shows nothing to do is only
//! a leftover of a crash between those two steps.
//!
//! Where: `--state-dir`, else `LOADGEN_STATE_DIR`, else `$XDG_STATE_HOME/loadgen`, else
//! `~/.local/state/loadgen`; the files are under `runs/` there. The directory reaches a run
//! and `loadgen recover` as a `Registry` value, never through this process's environment
//! being changed.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The state directory from the environment (see the module's doc).
fn state_dir_from_environment() -> Option<PathBuf> {
    state_dir_from(
        std::env::var_os("LOADGEN_STATE_DIR"),
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The precedence, apart from the environment. Empty values count as unset, and a relative
/// `XDG_STATE_HOME` is ignored, as the XDG spec says.
pub(crate) fn state_dir_from(
    loadgen: Option<OsString>,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(loadgen)
        .or_else(|| {
            set(xdg_state_home)
                .filter(|p| p.is_absolute())
                .map(|p| p.join("loadgen"))
        })
        .or_else(|| set(home).map(|h| h.join(".local/state/loadgen")))
}

/// The run registry of one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    state_dir: Option<PathBuf>,
}

impl Registry {
    /// The registry in `explicit` (`--state-dir`), else where the environment says.
    pub fn at(explicit: Option<&Path>) -> Registry {
        Registry {
            state_dir: explicit
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .or_else(state_dir_from_environment),
        }
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    fn runs_dir(&self) -> std::io::Result<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join("runs")).ok_or_else(|| {
            std::io::Error::other(
                "no state directory for the run registry: pass --state-dir or set LOADGEN_STATE_DIR (or HOME)",
            )
        })
    }

    /// Registers `run_dir` (absolute): written whole, synced, and its directory synced, before
    /// this returns, so a crash right after cannot lose it.
    pub fn register(&self, run_dir: &Path) -> std::io::Result<()> {
        let runs = self.runs_dir()?;
        std::fs::create_dir_all(&runs).map_err(|e| in_dir(&runs, e))?;
        let file = file_for(&runs, run_dir);
        let temp = file.with_extension("run.tmp");
        let mut out = std::fs::File::create(&temp).map_err(|e| in_dir(&runs, e))?;
        let mut line = run_dir.as_os_str().as_bytes().to_vec();
        line.push(b'\n');
        out.write_all(&line)?;
        out.sync_all()?;
        std::fs::rename(&temp, &file)?;
        sync_dir(&runs)
    }

    /// Removes `run_dir`'s registry file, if there is one.
    pub fn unregister(&self, run_dir: &Path) -> std::io::Result<()> {
        let runs = self.runs_dir()?;
        remove(&file_for(&runs, run_dir))
    }

    /// Every registered run, sorted by run directory. No registry yet is an empty list.
    pub fn registered(&self) -> std::io::Result<Vec<Registered>> {
        let runs = self.runs_dir()?;
        let entries = match std::fs::read_dir(&runs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(|e| in_dir(&runs, e))?,
        };
        let mut found = Vec::new();
        for entry in entries {
            let file = entry?.path();
            if file.extension().is_none_or(|e| e != "run") {
                continue;
            }
            let text = std::fs::read(&file)?;
            let path = text.strip_suffix(b"\n").unwrap_or(&text);
            let run_dir = PathBuf::from(OsString::from_vec(path.to_vec()));
            found.push(Registered { file, run_dir });
        }
        found.sort_by(|a, b| a.run_dir.cmp(&b.run_dir));
        Ok(found)
    }
}

/// A registered run: its registry file and the run directory it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub file: PathBuf,
    pub run_dir: PathBuf,
}

/// The registry file of `run_dir` (an absolute path): its last component, for a human
/// listing the directory, and a hash of the whole path, so two runs never share one.
fn file_for(runs: &Path, run_dir: &Path) -> PathBuf {
    // FNV-1a: stable across Rust releases, unlike std's hasher.
    let hash = run_dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    runs.join(format!("{name}-{hash:016x}.run"))
}

/// Removes one registry file (one whose run directory is gone, say) and syncs its
/// directory; a file already gone is fine.
pub(crate) fn remove(file: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(()) => file.parent().map_or(Ok(()), sync_dir),
    }
}

/// fsync a directory, so an entry just created, renamed or removed in it is on disk.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn in_dir(dir: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!(
            "run registry {}: {e} (pass --state-dir or set LOADGEN_STATE_DIR to a writable directory)",
            dir.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(s.into())
    }

    /// `--state-dir` is where a run registers and where `loadgen recover` looks, whatever
    /// the environment says.
    #[test]
    fn a_registry_at_a_given_directory_lists_what_registered_there() {
        let (state, run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let registry = Registry::at(Some(state.path()));
        assert_eq!(registry.state_dir(), Some(state.path()));
        assert!(registry.registered().unwrap().is_empty());
        registry.register(run.path()).unwrap();
        let listed = registry.registered().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].run_dir, run.path());
        assert!(listed[0].file.starts_with(state.path().join("runs")));
        registry.unregister(run.path()).unwrap();
        assert!(registry.registered().unwrap().is_empty());
    }

    #[test]
    fn loadgen_state_dir_then_xdg_state_home_then_home() {
        let dir = |l, x, h| state_dir_from(l, x, h).map(|p| p.display().to_string());
        assert_eq!(dir(os("/l"), os("/x"), os("/h")).as_deref(), Some("/l"));
        assert_eq!(dir(None, os("/x"), os("/h")).as_deref(), Some("/x/loadgen"));
        assert_eq!(
            dir(os(""), os(""), os("/h")).as_deref(),
            Some("/h/.local/state/loadgen"),
            "empty values count as unset"
        );
        assert_eq!(
            dir(None, os("rel"), os("/h")).as_deref(),
            Some("/h/.local/state/loadgen"),
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(dir(None, None, None), None);
    }

    #[test]
    fn two_run_directories_never_share_a_file() {
        let runs = Path::new("/state/runs");
        let a = file_for(runs, Path::new("/a/reports/run-1"));
        let b = file_for(runs, Path::new("/b/reports/run-1"));
        assert_ne!(a, b);
        assert!(
            a.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("run-1-")
        );
        assert_eq!(a, file_for(runs, Path::new("/a/reports/run-1")));
    }
}
