//! The load plan over time, as pure functions of the stages: when each open-model arrival is
//! due, and when the closed model's virtual-user count changes. No clocks here, so the exact
//! plan is testable and printable.

use std::time::Duration;

use crate::plan::{LoadModel, RateStage, VuStage};

/// Why a load plan would start nothing at all — no arrival, no virtual user — or `None`.
/// Such a plan is bad input: a run of it would send nothing and prove nothing.
pub(crate) fn starts_nothing(model: &LoadModel) -> Option<String> {
    let end = model.total_duration();
    match model {
        LoadModel::Open { start_rate, stages } => {
            (ArrivalSchedule::new(*start_rate, stages).total() == 0).then(|| {
                format!(
                    "this load plan schedules no arrival in its {:.1}s: every stage's rate (and start_rate) is zero, or too low to reach one arrival",
                    end.as_secs_f64()
                )
            })
        }
        LoadModel::Closed { start_vus, stages } => {
            let joins = vu_changes(*start_vus, stages)
                .into_iter()
                .any(|(at, count)| count > 0 && at < end);
            (!joins).then(|| {
                format!(
                    "this load plan starts no virtual user in its {:.1}s: a ramping user joins when the ramp reaches its number, and a ramp from {start_vus} reaches its first user only at the end of the run; set `start_vus`, or hold the stage's `vus` in a further stage",
                    end.as_secs_f64()
                )
            })
        }
    }
}

/// Open model. The cumulative number of arrivals due by time `t` is `N(t) = ∫ rate`; arrival
/// `k` (from 0) is due at the `t` where `N(t) = k`. A stage ramps its rate linearly.
#[derive(Debug, Clone)]
pub struct ArrivalSchedule {
    segments: Vec<Segment>,
    total: u64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    duration: f64,
    from_rate: f64,
    to_rate: f64,
    /// Arrivals due before this segment starts.
    arrivals_before: f64,
}

impl Segment {
    fn arrivals(&self) -> f64 {
        (self.from_rate + self.to_rate) / 2.0 * self.duration
    }

    /// Seconds into the segment at which `n` of its arrivals are due. Solves
    /// `from·t + (to-from)·t²/(2d) = n` in the form that stays exact when the rate is flat.
    fn time_of(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        let a = (self.to_rate - self.from_rate) / (2.0 * self.duration);
        let b = self.from_rate;
        let discriminant = (b * b + 4.0 * a * n).max(0.0);
        (2.0 * n / (b + discriminant.sqrt())).min(self.duration)
    }
}

impl ArrivalSchedule {
    pub fn new(start_rate: f64, stages: &[RateStage]) -> ArrivalSchedule {
        let mut segments = Vec::with_capacity(stages.len());
        let mut start = 0.0;
        let mut from_rate = start_rate;
        let mut arrivals_before = 0.0;
        for stage in stages {
            let segment = Segment {
                start,
                duration: stage.duration.as_secs_f64(),
                from_rate,
                to_rate: stage.rate,
                arrivals_before,
            };
            arrivals_before += segment.arrivals();
            start += segment.duration;
            from_rate = stage.rate;
            segments.push(segment);
        }
        ArrivalSchedule {
            segments,
            total: count_below(arrivals_before),
        }
    }

    /// How many arrivals the whole plan holds.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When arrival `k` is due, from the start of the run; `None` past the last one.
    pub fn offset(&self, k: u64) -> Option<Duration> {
        if k >= self.total {
            return None;
        }
        let k = k as f64;
        // The last segment holding arrivals that starts at or before arrival k.
        let segment = self
            .segments
            .iter()
            .rev()
            .find(|s| s.arrivals() > 0.0 && s.arrivals_before <= k + 1e-9)?;
        let seconds = segment.start + segment.time_of(k - segment.arrivals_before);
        Some(Duration::from_secs_f64(seconds))
    }

    /// Arrivals due in each stage, for `loadgen plan`.
    pub fn per_stage(&self) -> Vec<u64> {
        let mut counted = 0;
        self.segments
            .iter()
            .map(|s| {
                let through = count_below(s.arrivals_before + s.arrivals());
                let n = through - counted;
                counted = through;
                n
            })
            .collect()
    }
}

/// The number of whole arrivals `k ≥ 0` with `k < n`, tolerant of float error at integers.
fn count_below(n: f64) -> u64 {
    let rounded = n.round();
    if (n - rounded).abs() < 1e-6 {
        rounded as u64
    } else {
        n.ceil() as u64
    }
}

