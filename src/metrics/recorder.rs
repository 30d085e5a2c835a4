//! The per-worker recorder: plain counters and histograms owned by one worker thread.
//!
//! **Which clock keys what.** A request's outcome belongs to the second it was *meant* to
//! start in (its intended start: the arrival's scheduled instant, or the moment the journey
//! was ready to send a later step), not the second it completed in: a request stuck 3 s in
//! a frozen backend is charged to the freeze. Only `completed` counts (throughput as the
//! server felt it) and journey ends are keyed by the second they happened in.
//!
//! So a second is *final* only when no request meant to start in it is still in flight.
//! The recorder keeps the seconds that are not final yet ("open"), counts the requests
//! pending in each, and hands a second to the aggregator (one report per worker per
//! second, never per request) once the clock has passed it, nothing is pending in it or
//! before it, and the open model's next arrival is not due in it. Memory is bounded by the
//! plan: open seconds span at most the longest request (connect + request timeout) plus
//! the generator's lateness.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::error_class::ErrorClass;
use super::not_started::NotStarted;
use super::samples::{FailureSample, Samples, excerpt, redact};
use super::stats::{Snapshot, count_instance};
use crate::metrics::ack::Ack;

/// One worker's interval: everything it recorded for run second `second`.
#[derive(Debug)]
pub(crate) struct WorkerReport {
    pub worker: usize,
    pub second: u64,
    /// The worker has nothing more to say about any second before this one.
    pub complete_before: u64,
    pub snapshot: Snapshot,
    pub in_flight: usize,
    pub finished: bool,
    /// Writes acknowledged since the worker's last report (steps with `record`), for
    /// acks.jsonl: handed over with the report, never one message per request.
    pub acks: Vec<Ack>,
    /// Open model: the first of this worker's arrivals it did not launch because the run
    /// stopped; every later one of its share was not launched either. Set before any
    /// second it covers is handed over, so the accounting knows it in time.
    pub arrivals_stopped_from: Option<u64>,
}

/// A second not yet handed over.
struct OpenSecond {
    snapshot: Snapshot,
    /// Requests (or launched arrivals) meant to start in this second and not yet recorded.
    pending: u32,
}

pub(crate) struct Recorder {
    worker: usize,
    start: Instant,
    /// Every second before this one has been handed over; `open[i]` is second `base + i`.
    base: u64,
    open: VecDeque<OpenSecond>,
    steps: usize,
    journeys: usize,
    tx: UnboundedSender<WorkerReport>,
    /// The open model's next arrival that has not been launched yet (published by the
    /// arrival clock before it waits): its second cannot be final.
    next_due: Rc<Cell<Option<Instant>>>,
    /// Journeys this worker is running right now.
    pub in_flight: usize,
    /// Acknowledged writes not yet handed over.
    acks: Vec<Ack>,
    /// See `WorkerReport::arrivals_stopped_from`.
    arrivals_stopped_from: Option<u64>,
    /// Per step, every failure sample this worker has handed over: each goes over once.
    sampled: Vec<Samples>,
    /// Secret values of the scenario: never in a sample's text.
    secrets: std::sync::Arc<[String]>,
}

impl Recorder {
    pub(crate) fn new(
        worker: usize,
        start: Instant,
        steps: usize,
        journeys: usize,
        tx: UnboundedSender<WorkerReport>,
    ) -> Recorder {
        Recorder {
            worker,
            start,
            base: 0,
            open: VecDeque::new(),
            steps,
            journeys,
            tx,
            next_due: Rc::new(Cell::new(None)),
            in_flight: 0,
            acks: Vec::new(),
            arrivals_stopped_from: None,
            sampled: vec![Samples::default(); steps],
            secrets: std::sync::Arc::from(Vec::new()),
        }
    }

    /// The scenario's secret values, redacted from every failure sample.
    pub(crate) fn with_secrets(mut self, secrets: std::sync::Arc<[String]>) -> Recorder {
        self.secrets = secrets;
        self
    }

