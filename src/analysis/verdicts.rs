//! SLO verdicts: each objective judged over each instance of its window, with the measured
//! value beside the threshold. Recovery objectives measure, per fault, how long after its
//! start (or end) the conditions held again for three seconds in a row.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::data::{Counts, Series, for_each_interval};
use super::windows::{Interval, WindowInstance, instances};
use super::{Inputs, scope_tags};
use crate::metrics::stats::new_histogram;
use crate::slo::{Condition, Metric, SloSpec, format_value};

/// Seconds the conditions must hold in a row to count as recovered.
pub const STABLE_SECONDS: u64 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloVerdict {
    pub name: String,
    pub objective: String,
    pub scope: String,
    /// The window instance: "run", "steady", "during kill #1", "recovery from kill #1"…
    pub window: String,
    /// "pass", "fail", or "no_data" (the window never happened or saw no request).
    pub status: String,
    pub requests: u64,
    pub measured: Vec<Measured>,
    pub spec: SloSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub metric: String,
    pub op: String,
    pub threshold: String,
    pub value: Option<f64>,
    pub value_text: String,
    pub passed: bool,
}

/// Counts and latencies of one scope over a set of seconds.
#[derive(Default)]
struct Accumulator {
    counts: Counts,
    histogram: Option<Histogram<u64>>,
    seconds: u64,
}

impl Accumulator {
    fn value(&self, metric: Metric) -> Option<f64> {
        let latency = |q: f64| {
            self.histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64)
        };
        let requests = self.counts.requests as f64;
        match metric {
            Metric::P50 => latency(0.5),
            Metric::P90 => latency(0.9),
            Metric::P95 => latency(0.95),
            Metric::P99 => latency(0.99),
            Metric::P999 => latency(0.999),
            Metric::Max => self
                .histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.max() as f64),
            Metric::Mean => self
                .histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.mean()),
            Metric::ErrorRate => {
                (requests > 0.0).then(|| self.counts.errors as f64 / requests * 100.0)
            }
            Metric::Availability => {
                (requests > 0.0).then(|| 100.0 - self.counts.errors as f64 / requests * 100.0)
            }
            Metric::Rps => (self.seconds > 0).then(|| requests / self.seconds as f64),
        }
    }

    fn holds(&self, conditions: &[Condition]) -> bool {
        self.counts.requests > 0
            && conditions
                .iter()
                .all(|c| self.value(c.metric).is_some_and(|v| c.holds(v)))
    }
}

/// (objective index, fault occurrence, anchor ms, per-second accumulators, scope tags).
type RecoveryJob<'a> = (
    usize,
    &'a Interval,
    u64,
    BTreeMap<u64, Accumulator>,
    Vec<String>,
);

struct Job {
    tags: Vec<String>,
    window: WindowInstance,
    acc: Accumulator,
}

