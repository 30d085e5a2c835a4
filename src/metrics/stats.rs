//! Mergeable statistics: what one worker saw in one second, and what the run saw in total.
//! Everything here merges losslessly (histogram addition, counter sums).
//!
//! **One histogram configuration** for every histogram of a run (and of every run, so
//! distributed parts and baselines merge exactly): values in microseconds, lowest
//! discernible value 1 µs, 3 significant digits, highest trackable value 1 h. The arrays
//! grow on demand up to that ceiling (a run that never sees a slow request keeps small
//! histograms); a value above 1 h is recorded as 1 h and counted as `saturated`, never
//! dropped. `check_config` rejects a histogram read back with any other configuration.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::error_class::{ErrorClass, ErrorCounts};
use super::not_started::NotStartedCounts;

/// Lowest discernible value: 1 µs.
pub(crate) const HISTOGRAM_LOWEST_US: u64 = 1;
/// Highest trackable value: 1 h in microseconds.
pub(crate) const HISTOGRAM_HIGHEST_US: u64 = 3_600_000_000;
/// Significant decimal digits of every value.
pub(crate) const HISTOGRAM_SIGFIG: u8 = 3;

/// A histogram of the run's one configuration.
pub(crate) fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(HISTOGRAM_LOWEST_US, 2, HISTOGRAM_SIGFIG)
        .expect("the run's histogram configuration is valid");
    histogram.auto(true);
    histogram
}

/// Whether a histogram read back (from an interval log, a baseline, another process) has
/// the run's configuration; anything else cannot be merged exactly and is refused.
pub(crate) fn check_config(histogram: &Histogram<u64>) -> Result<(), String> {
    let ok = histogram.low() == HISTOGRAM_LOWEST_US
        && histogram.sigfig() == HISTOGRAM_SIGFIG
        // max() reports the top of its bucket: compare with the ceiling's bucket.
        && histogram.max() <= histogram.highest_equivalent(HISTOGRAM_HIGHEST_US);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a histogram with another configuration (lowest {} µs, {} significant digits, \
             max value {} µs); loadgen's is lowest {HISTOGRAM_LOWEST_US} µs, \
             {HISTOGRAM_SIGFIG} digits, values up to {HISTOGRAM_HIGHEST_US} µs",
            histogram.low(),
            histogram.sigfig(),
            histogram.max()
        ))
    }
}

pub(crate) fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).max(1)
}

/// Records `value` µs, clamped to the configuration's ceiling; returns whether it was.
fn record(into: &mut Option<Histogram<u64>>, value: u64) -> bool {
    let saturated = value > HISTOGRAM_HIGHEST_US;
    into.get_or_insert_with(new_histogram)
        .record(value.min(HISTOGRAM_HIGHEST_US))
        .expect("an auto-resizing histogram accepts any value up to its ceiling");
    saturated
}

/// Requests of one scope (the whole run, or one step).
///
/// `requests` are requests loadgen sent (so they equal what the server saw); `dropped`
/// are arrivals the generator could not send (the in-flight cap), attributed to the step
/// they would have started with. Error rate and availability count both as attempts and
/// dropped ones as failed (see `failed_attempts`).
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    /// Latency of successful responses (the step's `expect` met).
    pub latency: Option<Histogram<u64>>,
    /// Latency of failed requests (refused, reset, timed out, unexpected status…): kept
    /// apart so fast failures do not pull the percentiles of an outage down.
    pub failed_latency: Option<Histogram<u64>>,
    pub requests: u64,
    /// Of `requests`, redirects followed (outcome `redirect`: neither a success with a
    /// latency nor an error).
    pub redirects: u64,
    pub errors: ErrorCounts,
    pub dropped: u64,
    /// Requests that completed in this second (keyed by completion, not intended start):
    /// throughput as the server felt it.
    pub completed: u64,
    /// Latencies above the histogram ceiling (1 h), recorded as the ceiling.
    pub saturated: u64,
    /// A step's failed response checks, by the check's index in the step (`check_failed`
    /// requests, split by which check said no). Empty for other scopes.
    pub checks_failed: std::collections::BTreeMap<u16, u64>,
    /// Requests cut off in flight at the hard stop (ramp-down over, a second interrupt):
    /// sent or about to be, never answered, so counted neither as requests nor errors.
    /// They may have reached the server.
    pub abandoned: u64,
    /// Requests sent once more on a fresh connection because the server provably processed
    /// none of the first send (a GOAWAY above its last stream id, a refused stream, an
    /// idempotent request on a kept-alive connection closed under it). Not in `requests`:
    /// the retried request is one request with one outcome.
    pub retried_unprocessed: u64,
    /// A step's failed requests as they looked, a few per class (`samples.rs`). Empty for
    /// other scopes.
    pub samples: super::samples::Samples,
}