    /// Whether a failure of `class` at `step` could still add a sample (fewer than
    /// `MAX_SAMPLES` distinct ones kept): when not, no detail need be built.
    pub(crate) fn wants_sample(&self, step: usize, class: ErrorClass) -> bool {
        self.sampled[step].has_room_for_class(class)
    }

    /// A failed request as it looked (`detail`: the body's start, the error's text, a
    /// check's expected and found), kept when it is unlike the step's samples of its class
    /// so far, and handed over with the second it was meant to start in.
    pub(crate) fn failure_sample(
        &mut self,
        step: usize,
        second: u64,
        class: ErrorClass,
        status: Option<u16>,
        detail: &str,
    ) {
        if !self.sampled[step].has_room_for(class, status, detail) {
            return;
        }
        // Kept by what it looked like before redaction, so it is never offered again.
        let seen = FailureSample {
            status,
            detail: detail.to_string(),
            second,
        };
        let sample = FailureSample {
            detail: excerpt(&redact(detail, &self.secrets)),
            ..seen.clone()
        };
        self.sampled[step].add(class, seen);
        self.slot(second).snapshot.steps[step]
            .samples
            .add(class, sample);
    }

    /// Where the arrival clock publishes its next due instant.
    pub(crate) fn next_due(&self) -> Rc<Cell<Option<Instant>>> {
        self.next_due.clone()
    }

