//! Distribution-free confidence intervals for percentiles, from the order statistics a
//! run's histograms hold. For n samples, the number B of them below the true q-quantile is
//! binomial(n, q); the interval [X(l), X(u)] between the l-th and u-th smallest samples
//! covers the quantile with probability P(l ≤ B < u). The ranks are chosen so each tail is
//! at most (1 − confidence) / 2; when n is too small for ranks inside 1..=n, there is no
//! interval, and the percentile is not compared.

use hdrhistogram::Histogram;

/// The confidence of every percentile interval in a comparison.
pub(crate) const CONFIDENCE: f64 = 0.99;

/// Above this variance (n·q·(1−q)) the binomial is taken as normal; below it the exact
/// distribution is summed from its lighter tail.
const NORMAL_ABOVE: f64 = 25.0;

/// The 1-based ranks (l, u) bounding the q-quantile of `n` samples at `confidence`, or
/// `None` when `n` is too small to bound it.
pub(crate) fn rank_bounds(n: u64, q: f64, confidence: f64) -> Option<(u64, u64)> {
    let (lower, upper) = ranks(n, q, (1.0 - confidence) / 2.0)?;
    (lower >= 1 && upper <= n && lower <= upper).then_some((lower, upper))
}

/// The ranks (l, u) with at most `tail` below l and at or above u, by the normal
/// approximation where it holds and the exact binomial elsewhere; `None` for no samples or
/// a q outside (0, 1). Either may fall outside 1..=n: the callers decide what that means.
fn ranks(n: u64, q: f64, tail: f64) -> Option<(u64, u64)> {
    if n == 0 || !(0.0..1.0).contains(&q) || q <= 0.0 {
        return None;
    }
    Some(if n as f64 * q * (1.0 - q) >= NORMAL_ABOVE {
        normal_ranks(n, q, tail)
    } else {
        exact_ranks(n, q, tail)
    })
}

/// Ranks from the normal approximation, with continuity correction, rounded outward.
fn normal_ranks(n: u64, q: f64, tail: f64) -> (u64, u64) {
    let z = normal_quantile(1.0 - tail);
    let mean = n as f64 * q;
    let spread = z * (mean * (1.0 - q)).sqrt();
    let lower = (mean - spread + 0.5).floor();
    let upper = (mean + spread + 0.5).ceil();
    (lower.max(0.0) as u64, upper.max(0.0) as u64)
}

/// Ranks from the exact binomial: l the largest with P(B < l) ≤ tail, u the smallest with
/// P(B ≥ u) ≤ tail.
fn exact_ranks(n: u64, q: f64, tail: f64) -> (u64, u64) {
    let cdf = binomial_cdf(n, q);
    // P(B < l) = cdf[l − 1]; l = 0 means no lower bound (never inside 1..=n).
    let mut lower = 0;
    for l in 1..=n {
        if cdf[(l - 1) as usize] <= tail {
            lower = l;
        } else {
            break;
        }
    }
    // P(B ≥ u) = 1 − cdf[u − 1]; u = n + 1 means no upper bound.
    let upper = (1..=n)
        .find(|&u| 1.0 - cdf[(u - 1) as usize] <= tail)
        .unwrap_or(n + 1);
    (lower, upper)
}

/// P(B ≤ k) for k = 0..=n, B ~ binomial(n, q), summed from the lighter tail so no term
/// underflows where it matters.
fn binomial_cdf(n: u64, q: f64) -> Vec<f64> {
    let n_usize = n as usize;
    let mut pmf = vec![0.0; n_usize + 1];
    if q <= 0.5 {
        pmf[0] = (1.0 - q).powf(n as f64);
        for k in 1..=n_usize {
            pmf[k] = pmf[k - 1] * (n_usize - k + 1) as f64 / k as f64 * q / (1.0 - q);
        }
    } else {
        pmf[n_usize] = q.powf(n as f64);
        for k in (0..n_usize).rev() {
            pmf[k] = pmf[k + 1] * (k + 1) as f64 / (n_usize - k) as f64 * (1.0 - q) / q;
        }
    }
    let mut running = 0.0;
    pmf.iter()
        .map(|p| {
            running += p;
            running.min(1.0)
        })
        .collect()
}