impl RequestStats {
    /// A request's outcome, in the snapshot of the second it was meant to start in.
    pub fn record(&mut self, latency: Duration, outcome: Result<(), ErrorClass>) {
        self.requests += 1;
        let into = match outcome {
            Ok(()) => &mut self.latency,
            Err(class) => {
                self.errors[class.index()] += 1;
                &mut self.failed_latency
            }
        };
        if record(into, micros(latency)) {
            self.saturated += 1;
        }
    }

    /// A redirect hop: a request the server answered, counted but not timed.
    pub fn redirected(&mut self) {
        self.requests += 1;
        self.redirects += 1;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Attempts: requests sent plus arrivals dropped before they could be.
    pub fn attempts(&self) -> u64 {
        self.requests + self.dropped
    }

    /// Failed attempts: errors plus dropped arrivals.
    pub fn failed_attempts(&self) -> u64 {
        self.error_total() + self.dropped
    }

    pub fn merge(&mut self, other: &RequestStats) {
        self.requests += other.requests;
        self.redirects += other.redirects;
        self.dropped += other.dropped;
        self.completed += other.completed;
        self.saturated += other.saturated;
        self.abandoned += other.abandoned;
        self.retried_unprocessed += other.retried_unprocessed;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors.iter()) {
            *mine += theirs;
        }
        merge_histogram(&mut self.latency, &other.latency);
        merge_histogram(&mut self.failed_latency, &other.failed_latency);
        for (check, count) in &other.checks_failed {
            *self.checks_failed.entry(*check).or_default() += count;
        }
        if !other.samples.is_empty() {
            self.samples.merge(&other.samples);
        }
    }
}

/// Iterations of one journey. The accounting identity holds for every journey, second
/// and total: `planned = started + dropped + not_started` (where the open model's
/// `planned` comes from the schedule and the closed model's is `begun`), and in the
/// totals `started = completed + failed + interrupted`.
///
/// `begun`, `started`, `not_started` and `dropped` are keyed by the iteration's intended
/// start (the arrival's scheduled second; a closed-model user's moment of beginning);
/// `completed`, `failed` and `interrupted` by the second the iteration ended in, so a
/// second is not held open for a journey's whole length.
#[derive(Debug, Clone, Default)]
pub struct JourneyStats {
    /// Closed model: iterations users began (the closed model's `planned`). Open: 0.
    pub begun: u64,
    /// Iterations that got their data and went on to their first step.
    pub started: u64,
    /// Iterations planned or begun that never started, by reason.
    pub not_started: NotStartedCounts,
    /// Arrivals of this journey the generator dropped at the in-flight cap (never started).
    pub dropped: u64,
    pub completed: u64,
    pub failed: u64,
    /// Started iterations cut off at the hard stop (ramp-down over, a second interrupt).
    pub interrupted: u64,
    /// Why iterations stopped early, by the class of the failing step.
    pub failed_by: ErrorCounts,
    /// Duration of ended iterations (completed, failed or interrupted), think time included.
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
        record(&mut self.duration, micros(duration));
    }

    pub fn interrupt(&mut self, duration: Duration) {
        self.interrupted += 1;
        record(&mut self.duration, micros(duration));
    }

    pub fn not_started_total(&self) -> u64 {
        self.not_started.iter().sum()
    }

    /// Iterations ended, however.
    pub fn ended(&self) -> u64 {
        self.completed + self.failed + self.interrupted
    }

    pub fn merge(&mut self, other: &JourneyStats) {
        self.begun += other.begun;
        self.started += other.started;
        for (mine, theirs) in self.not_started.iter_mut().zip(other.not_started.iter()) {
            *mine += theirs;
        }
        self.completed += other.completed;
        self.failed += other.failed;
        self.interrupted += other.interrupted;
        self.dropped += other.dropped;
        for (mine, theirs) in self.failed_by.iter_mut().zip(other.failed_by.iter()) {
            *mine += theirs;
        }
        merge_histogram(&mut self.duration, &other.duration);
    }
}

/// The open model's own health: how late arrivals left, and how many never did. Keyed by
/// the arrivals' intended start.
#[derive(Debug, Clone, Default)]
pub struct GeneratorStats {
    pub scheduled: u64,
    pub dropped: u64,
    /// How late each launched arrival began its first request after its intended time.
    pub lag: Option<Histogram<u64>>,
}

impl GeneratorStats {
    pub fn scheduled(&mut self) {
        self.scheduled += 1;
    }

    pub fn began(&mut self, lag: Duration) {
        record(&mut self.lag, micros(lag));
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
    /// `unique` feeders that ran out, by the feeder's index in the plan (empty, and no
    /// allocation, while none has).
    pub feeders: std::collections::BTreeMap<u16, FeederCounts>,
}

/// A `unique` feeder past its last row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeederCounts {
    /// Iterations that found no row left and did not start.
    pub exhausted: u64,
    /// Rows handed out again from the first (`on_exhausted = "wrap"`).
    pub wrapped: u64,
}

