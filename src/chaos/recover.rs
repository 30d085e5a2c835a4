//! `loadgen recover [RUN_DIR]`: after a crash (even `kill -9` of loadgen), read a run's
//! ledger and undo every fault it does not show as recovered — newest first, the reverse of
//! the order they were applied in. Without RUN_DIR: every run in the run registry
//! (`registry.rs`) with something to undo, then any under `./reports`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ledger::{EntryState, LEDGER_FILE, Latest, Ledger, LedgerRecord, now, read_latest};
use super::lifecycle::{Recovery, recover_within};
use super::registry::{self, Registry};

#[derive(Debug, Default)]
pub(crate) struct RecoverReport {
    pub recovered: Vec<String>,
    pub failed: Vec<String>,
}

/// What to check when a ledger cannot be read or written: faults may still be applied.
fn ledger_problem(path: &Path, doing: &str, e: &std::io::Error) -> String {
    format!(
        "cannot {doing} the fault ledger {}: {e}. Check that the path is right, that it is a \
         file this user can read and write, and its disk; until it is recovered, the faults it \
         lists may still be applied",
        path.display()
    )
}

/// Recovers every entry of `run_dir`'s ledger that is not recovered yet, last to first,
/// each within `deadline` (`loadgen recover --timeout`; the ledger does not carry the
/// scenario's `backend_timeout`), by `recovery` (which refuses what the operator policy
/// does not allow: a ledger is a file anyone who can write the run directory can edit).
/// `Err`: the ledger could not be read or opened for writing (a human must look).
pub(crate) async fn recover_run<R>(
    run_dir: &Path,
    deadline: Duration,
    recovery: &R,
    registry: &Registry,
) -> Result<RecoverReport, String>
where
    R: Recovery,
    R::Undo: Serialize + DeserializeOwned,
{
    let path = run_dir.join(LEDGER_FILE);
    let entries: Vec<Latest<R::Undo>> =
        read_latest(&path).map_err(|e| ledger_problem(&path, "read", &e))?;
    let mut ledger = Ledger::create(run_dir, registry.clone())
        .map_err(|e| ledger_problem(&path, "append to", &e))?;
    let mut report = RecoverReport::default();
    // Undo in reverse: a fault applied on top of another is taken off first.
    for entry in entries.into_iter().rev() {
        let record = match entry {
            Latest::Record(record) if record.state == EntryState::Recovered => continue,
            Latest::Record(record) => *record,
            Latest::Unreadable { entry, error } => {
                report.failed.push(format!(
                    "entry {entry}: its latest ledger line is not a record this loadgen reads \
                     ({error}); nothing was run for it, undo it by hand"
                ));
                continue;
            }
        };
        let outcome = recover_within(recovery, &record.undo, deadline).await;
        let what = format!(
            "{} on {} ({})",
            record.fault, record.target.name, record.target.id
        );
        let written = ledger.write(&LedgerRecord {
            state: if outcome.is_ok() {
                EntryState::Recovered
            } else {
                EntryState::RecoverFailed
            },
            at: now(),
            message: outcome
                .as_ref()
                .err()
                .map(|e| format!("loadgen recover: {e}")),
            ..record
        });
        match (outcome, written) {
            (Ok(()), Ok(())) => report.recovered.push(what),
            (Err(e), _) => report.failed.push(format!("{what}: {e}")),
            (Ok(()), Err(e)) => report.failed.push(format!(
                "{what}: undone, but {}",
                ledger_problem(&path, "write", &e)
            )),
        }
    }
    if ledger.all_recovered() {
        // Also drops a registration a crash left after the last `recovered` record.
        let _ = registry.unregister(ledger.run_dir());
    }
    Ok(report)
}

/// Whether `run_dir`'s ledger shows anything not recovered (an unreadable ledger does: it
/// may).
pub(crate) fn has_unrecovered(run_dir: &Path) -> bool {
    // Only the states are read: any undo shape will do.
    read_latest::<serde_json::Value>(&run_dir.join(LEDGER_FILE)).map_or(true, |entries| {
        entries.iter().any(|e| e.state() != EntryState::Recovered)
    })
}

/// What a bare `loadgen recover` found to do.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Runs with something to undo: registered ones, then ones under `./reports` the
    /// registry does not list (runs from before it existed).
    pub runs: Vec<PathBuf>,
    /// Registered run directories that no longer exist (their entries were removed).
    pub gone: Vec<PathBuf>,
    /// Why the registry could not be read, if it could not.
    pub registry_error: Option<String>,
}

