//! Which journey an iteration runs, as a pure function of the seed and the iteration's
//! number: what the workers do, and what the accounting recomputes from the plan alone.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::plan::JourneyPlan;

/// The RNG of iteration `number`: a pure function of the run's seed and the number, so the
/// same seed replays the same journeys, generator values and think times.
pub fn iteration_rng(seed: u64, number: u64) -> SmallRng {
    // SplitMix64 finalizer: neighbouring numbers get unrelated streams.
    let mut z = seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// The journeys' weights: an iteration's first random draw picks its journey.
#[derive(Debug, Clone)]
pub struct JourneyMix {
    weights: Vec<u64>,
    total: u64,
}

impl JourneyMix {
    pub fn of(journeys: &[JourneyPlan]) -> JourneyMix {
        JourneyMix::new(journeys.iter().map(|j| j.weight))
    }

    pub fn new(weights: impl IntoIterator<Item = u32>) -> JourneyMix {
        let weights: Vec<u64> = weights.into_iter().map(u64::from).collect();
        JourneyMix {
            total: weights.iter().sum(),
            weights,
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The journey of the iteration whose RNG this is (its first draw; the iteration goes
    /// on drawing from the same RNG).
    pub fn pick(&self, rng: &mut SmallRng) -> usize {
        if self.weights.len() <= 1 {
            return 0;
        }
        let mut ticket = rng.random_range(0..self.total);
        for (index, weight) in self.weights.iter().enumerate() {
            if ticket < *weight {
                return index;
            }
            ticket -= weight;
        }
        self.weights.len() - 1
    }

    /// The journey iteration `number` of a run seeded `seed` runs.
    pub fn journey_of(&self, seed: u64, number: u64) -> usize {
        self.pick(&mut iteration_rng(seed, number))
    }
}
