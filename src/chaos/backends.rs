//! One entry point over the backends: resolve a selector, compute the undo, apply, recover.
//! Backends that need a connection (Docker) are connected on first use.

use std::time::Duration;

use super::docker::DockerBackend;
use super::effect::HealthCheck;
use super::firewall::FirewallBackend;
use super::kube::{KubeAction, KubeBackend, KubeFault, KubeGuard, Pick, PodSelector};
use super::network::NetworkBackend;
use super::process::ProcessBackend;
use super::spec::{Action, ChaosPlan, FaultSpec, Guard, Mode, Selector};
use super::stack::state_path;
use super::undo::Undo;
use super::{ChaosError, Target};

pub struct Backends {
    process: ProcessBackend,
    network: NetworkBackend,
    firewall: FirewallBackend,
    docker: Option<DockerBackend>,
    docker_host: Option<String>,
    kube: Option<KubeBackend>,
    kube_api: Option<String>,
    kube_namespaces: Vec<String>,
}

impl Backends {
    pub fn new(plan: &ChaosPlan) -> Backends {
        Backends {
            process: ProcessBackend::new(state_path(plan.stack_state.as_deref())),
            network: NetworkBackend::new(state_path(plan.stack_state.as_deref())),
            firewall: FirewallBackend::default(),
            docker: None,
            docker_host: plan.docker_host.clone(),
            kube: None,
            kube_api: plan.kube_api.clone(),
            kube_namespaces: plan.kube_namespaces.clone(),
        }
    }

    async fn docker(&mut self) -> Result<&DockerBackend, ChaosError> {
        if self.docker.is_none() {
            self.docker = Some(DockerBackend::connect(self.docker_host.as_deref()).await?);
        }
        Ok(self.docker.as_ref().expect("connected above"))
    }

    async fn kube(&mut self) -> Result<&KubeBackend, ChaosError> {
        if self.kube.is_none() {
            self.kube = Some(KubeBackend::connect(self.kube_api.as_deref()).await?);
        }
        Ok(self.kube.as_ref().expect("connected above"))
    }

    /// The selector's targets, sorted by name, each with whether it is up.
    pub async fn resolve(
        &mut self,
        selector: &Selector,
    ) -> Result<Vec<(Target, bool)>, ChaosError> {
        match selector {
            Selector::Process { .. } | Selector::PidFile { .. } => self.process.resolve(selector),
            Selector::Container { .. } | Selector::ContainerLabel { .. } => {
                self.docker().await?.resolve(selector).await
            }
            Selector::Pods {
                namespace,
                selector,
            } => {
                let pods = self
                    .kube()
                    .await?
                    .select(&PodSelector {
                        namespace: namespace.clone(),
                        labels: selector.clone(),
                        fields: None,
                    })
                    .await?;
                let mut found: Vec<(Target, bool)> = pods
                    .into_iter()
                    .map(|pod| {
                        let target = Target {
                            backend: "kube".into(),
                            id: format!("{}/{}", pod.namespace, pod.name),
                            name: pod.name,
                            labels: pod.labels,
                        };
                        (target, pod.ready)
                    })
                    .collect();
                found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
                Ok(found)
            }
            // A deployment is one target; its replicas are guarded by the kube backend's
            // own scale check when the undo is prepared.
            Selector::Deployment { namespace, name } => Ok(vec![(
                Target {
                    backend: "kube".into(),
                    id: format!("{namespace}/{name}"),
                    name: name.clone(),
                    labels: Default::default(),
                },
                true,
            )]),
            Selector::Proxy { .. } => self.network.resolve(selector),
            Selector::Port { .. } => self.firewall.resolve(selector).await,
        }
    }

    pub async fn undo_for(
        &mut self,
        target: &Target,
        action: &Action,
        selector: &Selector,
        guard: &Guard,
    ) -> Result<Undo, ChaosError> {
        match action.backend() {
            "process" => self.process.undo_for(target, action),
            "docker" => self.docker().await?.undo_for(target, action),
            "proxy" => self.network.undo_for(target, action),
            "firewall" => self.firewall.undo_for(target, action),
            "kube" => {
                // Pod deletions, evictions and restarts heal themselves (controllers); a
                // scale is put back to the replica count read now, before the change.
                let Action::Scale { .. } = action else {
                    return Ok(Undo::Nothing);
                };
                let fault = KubeFault::from_spec(
                    action,
                    selector,
                    Pick {
                        mode: Mode::One,
                        seed: 0,
                    },
                )?;
                let kube_guard = KubeGuard::from_spec(&self.kube_namespaces, guard);
                let api = self.kube_api.clone();
                let prepared = self.kube().await?.prepare(&fault, &kube_guard, 0).await?;
                prepared
                    .steps
                    .first()
                    .map(|step| step.undo.to_ledger(api.as_deref()))
                    .ok_or_else(|| ChaosError::NoTarget(target.id.clone()))
            }
            other => Err(ChaosError::Backend {
                backend: "chaos",
                message: format!("no backend performs {other} faults"),
            }),
        }
    }

