//! `loadgen compare BASE CURRENT` and `loadgen run --baseline DIR`: per step and overall,
//! the change in the share of the plan delivered, the error rate (in points) and the latency
//! percentiles, each judged on its evidence: a percentile carries its distribution-free
//! interval (`metrics/interval.rs`) and regresses only when the current interval lies above the
//! base's by more than the tolerances; too few samples is "not compared", never a pass or a
//! regression. Written as a terminal table, comparison.json and
//! comparison.html; a regression is exit 1 — the nightly gate.

use std::fmt::Write;
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};

use self::figures::Figures;
use crate::metrics::interval::{Bounded, CONFIDENCE, percentile};
use crate::util::atomic::write_atomic;
use hdrhistogram::Histogram;

pub(crate) mod figures;
mod identity;

pub(crate) use identity::{check_baseline, generator_bottleneck, notes, read_summary};

const TEMPLATE: &str = include_str!("compare.html.j2");

/// When a change counts as a regression.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Tolerances {
    /// A latency percentile may grow by this fraction…
    pub latency: f64,
    /// …and must grow by more than this many microseconds (noise floor on fast targets).
    pub latency_floor_us: f64,
    /// Throughput may drop by this fraction.
    pub throughput: f64,
    /// The error rate may grow by this many percentage points.
    pub error_points: f64,
    /// An instance's share of the responses may fall by this fraction of its baseline
    /// share (0.5: to half).
    #[serde(default = "default_instance_share")]
    pub instance_share: f64,
}

fn default_instance_share() -> f64 {
    0.5
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            // Shared CI machines routinely double a millisecond-scale p95 between two runs
            // of the same build; a regression must be both relative and absolute.
            latency: 0.25,
            latency_floor_us: 10_000.0,
            throughput: 0.10,
            error_points: 0.5,
            instance_share: default_instance_share(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Comparison {
    pub base: String,
    pub current: String,
    pub tolerances: Tolerances,
    /// The confidence of every percentile's interval.
    #[serde(default)]
    pub confidence: f64,
    /// What differs between the runs besides their figures (planned length, loadgen
    /// version, cores, a generator warning, scopes on one side only), said first.
    #[serde(default)]
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
    pub regressed: bool,
}

/// How a row came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RowStatus {
    Within,
    Regressed,
    /// Too little evidence on one side (or none at all): listed, never flagged.
    NotCompared,
}

/// What a row's `change` is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChangeUnit {
    /// current ÷ base − 1.
    Relative,
    /// current − base, in percentage points.
    Points,
}

/// One metric of one scope in both runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    pub scope: String,
    pub metric: String,
    pub base: f64,
    pub current: f64,
    /// In `unit`: relative (0.12 = +12 %), or percentage points for a rate.
    pub change: f64,
    #[serde(default = "relative")]
    pub unit: ChangeUnit,
    pub regressed: bool,
    #[serde(default = "within")]
    pub status: RowStatus,
    /// Why a row was not compared, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The evidence on each side: requests for a rate, successful responses for latency.
    #[serde(default)]
    pub base_samples: u64,
    #[serde(default)]
    pub current_samples: u64,
    /// A percentile's interval on each side, at the comparison's confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_interval: Option<[f64; 2]>,
    /// For people: the metric's name, both values and the change with their units, and the
    /// tolerance the row was held to.
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub base_text: String,
    #[serde(default)]
    pub current_text: String,
    #[serde(default)]
    pub change_text: String,
    #[serde(default)]
    pub tolerance_text: String,
}

fn relative() -> ChangeUnit {
    ChangeUnit::Relative
}

fn within() -> RowStatus {
    RowStatus::Within
}

/// Compares every scope of `current` with the same scope of the baselines (one run, or the
/// last nights: then each figure is held to their envelope — the lowest delivered share,
/// the highest error rate, the widest interval — which absorbs night-to-night noise).
pub(crate) fn compare(
    bases: &[Vec<Figures>],
    current: &[Figures],
    base_name: &str,
    current_name: &str,
    tolerances: Tolerances,
) -> Comparison {
    let mut rows = Vec::new();
    for now in current {
        let then: Vec<&Figures> = bases
            .iter()
            .filter_map(|base| base.iter().find(|b| b.scope == now.scope))
            .collect();
        if then.is_empty() {
            continue;
        }
        rows.push(delivered_row(&then, now, &tolerances));
        rows.push(error_row(&then, now, &tolerances));
        for (metric, label, q) in [
            ("p50_us", "p50", 0.50),
            ("p95_us", "p95", 0.95),
            ("p99_us", "p99", 0.99),
        ] {
            rows.push(latency_row(&then, now, metric, label, q, &tolerances));
        }
        rows.extend(instance_rows(&then, now, &tolerances));
    }
    let regressed = rows.iter().any(|r| r.regressed);
    Comparison {
        base: base_name.into(),
        current: current_name.into(),
        tolerances,
        confidence: CONFIDENCE,
        notes: Vec::new(),
        rows,
        regressed,
    }
}

