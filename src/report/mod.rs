//! Renders a judged run directory: `junit.xml` and one self-contained `report.html`, from
//! summary.json's verdicts and the run's saved data. Judges nothing (`judge/` does). Used at
//! the end of `loadgen run` and, unchanged, by `loadgen report RUN_DIR`.

pub(crate) mod killed;
pub(crate) mod not_started;

use std::path::Path;

use minijinja::value::Serde;
use minijinja::{Environment, Value, context};

use crate::chaos::runner::OccurrenceStatus;
use crate::charts::{self, spectrum};
use crate::compare::{Comparison, RowStatus};
use crate::judge::Judged;
use crate::judge::analysis::windows::{Interval, fault_intervals, happened};
use crate::judge::exit::{self, ExitCode};
use crate::record::data::ChartPoint;
use crate::record::server::ServerData;
use crate::record::summary::Summary;
use crate::record::verdicts::VerdictStatus;
use crate::util::atomic::write_atomic;

const HTML_TEMPLATE: &str = include_str!("report.html.j2");
const JUNIT_TEMPLATE: &str = include_str!("junit.xml.j2");

/// Writes the judged record's renderings: junit.xml and report.html (with the baseline
/// comparison, when the run directory holds one). Judges nothing: `judge::judge` has.
pub(crate) fn render(run_dir: &Path, summary: &Summary, judged: &Judged) -> Result<(), String> {
    // A baseline comparison in the run directory is part of the judged record.
    let comparison = crate::compare::read_comparison(run_dir);
    let junit = render_junit(summary, comparison.as_ref())?;
    write_atomic(&run_dir.join("junit.xml"), junit.as_bytes())
        .map_err(|e| format!("writing junit.xml: {e}"))?;
    let html = render_html(
        run_dir,
        summary,
        comparison.as_ref(),
        &judged.chart,
        judged.chart_width,
    )?;
    write_atomic(&run_dir.join("report.html"), html.as_bytes())
        .map_err(|e| format!("writing report.html: {e}"))?;
    Ok(())
}

/// A spectrum with its legend name.
fn named(s: &spectrum::Spectrum) -> (String, &spectrum::Spectrum) {
    (s.scope.clone(), s)
}

/// The spectrum in charts of at most eight lines (the palette's size): one chart, overall
/// and every step, when they fit; else small multiples, a chart per journey (per seven of
/// its steps), each with the overall line for reference. Every step is drawn; none is
/// dropped for want of a colour. (title, svg); no title when there is one chart.
fn spectrum_charts(
    summary: &Summary,
    spectra: &[spectrum::Spectrum],
) -> Result<Vec<(String, String)>, String> {
    let overall: Vec<_> = spectra
        .iter()
        .filter(|s| s.scope == "all")
        .map(named)
        .collect();
    if spectra.is_empty() {
        return Ok(Vec::new());
    }
    if spectra.len() <= charts::OKABE_ITO.len() {
        let all: Vec<_> = spectra.iter().map(named).collect();
        return Ok(vec![(String::new(), spectrum::chart(&all)?)]);
    }
    // Each chart: the overall line, then as many steps as colours are left.
    let per_chart = charts::OKABE_ITO.len() - overall.len();
    let mut out = Vec::new();
    for journey in &summary.journeys {
        let scopes: Vec<String> = journey
            .steps
            .iter()
            .map(|s| format!("{}/{}", journey.name, s.name))
            .collect();
        let steps: Vec<_> = spectra
            .iter()
            .filter(|s| scopes.contains(&s.scope))
            .map(named)
            .collect();
        let parts = steps.len().div_ceil(per_chart);
        for (part, chunk) in steps.chunks(per_chart).enumerate() {
            let lines: Vec<_> = overall
                .iter()
                .cloned()
                .chain(chunk.iter().cloned())
                .collect();
            let title = if parts > 1 {
                format!("{} ({} of {parts})", journey.name, part + 1)
            } else {
                journey.name.clone()
            };
            out.push((title, spectrum::chart(&lines)?));
        }
    }
    Ok(out)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Auto-escaping follows the template name: .html and .xml escape every value.
    env.add_template("report.html", HTML_TEMPLATE)
        .expect("the report template parses");
    env.add_template("junit.xml", JUNIT_TEMPLATE)
        .expect("the JUnit template parses");
    env.add_function("ms", |us: Option<u64>| {
        us.map_or("–".to_string(), |us| format!("{:.2}", us as f64 / 1000.0))
    });
    env.add_function("secs", |ms: Option<u64>| {
        ms.map_or("–".to_string(), |ms| {
            format!("{:.1} s", ms as f64 / 1000.0)
        })
    });
    env
}

