//! The aggregator: merges worker intervals into per-second summaries (emitted in order, as
//! soon as every worker is past that second) and into the run's totals.

use std::collections::BTreeMap;

use super::recorder::WorkerReport;
use super::stats::Snapshot;

/// Every worker's data for one second of the run, merged.
#[derive(Debug, Clone)]
pub struct Second {
    pub second: u64,
    pub snapshot: Snapshot,
    pub in_flight: usize,
}

pub(crate) struct Aggregator {
    steps: usize,
    journeys: usize,
    /// Per worker: every second before this one is complete.
    complete_before: Vec<u64>,
    pending: BTreeMap<u64, Second>,
    totals: Snapshot,
    in_flight: Vec<usize>,
    /// Per worker: the first arrival it did not launch because the run stopped.
    arrivals_stopped_from: Vec<Option<u64>>,
}

impl Aggregator {
    pub(crate) fn new(workers: usize, steps: usize, journeys: usize) -> Aggregator {
        Aggregator {
            steps,
            journeys,
            complete_before: vec![0; workers],
            pending: BTreeMap::new(),
            totals: Snapshot::new(steps, journeys),
            in_flight: vec![0; workers],
            arrivals_stopped_from: vec![None; workers],
        }
    }

    /// Takes one worker report; returns the seconds that became complete, oldest first.
    pub(crate) fn accept(&mut self, report: WorkerReport) -> Vec<Second> {
        self.totals.merge(&report.snapshot);
        self.in_flight[report.worker] = if report.finished { 0 } else { report.in_flight };
        let entry = self.pending.entry(report.second).or_insert_with(|| Second {
            second: report.second,
            snapshot: Snapshot::new(self.steps, self.journeys),
            in_flight: 0,
        });
        entry.snapshot.merge(&report.snapshot);
        entry.in_flight += report.in_flight;
        self.complete_before[report.worker] = report.complete_before;
        if report.arrivals_stopped_from.is_some() {
            self.arrivals_stopped_from[report.worker] = report.arrivals_stopped_from;
        }
        self.drain_complete()
    }

    fn drain_complete(&mut self) -> Vec<Second> {
        let horizon = self
            .complete_before
            .iter()
            .copied()
            .min()
            .unwrap_or(u64::MAX);
        let mut done = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            done.push(entry.remove());
        }
        done
    }

    /// Every remaining second, for the end of the run when a worker died without finishing.
    pub(crate) fn flush(&mut self) -> Vec<Second> {
        std::mem::take(&mut self.pending).into_values().collect()
    }

    pub(crate) fn all_finished(&self) -> bool {
        self.complete_before.iter().all(|c| *c == u64::MAX)
    }

    pub(crate) fn totals(&self) -> &Snapshot {
        &self.totals
    }

    /// Per worker, the first arrival it did not launch because the run stopped (known
    /// before any second that arrival is due in is handed out).
    pub(crate) fn arrivals_stopped_from(&self) -> &[Option<u64>] {
        &self.arrivals_stopped_from
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(worker: usize, second: u64, next: u64, requests: u64) -> WorkerReport {
        let mut snapshot = Snapshot::new(1, 1);
        for _ in 0..requests {
            snapshot.overall.record(Duration::from_millis(1), Ok(()));
        }
        WorkerReport {
            worker,
            second,
            complete_before: next,
            snapshot,
            in_flight: 0,
            finished: next == u64::MAX,
            acks: Vec::new(),
            arrivals_stopped_from: None,
        }
    }

    #[test]
    fn a_second_is_emitted_once_every_worker_is_past_it() {
        let mut aggregator = Aggregator::new(2, 1, 1);
        assert!(aggregator.accept(report(0, 0, 1, 3)).is_empty());
        let done = aggregator.accept(report(1, 0, 2, 4));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].snapshot.overall.requests, 7);
        // Worker 1 skipped ahead to second 2; second 1 completes when worker 0 passes it.
        let done = aggregator.accept(report(0, 1, u64::MAX, 5));
        assert_eq!(done.iter().map(|s| s.second).collect::<Vec<_>>(), vec![1]);
        assert_eq!(aggregator.totals().overall.requests, 12);
        assert!(!aggregator.all_finished());
    }
}
