//! Mergeable statistics: what one worker saw in one second, and what the run saw in total.
//! Everything here merges losslessly (histogram addition, counter sums).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::error_class::{ErrorClass, ErrorCounts};

/// Latencies in microseconds, 3 significant digits, growing as needed so no value is lost.
pub fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new(3).expect("3 significant digits is valid");
    histogram.auto(true);
    histogram
}

pub fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).max(1)
}

/// Requests of one scope (the whole run, or one step).
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    /// Latency of every request that got a response or failed; `None` until the first.
    pub latency: Option<Histogram<u64>>,
    pub requests: u64,
    pub errors: ErrorCounts,
}

impl RequestStats {
    pub fn record(&mut self, latency: Duration, outcome: Result<(), ErrorClass>) {
        self.requests += 1;
        if let Err(class) = outcome {
            self.errors[class.index()] += 1;
        }
        self.latency
            .get_or_insert_with(new_histogram)
            .record(micros(latency))
            .expect("an auto-resizing histogram accepts any value");
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &RequestStats) {
        self.requests += other.requests;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors.iter()) {
            *mine += theirs;
        }
        merge_histogram(&mut self.latency, &other.latency);
    }
}

/// Iterations of one journey.
#[derive(Debug, Clone, Default)]
pub struct JourneyStats {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Why iterations stopped early, by the class of the failing step.
    pub failed_by: ErrorCounts,
    /// Duration of finished iterations (completed or failed), think time included.
    pub duration: Option<Histogram<u64>>,
}

impl JourneyStats {
    pub fn finish(&mut self, duration: Duration, outcome: Result<(), ErrorClass>) {
        match outcome {
            Ok(()) => self.completed += 1,
            Err(class) => {
                self.failed += 1;
                self.failed_by[class.index()] += 1;
            }
        }
        self.duration
            .get_or_insert_with(new_histogram)
            .record(micros(duration))
            .expect("an auto-resizing histogram accepts any value");
    }

    pub fn merge(&mut self, other: &JourneyStats) {
        self.started += other.started;
        self.completed += other.completed;
        self.failed += other.failed;
        for (mine, theirs) in self.failed_by.iter_mut().zip(other.failed_by.iter()) {
            *mine += theirs;
        }
        merge_histogram(&mut self.duration, &other.duration);
    }
}

/// The open model's own health: how late arrivals left, and how many never did.
#[derive(Debug, Clone, Default)]
pub struct GeneratorStats {
    pub scheduled: u64,
    pub dropped: u64,
    /// How late each launched arrival started after its intended time.
    pub lag: Option<Histogram<u64>>,
}

impl GeneratorStats {
    pub fn launched(&mut self, lag: Duration) {
        self.scheduled += 1;
        self.lag
            .get_or_insert_with(new_histogram)
            .record(micros(lag))
            .expect("an auto-resizing histogram accepts any value");
    }

    pub fn dropped(&mut self) {
        self.scheduled += 1;
        self.dropped += 1;
    }

    pub fn merge(&mut self, other: &GeneratorStats) {
        self.scheduled += other.scheduled;
        self.dropped += other.dropped;
        merge_histogram(&mut self.lag, &other.lag);
    }
}

/// Everything one worker recorded during one second of the run (or, merged, the run).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub overall: RequestStats,
    pub steps: Vec<RequestStats>,
    pub journeys: Vec<JourneyStats>,
    pub generator: GeneratorStats,
    /// Responses per `X-Instance` header value: which backend served the traffic.
    pub instances: std::collections::BTreeMap<String, u64>,
}

impl Snapshot {
    pub fn new(steps: usize, journeys: usize) -> Snapshot {
        Snapshot {
            overall: RequestStats::default(),
            steps: vec![RequestStats::default(); steps],
            journeys: vec![JourneyStats::default(); journeys],
            generator: GeneratorStats::default(),
            instances: std::collections::BTreeMap::new(),
        }
    }

    pub fn merge(&mut self, other: &Snapshot) {
        self.overall.merge(&other.overall);
        for (mine, theirs) in self.steps.iter_mut().zip(&other.steps) {
            mine.merge(theirs);
        }
        for (mine, theirs) in self.journeys.iter_mut().zip(&other.journeys) {
            mine.merge(theirs);
        }
        self.generator.merge(&other.generator);
        for (instance, count) in &other.instances {
            *self.instances.entry(instance.clone()).or_default() += count;
        }
    }
}

fn merge_histogram(into: &mut Option<Histogram<u64>>, from: &Option<Histogram<u64>>) {
    if let Some(from) = from {
        into.get_or_insert_with(new_histogram)
            .add(from)
            .expect("an auto-resizing histogram accepts any histogram");
    }
}

/// p50/p95/p99/p99.9/max/mean of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(histogram: Option<&Histogram<u64>>) -> Percentiles {
        match histogram {
            Some(h) if !h.is_empty() => Percentiles {
                min: h.min(),
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p95: h.value_at_quantile(0.95),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: (h.mean() * 10.0).round() / 10.0,
            },
            _ => Percentiles::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_is_lossless() {
        let mut a = RequestStats::default();
        let mut b = RequestStats::default();
        for ms in 1..=50 {
            a.record(Duration::from_millis(ms), Ok(()));
        }
        for ms in 51..=100 {
            b.record(Duration::from_millis(ms), Err(ErrorClass::Reset));
        }
        a.merge(&b);
        assert_eq!(a.requests, 100);
        assert_eq!(a.errors[ErrorClass::Reset.index()], 50);
        let p = Percentiles::of(a.latency.as_ref());
        assert_eq!(a.latency.as_ref().unwrap().len(), 100);
        assert!((49_900..=50_100).contains(&p.p50), "{p:?}");
        assert!((99_900..=100_100).contains(&p.max), "{p:?}");
    }
}
