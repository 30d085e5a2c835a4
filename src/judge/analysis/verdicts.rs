//! SLO verdicts: each objective judged over each instance of its window, with the measured
//! value beside the threshold. Recovery objectives measure, per fault, how long after its
//! start (or end) the conditions held again for three seconds in a row.
//!
//! Every verdict is judged on data or fails with its reason: a window without requests is
//! `no_data` (fails unless the objective allows it), a fault that never happened makes its
//! windows `not_run` (fails unless the fault is not required), a window where more than
//! 1 % of the iterations meant to start were dropped or never started fails as
//! `load_not_delivered` (`analysis::delivery`, judged on the rows of the objective's
//! journeys, or of the run for `all`), and a latency objective over requests none of which
//! succeeded fails as `no_successful_response`. Requests belong to the second they were
//! meant to start in.

use hdrhistogram::Histogram;

use super::abort::AbortReplay;
use super::recovery::{RecoveryJob, STABLE_SECONDS, recovery_verdict};
use super::window_verdict::window_verdict;
use super::windows::{Interval, WindowInstance, instances};
use super::{Inputs, load_tags, scope_tags};
use crate::judge::slo::Observed;
use crate::metrics::NotStartedCounts;
use crate::metrics::stats::new_histogram;
use crate::plan::slo::{Condition, OnNoData, SloSpec};
use crate::record::data::Counts;
use crate::record::delivery::Delivery;
use crate::record::tag::Tag;
use crate::record::verdicts::{Evidence, Measured, SloVerdict, VerdictReason, VerdictStatus};
use std::ops::Range;

/// Counts and successes' latencies of one scope over a set of seconds, and the iterations
/// of its journeys (whether the load it rests on was delivered).
#[derive(Default)]
pub(super) struct Accumulator {
    pub(super) counts: Counts,
    pub(super) histogram: Option<Histogram<u64>>,
    pub(super) seconds: u64,
    pub(super) load: Load,
}

/// The iterations of a window's journeys: planned, dropped, not started.
#[derive(Default)]
pub(super) struct Load {
    pub(super) planned: u64,
    pub(super) dropped: u64,
    pub(super) not_started: NotStartedCounts,
}

impl Load {
    fn add(&mut self, counts: &Counts) {
        match &counts.iterations {
            Some(iterations) => {
                self.planned += iterations.planned;
                for (a, b) in self
                    .not_started
                    .iter_mut()
                    .zip(iterations.not_started.iter())
                {
                    *a += b;
                }
            }
            // A series.csv before schema 6: the arrivals that came due stand for planned.
            None => self.planned += counts.scheduled,
        }
        self.dropped += counts.dropped;
    }

    pub(super) fn judge(&self) -> Delivery {
        Delivery::judge(self.planned, self.dropped, &self.not_started)
    }
}

impl Accumulator {
    pub(super) fn observed(&self) -> Observed<'_> {
        Observed {
            requests: self.counts.requests,
            errors: self.counts.errors,
            dropped: self.counts.dropped,
            seconds: self.seconds,
            latency: self.histogram.as_ref(),
        }
    }

    pub(super) fn holds(&self, conditions: &[Condition]) -> bool {
        let observed = self.observed();
        observed.attempts() > 0
            && conditions
                .iter()
                .all(|c| observed.value(c.metric).is_some_and(|v| c.holds(v)))
    }
}

struct Job {
    slo: usize,
    tags: Tags,
    window: WindowInstance,
    acc: Accumulator,
    /// For an objective with a drift condition: the window's first third and its last,
    /// each with its seconds.
    thirds: Option<Box<Thirds>>,
}

/// The first and last thirds of a window (by its own seconds within the planned load, in
/// order).
struct Thirds {
    first: (Vec<Range<u64>>, Accumulator),
    last: (Vec<Range<u64>>, Accumulator),
}

impl Thirds {
    fn of(window: &WindowInstance, planned_seconds: u64) -> Thirds {
        let seconds: Vec<Range<u64>> = window
            .seconds
            .iter()
            .map(|r| r.start..r.end.min(planned_seconds))
            .filter(|r| r.start < r.end)
            .collect();
        let length: u64 = seconds.iter().map(|r| r.end - r.start).sum();
        let third = length / 3;
        let part = |from: u64, to: u64| -> Vec<Range<u64>> {
            // Positions [from, to) of the window's seconds, as ranges of run seconds.
            let mut out = Vec::new();
            let mut at = 0;
            for range in &seconds {
                let len = range.end - range.start;
                let (start, end) = (from.max(at), to.min(at + len));
                if start < end {
                    out.push(range.start + (start - at)..range.start + (end - at));
                }
                at += len;
            }
            out
        };
        let accumulator = || Accumulator {
            seconds: third,
            ..Accumulator::default()
        };
        Thirds {
            first: (part(0, third), accumulator()),
            last: (part(length - third, length), accumulator()),
        }
    }

