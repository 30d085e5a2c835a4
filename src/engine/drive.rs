//! The clocks of the two load models: the loops that wait for each planned moment and act.
//! They take the action as a closure so tests can run them on paused tokio time and check
//! the exact moments against the plan.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::schedule::ArrivalSchedule;

/// Fires `launch(k, due)` for arrivals `first, first + stride, …` at their due times.
/// An arrival already late fires at once (its lateness is the caller's to record); nothing
/// is skipped to catch up. Before waiting for an arrival its due instant is published in
/// `next_due` (the recorder keeps that second open); returns early when `stop` is
/// cancelled.
pub async fn drive_arrivals(
    schedule: &ArrivalSchedule,
    start: Instant,
    first: u64,
    stride: u64,
    stop: &CancellationToken,
    next_due: &Cell<Option<Instant>>,
    mut launch: impl FnMut(u64, Instant),
) {
    let mut k = first;
    while let Some(offset) = schedule.offset(k) {
        let due = start + offset;
        next_due.set(Some(due));
        if due > Instant::now() {
            tokio::select! {
                _ = wait_until(due) => {}
                _ = stop.cancelled() => break,
            }
        } else if stop.is_cancelled() {
            break;
        }
        launch(k, due);
        k += stride;
    }
    next_due.set(None);
}

/// How far ahead of a due instant the timer is asked to wake: tokio's timer rounds up to
/// the next millisecond tick, so waking at `due` itself would make arrivals ~1 ms late,
/// lateness that would then be charged to the target as latency.
const WAKE_EARLY: Duration = Duration::from_micros(1_500);
/// The last stretch is spun on the CPU rather than yielded: at most this long.
const SPIN: Duration = Duration::from_micros(100);

/// Sleeps until `due` precisely: the timer wakes a little early, the rest of the wait
/// yields to the worker's other tasks, and only the last ~100 µs spin.
async fn wait_until(due: Instant) {
    if let Some(early) = due.checked_sub(WAKE_EARLY)
        && early > Instant::now()
    {
        sleep_until(early).await;
    }
    let mut last = None;
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if last == Some(now) {
            // A clock that does not move across a yield is tokio's paused test clock: only
            // the timer advances it.
            return sleep_until(due).await;
        }
        last = Some(now);
        if due - now > SPIN {
            tokio::task::yield_now().await;
        } else {
            std::hint::spin_loop();
        }
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