pub fn judge(
    run_dir: &Path,
    series: &Series,
    intervals: &[Interval],
    inputs: &Inputs<'_>,
    run_seconds: u64,
) -> Result<Vec<SloVerdict>, String> {
    // Plain objectives: one accumulator per window instance.
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    // Recovery objectives: per fault occurrence, per-second accumulators over the search span.
    let mut recoveries: Vec<RecoveryJob<'_>> = Vec::new();
    let mut verdicts = Vec::new();
    for (index, slo) in inputs.slos.iter().enumerate() {
        let tags = scope_tags(&slo.scope, inputs.steps);
        if let Some(recovery) = slo.recovery {
            if !intervals.iter().any(Interval::happened) {
                verdicts.push((
                    index,
                    no_data(slo, "recovery", "no fault happened in this run"),
                ));
            }
            for interval in intervals.iter().filter(|i| i.happened()) {
                let anchor_ms = if recovery.from_end {
                    interval.end_ms
                } else {
                    interval.start_ms
                };
                let first = anchor_ms / 1000;
                let last = (anchor_ms + recovery.within.as_millis() as u64).div_ceil(1000)
                    + STABLE_SECONDS;
                let per_second = (first..last.min(run_seconds))
                    .map(|s| {
                        (
                            s,
                            Accumulator {
                                seconds: 1,
                                ..Accumulator::default()
                            },
                        )
                    })
                    .collect();
                recoveries.push((index, interval, anchor_ms, per_second, tags.clone()));
            }
            continue;
        }
        let windows = instances(&slo.window, intervals, inputs.settle_ms, run_seconds);
        if windows.is_empty() {
            verdicts.push((
                index,
                no_data(
                    slo,
                    &slo.window.to_string(),
                    "this window did not occur in the run",
                ),
            ));
        }
        for window in windows {
            let mut acc = Accumulator {
                seconds: window.length(),
                ..Accumulator::default()
            };
            for (second, scopes) in series {
                if window.contains(*second) {
                    for tag in &tags {
                        if let Some(counts) = scopes.get(tag) {
                            acc.counts.add(counts);
                        }
                    }
                }
            }
            jobs.push((
                index,
                Job {
                    tags: tags.clone(),
                    window,
                    acc,
                },
            ));
        }
    }
    for (_, _, _, per_second, tags) in &mut recoveries {
        for (second, acc) in per_second.iter_mut() {
            if let Some(scopes) = series.get(second) {
                for tag in tags.iter() {
                    if let Some(counts) = scopes.get(tag) {
                        acc.counts.add(counts);
                    }
                }
            }
        }
    }
    for_each_interval(run_dir, |second, tag, histogram| {
        for (_, job) in jobs.iter_mut() {
            if job.window.contains(second) && job.tags.iter().any(|t| t == tag) {
                add(&mut job.acc.histogram, histogram);
            }
        }
        for (_, _, _, per_second, tags) in recoveries.iter_mut() {
            if tags.iter().any(|t| t == tag)
                && let Some(acc) = per_second.get_mut(&second)
            {
                add(&mut acc.histogram, histogram);
            }
        }
    })?;

    for (index, job) in jobs {
        let slo = &inputs.slos[index];
        let measured: Vec<Measured> = slo
            .conditions
            .iter()
            .map(|c| {
                let value = job.acc.value(c.metric);
                Measured {
                    metric: c.metric.name().into(),
                    op: c.op.symbol().into(),
                    threshold: c.threshold_text(),
                    value,
                    value_text: value.map_or("no data".into(), |v| format_value(c.metric, v)),
                    passed: value.is_some_and(|v| c.holds(v)),
                }
            })
            .collect();
        let status = if job.acc.counts.requests == 0 {
            "no_data"
        } else if measured.iter().all(|m| m.passed) {
            "pass"
        } else {
            "fail"
        };
        verdicts.push((
            index,
            SloVerdict {
                name: slo.name.clone(),
                objective: slo.objective.clone(),
                scope: slo.scope.clone(),
                window: job.window.label.clone(),
                status: status.into(),
                requests: job.acc.counts.requests,
                measured,
                spec: slo.clone(),
            },
        ));
    }
    for (index, interval, anchor_ms, per_second, _) in recoveries {
        let slo = &inputs.slos[index];
        let recovery = slo.recovery.expect("a recovery job");
        // Seconds without a request neither confirm nor refute; at the run's end fewer than
        // three seconds may be left, and those that are must all hold.
        let seconds: Vec<(&u64, &Accumulator)> = per_second
            .iter()
            .filter(|(_, a)| a.counts.requests > 0)
            .collect();
        let recovered_at = (0..seconds.len())
            .find(|&i| {
                seconds[i..(i + STABLE_SECONDS as usize).min(seconds.len())]
                    .iter()
                    .all(|(_, a)| a.holds(&slo.conditions))
            })
            .map(|i| *seconds[i].0);
        let within_ms = recovery.within.as_millis() as u64;
        let (value, passed) = match recovered_at {
            Some(second) => {
                let after = (second * 1000).saturating_sub(anchor_ms);
                (Some(after as f64), after <= within_ms)
            }
            None => (None, false),
        };
        let requests = per_second.values().map(|a| a.counts.requests).sum();
        verdicts.push((
            index,
            SloVerdict {
                name: slo.name.clone(),
                objective: slo.objective.clone(),
                scope: slo.scope.clone(),
                window: format!(
                    "recovery from {} #{} ({})",
                    interval.fault,
                    interval.occurrence + 1,
                    if recovery.from_end { "end" } else { "start" }
                ),
                status: if requests == 0 {
                    "no_data"
                } else if passed {
                    "pass"
                } else {
                    "fail"
                }
                .into(),
                requests,
                measured: vec![Measured {
                    metric: "recovery".into(),
                    op: "<=".into(),
                    threshold: format!("{:.1}s", within_ms as f64 / 1000.0),
                    value: value.map(|v| v / 1000.0),
                    value_text: value.map_or(
                        format!("not back within {:.1}s", within_ms as f64 / 1000.0),
                        |v| format!("{:.1}s", v / 1000.0),
                    ),
                    passed,
                }],
                spec: slo.clone(),
            },
        ));
    }
    // Keep the scenario's order of objectives.
    verdicts.sort_by_key(|(index, _)| *index);
    Ok(verdicts.into_iter().map(|(_, v)| v).collect())
}

fn add(into: &mut Option<Histogram<u64>>, from: &Histogram<u64>) {
    into.get_or_insert_with(new_histogram)
        .add(from)
        .expect("auto-resizing histograms accept any values");
}

fn no_data(slo: &SloSpec, window: &str, why: &str) -> SloVerdict {
    SloVerdict {
        name: slo.name.clone(),
        objective: slo.objective.clone(),
        scope: slo.scope.clone(),
        window: window.into(),
        status: "no_data".into(),
        requests: 0,
        measured: vec![Measured {
            metric: "-".into(),
            op: String::new(),
            threshold: String::new(),
            value: None,
            value_text: why.into(),
            passed: false,
        }],
        spec: slo.clone(),
    }
}