/// Closed model: the moments the number of active virtual users changes, with the new count.
/// Within a stage the target moves linearly: a user joins when the target reaches its number
/// and leaves when the target falls to the count without it. The first entry
/// is always `(0, start_vus)`; the list ends with the count at the end of the last stage.
pub fn vu_changes(start_vus: usize, stages: &[VuStage]) -> Vec<(Duration, usize)> {
    let mut changes = vec![(Duration::ZERO, start_vus)];
    let mut stage_start = Duration::ZERO;
    let mut from = start_vus;
    for stage in stages {
        let to = stage.vus;
        let span = stage.duration.as_secs_f64();
        let steps: Vec<usize> = if to > from {
            (from + 1..=to).collect()
        } else {
            (to..from).rev().collect()
        };
        let distance = from.abs_diff(to) as f64;
        for count in steps {
            let moved = count.abs_diff(from) as f64;
            let at = stage_start + Duration::from_secs_f64(span * (moved / distance).max(0.0));
            match changes.last_mut() {
                Some(last) if last.0 == at => last.1 = count,
                _ => changes.push((at, count)),
            }
        }
        stage_start += stage.duration;
        from = to;
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_that_starts_nothing_is_named() {
        let ramp_to_one = LoadModel::Closed {
            start_vus: 0,
            stages: vec![VuStage {
                duration: Duration::from_secs(1),
                vus: 1,
            }],
        };
        assert!(
            starts_nothing(&ramp_to_one)
                .unwrap()
                .contains("no virtual user")
        );
        let held = LoadModel::Closed {
            start_vus: 0,
            stages: vec![
                VuStage {
                    duration: Duration::from_secs(1),
                    vus: 1,
                },
                VuStage {
                    duration: Duration::from_secs(1),
                    vus: 1,
                },
            ],
        };
        assert_eq!(starts_nothing(&held), None);
        let idle = LoadModel::Open {
            start_rate: 0.0,
            stages: vec![rate(5, 0.0)],
        };
        assert!(starts_nothing(&idle).unwrap().contains("no arrival"));
        // 0 → 1/s over 1 s plans half an arrival: the first one, due at once.
        let half = LoadModel::Open {
            start_rate: 0.0,
            stages: vec![rate(1, 1.0)],
        };
        assert_eq!(starts_nothing(&half), None);
    }

    fn rate(seconds: u64, rate: f64) -> RateStage {
        RateStage {
            duration: Duration::from_secs(seconds),
            rate,
        }
    }

    #[test]
    fn constant_rate_is_evenly_spaced_from_zero() {
        let schedule = ArrivalSchedule::new(10.0, &[rate(1, 10.0)]);
        assert_eq!(schedule.total(), 10);
        let offsets: Vec<u128> = (0..10)
            .map(|k| schedule.offset(k).unwrap().as_millis())
            .collect();
        assert_eq!(
            offsets,
            vec![0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
        );
        assert_eq!(schedule.offset(10), None);
    }

    #[test]
    fn ramp_follows_the_integral_of_the_rate() {
        // 0 → 10/s over 10 s: N(t) = t²/2, so arrival k is due at √(2k) s; 50 in all.
        let schedule = ArrivalSchedule::new(0.0, &[rate(10, 10.0)]);
        assert_eq!(schedule.total(), 50);
        for k in [0u64, 1, 2, 8, 18, 32, 49] {
            let expected = (2.0 * k as f64).sqrt();
            let actual = schedule.offset(k).unwrap().as_secs_f64();
            assert!(
                (actual - expected).abs() < 1e-6,
                "k={k}: {actual} vs {expected}"
            );
        }
    }

    #[test]
    fn stages_chain_and_zero_rate_gaps_hold_no_arrivals() {
        let schedule = ArrivalSchedule::new(
            4.0,
            &[rate(1, 4.0), rate(2, 0.0), rate(1, 0.0), rate(1, 2.0)],
        );
        // 4 + (4+0)/2*2 = 4 + 4, then 0, then (0+2)/2 = 1 → 9 arrivals.
        assert_eq!(schedule.per_stage(), vec![4, 4, 0, 1]);
        assert_eq!(schedule.total(), 9);
        let last = schedule.offset(8).unwrap().as_secs_f64();
        // In the last stage N(t) = t² (rate 2t); arrival 0 of that stage is due at its start.
        assert!((last - 4.0).abs() < 1e-6, "{last}");
    }

    #[test]
    fn vu_changes_follow_the_ramp() {
        let stages = [
            VuStage {
                duration: Duration::from_secs(4),
                vus: 4,
            },
            VuStage {
                duration: Duration::from_secs(2),
                vus: 4,
            },
            VuStage {
                duration: Duration::from_secs(2),
                vus: 0,
            },
        ];
        let changes = vu_changes(0, &stages);
        let secs: Vec<(f64, usize)> = changes.iter().map(|(t, n)| (t.as_secs_f64(), *n)).collect();
        assert_eq!(
            secs,
            vec![
                (0.0, 0),
                (1.0, 1),
                (2.0, 2),
                (3.0, 3),
                (4.0, 4),
                (6.5, 3),
                (7.0, 2),
                (7.5, 1),
                (8.0, 0)
            ]
        );
    }
}
