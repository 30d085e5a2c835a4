//! The open model's planned arrivals, per second and per journey, recomputed from the
//! schedule and the seed alone: the `planned` term of the accounting identity
//! `planned = started + dropped + not_started`, whose other terms the workers count where
//! they happen. Nothing here looks at what the workers did, except where each one stopped
//! launching (an abort, a signal): from that arrival on, its share was never launched.

use super::mix::JourneyMix;
use crate::plan::schedule::ArrivalSchedule;

/// Walks the plan's arrivals second by second, in order.
#[derive(Debug, Clone)]
pub struct PlannedArrivals {
    schedule: ArrivalSchedule,
    mix: JourneyMix,
    seed: u64,
    workers: u64,
    /// The first arrival not counted yet.
    next: u64,
}

/// One second's arrivals, per journey: all the plan holds, and of those the ones their
/// worker never launched because the run had stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSecond {
    pub planned: Vec<u64>,
    pub stopped: Vec<u64>,
}

impl PlannedSecond {
    pub fn is_empty(&self) -> bool {
        self.planned.iter().all(|n| *n == 0)
    }

    /// Whether some arrival of this second was neither launched by a worker still running
    /// nor declared stopped: planned beyond what stopped.
    pub fn has_unstopped(&self) -> bool {
        self.planned.iter().zip(&self.stopped).any(|(p, s)| p > s)
    }
}

impl PlannedArrivals {
    /// `workers` as the engine stripes arrivals: worker `i` launches `i, i + workers, …`.
    pub fn new(
        schedule: ArrivalSchedule,
        mix: JourneyMix,
        seed: u64,
        workers: usize,
    ) -> PlannedArrivals {
        PlannedArrivals {
            schedule,
            mix,
            seed,
            workers: workers.max(1) as u64,
            next: 0,
        }
    }

    /// The second the next uncounted arrival is due in; `None` when all are counted.
    pub fn next_second(&self) -> Option<u64> {
        self.schedule.offset(self.next).map(|o| o.as_secs())
    }

    /// The arrivals due in `second` and any earlier second not asked for (seconds are asked
    /// for in increasing order). `stopped_from[w]`: the first arrival worker `w` did not
    /// launch because the run stopped (`None`: it has not stopped launching).
    pub fn second(&mut self, second: u64, stopped_from: &[Option<u64>]) -> PlannedSecond {
        let journeys = self.mix.len();
        let mut counted = PlannedSecond {
            planned: vec![0; journeys],
            stopped: vec![0; journeys],
        };
        while let Some(offset) = self.schedule.offset(self.next) {
            if offset.as_secs() > second {
                break;
            }
            let k = self.next;
            let journey = self.mix.journey_of(self.seed, k);
            counted.planned[journey] += 1;
            let worker = (k % self.workers) as usize;
            if stopped_from
                .get(worker)
                .copied()
                .flatten()
                .is_some_and(|from| k >= from)
            {
                counted.stopped[journey] += 1;
            }
            self.next += 1;
        }
        counted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::RateStage;

    #[test]
    fn every_arrival_is_counted_once_in_the_second_it_is_due() {
        // 0 → 10/s over 3 s, then 10/s for 2 s: 15 + 20 arrivals.
        let schedule = ArrivalSchedule::new(
            0.0,
            &[
                RateStage {
                    duration: Duration::from_secs(3),
                    rate: 10.0,
                },
                RateStage {
                    duration: Duration::from_secs(2),
                    rate: 10.0,
                },
            ],
        );
        let total = schedule.total();
        let mix = JourneyMix::new([3, 1]);
        let mut planned = PlannedArrivals::new(schedule.clone(), mix.clone(), 7, 2);
        let mut by_second = Vec::new();
        let mut sum = vec![0u64; 2];
        while let Some(second) = planned.next_second() {
            let counted = planned.second(second, &[None, None]);
            assert!(counted.stopped.iter().all(|n| *n == 0));
            for (s, n) in sum.iter_mut().zip(&counted.planned) {
                *s += n;
            }
            by_second.push((second, counted.planned.iter().sum::<u64>()));
        }
        assert_eq!(sum.iter().sum::<u64>(), total);
        // Each second's count is what the schedule's own offsets say.
        for (second, count) in by_second {
            let direct = (0..total)
                .filter(|k| schedule.offset(*k).unwrap().as_secs() == second)
                .count() as u64;
            assert_eq!(count, direct, "second {second}");
        }
        // Per journey, what the workers' seeded choice picks.
        let direct: Vec<u64> = (0..2)
            .map(|j| (0..total).filter(|k| mix.journey_of(7, *k) == j).count() as u64)
            .collect();
        assert_eq!(sum, direct);
        assert!(sum[0] > sum[1], "weights 3:1 → {sum:?}");
    }

    #[test]
    fn arrivals_after_a_workers_stop_are_stopped_others_are_not() {
        let schedule = ArrivalSchedule::new(
            10.0,
            &[RateStage {
                duration: Duration::from_secs(2),
                rate: 10.0,
            }],
        );
        let mix = JourneyMix::new([1]);
        let mut planned = PlannedArrivals::new(schedule, mix, 1, 2);
        // Worker 0 (even arrivals) stopped at arrival 6; worker 1 went on.
        let first = planned.second(0, &[Some(6), None]);
        assert_eq!(first.planned, vec![10]);
        assert_eq!(first.stopped, vec![2], "arrivals 6 and 8");
        let second = planned.second(1, &[Some(6), None]);
        assert_eq!(second.stopped, vec![5], "10, 12, 14, 16, 18");
        assert!(second.has_unstopped());
        assert_eq!(planned.next_second(), None);
    }
}
