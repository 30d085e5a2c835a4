//! The network backend: `{ proxy = "name" }` targets are fault proxies (`loadgen proxy`)
//! that run in their own processes — the local stack and the Compose platform put one
//! between the backends and Postgres — listed by the platform (the `Platform` port) with
//! their control API. A fault is a
//! `PUT /fault` on that API; its undo is a `DELETE /fault`, which needs nothing but the
//! address, so `loadgen recover` can clear a proxy after a crashed run.

use std::convert::Infallible;
use std::io::ErrorKind;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::lifecycle::{Candidate, FaultBackend, Occasion, Planned};
use super::ports::Platform;
use super::proxy::{Direction, Fault, remote_clear, remote_set};
use super::{ChaosError, Target};
use crate::chaos::TargetId;
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Selector};
use crate::util::glob::glob_match;

/// What clears a proxy's fault, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyUndo {
    /// The proxy's control API (`http://127.0.0.1:PORT`).
    pub control: String,
    /// The run's owner token: only it may change or clear the fault it set. Older
    /// ledgers have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

pub(crate) struct NetworkBackend {
    /// Where the platform lists its proxies, read at every resolve (a restarted stack has
    /// new ports).
    platform: Arc<dyn Platform>,
}

impl NetworkBackend {
    pub(crate) fn new(platform: Arc<dyn Platform>) -> NetworkBackend {
        NetworkBackend { platform }
    }

    /// The stack's proxies whose name matches, sorted by name. A proxy is a link, not a
    /// replica: it counts as up.
    async fn find(&self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        let Selector::Proxy { name } = selector else {
            return Err(ChaosError::backend(
                BackendKind::Proxy,
                format!("{selector} is not a proxy selector"),
            ));
        };
        let links = self
            .platform
            .proxy_links()
            .await
            .map_err(|e| ChaosError::backend(BackendKind::Proxy, e))?;
        let mut found: Vec<(Target, bool)> = links
            .iter()
            .filter(|link| glob_match(name, &link.name))
            .map(|link| {
                let target = Target {
                    backend: BackendKind::Proxy,
                    id: TargetId::Link(link.control.clone()),
                    name: link.name.clone(),
                    labels: Default::default(),
                };
                (target, true)
            })
            .collect();
        found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(found)
    }
}

impl FaultBackend for NetworkBackend {
    type Undo = ProxyUndo;
    /// A link is healthy as soon as its fault is cleared: nothing to check.
    type Check = Infallible;

    /// The proxy's own rules (maximum delay, non-zero rates, whole milliseconds).
    fn validate(action: &Action, _selector: &Selector) -> Result<(), String> {
        fault_for(action).map(drop).map_err(|e| e.to_string())
    }

    async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        self.find(selector).await
    }

    /// Held until cleared; the undo is the control API's address alone.
    async fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        _occasion: Occasion,
    ) -> Result<Planned<Option<ProxyUndo>, Infallible>, ChaosError> {
        fault_for(&fault.action)?;
        Ok(Planned::held(ProxyUndo {
            control: target.id.to_string(),
            owner: Some(run_owner().to_string()),
        }))
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned<Option<ProxyUndo>, Infallible>,
    ) -> Result<(), ChaosError> {
        let fault = fault_for(action)?;
        let owner = planned.undo.as_ref().and_then(|u| u.owner.as_deref());
        remote_set(&target.id.to_string(), &fault, owner)
            .await
            .map_err(|e| ChaosError::backend(BackendKind::Proxy, format!("{}: {e}", target.name)))
    }

    async fn healthy(&mut self, check: &Infallible) -> Result<bool, ChaosError> {
        match *check {}
    }
}

/// This run's owner token (one per loadgen process): the faults it sets on a proxy are
/// its own, and another run's token can neither change nor clear them.
pub(crate) fn run_owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| format!("{:032x}", rand::random::<u128>()))
}

/// The proxy fault a scenario action stands for. Both directions: a scenario's latency is
/// what a round trip through the link costs, each way.
pub(crate) fn fault_for(action: &Action) -> Result<Fault, ChaosError> {
    let fault = match *action {
        Action::Latency { delay, jitter } => Fault::Latency {
            delay,
            jitter,
            direction: Direction::Both,
        },
        Action::Bandwidth { bytes_per_second } => Fault::Bandwidth {
            bytes_per_second,
            direction: Direction::Both,
        },
        Action::Reset => Fault::Reset,
        Action::Blackhole => Fault::Blackhole,
        Action::SlowClose { delay } => Fault::SlowClose { delay },
        Action::Refuse => Fault::Refuse,
        ref other => {
            return Err(ChaosError::backend(
                BackendKind::Proxy,
                format!("{other:?} is not a network action"),
            ));
        }
    };
    // The proxy's wire form counts whole milliseconds: refuse what it would truncate.
    for (what, value) in durations_of(action) {
        if value.subsec_nanos() % 1_000_000 != 0 {
            return Err(ChaosError::backend(
                BackendKind::Proxy,
                format!(
                    "{what} must be whole milliseconds (the proxy counts in ms), not {value:?}"
                ),
            ));
        }
    }
    fault
        .validate()
        .map_err(|e| ChaosError::backend(BackendKind::Proxy, e.to_string()))?;
    Ok(fault)
}

fn durations_of(action: &Action) -> Vec<(&'static str, std::time::Duration)> {
    match *action {
        Action::Latency { delay, jitter } => vec![("latency", delay), ("jitter", jitter)],
        Action::SlowClose { delay } => vec![("delay", delay)],
        _ => Vec::new(),
    }
}

/// Clears the proxy's fault. A proxy that is no longer running holds no fault: recovered.
pub(crate) async fn recover(undo: &ProxyUndo) -> Result<(), ChaosError> {
    let ProxyUndo { control, owner } = undo;
    match remote_clear(control, owner.as_deref()).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(ChaosError::backend(
            BackendKind::Proxy,
            format!(
                "{e}; clear it by hand with `curl -X DELETE -H 'X-Loadgen-Owner: {}' {control}/fault`, or stop that proxy",
                owner.as_deref().unwrap_or("")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn scenario_actions_become_proxy_faults_both_ways() {
        let ms = Duration::from_millis;
        assert_eq!(
            fault_for(&Action::Latency {
                delay: ms(20),
                jitter: ms(5)
            })
            .unwrap(),
            Fault::Latency {
                delay: ms(20),
                jitter: ms(5),
                direction: Direction::Both
            }
        );
        assert_eq!(
            fault_for(&Action::Bandwidth {
                bytes_per_second: 65536
            })
            .unwrap(),
            Fault::Bandwidth {
                bytes_per_second: 65536,
                direction: Direction::Both
            }
        );
        assert_eq!(fault_for(&Action::Refuse).unwrap(), Fault::Refuse);
        assert_eq!(
            fault_for(&Action::SlowClose { delay: ms(300) }).unwrap(),
            Fault::SlowClose { delay: ms(300) }
        );
    }

    #[test]
    fn impossible_values_and_foreign_actions_are_errors() {
        let jitter_above_delay = Action::Latency {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(9),
        };
        assert!(
            fault_for(&jitter_above_delay)
                .unwrap_err()
                .to_string()
                .contains("must not exceed")
        );
        assert!(fault_for(&Action::Kill).is_err());
        let sub_millisecond = Action::Latency {
            delay: Duration::from_micros(1500),
            jitter: Duration::ZERO,
        };
        assert!(
            fault_for(&sub_millisecond)
                .unwrap_err()
                .to_string()
                .contains("whole milliseconds")
        );
    }
}