/// A row with nothing judged yet.
fn row(scope: &str, metric: &str, label: &str, unit: ChangeUnit) -> Row {
    Row {
        scope: scope.into(),
        metric: metric.into(),
        base: 0.0,
        current: 0.0,
        change: 0.0,
        unit,
        regressed: false,
        status: RowStatus::Within,
        reason: None,
        base_samples: 0,
        current_samples: 0,
        base_interval: None,
        current_interval: None,
        label: label.into(),
        base_text: "–".into(),
        current_text: "–".into(),
        change_text: "–".into(),
        tolerance_text: String::new(),
    }
}

fn not_compared(mut row: Row, reason: String) -> Row {
    row.status = RowStatus::NotCompared;
    row.reason = Some(reason);
    row
}

fn judged(mut row: Row, regressed: bool) -> Row {
    row.regressed = regressed;
    row.status = if regressed {
        RowStatus::Regressed
    } else {
        RowStatus::Within
    };
    row
}

/// Achieved ÷ planned: a run of another length, or of another rate, compares fairly.
fn delivered_row(then: &[&Figures], now: &Figures, tolerances: &Tolerances) -> Row {
    let mut row = row(&now.scope, "delivered", "delivered", ChangeUnit::Relative);
    row.base_samples = then.iter().map(|f| f.requests).sum();
    row.current_samples = now.requests;
    row.tolerance_text = format!("may drop {:.0}%", tolerances.throughput * 100.0);
    let lowest = then
        .iter()
        .map(|f| f.delivered)
        .collect::<Option<Vec<f64>>>()
        .and_then(|shares| shares.into_iter().reduce(f64::min));
    let (Some(b), Some(c)) = (lowest, now.delivered) else {
        return not_compared(
            row,
            "no planned iterations on one side (a summary before schema 6)".into(),
        );
    };
    row.base = b;
    row.current = c;
    row.base_text = format!("{:.3} per planned", b);
    row.current_text = format!("{:.3} per planned", c);
    row.change = if b > 0.0 { c / b - 1.0 } else { 0.0 };
    row.change_text = format!("{:+.1}%", row.change * 100.0);
    judged(row, c < b * (1.0 - tolerances.throughput))
}

/// The error rate, in percentage points (held to the baselines' highest).
fn error_row(then: &[&Figures], now: &Figures, tolerances: &Tolerances) -> Row {
    let mut row = row(&now.scope, "error_rate_%", "error rate", ChangeUnit::Points);
    row.base_samples = then.iter().map(|f| f.requests).sum();
    row.current_samples = now.requests;
    row.tolerance_text = format!("may grow {} points", tolerances.error_points);
    if row.base_samples == 0 || now.requests == 0 {
        return not_compared(
            row.clone(),
            format!(
                "{} and {} requests: a rate needs requests on both sides",
                row.base_samples, now.requests
            ),
        );
    }
    row.base = then
        .iter()
        .filter(|f| f.requests > 0)
        .map(|f| f.error_rate * 100.0)
        .fold(0.0, f64::max);
    row.current = now.error_rate * 100.0;
    row.base_text = format!("{:.2}%", row.base);
    row.current_text = format!("{:.2}%", row.current);
    row.change = row.current - row.base;
    row.change_text = format!("{:+.2} pts", row.change);
    let regressed = row.change > tolerances.error_points;
    judged(row, regressed)
}

