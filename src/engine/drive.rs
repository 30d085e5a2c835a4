//! The clocks of the two load models: the loops that wait for each planned moment and act.
//! They take the action as a closure so tests can run them on paused tokio time and check
//! the exact moments against the plan.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::plan::schedule::ArrivalSchedule;

/// Fires `launch(k, due)` for arrivals `first, first + stride, …` at their due times.
/// An arrival already late fires at once (its lateness is the caller's to record); nothing
/// is skipped to catch up. Before waiting for an arrival its due instant is published in
/// `next_due` (the recorder keeps that second open). When `stop` is cancelled it returns
/// early, first calling `stopped(k)` with the first arrival it did not launch — while
/// `next_due` still holds that arrival's second open, so the caller records where its
/// share stopped before any second it covers is final.
#[allow(clippy::too_many_arguments)]
pub async fn drive_arrivals(
    schedule: &ArrivalSchedule,
    start: Instant,
    first: u64,
    stride: u64,
    stop: &CancellationToken,
    next_due: &Cell<Option<Instant>>,
    mut launch: impl FnMut(u64, Instant),
    stopped: impl FnOnce(u64),
) {
    let alarm = Alarm::new();
    let mut k = first;
    let mut unlaunched = None;
    while let Some(offset) = schedule.offset(k) {
        let due = start + offset;
        next_due.set(Some(due));
        if due > Instant::now() {
            tokio::select! {
                _ = alarm.wait_until(due) => {}
                _ = stop.cancelled() => {
                    unlaunched = Some(k);
                    break;
                }
            }
        } else if stop.is_cancelled() {
            unlaunched = Some(k);
            break;
        }
        launch(k, due);
        k += stride;
    }
    if let Some(k) = unlaunched {
        stopped(k);
    }
    next_due.set(None);
}

/// How far ahead of a due instant tokio's timer is asked to wake: it rounds up to the next
/// millisecond tick, so waking at `due` itself would make arrivals up to ~1 ms late —
/// lateness that would then be charged to the target as latency.
const COARSE_MARGIN: Duration = Duration::from_millis(2);
/// The last stretch is spun on the CPU: at most about this long.
const SPIN: Duration = Duration::from_micros(50);

/// Finishes waits precisely without burning a core: tokio's timer for the coarse part, then
/// a timerfd (nanosecond resolution; its expiry wakes the runtime's epoll at once) for the
/// last ~2 ms, then at most ~50 µs of spinning. Without a timerfd, the coarse timer alone.
struct Alarm {
    fd: Option<AsyncFd<TimerHandle>>,
}

/// A timerfd as the raw descriptor tokio's `AsyncFd` watches.
struct TimerHandle(TimerFd);

impl AsRawFd for TimerHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Alarm {
    fn new() -> Alarm {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()
        // SAFETY: `TimerHandle` owns the timerfd (an `OwnedFd` inside `TimerFd`) for as long
        // as the `AsyncFd` lives, and `as_raw_fd` always returns that same descriptor.
        .and_then(|timer| unsafe { AsyncFd::register(TimerHandle(timer)) }.ok());
        Alarm { fd }
    }

    async fn wait_until(&self, due: Instant) {
        let now = Instant::now();
        if due <= now {
            return;
        }
        if let Some(early) = due.checked_sub(COARSE_MARGIN)
            && early > now
        {
            sleep_until(early).await;
            if Instant::now() == early {
                // Exactly on the deadline: tokio's paused test clock, which only its own
                // timer moves.
                return sleep_until(due).await;
            }
        }
        let remaining = due.saturating_duration_since(Instant::now());
        match &self.fd {
            Some(fd) if remaining > SPIN => {
                if !Self::fire_after(fd, remaining - SPIN).await {
                    sleep_until(due).await;
                }
            }
            Some(_) => {}
            None => return sleep_until(due).await,
        }
        spin_until(due).await;
    }

    /// Arms the timerfd and waits for it; false if the timerfd failed.
    async fn fire_after(fd: &AsyncFd<TimerHandle>, after: Duration) -> bool {
        let expiration = Expiration::OneShot(TimeSpec::from_duration(after));
        if fd
            .get_ref()
            .0
            .set(expiration, TimerSetTimeFlags::empty())
            .is_err()
        {
            return false;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return false;
            };
            // Reading the expiry count clears the readiness; not expired yet: WouldBlock.
            match ready.try_io(|inner| inner.get_ref().0.wait().map_err(std::io::Error::from)) {
                Ok(Ok(())) => return true,
                Ok(Err(_)) => return false,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Spins the last microseconds to `due`. A clock that does not move between two reads is
/// tokio's paused test clock: then its timer finishes the wait.
async fn spin_until(due: Instant) {
    let mut last = None;
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if last == Some(now) {
            return sleep_until(due).await;
        }
        last = Some(now);
        std::hint::spin_loop();
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
