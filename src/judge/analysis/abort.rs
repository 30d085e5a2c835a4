//! The `abort watch` verdict of an `abort = true` objective: the live watch's rule
//! (`slo::live::Streak`) replayed over the run directory's seconds, so the verdict says
//! whether — and over which seconds — the objective failed for its grace period, and
//! `loadgen report` reproduces it. The whole-run verdict of the same objective is judged
//! as any other; this one is the watch that stops a run.
//!
//! Counts come from series.csv (pass one), successes' latencies from intervals.hlog (pass
//! two, seconds in order); what is kept is a few counters per second of the run and one
//! second's histogram.

use hdrhistogram::Histogram;

use crate::judge::slo::Observed;
use crate::judge::slo::live::Streak;
use crate::metrics::stats::new_histogram;
use crate::plan::slo::SloSpec;
use crate::record::data::Counts;
use crate::record::tag::Tag;
use crate::record::verdicts::{Evidence, Measured, SloVerdict, VerdictStatus};

/// The label of the verdict's window.
pub(crate) const ABORT_WATCH: &str = "abort watch";

/// One second's counts of the watched scope.
#[derive(Debug, Clone, Copy, Default)]
struct SecondCounts {
    requests: u64,
    errors: u64,
    dropped: u64,
}

pub(crate) struct AbortReplay {
    pub slo: usize,
    spec: SloSpec,
    tags: Vec<Tag>,
    counts: Vec<SecondCounts>,
    /// The second whose histogram is being merged, and the merge.
    current: Option<(u64, Histogram<u64>)>,
    /// Seconds before this one have been judged.
    judged: u64,
    streak: Streak,
    /// The longest failing streak (first, last second) and whether it tripped.
    longest: Option<(u64, u64)>,
    tripped: Option<(u64, u64)>,
    evidence: Evidence,
    /// When the current failing streak began (for the longest one).
    failing_since: Option<u64>,
}

impl AbortReplay {
    pub(crate) fn new(slo: usize, spec: &SloSpec, tags: Vec<Tag>, run_seconds: u64) -> AbortReplay {
        AbortReplay {
            slo,
            streak: Streak::new(spec.abort_after.expect("an abort objective")),
            spec: spec.clone(),
            tags,
            counts: vec![SecondCounts::default(); run_seconds as usize],
            current: None,
            judged: 0,
            longest: None,
            tripped: None,
            evidence: Evidence::default(),
            failing_since: None,
        }
    }

    /// One row of series.csv.
    pub(crate) fn counts(&mut self, second: u64, tag: &Tag, counts: &Counts) {
        if !self.tags.iter().any(|t| t == tag) {
            return;
        }
        if let Some(slot) = self.counts.get_mut(second as usize) {
            slot.requests += counts.requests;
            slot.errors += counts.errors;
            slot.dropped += counts.dropped;
        }
    }

    /// One histogram of intervals.hlog (seconds ascending).
    pub(crate) fn histogram(&mut self, second: u64, tag: &Tag, histogram: &Histogram<u64>) {
        if !self.tags.iter().any(|t| t == tag) {
            return;
        }
        if self.current.as_ref().is_some_and(|(s, _)| *s != second) {
            self.judge_through(second);
        }
        let (_, merged) = self
            .current
            .get_or_insert_with(|| (second, new_histogram()));
        merged
            .add(histogram)
            .expect("histograms of one configuration add");
    }

    /// Judges every second before `until` (the current histogram's, if it is one of them).
    fn judge_through(&mut self, until: u64) {
        let until = until.min(self.counts.len() as u64);
        while self.judged < until {
            let second = self.judged;
            let latency = match self.current.take() {
                Some((s, h)) if s == second => Some(h),
                other => {
                    self.current = other;
                    None
                }
            };
            self.judge(second, latency.as_ref());
            self.judged += 1;
        }
    }

    fn judge(&mut self, second: u64, latency: Option<&Histogram<u64>>) {
        let c = self.counts[second as usize];
        let observed = Observed {
            requests: c.requests,
            errors: c.errors,
            dropped: c.dropped,
            seconds: 1,
            latency,
        };
        let held = (observed.attempts() > 0).then(|| {
            self.spec
                .conditions
                .iter()
                .all(|cond| observed.value(cond.metric).is_some_and(|v| cond.holds(v)))
        });
        if observed.attempts() > 0 {
            self.evidence.seconds += 1;
        }
        self.evidence.attempts += observed.attempts();
        self.evidence.successes += observed.successes();
        match held {
            Some(false) => {
                let since = *self.failing_since.get_or_insert(second);
                if self.longest.is_none_or(|(a, b)| second - since > b - a) {
                    self.longest = Some((since, second));
                }
            }
            Some(true) => self.failing_since = None,
            None => {}
        }
        if let Some(streak) = self.streak.second(second, held) {
            self.tripped.get_or_insert(streak);
        }
    }

    pub(crate) fn finish(mut self) -> SloVerdict {
        self.judge_through(self.counts.len() as u64);
        let grace = self
            .spec
            .abort_after
            .expect("an abort objective")
            .as_secs()
            .max(1);
        let span = |(a, b): (u64, u64)| format!("{} s (seconds {a}–{b})", b + 1 - a);
        let (status, value_text, reason_text) = match self.tripped {
            Some(streak) => (
                VerdictStatus::Fail,
                span(streak),
                Some(format!(
                    "failed for {} in a row: the abort grace is {grace} s, so the watch stops the run there",
                    span(streak)
                )),
            ),
            None => (
                VerdictStatus::Pass,
                self.longest.map_or("never failed".to_string(), |l| {
                    format!("longest {}", span(l))
                }),
                None,
            ),
        };
        let longest = self.longest.map(|(a, b)| (b + 1 - a) as f64);
        SloVerdict {
            name: self.spec.name.clone(),
            objective: self.spec.objective.clone(),
            scope: self.spec.scope.clone(),
            window: ABORT_WATCH.into(),
            status,
            allowed: false,
            reason: None,
            reason_text,
            requests: self.counts.iter().map(|c| c.requests).sum(),
            dropped: self.counts.iter().map(|c| c.dropped).sum(),
            evidence: self.evidence,
            measured: vec![Measured {
                metric: "failing streak".into(),
                op: "<".into(),
                threshold: format!("{grace} s"),
                value: Some(longest.unwrap_or(0.0)),
                value_text,
                passed: status == VerdictStatus::Pass,
                margin: None,
            }],
            spec: self.spec,
        }
    }
}
