//! The Kubernetes backend's part of the fault lifecycle (`chaos/lifecycle.rs`): pods are
//! deleted or evicted (instantaneous: their controllers heal them), a deployment is
//! scaled (held: scaled back to the replicas read before) or restarted (instantaneous).
//! Connects to the API server on first use.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::KubeGuard;
use super::{KubeAction, KubeBackend, KubeFault, Pick, Pin, PodSelector};
use crate::chaos::guard::{HeldDown, equality_labels};
use crate::chaos::lifecycle::{Candidate, Effect, FaultBackend, Occasion, Planned, SideWatch};
use crate::chaos::{ChaosError, Target};
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Mode, Selector};

/// What scales a deployment back, as the ledger records it (pod deletions and restarts
/// heal through their controllers: nothing to put back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentUndo {
    pub api: Option<String>,
    pub namespace: String,
    pub deployment: String,
    pub replicas: u32,
}

/// What "healthy again" means for a Kubernetes target.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeHealth {
    /// Pods of a selector: as many Ready as before the fault.
    Pods {
        selector: PodSelector,
        ready_before: usize,
    },
    /// A deployment: its rollout done and ready replicas back to the spec.
    Deployment { namespace: String, name: String },
}

/// The Kubernetes backend as the timeline drives it. Clones share the one connection.
#[derive(Clone)]
pub struct KubeFaults {
    api: Option<String>,
    pin: Pin,
    namespaces: Vec<String>,
    connected: Arc<OnceCell<KubeBackend>>,
}

impl KubeFaults {
    pub fn new(api: Option<String>, pin: Pin, namespaces: Vec<String>) -> KubeFaults {
        KubeFaults {
            api,
            pin,
            namespaces,
            connected: Arc::default(),
        }
    }

    /// The cluster, connected on first use — once the pin agrees with it.
    pub async fn cluster(&self) -> Result<&KubeBackend, ChaosError> {
        self.connected
            .get_or_try_init(|| KubeBackend::connect_pinned(self.api.as_deref(), &self.pin))
            .await
    }

    /// One readiness watch per pod selector the faults name, for the whole run: the
    /// report shows when replacement pods became Ready.
    async fn readiness_watches(
        &self,
        faults: &[FaultSpec],
        start: Instant,
        stop: &CancellationToken,
    ) -> Vec<SideWatch> {
        let mut selectors: Vec<PodSelector> = Vec::new();
        for fault in faults {
            if let Selector::Pods {
                namespace,
                selector,
            } = &fault.selector
            {
                let wanted = PodSelector {
                    namespace: namespace.clone(),
                    labels: selector.clone(),
                    fields: None,
                };
                if !selectors.contains(&wanted) {
                    selectors.push(wanted);
                }
            }
        }
        if selectors.is_empty() {
            return Vec::new();
        }
        let kube = match self.cluster().await {
            Ok(kube) => kube.clone(),
            Err(e) => {
                let error = serde_json::json!({ "error": e.to_string() });
                return vec![tokio::spawn(std::future::ready(error))];
            }
        };
        selectors
            .into_iter()
            .map(|selector| {
                let (kube, stop) = (kube.clone(), stop.clone());
                tokio::spawn(async move {
                    match kube.watch_readiness(&selector, start, stop).await {
                        Ok(timeline) => serde_json::to_value(&timeline).unwrap_or_default(),
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    }
                })
            })
            .collect()
    }
}

impl FaultBackend for KubeFaults {
    type Undo = DeploymentUndo;
    type Check = KubeHealth;

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
                // Before the first call: a namespace off the list is not even read.
                check_namespace(&self.namespaces, namespace)?;
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
            Selector::Deployment { namespace, name } => {
                check_namespace(&self.namespaces, namespace)?;
                Ok(vec![(
                    Target {
                        backend: BackendKind::Kube,
                        id: format!("{namespace}/{name}"),
                        name: name.clone(),
                        labels: Default::default(),
                    },
                    true,
                )])
            }
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
    ) -> Result<Planned<Option<DeploymentUndo>, KubeHealth>, ChaosError> {
        // Again here: nothing reaches the ledger for a namespace off the list, even for a
        // caller that plans without resolving first.
        if let Selector::Pods { namespace, .. } | Selector::Deployment { namespace, .. } =
            &fault.selector
        {
            check_namespace(&self.namespaces, namespace)?;
        }
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
                let Some(undo) = step.undo.to_ledger(api.as_deref()) else {
                    return Err(ChaosError::NoTarget(fault.selector.to_string()));
                };
                let replicas = &undo.replicas;
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
                    undo: Some(undo),
                    effect: Effect::Held,
                    check: Some(KubeHealth::Deployment {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    }),
                    holds_down,
                })
            }
            (Action::RolloutRestart, Selector::Deployment { namespace, name }) => Ok(Planned {
                undo: None,
                effect: Effect::Instantaneous,
                check: Some(KubeHealth::Deployment {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }),
                holds_down: None,
            }),
            (
                Action::DeletePod { .. } | Action::EvictPod,
                Selector::Pods {
                    namespace,
                    selector,
                },
            ) => Ok(Planned {
                undo: None,
                effect: Effect::Instantaneous,
                check: Some(KubeHealth::Pods {
                    selector: PodSelector::labels(namespace, selector),
                    ready_before: occasion.ready_before,
                }),
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
        _planned: &Planned<Option<DeploymentUndo>, KubeHealth>,
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

    async fn healthy(&mut self, check: &KubeHealth) -> Result<bool, ChaosError> {
        let cluster = self.cluster().await?;
        match check {
            KubeHealth::Pods {
                selector,
                ready_before,
            } => Ok(cluster.ready_pods(selector).await? >= *ready_before),
            KubeHealth::Deployment { namespace, name } => {
                cluster.deployment_ready(namespace, name).await
            }
        }
    }

    async fn side_watches(
        &mut self,
        faults: &[FaultSpec],
        start: Instant,
        stop: &CancellationToken,
    ) -> Vec<SideWatch> {
        self.readiness_watches(faults, start, stop).await
    }
}

/// The namespace must be on the scenario's allow-list; an empty list allows none, so
/// staging must opt in explicitly.
fn check_namespace(allowed: &[String], namespace: &str) -> Result<(), ChaosError> {
    if allowed.iter().any(|n| n == namespace) {
        return Ok(());
    }
    let allowed = if allowed.is_empty() {
        "the allow-list is empty".to_string()
    } else {
        format!("allowed: {}", allowed.join(", "))
    };
    Err(ChaosError::Refused(format!(
        "namespace {namespace} is not in the scenario's kube namespaces ({allowed})"
    )))
}
