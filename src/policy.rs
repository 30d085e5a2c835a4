//! The operator's policy: what any scenario run on this machine may touch. A scenario can
//! only narrow it. Found at `--policy FILE`, else `LOADGEN_POLICY`, else
//! `/etc/loadgen/policy.toml` when that exists; without one, loadgen behaves as the
//! scenario says (loopback and no namespaces by default) and says what it widened.
//!
//! ```toml
//! [target]
//! allow_hosts = ["127.0.0.0/8", "::1", "staging.internal"]
//! tls_verify = true                   # scenarios may not turn certificate verification
//!                                     # off (`tls_verify = false`); false or absent: they may
//! [chaos]
//! kube_context = "staging"            # the kubeconfig context a run must be on
//! kube_server = "https://10.0.0.1:6443"  # or the API server it must talk to
//! kube_namespaces = ["staging"]
//! targets = ["backend-*"]             # process / container name globs faults may touch
//! labels = ["platform.role=backend"]  # container labels `{ label = … }` may select
//! max_unavailable = 1                 # no fault's max_unavailable may exceed this count
//! allow_last = false                  # no fault may take the last ready target down
//! [data]
//! dirs = ["/srv/drills"]              # feeders, PID files, stack state, CA files and the
//!                                     # stack script a restart runs live here
//!                                     # (relative: to the policy file's directory)
//! ```
//!
//! A list the policy leaves out does not restrict (beyond the scenario's own defaults).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::util::data_dirs::DataDirs;
use crate::util::diag::Diagnostics;
use crate::util::safety::AllowList;

/// Where a policy is looked for when neither `--policy` nor `LOADGEN_POLICY` names one.
pub(crate) const DEFAULT_PATH: &str = "/etc/loadgen/policy.toml";

/// One value of the policy, with where it is written (`file:line:col`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub at: String,
}

/// A list of the policy, with where the list is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub entries: Vec<Entry>,
    pub at: String,
}

impl Limit {
    pub fn values(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.value.clone()).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub file: PathBuf,
    pub allow_hosts: Option<(AllowList, Limit)>,
    pub kube_context: Option<Entry>,
    pub kube_server: Option<Entry>,
    pub kube_namespaces: Option<Limit>,
    pub targets: Option<Limit>,
    pub labels: Option<Limit>,
    pub data_dirs: Option<Limit>,
    /// The largest `max_unavailable` (a count) a fault may set.
    pub max_unavailable: Option<(u32, String)>,
    /// Whether a fault may set `allow_last = true`.
    pub allow_last: Option<(bool, String)>,
    /// `true`: certificate verification may not be turned off (`tls_verify = false`).
    pub tls_verify: Option<(bool, String)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    target: Option<RawTarget>,
    chaos: Option<RawChaos>,
    data: Option<RawData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    tls_verify: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChaos {
    kube_context: Option<Spanned<String>>,
    kube_server: Option<Spanned<String>>,
    kube_namespaces: Option<Spanned<Vec<Spanned<String>>>>,
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    labels: Option<Spanned<Vec<Spanned<String>>>>,
    max_unavailable: Option<Spanned<u32>>,
    allow_last: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    dirs: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The policy in force: `explicit` (`--policy`), else `LOADGEN_POLICY`, else
/// `DEFAULT_PATH` if it exists. A named file that cannot be read is an error.
pub fn find(explicit: Option<&Path>) -> Result<Option<Policy>, String> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LOADGEN_POLICY").map(PathBuf::from));
    let path = match named {
        Some(path) => path,
        None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
        None => return Ok(None),
    };
    load(&path).map(Some)
}

/// Reads and checks a policy file; every error at once, with positions.
pub fn load(path: &Path) -> Result<Policy, String> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the policy {}: {e}", path.display()))?;
    let file = path.display().to_string();
    let mut diagnostics = Diagnostics::new(file.clone(), source.clone());
    let raw: RawPolicy = match toml::from_str(&source) {
        Ok(raw) => raw,
        Err(e) => {
            diagnostics.push(e.span().unwrap_or(0..0), e.message().trim().to_string());
            return Err(format!("policy: {diagnostics}"));
        }
    };
    let at = |span: std::ops::Range<usize>| position(&file, &source, span.start);
    let limit = |list: &Option<Spanned<Vec<Spanned<String>>>>| {
        list.as_ref().map(|l| Limit {
            at: at(l.span()),
            entries: l
                .get_ref()
                .iter()
                .map(|e| Entry {
                    value: e.get_ref().trim().to_string(),
                    at: at(e.span()),
                })
                .collect(),
        })
    };
    let entry = |value: &Option<Spanned<String>>| {
        value.as_ref().map(|v| Entry {
            value: v.get_ref().trim().to_string(),
            at: at(v.span()),
        })
    };
    let target = raw.target.unwrap_or_default();
    let chaos = raw.chaos.unwrap_or_default();
    let data = raw.data.unwrap_or_default();
    let allow_hosts = allow_hosts(&target, limit(&target.allow_hosts), &mut diagnostics);
    // A relative directory is the policy file's: a policy shipped with a checkout names
    // the checkout's own folders.
    let here = path.parent().unwrap_or(Path::new("."));
    let data_dirs = limit(&data.dirs).map(|mut dirs| {
        for dir in &mut dirs.entries {
            dir.value = here.join(&dir.value).display().to_string();
        }
        dirs
    });
    if !diagnostics.is_empty() {
        return Err(format!("policy: {diagnostics}"));
    }
    Ok(Policy {
        file: path.to_path_buf(),
        allow_hosts,
        kube_context: entry(&chaos.kube_context),
        kube_server: entry(&chaos.kube_server),
        kube_namespaces: limit(&chaos.kube_namespaces),
        targets: limit(&chaos.targets),
        labels: limit(&chaos.labels),
        data_dirs,
        max_unavailable: chaos
            .max_unavailable
            .as_ref()
            .map(|m| (*m.get_ref(), at(m.span()))),
        allow_last: chaos
            .allow_last
            .as_ref()
            .map(|a| (*a.get_ref(), at(a.span()))),
        tls_verify: target
            .tls_verify
            .as_ref()
            .map(|v| (*v.get_ref(), at(v.span()))),
    })
}

