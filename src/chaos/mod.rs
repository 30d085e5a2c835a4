//! Chaos: faults on the run's timeline, injected and always recovered.
//!
//! Every backend implements one lifecycle (`lifecycle::FaultBackend`, after chaos-mesh
//! and toxiproxy): validate (values only, no I/O) → resolve targets → plan (the undo, the
//! effect — held, instantaneous or permanent — and what "healthy again" means; nothing
//! changes) → the caller writes the undo to the ledger (`ledger.rs`) → apply → observe the
//! effect until healthy again (`effect.rs`) → recover from the undo alone (idempotent; a
//! target that no longer exists counts as recovered).
//!
//! The core — `lifecycle.rs` (the traits), `runner/` (the timeline), `effect.rs`,
//! `ledger.rs`, `recover.rs`, `guard.rs`, `outcome.rs`, `registry.rs`, `ports.rs` — is
//! generic over `lifecycle::Dispatch` and names no backend. `backends.rs` is the one file
//! that names them all: the ledger's undo enum, the health-check enum, the dispatcher, the
//! prober the effect watches share, recovery, and the validator's static check.
//!
//! Backends, each depending only on the core: `process` (local processes), `docker`
//! (containers through the Engine API), `kube` (pods and deployments through the Kubernetes
//! API), `network` (the user-space TCP fault proxy in `proxy/`: latency, bandwidth, reset,
//! blackhole, slow close, refuse), `firewall` (iptables rules on loopback or in a
//! container's namespace, entered through the `ports::Containers` port: packet loss,
//! partition, TCP reset).

pub(crate) mod backends;
pub(crate) mod docker;
pub(crate) mod effect;
pub(crate) mod firewall;
pub(crate) mod guard;
pub(crate) mod kube;
pub(crate) mod ledger;
pub(crate) mod lifecycle;
pub(crate) mod network;
pub(crate) mod outcome;
pub(crate) mod ports;
pub(crate) mod process;
pub(crate) mod proxy;
pub(crate) mod recover;
pub(crate) mod registry;
pub(crate) mod runner;
pub(crate) mod target_id;

pub(crate) use target_id::TargetId;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::chaos::BackendKind;

/// One thing a fault can hit: a process, a container, a pod, a proxied link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "target_id::TargetRecord", into = "target_id::TargetRecord")]
pub struct Target {
    /// Which backend owns it.
    pub backend: crate::plan::chaos::BackendKind,
    /// Stable identity within the backend, in the backend's one form.
    pub id: TargetId,
    /// What a human calls it: an instance name, a container name.
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Why a chaos operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The backend could not be reached or refused the call.
    #[error("{backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    /// A guardrail refused the fault before anything changed.
    #[error("guardrail: {0}")]
    Refused(String),
    /// A selector matched nothing.
    #[error("no target matches {0}")]
    NoTarget(String),
}

impl ChaosError {
    /// A backend's failure, named by its kind in the message.
    pub(crate) fn backend(kind: BackendKind, message: impl std::fmt::Display) -> ChaosError {
        ChaosError::Backend {
            backend: kind.name(),
            message: message.to_string(),
        }
    }
}
