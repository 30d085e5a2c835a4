//! The one file that names every backend (after chaos-mesh's `fx.go`): the ledger's undo
//! record and the health check, one variant per backend; the dispatcher the timeline drives
//! (`lifecycle::Dispatch`); the prober the effect watches share; recovery from an undo
//! alone; and the scenario validator's static check. Every match here is exhaustive, so a
//! new backend cannot fall through to "no backend". The timeline, the effect watch, the
//! ledger and `loadgen recover` know none of this: they are generic over `Dispatch`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::docker::{ContainerHealth, DockerFaults, DockerUndo};
use super::firewall::{FirewallBackend, FirewallUndo, Programs};
use super::kube::{DeploymentUndo, KubeFaults, KubeHealth, Pin};
use super::lifecycle::{
    Candidate, Confirming, Dispatch, FaultBackend, Occasion, Planned, Probe, SideWatch,
};
use super::network::{NetworkBackend, ProxyUndo};
use super::ports::Platform;
use super::process::{ProcessBackend, ProcessHealth, ProcessStep, ProcessUndo};
use super::{ChaosError, Target};
use crate::plan::chaos::{Action, BackendKind, ChaosPlan, FaultSpec, Selector};
use crate::util::data_dirs::DataDirs;

/// What it takes to put a target back, per backend. Serialized into the ledger before the
/// change, so recovery works from the ledger alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum Undo {
    /// Nothing to put back (an instantaneous action; the platform heals itself).
    Nothing,
    Process(ProcessUndo),
    Docker(DockerUndo),
    Kube(DeploymentUndo),
    Proxy(ProxyUndo),
    Firewall(FirewallUndo),
}

/// What "healthy again" means for one target, per backend (proxy and packet faults have
/// none: they are healthy as soon as recovered).
#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheck {
    Process(ProcessHealth),
    Container(ContainerHealth),
    Kube(KubeHealth),
}

