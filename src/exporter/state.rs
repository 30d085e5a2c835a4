//! What the exporter shows: the run's counts so far, cumulative, built from the final
//! seconds the supervisor hands it (never from the request path) and from the run's
//! events (faults, judging). Plain data behind one mutex; `families.rs` turns it into
//! metric families on each scrape or push.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::metrics::stats::{JourneyStats, RequestStats, count_instance};
use crate::metrics::{ErrorClass, NotStarted, Second};
use crate::record::series::PlannedTotals;
use crate::record::verdicts::{SloVerdict, VerdictStatus};
use crate::record::writes::VerifySummary;

/// Upper bounds of the latency histogram's buckets, in microseconds (web latency, 1 ms to
/// 1 min; `+Inf` after). A bucket counts a value by the lowest value the HdrHistogram
/// bucket it was recorded in stands for: exact to 3 significant digits.
pub(crate) const BUCKET_BOUNDS_US: [u64; 16] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 20_000_000, 30_000_000, 60_000_000,
];

/// A latency histogram in Prometheus's classic shape: counts per bucket (not cumulative;
/// the last is `+Inf`), their sum in seconds and their count.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Buckets {
    pub(crate) counts: [u64; BUCKET_BOUNDS_US.len() + 1],
    pub(crate) sum_seconds: f64,
    pub(crate) count: u64,
}

impl Buckets {
    /// Adds every value of one second's histogram.
    pub(crate) fn add(&mut self, histogram: &Histogram<u64>) {
        for value in histogram.iter_recorded() {
            let lowest = histogram.lowest_equivalent(value.value_iterated_to());
            let bucket = BUCKET_BOUNDS_US.partition_point(|bound| *bound < lowest);
            self.counts[bucket] += value.count_at_value();
        }
        self.sum_seconds += histogram.mean() * histogram.len() as f64 / 1e6;
        self.count += histogram.len();
    }
}

/// Where a request's outcome is counted: it succeeded, it was a redirect hop (counted, not
/// timed), or it failed with a class.
pub(crate) const OUTCOMES: usize = ErrorClass::COUNT + 2;

/// The name of outcome `index` (`ok`, `redirect`, then the error classes).
pub(crate) fn outcome_name(index: usize) -> &'static str {
    match index {
        0 => "ok",
        1 => "redirect",
        n => ErrorClass::ALL[n - 2].name(),
    }
}

/// One step's requests, cumulative.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepCounts {
    /// Requests by outcome (`outcome_name`).
    pub(crate) outcomes: [u64; OUTCOMES],
    pub(crate) dropped: u64,
    pub(crate) abandoned: u64,
    pub(crate) retried_unprocessed: u64,
    pub(crate) ok_latency: Buckets,
    pub(crate) failed_latency: Buckets,
}

impl StepCounts {
    fn add(&mut self, stats: &RequestStats) {
        let errors = stats.error_total();
        self.outcomes[0] += stats.requests - stats.redirects - errors;
        self.outcomes[1] += stats.redirects;
        for (count, errors) in self.outcomes[2..].iter_mut().zip(stats.errors.iter()) {
            *count += errors;
        }
        self.dropped += stats.dropped;
        self.abandoned += stats.abandoned;
        self.retried_unprocessed += stats.retried_unprocessed;
        if let Some(histogram) = &stats.latency {
            self.ok_latency.add(histogram);
        }
        if let Some(histogram) = &stats.failed_latency {
            self.failed_latency.add(histogram);
        }
    }
}

/// One journey's iterations, cumulative.
#[derive(Debug, Clone, Default)]
pub(crate) struct JourneyCounts {
    pub(crate) begun: u64,
    /// Open model: the schedule's arrivals so far (the closed model's planned is `begun`).
    pub(crate) planned: Option<u64>,
    pub(crate) started: u64,
    pub(crate) dropped: u64,
    pub(crate) not_started: [u64; NotStarted::COUNT],
    /// Open model: arrivals due after the run stopped (`not_started` reason `stopped`).
    pub(crate) stopped: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) interrupted: u64,
}

impl JourneyCounts {
    fn add(&mut self, stats: &JourneyStats) {
        self.begun += stats.begun;
        self.started += stats.started;
        self.dropped += stats.dropped;
        for (count, n) in self.not_started.iter_mut().zip(stats.not_started.iter()) {
            *count += n;
        }
        self.completed += stats.completed;
        self.failed += stats.failed;
        self.interrupted += stats.interrupted;
    }

    /// The accounting identity's `planned` term so far.
    pub(crate) fn planned(&self) -> u64 {
        self.planned.unwrap_or(self.begun)
    }