    fn each(&mut self, second: u64) -> impl Iterator<Item = &mut Accumulator> {
        [&mut self.first, &mut self.last]
            .into_iter()
            .filter(move |(seconds, _)| seconds.iter().any(|r| r.contains(&second)))
            .map(|(_, acc)| acc)
    }
}

/// The rows an objective reads: its scope's (`all` or its steps') for requests and
/// latencies, its journeys' (or `all`) for the load it rests on.
#[derive(Clone)]
pub(super) struct Tags {
    pub(super) scope: Vec<Tag>,
    pub(super) load: Vec<Tag>,
}

impl Tags {
    pub(super) fn feed(&self, acc: &mut Accumulator, tag: &Tag, counts: &Counts) {
        if self.scope.iter().any(|t| t == tag) {
            acc.counts.add(counts);
        }
        if self.load.iter().any(|t| t == tag) {
            acc.load.add(counts);
        }
    }
}

/// Every objective's windows, fed from analysis's one pass over the run's files: counts
/// (`series.csv`) with `counts`, histograms (`intervals.hlog`) with `histogram`. What it
/// holds is per window instance (and per second of a recovery span), never per run second.
pub(crate) struct Judge<'a> {
    slos: &'a [SloSpec],
    /// The seconds the load was planned to run: a drift's thirds are taken from them.
    planned_seconds: u64,
    jobs: Vec<Job>,
    recoveries: Vec<RecoveryJob<'a>>,
    /// Verdicts settled without data: windows that did not occur, faults that did not run.
    unjudged: Vec<(usize, SloVerdict)>,
    /// `abort = true` objectives' watch, replayed second by second.
    aborts: Vec<AbortReplay>,
}

