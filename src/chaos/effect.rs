//! A fault's effect window ends when its target is *observed* healthy again, not when the
//! undo ran: a killed backend's restart time belongs to the fault.
//!
//! After a held fault is recovered, or at once after an instantaneous action, the timeline
//! spawns one `watch` per target: it asks the target's backend (its `Probe`) every
//! `POLL` until the answer is yes (`ended`), the fault's `effect` has passed
//! (`not_healthy_again`, the window closed at that deadline), or the run's stop token fires
//! (one last check, else `not_healthy_again` at the run's end). Every wait is interruptible.

use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::lifecycle::Probe;
use super::outcome::TargetEnd;

/// How often a target is asked whether it is healthy again.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// How long one health probe may take before it counts as "not yet".
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One target's window to watch.
pub(crate) struct Watch<P: Probe> {
    /// Asks the target's backend, on the connections the timeline's backends opened.
    pub probe: P,
    /// What "healthy again" means for the target; `None`: it is as soon as recovered.
    pub check: Option<P::Check>,
    /// The run's start: offsets are from here.
    pub run_start: Instant,
    /// Where the window closes if the target is not healthy by then (`effect` after the
    /// recover, or after the apply of an instantaneous action); `None`: the run's end.
    pub deadline: Option<Instant>,
    /// For messages: "recovery" or "apply".
    pub since: &'static str,
    pub effect: Option<Duration>,
    pub target: String,
}

impl<P: Probe> Watch<P> {
    fn offset(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.run_start).as_millis() as u64
    }

    /// Polls until healthy, the deadline, or `stop` (then one last check).
    pub(crate) async fn run(mut self, stop: CancellationToken) -> TargetEnd {
        let Some(check) = self.check.take() else {
            return self.healthy(Instant::now());
        };
        loop {
            let probe = tokio::select! {
                probe = timeout(PROBE_TIMEOUT, self.probe.healthy(&check)) => probe,
                _ = stop.cancelled() => break,
            };
            let last = match probe {
                Ok(Ok(true)) => return self.healthy(Instant::now()),
                Ok(Ok(false)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
            };
            let now = Instant::now();
            if let Some(deadline) = self.deadline
                && now >= deadline
            {
                let effect = self.effect.map(|e| format!("{e:?}")).unwrap_or_default();
                let reason = format!(
                    "not healthy again within effect = {effect} of its {}{}",
                    self.since,
                    last.map(|l| format!(" ({l})")).unwrap_or_default()
                );
                return self.closed(deadline, reason);
            }
            let wake = self.deadline.map_or(now + POLL, |d| d.min(now + POLL));
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = stop.cancelled() => break,
            }
        }
        // The run is over: one last look, else the window closes at the run's end.
        let at_stop = Instant::now();
        match timeout(PROBE_TIMEOUT, self.probe.healthy(&check)).await {
            Ok(Ok(true)) => self.healthy(at_stop),
            Ok(Err(e)) => self.closed(at_stop, format!("not healthy again by the run's end ({e})")),
            _ => self.closed(at_stop, "not healthy again by the run's end".to_string()),
        }
    }

    fn healthy(&self, at: Instant) -> TargetEnd {
        TargetEnd {
            target: self.target.clone(),
            at_ms: self.offset(at),
            healthy: true,
            reason: None,
        }
    }

    fn closed(&self, at: Instant, reason: String) -> TargetEnd {
        TargetEnd {
            target: self.target.clone(),
            at_ms: self.offset(at),
            healthy: false,
            reason: Some(reason),
        }
    }
}
