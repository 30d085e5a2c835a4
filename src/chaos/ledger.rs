//! The fault ledger: an append-only JSON-lines file in the run directory. A record is
//! written — and synced to disk — *before* a fault is applied, with everything needed to
//! undo it, so `loadgen recover` can put things back after even a `kill -9` of loadgen.
//! The last record of an entry is its state.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Target;
use super::undo::Undo;

pub const LEDGER_FILE: &str = "faults.ledger.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Written before the change; the change may or may not have happened.
    Applying,
    Applied,
    Recovered,
    /// Recovery was tried and failed: a human must act.
    RecoverFailed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// Identifies one fault occurrence on one target: `fault#occurrence@target`.
    pub entry: String,
    pub fault: String,
    pub target: Target,
    pub undo: Undo,
    pub state: EntryState,
    pub at: String,
    #[serde(default)]
    pub message: Option<String>,
}

pub struct Ledger {
    path: PathBuf,
    file: File,
}

impl Ledger {
    pub fn create(run_dir: &Path) -> std::io::Result<Ledger> {
        let path = run_dir.join(LEDGER_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Ledger { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record and syncs it to disk before returning.
    pub fn write(&mut self, record: &LedgerRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

/// The latest record of every entry in a ledger file, in first-seen order.
pub fn read_latest(path: &Path) -> std::io::Result<Vec<LedgerRecord>> {
    let file = File::open(path)?;
    let mut order = Vec::new();
    let mut latest: BTreeMap<String, LedgerRecord> = BTreeMap::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        // A line cut short by a crash mid-write is skipped: its entry's earlier record,
        // written before any change, still stands.
        let Ok(record) = serde_json::from_str::<LedgerRecord>(&line) else {
            continue;
        };
        if !latest.contains_key(&record.entry) {
            order.push(record.entry.clone());
        }
        latest.insert(record.entry.clone(), record);
    }
    Ok(order
        .into_iter()
        .filter_map(|e| latest.remove(&e))
        .collect())
}

pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}
