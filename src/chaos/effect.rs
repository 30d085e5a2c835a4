//! A fault's effect window ends when its target is *observed* healthy again, not when the
//! undo ran: a killed backend's restart time belongs to the fault.
//!
//! After a held fault is recovered, or at once after an instantaneous action, the timeline
//! spawns one `watch` per target: it asks the target's backend (`Backends::healthy`) every
//! `POLL` until the answer is yes (`ended`), the fault's `effect` has passed
//! (`not_healthy_again`, the window closed at that deadline), or the run's stop token fires
//! (one last check, else `not_healthy_again` at the run's end). Every wait is interruptible.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::backends::Backends;
use super::kube::PodSelector;
use super::outcome::TargetEnd;
use super::process::ProcessHealth;
use crate::plan::chaos::ChaosPlan;

/// How often a target is asked whether it is healthy again.
pub const POLL: Duration = Duration::from_millis(100);

/// How long one health probe may take before it counts as "not yet".
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What "healthy again" means for one target, captured before the fault changes it.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheck {
    /// Healthy as soon as the fault is recovered: proxy and firewall faults (the fault is
    /// gone with its rule).
    Recovered,
    /// A process: listening on its port again, or alive and not stopped.
    Process(ProcessHealth),
    /// A container: running, and `healthy` where it has a healthcheck.
    Container { id: String },
    /// Pods of a selector: as many Ready as before the fault.
    Pods {
        selector: PodSelector,
        ready_before: usize,
    },
    /// A deployment: its rollout done and ready replicas back to the spec.
    Deployment { namespace: String, name: String },
}

/// One target's window to watch.
pub struct Watch {
    pub plan: Arc<ChaosPlan>,
    pub platform: Arc<dyn super::ports::Platform>,
    pub check: HealthCheck,
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

impl Watch {
    fn offset(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.run_start).as_millis() as u64
    }

    /// Polls until healthy, the deadline, or `stop` (then one last check).
    pub async fn run(self, stop: CancellationToken) -> TargetEnd {
        let mut backends = Backends::new(&self.plan, &self.platform);
        loop {
            let probe = tokio::select! {
                probe = timeout(PROBE_TIMEOUT, backends.healthy(&self.check)) => probe,
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
        match timeout(PROBE_TIMEOUT, backends.healthy(&self.check)).await {
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
