//! The per-worker recorder: plain counters and histograms owned by one worker thread.
//! Once per second of run time (not per request) it hands its interval to the aggregator.

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::error_class::ErrorClass;
use super::stats::Snapshot;

/// One worker's interval: everything it recorded during run second `second`.
#[derive(Debug)]
pub struct WorkerReport {
    pub worker: usize,
    pub second: u64,
    /// The worker has nothing more to say about any second before this one.
    pub complete_before: u64,
    pub snapshot: Snapshot,
    pub in_flight: usize,
    pub finished: bool,
}

pub struct Recorder {
    worker: usize,
    start: Instant,
    second: u64,
    current: Snapshot,
    steps: usize,
    journeys: usize,
    tx: UnboundedSender<WorkerReport>,
    /// Journeys this worker is running right now.
    pub in_flight: usize,
}

impl Recorder {
    pub fn new(
        worker: usize,
        start: Instant,
        steps: usize,
        journeys: usize,
        tx: UnboundedSender<WorkerReport>,
    ) -> Recorder {
        Recorder {
            worker,
            start,
            second: 0,
            current: Snapshot::new(steps, journeys),
            steps,
            journeys,
            tx,
            in_flight: 0,
        }
    }

    pub fn request(
        &mut self,
        step: usize,
        latency: Duration,
        outcome: Result<(), ErrorClass>,
        at: Instant,
    ) {
        self.roll(at);
        self.current.overall.record(latency, outcome);
        self.current.steps[step].record(latency, outcome);
    }

    /// Counts a response by the instance that served it (its `X-Instance` header).
    pub fn served_by(&mut self, instance: &str) {
        match self.current.instances.get_mut(instance) {
            Some(count) => *count += 1,
            None => {
                self.current.instances.insert(instance.to_string(), 1);
            }
        }
    }

    pub fn journey_started(&mut self, journey: usize, at: Instant) {
        self.roll(at);
        self.current.journeys[journey].started += 1;
    }

    pub fn journey_finished(
        &mut self,
        journey: usize,
        duration: Duration,
        outcome: Result<(), ErrorClass>,
        at: Instant,
    ) {
        self.roll(at);
        self.current.journeys[journey].finish(duration, outcome);
    }

    pub fn arrival_launched(&mut self, lag: Duration, at: Instant) {
        self.roll(at);
        self.current.generator.launched(lag);
    }

    pub fn arrival_dropped(&mut self, at: Instant) {
        self.roll(at);
        self.current.generator.dropped();
    }

    /// Hands over the current interval if `now` is in a later second. Called by each
    /// sample and by the worker's once-a-second tick, so idle seconds are reported too.
    pub fn roll(&mut self, now: Instant) {
        let second = now.saturating_duration_since(self.start).as_secs();
        if second > self.second {
            self.send(second, false);
        }
    }

    /// Sends the last interval and marks this worker finished.
    pub fn finish(&mut self) {
        self.send(u64::MAX, true);
    }

    fn send(&mut self, next_second: u64, finished: bool) {
        let snapshot =
            std::mem::replace(&mut self.current, Snapshot::new(self.steps, self.journeys));
        // The aggregator may be gone after an abort; the data then has no reader.
        let _ = self.tx.send(WorkerReport {
            worker: self.worker,
            second: self.second,
            complete_before: next_second,
            snapshot,
            in_flight: self.in_flight,
            finished,
        });
        self.second = next_second;
    }
}
