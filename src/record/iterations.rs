//! The iterations of a run in `summary.json`: what was planned and what became of each
//! (`totals.iterations`, per journey), the accounting identity checked over them, and the
//! `unique` feeders that ran out — with the one line that says it all to people.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::run_plan::RunPlan;
use super::series::PlannedTotals;
use super::summary::Summary;
use crate::metrics::stats::JourneyStats;
use crate::metrics::{NotStarted, NotStartedCounts, Snapshot};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeederSummary {
    pub name: String,
    pub rows: u64,
    /// `fail`, `stop_journey` or `wrap`.
    pub on_exhausted: String,
    /// Iterations that found no row left (and did not start).
    pub exhausted: u64,
    /// Rows handed out again from the first (`wrap`).
    pub wrapped: u64,
}

impl Summary {
    /// What became of the planned iterations, in one line: "4 of 10 iterations started:
    /// 6 not started (feeder `skus` exhausted); 4 completed, 0 failed".
    pub fn iterations_line(&self) -> String {
        let i = &self.totals.iterations;
        let mut line = format!("{} of {} iterations started", i.started, i.planned);
        let mut short = Vec::new();
        for (reason, count) in &i.not_started {
            let why = match reason.as_str() {
                "feeder_exhausted" => {
                    self.feeders_named(|f| f.exhausted > 0 && f.on_exhausted == "fail", "exhausted")
                }
                "journey_stopped" => self.feeders_named(
                    |f| f.exhausted > 0 && f.on_exhausted == "stop_journey",
                    "used up, its journeys stopped",
                ),
                "stopped" => "due after the run stopped".to_string(),
                other => other.to_string(),
            };
            short.push(format!("{count} not started, {why}"));
        }
        if i.dropped > 0 {
            short.push(format!("{} dropped at the in-flight cap", i.dropped));
        }
        if !short.is_empty() {
            line.push_str(": ");
            line.push_str(&short.join("; "));
        }
        line.push_str(&format!("; {} completed, {} failed", i.completed, i.failed));
        if i.interrupted > 0 {
            line.push_str(&format!(", {} interrupted", i.interrupted));
        }
        line
    }

    fn feeders_named(&self, which: impl Fn(&FeederSummary) -> bool, what: &str) -> String {
        let names: Vec<String> = self
            .feeders
            .iter()
            .filter(|f| which(f))
            .map(|f| format!("`{}` ({})", f.name, rows(f.rows)))
            .collect();
        match names.len() {
            0 => format!("a feeder {what}"),
            1 => format!("feeder {} {what}", names[0]),
            _ => format!("feeders {} {what}", names.join(", ")),
        }
    }
}

/// The accounting identity, checked over the totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    pub balanced: bool,
    /// What does not add up, one line per journey and identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Iterations: what was planned and what became of it. Open model: `planned` is the
/// schedule's arrivals; closed model: the iterations users began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Iterations {
    pub planned: u64,
    pub started: u64,
    /// Arrivals dropped at the in-flight cap.
    pub dropped: u64,
    /// Planned iterations that never started, by reason (`feeder_exhausted`,
    /// `journey_stopped`, `stopped`); only reasons that happened.
    pub not_started: BTreeMap<String, u64>,
    pub completed: u64,
    pub failed: u64,
    /// Started iterations cut off at the hard stop.
    pub interrupted: u64,
}

impl Iterations {
    pub fn not_started_total(&self) -> u64 {
        self.not_started.values().sum()
    }
}

pub(super) fn feeder_summaries(plan: &RunPlan, totals: &Snapshot) -> Vec<FeederSummary> {
    plan.feeders
        .iter()
        .enumerate()
        .filter(|(_, f)| f.order == "unique")
        .map(|(index, feeder)| {
            let counts = totals
                .feeders
                .get(&(index as u16))
                .copied()
                .unwrap_or_default();
            FeederSummary {
                name: feeder.name.clone(),
                rows: feeder.rows,
                on_exhausted: feeder.on_exhausted.clone(),
                exhausted: counts.exhausted,
                wrapped: counts.wrapped,
            }
        })
        .collect()
}

/// One journey's iterations, every term as counted at its source, `planned` from the
/// schedule (open model) or as begun (closed), `stopped` from where workers stopped.
pub(super) struct JourneyAccount<'a> {
    pub stats: &'a JourneyStats,
    pub planned: u64,
    pub not_started: NotStartedCounts,
}

pub(super) fn journey_accounts<'a>(
    planned: &PlannedTotals,
    totals: &'a Snapshot,
) -> Vec<JourneyAccount<'a>> {
    totals
        .journeys
        .iter()
        .enumerate()
        .map(|(index, stats)| {
            let mut not_started = stats.not_started;
            not_started[NotStarted::Stopped.index()] +=
                planned.stopped.get(index).copied().unwrap_or(0);
            JourneyAccount {
                stats,
                planned: planned.planned.get(index).copied().unwrap_or(stats.begun),
                not_started,
            }
        })
        .collect()
}

pub(super) fn total_iterations(accounts: &[JourneyAccount<'_>]) -> Iterations {
    let mut not_started = [0; NotStarted::COUNT];
    let mut iterations = Iterations::default();
    for account in accounts {
        let stats = account.stats;
        iterations.planned += account.planned;
        iterations.started += stats.started;
        iterations.dropped += stats.dropped;
        iterations.completed += stats.completed;
        iterations.failed += stats.failed;
        iterations.interrupted += stats.interrupted;
        for (total, n) in not_started.iter_mut().zip(account.not_started.iter()) {
            *total += n;
        }
    }
    iterations.not_started = by_reason(&not_started);
    iterations
}

/// The two identities per journey. `finished`: every worker ended its iterations (after
/// a worker thread failed, started iterations may have no end).
pub(super) fn check_accounting(
    plan: &RunPlan,
    accounts: &[JourneyAccount<'_>],
    finished: bool,
) -> Accounting {
    let mut problems = Vec::new();
    for (journey, account) in plan.journeys.iter().zip(accounts) {
        let stats = account.stats;
        let not_started: u64 = account.not_started.iter().sum();
        if account.planned != stats.started + stats.dropped + not_started {
            problems.push(format!(
                "journey `{}`: planned {} ≠ started {} + dropped {} + not started {}",
                journey.name, account.planned, stats.started, stats.dropped, not_started
            ));
        }
        if finished && stats.started != stats.ended() {
            problems.push(format!(
                "journey `{}`: started {} ≠ completed {} + failed {} + interrupted {}",
                journey.name, stats.started, stats.completed, stats.failed, stats.interrupted
            ));
        }
    }
    Accounting {
        balanced: problems.is_empty(),
        problems,
    }
}

/// "1 row", "4 rows".
pub(crate) fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

pub(crate) fn by_reason(counts: &NotStartedCounts) -> BTreeMap<String, u64> {
    NotStarted::ALL
        .iter()
        .filter(|r| counts[r.index()] > 0)
        .map(|r| (r.name().to_string(), counts[r.index()]))
        .collect()
}