    /// Why `fault` must not run on any of `candidates`, if it must not: a fault whose undo
    /// cannot run for its target (pre-flight and `--dry-run` refuse it before traffic).
    pub fn refusal(&mut self, fault: &FaultSpec, candidates: &[(Target, bool)]) -> Option<String> {
        if fault.action.backend() != "process" {
            return None;
        }
        candidates.iter().find_map(|(target, _)| {
            self.process
                .refusal(target, &fault.action, fault.duration.is_some())
        })
    }

    pub async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        undo: &Undo,
    ) -> Result<(), ChaosError> {
        match action.backend() {
            "process" => self.process.apply(target, action, undo).await,
            "docker" => self.docker().await?.apply(target, action).await,
            "proxy" => self.network.apply(target, action).await,
            "firewall" => self.firewall.apply(target, action, undo).await,
            "kube" => {
                let (namespace, name) = target
                    .id
                    .split_once('/')
                    .unwrap_or(("", target.id.as_str()));
                let (namespace, name) = (namespace.to_string(), name.to_string());
                let call = match action {
                    Action::DeletePod { grace } => KubeAction::DeletePod {
                        namespace,
                        pod: name,
                        grace_seconds: grace.map(|g| g.as_secs() as u32),
                    },
                    Action::EvictPod => KubeAction::EvictPod {
                        namespace,
                        pod: name,
                    },
                    Action::Scale { replicas } => KubeAction::Scale {
                        namespace,
                        deployment: name,
                        replicas: *replicas,
                    },
                    Action::RolloutRestart => KubeAction::RolloutRestart {
                        namespace,
                        deployment: name,
                    },
                    other => {
                        return Err(ChaosError::Backend {
                            backend: "kube",
                            message: format!("{other:?} is not a Kubernetes action"),
                        });
                    }
                };
                self.kube().await?.apply(&call).await.map(|_| ())
            }
            other => Err(ChaosError::Backend {
                backend: "chaos",
                message: format!("no backend performs {other} faults"),
            }),
        }
    }
}

impl Backends {
    /// What "healthy again" will mean for `target`, read before `action` changes it.
    /// `ready_before`: how many of the selector's targets were up (pods: Ready) just before.
    pub fn health_check(
        &mut self,
        target: &Target,
        action: &Action,
        selector: &Selector,
        undo: &Undo,
        ready_before: usize,
    ) -> HealthCheck {
        match (action.backend(), selector) {
            ("process", _) => {
                HealthCheck::Process(self.process.health_check(target, selector, undo))
            }
            ("docker", _) => HealthCheck::Container {
                id: target.id.clone(),
            },
            (
                "kube",
                Selector::Pods {
                    namespace,
                    selector,
                },
            ) => HealthCheck::Pods {
                selector: PodSelector {
                    namespace: namespace.clone(),
                    labels: selector.clone(),
                    fields: None,
                },
                ready_before,
            },
            ("kube", Selector::Deployment { namespace, name }) => HealthCheck::Deployment {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            _ => HealthCheck::Recovered,
        }
    }

    /// Whether the target is healthy again, asked of its backend.
    pub async fn healthy(&mut self, check: &HealthCheck) -> Result<bool, ChaosError> {
        match check {
            HealthCheck::Recovered => Ok(true),
            HealthCheck::Process(process) => self.process.healthy(process).await,
            HealthCheck::Container { id } => self.docker().await?.healthy(id).await,
            HealthCheck::Pods {
                selector,
                ready_before,
            } => Ok(self.kube().await?.ready_pods(selector).await? >= *ready_before),
            HealthCheck::Deployment { namespace, name } => {
                self.kube().await?.deployment_ready(namespace, name).await
            }
        }
    }
}

/// Puts a target back from its undo record alone (also used by `loadgen recover`).
pub async fn recover(undo: &Undo) -> Result<(), ChaosError> {
    // (Unbounded: callers go through `recover_within`.)
    match undo {
        Undo::Nothing => Ok(()),
        Undo::Process { .. } => super::process::recover(undo).await,
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
pub async fn recover_within(undo: &Undo, deadline: Duration) -> Result<(), ChaosError> {
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout_at(until, recover(undo)).await {
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
