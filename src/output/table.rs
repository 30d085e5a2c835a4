//! The final table printed at the end of a run.

use std::fmt::Write;

use super::summary::Summary;

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
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
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "journey / step", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
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
        let _ = writeln!(
            out,
            "{:<40} {:>9} {:>8}   ({iterations})",
            clip(&journey.name, 40),
            journey.started,
            journey.failed,
        );
        for step in &journey.steps {
            let l = &step.latency_us;
            let _ = writeln!(
                out,
                "  {:<38} {:>9} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                clip(&step.name, 38),
                step.requests,
                step.errors,
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                ms(l.max)
            );
        }
    }
    let l = &t.latency_us;
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        "all",
        t.requests,
        t.errors,
        ms(l.p50),
        ms(l.p95),
        ms(l.p99),
        ms(l.max)
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
    if let Some(warning) = &summary.generator.warning {
        let _ = writeln!(out, "WARNING: {warning}");
    }
    out
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