/// `[target] allow_hosts` as an allow-list, beside the limit it came from; each entry
/// that does not parse reported at its position.
fn allow_hosts(
    target: &RawTarget,
    hosts: Option<Limit>,
    diagnostics: &mut Diagnostics,
) -> Option<(AllowList, Limit)> {
    match hosts {
        None => None,
        Some(hosts) => match AllowList::parse(&hosts.values()) {
            Ok(list) => Some((list, hosts)),
            Err(errors) => {
                let spans = target.allow_hosts.as_ref().map(|l| l.get_ref().clone());
                for (index, message) in errors {
                    let span = spans
                        .as_ref()
                        .and_then(|s| s.get(index))
                        .map_or(0..0, |s| s.span());
                    diagnostics.push(span, message);
                }
                None
            }
        },
    }
}

/// `file:line:col` of byte `offset` in `source`.
fn position(file: &str, source: &str, offset: usize) -> String {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{file}:{line}:{col}")
}

impl Policy {
    /// Whether a scenario's allow-list entry (an IP, a CIDR network or a host name) lies
    /// within the policy's hosts; `None` when the policy does not limit hosts.
    pub fn host_outside(&self, entry: &str) -> Option<&Limit> {
        let (list, limit) = self.allow_hosts.as_ref()?;
        (!list.covers(entry)).then_some(limit)
    }

    /// Whether `path` (absolute) lies under one of the policy's data directories.
    pub fn path_outside(&self, path: &Path) -> Option<&Limit> {
        let limit = self.data_dirs.as_ref()?;
        (!self.dirs()?.contains(path)).then_some(limit)
    }

    /// The data directories, for the layers that check paths at run time (the stack
    /// script a restart runs) and know nothing of the policy file.
    pub fn dirs(&self) -> Option<DataDirs> {
        let limit = self.data_dirs.as_ref()?;
        Some(DataDirs {
            dirs: limit
                .entries
                .iter()
                .map(|e| PathBuf::from(&e.value))
                .collect(),
            at: format!("{} ({})", self.file.display(), limit.at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_policy_reads_with_positions_and_bad_entries_are_errors() {
        let (_dir, path) = write(
            "[target]\nallow_hosts = [\"127.0.0.0/8\", \"db.internal\"]\n[chaos]\nkube_namespaces = [\"staging\"]\n[data]\ndirs = [\"/srv/drills\"]\n",
        );
        let policy = load(&path).unwrap();
        let (_, hosts) = policy.allow_hosts.as_ref().unwrap();
        assert_eq!(hosts.entries[1].value, "db.internal");
        assert!(
            hosts.entries[1].at.ends_with("policy.toml:2:31"),
            "{}",
            hosts.entries[1].at
        );
        assert!(policy.host_outside("127.0.0.1").is_none());
        assert!(policy.host_outside("127.1.0.0/16").is_none());
        assert!(policy.host_outside("db.internal").is_none());
        assert!(policy.host_outside("10.0.0.0/8").is_some());
        assert!(policy.host_outside("0.0.0.0/0").is_some());
        assert!(
            policy
                .path_outside(Path::new("/srv/drills/a.csv"))
                .is_none()
        );
        assert!(
            policy
                .path_outside(Path::new("/srv/drills/../../etc/passwd"))
                .is_some()
        );
        assert!(policy.targets.is_none(), "absent: no limit");

        let (_dir, bad) =
            write("[target]\nallow_hosts = [\"not a host!\"]\n[data]\ndirs = [\"rel\"]\n[nope]\n");
        let message = load(&bad).unwrap_err();
        assert!(message.contains("unknown field `nope`"), "{message}");
        let (dir, bad) = write("[target]\nallow_hosts = [\"not a host!\"]\n");
        let message = load(&bad).unwrap_err();
        assert!(
            message.contains("policy.toml:2:16: error: `not a host!`"),
            "{message}"
        );
        let (dir2, relative) = write("[data]\ndirs = [\"data\"]\n");
        let policy = load(&relative).unwrap();
        assert!(
            policy
                .path_outside(&dir2.path().join("data/x.csv"))
                .is_none()
        );
        assert!(
            policy
                .path_outside(&dir.path().join("data/x.csv"))
                .is_some()
        );
    }
}