    /// The run second an instant falls in (instants before the start fall in second 0).
    pub(crate) fn second_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_secs()
    }

    fn slot(&mut self, second: u64) -> &mut OpenSecond {
        // A second already handed over cannot be written again; the pending counts make
        // this unreachable, and the oldest open second is the honest fallback.
        debug_assert!(second >= self.base, "second {second} is already final");
        let index = second.saturating_sub(self.base) as usize;
        while self.open.len() <= index {
            self.open.push_back(OpenSecond {
                snapshot: Snapshot::new(self.steps, self.journeys),
                pending: 0,
            });
        }
        &mut self.open[index]
    }

    /// Marks a request (or an arrival about to send one) meant to start at `intended` as
    /// pending: its second stays open until `release`. Returns the second.
    pub(crate) fn pend(&mut self, intended: Instant) -> u64 {
        let second = self.second_of(intended).max(self.base);
        self.slot(second).pending += 1;
        second
    }

    /// The pending request of `second` has been recorded (or abandoned).
    pub(crate) fn release(&mut self, second: u64) {
        if second >= self.base {
            let slot = self.slot(second);
            slot.pending = slot.pending.saturating_sub(1);
        }
    }

    /// A request's outcome, charged to the second it was meant to start in (`second`, from
    /// `pend`); its completion is counted in the second it completed in.
    pub(crate) fn request(
        &mut self,
        step: usize,
        second: u64,
        latency: Duration,
        outcome: Result<(), ErrorClass>,
        completed_at: Instant,
    ) {
        let snapshot = &mut self.slot(second).snapshot;
        snapshot.overall.record(latency, outcome);
        snapshot.steps[step].record(latency, outcome);
        let done = self.second_of(completed_at);
        let snapshot = &mut self.slot(done).snapshot;
        snapshot.overall.completed += 1;
        snapshot.steps[step].completed += 1;
        self.roll(completed_at);
    }

    /// A redirect a step followed: a request the server answered (3xx), counted with
    /// outcome `redirect` in the second the step was meant to start in, with no latency of
    /// its own (the step's latency runs to its final response).
    pub(crate) fn redirect(&mut self, step: usize, second: u64, completed_at: Instant) {
        let snapshot = &mut self.slot(second).snapshot;
        snapshot.overall.redirected();
        snapshot.steps[step].redirected();
        let done = self.second_of(completed_at);
        let snapshot = &mut self.slot(done).snapshot;
        snapshot.overall.completed += 1;
        snapshot.steps[step].completed += 1;
    }

    /// A request cut off in flight at the hard stop, in the second it was meant to start in.
    pub(crate) fn abandoned(&mut self, step: usize, second: u64) {
        let snapshot = &mut self.slot(second).snapshot;
        snapshot.overall.abandoned += 1;
        snapshot.steps[step].abandoned += 1;
    }

    /// A request the server provably did not process, sent once more (in the second the
    /// step was meant to start in).
    pub(crate) fn retried_unprocessed(&mut self, step: usize, second: u64) {
        let snapshot = &mut self.slot(second).snapshot;
        snapshot.overall.retried_unprocessed += 1;
        snapshot.steps[step].retried_unprocessed += 1;
    }

    /// A write the platform acknowledged (a step with `record` passed): `body` is the
    /// rendered record, stamped here with when it came.
    pub(crate) fn ack(&mut self, kind: usize, step: usize, at: Instant, body: Vec<u8>) {
        self.acks.push(Ack {
            kind: kind as u16,
            step: step as u32,
            at_ms: at.saturating_duration_since(self.start).as_millis() as u64,
            body,
        });
    }

    /// Counts which of a step's checks failed a request (its outcome, `check_failed`, is
    /// recorded by `request`), in the second it was meant to start in.
    pub(crate) fn check_failed(&mut self, step: usize, second: u64, check: u16) {
        *self.slot(second).snapshot.steps[step]
            .checks_failed
            .entry(check)
            .or_default() += 1;
    }

    /// Counts a response by the instance that served it, in the second it was meant to
    /// start in.
    pub(crate) fn served_by(&mut self, second: u64, instance: &str) {
        count_instance(&mut self.slot(second).snapshot.instances, instance, 1);
    }

    /// A closed-model user began an iteration of `journey` (the closed model's `planned`):
    /// it goes on to start, or not, in the same second.
    pub(crate) fn iteration_begun(&mut self, journey: usize, second: u64) {
        self.slot(second).snapshot.journeys[journey].begun += 1;
    }

    /// An iteration got its data and goes on to its first step, in the second it was meant
    /// to start in.
    pub(crate) fn journey_started(&mut self, journey: usize, second: u64) {
        self.slot(second).snapshot.journeys[journey].started += 1;
    }

    /// A planned iteration that will not start, in the second it was meant to start in.
    pub(crate) fn journey_not_started(&mut self, journey: usize, second: u64, why: NotStarted) {
        self.slot(second).snapshot.journeys[journey].not_started[why.index()] += 1;
    }

    /// An iteration found `feeder` past its last row: it did not start (`wrapped`
    /// false), or took a row again from the first (true).
    pub(crate) fn feeder_ran_out(&mut self, feeder: usize, second: u64, wrapped: bool) {
        let counts = self
            .slot(second)
            .snapshot
            .feeders
            .entry(feeder as u16)
            .or_default();
        if wrapped {
            counts.wrapped += 1;
        } else {
            counts.exhausted += 1;
        }
    }

    /// A started iteration ended (completed, or failed at a step), in the second it ended.
    pub(crate) fn journey_finished(
        &mut self,
        journey: usize,
        duration: Duration,
        outcome: Result<(), ErrorClass>,
        at: Instant,
    ) {
        let second = self.second_of(at);
        self.slot(second).snapshot.journeys[journey].finish(duration, outcome);
        self.roll(at);
    }

    /// A started iteration cut off at the hard stop, in the second it was cut off.
    pub(crate) fn journey_interrupted(&mut self, journey: usize, duration: Duration, at: Instant) {
        let second = self.second_of(at);
        self.slot(second).snapshot.journeys[journey].interrupt(duration);
    }

    /// Open model: this worker launches nothing from its arrival `from` on (the run
    /// stopped). Call before the second that arrival is due in can be handed over.
    pub(crate) fn arrivals_stopped(&mut self, from: u64) {
        self.arrivals_stopped_from.get_or_insert(from);
    }

    /// An arrival came due and was launched (its second is held open by `pend`).
    pub(crate) fn arrival_scheduled(&mut self, second: u64) {
        self.slot(second).snapshot.generator.scheduled();
    }

    /// How late a launched arrival began its first request, in its intended second.
    pub(crate) fn arrival_began(&mut self, second: u64, lag: Duration) {
        self.slot(second).snapshot.generator.began(lag);
    }

    /// An arrival the generator could not send (the in-flight cap): a failed attempt of the
    /// journey and first step its seeded choice picked, at its intended start.
    pub(crate) fn arrival_dropped(&mut self, due: Instant, journey: usize, first_step: usize) {
        let second = self.second_of(due);
        let snapshot = &mut self.slot(second).snapshot;
        snapshot.generator.dropped();
        snapshot.overall.dropped += 1;
        snapshot.steps[first_step].dropped += 1;
        snapshot.journeys[journey].dropped += 1;
    }

    /// Hands over every second that is final at `now`. Called by each sample and by the
    /// worker's once-a-second tick, so idle seconds are reported too.
    pub(crate) fn roll(&mut self, now: Instant) {
        let mut horizon = self.second_of(now);
        if let Some(due) = self.next_due.get() {
            horizon = horizon.min(self.second_of(due));
        }
        if let Some(first_pending) = self.open.iter().position(|s| s.pending > 0) {
            horizon = horizon.min(self.base + first_pending as u64);
        }
        while self.base < horizon {
            let snapshot = self
                .open
                .pop_front()
                .map_or_else(|| Snapshot::new(self.steps, self.journeys), |s| s.snapshot);
            // With nothing open after it, every second up to the horizon is final (idle).
            let next = if self.open.is_empty() {
                horizon
            } else {
                self.base + 1
            };
            self.send(snapshot, next, false);
        }
    }

    /// Sends every open second and marks this worker finished (the end of its run: nothing
    /// is in flight any more, or what was has been abandoned).
    pub(crate) fn finish(&mut self) {
        while let Some(open) = self.open.pop_front() {
            if self.open.is_empty() {
                return self.send(open.snapshot, u64::MAX, true);
            }
            let next = self.base + 1;
            self.send(open.snapshot, next, false);
        }
        let empty = Snapshot::new(self.steps, self.journeys);
        self.send(empty, u64::MAX, true);
    }

    fn send(&mut self, snapshot: Snapshot, complete_before: u64, finished: bool) {
        // The aggregator may be gone after an abort; the data then has no reader.
        let _ = self.tx.send(WorkerReport {
            worker: self.worker,
            second: self.base,
            complete_before,
            snapshot,
            in_flight: self.in_flight,
            finished,
            acks: std::mem::take(&mut self.acks),
            arrivals_stopped_from: self.arrivals_stopped_from,
        });
        self.base = complete_before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (
        Recorder,
        tokio::sync::mpsc::UnboundedReceiver<WorkerReport>,
        Instant,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        (Recorder::new(0, start, 1, 1, tx), rx, start)
    }

    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<WorkerReport>) -> Vec<WorkerReport> {
        let mut out = Vec::new();
        while let Ok(report) = rx.try_recv() {
            out.push(report);
        }
        out
    }

    #[test]
    fn a_request_is_charged_to_its_intended_second_and_holds_it_open() {
        let (mut recorder, mut rx, start) = recorder();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Sent at 0.5 s into a frozen target; answered at 3.2 s.
        let stuck = recorder.pend(at(500));
        // Meanwhile a fast request at 1.1 s.
        let fast = recorder.pend(at(1_100));
        recorder.request(0, fast, Duration::from_millis(5), Ok(()), at(1_105));
        recorder.release(fast);
        recorder.roll(at(2_500));
        assert!(
            drain(&mut rx).is_empty(),
            "second 0 is not final: a request is pending"
        );
        recorder.request(
            0,
            stuck,
            Duration::from_millis(2_700),
            Err(ErrorClass::RequestTimeout),
            at(3_200),
        );
        recorder.release(stuck);
        recorder.roll(at(3_200));
        let reports = drain(&mut rx);
        let seconds: Vec<u64> = reports.iter().map(|r| r.second).collect();
        assert_eq!(seconds, vec![0, 1, 2], "{seconds:?}");
        let zero = &reports[0].snapshot.overall;
        assert_eq!(
            (zero.requests, zero.error_total()),
            (1, 1),
            "the timeout is second 0's"
        );
        assert_eq!(zero.completed, 0, "it completed in second 3");
        let one = &reports[1].snapshot.overall;
        assert_eq!((one.requests, one.error_total(), one.completed), (1, 0, 1));
        assert_eq!(reports[2].complete_before, 3);
        recorder.finish();
        let last = drain(&mut rx);
        assert_eq!(last.last().unwrap().second, 3);
        assert_eq!(last.last().unwrap().snapshot.overall.completed, 1);
        assert!(last.last().unwrap().finished);
    }

    #[test]
    fn the_next_due_arrival_holds_its_second_open() {
        let (mut recorder, mut rx, start) = recorder();
        let next_due = recorder.next_due();
        next_due.set(Some(start + Duration::from_millis(1_900)));
        recorder.roll(start + Duration::from_millis(4_000));
        let reports = drain(&mut rx);
        assert_eq!(reports.len(), 1);
        assert_eq!(
            reports[0].complete_before, 1,
            "second 1 waits for the late arrival"
        );
        recorder.arrival_dropped(start + Duration::from_millis(1_900), 0, 0);
        next_due.set(None);
        recorder.roll(start + Duration::from_millis(4_000));
        let reports = drain(&mut rx);
        assert_eq!(reports[0].second, 1);
        assert_eq!(reports[0].snapshot.overall.dropped, 1);
        assert_eq!(reports[0].snapshot.generator.dropped, 1);
        assert_eq!(reports.last().unwrap().complete_before, 4);
    }

    /// A hand-built timeline with known answers: 10 requests a second for 8 s, each taking
    /// 10 ms, except that the target freezes from 3.0 s to 6.0 s and answers everything
    /// sent in that time at 6.0 s.
    #[test]
    fn a_freeze_is_charged_to_the_seconds_it_froze_and_they_wait_for_it() {
        let (mut recorder, mut rx, start) = recorder();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut reports = Vec::new();
        let mut stuck = Vec::new();
        for k in 0..80u64 {
            let sent = k * 100;
            // The worker's tick, as the clock moves on.
            recorder.roll(at(sent));
            let second = recorder.pend(at(sent));
            if (3_000..6_000).contains(&sent) {
                stuck.push((second, sent));
            } else {
                let done = sent + 10;
                recorder.request(
                    0,
                    second,
                    Duration::from_millis(done - sent),
                    Ok(()),
                    at(done),
                );
                recorder.release(second);
            }
            if sent == 5_900 {
                // Still frozen: seconds 0-2 are final, 3 onwards wait for the freeze.
                reports.extend(drain(&mut rx));
                assert_eq!(reports.last().map(|r| r.complete_before), Some(3));
                for (second, sent) in stuck.drain(..) {
                    recorder.request(
                        0,
                        second,
                        Duration::from_millis(6_000 - sent),
                        Ok(()),
                        at(6_000),
                    );
                    recorder.release(second);
                }
            }
        }
        recorder.finish();
        reports.extend(drain(&mut rx));
        let by_second: Vec<(u64, u64, u64)> = reports
            .iter()
            .map(|r| {
                let o = &r.snapshot.overall;
                (r.second, o.requests, o.completed)
            })
            .collect();
        // (second, requests meant to start in it, requests completed in it)
        assert_eq!(
            by_second,
            vec![
                (0, 10, 10),
                (1, 10, 10),
                (2, 10, 10),
                (3, 10, 0),
                (4, 10, 0),
                (5, 10, 0),
                (6, 10, 40),
                (7, 10, 10),
            ]
        );
        // The slowest request meant to start in each second: the freeze's are answered at
        // 6.0 s, so second 3's waited 3 s; the rest took 10 ms (3 significant digits).
        let max_ms: Vec<f64> = reports
            .iter()
            .map(|r| r.snapshot.overall.latency.as_ref().unwrap().max() as f64 / 1000.0)
            .collect();
        let want = [10.0, 10.0, 10.0, 3_000.0, 2_000.0, 1_000.0, 10.0, 10.0];
        for (second, (got, want)) in max_ms.iter().zip(want).enumerate() {
            assert!(
                (got - want).abs() <= want * 0.001,
                "second {second}: {got} ms, want {want}"
            );
        }
    }
}
