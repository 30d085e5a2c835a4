//! Query objectives judged on the platform's own metrics, from what the run saved
//! (prometheus.json) — so `loadgen report` judges them again without the server.
//!
//! Per window, in this order: a fault that did not happen is `not_run`; a server that could
//! not be read, or a window in which the query's series were scraped fewer than twice
//! (`count_over_time` of its least-scraped selector; Prometheus's lookback fills gaps, so
//! points prove nothing) is `no_data`, with the reason; otherwise every series the query
//! returned is judged on its points inside the window — the aggregate against the
//! threshold — and the verdict fails if one fails, naming its labels.

use crate::judge::analysis::windows::{Interval, WindowInstance, instances};
use crate::plan::slo::server::{ServerObjective, value_text};
use crate::plan::slo::{OnNoData, Scope, SloSpec};
use crate::record::server::{ObjectiveData, ServerData, ServerSeries};
use crate::record::verdicts::{Evidence, Measured, SloVerdict, VerdictReason, VerdictStatus};

/// Fewer raw samples than this in a window, and it has no server data.
const SAMPLES_NEEDED: u64 = 2;

/// What judging needs besides the saved data.
pub(crate) struct Windows<'a> {
    pub(crate) intervals: &'a [Interval],
    pub(crate) settle_ms: u64,
    pub(crate) run_seconds: u64,
}

/// The verdicts of one query objective, one per window instance.
pub(crate) fn verdicts(
    spec: &SloSpec,
    server: Option<&ServerData>,
    windows: &Windows<'_>,
) -> Vec<SloVerdict> {
    let objective = spec
        .server
        .as_ref()
        .expect("only query objectives are judged here");
    let data = server.and_then(|s| s.objectives.iter().find(|o| o.name == spec.name));
    instances(
        &spec.window,
        windows.intervals,
        windows.settle_ms,
        windows.run_seconds,
    )
    .into_iter()
    .map(|window| judge_window(spec, objective, server, data, &window))
    .collect()
}

fn judge_window(
    spec: &SloSpec,
    objective: &ServerObjective,
    server: Option<&ServerData>,
    data: Option<&ObjectiveData>,
    window: &WindowInstance,
) -> SloVerdict {
    if let Some(not_run) = &window.not_run {
        let mut verdict = verdict(spec, window, VerdictStatus::NotRun, VerdictReason::NotRun);
        verdict.allowed = !not_run.required;
        verdict.reason_text = Some(not_run.reason.clone());
        return verdict;
    }
    let no_data = |why: String| {
        let mut verdict = verdict(spec, window, VerdictStatus::NoData, VerdictReason::NoData);
        verdict.allowed = spec.on_no_data == OnNoData::Allow;
        verdict.reason_text = Some(why);
        verdict
    };
    let data = match evidence(server, data, window) {
        Ok(data) => data,
        Err(why) => return no_data(why),
    };
    let judged: Vec<(&ServerSeries, f64)> = data
        .series
        .iter()
        .filter_map(|series| {
            let values: Vec<f64> = series
                .points
                .iter()
                .filter(|(t, _)| window.contains(t.floor().max(0.0) as u64))
                .map(|(_, v)| *v)
                .collect();
            objective.aggregate.of(&values).map(|value| (series, value))
        })
        .collect();
    if judged.is_empty() {
        return no_data("the query returned no points in the window".into());
    }
    judged_verdict(spec, objective, window, &judged)
}

/// The window's saved data when it shows the platform was scraped in it, else why not.
fn evidence<'a>(
    server: Option<&ServerData>,
    data: Option<&'a ObjectiveData>,
    window: &WindowInstance,
) -> Result<&'a ObjectiveData, String> {
    let Some(data) = data else {
        return Err(match server {
            None => "the platform's Prometheus was not read (no prometheus.json)".into(),
            Some(server) => server
                .error
                .clone()
                .unwrap_or_else(|| "the query was not fetched".into()),
        });
    };
    if let Some(error) = &data.error {
        return Err(format!("the query failed: {error}"));
    }
    match data.windows.iter().find(|w| w.label == window.label) {
        None => Err("the window's samples were not counted".into()),
        Some(w) if w.samples.unwrap_or(0) < SAMPLES_NEEDED => Err(format!(
            "{} sample(s) of {} were scraped in the window (at least {SAMPLES_NEEDED} needed){}",
            w.samples.unwrap_or(0),
            w.fewest.as_deref().unwrap_or("its series"),
            w.error
                .as_deref()
                .map(|e| format!("; counting them failed: {e}"))
                .unwrap_or_default()
        )),
        Some(_) => Ok(data),
    }
}

