//! The directories the operator policy (`[data] dirs`) lets a run read from and run its
//! stack script in. Kept apart from the policy file's reader so the chaos layer can check
//! a path at run time (the script a ledger's restart names) without knowing the policy.

use std::path::{Path, PathBuf};

/// Directories, and where the policy lists them (for messages).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataDirs {
    pub dirs: Vec<PathBuf>,
    /// `policy-file (file:line:col)`.
    pub at: String,
}

impl DataDirs {
    /// Whether `path` (absolute) lies under one of the directories, after `..` and
    /// symlinks are resolved on both sides.
    pub fn contains(&self, path: &Path) -> bool {
        let path = normalize(path);
        self.dirs.iter().any(|dir| path.starts_with(normalize(dir)))
    }

    /// The refusal for `what` at `path` outside the directories, if it is.
    pub fn refusal(&self, what: &str, path: &Path) -> Option<String> {
        (!self.contains(path)).then(|| {
            format!(
                "{what} {} lies outside the operator policy's data dirs ({}: {})",
                path.display(),
                self.at,
                self.dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// `path` with `.` and `..` resolved lexically, and symlinks resolved where it exists (its
/// deepest existing ancestor), so `dir/../../etc` and a link out of a data dir are caught.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut lexical = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => rest.push(name.to_os_string()),
            None => return lexical,
        }
        if !existing.pop() {
            return lexical;
        }
    }
    let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved
}
