//! The iteration's data, as pure functions of the run's seed: the iteration RNG and the
//! generators' values. The engine's journeys and verification's read-backs draw from the
//! same functions, so a seed replays both.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The RNG of iteration `number`: a pure function of the run's seed and the number, so the
/// same seed replays the same journeys, generator values and think times.
pub(crate) fn iteration_rng(seed: u64, number: u64) -> SmallRng {
    // SplitMix64 finalizer: neighbouring numbers get unrelated streams.
    let mut z = seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// A generator's next value.
pub(crate) fn generate(kind: &GeneratorKind, rng: &mut SmallRng) -> Value {
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

#[derive(Debug, Clone)]
pub struct Feeder {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub order: FeederOrder,
    /// What an iteration does when a `unique` feeder has no row left for it.
    pub on_exhausted: OnExhausted,
}

/// When a `unique` feeder has no row left (`on_exhausted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// The iteration does not start (`not_started: feeder_exhausted`), and that counts as
    /// load the run failed to deliver (`load_not_delivered` past 1 %).
    Fail,
    /// The iteration does not start (`not_started: journey_stopped`): reported, and no
    /// window fails for it — the journey simply has no more work.
    StopJourney,
    /// Rows are used again from the first, as `sequential` does (warned the first time).
    Wrap,
}

impl OnExhausted {
    pub fn parse(text: &str) -> Result<OnExhausted, String> {
        match text {
            "fail" => Ok(OnExhausted::Fail),
            "stop_journey" => Ok(OnExhausted::StopJourney),
            "wrap" => Ok(OnExhausted::Wrap),
            other => Err(format!(
                "unknown on_exhausted `{other}` (expected \"fail\", \"stop_journey\" or \"wrap\")"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OnExhausted::Fail => "fail",
            OnExhausted::StopJourney => "stop_journey",
            OnExhausted::Wrap => "wrap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeederOrder {
    Sequential,
    Random,
    Unique,
}

impl FeederOrder {
    pub fn parse(text: &str) -> Result<FeederOrder, String> {
        match text {
            "sequential" => Ok(FeederOrder::Sequential),
            "random" => Ok(FeederOrder::Random),
            "unique" => Ok(FeederOrder::Unique),
            other => Err(format!(
                "unknown feeder order `{other}` (expected \"sequential\", \"random\" or \"unique\")"
            )),
        }
    }
}

impl std::fmt::Display for FeederOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeederOrder::Sequential => "in order",
            FeederOrder::Random => "at random",
            FeederOrder::Unique => "each row once",
        })
    }
}

impl std::fmt::Display for GeneratorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeneratorKind::Uuid => write!(f, "a random UUID"),
            GeneratorKind::Int { min, max } => write!(f, "an integer from {min} to {max}"),
            GeneratorKind::Pick(values) => {
                let shown: Vec<String> = values
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                write!(f, "one of {} values ({})", values.len(), shown.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generator {
    pub name: String,
    pub kind: GeneratorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GeneratorKind {
    Uuid,
    Int { min: i64, max: i64 },
    Pick(Vec<serde_json::Value>),
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
