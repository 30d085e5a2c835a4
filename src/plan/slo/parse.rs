//! The objective grammar (docs/slo.md):
//!
//! ```text
//! objective := condition ( "and" condition )*
//! condition := metric [ "drift" ] op value
//! metric    := p50 | p90 | p95 | p99 | p99.9 | max | mean | error_rate | availability | rps
//! op        := < | <= | > | >=
//! value     := duration (latency metrics) | percentage (error_rate, availability) | rate (rps)
//!            | percentage (a drift: the change from the window's first third to its last)
//! ```

use super::{Condition, Metric, Op};
use crate::util::units::{parse_duration, parse_percent, parse_rate};

/// Parses an objective; an error carries the byte range of the offending part.
pub(crate) fn parse_objective(
    text: &str,
) -> Result<Vec<Condition>, (std::ops::Range<usize>, String)> {
    let mut conditions = Vec::new();
    let mut offset = 0;
    for part in text.split(" and ") {
        let start = offset + (part.len() - part.trim_start().len());
        conditions.push(
            parse_condition(part.trim()).map_err(|(r, m)| (start + r.start..start + r.end, m))?,
        );
        offset += part.len() + " and ".len();
    }
    Ok(conditions)
}

fn parse_condition(text: &str) -> Result<Condition, (std::ops::Range<usize>, String)> {
    let op_at = text.find(['<', '>']).ok_or_else(|| {
        (
            0..text.len(),
            format!("`{text}` has no comparison (write e.g. \"p99 < 50ms\")"),
        )
    })?;
    let metric_text = text[..op_at].trim();
    let (metric_text, drift) = match metric_text.strip_suffix("drift") {
        Some(metric) if metric.ends_with(char::is_whitespace) => (metric.trim_end(), true),
        _ => (metric_text, false),
    };
    let (op, op_len) = match &text[op_at..] {
        t if t.starts_with("<=") => (Op::Le, 2),
        t if t.starts_with(">=") => (Op::Ge, 2),
        t if t.starts_with('<') => (Op::Lt, 1),
        _ => (Op::Gt, 1),
    };
    let value_start = op_at + op_len;
    let raw_value = &text[value_start..];
    let value = raw_value.trim();
    let value_range = value_start + (raw_value.len() - raw_value.trim_start().len())..text.len();
    let metric = match metric_text {
        "p50" => Metric::P50,
        "p90" => Metric::P90,
        "p95" => Metric::P95,
        "p99" => Metric::P99,
        "p99.9" | "p999" => Metric::P999,
        "max" => Metric::Max,
        "mean" => Metric::Mean,
        "error_rate" => Metric::ErrorRate,
        "availability" => Metric::Availability,
        "rps" => Metric::Rps,
        other => {
            return Err((
                0..op_at,
                format!(
                    "unknown metric `{other}` (expected p50, p90, p95, p99, p99.9, max, mean, error_rate, availability or rps)"
                ),
            ));
        }
    };
    let threshold = if drift {
        parse_signed_percent(value)
    } else if metric.is_latency() {
        parse_duration(value).map(|d| d.as_secs_f64() * 1e6)
    } else if metric == Metric::Rps {
        parse_rate(value)
    } else {
        parse_percent(value)
    }
    .map_err(|m| (value_range, format!("{}: {m}", metric.name())))?;
    Ok(Condition {
        metric,
        op,
        threshold,
        drift,
    })
}

/// A drift's threshold: a percentage that may be negative ("-10%": throughput may fall
/// at most a tenth).
fn parse_signed_percent(text: &str) -> Result<f64, String> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    let number = rest.strip_suffix('%').ok_or_else(|| {
        format!("a drift is a percentage such as \"20%\" (write it with its % sign), not `{text}`")
    })?;
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n <= 1e6)
        .map(|n| sign * n)
        .ok_or_else(|| format!("`{text}` is not a percentage such as \"20%\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions_with_units() {
        let c = parse_objective("p99 < 50ms and error_rate <= 1% and rps >= 500/s").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            (c[0].metric, c[0].op, c[0].threshold),
            (Metric::P99, Op::Lt, 50_000.0)
        );
        assert_eq!(
            (c[1].metric, c[1].op, c[1].threshold),
            (Metric::ErrorRate, Op::Le, 1.0)
        );
        assert_eq!((c[2].metric, c[2].threshold), (Metric::Rps, 500.0));
        assert_eq!(
            parse_objective("availability >= 99.9%").unwrap()[0].threshold,
            99.9
        );
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let (range, message) = parse_objective("p99 < 50ms and p42 < 1s").unwrap_err();
        assert_eq!(range, 15..19);
        assert!(message.contains("unknown metric `p42`"), "{message}");
        let (range, message) = parse_objective("p99 < 5").unwrap_err();
        assert_eq!(range, 6..7);
        assert!(message.contains("no unit"), "{message}");
        assert!(
            parse_objective("error_rate < 1")
                .unwrap_err()
                .1
                .contains("% sign")
        );
        assert!(
            parse_objective("p99 50ms")
                .unwrap_err()
                .1
                .contains("no comparison")
        );
    }

    #[test]
    fn a_drift_is_a_signed_percentage_of_a_metric() {
        let conditions = parse_objective("p99 drift < 20% and rps drift > -10%").unwrap();
        assert!(conditions.iter().all(|c| c.drift));
        assert_eq!(conditions[0].metric, Metric::P99);
        assert_eq!(conditions[0].threshold, 20.0);
        assert_eq!(conditions[1].metric, Metric::Rps);
        assert_eq!(conditions[1].threshold, -10.0);
        assert_eq!(conditions[0].threshold_text(), "20%");
        let (range, message) = parse_objective("p99 drift < 20").unwrap_err();
        assert!(message.contains("with its % sign"), "{message}");
        assert_eq!(range, 12..14);
        // "drift" alone is no metric.
        assert!(parse_objective("drift < 20%").is_err());
        assert!(!parse_objective("p99 < 20ms").unwrap()[0].drift);
    }
}
