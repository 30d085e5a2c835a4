//! Query objectives: an objective on the platform's own metrics, read from its Prometheus
//! (`[[slo]] query = "…", unit = "…", objective = "max < 250ms"`). Their grammar is their
//! own — `<aggregate> <op> <threshold>`, the aggregate over the window's saved points of
//! each series the query returns — and so is the evidence they need: a window has server
//! data only when the query's series were scraped in it (`selectors` names what to count).

use serde::{Deserialize, Serialize};

use super::Op;
use crate::plan::prometheus::ServerUnit;

/// How a window's points of one series become the value compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Max,
    Min,
    Mean,
    /// The window's latest point.
    Last,
    /// The latest point minus the first: how much a counter-like value grew.
    Increase,
}

impl Aggregate {
    pub const ALL: [Aggregate; 5] = [
        Aggregate::Max,
        Aggregate::Min,
        Aggregate::Mean,
        Aggregate::Last,
        Aggregate::Increase,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Max => "max",
            Aggregate::Min => "min",
            Aggregate::Mean => "mean",
            Aggregate::Last => "last",
            Aggregate::Increase => "increase",
        }
    }

    /// The aggregate of `values` (in time order); `None` without any.
    pub fn of(self, values: &[f64]) -> Option<f64> {
        let first = *values.first()?;
        let last = *values.last()?;
        Some(match self {
            Aggregate::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Aggregate::Min => values.iter().copied().fold(f64::MAX, f64::min),
            Aggregate::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Aggregate::Last => last,
            Aggregate::Increase => last - first,
        })
    }
}

/// A query objective, as a plan holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerObjective {
    pub query: String,
    pub unit: ServerUnit,
    pub aggregate: Aggregate,
    pub op: Op,
    /// In the unit's base: seconds, a ratio from 0 to 1, a count, bytes, per second.
    pub threshold: f64,
    /// The query's vector selectors, as PromQL writes them: what is counted to know whether
    /// a window has data.
    pub selectors: Vec<String>,
}

impl ServerObjective {
    /// The threshold the way a person reads it.
    pub fn threshold_text(&self) -> String {
        value_text(self.unit, self.threshold)
    }
}

