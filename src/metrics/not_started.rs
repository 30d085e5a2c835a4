//! Why a planned iteration never started: the `not_started` term of the accounting
//! identity `planned = started + dropped + not_started`. One fixed list, so counters are
//! arrays.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NotStarted {
    /// A `unique` feeder had no row left (`on_exhausted = "fail"`, the default): load the
    /// plan asked for and the run did not deliver.
    FeederExhausted,
    /// A `unique` feeder had no row left and the scenario says that ends the journey
    /// (`on_exhausted = "stop_journey"`): reported, not a shortfall.
    JourneyStopped,
    /// Due after the run stopped (an abort objective, a signal): reported, not a
    /// shortfall (the run is already incomplete).
    Stopped,
}

impl NotStarted {
    pub(crate) const COUNT: usize = 3;
    pub(crate) const ALL: [NotStarted; Self::COUNT] = [
        NotStarted::FeederExhausted,
        NotStarted::JourneyStopped,
        NotStarted::Stopped,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            NotStarted::FeederExhausted => "feeder_exhausted",
            NotStarted::JourneyStopped => "journey_stopped",
            NotStarted::Stopped => "stopped",
        }
    }

    /// The series.csv column of this reason.
    pub(crate) fn column(self) -> &'static str {
        match self {
            NotStarted::FeederExhausted => "not_started_feeder_exhausted",
            NotStarted::JourneyStopped => "not_started_journey_stopped",
            NotStarted::Stopped => "not_started_stopped",
        }
    }

    /// Whether iterations not started this way are load the run failed to deliver (and so
    /// count toward `load_not_delivered`), rather than load the plan itself gave up.
    pub(crate) fn is_shortfall(self) -> bool {
        match self {
            NotStarted::FeederExhausted => true,
            NotStarted::JourneyStopped | NotStarted::Stopped => false,
        }
    }
}

/// Counts per reason.
pub(crate) type NotStartedCounts = [u64; NotStarted::COUNT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, reason) in NotStarted::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
