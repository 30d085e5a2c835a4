//! The objective grammar (docs/slo.md):
//!
//! ```text
//! objective := condition ( "and" condition )*
//! condition := metric op value
//! metric    := p50 | p90 | p95 | p99 | p99.9 | max | mean | error_rate | availability | rps
//! op        := < | <= | > | >=
//! value     := duration (latency metrics) | percentage (error_rate, availability) | rate (rps)
//! ```

use super::{Condition, Metric, Op};
use crate::scenario::units::{parse_duration, parse_percent, parse_rate};

/// Parses an objective; an error carries the byte range of the offending part.
pub fn parse_objective(text: &str) -> Result<Vec<Condition>, (std::ops::Range<usize>, String)> {
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
    let threshold = if metric.is_latency() {
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
    })
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
}
