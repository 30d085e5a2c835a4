//! Kubernetes' guardrails: the namespace allow-list, and the one guard (`chaos/guard.rs`)
//! over a selector's pods, as pure functions over counts so every refusal is unit-tested
//! without a cluster. They run before the ledger is written and before any mutating call:
//! a refused fault changes nothing.

use serde::{Deserialize, Serialize};

use crate::chaos::ChaosError;
use crate::chaos::guard::{self, Fleet};
use crate::plan::chaos::Guard;
pub use crate::plan::chaos::MaxUnavailable;

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
            max_unavailable: guard.max_unavailable,
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
/// are down (by other faults) and `ready` are ready: the one guard (`chaos/guard.rs`).
pub fn check_take_down(
    guard: &KubeGuard,
    ready: usize,
    already_down: usize,
    wanted: usize,
) -> Result<(), ChaosError> {
    let limits = Guard {
        max_unavailable: guard.max_unavailable,
        allow_last: guard.allow_last_replica,
    };
    let fleet = Fleet {
        ready,
        down: already_down,
    };
    guard::check(&limits, fleet, wanted, "pod").map_err(ChaosError::Refused)
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
    fn scaling_down_counts_the_difference() {
        let g = guard(MaxUnavailable::Count(1), false);
        assert!(check_scale(&g, 3, 2).is_ok());
        assert!(
            check_scale(&g, 3, 5).is_ok(),
            "scaling up takes nothing down"
        );
        assert!(refused(check_scale(&g, 3, 1)).contains("taking 2 pod(s) down"));
        let wide = guard(MaxUnavailable::Count(3), false);
        assert!(refused(check_scale(&wide, 3, 0)).contains("would leave none"));
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