/// Pass when every series holds, else fail naming the ones that do not; the measured value
/// is the deciding series' (the first failing, else the closest to failing).
fn judged_verdict(
    spec: &SloSpec,
    objective: &ServerObjective,
    window: &WindowInstance,
    judged: &[(&ServerSeries, f64)],
) -> SloVerdict {
    let passes = |value: f64| objective.op.holds(value, objective.threshold);
    let deciding = judged
        .iter()
        .find(|(_, value)| !passes(*value))
        .or_else(|| {
            judged
                .iter()
                .min_by(|a, b| headroom(objective, a.1).total_cmp(&headroom(objective, b.1)))
        })
        .expect("judged is not empty");
    let failing: Vec<String> = judged
        .iter()
        .filter(|(_, value)| !passes(*value))
        .map(|(series, value)| {
            format!(
                "{} {}",
                series.describe(),
                value_text(objective.unit, *value)
            )
        })
        .collect();
    let status = match failing.is_empty() {
        true => VerdictStatus::Pass,
        false => VerdictStatus::Fail,
    };
    let mut verdict = verdict(spec, window, status, VerdictReason::NoData);
    verdict.reason = None;
    if !failing.is_empty() {
        verdict.reason_text = Some(format!(
            "{} of {} series past the threshold: {}",
            failing.len(),
            judged.len(),
            failing.join(", ")
        ));
    }
    let (series, value) = deciding;
    verdict.measured = vec![Measured {
        metric: format!("{} of {}", objective.aggregate.name(), series.describe()),
        op: objective.op.symbol().to_string(),
        threshold: objective.threshold_text(),
        value: Some(*value),
        value_text: value_text(objective.unit, *value),
        passed: passes(*value),
        margin: objective.op.margin(*value, objective.threshold),
    }];
    verdict
}

fn headroom(objective: &ServerObjective, value: f64) -> f64 {
    objective.op.headroom(value, objective.threshold)
}

fn verdict(
    spec: &SloSpec,
    window: &WindowInstance,
    status: VerdictStatus,
    reason: VerdictReason,
) -> SloVerdict {
    SloVerdict {
        name: spec.name.clone(),
        objective: spec.objective.clone(),
        scope: Scope::All,
        window: window.label.clone(),
        status,
        allowed: false,
        reason: Some(reason),
        reason_text: None,
        requests: 0,
        dropped: 0,
        evidence: Evidence {
            seconds: window.length(),
            attempts: 0,
            successes: 0,
        },
        measured: Vec::new(),
        spec: spec.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::prometheus::ServerUnit;
    use crate::plan::slo::server::{Aggregate, ServerObjective};
    use crate::plan::slo::{Op, Window};
    use crate::record::server::WindowSamples;

    fn spec() -> SloSpec {
        SloSpec {
            name: "server p99".into(),
            objective: "max < 250ms".into(),
            conditions: Vec::new(),
            window: Window::Run,
            scope: Scope::All,
            recovery: None,
            abort_after: None,
            on_no_data: OnNoData::Fail,
            server: Some(ServerObjective {
                query: "q".into(),
                unit: ServerUnit::Seconds,
                aggregate: Aggregate::Max,
                op: Op::Lt,
                threshold: 0.25,
                selectors: vec!["x".into()],
            }),
        }
    }

    fn data(samples: u64, series: &[(&str, &[(f64, f64)])]) -> ServerData {
        ServerData {
            objectives: vec![ObjectiveData {
                name: "server p99".into(),
                query: "q".into(),
                series: series
                    .iter()
                    .map(|(instance, points)| ServerSeries {
                        labels: [("instance".to_string(), instance.to_string())].into(),
                        points: points.to_vec(),
                    })
                    .collect(),
                windows: vec![WindowSamples {
                    label: "run".into(),
                    samples: Some(samples),
                    fewest: Some("x".into()),
                    error: None,
                }],
                error: None,
            }],
            ..ServerData::default()
        }
    }

    fn judge(data: Option<&ServerData>) -> SloVerdict {
        let windows = Windows {
            intervals: &[],
            settle_ms: 0,
            run_seconds: 10,
        };
        verdicts(&spec(), data, &windows).remove(0)
    }

    #[test]
    fn every_series_is_judged_and_a_failing_one_is_named() {
        let verdict = judge(Some(&data(
            10,
            &[("a", &[(1.0, 0.1), (2.0, 0.2)]), ("b", &[(1.0, 0.3)])],
        )));
        assert_eq!(verdict.status, VerdictStatus::Fail);
        let why = verdict.reason_text.unwrap();
        assert!(why.contains("1 of 2 series"), "{why}");
        assert!(why.contains(r#"{instance="b"} 300ms"#), "{why}");
        assert_eq!(verdict.measured[0].value, Some(0.3));
        // Points past the window's seconds are not its own.
        let verdict = judge(Some(&data(10, &[("a", &[(1.0, 0.1), (10.5, 9.0)])])));
        assert_eq!(verdict.status, VerdictStatus::Pass);
        assert_eq!(verdict.measured[0].value, Some(0.1));
    }

    #[test]
    fn without_two_samples_or_without_the_file_there_is_no_data() {
        let verdict = judge(Some(&data(1, &[("a", &[(1.0, 0.1), (2.0, 0.1)])])));
        assert_eq!(verdict.status, VerdictStatus::NoData);
        assert!(verdict.fails_run());
        assert!(verdict.reason_text.unwrap().contains("1 sample(s) of x"));
        let verdict = judge(None);
        assert_eq!(verdict.status, VerdictStatus::NoData);
        assert!(verdict.reason_text.unwrap().contains("no prometheus.json"));
        let verdict = judge(Some(&data(10, &[])));
        assert_eq!(verdict.status, VerdictStatus::NoData);
        assert!(verdict.reason_text.unwrap().contains("no points"));
    }
}
