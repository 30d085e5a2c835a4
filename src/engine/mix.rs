//! Which journey an iteration runs, as a pure function of the seed and the iteration's
//! number: what the workers do, and what the accounting recomputes from the plan alone.

use rand::Rng;
use rand::rngs::SmallRng;

use crate::plan::JourneyPlan;
use crate::plan::data::iteration_rng;

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
