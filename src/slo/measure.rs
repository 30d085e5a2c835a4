//! The one definition of every metric's value over a set of requests, shared by the live
//! abort watch (one second at a time) and the verdicts (one window at a time).

use hdrhistogram::Histogram;

use super::Metric;

/// What a scope saw over some seconds.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
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

impl Observed<'_> {
    pub fn attempts(&self) -> u64 {
        self.requests + self.dropped
    }

    /// The metric's value, or `None` when there is nothing to measure: no attempt at all,
    /// or a latency metric with no successful response.
    pub fn value(&self, metric: Metric) -> Option<f64> {
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

    /// The share of attempts the generator dropped, 0..1.
    pub fn dropped_share(&self) -> f64 {
        if self.attempts() == 0 {
            0.0
        } else {
            self.dropped as f64 / self.attempts() as f64
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!((observed.dropped_share() - 0.1).abs() < 1e-12);
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