/// Every run a bare `loadgen recover` must recover. Registry entries whose run is gone,
/// or whose ledger shows everything recovered, are removed on the way.
pub(crate) fn find_runs(reports: &Path, registry: &Registry) -> Found {
    let mut found = Found::default();
    match registry.registered() {
        Err(e) => found.registry_error = Some(e.to_string()),
        Ok(registered) => {
            for run in registered {
                if !run.run_dir.is_dir() {
                    let _ = registry::remove(&run.file);
                    found.gone.push(run.run_dir);
                } else if has_unrecovered(&run.run_dir) {
                    found.runs.push(run.run_dir);
                } else {
                    let _ = registry::remove(&run.file);
                }
            }
        }
    }
    let mut local: Vec<PathBuf> = std::fs::read_dir(reports)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(LEDGER_FILE).exists() && has_unrecovered(p))
        .filter_map(|p| std::path::absolute(p).ok())
        .collect();
    local.sort();
    for dir in local {
        if !found.runs.contains(&dir) {
            found.runs.push(dir);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::backends::{self, Undo};
    use crate::chaos::ledger::tests::record;
    use crate::chaos::ports::Restart;
    use crate::chaos::process::{ProcessStep, ProcessUndo};
    use crate::plan::chaos::DEFAULT_BACKEND_TIMEOUT;
    use crate::util::data_dirs::DataDirs;

    #[test]
    fn entries_are_undone_last_to_first_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = [
            record("first", EntryState::Applying),
            record("second", EntryState::Applying),
            record("first", EntryState::Applied),
            record("third", EntryState::Applied),
            record("done", EntryState::Recovered),
        ]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
        std::fs::write(dir.path().join(LEDGER_FILE), text).unwrap();
        // Timers: every recovery runs under its deadline.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();

        let recover = || {
            runtime
                .block_on(recover_run(
                    dir.path(),
                    DEFAULT_BACKEND_TIMEOUT,
                    &backends::Recovery::new(crate::platform::for_recovery(), None),
                    &Registry::at(Some(dir.path())),
                ))
                .unwrap()
        };
        let report = recover();
        let names: Vec<&str> = report
            .recovered
            .iter()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["third", "second", "first"], "{report:?}");
        assert!(!has_unrecovered(dir.path()));
        let again = recover();
        assert!(
            again.recovered.is_empty() && again.failed.is_empty(),
            "{again:?}"
        );
    }

    /// A ledger names the stack script a restart runs. Under a policy whose data dirs do
    /// not hold it, `loadgen recover` runs nothing and says why; with the script's own
    /// directory allowed, it runs (the script leaves a mark).
    #[test]
    fn a_ledger_restart_runs_only_a_stack_script_inside_the_policy_dirs() {
        let (scripts, allowed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mark = scripts.path().join("ran");
        let script = scripts.path().join("stack.sh");
        std::fs::write(&script, format!("touch {}\n", mark.display())).unwrap();
        let restart = LedgerRecord {
            // A PID no process has: the old instance is gone, so the restart is due.
            undo: Undo::Process(ProcessUndo {
                pid: i32::MAX,
                start_time: 1,
                step: ProcessStep::Restart(Restart::Stack {
                    script: script.clone(),
                    state_dir: scripts.path().to_path_buf(),
                    instance: "backend-1".to_string().try_into().unwrap(),
                }),
            }),
            ..record("restart", EntryState::Applied)
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let recover = |dirs: &DataDirs| {
            let run = tempfile::tempdir().unwrap();
            std::fs::write(
                run.path().join(LEDGER_FILE),
                serde_json::to_string(&restart).unwrap() + "\n",
            )
            .unwrap();
            runtime
                .block_on(recover_run(
                    run.path(),
                    DEFAULT_BACKEND_TIMEOUT,
                    &backends::Recovery::new(crate::platform::for_recovery(), Some(dirs.clone())),
                    &Registry::at(Some(run.path())),
                ))
                .unwrap()
        };
        let elsewhere = DataDirs {
            dirs: vec![allowed.path().to_path_buf()],
            at: "policy.toml:6:8".into(),
        };
        let report = recover(&elsewhere);
        assert!(report.recovered.is_empty(), "{report:?}");
        assert!(
            report.failed[0].contains("outside the operator policy's data dirs (policy.toml:6:8"),
            "{report:?}"
        );
        assert!(!mark.exists(), "the script outside the policy ran");

        let inside = DataDirs {
            dirs: vec![scripts.path().to_path_buf()],
            ..elsewhere
        };
        let report = recover(&inside);
        assert_eq!(report.recovered.len(), 1, "{report:?}");
        assert!(mark.exists(), "the script inside the policy did not run");
    }
}
