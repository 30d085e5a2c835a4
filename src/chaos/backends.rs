//! The backends behind one lifecycle (`lifecycle.rs`), dispatched by their typed kind:
//! every match here is exhaustive, so a new action or selector cannot fall through to "no
//! backend". Backends that need a connection (Docker, Kubernetes) connect on first use.

use std::time::Duration;

use std::sync::Arc;

use super::docker::DockerFaults;
use super::effect::HealthCheck;
use super::firewall::{FirewallBackend, Programs};
use super::kube::{KubeFaults, Pin};
use super::lifecycle::{Candidate, Confirming, FaultBackend, Occasion, Planned};
use super::network::NetworkBackend;
use super::ports::Platform;
use super::process::ProcessBackend;
use super::undo::Undo;
use super::{ChaosError, Target};
use crate::plan::chaos::{Action, BackendKind, ChaosPlan, FaultSpec, Selector};

pub struct Backends {
    process: ProcessBackend,
    network: NetworkBackend,
    firewall: FirewallBackend,
    docker: DockerFaults,
    kube: KubeFaults,
}

/// Whether `action` on `selector`'s targets is one the backend can perform, from the values
/// alone (no I/O): the scenario validator's check.
pub fn validate(action: &Action, selector: &Selector) -> Result<(), String> {
    if action.backend() != selector.backend() {
        return Err(format!(
            "{action:?} is a {} action; {selector} is a {} target",
            action.backend(),
            selector.backend()
        ));
    }
    match action.backend() {
        BackendKind::Process => ProcessBackend::validate(action, selector),
        BackendKind::Docker => DockerFaults::validate(action, selector),
        BackendKind::Kube => KubeFaults::validate(action, selector),
        BackendKind::Proxy => NetworkBackend::validate(action, selector),
        BackendKind::Firewall => FirewallBackend::validate(action, selector),
    }
}

/// The cluster the plan may touch (its `kube_context` / `kube_server`).
pub fn kube_pin(plan: &ChaosPlan) -> Pin {
    Pin {
        context: plan.kube_context.clone(),
        server: plan.kube_server.clone(),
    }
}

impl Backends {
    /// The backends for `plan`, on the platform the composition root hands in.
    pub fn new(plan: &ChaosPlan, platform: &Arc<dyn Platform>) -> Backends {
        let docker = || DockerFaults::new(plan.docker_host.clone(), platform.container_scope());
        Backends {
            process: ProcessBackend::new(platform.clone()),
            network: NetworkBackend::new(platform.clone()),
            firewall: FirewallBackend::new(Programs::default(), docker()),
            docker: docker(),
            kube: KubeFaults::new(
                plan.kube_api.clone(),
                kube_pin(plan),
                plan.kube_namespaces.clone(),
            ),
        }
    }

