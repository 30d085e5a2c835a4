//! Analysis: judge the run's SLOs over their windows and measure each fault's failover,
//! from what the run saved (series.csv, intervals.hlog, the fault events) — so
//! `loadgen report` can redo it later without re-running.

pub mod data;
pub mod failover;
pub mod verdicts;
pub mod windows;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use failover::Failover;
pub use verdicts::SloVerdict;

use crate::chaos::runner::{Occurrence, OccurrenceStatus};
use crate::slo::SloSpec;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Analysis {
    pub slos: Vec<SloVerdict>,
    pub failover: Vec<Failover>,
    /// True when no verdict fails the run: every one passed, or is a `no_data` / `not_run`
    /// the scenario allows.
    pub passed: bool,
    /// Fault occurrences that fail the run whatever the objectives say: a required one that
    /// did not happen, one whose target was not healthy again.
    pub fault_problems: Vec<String>,
}

/// Why planned fault occurrences fail the run, one line each.
pub fn fault_problems(occurrences: &[Occurrence]) -> Vec<String> {
    occurrences
        .iter()
        .filter_map(|o| {
            let why = o.reason.as_deref().unwrap_or("no reason recorded");
            match o.status {
                OccurrenceStatus::Happened => None,
                OccurrenceStatus::NotRun if !o.required => None,
                OccurrenceStatus::NotRun => Some(format!(
                    "fault `{}` #{} did not run: {why} (say `required = false` on the fault if that is acceptable)",
                    o.fault,
                    o.occurrence + 1
                )),
                OccurrenceStatus::NotHealthyAgain => Some(format!(
                    "fault `{}` #{}: the target was not healthy again: {why}",
                    o.fault,
                    o.occurrence + 1
                )),
            }
        })
        .collect()
}

/// What analysis needs besides the run directory's files.
pub struct Inputs<'a> {
    pub slos: &'a [SloSpec],
    pub occurrences: &'a [Occurrence],
    pub duration_s: f64,
    pub settle_ms: u64,
    /// Step index → (journey name, step name), to resolve scopes.
    pub steps: &'a [(String, String)],
}

pub fn analyze(run_dir: &Path, inputs: &Inputs<'_>) -> Result<Analysis, String> {
    let series = data::read_series(run_dir)?;
    let run_ms = (inputs.duration_s * 1000.0) as u64;
    let run_seconds = series
        .keys()
        .next_back()
        .map_or(0, |s| s + 1)
        .max(run_ms.div_ceil(1000));
    let intervals = windows::fault_intervals(inputs.occurrences, run_ms);
    let slos = verdicts::judge(run_dir, &series, &intervals, inputs, run_seconds)?;
    let happened = windows::happened(&intervals);
    let failover = failover::measure(run_dir, &series, &happened, inputs.settle_ms, run_seconds)?;
    let fault_problems = fault_problems(inputs.occurrences);
    let passed = !slos.iter().any(|v| v.fails_run());
    Ok(Analysis {
        slos,
        failover,
        passed,
        fault_problems,
    })
}

/// The hlog tags a scope covers: "all", every step of a journey, or one step.
pub fn scope_tags(scope: &str, steps: &[(String, String)]) -> Vec<String> {
    if scope == "all" {
        return vec!["all".into()];
    }
    let (journey, step) = match scope.split_once('/') {
        Some((j, s)) => (j, Some(s)),
        None => (scope, None),
    };
    steps
        .iter()
        .enumerate()
        .filter(|(_, (j, s))| j == journey && step.is_none_or(|wanted| wanted == s))
        .map(|(index, _)| format!("step:{index}"))
        .collect()
}
