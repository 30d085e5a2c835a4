//! The one definition of every metric's value over a set of requests, shared by the live
//! abort watch (one second at a time) and the verdicts (one window at a time).

use hdrhistogram::Histogram;

use crate::metrics::interval::{CONFIDENCE, percentile};
use crate::plan::slo::{Condition, Metric, Op, format_value};

/// What a scope saw over some seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    /// Requests sent.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Arrivals dropped at the in-flight cap: failed attempts never sent.
    pub dropped: u64,
    pub seconds: u64,
    /// Latency of the successful responses only.
    pub latency: Option<&'a Histogram<u64>>,
}

/// The least evidence a metric's value needs before it can pass or fail an objective
/// (docs/slo.md, "The evidence rule"): a percentile pX needs ⌈1/(1 − X)⌉ successful
/// responses (below that the percentile is the slowest response, or an interpolation
/// between two), max and mean one; error rate and availability one attempt; a rate one
/// second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Successes(u64),
    Attempts(u64),
    Seconds(u64),
}

impl Metric {
    pub fn needs(self) -> Needs {
        match self {
            Metric::P50 => Needs::Successes(2),
            Metric::P90 => Needs::Successes(10),
            Metric::P95 => Needs::Successes(20),
            Metric::P99 => Needs::Successes(100),
            Metric::P999 => Needs::Successes(1_000),
            Metric::Max | Metric::Mean => Needs::Successes(1),
            Metric::ErrorRate | Metric::Availability => Needs::Attempts(1),
            Metric::Rps => Needs::Seconds(1),
        }
    }
}

impl Observed<'_> {
    pub(crate) fn attempts(&self) -> u64 {
        self.requests + self.dropped
    }

    /// Successful responses: the latency histogram's count.
    pub(crate) fn successes(&self) -> u64 {
        self.latency.map_or(0, |h| h.len())
    }

    /// Why `metric` cannot be judged on what was observed, or `None` when it can.
    pub(crate) fn too_little_for(&self, metric: Metric) -> Option<String> {
        let (have, need, what) = match metric.needs() {
            Needs::Successes(n) => (self.successes(), n, "successful responses"),
            Needs::Attempts(n) => (self.attempts(), n, "attempts"),
            Needs::Seconds(n) => (self.seconds, n, "seconds"),
        };
        (have < need).then(|| {
            format!(
                "{} needs at least {need} {what}, the window has {have}",
                metric.name()
            )
        })
    }

    /// The metric's value, or `None` when there is nothing to measure: no attempt at all,
    /// or a latency metric with no successful response.
    pub(crate) fn value(&self, metric: Metric) -> Option<f64> {
        let successes = self.latency.filter(|h| !h.is_empty());
        let attempts = self.attempts() as f64;
        // Dropped arrivals are failed attempts: a generator that could not send does not
        // make the platform look available.
        let failed_percent =
            || (attempts > 0.0).then(|| (self.errors + self.dropped) as f64 / attempts * 100.0);
        match metric {
            Metric::P50 => successes.map(|h| h.value_at_quantile(0.5) as f64),
            Metric::P90 => successes.map(|h| h.value_at_quantile(0.9) as f64),
            Metric::P95 => successes.map(|h| h.value_at_quantile(0.95) as f64),
            Metric::P99 => successes.map(|h| h.value_at_quantile(0.99) as f64),
            Metric::P999 => successes.map(|h| h.value_at_quantile(0.999) as f64),
            Metric::Max => successes.map(|h| h.max() as f64),
            Metric::Mean => successes.map(|h| h.mean()),
            Metric::ErrorRate => failed_percent(),
            Metric::Availability => failed_percent().map(|p| 100.0 - p),
            Metric::Rps => (self.seconds > 0).then(|| self.requests as f64 / self.seconds as f64),
        }
    }
}

