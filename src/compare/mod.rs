//! `loadgen compare BASE CURRENT` and `loadgen run --baseline DIR`: per step and overall,
//! the change in throughput, error rate and latency percentiles, judged against tolerances
//! whose defaults ignore run-to-run noise. Written as a terminal table, comparison.json and
//! comparison.html; a regression is exit 1 — the nightly gate.

use std::fmt::Write;
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};

use crate::output::summary::{SCHEMA_VERSION, Summary};
use crate::output::write_atomic;

const TEMPLATE: &str = include_str!("compare.html.j2");

/// When a change counts as a regression.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tolerances {
    /// A latency percentile may grow by this fraction…
    pub latency: f64,
    /// …and must grow by more than this many microseconds (noise floor on fast targets).
    pub latency_floor_us: f64,
    /// Throughput may drop by this fraction.
    pub throughput: f64,
    /// The error rate may grow by this many percentage points.
    pub error_points: f64,
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
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub base: String,
    pub current: String,
    pub tolerances: Tolerances,
    pub rows: Vec<Row>,
    pub regressed: bool,
}

/// One metric of one scope in both runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub scope: String,
    pub metric: String,
    pub base: f64,
    pub current: f64,
    /// Relative change (current / base − 1); 0 when the base is 0.
    pub change: f64,
    pub regressed: bool,
    /// For people: the metric's name and both values with their unit (ms, %, req/s).
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub base_text: String,
    #[serde(default)]
    pub current_text: String,
}

/// A metric's name for people and a value of it with its unit.
fn shown(metric: &str, value: f64) -> (&'static str, String) {
    match metric {
        "rps" => ("throughput", format!("{value:.1} req/s")),
        "error_rate_%" => ("error rate", format!("{value:.2}%")),
        "p50_us" => ("p50", format!("{:.1} ms", value / 1000.0)),
        "p95_us" => ("p95", format!("{:.1} ms", value / 1000.0)),
        "p99_us" => ("p99", format!("{:.1} ms", value / 1000.0)),
        _ => ("?", format!("{value}")),
    }
}

struct Figures {
    scope: String,
    rps: f64,
    error_rate: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

fn figures(summary: &Summary) -> Vec<Figures> {
    let t = &summary.totals;
    let mut out = vec![Figures {
        scope: "all".into(),
        rps: t.rps,
        error_rate: t.error_rate,
        p50: t.latency_us.p50 as f64,
        p95: t.latency_us.p95 as f64,
        p99: t.latency_us.p99 as f64,
    }];
    let seconds = summary.duration_s.max(1e-9);
    for journey in &summary.journeys {
        for step in &journey.steps {
            out.push(Figures {
                scope: format!("{}/{}", journey.name, step.name),
                rps: step.requests as f64 / seconds,
                error_rate: step.error_rate,
                p50: step.latency_us.p50 as f64,
                p95: step.latency_us.p95 as f64,
                p99: step.latency_us.p99 as f64,
            });
        }
    }
    out
}

pub fn compare(
    base: &Summary,
    current: &Summary,
    base_name: &str,
    current_name: &str,
    tolerances: Tolerances,
) -> Comparison {
    let base_figures = figures(base);
    let mut rows = Vec::new();
    for now in figures(current) {
        let Some(then) = base_figures.iter().find(|b| b.scope == now.scope) else {
            continue;
        };
        let mut row = |metric: &str, base: f64, current: f64, regressed: bool| {
            let (label, base_text) = shown(metric, base);
            rows.push(Row {
                scope: now.scope.clone(),
                metric: metric.into(),
                label: label.into(),
                base_text,
                current_text: shown(metric, current).1,
                base,
                current,
                change: if base > 0.0 {
                    current / base - 1.0
                } else {
                    0.0
                },
                regressed,
            });
        };
        row(
            "rps",
            then.rps,
            now.rps,
            now.rps < then.rps * (1.0 - tolerances.throughput),
        );
        row(
            "error_rate_%",
            then.error_rate * 100.0,
            now.error_rate * 100.0,
            (now.error_rate - then.error_rate) * 100.0 > tolerances.error_points,
        );
        for (metric, b, c) in [
            ("p50_us", then.p50, now.p50),
            ("p95_us", then.p95, now.p95),
            ("p99_us", then.p99, now.p99),
        ] {
            let regressed =
                c > b * (1.0 + tolerances.latency) && c - b > tolerances.latency_floor_us;
            row(metric, b, c, regressed);
        }
    }
    let regressed = rows.iter().any(|r| r.regressed);
    Comparison {
        base: base_name.into(),
        current: current_name.into(),
        tolerances,
        rows,
        regressed,
    }
}

/// Reads a run directory's summary.json; a summary of another schema version is refused
/// with what to do about it (its figures mean something else: a comparison would lie).
pub fn read_summary(run_dir: &Path) -> Result<Summary, String> {
    let path = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("schema_version").and_then(|v| v.as_u64()));
    match version {
        // Versions 4 to 8 only added to 3 (4: redirect counts, HTTP/2 and redirect error
        // classes; 5: abandoned requests, verification of acknowledged writes; 6: the
        // iteration accounting and the run's verdict; 7: whether the certificate was
        // verified; 8: failure samples, the host's CPU): an older summary reads as a run
        // with none of them.
        Some(v) if (3..=u64::from(SCHEMA_VERSION)).contains(&v) => {}
        Some(v) => {
            return Err(format!(
                "{} has summary schema version {v}, this loadgen writes and reads version {SCHEMA_VERSION}: \
                 its figures are not comparable (since version 3 requests are judged by intended start \
                 and latency is of successful responses only). Re-baseline: run the baseline scenario \
                 again with this loadgen and compare against that run.",
                path.display()
            ));
        }
        None => {}
    }
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a loadgen summary of this version: {e}",
            path.display()
        )
    })
}

/// Writes comparison.json and comparison.html into `out`.
/// The base and current runs' overall latency spectra on one chart (SVG), and the numbers
/// behind it (JSON for a non-executed data block); `None` when a run has no histogram.
pub fn spectra(base_dir: &Path, current_dir: &Path) -> Option<(String, String)> {
    let all = |dir: &Path| {
        crate::report::spectrum::read(dir, &[])
            .ok()?
            .into_iter()
            .find(|s| s.scope == "all")
    };
    let (base, current) = (all(base_dir)?, all(current_dir)?);
    let svg = crate::report::spectrum::chart(&[
        ("base".to_string(), &base),
        ("current".to_string(), &current),
    ])
    .ok()?;
    let json = serde_json::json!({ "base": base, "current": current })
        .to_string()
        .replace('<', "\\u003c");
    Some((svg, json))
}

pub fn write(
    out: &Path,
    comparison: &Comparison,
    spectra: Option<(String, String)>,
) -> Result<(), String> {
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

pub fn table(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<40} {:<11} {:>14} {:>14} {:>8}",
        "scope", "metric", "base", "current", "change"
    );
    for row in &comparison.rows {
        let _ = writeln!(
            out,
            "{} {:<40} {:<11} {:>14} {:>14} {:>+7.1}%{}",
            if row.regressed { "✗" } else { " " },
            row.scope,
            row.label,
            row.base_text,
            row.current_text,
            row.change * 100.0,
            if row.regressed {
                "  beyond tolerance"
            } else {
                ""
            }
        );
    }
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
