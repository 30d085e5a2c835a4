//! What a comparison compares, per scope (`all` and each `journey/step`), with the evidence
//! each figure rests on: the share of the plan delivered, the error rate, and the latency
//! histogram its percentiles and their intervals come from.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::record::data::for_each_histogram;
use crate::record::summary::Summary;
use crate::record::tag::Tag;

/// One scope's figures in one run.
pub(crate) struct Figures {
    pub scope: String,
    /// Requests sent (the evidence behind the error rate).
    pub requests: u64,
    /// Achieved ÷ planned: requests per planned iteration of the journey (per planned
    /// iteration of the run for `all`), so a run of another length compares fairly.
    pub delivered: Option<f64>,
    pub error_rate: f64,
    /// Successful responses' latency (`None` when the run directory holds no histograms:
    /// a summary copied on its own).
    pub latency: Option<Histogram<u64>>,
    /// Responses by the instance that served them (`all` only; empty for a step).
    pub instances: BTreeMap<String, u64>,
    /// The run's generator was the bottleneck (`super::generator_bottleneck`): its latency
    /// is no baseline.
    pub generator_bottleneck: bool,
}

/// Every scope's figures of the run in `dir` whose summary is `summary`.
pub(crate) fn read(summary: &Summary, dir: &Path) -> Vec<Figures> {
    let mut latency = histograms(dir, summary);
    let bottleneck = super::generator_bottleneck(summary).is_some();
    let planned_total: u64 = summary.journeys.iter().map(|j| j.planned).sum();
    let t = &summary.totals;
    let mut out = vec![Figures {
        scope: "all".into(),
        requests: t.requests,
        delivered: share(t.requests, planned_total),
        error_rate: t.error_rate,
        latency: latency.remove("all"),
        instances: t.instances.clone(),
        generator_bottleneck: bottleneck,
    }];
    for journey in &summary.journeys {
        for step in &journey.steps {
            let scope = format!("{}/{}", journey.name, step.name);
            out.push(Figures {
                requests: step.requests,
                delivered: share(step.requests, journey.planned),
                error_rate: step.error_rate,
                latency: latency.remove(&scope),
                instances: BTreeMap::new(),
                generator_bottleneck: bottleneck,
                scope,
            });
        }
    }
    out
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The whole-run latency histograms of `all` and each step, by scope name.
fn histograms(dir: &Path, summary: &Summary) -> BTreeMap<String, Histogram<u64>> {
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    for journey in &summary.journeys {
        for step in &journey.steps {
            names.insert(step.index, format!("{}/{}", journey.name, step.name));
        }
    }
    let mut out = BTreeMap::new();
    let _ = for_each_histogram(&dir.join("histograms/totals.hlog"), |_, tag, histogram| {
        let scope = match tag {
            Tag::All => Some("all".to_string()),
            Tag::Step(index) => names.get(index).cloned(),
            _ => None,
        };
        if let Some(scope) = scope {
            out.insert(scope, histogram.clone());
        }
    });
    out
}
