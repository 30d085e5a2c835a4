//! Recovery objectives (`recovery = "10s"`): per fault occurrence, the first second from
//! which the conditions held three seconds in a row inside the run. One rule for "back"
//! (`first_stable`), which the failover figures use too; a recovery the run ended too soon
//! to watch is `no_data`, never a pass on one clean second.

use std::collections::BTreeMap;

use super::verdicts::{Accumulator, Load, Tags};
use super::windows::Interval;
use crate::plan::slo::{OnNoData, Recovery, SloSpec};
use crate::record::verdicts::{Evidence, Measured, SloVerdict, VerdictReason, VerdictStatus};

/// Seconds the conditions must hold in a row to count as recovered.
pub(crate) const STABLE_SECONDS: u64 = 3;

/// The first second `s` in `from..end` that begins `STABLE_SECONDS` seconds in a row each
/// with at least one attempt (`state(s)` is `Some`) and each healthy (`Some(true)`): the
/// moment something is back. A second without an attempt breaks the streak (it proves
/// nothing), and seconds at or past `end` were not observed, so no streak ends there: one
/// clean second before the run ends is not a recovery. Recovery verdicts and the failover
/// figures both say "back" through this one function.
pub(crate) fn first_stable(
    from: u64,
    end: u64,
    mut state: impl FnMut(u64) -> Option<bool>,
) -> Option<u64> {
    let mut streak: Option<u64> = None;
    for second in from..end {
        if state(second) == Some(true) {
            let start = *streak.get_or_insert(second);
            if second + 1 - start >= STABLE_SECONDS {
                return Some(start);
            }
        } else {
            streak = None;
        }
    }
    None
}

/// A recovery objective's search over one fault occurrence.
pub(super) struct RecoveryJob<'a> {
    pub(super) slo: usize,
    pub(super) interval: &'a Interval,
    pub(super) anchor_ms: u64,
    /// The first second searched (the anchor's).
    pub(super) first: u64,
    /// The second the search must reach to be conclusive: the anchor plus `within` plus
    /// `STABLE_SECONDS`.
    pub(super) deadline: u64,
    /// The first second not observed: the deadline, or the run's end if it came first.
    pub(super) observed_end: u64,
    pub(super) per_second: BTreeMap<u64, Accumulator>,
    pub(super) tags: Tags,
}

pub(super) fn recovery_verdict(slo: &SloSpec, job: &RecoveryJob<'_>) -> SloVerdict {
    let recovery = slo.recovery.expect("a recovery job");
    let within_ms = recovery.within.as_millis() as u64;
    // Three seconds in a row, each with an attempt, each holding, all inside the run.
    let recovered_at = first_stable(job.first, job.observed_end, |second| {
        job.per_second
            .get(&second)
            .filter(|a| a.counts.attempts() > 0)
            .map(|a| a.holds(&slo.conditions))
    });
    let (value, passed) = match recovered_at {
        Some(second) => {
            let after = (second * 1000).saturating_sub(job.anchor_ms);
            (Some(after as f64), after <= within_ms)
        }
        None => (None, false),
    };
    // Not back, and the run ended before `within` plus three seconds could be watched:
    // too little evidence either way.
    let cut_short = recovered_at.is_none() && job.observed_end < job.deadline;
    let requests = job.per_second.values().map(|a| a.counts.requests).sum();
    let attempts: u64 = job.per_second.values().map(|a| a.counts.attempts()).sum();
    let dropped = attempts - requests;
    let load = span_load(job).judge();
    let (status, reason, reason_text) = if attempts == 0 && load.expected == 0 {
        (
            VerdictStatus::NoData,
            Some(VerdictReason::NoData),
            Some("no request was meant to start in the recovery span".to_string()),
        )
    } else if !load.delivered {
        (
            VerdictStatus::Fail,
            Some(VerdictReason::LoadNotDelivered),
            Some(load.describe()),
        )
    } else if attempts == 0 {
        (
            VerdictStatus::NoData,
            Some(VerdictReason::NoData),
            Some("no request was meant to start in the recovery span".to_string()),
        )
    } else if passed {
        (VerdictStatus::Pass, None, None)
    } else if cut_short {
        (
            VerdictStatus::NoData,
            Some(VerdictReason::InsufficientEvidence),
            Some(cut_short_text(job, recovery, within_ms)),
        )
    } else {
        (VerdictStatus::Fail, None, None)
    };
    let successes = job
        .per_second
        .values()
        .map(|a| a.histogram.as_ref().map_or(0, |h| h.len()))
        .sum();
    SloVerdict {
        name: slo.name.clone(),
        objective: slo.objective.clone(),
        scope: slo.scope.clone(),
        window: format!(
            "recovery from {} #{} ({})",
            job.interval.fault,
            job.interval.occurrence + 1,
            if recovery.from_end { "end" } else { "start" }
        ),
        status,
        allowed: status == VerdictStatus::NoData && slo.on_no_data == OnNoData::Allow,
        reason,
        reason_text,
        requests,
        dropped,
        evidence: Evidence {
            seconds: job.observed_end.saturating_sub(job.first),
            attempts,
            successes,
        },
        measured: vec![recovery_measured(within_ms, value, passed)],
        spec: slo.clone(),
    }
}

/// The iterations of the recovery span's journeys, over its seconds.
fn span_load(job: &RecoveryJob<'_>) -> Load {
    let mut load = Load::default();
    for acc in job.per_second.values() {
        load.planned += acc.load.planned;
        load.dropped += acc.load.dropped;
        for (a, b) in load.not_started.iter_mut().zip(acc.load.not_started.iter()) {
            *a += b;
        }
    }
    load
}

/// Why a recovery not seen before the run ended is too little evidence: what could not be
/// watched.
fn cut_short_text(job: &RecoveryJob<'_>, recovery: Recovery, within_ms: u64) -> String {
    format!(
        "the run ended at {} s, before {:.1} s ({} + {:.1} s + {STABLE_SECONDS} s in a row) could be watched, and it was not back by then",
        job.observed_end,
        (job.deadline) as f64,
        if recovery.from_end {
            "the fault's end"
        } else {
            "the fault's start"
        },
        within_ms as f64 / 1000.0,
    )
}

/// What a recovery objective measured: how long after its anchor the conditions held
/// again (`value`, ms), against `within`.
fn recovery_measured(within_ms: u64, value: Option<f64>, passed: bool) -> Measured {
    Measured {
        metric: "recovery".into(),
        op: "<=".into(),
        threshold: format!("{:.1}s", within_ms as f64 / 1000.0),
        value: value.map(|v| v / 1000.0),
        value_text: value.map_or(
            format!("not back within {:.1}s", within_ms as f64 / 1000.0),
            |v| format!("{:.1}s", v / 1000.0),
        ),
        passed,
        margin: value
            .filter(|_| within_ms > 0)
            .map(|v| (within_ms as f64 - v) / within_ms as f64),
    }
}
