//! Verification's verdicts as summary.json keeps them: per kind of acknowledged write, per
//! count and per invariant. `judge::writes` produces them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::verdicts::VerdictStatus;
use crate::verify::run::Status;

/// `summary.json`'s `verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifySummary {
    pub status: Status,
    #[serde(default)]
    pub reason: Option<String>,
    /// Verification requests (checks, counts, invariants, retries included): not in the
    /// run's totals.
    pub requests: u64,
    pub retries: u64,
    pub kinds: Vec<KindVerdict>,
    pub counts: Vec<CountVerdict>,
    pub invariants: Vec<InvariantVerdict>,
    /// Verification completed and no verdict fails the run.
    pub passed: bool,
}

impl VerifySummary {
    /// One line per verdict that fails the run, for the exit code's reasons.
    pub fn problems(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match self.status {
            Status::Complete => {}
            status => lines.push(format!(
                "verification {}: {}",
                status.name(),
                self.reason.as_deref().unwrap_or("no reason recorded")
            )),
        }
        for kind in self.kinds.iter().filter(|k| k.fails_run()) {
            lines.push(format!(
                "acknowledged writes `{}`: {}",
                kind.name, kind.reason_text
            ));
        }
        for count in self
            .counts
            .iter()
            .filter(|c| c.status != VerdictStatus::Pass)
        {
            lines.push(format!("count `{}`: {}", count.name, count.reason_text));
        }
        for invariant in self
            .invariants
            .iter()
            .filter(|i| i.status != VerdictStatus::Pass)
        {
            lines.push(format!(
                "invariant `{}`: {}",
                invariant.name, invariant.reason_text
            ));
        }
        lines
    }
}

/// One kind's acknowledged writes and what reading them back found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindVerdict {
    pub name: String,
    pub acknowledged: u64,
    pub verified: u64,
    pub missing: u64,
    pub mismatched: u64,
    pub unverifiable: u64,
    /// Acknowledged but never checked (verification stopped first).
    pub unchecked: u64,
    pub status: VerdictStatus,
    /// A `no_data` or unverifiable writes the scenario allows.
    pub allowed: bool,
    pub reason_text: String,
    /// The writes that failed, by outcome, each at most `LISTED`.
    pub missing_writes: Vec<ListedWrite>,
    pub mismatched_writes: Vec<ListedWrite>,
    pub unverifiable_writes: Vec<ListedWrite>,
}

impl KindVerdict {
    pub fn fails_run(&self) -> bool {
        match self.status {
            VerdictStatus::Pass => false,
            VerdictStatus::NoData => !self.allowed,
            VerdictStatus::Fail | VerdictStatus::NotRun => true,
        }
    }
}

/// A write that failed its read-back: its id, when it was acknowledged, the fault in
/// force then (if any), and what the check said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListedWrite {
    pub id: Value,
    pub at_ms: u64,
    #[serde(default)]
    pub during: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// A platform total against the acknowledged count of its kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountVerdict {
    pub name: String,
    pub kind: String,
    pub acknowledged: u64,
    /// Requests of the recording steps that may have committed without an answer.
    pub uncertain: u64,
    /// The platform's count after verification minus before the load.
    pub platform: Option<i64>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub status: VerdictStatus,
    pub reason_text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvariantVerdict {
    pub name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub status: VerdictStatus,
    pub reason_text: String,
}