    /// The selector's targets, sorted by name, each with whether it is up.
    pub async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        match selector.backend() {
            BackendKind::Process => self.process.resolve(selector).await,
            BackendKind::Docker => self.docker.resolve(selector).await,
            BackendKind::Kube => self.kube.resolve(selector).await,
            BackendKind::Proxy => self.network.resolve(selector).await,
            BackendKind::Firewall => self.firewall.resolve(selector).await,
        }
    }

    /// Why `fault` must not run on any of `candidates`, if it must not.
    pub fn refusal(&mut self, fault: &FaultSpec, candidates: &[Candidate]) -> Option<String> {
        match fault.action.backend() {
            BackendKind::Process => self.process.refusal(fault, candidates),
            BackendKind::Docker => self.docker.refusal(fault, candidates),
            BackendKind::Kube => self.kube.refusal(fault, candidates),
            BackendKind::Proxy => self.network.refusal(fault, candidates),
            BackendKind::Firewall => self.firewall.refusal(fault, candidates),
        }
    }

    /// The step for `target`: its undo, effect and health check. Changes nothing.
    pub async fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        occasion: Occasion,
    ) -> Result<Planned, ChaosError> {
        match fault.action.backend() {
            BackendKind::Process => self.process.plan(target, fault, occasion).await,
            BackendKind::Docker => self.docker.plan(target, fault, occasion).await,
            BackendKind::Kube => self.kube.plan(target, fault, occasion).await,
            BackendKind::Proxy => self.network.plan(target, fault, occasion).await,
            BackendKind::Firewall => self.firewall.plan(target, fault, occasion).await,
        }
    }

    pub async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned,
    ) -> Result<(), ChaosError> {
        match action.backend() {
            BackendKind::Process => self.process.apply(target, action, planned).await,
            BackendKind::Docker => self.docker.apply(target, action, planned).await,
            BackendKind::Kube => self.kube.apply(target, action, planned).await,
            BackendKind::Proxy => self.network.apply(target, action, planned).await,
            BackendKind::Firewall => self.firewall.apply(target, action, planned).await,
        }
    }

    /// Starts checking whether the applied step took effect.
    pub async fn confirm(&mut self, target: &Target, planned: &Planned) -> Confirming {
        match target.backend {
            BackendKind::Process => self.process.confirm(target, planned).await,
            BackendKind::Docker => self.docker.confirm(target, planned).await,
            BackendKind::Kube => self.kube.confirm(target, planned).await,
            BackendKind::Proxy => self.network.confirm(target, planned).await,
            BackendKind::Firewall => self.firewall.confirm(target, planned).await,
        }
    }

    /// Whether the target is healthy again, asked of the backend its check belongs to.
    pub async fn healthy(&mut self, check: &HealthCheck) -> Result<bool, ChaosError> {
        match check {
            HealthCheck::Recovered => Ok(true),
            HealthCheck::Process(process) => self.process.healthy(process).await,
            HealthCheck::Container { id } => self.docker.engine().await?.healthy(id).await,
            HealthCheck::Pods {
                selector,
                ready_before,
            } => Ok(self.kube.cluster().await?.ready_pods(selector).await? >= *ready_before),
            HealthCheck::Deployment { namespace, name } => {
                self.kube
                    .cluster()
                    .await?
                    .deployment_ready(namespace, name)
                    .await
            }
        }
    }
}

/// Puts a target back from its undo record alone (also used by `loadgen recover`).
pub async fn recover(undo: &Undo, platform: &dyn Platform) -> Result<(), ChaosError> {
    // (Unbounded: callers go through `recover_within`.)
    match undo {
        Undo::Nothing => Ok(()),
        Undo::Process { .. } => super::process::recover(undo, platform).await,
        Undo::Docker { .. } => super::docker::recover(undo).await,
        Undo::Kube { .. } => super::kube::recover(undo).await.map(|_| ()),
        Undo::Proxy { .. } => super::network::recover(undo).await,
        Undo::Firewall { .. } => super::firewall::recover(undo).await,
    }
}

/// A backend call bounded by `deadline`: one that has not answered by then is dropped
/// (children it started are killed on drop) and is an error naming what hung.
pub async fn within<T>(
    deadline: Duration,
    what: &str,
    call: impl Future<Output = Result<T, ChaosError>>,
) -> Result<T, ChaosError> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(ChaosError::Backend {
                backend: "deadline",
                message: format!("{what}: no answer within {deadline:?} (backend_timeout)"),
            })
        })
}

/// Puts a target back within `deadline`. A backend error (a daemon restarting, a refused
/// connection) is retried with back-off, 100 ms doubling to 2 s; a guardrail refusal is
/// not. Still failing, or still waiting for an answer, at the deadline: the last error.
pub async fn recover_within(
    undo: &Undo,
    deadline: Duration,
    platform: &dyn Platform,
) -> Result<(), ChaosError> {
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout_at(until, recover(undo, platform)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => {
                return Err(ChaosError::Backend {
                    backend: "deadline",
                    message: format!(
                        "recovery got no answer within {deadline:?} (backend_timeout; attempt {attempts})"
                    ),
                });
            }
        };
        let transient = matches!(error, ChaosError::Backend { .. });
        if !transient || tokio::time::Instant::now() + pause >= until {
            return Err(match error {
                ChaosError::Backend { backend, message } if attempts > 1 => ChaosError::Backend {
                    backend,
                    message: format!("{message} (after {attempts} attempts in {deadline:?})"),
                },
                other => other,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
