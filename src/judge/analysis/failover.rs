//! Failover as the client saw it, per fault occurrence (scope: every request), at the
//! series' one-second resolution: time from injection to the first error, length of the
//! error burst, requests failed and why, when error rate and p99 were back to the steady
//! baseline, and latency before vs during.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::recovery::first_stable;
use super::windows::{Interval, WindowInstance, instances, seconds_of};
use crate::metrics::ErrorClass;
use crate::metrics::stats::new_histogram;
use crate::plan::slo::Window;
use crate::record::data::Counts;
use crate::record::tag::Tag;
use crate::record::verdicts::Failover;

/// Seconds before a fault used as its "before" latency.
const BEFORE_SECONDS: u64 = 10;

/// One second of the "all" scope, as much as failover's searches need: a day of them is
/// 1.4 MB, held only from the first fault's start on.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    requests: u32,
    errors: u32,
    dropped: u32,
    p99_us: u32,
}

impl Second {
    fn of(counts: &Counts) -> Second {
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Second {
            requests: small(counts.requests),
            errors: small(counts.errors),
            dropped: small(counts.dropped),
            p99_us: small(counts.p99_us),
        }
    }

    fn attempts(&self) -> u64 {
        u64::from(self.requests) + u64::from(self.dropped)
    }

    fn failed(&self) -> u64 {
        u64::from(self.errors) + u64::from(self.dropped)
    }

    fn rate(&self) -> f64 {
        match self.attempts() {
            0 => 0.0,
            attempts => self.failed() as f64 / attempts as f64,
        }
    }
}

/// What one fault occurrence accumulates while the run's files stream past.
#[derive(Default)]
struct Sums {
    before: Option<Histogram<u64>>,
    during: Option<Histogram<u64>>,
    /// From injection to the fault's end plus settle time.
    failed: Counts,
    during_counts: Counts,
    instances_before: BTreeMap<String, u64>,
    instances_during: BTreeMap<String, u64>,
    instances_after: BTreeMap<String, u64>,
}

/// Failover figures for every fault occurrence that happened, fed from analysis's one pass
/// (`counts`, then `histogram`). The baseline "back" means is the whole run's steady state,
/// known only at the end, so the recovery search keeps a compact "all" second (`Second`)
/// from the first fault on; everything else is summed as it passes.
pub(crate) struct Meter<'a> {
    intervals: &'a [Interval],
    settle_ms: u64,
    run_seconds: u64,
    steady: Option<WindowInstance>,
    steady_hist: Option<Histogram<u64>>,
    steady_counts: Counts,
    /// The first second `all` holds.
    from: u64,
    all: Vec<Second>,
    sums: Vec<Sums>,
}

