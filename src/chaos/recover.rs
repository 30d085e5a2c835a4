//! `loadgen recover [RUN_DIR]`: after a crash (even `kill -9` of loadgen), read the run's
//! ledger and undo every fault it does not show as recovered.

use std::path::{Path, PathBuf};

use super::backends::recover;
use super::ledger::{EntryState, LEDGER_FILE, Ledger, LedgerRecord, now, read_latest};

#[derive(Debug, Default)]
pub struct RecoverReport {
    pub recovered: Vec<String>,
    pub failed: Vec<String>,
}

/// Recovers every entry of `run_dir`'s ledger that is not recovered yet.
pub async fn recover_run(run_dir: &Path) -> Result<RecoverReport, String> {
    let path = run_dir.join(LEDGER_FILE);
    let records = read_latest(&path)
        .map_err(|e| format!("cannot read the ledger {}: {e}", path.display()))?;
    let mut ledger =
        Ledger::create(run_dir).map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
    let mut report = RecoverReport::default();
    for record in records
        .into_iter()
        .filter(|r| r.state != EntryState::Recovered)
    {
        let outcome = recover(&record.undo).await;
        let what = format!(
            "{} on {} ({})",
            record.fault, record.target.name, record.target.id
        );
        let _ = ledger.write(&LedgerRecord {
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
        match outcome {
            Ok(()) => report.recovered.push(what),
            Err(e) => report.failed.push(format!("{what}: {e}")),
        }
    }
    Ok(report)
}

/// The newest run directory under `reports` whose ledger has unrecovered entries.
pub fn latest_unrecovered(reports: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(reports)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(LEDGER_FILE).exists())
        .collect();
    dirs.sort();
    dirs.into_iter().rev().find(|dir| {
        read_latest(&dir.join(LEDGER_FILE))
            .map(|records| records.iter().any(|r| r.state != EntryState::Recovered))
            .unwrap_or(false)
    })
}