/// A drift measured between a window's first third and its last.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Drift {
    /// The change: percent of the first third (points for a rate).
    pub value: f64,
    /// The change the condition is judged on: for a percentile, the bound of its
    /// intervals least favourable to a finding (the least it can have grown for `<`, the
    /// most for `>`), so noise in a few samples is not a drift.
    pub judged: f64,
    /// "p99 12.1ms → 16.4ms".
    pub text: String,
}

/// The drift of `condition`'s metric from `first` to `last`, or why it cannot be measured.
pub(crate) fn drift(
    condition: &Condition,
    first: &Observed<'_>,
    last: &Observed<'_>,
) -> Result<Drift, String> {
    let metric = condition.metric;
    for (third, observed) in [("first", first), ("last", last)] {
        if let Some(short) = observed.too_little_for(metric) {
            return Err(format!("{short} (its {third} third)"));
        }
    }
    let (Some(before), Some(after)) = (first.value(metric), last.value(metric)) else {
        return Err(format!("no {} in a third of the window", metric.name()));
    };
    let text = format!(
        "{} {} → {}",
        metric.name(),
        format_value(metric, before),
        format_value(metric, after)
    );
    if metric.is_rate() {
        let value = after - before;
        return Ok(Drift {
            value,
            judged: value,
            text,
        });
    }
    let relative = |from: f64, to: f64| {
        if from > 0.0 {
            (to / from - 1.0) * 100.0
        } else {
            0.0
        }
    };
    let value = relative(before, after);
    let judged = match (metric.quantile(), first.latency, last.latency) {
        (Some(q), Some(a), Some(b)) => {
            let (Some(a), Some(b)) = (percentile(a, q), percentile(b, q)) else {
                return Err(format!(
                    "{} drift needs enough successful responses in each third to bound it at \
                     {:.0}% confidence ({} and {})",
                    metric.name(),
                    CONFIDENCE * 100.0,
                    a.len(),
                    b.len()
                ));
            };
            match condition.op {
                Op::Lt | Op::Le => relative(a.high, b.low),
                Op::Gt | Op::Ge => relative(a.low, b.high),
            }
        }
        _ => value,
    };
    Ok(Drift {
        value,
        judged,
        text,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_percentile_needs_one_over_its_tail_in_successes() {
        use super::Needs;
        use crate::plan::slo::Metric;
        for (metric, quantile) in [
            (Metric::P50, 0.5),
            (Metric::P90, 0.9),
            (Metric::P95, 0.95),
            (Metric::P99, 0.99),
            (Metric::P999, 0.999),
        ] {
            let needed = (1.0_f64 / (1.0 - quantile)).round() as u64;
            assert_eq!(metric.needs(), Needs::Successes(needed), "{metric:?}");
        }
    }

    use super::*;
    use crate::metrics::stats::new_histogram;

    #[test]
    fn dropped_arrivals_are_failed_attempts_and_latency_needs_a_success() {
        let mut ok = new_histogram();
        ok.record(2_000).unwrap();
        let observed = Observed {
            requests: 90,
            errors: 0,
            dropped: 10,
            seconds: 2,
            latency: Some(&ok),
        };
        assert_eq!(observed.value(Metric::Availability), Some(90.0));
        assert_eq!(observed.value(Metric::ErrorRate), Some(10.0));
        assert_eq!(observed.value(Metric::Rps), Some(45.0));
        assert_eq!(observed.successes(), 1);
        assert!(observed.too_little_for(Metric::ErrorRate).is_none());
        assert!(observed.too_little_for(Metric::Max).is_none());
        assert_eq!(
            observed.too_little_for(Metric::P50).as_deref(),
            Some("p50 needs at least 2 successful responses, the window has 1")
        );
        let only_failures = Observed {
            latency: None,
            ..observed
        };
        assert_eq!(only_failures.value(Metric::P99), None);
        let nothing = Observed {
            requests: 0,
            dropped: 0,
            ..only_failures
        };
        assert_eq!(nothing.value(Metric::ErrorRate), None);
    }
}
