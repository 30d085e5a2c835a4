//! The clocks of the two load models: the loops that wait for each planned moment and act.
//! They take the action as a closure so tests can run them on paused tokio time and check
//! the exact moments against the plan.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::schedule::ArrivalSchedule;

/// Fires `launch(k, due)` for arrivals `first, first + stride, …` at their due times.
/// An arrival already late fires at once (its lateness is the caller's to record); nothing
/// is skipped to catch up. Returns early when `stop` is cancelled.
pub async fn drive_arrivals(
    schedule: &ArrivalSchedule,
    start: Instant,
    first: u64,
    stride: u64,
    stop: &CancellationToken,
    mut launch: impl FnMut(u64, Instant),
) {
    let mut k = first;
    while let Some(offset) = schedule.offset(k) {
        let due = start + offset;
        if due > Instant::now() {
            tokio::select! {
                _ = sleep_until(due) => {}
                _ = stop.cancelled() => return,
            }
        } else if stop.is_cancelled() {
            return;
        }
        launch(k, due);
        k += stride;
    }
}

/// Applies each `(offset, count)` change of the closed model's user count at its moment.
pub async fn drive_vus(
    changes: &[(Duration, usize)],
    start: Instant,
    stop: &CancellationToken,
    mut apply: impl FnMut(usize),
) {
    for &(offset, count) in changes {
        tokio::select! {
            _ = sleep_until(start + offset) => apply(count),
            _ = stop.cancelled() => return,
        }
    }
}
