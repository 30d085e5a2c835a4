//! The Kubernetes backend's part of the fault lifecycle (`chaos/lifecycle.rs`): pods are
//! deleted or evicted (instantaneous: their controllers heal them), a deployment is
//! scaled (held: scaled back to the replicas read before) or restarted (instantaneous).
//! Connects to the API server on first use.

use super::guard::KubeGuard;
use super::{KubeAction, KubeBackend, KubeFault, Pick, Pin, PodSelector};
use crate::chaos::effect::HealthCheck;
use crate::chaos::guard::{HeldDown, equality_labels};
use crate::chaos::lifecycle::{Candidate, Effect, FaultBackend, Occasion, Planned};
use crate::chaos::undo::Undo;
use crate::chaos::{ChaosError, Target};
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Mode, Selector};

pub struct KubeFaults {
    api: Option<String>,
    pin: Pin,
    namespaces: Vec<String>,
    connected: Option<KubeBackend>,
}

impl KubeFaults {
    pub fn new(api: Option<String>, pin: Pin, namespaces: Vec<String>) -> KubeFaults {
        KubeFaults {
            api,
            pin,
            namespaces,
            connected: None,
        }
    }

    /// The cluster, connected on first use — once the pin agrees with it.
    pub async fn cluster(&mut self) -> Result<&KubeBackend, ChaosError> {
        if self.connected.is_none() {
            self.connected =
                Some(KubeBackend::connect_pinned(self.api.as_deref(), &self.pin).await?);
        }
        Ok(self.connected.as_ref().expect("connected above"))
    }
}

impl FaultBackend for KubeFaults {
    fn validate(action: &Action, selector: &Selector) -> Result<(), String> {
        KubeFault::from_spec(
            action,
            selector,
            Pick {
                mode: Mode::One,
                seed: 0,
            },
        )
        .map(drop)
        .map_err(|e| e.to_string())
    }

    async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        match selector {
            Selector::Pods {
                namespace,
                selector,
            } => {
                let pods = self
                    .cluster()
                    .await?
                    .select(&PodSelector::labels(namespace, selector))
                    .await?;
                let mut found: Vec<Candidate> = pods
                    .into_iter()
                    .map(|pod| (pod.target(), pod.ready))
                    .collect();
                found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
                Ok(found)
            }
            // A deployment is one target; its replicas are guarded when its scale is
            // planned (the guard reads them then).
            Selector::Deployment { namespace, name } => Ok(vec![(
                Target {
                    backend: BackendKind::Kube,
                    id: format!("{namespace}/{name}"),
                    name: name.clone(),
                    labels: Default::default(),
                },
                true,
            )]),
            other => Err(ChaosError::Backend {
                backend: "kube",
                message: format!("{other} is not a Kubernetes target"),
            }),
        }
    }

    async fn plan(
        &mut self,
        _target: &Target,
        fault: &FaultSpec,
        occasion: Occasion,
    ) -> Result<Planned, ChaosError> {
        match (&fault.action, &fault.selector) {
            (Action::Scale { .. }, Selector::Deployment { namespace, name }) => {
                let kube_fault = KubeFault::from_spec(
                    &fault.action,
                    &fault.selector,
                    Pick {
                        mode: Mode::One,
                        seed: 0,
                    },
                )?;
                let guard = KubeGuard::from_spec(&self.namespaces, &fault.guard);
                let api = self.api.clone();
                let prepared = self
                    .cluster()
                    .await?
                    .prepare(&kube_fault, &guard, 0)
                    .await?;
                let step = prepared
                    .steps
                    .first()
                    .ok_or_else(|| ChaosError::NoTarget(fault.selector.to_string()))?;
                let undo = step.undo.to_ledger(api.as_deref());
                let Undo::Kube { replicas, .. } = &undo else {
                    return Err(ChaosError::NoTarget(fault.selector.to_string()));
                };
                let Action::Scale { replicas: to } = fault.action else {
                    unreachable!("matched above");
                };
                let holds_down = prepared.pod_labels.as_deref().and_then(|labels| {
                    Some(HeldDown {
                        namespace: namespace.clone(),
                        labels: equality_labels(labels)?,
                        count: (*replicas as usize).saturating_sub(to as usize),
                    })
                });
                Ok(Planned {
                    undo,
                    effect: Effect::Held,
                    check: HealthCheck::Deployment {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    },
                    holds_down,
                })
            }
            (Action::RolloutRestart, Selector::Deployment { namespace, name }) => Ok(Planned {
                undo: Undo::Nothing,
                effect: Effect::Instantaneous,
                check: HealthCheck::Deployment {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                holds_down: None,
            }),
            (
                Action::DeletePod { .. } | Action::EvictPod,
                Selector::Pods {
                    namespace,
                    selector,
                },
            ) => Ok(Planned {
                undo: Undo::Nothing,
                effect: Effect::Instantaneous,
                check: HealthCheck::Pods {
                    selector: PodSelector::labels(namespace, selector),
                    ready_before: occasion.ready_before,
                },
                holds_down: None,
            }),
            (action, selector) => Err(ChaosError::Backend {
                backend: "kube",
                message: format!("{action:?} cannot target {selector}"),
            }),
        }
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        _planned: &Planned,
    ) -> Result<(), ChaosError> {
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
        self.cluster().await?.apply(&call).await.map(drop)
    }
}