/// Whether `action` on `selector`'s targets is one the backend can perform, from the values
/// alone (no I/O): the scenario validator's check.
pub(crate) fn validate(action: &Action, selector: &Selector) -> Result<(), String> {
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
pub(crate) fn kube_pin(plan: &ChaosPlan) -> Pin {
    Pin {
        context: plan.kube_context.clone(),
        server: plan.kube_server.clone(),
    }
}

/// Every backend, for one run (or one dry run). Docker and Kubernetes connect on first use;
/// the effect watches' probers and the packet backend share those connections.
pub struct Backends {
    process: ProcessBackend,
    network: NetworkBackend,
    firewall: FirewallBackend,
    docker: DockerFaults,
    kube: KubeFaults,
    platform: Arc<dyn Platform>,
}

impl Backends {
    /// The backends for `plan`, on the platform the composition root hands in.
    pub fn new(plan: &ChaosPlan, platform: &Arc<dyn Platform>) -> Backends {
        let docker = DockerFaults::new(plan.docker_host.clone(), platform.container_scope());
        Backends {
            process: ProcessBackend::new(platform.clone()),
            network: NetworkBackend::new(platform.clone()),
            firewall: FirewallBackend::new(Programs::default(), Arc::new(docker.clone())),
            docker,
            kube: KubeFaults::new(
                plan.kube_api.clone(),
                kube_pin(plan),
                plan.kube_namespaces.clone(),
            ),
            platform: platform.clone(),
        }
    }
}

/// A backend's plan in the ledger's types.
fn lift<U, C>(
    planned: Result<Planned<Option<U>, C>, ChaosError>,
    undo: impl FnOnce(U) -> Undo,
    check: impl FnOnce(C) -> HealthCheck,
) -> Result<Planned<Undo, HealthCheck>, ChaosError> {
    planned.map(|p| p.map(|u| u.map_or(Undo::Nothing, undo), check))
}

/// A dispatcher's step back in one backend's types: its undo when the ledger's is that
/// backend's, and no health check (applying and confirming never read it).
fn lower<U: Clone, C>(
    planned: &Planned<Undo, HealthCheck>,
    undo: impl Fn(&Undo) -> Option<&U>,
) -> Planned<Option<U>, C> {
    Planned {
        undo: undo(&planned.undo).cloned(),
        effect: planned.effect,
        check: None,
        holds_down: planned.holds_down.clone(),
    }
}

fn process_undo(undo: &Undo) -> Option<&ProcessUndo> {
    match undo {
        Undo::Process(u) => Some(u),
        _ => None,
    }
}

fn proxy_undo(undo: &Undo) -> Option<&ProxyUndo> {
    match undo {
        Undo::Proxy(u) => Some(u),
        _ => None,
    }
}

fn firewall_undo(undo: &Undo) -> Option<&FirewallUndo> {
    match undo {
        Undo::Firewall(u) => Some(u),
        _ => None,
    }
}

fn docker_undo(undo: &Undo) -> Option<&DockerUndo> {
    match undo {
        Undo::Docker(u) => Some(u),
        _ => None,
    }
}

fn kube_undo(undo: &Undo) -> Option<&DeploymentUndo> {
    match undo {
        Undo::Kube(u) => Some(u),
        _ => None,
    }
}

impl Dispatch for Backends {
    type Undo = Undo;
    type Check = HealthCheck;
    type Probe = Probes;
    type Recovery = Recovery;

    async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        match selector.backend() {
            BackendKind::Process => self.process.resolve(selector).await,
            BackendKind::Docker => self.docker.resolve(selector).await,
            BackendKind::Kube => self.kube.resolve(selector).await,
            BackendKind::Proxy => self.network.resolve(selector).await,
            BackendKind::Firewall => self.firewall.resolve(selector).await,
        }
    }

    fn refusal(&mut self, fault: &FaultSpec, candidates: &[Candidate]) -> Option<String> {
        match fault.action.backend() {
            BackendKind::Process => self.process.refusal(fault, candidates),
            BackendKind::Docker => self.docker.refusal(fault, candidates),
            BackendKind::Kube => self.kube.refusal(fault, candidates),
            BackendKind::Proxy => self.network.refusal(fault, candidates),
            BackendKind::Firewall => self.firewall.refusal(fault, candidates),
        }
    }

    async fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        occasion: Occasion,
    ) -> Result<Planned<Undo, HealthCheck>, ChaosError> {
        use HealthCheck as H;
        match fault.action.backend() {
            BackendKind::Process => lift(
                self.process.plan(target, fault, occasion).await,
                Undo::Process,
                H::Process,
            ),
            BackendKind::Docker => lift(
                self.docker.plan(target, fault, occasion).await,
                Undo::Docker,
                H::Container,
            ),
            BackendKind::Kube => lift(
                self.kube.plan(target, fault, occasion).await,
                Undo::Kube,
                H::Kube,
            ),
            BackendKind::Proxy => lift(
                self.network.plan(target, fault, occasion).await,
                Undo::Proxy,
                |never| match never {},
            ),
            BackendKind::Firewall => lift(
                self.firewall.plan(target, fault, occasion).await,
                Undo::Firewall,
                |never| match never {},
            ),
        }
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned<Undo, HealthCheck>,
    ) -> Result<(), ChaosError> {
        match action.backend() {
            BackendKind::Process => {
                let step = lower(planned, process_undo);
                self.process.apply(target, action, &step).await
            }
            BackendKind::Docker => {
                let step = lower(planned, docker_undo);
                self.docker.apply(target, action, &step).await
            }
            BackendKind::Kube => {
                let step = lower(planned, kube_undo);
                self.kube.apply(target, action, &step).await
            }
            BackendKind::Proxy => {
                let step = lower(planned, proxy_undo);
                self.network.apply(target, action, &step).await
            }
            BackendKind::Firewall => {
                let step = lower(planned, firewall_undo);
                self.firewall.apply(target, action, &step).await
            }
        }
    }

    async fn confirm(
        &mut self,
        target: &Target,
        planned: &Planned<Undo, HealthCheck>,
    ) -> Confirming {
        match target.backend {
            BackendKind::Process => {
                self.process
                    .confirm(target, &lower(planned, process_undo))
                    .await
            }
            BackendKind::Docker => {
                self.docker
                    .confirm(target, &lower(planned, docker_undo))
                    .await
            }
            BackendKind::Kube => self.kube.confirm(target, &lower(planned, kube_undo)).await,
            BackendKind::Proxy => {
                self.network
                    .confirm(target, &lower(planned, proxy_undo))
                    .await
            }
            BackendKind::Firewall => {
                self.firewall
                    .confirm(target, &lower(planned, firewall_undo))
                    .await
            }
        }
    }

    fn unresolved_refuses(&self, selector: &Selector) -> bool {
        match selector.backend() {
            BackendKind::Process => ProcessBackend::UNRESOLVED_REFUSES,
            BackendKind::Docker => DockerFaults::UNRESOLVED_REFUSES,
            BackendKind::Kube => KubeFaults::UNRESOLVED_REFUSES,
            BackendKind::Proxy => NetworkBackend::UNRESOLVED_REFUSES,
            BackendKind::Firewall => FirewallBackend::UNRESOLVED_REFUSES,
        }
    }

    async fn side_watches(
        &mut self,
        faults: &[FaultSpec],
        start: Instant,
        stop: &CancellationToken,
    ) -> Vec<SideWatch> {
        let mut watches = self.process.side_watches(faults, start, stop).await;
        watches.extend(self.docker.side_watches(faults, start, stop).await);
        watches.extend(self.kube.side_watches(faults, start, stop).await);
        watches.extend(self.network.side_watches(faults, start, stop).await);
        watches.extend(self.firewall.side_watches(faults, start, stop).await);
        watches
    }

    fn probe(&self) -> Probes {
        Probes {
            process: ProcessBackend::new(self.platform.clone()),
            docker: self.docker.clone(),
            kube: self.kube.clone(),
        }
    }

    fn recovery(&self) -> Recovery {
        Recovery::new(self.platform.clone(), None)
    }
}

