//! The verdicts a judged run records, as summary.json keeps them: one per objective and
//! window, the failover measured per fault occurrence. `judge/` produces them; the report,
//! the terminal and compare read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::slo::{Scope, SloSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    Pass,
    Fail,
    /// The window saw no request.
    NoData,
    /// The fault the window belongs to did not happen.
    NotRun,
}

impl VerdictStatus {
    /// The status as summary.json writes it.
    pub fn name(self) -> &'static str {
        match self {
            VerdictStatus::Pass => "pass",
            VerdictStatus::Fail => "fail",
            VerdictStatus::NoData => "no_data",
            VerdictStatus::NotRun => "not_run",
        }
    }
}

/// Why a verdict is not a plain pass or fail on its measured values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictReason {
    NoData,
    NotRun,
    /// More than 1 % of the iterations meant to start in the window were dropped at the
    /// in-flight cap or never started (`analysis::delivery`).
    LoadNotDelivered,
    /// Summaries before schema 6: more than 1 % of the window's attempts were dropped at
    /// the in-flight cap (now part of `load_not_delivered`). Never produced.
    GeneratorSaturated,
    /// A latency objective over requests none of which succeeded.
    NoSuccessfulResponse,
    /// Too little evidence for a condition (the evidence rule: a percentile pX needs
    /// ⌈1/(1 − X)⌉ successful responses, …; a recovery three observed seconds in a row):
    /// status `no_data`.
    InsufficientEvidence,
}

/// What a verdict rests on: the seconds it covers, the attempts in them (requests sent and
/// arrivals dropped) and the successful responses among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub seconds: u64,
    pub attempts: u64,
    pub successes: u64,
}

impl Evidence {
    /// "60 s, 1200 attempts, 1198 successful"
    pub fn describe(&self) -> String {
        format!(
            "{} s, {} attempts, {} successful",
            self.seconds, self.attempts, self.successes
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloVerdict {
    pub name: String,
    pub objective: String,
    pub scope: Scope,
    /// The window instance: "run", "steady", "during kill #1", "recovery from kill #1"…
    pub window: String,
    pub status: VerdictStatus,
    /// A `no_data` the objective allows (`on_no_data = "allow"`) or a `not_run` of a fault
    /// that is not required: listed, never a pass, and does not fail the run.
    #[serde(default)]
    pub allowed: bool,
    #[serde(default)]
    pub reason: Option<VerdictReason>,
    /// The reason for people: which fault did not run and why, how much was dropped.
    #[serde(default)]
    pub reason_text: Option<String>,
    /// Requests sent in the window.
    pub requests: u64,
    /// Arrivals dropped at the in-flight cap in the window.
    #[serde(default)]
    pub dropped: u64,
    /// What the verdict rests on (summaries before schema 6: zero).
    #[serde(default)]
    pub evidence: Evidence,
    pub measured: Vec<Measured>,
    pub spec: SloSpec,
}

impl SloVerdict {
    /// Whether this verdict fails the run.
    pub fn fails_run(&self) -> bool {
        match self.status {
            VerdictStatus::Pass => false,
            VerdictStatus::Fail => true,
            VerdictStatus::NoData | VerdictStatus::NotRun => !self.allowed,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub metric: String,
    pub op: String,
    pub threshold: String,
    pub value: Option<f64>,
    pub value_text: String,
    pub passed: bool,
    /// How far the value is from the threshold, relative to it: positive inside the
    /// objective, negative past it (`None` without a value or a zero threshold). The report
    /// names the objective with the smallest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failover {
    pub fault: String,
    pub occurrence: u32,
    pub targets: Vec<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    /// From injection to the first second with an error; `None`: no error at all.
    pub first_error_after_ms: Option<u64>,
    /// From the first error second to the first error-free second after it.
    pub burst_ms: Option<u64>,
    /// Errors from injection to the fault's end plus settle time.
    pub requests_failed: u64,
    pub failed_by_class: BTreeMap<String, u64>,
    /// From injection until error rate and p99 were back to the steady baseline for three
    /// seconds in a row; `None`: not by the end of the run.
    pub recovered_after_ms: Option<u64>,
    pub p99_before_us: Option<u64>,
    pub p99_during_us: Option<u64>,
    pub error_rate_during: f64,
    /// The baseline "back" means: steady-state error rate and p99 (with headroom).
    pub baseline_error_rate: f64,
    pub baseline_p99_us: Option<u64>,
    /// Responses per instance (`X-Instance`) in the 10 s before, during, and the 10 s after
    /// the fault and its settle time: where the traffic went.
    pub instances_before: BTreeMap<String, u64>,
    pub instances_during: BTreeMap<String, u64>,
    pub instances_after: BTreeMap<String, u64>,
}
