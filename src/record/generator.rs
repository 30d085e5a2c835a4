//! The generator's own health in `summary.json`: arrivals dropped at the in-flight cap, how
//! late the launched ones left, whether that makes the generator the bottleneck, and the
//! warning that says so with its likely cause.

use serde::{Deserialize, Serialize};

use crate::metrics::host::HostLoad;
use crate::metrics::stats::GeneratorStats;
use crate::metrics::{Percentiles, interval};

/// Arrival lateness p99 above which the generator is named as the bottleneck: latency is
/// measured from the intended send time, so lateness inflates it. The limit is this or a
/// tenth of the measured p50, whichever is larger.
pub(crate) const SATURATION_LAG_P99_MIN_US: u64 = 1_000;

/// Fewer launched arrivals than this and a lateness p99 is one or two arrivals, not a
/// pattern: the evidence rule's count for a p99 (⌈1/(1−0.99)⌉), so no warning is drawn
/// from it.
pub(crate) const LATENESS_MIN_SAMPLES: u64 = 100;

/// The confidence with which the lateness p99 must be above the limit: the generator is
/// named the bottleneck on the p99's one-sided lower bound, not its point value, so a few
/// stragglers among a few hundred arrivals (a scheduler hiccup on a shared machine) do not
/// make a run's latency invalid. With 400 arrivals that is about the 10th latest, not the 4th.
pub(super) const LATENESS_CONFIDENCE: f64 = 0.99;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorSummary {
    /// Open model: arrivals that came due. Closed model: 0.
    pub scheduled: u64,
    pub launched: u64,
    /// Arrivals not sent because `max_in_flight` was reached.
    pub dropped: u64,
    /// How late launched arrivals left after their intended time.
    pub lag_us: Percentiles,
    /// The lateness p99's one-sided lower bound at `LATENESS_CONFIDENCE`: what the
    /// bottleneck rule judges. Absent before schema 9, and with too few arrivals to bound it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_p99_low_us: Option<u64>,
    pub saturated: bool,
    pub warning: Option<String>,
    /// The host's CPU over the load (shares of all its cores), loadgen's own apart: what
    /// the lateness warning names as the likely cause. Absent before schema 8, and where
    /// /proc cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<HostLoad>,
}

/// The lateness p99 above which the generator is named the bottleneck, for a run whose
/// successful responses took `latency_p50_us` at the median.
pub(crate) fn saturation_limit_us(latency_p50_us: u64) -> u64 {
    SATURATION_LAG_P99_MIN_US.max(latency_p50_us / 10)
}

/// Whether enough arrivals (`samples` of them) left late enough to name the generator the
/// bottleneck: the one rule, for a run's summary and for judging a baseline.
/// `lateness_p99_us` is the p99's lower bound (summaries before schema 9: the p99 itself).
pub(crate) fn arrivals_late(samples: u64, lateness_p99_us: u64, latency_p50_us: u64) -> bool {
    samples >= LATENESS_MIN_SAMPLES && lateness_p99_us > saturation_limit_us(latency_p50_us)
}

pub(super) fn generator_summary(
    generator: &GeneratorStats,
    latency_p50_us: u64,
    host: Option<(HostLoad, usize)>,
) -> GeneratorSummary {
    let lag = Percentiles::of(generator.lag.as_ref());
    let launched = generator.scheduled - generator.dropped;
    let limit = saturation_limit_us(latency_p50_us);
    let samples = generator.lag.as_ref().map_or(0, |h| h.len());
    let lag_p99_low_us = generator
        .lag
        .as_ref()
        .and_then(|h| interval::lower_bound(h, 0.99, LATENESS_CONFIDENCE));
    let late = lag_p99_low_us.is_some_and(|low| arrivals_late(samples, low, latency_p50_us));
    let saturated = generator.dropped > 0 || late;
    let warning = saturated.then(|| {
        let mut why = Vec::new();
        if generator.dropped > 0 {
            why.push(format!(
                "{} of {} arrivals were dropped at the in-flight cap (counted as failed attempts): the target was too slow for the rate, or max_in_flight is too low",
                generator.dropped, generator.scheduled
            ));
        }
        if let Some(low) = lag_p99_low_us.filter(|_| late) {
            why.push(lateness_warning([lag.p99, low], limit, samples, host));
        }
        why.join("; ")
    });
    GeneratorSummary {
        scheduled: generator.scheduled,
        launched,
        dropped: generator.dropped,
        lag_us: lag,
        lag_p99_low_us,
        saturated,
        warning,
        host_cpu: host.map(|(load, _)| load),
    }
}

/// Other processes' share of the host's CPU above which the host, not loadgen's threads,
/// is named the likely cause of late arrivals.
const BUSY_HOST_SHARE: f64 = 0.25;
/// loadgen's threads busier than this share of their cores count as at their limit.
const THREADS_AT_LIMIT: f64 = 0.8;