    /// Not started, by reason, the open model's stopped arrivals included.
    pub(crate) fn not_started(&self) -> [u64; NotStarted::COUNT] {
        let mut reasons = self.not_started;
        reasons[NotStarted::Stopped.index()] += self.stopped;
        reasons
    }
}

/// An objective's state as the exporter shows it: pending until the run is judged, then
/// its verdict over all its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectiveState {
    Pending,
    Pass,
    Fail,
    NoData,
}

impl ObjectiveState {
    pub(crate) const ALL: [ObjectiveState; 4] = [
        ObjectiveState::Pending,
        ObjectiveState::Pass,
        ObjectiveState::Fail,
        ObjectiveState::NoData,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ObjectiveState::Pending => "pending",
            ObjectiveState::Pass => "pass",
            ObjectiveState::Fail => "fail",
            ObjectiveState::NoData => "no_data",
        }
    }

    /// One objective's windows, judged: a failed window fails it; else a window without
    /// data (or whose fault did not happen) leaves it without data; else it passes.
    fn of(verdicts: &[&SloVerdict]) -> ObjectiveState {
        let any = |status| verdicts.iter().any(|v| v.status == status);
        if any(VerdictStatus::Fail) {
            ObjectiveState::Fail
        } else if verdicts.is_empty() || any(VerdictStatus::NoData) || any(VerdictStatus::NotRun) {
            ObjectiveState::NoData
        } else {
            ObjectiveState::Pass
        }
    }
}

/// One kind of acknowledged write.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteCounts {
    pub(crate) kind: String,
    pub(crate) acknowledged: u64,
    /// After verification: verified, missing, mismatched, unverifiable, unchecked.
    pub(crate) checked: Option<[u64; 5]>,
}

/// The names of `WriteCounts::checked`'s outcomes.
pub(crate) const CHECK_OUTCOMES: [&str; 5] = [
    "verified",
    "missing",
    "mismatched",
    "unverifiable",
    "unchecked",
];

/// Everything exported, cumulative since the run began.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exported {
    /// (journey, step) per global step index.
    pub(crate) step_names: Vec<(String, String)>,
    pub(crate) steps: Vec<StepCounts>,
    pub(crate) journey_names: Vec<String>,
    pub(crate) journeys: Vec<JourneyCounts>,
    pub(crate) scheduled: u64,
    pub(crate) instances: BTreeMap<String, u64>,
    /// Journeys in flight when the last final second was handed over.
    pub(crate) in_flight: u64,
    /// Closed model: users running by the plan at the last final second; open model: the
    /// iterations in flight (each arrival is a user).
    pub(crate) active_users: u64,
    /// Closed model: (from, users) changes of the plan, to read `active_users` from.
    pub(crate) vu_changes: Option<Vec<(u64, u64)>>,
    /// Final seconds handed over.
    pub(crate) seconds: u64,
    /// Per fault, whether one of its windows is open now.
    pub(crate) faults: Vec<(String, bool)>,
    pub(crate) objectives: Vec<(String, ObjectiveState)>,
    pub(crate) writes: Vec<WriteCounts>,
    /// Whether the run has been judged (the objectives' states are final).
    pub(crate) judged: bool,
}

impl Exported {
    /// A run's exporter before its first second: every series it will have, at zero.
    pub(crate) fn of(plan: &crate::plan::Plan) -> Exported {
        let step_names = plan.step_names();
        let vu_changes = match &plan.load.model {
            crate::plan::LoadModel::Closed { start_vus, stages } => Some(
                crate::plan::schedule::vu_changes(*start_vus, stages)
                    .into_iter()
                    .map(|(at, users)| (at.as_secs(), users as u64))
                    .collect(),
            ),
            crate::plan::LoadModel::Open { .. } => None,
        };
        Exported {
            steps: vec![StepCounts::default(); step_names.len()],
            step_names,
            journey_names: plan.journeys.iter().map(|j| j.name.clone()).collect(),
            journeys: vec![JourneyCounts::default(); plan.journeys.len()],
            vu_changes,
            faults: plan
                .chaos
                .faults
                .iter()
                .map(|f| (f.name.clone(), false))
                .collect(),
            objectives: plan
                .slos
                .iter()
                .map(|s| (s.name.clone(), ObjectiveState::Pending))
                .collect(),
            writes: plan
                .verify
                .kinds
                .iter()
                .map(|k| WriteCounts {
                    kind: k.name.clone(),
                    ..WriteCounts::default()
                })
                .collect(),
            ..Exported::default()
        }
    }

