//! A run whose loadgen was killed (SIGKILL, a crash, the machine) before it wrote
//! summary.json is still judged: its summary is rebuilt from what the run directory
//! already holds — plan.json (written before the first arrival), series.csv and
//! intervals.hlog (flushed each second), the fault ledger (synced before each change).
//! It is marked `ended_by = "killed"`, `complete = false`, and exits 3. What the files do
//! not keep is missing from it: redirects followed, requests abandoned at a hard stop, the
//! generator's lateness histogram, the planned arrivals after its last second.
//!
//! A fault applied and not recovered before the data ends runs to the end of the data and
//! reads `not_healthy_again`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::chaos::ledger::{EntryState, LEDGER_FILE, LedgerRecord};
use crate::chaos::runner::{ChaosReport, Occurrence, OccurrenceStatus};
use crate::metrics::stats::{JourneyStats, RequestStats};
use crate::metrics::{NotStarted, Snapshot};
use crate::record::data::{Counts, for_each_interval, for_each_row};
use crate::record::run_plan::RunPlan;
use crate::record::series::PlannedTotals;
use crate::record::summary::{self, EndReason, RunFacts, Summary};
use crate::record::tag::Tag;

/// The summary of a killed run, unjudged, rebuilt from its files.
pub(crate) fn rebuild(run_dir: &Path) -> Result<Summary, String> {
    let plan = RunPlan::read(run_dir)?;
    let (totals, seconds) = replay(run_dir, &plan)?;
    let open = plan.load.model == "open";
    let planned = if open {
        PlannedTotals {
            planned: totals.journeys.iter().map(|j| j.begun).collect(),
            stopped: vec![0; plan.journeys.len()],
        }
    } else {
        PlannedTotals::default()
    };
    let mut totals = totals;
    if open {
        // The open model's rows carry the schedule's `planned`, not a count of begun.
        for journey in &mut totals.journeys {
            journey.begun = 0;
        }
    }
    let end_ms = seconds * 1000;
    // The whole-run histograms the report's spectrum reads, as a finished run leaves them.
    crate::record::series::write_totals(run_dir, &totals, std::time::Duration::from_secs(seconds))
        .map_err(|e| {
            format!(
                "writing {}: {e}",
                run_dir.join("histograms/totals.hlog").display()
            )
        })?;
    let faults = ChaosReport {
        occurrences: occurrences(run_dir, &plan, end_ms)?,
        ..ChaosReport::default()
    };
    Ok(summary::build(
        RunFacts {
            plan: &plan,
            duration_s: seconds as f64,
            ended_by: EndReason::Killed,
            faults,
            aborted_because: None,
            planned,
            host: None,
        },
        &totals,
    ))
}

/// The run's totals from its per-second files, and how many seconds they cover. `begun`
/// carries each journey's `planned` column (the caller sorts out which model's it is).
fn replay(run_dir: &Path, plan: &RunPlan) -> Result<(Snapshot, u64), String> {
    let mut totals = Snapshot::new(plan.step_count(), plan.journeys.len());
    let mut seconds = 0;
    for_each_row(run_dir, |second, tag, counts| {
        seconds = seconds.max(second + 1);
        let add = |stats: &mut RequestStats| {
            stats.requests += counts.requests;
            stats.dropped += counts.dropped;
            stats.retried_unprocessed += counts.retried_unprocessed;
            for (mine, theirs) in stats.errors.iter_mut().zip(counts.by_class.iter()) {
                *mine += theirs;
            }
        };
        match tag {
            Tag::All => {
                add(&mut totals.overall);
                totals.generator.scheduled += counts.scheduled;
                totals.generator.dropped += counts.dropped;
            }
            Tag::Step(index) => {
                if let Some(step) = totals.steps.get_mut(*index) {
                    add(step);
                }
            }
            Tag::Journey(index) => {
                if let Some(journey) = totals.journeys.get_mut(*index) {
                    journey_counts(journey, counts);
                }
            }
            Tag::Instance(instance) => crate::metrics::stats::count_instance(
                &mut totals.instances,
                instance,
                counts.requests,
            ),
            Tag::GeneratorLag | Tag::Failed(_) => {}
        }
    })?;
    for_each_interval(run_dir, |_, tag, histogram| {
        let into = match tag {
            Tag::Failed(scope) => scope_stats(&mut totals, scope).map(|s| &mut s.failed_latency),
            Tag::Journey(index) => totals.journeys.get_mut(*index).map(|j| &mut j.duration),
            scope => scope_stats(&mut totals, scope).map(|s| &mut s.latency),
        };
        if let Some(into) = into {
            into.get_or_insert_with(crate::metrics::stats::new_histogram)
                .add(histogram)
                .expect("histograms of one configuration add");
        }
    })?;
    Ok((totals, seconds))
}

