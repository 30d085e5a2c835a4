//! The final table printed at the end of a run.

use std::fmt::Write;

use crate::metrics::Percentiles;
use crate::record::summary::Summary;

pub(crate) fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let t = &summary.totals;
    headline(summary, &mut out);
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "journey / step", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    journey_rows(summary, &mut out);
    let [p50, p95, p99, max] = latency_cells(&t.latency_us, t.requests, t.errors);
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>8} {p50:>9} {p95:>9} {p99:>9} {max:>9}",
        "all", t.requests, t.errors,
    );
    if !t.errors_by_class.is_empty() {
        let classes: Vec<String> = t
            .errors_by_class
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "errors by class: {}", classes.join(", "));
        let f = &t.failed_latency_us;
        let _ = writeln!(
            out,
            "latency above is of successful responses; failed requests: p50 {:.2} ms, p99 {:.2} ms",
            ms(f.p50),
            ms(f.p99)
        );
    }
    let samples = failure_samples(summary);
    if !samples.is_empty() {
        let _ = writeln!(
            out,
            "why requests failed (a few distinct per step and class; all in summary.json):"
        );
        for line in samples {
            let _ = writeln!(out, "  {line}");
        }
    }
    if let Some(warning) = &summary.generator.warning {
        let _ = writeln!(out, "WARNING: {warning}");
    }
    out
}

/// The run in one line (requests, rate, errors, whether it is complete), then its
/// iterations.
fn headline(summary: &Summary, out: &mut String) {
    let t = &summary.totals;
    let _ = writeln!(
        out,
        "{} — {} requests in {:.1}s ({:.0} req/s){}, {} errors{} ({:.2}% failed){}",
        summary.scenario.name,
        t.requests,
        summary.duration_s,
        t.rps,
        if t.retried_unprocessed > 0 {
            format!(
                ", {} sent again (the server had not processed them)",
                t.retried_unprocessed
            )
        } else {
            String::new()
        },
        t.errors,
        if t.dropped > 0 {
            format!(", {} arrivals dropped at the in-flight cap", t.dropped)
        } else {
            String::new()
        },
        t.error_rate * 100.0,
        if summary.complete {
            ""
        } else {
            "  [INCOMPLETE RUN]"
        }
    );
    let not_delivered = summary.delivery.as_ref().is_some_and(|d| !d.delivered);
    let _ = writeln!(
        out,
        "{}{}",
        summary.iterations_line(),
        if not_delivered {
            "  [LOAD NOT DELIVERED]"
        } else {
            ""
        }
    );
}

/// A row per journey (its iterations in words), then a row per step.
fn journey_rows(summary: &Summary, out: &mut String) {
    for journey in &summary.journeys {
        let mut iterations = format!(
            "{} of {} started, {} completed, {} failed",
            journey.started, journey.planned, journey.completed, journey.failed
        );
        if journey.interrupted > 0 {
            iterations.push_str(&format!(", {} interrupted", journey.interrupted));
        }
        for (reason, count) in &journey.not_started {
            iterations.push_str(&format!(", {count} not started ({reason})"));
        }
        if journey.dropped > 0 {
            iterations.push_str(&format!(", {} dropped", journey.dropped));
        }
        // A journey row counts iterations, not requests: said in words, not put under
        // the requests and errors columns its steps fill.
        let _ = writeln!(
            out,
            "{:<40} iterations: {iterations}",
            clip(&journey.name, 40)
        );
        for step in &journey.steps {
            let [p50, p95, p99, max] = latency_cells(&step.latency_us, step.requests, step.errors);
            let _ = writeln!(
                out,
                "  {:<38} {:>9} {:>8} {p50:>9} {p95:>9} {p99:>9} {max:>9}",
                clip(&step.name, 38),
                step.requests,
                step.errors,
            );
        }
    }
}

/// The terminal's width for one sample: the rest is in summary.json and the report.
const SAMPLE_CHARS: usize = 100;

/// One line per failure sample: step, class, status, detail on one line.
fn failure_samples(summary: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    for journey in &summary.journeys {
        for step in &journey.steps {
            for (class, samples) in &step.failure_samples {
                for sample in samples {
                    let status = sample.status.map_or(String::new(), |s| format!(" {s}"));
                    let detail: String = sample
                        .detail
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    let detail = if detail.is_empty() {
                        "(no body)".to_string()
                    } else {
                        clip(&detail, SAMPLE_CHARS)
                    };
                    lines.push(format!(
                        "{}/{} {class}{status}: {detail}",
                        journey.name, step.name
                    ));
                }
            }
        }
    }
    lines
}

/// p50, p95, p99 and max of the successful responses in ms, or "–" where there were none
/// (as the report shows it): a 0.00 would read as instant answers.
fn latency_cells(l: &Percentiles, requests: u64, errors: u64) -> [String; 4] {
    if requests <= errors {
        return std::array::from_fn(|_| "–".to_string());
    }
    [l.p50, l.p95, l.p99, l.max].map(|us| format!("{:.2}", ms(us)))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut clipped: String = text.chars().take(width - 1).collect();
        clipped.push('…');
        clipped
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn a_step_without_a_success_shows_dashes_not_zeros() {
        let none = latency_cells(&Percentiles::default(), 5, 5);
        assert_eq!(none, ["–", "–", "–", "–"].map(String::from));
        let some = Percentiles {
            p50: 1_500,
            max: 9_000,
            ..Percentiles::default()
        };
        assert_eq!(latency_cells(&some, 5, 4)[0], "1.50");
        assert_eq!(latency_cells(&some, 5, 4)[3], "9.00");
    }
}
