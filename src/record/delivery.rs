//! Was the planned load delivered? The one rule, used for every window's verdicts and for
//! the whole run: iterations the plan asked for that the generator dropped at the
//! in-flight cap or that never started for a reason that is a shortfall (a `unique`
//! feeder out of rows) may be at most 1 % of the iterations the run was meant to start.
//! Arrivals due after the run stopped and a journey whose feeder is used up by design
//! (`on_exhausted = "stop_journey"`) are not load the run was meant to deliver: they are
//! reported, and fail nothing.

use serde::{Deserialize, Serialize};

use crate::metrics::{NotStarted, NotStartedCounts};

/// The share of the iterations meant to start that may go undelivered before no verdict
/// resting on that load can be trusted.
pub(crate) const MAX_SHORTFALL_SHARE: f64 = 0.01;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Iterations planned (open model: the schedule's arrivals; closed: begun).
    pub planned: u64,
    /// Of those, the ones the run was meant to start: planned minus the ones not started
    /// for a reason that is not a shortfall.
    pub expected: u64,
    /// Dropped at the in-flight cap.
    pub dropped: u64,
    /// Not started for a reason that is a shortfall (a `unique` feeder out of rows).
    pub not_started: u64,
    /// `(dropped + not_started) / expected`.
    pub share: f64,
    pub delivered: bool,
}

impl Delivery {
    pub fn judge(planned: u64, dropped: u64, not_started: &NotStartedCounts) -> Delivery {
        let excused: u64 = NotStarted::ALL
            .iter()
            .filter(|r| !r.is_shortfall())
            .map(|r| not_started[r.index()])
            .sum();
        let short: u64 = NotStarted::ALL
            .iter()
            .filter(|r| r.is_shortfall())
            .map(|r| not_started[r.index()])
            .sum();
        let expected = planned.saturating_sub(excused);
        let share = if expected == 0 {
            0.0
        } else {
            (dropped + short) as f64 / expected as f64
        };
        Delivery {
            planned,
            expected,
            dropped,
            not_started: short,
            share,
            delivered: share <= MAX_SHORTFALL_SHARE,
        }
    }

    pub fn shortfall(&self) -> u64 {
        self.dropped + self.not_started
    }

    /// Why the load was not delivered, for people (also the verdicts' `reason_text`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.dropped > 0 {
            parts.push(format!("{} dropped at the in-flight cap", self.dropped));
        }
        if self.not_started > 0 {
            parts.push(format!(
                "{} not started (a unique feeder had no row left)",
                self.not_started
            ));
        }
        format!(
            "{} of {} iterations meant to start were not delivered ({:.1} %, limit {:.0} %): {}; \
             no objective resting on this load can be judged",
            self.shortfall(),
            self.expected,
            self.share * 100.0,
            MAX_SHORTFALL_SHARE * 100.0,
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(exhausted: u64, journey_stopped: u64, stopped: u64) -> NotStartedCounts {
        let mut counts = [0; NotStarted::COUNT];
        counts[NotStarted::FeederExhausted.index()] = exhausted;
        counts[NotStarted::JourneyStopped.index()] = journey_stopped;
        counts[NotStarted::Stopped.index()] = stopped;
        counts
    }

    #[test]
    fn the_shortfall_is_measured_against_the_load_meant_to_start() {
        // 10 planned, 6 found the feeder empty: 60 %.
        let feeder = Delivery::judge(10, 0, &reasons(6, 0, 0));
        assert!(!feeder.delivered);
        assert!((feeder.share - 0.6).abs() < 1e-9);
        assert!(
            feeder.describe().contains("6 of 10"),
            "{}",
            feeder.describe()
        );
        // 1 % is still delivered, past it is not.
        assert!(Delivery::judge(1_000, 10, &reasons(0, 0, 0)).delivered);
        assert!(!Delivery::judge(1_000, 6, &reasons(5, 0, 0)).delivered);
        // Arrivals due after a stop and a journey used up by design are not a shortfall,
        // and do not dilute one either: 2 dropped of the 100 meant to start.
        let stopped = Delivery::judge(10_100, 2, &reasons(0, 5_000, 5_000));
        assert_eq!(stopped.expected, 100);
        assert!(!stopped.delivered, "{stopped:?}");
        // Nothing meant to start: nothing undelivered.
        assert!(Delivery::judge(0, 0, &reasons(0, 0, 0)).delivered);
    }
}
