//! Analysis: judge the run's SLOs over their windows and measure each fault's failover,
//! from what the run saved (series.csv, intervals.hlog, the fault events) — so
//! `loadgen report` can redo it later without re-running.

pub(crate) mod abort;
pub(crate) mod failover;
pub(crate) mod recovery;
pub(crate) mod verdicts;
mod window_verdict;
pub(crate) mod windows;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chaos::runner::{Occurrence, OccurrenceStatus};
use crate::plan::slo::{Scope, SloSpec};
use crate::record::data;
use crate::record::tag::Tag;
use crate::record::verdicts::{Failover, SloVerdict};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Analysis {
    pub slos: Vec<SloVerdict>,
    pub failover: Vec<Failover>,
    /// True when no verdict fails the run: every one passed, or is a `no_data` / `not_run`
    /// the scenario allows.
    pub passed: bool,
    /// Fault occurrences that fail the run whatever the objectives say: a required one that
    /// did not happen, one whose target was not healthy again.
    pub fault_problems: Vec<String>,
    /// Seconds of series.csv whose iterations do not add up (`planned = started + dropped
    /// + not_started`), the first few; loadgen's own defect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounting_problems: Vec<String>,
}

/// How many unbalanced rows are named; the rest are counted.
const ACCOUNTING_PROBLEMS_NAMED: usize = 10;

/// Why planned fault occurrences fail the run, one line each.
pub(crate) fn fault_problems(occurrences: &[Occurrence]) -> Vec<String> {
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
pub(crate) struct Inputs<'a> {
    pub slos: &'a [SloSpec],
    pub occurrences: &'a [Occurrence],
    pub duration_s: f64,
    /// How long the load was planned to run: a drift's thirds are of the planned seconds
    /// (the seconds after hold only draining requests).
    pub planned_s: f64,
    pub settle_ms: u64,
    /// Step index → (journey name, step name), to resolve scopes.
    pub steps: &'a [(String, String)],
}

/// What one analysis pass yields: the judged analysis, and the report's chart points.
pub(crate) struct Analyzed {
    pub analysis: Analysis,
    pub chart: Vec<data::ChartPoint>,
    /// Seconds per chart point.
    pub chart_width: u64,
    /// The run's length in whole seconds of the series: what windows are cut from.
    pub run_seconds: u64,
}

/// Judges the run in one pass over each of its files: every row of `series.csv`, then every
/// histogram of `intervals.hlog`, goes once to every consumer — the verdicts' windows, the
/// failover figures, the chart. Each keeps only what it needs, so memory does not grow
/// with the run's length (failover's compact seconds aside: 1.4 MB a day).
pub(crate) fn analyze(run_dir: &Path, inputs: &Inputs<'_>) -> Result<Analyzed, String> {
    let run_ms = (inputs.duration_s * 1000.0) as u64;
    let run_seconds = data::last_second(run_dir)?
        .map_or(0, |s| s + 1)
        .max(run_ms.div_ceil(1000));
    let intervals = windows::fault_intervals(inputs.occurrences, run_ms);
    let happened = windows::happened(&intervals);
    let mut judge = verdicts::Judge::new(&intervals, inputs, run_seconds);
    let mut meter = failover::Meter::new(&happened, inputs.settle_ms, run_seconds);
    let mut chart = data::ChartSeries::new(run_seconds);
    let mut accounting_problems = Vec::new();
    let mut unbalanced_rows = 0u64;
    data::for_each_row(run_dir, |second, tag, counts| {
        if let Some(why) = counts
            .iterations
            .as_ref()
            .and_then(|i| i.imbalance(counts.dropped))
        {
            unbalanced_rows += 1;
            if accounting_problems.len() < ACCOUNTING_PROBLEMS_NAMED {
                accounting_problems.push(format!("series.csv second {second}, {tag}: {why}"));
            }
        }
        judge.counts(second, tag, counts);
        meter.counts(second, tag, counts);
        match tag {
            Tag::All => chart.add(second, counts),
            Tag::Instance(instance) => chart.add_instance(second, instance, counts.requests),
            Tag::Step(index) => chart.add_step(second, *index, counts),
            _ => {}
        }
    })?;
    data::for_each_interval(run_dir, |second, tag, histogram| {
        judge.histogram(second, tag, histogram);
        meter.histogram(second, tag, histogram);
    })?;
    let slos = judge.finish();
    let passed = !slos.iter().any(|v| v.fails_run());
    if unbalanced_rows > ACCOUNTING_PROBLEMS_NAMED as u64 {
        accounting_problems.push(format!(
            "and {} more rows",
            unbalanced_rows - ACCOUNTING_PROBLEMS_NAMED as u64
        ));
    }
    Ok(Analyzed {
        analysis: Analysis {
            slos,
            failover: meter.finish(),
            passed,
            fault_problems: fault_problems(inputs.occurrences),
            accounting_problems,
        },
        chart_width: chart.width,
        chart: chart.finish(),
        run_seconds,
    })
}

/// The rows whose iterations a scope's load rests on: the run's (`all`), or its journey's
/// (for a journey or one of its steps).
pub(crate) fn load_tags(scope: &Scope, steps: &[(String, String)]) -> Vec<Tag> {
    let Some(journey) = scope.journey() else {
        return vec![Tag::All];
    };
    let mut journeys: Vec<&str> = Vec::new();
    for (name, _) in steps {
        if journeys.last() != Some(&name.as_str()) {
            journeys.push(name);
        }
    }
    journeys
        .iter()
        .position(|name| *name == journey)
        .map(|index| vec![Tag::Journey(index)])
        .unwrap_or_default()
}

/// The hlog tags a scope covers: "all", every step of a journey, or one step.
pub(crate) fn scope_tags(scope: &Scope, steps: &[(String, String)]) -> Vec<Tag> {
    if *scope == Scope::All {
        return vec![Tag::All];
    }
    crate::judge::slo::live::scope_steps(scope, steps)
        .into_iter()
        .map(Tag::Step)
        .collect()
}
