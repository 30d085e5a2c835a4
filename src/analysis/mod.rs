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

use crate::chaos::runner::Occurrence;
use crate::slo::SloSpec;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Analysis {
    pub slos: Vec<SloVerdict>,
    pub failover: Vec<Failover>,
    /// True when every verdict passed (verdicts without data do not fail the run but are
    /// listed with status "no_data").
    pub passed: bool,
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
    let passed = slos.iter().all(|v| v.status != "fail");
    Ok(Analysis {
        slos,
        failover,
        passed,
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