fn render_junit(summary: &Summary, comparison: Option<&Comparison>) -> Result<String, String> {
    let env = environment();
    let occurrences = &summary.faults.occurrences;
    let verify = summary.verify.as_ref();
    let verify_cases = verify.map_or(0, |v| v.kinds.len() + v.counts.len() + v.invariants.len());
    let verify_failures = verify.map_or(0, |v| {
        v.kinds.iter().filter(|k| k.fails_run()).count()
            + v.counts
                .iter()
                .filter(|c| c.status != VerdictStatus::Pass)
                .count()
            + v.invariants
                .iter()
                .filter(|i| i.status != VerdictStatus::Pass)
                .count()
    });
    let failures = summary.slos.iter().filter(|v| v.fails_run()).count()
        + summary.fault_problems.len()
        + verify_failures;
    let skipped = summary
        .slos
        .iter()
        .filter(|v| v.status != VerdictStatus::Pass && !v.fails_run())
        .count()
        + occurrences
            .iter()
            .filter(|o| o.status == OccurrenceStatus::NotRun && !o.required)
            .count()
        + verify.map_or(0, |v| {
            v.kinds
                .iter()
                .filter(|k| k.status == VerdictStatus::NoData && !k.fails_run())
                .count()
        });
    // The baseline gate: a case per compared scope and metric, the same names every night.
    let gate_rows = comparison.map_or(&[][..], |c| c.rows.as_slice());
    let gate_failures = gate_rows.iter().filter(|r| r.regressed).count();
    let gate_skipped = gate_rows
        .iter()
        .filter(|r| r.status == RowStatus::NotCompared)
        .count();
    // The run's outcome is a test case of its own, decided by the one exit-code function:
    // an interrupted run or an unrecovered fault fails the suite even if every verdict passed.
    let (exit_code, outcome_reasons) =
        exit::for_run(summary, comparison.is_some_and(|c| c.regressed));
    let tests = summary.slos.len() + occurrences.len() + verify_cases + gate_rows.len() + 1;
    // The run's case is skipped when there is nothing to judge and nothing failed.
    let skipped = skipped
        + gate_skipped
        + usize::from(exit_code == ExitCode::Ok && summary.slo_specs.is_empty());
    let failures = failures + gate_failures + usize::from(exit_code != ExitCode::Ok);
    env.get_template("junit.xml")
        .and_then(|t| {
            t.render(context! {
                s => Value::from(Serde(summary)),
                failures,
                skipped,
                tests,
                exit_code => exit_code.code(),
                outcome_reasons,
                gate => comparison.map(Serde),
                iterations_line => summary.iterations_line(),
            })
        })
        .map_err(|e| format!("rendering junit.xml: {e}"))
}

/// The judged objective with the smallest margin (the closest to failing, or the furthest
/// past its threshold): (headline, name, window, what was measured, how far from the
/// threshold in words).
fn closest_objective(summary: &Summary) -> Option<(String, String, String, String, String)> {
    summary
        .slos
        .iter()
        .flat_map(|v| {
            v.measured.iter().filter_map(move |m| {
                m.margin.map(|margin| {
                    (
                        v.name.clone(),
                        v.window.clone(),
                        format!(
                            "{} {} against {} {}",
                            m.metric, m.value_text, m.op, m.threshold
                        ),
                        margin,
                        m.op.clone(),
                    )
                })
            })
        })
        .min_by(|a, b| a.3.total_cmp(&b.3))
        .map(|(name, window, measured, margin, op)| {
            let headline = if margin >= 0.0 {
                "Closest to its threshold"
            } else {
                "Furthest past its threshold"
            };
            (
                headline.to_string(),
                name,
                window,
                measured,
                margin_text(&op, margin),
            )
        })
}

/// A margin in words, never a signed number a reader must decode: `margin` is relative to
/// the threshold, positive inside the objective (below an upper limit, above a floor),
/// negative past it.
pub(crate) fn margin_text(op: &str, margin: f64) -> String {
    let upper = op.starts_with('<');
    let percent = format!("{:.1} %", margin.abs() * 100.0);
    match (margin >= 0.0, upper) {
        (true, true) => format!("{percent} below the limit"),
        (true, false) => format!("{percent} above the floor"),
        (false, true) => format!("{percent} over the limit"),
        (false, false) => format!("{percent} under the floor"),
    }
}

/// One chart per `[[observe]]` query: (name, unit, query, svg or none, why none, series
/// left out of the chart).
type ObservedChart = (
    String,
    &'static str,
    String,
    Option<String>,
    Option<String>,
    usize,
);

fn observed_charts(
    server: Option<&ServerData>,
    faults: &[Interval],
) -> Result<Vec<ObservedChart>, String> {
    let Some(server) = server else {
        return Ok(Vec::new());
    };
    server
        .observe
        .iter()
        .map(|o| {
            let svg = charts::observed::observed(o, faults)?;
            let why = match (&o.error, &svg) {
                (Some(error), _) => Some(error.clone()),
                (None, None) => Some("the query returned no series over the run".to_string()),
                (None, Some(_)) => None,
            };
            Ok((
                o.name.clone(),
                o.unit.name(),
                o.query.clone(),
                svg,
                why,
                o.series.len().saturating_sub(charts::observed::MOST_SERIES),
            ))
        })
        .collect()
}

