//! Failover as the client saw it, per fault occurrence (scope: every request), at the
//! series' one-second resolution: time from injection to the first error, length of the
//! error burst, requests failed and why, when error rate and p99 were back to the steady
//! baseline, and latency before vs during.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::data::{Counts, Series, for_each_interval};
use super::verdicts::STABLE_SECONDS;
use super::windows::{Interval, instances, seconds_of};
use crate::metrics::ErrorClass;
use crate::metrics::stats::new_histogram;
use crate::slo::Window;

/// Seconds before a fault used as its "before" latency.
const BEFORE_SECONDS: u64 = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failover {
    pub fault: String,
    pub occurrence: u32,
    pub targets: Vec<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    /// From injection to the first second with an error; `None`: no error at all.
    pub first_error_after_ms: Option<u64>,
    /// From the first error second to the first error-free second after it.
    pub burst_ms: Option<u64>,
    /// Errors from injection to the fault's end plus settle time.
    pub requests_failed: u64,
    pub failed_by_class: BTreeMap<String, u64>,
    /// From injection until error rate and p99 were back to the steady baseline for three
    /// seconds in a row; `None`: not by the end of the run.
    pub recovered_after_ms: Option<u64>,
    pub p99_before_us: Option<u64>,
    pub p99_during_us: Option<u64>,
    pub error_rate_during: f64,
    /// The baseline "back" means: steady-state error rate and p99 (with headroom).
    pub baseline_error_rate: f64,
    pub baseline_p99_us: Option<u64>,
    /// Responses per instance (`X-Instance`) in the 10 s before, during, and the 10 s after
    /// the fault and its settle time: where the traffic went.
    pub instances_before: BTreeMap<String, u64>,
    pub instances_during: BTreeMap<String, u64>,
    pub instances_after: BTreeMap<String, u64>,
}

pub fn measure(
    run_dir: &Path,
    series: &Series,
    intervals: &[Interval],
    settle_ms: u64,
    run_seconds: u64,
) -> Result<Vec<Failover>, String> {
    if intervals.is_empty() {
        return Ok(Vec::new());
    }
    let steady = &instances(&Window::Steady, intervals, settle_ms, run_seconds)[0];
    let all = |second: u64| {
        series
            .get(&second)
            .and_then(|s| s.get("all"))
            .cloned()
            .unwrap_or_default()
    };

    // Latency histograms: steady (baseline), and before / during each fault.
    let mut steady_hist: Option<Histogram<u64>> = None;
    let mut before: Vec<Option<Histogram<u64>>> = vec![None; intervals.len()];
    let mut during: Vec<Option<Histogram<u64>>> = vec![None; intervals.len()];
    for_each_interval(run_dir, |second, tag, histogram| {
        if tag != "all" {
            return;
        }
        if steady.contains(second) {
            add(&mut steady_hist, histogram);
        }
        for (index, interval) in intervals.iter().enumerate() {
            let start = interval.start_ms / 1000;
            if second < start && second + BEFORE_SECONDS >= start {
                add(&mut before[index], histogram);
            }
            if seconds_of(interval.start_ms, interval.end_ms).contains(&second) {
                add(&mut during[index], histogram);
            }
        }
    })?;
    let mut steady_counts = Counts::default();
    for (second, scopes) in series {
        if steady.contains(*second)
            && let Some(c) = scopes.get("all")
        {
            steady_counts.add(c);
        }
    }
    let baseline_error_rate = rate(&steady_counts);
    let baseline_p99 = p99(&steady_hist);
    // "Back" allows headroom: at most 1 % or twice the steady error rate, and a p99 within
    // three times the steady p99 (at least 25 ms above it, so fast baselines on a busy
    // machine are not brittle).
    let error_ceiling = (baseline_error_rate * 2.0).max(0.01);
    let p99_ceiling = baseline_p99.map(|p| (p * 3).max(p + 25_000));

    let mut out = Vec::new();
    for (index, interval) in intervals.iter().enumerate() {
        let start = interval.start_ms / 1000;
        let impact_end = (interval.end_ms + settle_ms)
            .div_ceil(1000)
            .min(run_seconds.max(start + 1));
        let first_error = (start..run_seconds)
            .find(|s| all(*s).failed() > 0)
            .filter(|s| *s < impact_end.max(start + 1) + 1);
        let burst_end = first_error.map(|f| {
            (f..run_seconds)
                .find(|s| all(*s).failed() == 0)
                .unwrap_or(run_seconds)
        });
        let mut failed = Counts::default();
        for second in start..impact_end {
            failed.add(&all(second));
        }
        let healthy = |second: u64| {
            let c = all(second);
            c.attempts() > 0
                && rate(&c) <= error_ceiling
                && p99_ceiling.is_none_or(|ceiling| c.p99_us <= ceiling)
        };
        // Seconds without a request neither confirm nor refute; near the run's end fewer
        // than three seconds may remain, and those that do must all be healthy.
        let busy: Vec<u64> = (start..run_seconds)
            .filter(|s| all(*s).attempts() > 0)
            .collect();
        let recovered = (0..busy.len())
            .find(|&i| {
                busy[i..(i + STABLE_SECONDS as usize).min(busy.len())]
                    .iter()
                    .all(|s| healthy(*s))
            })
            .map(|i| (busy[i] * 1000).saturating_sub(interval.start_ms));
        let mut during_counts = Counts::default();
        for second in seconds_of(interval.start_ms, interval.end_ms) {
            during_counts.add(&all(second));
        }
        let end_second = interval.end_ms.div_ceil(1000);
        let after_start = (interval.end_ms + settle_ms).div_ceil(1000);
        let served = |range: std::ops::Range<u64>| {
            let mut by_instance: BTreeMap<String, u64> = BTreeMap::new();
            for (_, scopes) in series.range(range) {
                for (scope, counts) in scopes {
                    if let Some(instance) = scope.strip_prefix("instance:") {
                        *by_instance.entry(instance.to_string()).or_default() += counts.requests;
                    }
                }
            }
            by_instance
        };
        out.push(Failover {
            instances_before: served(start.saturating_sub(BEFORE_SECONDS)..start),
            instances_during: served(start..end_second.max(start + 1)),
            instances_after: served(after_start..after_start + BEFORE_SECONDS),
            fault: interval.fault.clone(),
            occurrence: interval.occurrence,
            targets: interval.targets.clone(),
            start_ms: interval.start_ms,
            end_ms: interval.end_ms,
            first_error_after_ms: first_error.map(|s| (s * 1000).saturating_sub(interval.start_ms)),
            burst_ms: first_error.zip(burst_end).map(|(f, e)| (e - f) * 1000),
            requests_failed: failed.failed(),
            failed_by_class: ErrorClass::ALL
                .iter()
                .filter(|c| failed.by_class[c.index()] > 0)
                .map(|c| (c.name().to_string(), failed.by_class[c.index()]))
                .collect(),
            recovered_after_ms: recovered,
            p99_before_us: p99(&before[index]),
            p99_during_us: p99(&during[index]),
            error_rate_during: rate(&during_counts),
            baseline_error_rate,
            baseline_p99_us: baseline_p99,
        });
    }
    Ok(out)
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
    use crate::analysis::data::read_series;

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
        let series = read_series(dir.path()).unwrap();
        let intervals = vec![Interval {
            fault: "kill".into(),
            occurrence: 0,
            start_ms: 5_200,
            end_ms: 9_500,
            targets: vec!["backend-1".into()],
            ..Interval::default()
        }];
        let figures = measure(dir.path(), &series, &intervals, 2_000, 20).unwrap();
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