/// One effect watch's prober: the process backend reads the platform's instances afresh
/// (a restart changes PIDs); Docker and Kubernetes share the run's connections.
pub struct Probes {
    process: ProcessBackend,
    docker: DockerFaults,
    kube: KubeFaults,
}

impl Probe for Probes {
    type Check = HealthCheck;

    async fn healthy(&mut self, check: &HealthCheck) -> Result<bool, ChaosError> {
        match check {
            HealthCheck::Process(check) => self.process.healthy(check).await,
            HealthCheck::Container(check) => self.docker.healthy(check).await,
            HealthCheck::Kube(check) => self.kube.healthy(check).await,
        }
    }
}

/// Puts targets back from their undo records alone: during a run, at panic time, and in
/// `loadgen recover` after a crash.
#[derive(Clone)]
pub struct Recovery {
    /// Starts a killed instance again.
    platform: Arc<dyn Platform>,
    /// The operator policy's data dirs: a restart whose stack script lies outside them is
    /// not run (a ledger is a file anyone who can write the run directory can edit).
    dirs: Option<DataDirs>,
}

impl Recovery {
    pub fn new(platform: Arc<dyn Platform>, dirs: Option<DataDirs>) -> Recovery {
        Recovery { platform, dirs }
    }

    /// Why the stack script `undo` would run may not, under the policy's data dirs.
    fn script_refusal(&self, undo: &ProcessUndo) -> Option<String> {
        let ProcessStep::Restart(super::ports::Restart::Stack { script, .. }) = &undo.step else {
            return None;
        };
        self.dirs
            .as_ref()?
            .refusal("the ledger's stack script", script)
    }
}

impl super::lifecycle::Recovery for Recovery {
    type Undo = Undo;

    async fn recover(&self, undo: &Undo) -> Result<(), ChaosError> {
        match undo {
            Undo::Nothing => Ok(()),
            Undo::Process(undo) => match self.script_refusal(undo) {
                Some(refusal) => Err(ChaosError::Refused(format!(
                    "not run: {refusal}; start the instance by hand"
                ))),
                None => super::process::recover(undo, &*self.platform).await,
            },
            Undo::Docker(undo) => super::docker::recover(undo).await,
            Undo::Kube(undo) => super::kube::recover(undo).await,
            Undo::Proxy(undo) => super::network::recover(undo).await,
            Undo::Firewall(undo) => {
                // The rules' namespace is entered on the engine the undo names.
                let host = undo.container.as_ref().and_then(|c| c.host.clone());
                super::firewall::recover(undo, &DockerFaults::new(host, None)).await
            }
        }
    }
}
