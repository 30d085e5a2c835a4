//! Guardrails for pod faults, as pure functions over counts so every refusal is unit-tested
//! without a cluster. They run before the ledger is written and before any mutating call:
//! a refused fault changes nothing.

use serde::{Deserialize, Serialize};

use crate::chaos::ChaosError;
use crate::chaos::spec::Guard;

/// How many of a selector's ready pods a fault may take down at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum MaxUnavailable {
    Count(u32),
    /// Percent of the ready pods, rounded down (as Kubernetes rounds a deployment's
    /// `maxUnavailable`), so "25 %" of 3 pods allows none rather than one.
    Percent(f64),
}

impl MaxUnavailable {
    /// The number of pods this limit allows down when `ready` pods are ready.
    pub fn allowed(&self, ready: usize) -> usize {
        match *self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => {
                let p = p.clamp(0.0, 100.0);
                ((ready as f64) * p / 100.0).floor() as usize
            }
        }
    }
}

impl std::fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxUnavailable::Count(n) => write!(f, "{n}"),
            MaxUnavailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The limits a Kubernetes fault must respect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubeGuard {
    /// Namespaces faults may touch; empty allows none (staging must opt in explicitly).
    pub namespaces: Vec<String>,
    pub max_unavailable: MaxUnavailable,
    /// Whether the last ready replica may be taken down (a full-outage drill).
    pub allow_last_replica: bool,
}

impl KubeGuard {
    /// The guard a scenario's `[chaos]` allow-list and a fault's `Guard` describe.
    pub fn from_spec(namespaces: &[String], guard: &Guard) -> KubeGuard {
        KubeGuard {
            namespaces: namespaces.to_vec(),
            max_unavailable: MaxUnavailable::Count(guard.max_unavailable),
            allow_last_replica: guard.allow_last,
        }
    }
}

/// The namespace must be on the scenario's allow-list.
pub fn check_namespace(guard: &KubeGuard, namespace: &str) -> Result<(), ChaosError> {
    if guard.namespaces.iter().any(|n| n == namespace) {
        return Ok(());
    }
    let allowed = if guard.namespaces.is_empty() {
        "the allow-list is empty".to_string()
    } else {
        format!("allowed: {}", guard.namespaces.join(", "))
    };
    Err(ChaosError::Refused(format!(
        "namespace {namespace} is not in the scenario's kube namespaces ({allowed})"
    )))
}

/// A selector that matched nothing is an error, never a silent no-op.
pub fn check_matched(what: &str, matched: usize) -> Result<(), ChaosError> {
    if matched == 0 {
        return Err(ChaosError::NoTarget(what.to_string()));
    }
    Ok(())
}

/// Whether taking `wanted` more pods down is allowed while `already_down` of the selector
/// are down (by other faults) and `ready` are ready. The refusal names every number.
pub fn check_take_down(
    guard: &KubeGuard,
    ready: usize,
    already_down: usize,
    wanted: usize,
) -> Result<(), ChaosError> {
    if wanted == 0 {
        return Ok(());
    }
    let allowed = guard.max_unavailable.allowed(ready + already_down);
    if wanted + already_down > allowed {
        return Err(ChaosError::Refused(format!(
            "taking {wanted} pod(s) down with {already_down} already down exceeds \
             max_unavailable = {} ({allowed} of {} ready pod(s))",
            guard.max_unavailable,
            ready + already_down
        )));
    }
    if !guard.allow_last_replica && wanted >= ready {
        return Err(ChaosError::Refused(format!(
            "taking {wanted} of {ready} ready pod(s) down would leave none ready; \
             set allow_last_replica = true to drill a full outage"
        )));
    }
    Ok(())
}

/// Scaling a deployment from its ready pods down to `replicas` takes the difference down.
pub fn check_scale(guard: &KubeGuard, ready: usize, replicas: u32) -> Result<(), ChaosError> {
    let wanted = ready.saturating_sub(replicas as usize);
    check_take_down(guard, ready, 0, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: MaxUnavailable, allow_last: bool) -> KubeGuard {
        KubeGuard {
            namespaces: vec!["shop".into()],
            max_unavailable: max,
            allow_last_replica: allow_last,
        }
    }

    fn refused(result: Result<(), ChaosError>) -> String {
        match result {
            Err(ChaosError::Refused(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn namespaces_outside_the_allow_list_are_refused() {
        let g = guard(MaxUnavailable::Count(1), false);
        assert!(check_namespace(&g, "shop").is_ok());
        let message = refused(check_namespace(&g, "kube-system"));
        assert!(message.contains("kube-system") && message.contains("allowed: shop"));
        let empty = KubeGuard {
            namespaces: vec![],
            ..g
        };
        assert!(refused(check_namespace(&empty, "shop")).contains("allow-list is empty"));
    }

    #[test]
    fn max_unavailable_counts_and_percents() {
        assert_eq!(MaxUnavailable::Count(2).allowed(10), 2);
        assert_eq!(MaxUnavailable::Percent(50.0).allowed(3), 1);
        assert_eq!(MaxUnavailable::Percent(25.0).allowed(3), 0);
        assert_eq!(MaxUnavailable::Percent(100.0).allowed(4), 4);
        assert_eq!(MaxUnavailable::Percent(250.0).allowed(4), 4);

        let g = guard(MaxUnavailable::Count(1), false);
        assert!(check_take_down(&g, 3, 0, 1).is_ok());
        let message = refused(check_take_down(&g, 2, 1, 1));
        assert!(message.contains("1 already down"), "{message}");
        assert!(
            message.contains("max_unavailable = 1 (1 of 3 ready"),
            "{message}"
        );

        let pct = guard(MaxUnavailable::Percent(25.0), false);
        let message = refused(check_take_down(&pct, 3, 0, 1));
        assert!(
            message.contains("max_unavailable = 25% (0 of 3"),
            "{message}"
        );
    }

    #[test]
    fn the_last_ready_replica_needs_explicit_consent() {
        let g = guard(MaxUnavailable::Count(5), false);
        let message = refused(check_take_down(&g, 1, 0, 1));
        assert!(message.contains("1 of 1 ready") && message.contains("allow_last_replica"));
        let outage = guard(MaxUnavailable::Count(5), true);
        assert!(check_take_down(&outage, 1, 0, 1).is_ok());
        assert!(check_take_down(&outage, 3, 0, 3).is_ok());
    }

    #[test]
    fn scaling_down_counts_the_difference() {
        let g = guard(MaxUnavailable::Count(1), false);
        assert!(check_scale(&g, 3, 2).is_ok());
        assert!(
            check_scale(&g, 3, 5).is_ok(),
            "scaling up takes nothing down"
        );
        assert!(refused(check_scale(&g, 3, 1)).contains("taking 2 pod(s) down"));
        let wide = guard(MaxUnavailable::Count(3), false);
        assert!(refused(check_scale(&wide, 3, 0)).contains("leave none ready"));
    }

    #[test]
    fn nothing_matched_is_no_target() {
        assert!(matches!(
            check_matched("pods app=api in shop", 0),
            Err(ChaosError::NoTarget(s)) if s == "pods app=api in shop"
        ));
        assert!(check_matched("x", 2).is_ok());
    }
}
