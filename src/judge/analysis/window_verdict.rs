//! A window objective's verdict from what its window accumulated: each condition measured
//! over the whole window (or, a drift, between its first and last thirds), then the status
//! and why. Recovery objectives are `recovery.rs`'s.

use super::verdicts::Accumulator;
use crate::judge::slo::{Drift, Observed, drift};
use crate::plan::slo::{Condition, OnNoData, SloSpec, format_value};
use crate::record::delivery::Delivery;
use crate::record::verdicts::{Evidence, Measured, SloVerdict, VerdictReason, VerdictStatus};

pub(super) fn window_verdict(
    slo: &SloSpec,
    window: String,
    acc: &Accumulator,
    thirds: Option<(&Accumulator, &Accumulator)>,
) -> SloVerdict {
    let observed = acc.observed();
    // A drift condition: measured between the window's first and last thirds.
    let drifts: Vec<Option<Result<Drift, String>>> = slo
        .conditions
        .iter()
        .map(|c| {
            let (first, last) = thirds.filter(|_| c.drift)?;
            Some(drift(c, &first.observed(), &last.observed()))
        })
        .collect();
    let measured: Vec<Measured> = slo
        .conditions
        .iter()
        .zip(&drifts)
        .map(|(c, drifted)| {
            if let Some(drifted) = drifted {
                return drift_measured(c, drifted);
            }
            window_measured(c, &observed)
        })
        .collect();
    let load = acc.load.judge();
    let (status, reason, reason_text) = window_status(slo, &observed, &load, &measured, &drifts);
    SloVerdict {
        name: slo.name.clone(),
        objective: slo.objective.clone(),
        scope: slo.scope.clone(),
        window,
        status,
        allowed: status == VerdictStatus::NoData && slo.on_no_data == OnNoData::Allow,
        reason,
        reason_text,
        requests: acc.counts.requests,
        dropped: acc.counts.dropped,
        evidence: Evidence {
            seconds: observed.seconds,
            attempts: observed.attempts(),
            successes: observed.successes(),
        },
        measured,
        spec: slo.clone(),
    }
}

/// What a condition measured over the whole window, against its threshold.
fn window_measured(c: &Condition, observed: &Observed<'_>) -> Measured {
    let value = observed.value(c.metric);
    let value_text = match value {
        Some(v) => format_value(c.metric, v),
        None if observed.attempts() > 0 => "no successful response".into(),
        None => "no data".into(),
    };
    Measured {
        metric: c.metric.name().into(),
        op: c.op.symbol().into(),
        threshold: c.threshold_text(),
        value,
        value_text,
        passed: value.is_some_and(|v| c.holds(v)),
        margin: value.and_then(|v| c.op.margin(v, c.threshold)),
    }
}

/// A window's status and why: no data, load not delivered, no successful response and too
/// little evidence come before its conditions are judged.
fn window_status(
    slo: &SloSpec,
    observed: &Observed<'_>,
    load: &Delivery,
    measured: &[Measured],
    drifts: &[Option<Result<Drift, String>>],
) -> (VerdictStatus, Option<VerdictReason>, Option<String>) {
    if observed.attempts() == 0 && load.expected == 0 {
        (
            VerdictStatus::NoData,
            Some(VerdictReason::NoData),
            Some("no request was meant to start in this window".to_string()),
        )
    } else if !load.delivered {
        (
            VerdictStatus::Fail,
            Some(VerdictReason::LoadNotDelivered),
            Some(load.describe()),
        )
    } else if observed.attempts() == 0 {
        (
            VerdictStatus::NoData,
            Some(VerdictReason::NoData),
            Some("no request was meant to start in this window".to_string()),
        )
    } else if slo
        .conditions
        .iter()
        .any(|c| c.metric.is_latency() && observed.successes() == 0)
    {
        (
            VerdictStatus::Fail,
            Some(VerdictReason::NoSuccessfulResponse),
            Some(format!(
                "none of the {} requests in this window succeeded",
                observed.requests
            )),
        )
    } else if let Some(short) = too_little(slo, observed, drifts) {
        (
            VerdictStatus::NoData,
            Some(VerdictReason::InsufficientEvidence),
            Some(short),
        )
    } else if measured.iter().all(|m| m.passed) {
        (VerdictStatus::Pass, None, None)
    } else {
        (VerdictStatus::Fail, None, None)
    }
}

/// What a drift condition measured: its change (and the change it was judged on).
fn drift_measured(c: &Condition, drifted: &Result<Drift, String>) -> Measured {
    let unit = if c.metric.is_rate() { " points" } else { "%" };
    let (value, value_text, passed) = match drifted {
        Ok(d) => (
            Some(d.value),
            format!(
                "{:+.1}{unit} ({}; judged {:+.1}{unit} from the thirds' intervals)",
                d.value, d.text, d.judged
            ),
            c.holds(d.judged),
        ),
        Err(why) => (None, format!("not measured: {why}"), false),
    };
    Measured {
        metric: c.metric_name(),
        op: c.op.symbol().into(),
        threshold: c.threshold_text(),
        value,
        value_text,
        passed,
        margin: None,
    }
}

/// Every condition the window has too little evidence to judge, or `None` (a drift's in
/// each of its thirds).
fn too_little(
    slo: &SloSpec,
    observed: &crate::judge::slo::Observed<'_>,
    drifts: &[Option<Result<Drift, String>>],
) -> Option<String> {
    let short: Vec<String> = slo
        .conditions
        .iter()
        .zip(drifts)
        .filter_map(|(c, drifted)| match drifted {
            Some(Err(why)) => Some(why.clone()),
            Some(Ok(_)) => None,
            None => observed.too_little_for(c.metric),
        })
        .collect();
    (!short.is_empty()).then(|| {
        format!(
            "too little evidence to judge: {} (docs/slo.md, the evidence rule)",
            short.join("; ")
        )
    })
}