    /// One final second, merged in.
    pub(crate) fn second(&mut self, second: &Second) {
        let snapshot = &second.snapshot;
        for (counts, stats) in self.steps.iter_mut().zip(&snapshot.steps) {
            counts.add(stats);
        }
        for (counts, stats) in self.journeys.iter_mut().zip(&snapshot.journeys) {
            counts.add(stats);
        }
        self.scheduled += snapshot.generator.scheduled;
        for (instance, count) in &snapshot.instances {
            count_instance(&mut self.instances, instance, *count);
        }
        self.in_flight = second.in_flight as u64;
        self.active_users = match &self.vu_changes {
            Some(changes) => changes
                .iter()
                .take_while(|(from, _)| *from <= second.second)
                .last()
                .map_or(0, |(_, users)| *users),
            None => self.in_flight,
        };
        self.seconds += 1;
    }

    /// The open model's planned arrivals so far (the series writer's running totals).
    pub(crate) fn planned(&mut self, planned: &PlannedTotals) {
        for (index, counts) in self.journeys.iter_mut().enumerate() {
            if let Some(n) = planned.planned.get(index) {
                counts.planned = Some(*n);
            }
            counts.stopped = planned.stopped.get(index).copied().unwrap_or(0);
        }
    }

    /// Writes acknowledged, by the index of their kind.
    pub(crate) fn acknowledged(&mut self, kind: usize, count: u64) {
        if let Some(writes) = self.writes.get_mut(kind) {
            writes.acknowledged += count;
        }
    }

    /// Whether a window of fault `name` is open.
    pub(crate) fn fault(&mut self, name: &str, open: bool) {
        if let Some((_, state)) = self.faults.iter_mut().find(|(n, _)| n == name) {
            *state = open;
        }
    }

    /// The load is over: nothing is in flight, no user is running.
    pub(crate) fn ended(&mut self) {
        self.in_flight = 0;
        self.active_users = 0;
    }

    /// The run's verdicts and verification, once judged.
    pub(crate) fn judged(&mut self, verdicts: &[SloVerdict], verify: Option<&VerifySummary>) {
        for (name, state) in &mut self.objectives {
            let mine: Vec<&SloVerdict> = verdicts.iter().filter(|v| &v.name == name).collect();
            *state = ObjectiveState::of(&mine);
        }
        for kind in verify.map(|v| v.kinds.as_slice()).unwrap_or_default() {
            if let Some(writes) = self.writes.iter_mut().find(|w| w.kind == kind.name) {
                writes.acknowledged = kind.acknowledged;
                writes.checked = Some([
                    kind.verified,
                    kind.missing,
                    kind.mismatched,
                    kind.unverifiable,
                    kind.unchecked,
                ]);
            }
        }
        for (_, open) in &mut self.faults {
            *open = false;
        }
        self.ended();
        self.judged = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::stats::new_histogram;

    #[test]
    fn buckets_count_each_value_once_at_or_below_its_bound() {
        let mut histogram = new_histogram();
        for us in [1_000, 1_001, 2_500, 99_999, 100_000, 100_200, 70_000_000] {
            histogram.record(us).unwrap();
        }
        let mut buckets = Buckets::default();
        buckets.add(&histogram);
        assert_eq!(buckets.count, 7);
        assert_eq!(buckets.counts.iter().sum::<u64>(), 7);
        assert_eq!(buckets.counts[0], 1, "1 ms is within le=0.001");
        assert_eq!(
            buckets.counts[1], 2,
            "1.001 ms and 2.5 ms are within le=0.0025"
        );
        assert_eq!(
            buckets.counts[6], 2,
            "99.999 ms and 100 ms are within le=0.1"
        );
        assert_eq!(buckets.counts[7], 1, "100.2 ms is past le=0.1");
        assert_eq!(buckets.counts[BUCKET_BOUNDS_US.len()], 1, "70 s is +Inf");
        let exact = (1_000 + 1_001 + 2_500 + 99_999 + 100_000 + 100_200 + 70_000_000) as f64 / 1e6;
        assert!((buckets.sum_seconds - exact).abs() / exact < 0.001);
    }

    #[test]
    fn a_step_counts_every_request_once_by_outcome() {
        let mut stats = RequestStats::default();
        stats.record(Duration::from_millis(3), Ok(()));
        stats.record(Duration::from_millis(4), Err(ErrorClass::Http5xx));
        stats.redirected();
        let mut counts = StepCounts::default();
        counts.add(&stats);
        assert_eq!(counts.outcomes.iter().sum::<u64>(), stats.requests);
        assert_eq!(counts.outcomes[0], 1);
        assert_eq!(counts.outcomes[1], 1);
        let http_5xx = ErrorClass::Http5xx.index() + 2;
        assert_eq!(outcome_name(http_5xx), "http_5xx");
        assert_eq!(counts.outcomes[http_5xx], 1);
        // Hops are counted, not timed.
        assert_eq!(counts.ok_latency.count + counts.failed_latency.count, 2);
    }
}