/// The standard normal quantile (Acklam's rational approximation; |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// A percentile with its interval, read from a histogram: `None` when the histogram has
/// too few samples to bound it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Bounded {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The one-sided lower bound of the q-quantile of `histogram` at `confidence`: a value the
/// true quantile is at least, with that confidence; `None` with too few samples. What a
/// claim "the quantile is above a limit" rests on, so that one or two stragglers among a
/// few hundred samples do not make it.
pub(crate) fn lower_bound(histogram: &Histogram<u64>, q: f64, confidence: f64) -> Option<u64> {
    let n = histogram.len();
    let (lower, _) = ranks(n, q, 1.0 - confidence)?;
    (1..=n)
        .contains(&lower)
        .then(|| histogram.value_at_quantile(lower as f64 / n as f64))
}

/// The q-quantile of `histogram` and its interval at `CONFIDENCE`.
pub(crate) fn percentile(histogram: &Histogram<u64>, q: f64) -> Option<Bounded> {
    let n = histogram.len();
    let (lower, upper) = rank_bounds(n, q, CONFIDENCE)?;
    let at_rank = |rank: u64| histogram.value_at_quantile(rank as f64 / n as f64) as f64;
    Some(Bounded {
        value: histogram.value_at_quantile(q) as f64,
        low: at_rank(lower),
        high: at_rank(upper),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_quantile_is_right_where_it_is_used() {
        assert!((normal_quantile(0.995) - 2.575_829).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.025) + 1.959_964).abs() < 1e-5);
    }

    #[test]
    fn too_few_samples_have_no_interval_for_a_far_tail() {
        // p99 of 150 samples: the 150th is the largest, and P(B = 150) = 0.99^150 = 22 %.
        assert_eq!(rank_bounds(150, 0.99, CONFIDENCE), None);
        // p50 of 150: the textbook ranks (about n/2 ± 1.29·√n).
        let (l, u) = rank_bounds(150, 0.5, CONFIDENCE).unwrap();
        assert!((58..=62).contains(&l) && (89..=93).contains(&u), "{l} {u}");
    }

    #[test]
    fn a_lower_bound_needs_more_than_a_few_stragglers() {
        // 400 samples, the 6 largest far out: the p99 point (the 5th largest) is among
        // them, its one-sided 99 % lower bound (the 9th largest) is not.
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for value in 1..=394 {
            histogram.record(value).unwrap();
        }
        for _ in 0..6 {
            histogram.record(50_000).unwrap();
        }
        assert!(histogram.value_at_quantile(0.99) >= 49_000);
        let low = lower_bound(&histogram, 0.99, 0.99).unwrap();
        assert!((380..=394).contains(&low), "{low}");
        // Twenty far out: the bound is far out too.
        for _ in 0..14 {
            histogram.record(50_000).unwrap();
        }
        assert!(lower_bound(&histogram, 0.99, 0.99).unwrap() >= 49_000);
        assert_eq!(
            lower_bound(&Histogram::<u64>::new(3).unwrap(), 0.99, 0.99),
            None
        );
    }

    #[test]
    fn exact_and_normal_ranks_agree_where_both_hold() {
        // n·q·(1−q) = 30: the normal branch; the exact one must give nearly the same.
        let (n, q, tail) = (3030, 0.99, (1.0 - CONFIDENCE) / 2.0);
        let exact = exact_ranks(n, q, tail);
        let normal = normal_ranks(n, q, tail);
        assert!(
            exact.0.abs_diff(normal.0) <= 2 && exact.1.abs_diff(normal.1) <= 2,
            "{exact:?} {normal:?}"
        );
    }

    #[test]
    fn coverage_is_at_least_the_confidence() {
        // P(l ≤ B < u) from the exact distribution, for a spread of n and q.
        for (n, q) in [(200, 0.5), (500, 0.95), (3000, 0.99), (1000, 0.9)] {
            let (l, u) = rank_bounds(n, q, CONFIDENCE).unwrap();
            let cdf = binomial_cdf(n, q);
            let below_l = if l == 0 { 0.0 } else { cdf[(l - 1) as usize] };
            let coverage = cdf[(u - 1) as usize] - below_l;
            assert!(coverage >= CONFIDENCE - 1e-3, "n {n} q {q}: {coverage}");
        }
    }
}