/// The numbers behind every time chart, as JSON for a `<script type="application/json">`
/// block (never executed): what tests and reviewers check the pictures against. `<` is
/// escaped, so no instance name can close the block.
fn chart_data(
    chart: &[ChartPoint],
    chart_width: u64,
    spectra: &[spectrum::Spectrum],
    server: Option<&ServerData>,
    faults: &[Interval],
) -> String {
    let bands: Vec<serde_json::Value> = faults
        .iter()
        .map(|f| {
            serde_json::json!({
                "fault": f.fault,
                "occurrence": f.occurrence,
                "start_s": f.start_ms as f64 / 1000.0,
                "end_s": f.end_ms as f64 / 1000.0,
            })
        })
        .collect();
    let data = serde_json::json!({
        "seconds_per_point": chart_width,
        "points": chart,
        "spectra": spectra,
        "fault_bands": bands,
        "observe": server.map(|s| &s.observe),
    });
    data.to_string().replace('<', "\\u003c")
}

fn render_html(
    run_dir: &Path,
    summary: &Summary,
    comparison: Option<&Comparison>,
    chart: &[ChartPoint],
    chart_width: u64,
) -> Result<String, String> {
    let faults = happened(&fault_intervals(
        &summary.faults.occurrences,
        (summary.duration_s * 1000.0) as u64,
    ));
    let throughput_svg = charts::throughput(chart, &faults)?;
    let latency_svg = charts::latency(chart, &faults)?;
    let instances_svg = charts::instances(chart, &faults)?;
    let generator_svg = charts::generator(chart, &faults)?;
    let step_names: Vec<String> = summary
        .journeys
        .iter()
        .flat_map(|j| {
            j.steps
                .iter()
                .map(move |s| format!("{}/{}", j.name, s.name))
        })
        .collect();
    let spectra = spectrum::read(run_dir, &step_names)?;
    let spectrum_charts = spectrum_charts(summary, &spectra)?;
    let server = crate::record::server::read(run_dir)?;
    let observed_charts = observed_charts(server.as_ref(), &faults)?;
    let chart_data = chart_data(chart, chart_width, &spectra, server.as_ref(), &faults);
    // One latency chart per journey, its steps' lines (the report folds them away).
    let mut index = 0;
    let mut journey_charts = Vec::new();
    for journey in &summary.journeys {
        let steps: Vec<(usize, String)> = journey
            .steps
            .iter()
            .map(|s| {
                index += 1;
                (index - 1, s.name.clone())
            })
            .collect();
        journey_charts.push((journey.name.clone(), charts::steps(chart, &steps, &faults)?));
    }
    let closest = closest_objective(summary);
    let scenario_text = std::fs::read_to_string(run_dir.join("scenario.toml")).unwrap_or_default();
    // The badge is the exit code's verdict (`exit::for_run`), not a second opinion.
    let (exit_code, outcome_reasons) =
        exit::for_run(summary, comparison.is_some_and(|c| c.regressed));
    let (verdict, badge) = match (exit_code == ExitCode::Ok, summary.slo_specs.is_empty()) {
        (true, true) => ("NO OBJECTIVES", "none"),
        (true, false) => ("PASS", "pass"),
        (false, _) => ("FAIL", "fail"),
    };
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    environment()
        .get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                s => Value::from(Serde(summary)),
                gate => comparison.map(Serde),
                verdict,
                badge,
                tls_notice => (summary.tls_verified == Some(false))
                    .then_some(crate::engine::tls::UNVERIFIED_NOTICE),
                iterations_line => summary.iterations_line(),
                exit_code => exit_code.code(),
                outcome_reasons,
                faults => Value::from(Serde(&faults)),
                throughput_svg,
                latency_svg,
                instances_svg,
                generator_svg,
                chart_data,
                spectrum_charts,
                journey_charts,
                observed_charts,
                closest,
                chart_width,
                scenario_text,
                host,
            })
        })
        .map_err(|e| format!("rendering report.html: {e}"))
}

#[cfg(test)]
mod margin_tests {
    use super::margin_text;

    #[test]
    fn a_margin_reads_the_same_whatever_its_sign() {
        // error_rate 30 % against < 1 %: (1 − 30) / 1.
        assert_eq!(margin_text("<", -29.0), "2900.0 % over the limit");
        assert_eq!(margin_text("<=", 0.25), "25.0 % below the limit");
        assert_eq!(margin_text(">=", 0.001), "0.1 % above the floor");
        assert_eq!(margin_text(">", -0.5), "50.0 % under the floor");
    }
}