/// A percentile with its interval on each side: a regression only when the current
/// interval's low end is above the base's high end by more than the tolerance and the floor.
/// Several baselines: their envelope (lowest low, highest high, the median value).
fn latency_row(
    then: &[&Figures],
    now: &Figures,
    metric: &str,
    label: &str,
    q: f64,
    tolerances: &Tolerances,
) -> Row {
    let mut row = row(&now.scope, metric, label, ChangeUnit::Relative);
    row.tolerance_text = format!(
        "may grow {:.0}% and {:.1} ms beyond the base's interval",
        tolerances.latency * 100.0,
        tolerances.latency_floor_us / 1000.0
    );
    // A baseline whose generator was the bottleneck measured loadgen too: left out.
    let valid: Vec<&&Figures> = then.iter().filter(|f| !f.generator_bottleneck).collect();
    if valid.is_empty() {
        return not_compared(
            row,
            "the baseline's generator was the bottleneck: its latency includes loadgen's own \
             lateness"
                .into(),
        );
    }
    let bases: Option<Vec<&Histogram<u64>>> = valid.iter().map(|f| f.latency.as_ref()).collect();
    let (Some(bases), Some(current)) = (bases, &now.latency) else {
        return not_compared(
            row,
            "no latency histograms on one side (histograms/totals.hlog)".into(),
        );
    };
    row.base_samples = bases.iter().map(|h| h.len()).sum();
    row.current_samples = current.len();
    let bounded: Option<Vec<Bounded>> = bases.iter().map(|h| percentile(h, q)).collect();
    let (Some(b), Some(c)) = (bounded.map(|all| envelope(&all)), percentile(current, q)) else {
        let fewest = bases.iter().map(|h| h.len()).min().unwrap_or(0);
        return not_compared(
            row,
            format!(
                "{fewest} and {} successful responses: too few to bound {label} at {:.0}% confidence",
                current.len(),
                CONFIDENCE * 100.0
            ),
        );
    };
    row.base = b.value;
    row.current = c.value;
    row.base_interval = Some([b.low, b.high]);
    row.current_interval = Some([c.low, c.high]);
    row.base_text = with_interval(&b);
    row.current_text = with_interval(&c);
    row.change = if b.value > 0.0 {
        c.value / b.value - 1.0
    } else {
        0.0
    };
    row.change_text = format!("{:+.1}%", row.change * 100.0);
    let gap = c.low - b.high;
    judged(
        row,
        c.low > b.high * (1.0 + tolerances.latency) && gap > tolerances.latency_floor_us,
    )
}

