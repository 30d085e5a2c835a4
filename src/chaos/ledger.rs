//! The fault ledger: an append-only JSON-lines file in the run directory. A record is
//! written — and synced to disk — *before* a fault is applied, with everything needed to
//! undo it, so `loadgen recover` can put things back after even a `kill -9` of loadgen.
//! The last record of an entry is its state.

use super::registry::Registry;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Target;

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

/// One line of the ledger; `U` is the dispatcher's undo record (`backends::Undo`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerRecord<U> {
    /// Identifies one fault occurrence on one target: `fault#occurrence@target`.
    pub entry: String,
    pub fault: String,
    pub target: Target,
    pub undo: U,
    pub state: EntryState,
    pub at: String,
    #[serde(default)]
    pub message: Option<String>,
}

pub struct Ledger {
    path: PathBuf,
    file: File,
    /// The run directory, absolute: what the run registry names.
    run_dir: PathBuf,
    /// Every entry's latest state, so the run leaves the registry once all are recovered.
    states: BTreeMap<String, EntryState>,
    /// Whether this ledger has registered its run (`registry.rs`) since it was opened.
    registered: bool,
    /// Where the run is registered while a fault may be applied.
    registry: Registry,
}

impl Ledger {
    /// Opens (or creates) the run's ledger for appending. A last line torn by a crash
    /// mid-write is ended with a newline first, so the next record starts a line of its
    /// own instead of being glued onto it (and lost with it). A new ledger's directory
    /// entry is synced, so the file itself survives a crash.
    pub fn create(run_dir: &Path, registry: Registry) -> std::io::Result<Ledger> {
        let run_dir = std::path::absolute(run_dir)?;
        let path = run_dir.join(LEDGER_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        if !existed {
            super::registry::sync_dir(&run_dir)?;
        }
        let states = if len > 0 {
            read_latest::<serde_json::Value>(&path)?
                .into_iter()
                .map(|line| (line.entry().to_string(), line.state()))
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(Ledger {
            path,
            file,
            run_dir,
            states,
            registered: false,
            registry,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Appends a record and syncs it to disk before returning. Before the first `applying`
    /// record the run is registered, so a bare `loadgen recover` finds it even if loadgen
    /// dies right after; once every entry is recovered it is unregistered again.
    pub fn write<U: Serialize>(&mut self, record: &LedgerRecord<U>) -> std::io::Result<()> {
        if record.state == EntryState::Applying && !self.registered {
            self.registry.register(&self.run_dir)?;
            self.registered = true;
        }
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.states.insert(record.entry.clone(), record.state);
        if record.state == EntryState::Recovered && self.all_recovered() {
            // The record is on disk; a registry file left behind by a failure here only
            // makes a later bare `loadgen recover` find nothing to do and remove it.
            let _ = self.registry.unregister(&self.run_dir);
            self.registered = false;
        }
        Ok(())
    }

    /// Whether every entry of the ledger is recovered (true for an empty one).
    pub fn all_recovered(&self) -> bool {
        self.states.values().all(|s| *s == EntryState::Recovered)
    }
}

/// One entry's latest line in a ledger.
#[derive(Debug, Clone)]
pub(crate) enum Latest<U> {
    Record(Box<LedgerRecord<U>>),
    /// A whole JSON line this loadgen cannot take as a record: another version's shape,
    /// or a value it refuses (a restart naming something other than a stack backend).
    /// Never skipped like a torn line: recovery reports it as not recovered.
    Unreadable {
        entry: String,
        error: String,
    },
}

impl<U> Latest<U> {
    pub(crate) fn entry(&self) -> &str {
        match self {
            Latest::Record(r) => &r.entry,
            Latest::Unreadable { entry, .. } => entry,
        }
    }

    /// Unreadable counts as not recovered: nothing says it was put back.
    pub(crate) fn state(&self) -> EntryState {
        match self {
            Latest::Record(r) => r.state,
            Latest::Unreadable { .. } => EntryState::RecoverFailed,
        }
    }
}

/// The latest line of every entry in a ledger file, in first-seen order.
pub(crate) fn read_latest<U: DeserializeOwned>(path: &Path) -> std::io::Result<Vec<Latest<U>>> {
    let file = File::open(path)?;
    let mut order = Vec::new();
    let mut latest: BTreeMap<String, Latest<U>> = BTreeMap::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        // A line cut short by a crash mid-write is not JSON and is skipped: its entry's
        // earlier record, written before any change, still stands.
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let read = match serde_json::from_value::<LedgerRecord<U>>(value.clone()) {
            Ok(record) => Latest::Record(Box::new(record)),
            Err(e) => Latest::Unreadable {
                entry: value["entry"]
                    .as_str()
                    .map_or_else(|| format!("line {}", number + 1), str::to_string),
                error: e.to_string(),
            },
        };
        let entry = read.entry().to_string();
        if !latest.contains_key(&entry) {
            order.push(entry.clone());
        }
        latest.insert(entry, read);
    }
    Ok(order
        .into_iter()
        .filter_map(|e| latest.remove(&e))
        .collect())
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chaos::backends::Undo;
    use crate::plan::chaos::BackendKind;

    pub(crate) fn record(entry: &str, state: EntryState) -> LedgerRecord<Undo> {
        LedgerRecord {
            entry: entry.into(),
            fault: entry.into(),
            target: Target {
                backend: BackendKind::Process,
                id: crate::chaos::TargetId::Pid(1),
                name: "t".into(),
                labels: Default::default(),
            },
            undo: Undo::Nothing,
            state,
            at: now(),
            message: None,
        }
    }

    pub(crate) fn line(record: &LedgerRecord<Undo>) -> String {
        serde_json::to_string(record).unwrap() + "\n"
    }

    #[test]
    fn a_torn_last_line_is_ended_on_open_so_the_next_record_stands() {
        let dir = tempfile::tempdir().unwrap();
        let applied = line(&record("a#0@1", EntryState::Applied));
        let torn = &line(&record("a#0@1", EntryState::Recovered))[..20];
        std::fs::write(dir.path().join(LEDGER_FILE), format!("{applied}{torn}")).unwrap();

        let mut ledger = Ledger::create(dir.path(), Registry::at(Some(dir.path()))).unwrap();
        assert!(!ledger.all_recovered(), "the torn line does not count");
        ledger
            .write(&record("a#0@1", EntryState::Recovered))
            .unwrap();

        let text = std::fs::read_to_string(dir.path().join(LEDGER_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let latest = read_latest::<Undo>(&dir.path().join(LEDGER_FILE)).unwrap();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].state(), EntryState::Recovered, "{text}");
        assert!(ledger.all_recovered());
    }

    #[test]
    fn a_whole_line_of_another_shape_is_kept_as_unreadable_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        std::fs::write(&path, "{\"entry\":\"x#0@1\",\"state\":\"applied\"}\n").unwrap();
        let latest = read_latest::<Undo>(&path).unwrap();
        assert!(
            matches!(&latest[..], [Latest::Unreadable { entry, .. }] if entry == "x#0@1"),
            "{latest:?}"
        );
        assert_ne!(latest[0].state(), EntryState::Recovered);
    }
}