impl<'a> Meter<'a> {
    pub(crate) fn new(intervals: &'a [Interval], settle_ms: u64, run_seconds: u64) -> Meter<'a> {
        let from = intervals
            .iter()
            .map(|i| i.start_ms / 1000)
            .min()
            .unwrap_or(0);
        let steady = (!intervals.is_empty())
            .then(|| instances(&Window::Steady, intervals, settle_ms, run_seconds).remove(0));
        Meter {
            intervals,
            settle_ms,
            run_seconds,
            steady,
            steady_hist: None,
            steady_counts: Counts::default(),
            from,
            // Exactly the seconds it will hold: a growing Vec would double past them.
            all: Vec::with_capacity(if intervals.is_empty() {
                0
            } else {
                run_seconds.saturating_sub(from) as usize
            }),
            sums: intervals.iter().map(|_| Sums::default()).collect(),
        }
    }

    /// One row of `series.csv`.
    pub(crate) fn counts(&mut self, second: u64, tag: &Tag, counts: &Counts) {
        if self.intervals.is_empty() {
            return;
        }
        if let Tag::Instance(instance) = tag {
            for (interval, sums) in self.intervals.iter().zip(&mut self.sums) {
                let spans = Spans::of(interval, self.settle_ms);
                for (range, served) in [
                    (spans.before, &mut sums.instances_before),
                    (spans.during, &mut sums.instances_during),
                    (spans.after, &mut sums.instances_after),
                ] {
                    if range.contains(&second) {
                        *served.entry(instance.to_string()).or_default() += counts.requests;
                    }
                }
            }
            return;
        }
        if *tag != Tag::All {
            return;
        }
        if self.steady.as_ref().is_some_and(|w| w.contains(second)) {
            self.steady_counts.add(counts);
        }
        if second >= self.from && second < self.run_seconds {
            let offset = (second - self.from) as usize;
            if self.all.len() <= offset {
                self.all.resize(offset + 1, Second::default());
            }
            self.all[offset] = Second::of(counts);
        }
        for (interval, sums) in self.intervals.iter().zip(&mut self.sums) {
            let spans = Spans::of(interval, self.settle_ms);
            let impact_end = spans
                .impact
                .end
                .min(self.run_seconds.max(spans.impact.start + 1));
            if (spans.impact.start..impact_end).contains(&second) {
                sums.failed.add(counts);
            }
            if seconds_of(interval.start_ms, interval.end_ms).contains(&second) {
                sums.during_counts.add(counts);
            }
        }
    }

    /// One histogram of `intervals.hlog`: only "all" (every success) is failover's.
    pub(crate) fn histogram(&mut self, second: u64, tag: &Tag, histogram: &Histogram<u64>) {
        if *tag != Tag::All {
            return;
        }
        if self.steady.as_ref().is_some_and(|w| w.contains(second)) {
            add(&mut self.steady_hist, histogram);
        }
        for (interval, sums) in self.intervals.iter().zip(&mut self.sums) {
            let start = interval.start_ms / 1000;
            if second < start && second + BEFORE_SECONDS >= start {
                add(&mut sums.before, histogram);
            }
            if seconds_of(interval.start_ms, interval.end_ms).contains(&second) {
                add(&mut sums.during, histogram);
            }
        }
    }

    fn all(&self, second: u64) -> Second {
        second
            .checked_sub(self.from)
            .and_then(|offset| self.all.get(offset as usize))
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn finish(self) -> Vec<Failover> {
        let baseline_error_rate = rate(&self.steady_counts);
        let baseline_p99 = p99(&self.steady_hist);
        // "Back" allows headroom: at most 1 % or twice the steady error rate, and a p99
        // within three times the steady p99 (at least 25 ms above it, so fast baselines on
        // a busy machine are not brittle).
        let error_ceiling = (baseline_error_rate * 2.0).max(0.01);
        let p99_ceiling = baseline_p99.map(|p| (p * 3).max(p + 25_000));
        let run_seconds = self.run_seconds;
        let healthy = |s: Second| {
            s.attempts() > 0
                && s.rate() <= error_ceiling
                && p99_ceiling.is_none_or(|ceiling| u64::from(s.p99_us) <= ceiling)
        };
        let mut out = Vec::new();
        for (interval, sums) in self.intervals.iter().zip(&self.sums) {
            let start = interval.start_ms / 1000;
            let impact_end = Spans::of(interval, self.settle_ms)
                .impact
                .end
                .min(run_seconds.max(start + 1));
            let first_error = (start..run_seconds)
                .find(|s| self.all(*s).failed() > 0)
                .filter(|s| *s < impact_end.max(start + 1) + 1);
            let burst_end = first_error.map(|f| {
                (f..run_seconds)
                    .find(|s| self.all(*s).failed() == 0)
                    .unwrap_or(run_seconds)
            });
            // Back: three seconds in a row inside the run, each with an attempt, each
            // healthy (the recovery verdicts' one rule).
            let recovered = first_stable(start, run_seconds, |s| {
                let second = self.all(s);
                (second.attempts() > 0).then(|| healthy(second))
            })
            .map(|s| (s * 1000).saturating_sub(interval.start_ms));
            let failed = &sums.failed;
            out.push(Failover {
                instances_before: sums.instances_before.clone(),
                instances_during: sums.instances_during.clone(),
                instances_after: sums.instances_after.clone(),
                fault: interval.fault.clone(),
                occurrence: interval.occurrence,
                targets: interval.targets.clone(),
                start_ms: interval.start_ms,
                end_ms: interval.end_ms,
                first_error_after_ms: first_error
                    .map(|s| (s * 1000).saturating_sub(interval.start_ms)),
                burst_ms: first_error.zip(burst_end).map(|(f, e)| (e - f) * 1000),
                requests_failed: failed.failed(),
                failed_by_class: ErrorClass::ALL
                    .iter()
                    .filter(|c| failed.by_class[c.index()] > 0)
                    .map(|c| (c.name().to_string(), failed.by_class[c.index()]))
                    .collect(),
                recovered_after_ms: recovered,
                p99_before_us: p99(&sums.before),
                p99_during_us: p99(&sums.during),
                error_rate_during: rate(&sums.during_counts),
                baseline_error_rate,
                baseline_p99_us: baseline_p99,
            });
        }
        out
    }
}

/// The seconds an occurrence's figures cover.
struct Spans {
    /// Injection to the fault's end plus settle time: its failed requests.
    impact: std::ops::Range<u64>,
    /// Where the traffic went: the 10 s before, during, the 10 s after the settle time.
    before: std::ops::Range<u64>,
    during: std::ops::Range<u64>,
    after: std::ops::Range<u64>,
}

impl Spans {
    fn of(interval: &Interval, settle_ms: u64) -> Spans {
        let start = interval.start_ms / 1000;
        let after_start = (interval.end_ms + settle_ms).div_ceil(1000);
        Spans {
            impact: start..(interval.end_ms + settle_ms).div_ceil(1000),
            before: start.saturating_sub(BEFORE_SECONDS)..start,
            during: start..interval.end_ms.div_ceil(1000).max(start + 1),
            after: after_start..after_start + BEFORE_SECONDS,
        }
    }
}

/// Failed attempts (errors and dropped arrivals) over attempts.
fn rate(counts: &Counts) -> f64 {
    if counts.attempts() == 0 {
        0.0
    } else {
        counts.failed() as f64 / counts.attempts() as f64
    }
}

fn p99(histogram: &Option<Histogram<u64>>) -> Option<u64> {
    histogram
        .as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(0.99))
}

fn add(into: &mut Option<Histogram<u64>>, from: &Histogram<u64>) {
    into.get_or_insert_with(new_histogram)
        .add(from)
        .expect("auto-resizing histograms accept any values");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::data::{for_each_interval, for_each_row};

    /// A synthetic run: 100 requests a second for 20 s; errors in seconds 6–8 only; the
    /// fault held from 5.2 s to 9.5 s.
    #[test]
    fn burst_start_length_and_recovery_on_a_known_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv =
            String::from("second,scope,requests,errors,http_5xx,p50_us,p95_us,p99_us,max_us\n");
        for second in 0..20 {
            let errors = match second {
                6 => 30,
                7 => 50,
                8 => 10,
                _ => 0,
            };
            csv += &format!("{second},all,100,{errors},{errors},1000,2000,3000,4000\n");
        }
        std::fs::write(dir.path().join("series.csv"), csv).unwrap();
        std::fs::create_dir_all(dir.path().join("histograms")).unwrap();
        std::fs::write(dir.path().join("histograms/intervals.hlog"), "").unwrap();
        let intervals = vec![Interval {
            fault: "kill".into(),
            occurrence: 0,
            start_ms: 5_200,
            end_ms: 9_500,
            targets: vec!["backend-1".into()],
            ..Interval::default()
        }];
        let mut meter = Meter::new(&intervals, 2_000, 20);
        for_each_row(dir.path(), |second, tag, counts| {
            meter.counts(second, tag, counts)
        })
        .unwrap();
        for_each_interval(dir.path(), |second, tag, h| meter.histogram(second, tag, h)).unwrap();
        let figures = meter.finish();
        let f = &figures[0];
        assert_eq!(f.first_error_after_ms, Some(800));
        assert_eq!(f.burst_ms, Some(3_000), "seconds 6, 7 and 8");
        assert_eq!(f.requests_failed, 90);
        assert_eq!(f.failed_by_class.get("http_5xx"), Some(&90));
        assert_eq!(
            f.recovered_after_ms,
            Some(3_800),
            "healthy from second 9 on"
        );
        assert!(
            (f.error_rate_during - 90.0 / 500.0).abs() < 1e-9,
            "seconds 5–9: {}",
            f.error_rate_during
        );
        assert_eq!(f.baseline_error_rate, 0.0);
    }
}
