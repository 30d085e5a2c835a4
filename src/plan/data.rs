//! The iteration's data, as pure functions of the run's seed: the iteration RNG and the
//! generators' values. The engine's journeys and verification's read-backs draw from the
//! same functions, so a seed replays both.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::GeneratorKind;

/// The RNG of iteration `number`: a pure function of the run's seed and the number, so the
/// same seed replays the same journeys, generator values and think times.
pub fn iteration_rng(seed: u64, number: u64) -> SmallRng {
    // SplitMix64 finalizer: neighbouring numbers get unrelated streams.
    let mut z = seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// A generator's next value.
pub fn generate(kind: &GeneratorKind, rng: &mut SmallRng) -> Value {
    match kind {
        GeneratorKind::Uuid => Value::String(
            uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string(),
        ),
        GeneratorKind::Int { min, max } => Value::from(rng.random_range(*min..=*max)),
        GeneratorKind::Pick(values) => values[rng.random_range(0..values.len())].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_rngs_are_reproducible_and_distinct() {
        let a: u64 = iteration_rng(42, 7).random();
        let b: u64 = iteration_rng(42, 7).random();
        let c: u64 = iteration_rng(42, 8).random();
        let d: u64 = iteration_rng(43, 7).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