/// Why late arrivals matter and what to do, naming the cause the host's CPU points to
/// (`host`: its load over the run and loadgen's worker threads), and neither when it does
/// not tell.
fn lateness_warning(
    [p99_us, low_us]: [u64; 2],
    limit_us: u64,
    samples: u64,
    host: Option<(HostLoad, usize)>,
) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let what = format!(
        "arrivals left late, lateness p99 {:.2} ms (at least {:.2} ms at 99% confidence) over \
         {samples} arrivals (limit {:.2} ms: 1 ms or a tenth of the p50), and latency figures \
         include it",
        ms(p99_us),
        ms(low_us),
        ms(limit_us)
    );
    let percent = |share: f64| share * 100.0;
    let cause = match host {
        Some((load, _)) if load.others() >= BUSY_HOST_SHARE => format!(
            "the host is the likely cause: other processes used {:.0}% of its {} cores' CPU \
             while loadgen used {:.0}%; --threads will not help, run where the generator has \
             the cores to itself",
            percent(load.others()),
            load.cores,
            percent(load.own)
        ),
        Some((load, threads))
            if load.own * load.cores as f64
                >= THREADS_AT_LIMIT * threads.min(load.cores) as f64 =>
        {
            format!(
                "loadgen's {threads} thread(s) were at their limit ({:.1} cores' worth of CPU, \
                 other processes {:.0}% of the host): add --threads if the host has cores to \
                 spare, or lower the rate",
                load.own * load.cores as f64,
                percent(load.others())
            )
        }
        Some((load, _)) => format!(
            "neither the host (other processes {:.0}% of its CPU) nor loadgen's threads \
             ({:.0}%) were at their limit: short stalls (the scheduler, a page fault storm) \
             are the likely cause",
            percent(load.others()),
            percent(load.own)
        ),
        None => "loadgen could not send on time, either because its threads were at their \
                 limit (then add --threads or lower the rate) or because other work on this \
                 host took the cores (then --threads will not help: run where the generator \
                 has the cores to itself)"
            .to_string(),
    };
    format!("{what}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn late_arrivals(count: u64, lateness_us: u64) -> GeneratorStats {
        let mut generator = GeneratorStats::default();
        for _ in 0..count {
            generator.scheduled();
            generator.began(std::time::Duration::from_micros(lateness_us));
        }
        generator
    }

    /// 50 arrivals 5 ms late (5 arrivals/s for 10 s): their p99 is one arrival, no warning;
    /// 200 of them are a pattern, and the warning names both possible causes.
    #[test]
    fn lateness_is_judged_only_on_enough_arrivals() {
        let few = generator_summary(&late_arrivals(50, 5_000), 1_000, None);
        assert!(!few.saturated && few.warning.is_none(), "{:?}", few.warning);
        let many = generator_summary(&late_arrivals(200, 5_000), 1_000, None);
        assert!(many.saturated);
        let warning = many.warning.unwrap();
        assert!(warning.contains("over 200 arrivals"), "{warning}");
        assert!(warning.contains("other work on this host"), "{warning}");
        let on_time = generator_summary(&late_arrivals(200, 100), 1_000, None);
        assert!(on_time.warning.is_none());
    }

    /// 400 arrivals, 6 of them 30 ms late (a scheduler hiccup): the p99 point is one of
    /// them, but it rests on 6 arrivals and its lower bound is on time, so the run's latency
    /// stays valid. 20 of them late is a pattern.
    #[test]
    fn a_few_stragglers_do_not_make_the_generator_the_bottleneck() {
        let mut generator = late_arrivals(394, 100);
        generator.merge(&late_arrivals(6, 30_000));
        let stragglers = generator_summary(&generator, 1_000, None);
        assert!(stragglers.lag_us.p99 > 20_000, "{:?}", stragglers.lag_us);
        assert!(!stragglers.saturated, "{:?}", stragglers.warning);
        assert!(stragglers.lag_p99_low_us.unwrap() < 1_000);
        generator.merge(&late_arrivals(14, 30_000));
        let pattern = generator_summary(&generator, 1_000, None);
        assert!(pattern.saturated);
        assert!(pattern.lag_p99_low_us.unwrap() > 20_000);
    }

    #[test]
    fn the_lateness_warning_names_what_the_hosts_cpu_points_to() {
        let late = late_arrivals(200, 5_000);
        let warning = |busy: f64, own: f64, threads: usize| {
            let load = HostLoad {
                cores: 2,
                busy,
                own,
            };
            generator_summary(&late, 1_000, Some((load, threads)))
                .warning
                .unwrap()
        };
        // Other processes took most of the host: not loadgen's threads.
        let busy_host = warning(0.95, 0.20, 2);
        assert!(
            busy_host.contains("the host is the likely cause"),
            "{busy_host}"
        );
        assert!(
            busy_host.contains("other processes used 75%"),
            "{busy_host}"
        );
        assert!(!busy_host.contains("add --threads"), "{busy_host}");
        // One thread busy a whole core, the host otherwise idle: more threads would help.
        let at_limit = warning(0.52, 0.50, 1);
        assert!(at_limit.contains("at their limit"), "{at_limit}");
        assert!(at_limit.contains("add --threads"), "{at_limit}");
        // Neither: said so, no advice that would not help.
        let neither = warning(0.20, 0.10, 2);
        assert!(neither.contains("neither the host"), "{neither}");
        assert!(!neither.contains("add --threads"), "{neither}");
    }
}