/// Several baselines' intervals as one: the lowest low, the highest high, the median value.
fn envelope(all: &[Bounded]) -> Bounded {
    let mut values: Vec<f64> = all.iter().map(|b| b.value).collect();
    values.sort_by(f64::total_cmp);
    Bounded {
        value: values[values.len() / 2],
        low: all.iter().map(|b| b.low).fold(f64::INFINITY, f64::min),
        high: all.iter().map(|b| b.high).fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Fewer responses than this from an instance in a baseline and its share is not judged.
const INSTANCE_MIN_RESPONSES: u64 = 20;

/// The share of responses each instance of the baseline served: one that served in the
/// baseline and serves much less (or nothing) now is a regression of its own — a backend
/// that answers nothing while the others carry the load passes every latency objective.
fn instance_rows(then: &[&Figures], now: &Figures, tolerances: &Tolerances) -> Vec<Row> {
    let names: std::collections::BTreeSet<&String> = then
        .iter()
        .flat_map(|f| f.instances.keys())
        .filter(|name| name.as_str() != "(other)")
        .collect();
    let now_total: u64 = now.instances.values().sum();
    names
        .into_iter()
        .map(|name| {
            let mut row = row(
                &now.scope,
                &format!("served_by:{name}"),
                &format!("served by {name}"),
                ChangeUnit::Relative,
            );
            row.tolerance_text = format!(
                "its share may fall {:.0}%",
                tolerances.instance_share * 100.0
            );
            // The envelope: the baseline where it served the smallest share.
            let (served, total) = then
                .iter()
                .map(|f| {
                    (
                        f.instances.get(name).copied().unwrap_or(0),
                        f.instances.values().sum::<u64>(),
                    )
                })
                .min_by(|a, b| {
                    crate::record::summary::rate(a.0, a.1)
                        .total_cmp(&crate::record::summary::rate(b.0, b.1))
                })
                .unwrap_or((0, 0));
            let current = now.instances.get(name).copied().unwrap_or(0);
            row.base_samples = served;
            row.current_samples = current;
            if served < INSTANCE_MIN_RESPONSES || now_total == 0 {
                return not_compared(
                    row,
                    format!("{served} responses in the baseline: too few to judge its share"),
                );
            }
            row.base = crate::record::summary::rate(served, total);
            row.current = crate::record::summary::rate(current, now_total);
            row.base_text = format!("{served} of {total} ({:.1}%)", row.base * 100.0);
            row.current_text = format!("{current} of {now_total} ({:.1}%)", row.current * 100.0);
            row.change = row.current / row.base - 1.0;
            row.change_text = format!("{:+.1}%", row.change * 100.0);
            let regressed = row.current < row.base * (1.0 - tolerances.instance_share);
            judged(row, regressed)
        })
        .collect()
}

/// "1.5 ms [1.2–2.0]".
fn with_interval(bounded: &Bounded) -> String {
    let ms = |us: f64| us / 1000.0;
    format!(
        "{:.1} ms [{:.1}–{:.1}]",
        ms(bounded.value),
        ms(bounded.low),
        ms(bounded.high)
    )
}

/// The comparison written into a run directory (by `run --baseline`, or `compare` with the
/// run as CURRENT): the gate's verdict is part of that run's judged record.
pub(crate) fn read_comparison(run_dir: &Path) -> Option<Comparison> {
    let text = std::fs::read_to_string(run_dir.join("comparison.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes comparison.json and comparison.html into `out`.
/// The base and current runs' overall latency spectra on one chart (SVG), and the numbers
/// behind it (JSON for a non-executed data block); `None` when a run has no histogram.
pub(crate) fn spectra(base_dir: &Path, current_dir: &Path) -> Option<(String, String)> {
    let all = |dir: &Path| {
        crate::charts::spectrum::read(dir, &[])
            .ok()?
            .into_iter()
            .find(|s| s.scope == "all")
    };
    let (base, current) = (all(base_dir)?, all(current_dir)?);
    let svg = crate::charts::spectrum::chart(&[
        ("base".to_string(), &base),
        ("current".to_string(), &current),
    ])
    .ok()?;
    let json = serde_json::json!({ "base": base, "current": current })
        .to_string()
        .replace('<', "\\u003c");
    Some((svg, json))
}

pub(crate) fn write(
    out: &Path,
    comparison: &Comparison,
    spectra: Option<(String, String)>,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let json = serde_json::to_vec_pretty(comparison).map_err(|e| e.to_string())?;
    write_atomic(&out.join("comparison.json"), &json)
        .map_err(|e| format!("writing comparison.json: {e}"))?;
    let mut env = Environment::new();
    env.add_template("comparison.html", TEMPLATE)
        .expect("the comparison template parses");
    let html = env
        .get_template("comparison.html")
        .and_then(|t| {
            let (spectrum_svg, spectrum_data) = spectra.unzip();
            t.render(context! { c => Serde(comparison), spectrum_svg, spectrum_data })
        })
        .map_err(|e| format!("rendering comparison.html: {e}"))?;
    write_atomic(&out.join("comparison.html"), html.as_bytes())
        .map_err(|e| format!("writing comparison.html: {e}"))
}

pub(crate) fn table(comparison: &Comparison) -> String {
    let mut out = String::new();
    for note in &comparison.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "  {:<36} {:<10} {:>22} {:>22} {:>10}",
        "scope", "metric", "base", "current", "change"
    );
    for row in &comparison.rows {
        let mark = match row.status {
            RowStatus::Regressed => "✗",
            RowStatus::NotCompared => "·",
            RowStatus::Within => " ",
        };
        let verdict = match (&row.status, &row.reason) {
            (RowStatus::Regressed, _) => format!("  beyond tolerance ({})", row.tolerance_text),
            (RowStatus::NotCompared, Some(reason)) => format!("  not compared: {reason}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{mark} {:<36} {:<10} {:>22} {:>22} {:>10}{verdict}",
            row.scope, row.label, row.base_text, row.current_text, row.change_text,
        );
    }
    let not_compared = comparison
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::NotCompared)
        .count();
    if not_compared > 0 {
        let _ = writeln!(
            out,
            "{not_compared} row(s) not compared (marked ·): too little evidence to judge, never a pass"
        );
    }
    let _ = writeln!(
        out,
        "percentiles with their {:.0}% intervals [low–high]; a latency regression needs the current interval above the base's",
        comparison.confidence * 100.0
    );
    let _ = writeln!(
        out,
        "{}",
        if comparison.regressed {
            "regression beyond tolerance"
        } else {
            "no regression beyond tolerance"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::summary::Summary;

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/run-v7/summary.json")).unwrap()
    }

    fn summary(value: serde_json::Value) -> Summary {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_baseline_must_be_of_the_scenario_and_its_generator_not_the_bottleneck() {
        let dir = Path::new("base");
        let base = summary(fixture());
        assert!(check_baseline(&base, dir, "fixture-v7", false).is_ok());
        let other = check_baseline(&base, dir, "soak", false).unwrap_err();
        assert!(
            other.contains("a run of scenario `fixture-v7`, not `soak`"),
            "{other}"
        );
        assert!(check_baseline(&base, dir, "soak", true).is_ok());
        assert_eq!(generator_bottleneck(&base), None);
        // Arrivals dropped at the cap: the generator could not keep up.
        let mut dropped = fixture();
        dropped["generator"]["dropped"] = 3.into();
        assert!(generator_bottleneck(&summary(dropped)).is_some());
        // Late beyond the limit over enough arrivals, judged by today's rule.
        let mut late = fixture();
        late["generator"]["launched"] = 500.into();
        late["generator"]["lag_us"]["p99"] = 50_000.into();
        assert!(generator_bottleneck(&summary(late.clone())).is_some());
        // Schema 9 judges the p99's lower bound: a high point with a low bound is a few
        // stragglers, not a bottleneck.
        let mut stragglers = late.clone();
        stragglers["generator"]["lag_p99_low_us"] = 300.into();
        assert_eq!(generator_bottleneck(&summary(stragglers)), None);
        late["generator"]["launched"] = 40.into();
        assert_eq!(generator_bottleneck(&summary(late)), None);
    }
}