impl Snapshot {
    pub fn new(steps: usize, journeys: usize) -> Snapshot {
        Snapshot {
            overall: RequestStats::default(),
            steps: vec![RequestStats::default(); steps],
            journeys: vec![JourneyStats::default(); journeys],
            generator: GeneratorStats::default(),
            instances: std::collections::BTreeMap::new(),
            feeders: std::collections::BTreeMap::new(),
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
            count_instance(&mut self.instances, instance, *count);
        }
        for (feeder, counts) in &other.feeders {
            let mine = self.feeders.entry(*feeder).or_default();
            mine.exhausted += counts.exhausted;
            mine.wrapped += counts.wrapped;
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
    fn merging_is_lossless_and_keeps_failures_apart() {
        let mut a = RequestStats::default();
        let mut b = RequestStats::default();
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms), Ok(()));
        }
        for ms in 101..=200 {
            b.record(Duration::from_millis(ms), Ok(()));
        }
        // Fast failures (refused connects) must not pull the successes' percentiles down.
        for _ in 0..1_000 {
            b.record(Duration::from_micros(80), Err(ErrorClass::ConnectRefused));
        }
        a.merge(&b);
        assert_eq!(a.requests, 1_200);
        assert_eq!(a.errors[ErrorClass::ConnectRefused.index()], 1_000);
        let ok = Percentiles::of(a.latency.as_ref());
        assert_eq!(a.latency.as_ref().unwrap().len(), 200);
        assert!((99_900..=100_100).contains(&ok.p50), "{ok:?}");
        assert!((197_900..=198_100).contains(&ok.p99), "{ok:?}");
        let failed = Percentiles::of(a.failed_latency.as_ref());
        assert_eq!(failed.p99, 80);
    }

    #[test]
    fn values_above_the_ceiling_are_saturated_not_dropped() {
        let mut stats = RequestStats::default();
        stats.record(Duration::from_secs(2 * 3600), Ok(()));
        stats.record(Duration::from_millis(5), Ok(()));
        assert_eq!(stats.saturated, 1);
        let histogram = stats.latency.as_ref().unwrap();
        assert_eq!(histogram.len(), 2);
        assert!(histogram.max() >= HISTOGRAM_HIGHEST_US - HISTOGRAM_HIGHEST_US / 1000);
        check_config(histogram).unwrap();
    }

    #[test]
    fn another_configuration_is_refused() {
        let foreign = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
        assert!(
            check_config(&foreign)
                .unwrap_err()
                .contains("2 significant digits")
        );
        let coarse = Histogram::<u64>::new_with_bounds(1000, 60_000_000, 3).unwrap();
        assert!(check_config(&coarse).is_err());
        check_config(&new_histogram()).unwrap();
    }
}

/// Distinct serving instances a count keeps; past them, responses count as `OTHER_INSTANCE`.
/// A target that echoes something unbounded in its instance header (a request id) must not
/// grow the harness's memory, or series.csv, without bound.
pub(crate) const MAX_INSTANCES: usize = 64;

/// Where responses from instances past the first `MAX_INSTANCES` are counted.
pub(crate) const OTHER_INSTANCE: &str = "(other)";

/// Adds `count` responses served by `instance`, keeping at most `MAX_INSTANCES` names.
pub(crate) fn count_instance(
    instances: &mut std::collections::BTreeMap<String, u64>,
    instance: &str,
    count: u64,
) {
    if let Some(served) = instances.get_mut(instance) {
        *served += count;
        return;
    }
    let named = instances.len() - usize::from(instances.contains_key(OTHER_INSTANCE));
    let key = if named < MAX_INSTANCES {
        instance
    } else {
        OTHER_INSTANCE
    };
    *instances.entry(key.to_string()).or_default() += count;
}

#[cfg(test)]
mod instance_tests {
    use super::*;

    #[test]
    fn instances_past_the_limit_are_counted_as_other() {
        let mut instances = std::collections::BTreeMap::new();
        for request in 0..1_000u64 {
            // A target echoing a request id: a new value every time.
            count_instance(&mut instances, &format!("req-{request}"), 1);
        }
        count_instance(&mut instances, "req-0", 5);
        assert_eq!(instances.len(), MAX_INSTANCES + 1);
        assert_eq!(instances[OTHER_INSTANCE], 1_000 - MAX_INSTANCES as u64);
        assert_eq!(instances["req-0"], 6, "a kept name keeps counting");
        assert_eq!(instances.values().sum::<u64>(), 1_005, "nothing is lost");
        // Merging two full maps keeps the bound.
        let mut merged = instances.clone();
        for (name, count) in &instances {
            count_instance(&mut merged, &format!("x{name}"), *count);
        }
        assert_eq!(merged.len(), MAX_INSTANCES + 1);
        assert_eq!(merged.values().sum::<u64>(), 2_010);
    }
}
