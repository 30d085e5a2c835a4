//! Service-level objectives as a plan holds them: parsed once from the scenario into typed
//! conditions (the grammar is in docs/slo.md); `slo` and `analysis` evaluate them over
//! windows of the run.

mod parse;
pub(crate) mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use parse::parse_objective;

/// One `[[slo]]` of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloSpec {
    pub name: String,
    /// The objective as written, for reports.
    pub objective: String,
    pub conditions: Vec<Condition>,
    pub window: Window,
    /// What the objective is judged on.
    pub scope: Scope,
    /// A recovery objective: the conditions must hold again within this time of each
    /// fault's start or end.
    pub recovery: Option<Recovery>,
    /// Stop the run when the objective has failed for this long without a break (judged
    /// each second on that second's data); `None`: never abort.
    #[serde(default)]
    pub abort_after: Option<Duration>,
    /// What a window without data means for the run.
    #[serde(default)]
    pub on_no_data: OnNoData,
    /// A query objective: judged on the platform's own metrics (`conditions` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<server::ServerObjective>,
}

/// What an objective is judged on: every request of the run, one journey's, or one step's.
/// Written (in scenarios, plan.json and summaries) as `all`, `journey` or `journey/step`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Scope {
    All,
    Journey(String),
    Step { journey: String, step: String },
}

impl Scope {
    /// The scope a text names: `all`, `journey`, or `journey/step` (split at the first `/`).
    pub fn parse(text: &str) -> Scope {
        match text.split_once('/') {
            _ if text == "all" => Scope::All,
            Some((journey, step)) => Scope::Step {
                journey: journey.to_string(),
                step: step.to_string(),
            },
            None => Scope::Journey(text.to_string()),
        }
    }

    /// The journey the scope is within; `None` for the whole run.
    pub fn journey(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Journey(journey) | Scope::Step { journey, .. } => Some(journey),
        }
    }

    /// Whether the scope covers step `step` of journey `journey`.
    pub fn covers(&self, journey: &str, step: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Journey(j) => j == journey,
            Scope::Step {
                journey: j,
                step: s,
            } => j == journey && s == step,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Journey(journey) => f.write_str(journey),
            Scope::Step { journey, step } => write!(f, "{journey}/{step}"),
        }
    }
}

impl From<String> for Scope {
    fn from(text: String) -> Scope {
        Scope::parse(&text)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.to_string()
    }
}

/// Whether an objective whose window saw no request fails the run (the default: a verdict
/// that cannot fail is a defect) or is marked allowed (JUnit: skipped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNoData {
    #[default]
    Fail,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    pub within: Duration,
    pub from_end: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "fault", rename_all = "snake_case")]
pub enum Window {
    /// The whole run.
    Run,
    /// Outside every fault and its settle time.
    Steady,
    /// During every fault (each occurrence judged on its own).
    Faults,
    /// During the occurrences of one named fault.
    Fault(String),
    /// From each fault's end plus the settle time to the next fault or the run's end.
    After,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::Run => f.write_str("run"),
            Window::Steady => f.write_str("steady"),
            Window::Faults => f.write_str("faults"),
            Window::Fault(name) => write!(f, "fault:{name}"),
            Window::After => f.write_str("after"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
    /// Failed requests / requests, as a percentage.
    ErrorRate,
    /// 100 % − error rate.
    Availability,
    /// Requests per second.
    Rps,
}

impl Metric {
    pub fn is_latency(self) -> bool {
        !matches!(self, Metric::ErrorRate | Metric::Availability | Metric::Rps)
    }

    /// A percentage of attempts (its drift is in points).
    pub fn is_rate(self) -> bool {
        matches!(self, Metric::ErrorRate | Metric::Availability)
    }

    /// The quantile a percentile metric reads, or `None`.
    pub fn quantile(self) -> Option<f64> {
        Some(match self {
            Metric::P50 => 0.50,
            Metric::P90 => 0.90,
            Metric::P95 => 0.95,
            Metric::P99 => 0.99,
            Metric::P999 => 0.999,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::Max => "max",
            Metric::Mean => "mean",
            Metric::ErrorRate => "error_rate",
            Metric::Availability => "availability",
            Metric::Rps => "rps",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    pub fn holds(self, measured: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => measured < threshold,
            Op::Le => measured <= threshold,
            Op::Gt => measured > threshold,
            Op::Ge => measured >= threshold,
        }
    }

    /// How far `measured` is inside the bound: `threshold − measured` for an upper bound,
    /// the reverse for a lower one (negative past it).
    pub fn headroom(self, measured: f64, threshold: f64) -> f64 {
        match self {
            Op::Lt | Op::Le => threshold - measured,
            Op::Gt | Op::Ge => measured - threshold,
        }
    }

    /// The headroom relative to the threshold, which a report ranks objectives by; `None`
    /// for a zero threshold or a value that is not a number.
    pub fn margin(self, measured: f64, threshold: f64) -> Option<f64> {
        (threshold != 0.0 && measured.is_finite())
            .then(|| self.headroom(measured, threshold) / threshold.abs())
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// `metric op threshold`. Latency thresholds are in microseconds, rates in percent,
/// throughput in requests per second. `metric drift op threshold` (`drift`): the change
/// from the window's first third to its last, in percent of the first (percentage points
/// for error_rate and availability).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub metric: Metric,
    pub op: Op,
    pub threshold: f64,
    #[serde(default)]
    pub drift: bool,
}

impl Condition {
    pub fn holds(&self, measured: f64) -> bool {
        self.op.holds(measured, self.threshold)
    }

    /// The threshold the way a person reads it ("50ms", "99.9%", "500/s"; a drift's
    /// "20%" or "1 point(s)").
    pub fn threshold_text(&self) -> String {
        match (self.drift, self.metric.is_rate()) {
            (true, true) => format!("{} point(s)", self.threshold),
            (true, false) => format!("{}%", self.threshold),
            (false, _) => format_value(self.metric, self.threshold),
        }
    }

    /// How a report names what the condition measures: "p99" or "p99 drift".
    pub fn metric_name(&self) -> String {
        if self.drift {
            format!("{} drift", self.metric.name())
        } else {
            self.metric.name().to_string()
        }
    }
}

pub(crate) fn format_value(metric: Metric, value: f64) -> String {
    if metric.is_latency() {
        if value >= 1_000_000.0 {
            format!("{:.2}s", value / 1_000_000.0)
        } else {
            format!("{:.1}ms", value / 1000.0)
        }
    } else if metric == Metric::Rps {
        format!("{value:.1}/s")
    } else {
        format!("{value:.3}%")
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;

    #[test]
    fn a_scope_reads_and_writes_as_the_scenario_spells_it() {
        for (text, scope) in [
            ("all", Scope::All),
            ("checkout", Scope::Journey("checkout".into())),
            (
                "checkout/pay",
                Scope::Step {
                    journey: "checkout".into(),
                    step: "pay".into(),
                },
            ),
        ] {
            assert_eq!(Scope::parse(text), scope);
            assert_eq!(scope.to_string(), text);
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
        }
        let step = Scope::parse("checkout/pay");
        assert!(step.covers("checkout", "pay") && !step.covers("checkout", "cart"));
        assert!(Scope::parse("checkout").covers("checkout", "cart"));
        assert!(!Scope::parse("checkout").covers("browse", "cart"));
        assert!(Scope::All.covers("browse", "cart"));
        assert_eq!(Scope::parse("checkout/pay").journey(), Some("checkout"));
        assert_eq!(Scope::All.journey(), None);
    }
}