/// A value in `unit` for people: "250ms", "0.5%", "12", "3.4/s".
pub(crate) fn value_text(unit: ServerUnit, value: f64) -> String {
    match unit {
        ServerUnit::Seconds if value.abs() < 1.0 => format!("{}ms", round(value * 1000.0)),
        ServerUnit::Seconds => format!("{}s", round(value)),
        ServerUnit::Ratio => format!("{}%", round(value * 100.0)),
        ServerUnit::PerSecond => format!("{}/s", round(value)),
        ServerUnit::Count | ServerUnit::Bytes => round(value).to_string(),
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `<aggregate> <op> <threshold>`: the threshold in the unit (`250ms` or `0.25` for seconds,
/// `1%` or `0.01` for a ratio, a number otherwise). The error names the part at fault.
pub(crate) fn parse_server_objective(
    text: &str,
    unit: ServerUnit,
) -> Result<(Aggregate, Op, f64), String> {
    let mut words = text.split_whitespace();
    let (Some(aggregate), Some(op), Some(threshold), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!(
            "a query objective reads `<aggregate> <op> <threshold>`, such as \"max < 250ms\" (aggregates: {})",
            aggregate_names()
        ));
    };
    let aggregate = Aggregate::ALL
        .into_iter()
        .find(|a| a.name() == aggregate)
        .ok_or_else(|| {
            format!(
                "unknown aggregate `{aggregate}`: one of {} (client metrics such as p99 or error_rate are for objectives without `query`)",
                aggregate_names()
            )
        })?;
    let op = match op {
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        other => return Err(format!("unknown comparison `{other}`: <, <=, > or >=")),
    };
    let threshold = threshold_in(threshold, unit)?;
    Ok((aggregate, op, threshold))
}

fn aggregate_names() -> String {
    Aggregate::ALL.map(Aggregate::name).join(", ")
}

fn threshold_in(text: &str, unit: ServerUnit) -> Result<f64, String> {
    let number = |t: &str| {
        t.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{text}` is not a threshold in {}", unit.name()))
    };
    match unit {
        ServerUnit::Seconds if text.ends_with('s') => crate::util::units::parse_duration(text)
            .map(|d| d.as_secs_f64())
            .map_err(|e| format!("`{text}`: {e}")),
        ServerUnit::Ratio if text.ends_with('%') => {
            number(&text[..text.len() - 1]).map(|p| p / 100.0)
        }
        ServerUnit::PerSecond => number(text.trim_end_matches("/s")),
        _ => number(text),
    }
}

/// The vector selectors a query reads (offsets and `@` dropped: what is counted is the
/// series as scraped), or why the query is not PromQL. `$__window` and `$__end` are read as
/// a one-second range and the query's evaluation time.
pub(crate) fn selectors(query: &str) -> Result<Vec<String>, String> {
    use promql_parser::parser::{Expr, parse};
    use promql_parser::util::{ExprVisitor, walk_expr};

    struct Collect(Vec<String>);
    impl ExprVisitor for Collect {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let selector = match expr {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(selector) = selector {
                let mut plain = selector.clone();
                plain.offset = None;
                plain.at = None;
                let text = plain.to_string();
                if !self.0.contains(&text) {
                    self.0.push(text);
                }
            }
            Ok(true)
        }
    }

    let expr = parse(&query.replace("$__window", "1s").replace("$__end", "0"))
        .map_err(|e| format!("not PromQL: {}", e.trim()))?;
    let mut collect = Collect(Vec::new());
    walk_expr(&mut collect, &expr)?;
    if collect.0.is_empty() {
        return Err(
            "the query reads no series: nothing could show the platform was scraped".into(),
        );
    }
    Ok(collect.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_read_in_the_unit() {
        let parse = |t, u| parse_server_objective(t, u).map(|(_, _, v)| v);
        assert_eq!(parse("max < 250ms", ServerUnit::Seconds), Ok(0.25));
        assert_eq!(parse("max < 0.25", ServerUnit::Seconds), Ok(0.25));
        assert_eq!(parse("mean <= 1%", ServerUnit::Ratio), Ok(0.01));
        assert_eq!(parse("last >= 3", ServerUnit::Count), Ok(3.0));
        assert_eq!(parse("min > 40/s", ServerUnit::PerSecond), Ok(40.0));
        assert!(
            parse("p99 < 250ms", ServerUnit::Seconds)
                .unwrap_err()
                .contains("aggregate")
        );
        assert!(
            parse("max = 3", ServerUnit::Count)
                .unwrap_err()
                .contains("comparison")
        );
        assert!(parse("max < fast", ServerUnit::Count).is_err());
        assert!(parse("max <250ms", ServerUnit::Seconds).is_err());
    }

    #[test]
    fn aggregates_read_the_points_in_order() {
        let points = [3.0, 1.0, 5.0, 4.0];
        assert_eq!(Aggregate::Max.of(&points), Some(5.0));
        assert_eq!(Aggregate::Min.of(&points), Some(1.0));
        assert_eq!(Aggregate::Mean.of(&points), Some(3.25));
        assert_eq!(Aggregate::Last.of(&points), Some(4.0));
        assert_eq!(Aggregate::Increase.of(&points), Some(1.0));
        assert_eq!(Aggregate::Max.of(&[]), None);
    }

    #[test]
    fn the_selectors_are_what_the_query_reads() {
        let found = selectors(
            r#"histogram_quantile(0.99, sum by (le) (rate(lms_http_request_duration_seconds_bucket{route="/api/members"}[5s] offset 1m))) / on() group_left sum(up{job="b"})"#,
        )
        .unwrap();
        assert_eq!(
            found,
            vec![
                r#"lms_http_request_duration_seconds_bucket{route="/api/members"}"#.to_string(),
                r#"up{job="b"}"#.to_string()
            ]
        );
        assert!(selectors("sum(rate(").unwrap_err().contains("not PromQL"));
        assert!(selectors("1 + 1").unwrap_err().contains("reads no series"));
        assert_eq!(
            selectors("rate(x[$__window])").unwrap(),
            vec!["x".to_string()]
        );
    }
}