/// A journey row's counts and iteration accounting, added to the journey's totals.
fn journey_counts(journey: &mut JourneyStats, counts: &Counts) {
    journey.failed += counts.errors;
    journey.completed += counts.requests.saturating_sub(counts.errors);
    journey.dropped += counts.dropped;
    for (mine, theirs) in journey.failed_by.iter_mut().zip(counts.by_class.iter()) {
        *mine += theirs;
    }
    if let Some(iterations) = &counts.iterations {
        journey.begun += iterations.planned;
        journey.started += iterations.started;
        journey.interrupted += iterations.interrupted;
        for reason in NotStarted::ALL {
            journey.not_started[reason.index()] += iterations.not_started[reason.index()];
        }
    }
}

fn scope_stats<'a>(totals: &'a mut Snapshot, scope: &Tag) -> Option<&'a mut RequestStats> {
    match scope {
        Tag::All => Some(&mut totals.overall),
        Tag::Step(index) => totals.steps.get_mut(*index),
        _ => None,
    }
}

/// Each planned fault occurrence as the ledger tells it. The ledger's timestamps are wall
/// clock; plan.json's `started_at` is the run's second 0.
fn occurrences(run_dir: &Path, plan: &RunPlan, end_ms: u64) -> Result<Vec<Occurrence>, String> {
    let records = read_records(&run_dir.join(LEDGER_FILE))?;
    let zero: jiff::Timestamp = plan
        .started_at
        .parse()
        .map_err(|e| format!("plan.json: started_at `{}`: {e}", plan.started_at))?;
    let offset = |at: &str| -> Option<u64> {
        let at: jiff::Timestamp = at.parse().ok()?;
        let ms = at.duration_since(zero).as_millis();
        Some(ms.max(0) as u64)
    };
    let mut out = Vec::new();
    for planned in &plan.faults {
        // Every record of this occurrence's entries (`fault#occurrence@target`).
        let prefix = format!("{}#{}@", planned.fault, planned.occurrence);
        let mut entries: BTreeMap<&str, Vec<&LedgerRecord<serde_json::Value>>> = BTreeMap::new();
        for record in records.iter().filter(|r| r.entry.starts_with(&prefix)) {
            entries
                .entry(record.entry.as_str())
                .or_default()
                .push(record);
        }
        let mut occurrence = Occurrence {
            fault: planned.fault.clone(),
            occurrence: planned.occurrence,
            required: planned.required,
            status: OccurrenceStatus::NotRun,
            reason: None,
            targets: Vec::new(),
            planned_at_ms: planned.at_ms,
            started_ms: None,
            applied_ms: None,
            ended_ms: None,
        };
        if entries.is_empty() {
            occurrence.reason = Some(if planned.at_ms < end_ms {
                "the fault ledger has no record of it: loadgen was killed before it was applied"
                    .into()
            } else {
                "loadgen was killed before it was due".into()
            });
            out.push(occurrence);
            continue;
        }
        let mut still_applied = Vec::new();
        for (entry, records) in &entries {
            occurrence.targets.push(records[0].target.name.clone());
            let first = |state: EntryState| {
                records
                    .iter()
                    .find(|r| r.state == state)
                    .and_then(|r| offset(&r.at))
            };
            let started = records.first().and_then(|r| offset(&r.at));
            occurrence.started_ms = min(occurrence.started_ms, started);
            occurrence.applied_ms = min(occurrence.applied_ms, first(EntryState::Applied));
            let recovered = first(EntryState::Recovered).filter(|ms| *ms <= end_ms);
            match recovered {
                Some(ms) => occurrence.ended_ms = occurrence.ended_ms.max(Some(ms)),
                None => still_applied.push(entry.to_string()),
            }
        }
        if still_applied.is_empty() {
            occurrence.status = OccurrenceStatus::Happened;
        } else {
            occurrence.status = OccurrenceStatus::NotHealthyAgain;
            occurrence.ended_ms = Some(end_ms);
            occurrence.reason = Some(format!(
                "still applied when the run's data ends ({}): loadgen was killed with it in place; `loadgen recover {}` undoes what is still applied",
                still_applied.join(", "),
                run_dir.display()
            ));
        }
        out.push(occurrence);
    }
    Ok(out)
}

fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Every readable record of the ledger, in order (none when the run had no fault).
fn read_records(path: &Path) -> Result<Vec<LedgerRecord<serde_json::Value>>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            // A line torn by the kill is not JSON: the entry's earlier record stands.
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