impl<'a> Judge<'a> {
    pub(crate) fn new(
        intervals: &'a [Interval],
        inputs: &Inputs<'a>,
        run_seconds: u64,
    ) -> Judge<'a> {
        let mut judge = Judge {
            slos: inputs.slos,
            planned_seconds: inputs.planned_s.ceil().max(1.0) as u64,
            jobs: Vec::new(),
            recoveries: Vec::new(),
            unjudged: Vec::new(),
            aborts: Vec::new(),
        };
        for (index, slo) in inputs.slos.iter().enumerate() {
            let tags = Tags {
                scope: scope_tags(&slo.scope, inputs.steps),
                load: load_tags(&slo.scope, inputs.steps),
            };
            if slo.abort_after.is_some() {
                judge.aborts.push(AbortReplay::new(
                    index,
                    slo,
                    tags.scope.clone(),
                    run_seconds,
                ));
            }
            match slo.recovery {
                Some(recovery) => {
                    judge.plan_recoveries(index, recovery, intervals, tags, run_seconds)
                }
                None => judge.plan_windows(index, intervals, inputs.settle_ms, tags, run_seconds),
            }
        }
        judge
    }

    fn plan_recoveries(
        &mut self,
        index: usize,
        recovery: crate::plan::slo::Recovery,
        intervals: &'a [Interval],
        tags: Tags,
        run_seconds: u64,
    ) {
        let slo = &self.slos[index];
        if intervals.is_empty() {
            let verdict = unjudged(
                slo,
                "recovery",
                VerdictStatus::NoData,
                "no fault was planned in this run",
            );
            self.unjudged.push((index, verdict));
        }
        for interval in intervals {
            if !interval.happened() {
                let mut verdict = unjudged(
                    slo,
                    &format!(
                        "recovery from {} #{}",
                        interval.fault,
                        interval.occurrence + 1
                    ),
                    VerdictStatus::NotRun,
                    interval
                        .reason
                        .as_deref()
                        .unwrap_or("the fault did not happen"),
                );
                verdict.allowed = !interval.required;
                self.unjudged.push((index, verdict));
                continue;
            }
            let anchor_ms = if recovery.from_end {
                interval.end_ms
            } else {
                interval.start_ms
            };
            let first = anchor_ms / 1000;
            let deadline =
                (anchor_ms + recovery.within.as_millis() as u64).div_ceil(1000) + STABLE_SECONDS;
            let observed_end = deadline.min(run_seconds).max(first);
            let per_second = (first..observed_end)
                .map(|s| {
                    let acc = Accumulator {
                        seconds: 1,
                        ..Accumulator::default()
                    };
                    (s, acc)
                })
                .collect();
            self.recoveries.push(RecoveryJob {
                slo: index,
                interval,
                anchor_ms,
                first,
                deadline,
                observed_end,
                per_second,
                tags: tags.clone(),
            });
        }
    }

    fn plan_windows(
        &mut self,
        index: usize,
        intervals: &[Interval],
        settle_ms: u64,
        tags: Tags,
        run_seconds: u64,
    ) {
        let slo = &self.slos[index];
        let windows = instances(&slo.window, intervals, settle_ms, run_seconds);
        if windows.is_empty() {
            let verdict = unjudged(
                slo,
                &slo.window.to_string(),
                VerdictStatus::NoData,
                "this window did not occur in the run",
            );
            self.unjudged.push((index, verdict));
        }
        for window in windows {
            if let Some(not_run) = &window.not_run {
                let mut verdict =
                    unjudged(slo, &window.label, VerdictStatus::NotRun, &not_run.reason);
                verdict.allowed = !not_run.required;
                self.unjudged.push((index, verdict));
                continue;
            }
            let thirds = slo
                .conditions
                .iter()
                .any(|c| c.drift)
                .then(|| Box::new(Thirds::of(&window, self.planned_seconds)));
            self.jobs.push(Job {
                slo: index,
                tags: tags.clone(),
                acc: Accumulator {
                    seconds: window.length(),
                    ..Accumulator::default()
                },
                thirds,
                window,
            });
        }
    }

    /// One row of `series.csv`.
    pub(crate) fn counts(&mut self, second: u64, tag: &Tag, counts: &Counts) {
        for job in &mut self.jobs {
            if job.window.contains(second) {
                job.tags.feed(&mut job.acc, tag, counts);
                if let Some(thirds) = &mut job.thirds {
                    for acc in thirds.each(second) {
                        job.tags.feed(acc, tag, counts);
                    }
                }
            }
        }
        for job in &mut self.recoveries {
            if let Some(acc) = job.per_second.get_mut(&second) {
                job.tags.feed(acc, tag, counts);
            }
        }
        for replay in &mut self.aborts {
            replay.counts(second, tag, counts);
        }
    }

    /// One histogram of `intervals.hlog` (successes' latencies; `failed:` tags are not
    /// any objective's latency).
    pub(crate) fn histogram(&mut self, second: u64, tag: &Tag, histogram: &Histogram<u64>) {
        for job in &mut self.jobs {
            if job.window.contains(second) && job.tags.scope.iter().any(|t| t == tag) {
                add(&mut job.acc.histogram, histogram);
                if let Some(thirds) = &mut job.thirds {
                    for acc in thirds.each(second) {
                        add(&mut acc.histogram, histogram);
                    }
                }
            }
        }
        for job in &mut self.recoveries {
            if job.tags.scope.iter().any(|t| t == tag)
                && let Some(acc) = job.per_second.get_mut(&second)
            {
                add(&mut acc.histogram, histogram);
            }
        }
        for replay in &mut self.aborts {
            replay.histogram(second, tag, histogram);
        }
    }

    /// The verdicts, in the scenario's order of objectives.
    pub(crate) fn finish(self) -> Vec<SloVerdict> {
        let slos = self.slos;
        let mut verdicts = self.unjudged;
        for job in self.jobs {
            let thirds = job.thirds.as_deref().map(|t| (&t.first.1, &t.last.1));
            let verdict = window_verdict(&slos[job.slo], job.window.label, &job.acc, thirds);
            verdicts.push((job.slo, verdict));
        }
        for job in self.recoveries {
            verdicts.push((job.slo, recovery_verdict(&slos[job.slo], &job)));
        }
        for replay in self.aborts {
            verdicts.push((replay.slo, replay.finish()));
        }
        verdicts.sort_by_key(|(index, _)| *index);
        verdicts.into_iter().map(|(_, v)| v).collect()
    }
}

fn add(into: &mut Option<Histogram<u64>>, from: &Histogram<u64>) {
    into.get_or_insert_with(new_histogram)
        .add(from)
        .expect("histograms of one configuration add");
}

/// A verdict with nothing measured: the window did not occur, or its fault did not run.
fn unjudged(slo: &SloSpec, window: &str, status: VerdictStatus, why: &str) -> SloVerdict {
    let (allowed, reason) = match status {
        VerdictStatus::NotRun => (false, VerdictReason::NotRun),
        _ => (slo.on_no_data == OnNoData::Allow, VerdictReason::NoData),
    };
    SloVerdict {
        name: slo.name.clone(),
        objective: slo.objective.clone(),
        scope: slo.scope.clone(),
        window: window.into(),
        status,
        allowed,
        reason: Some(reason),
        reason_text: Some(why.into()),
        requests: 0,
        dropped: 0,
        evidence: Evidence::default(),
        measured: vec![Measured {
            metric: "-".into(),
            op: String::new(),
            threshold: String::new(),
            value: None,
            value_text: why.into(),
            passed: false,
            margin: None,
        }],
        spec: slo.clone(),
    }
}
