//! The Kubernetes backend's part of the fault lifecycle (`chaos/lifecycle.rs`): pods are
//! deleted or evicted (instantaneous: their controllers heal them), a deployment is
//! scaled (held: scaled back to the replicas read before) or restarted (instantaneous).
//! Connects to the API server on first use.
//!
//! Which pods are hit, and the `max_unavailable` / last-replica guardrails over them, are
//! the timeline's (`runner/choose.rs`, `chaos/guard.rs`), as for every backend. What
//! only this backend can check is here: the namespace allow-list, before any call, and a
//! scale's guardrail, which needs the deployment's replicas read from the cluster.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::calls;
use super::{KubeBackend, Pin, PodSelector};
use crate::chaos::TargetId;
use crate::chaos::guard::{self, Fleet, HeldDown, equality_labels};
use crate::chaos::lifecycle::{Candidate, Effect, FaultBackend, Occasion, Planned, SideWatch};
use crate::chaos::{ChaosError, Target};
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Guard, Selector};

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
pub(crate) struct KubeFaults {
    api: Option<String>,
    pin: Pin,
    namespaces: Vec<String>,
    connected: Arc<OnceCell<KubeBackend>>,
}

impl KubeFaults {
    pub(crate) fn new(api: Option<String>, pin: Pin, namespaces: Vec<String>) -> KubeFaults {
        KubeFaults {
            api,
            pin,
            namespaces,
            connected: Arc::default(),
        }
    }

    /// The cluster, connected on first use — once the pin agrees with it.
    pub(crate) async fn cluster(&self) -> Result<&KubeBackend, ChaosError> {
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

    /// The scale's step: reads the replicas to restore and the pods they run as, refuses a
    /// scale-down the guardrail forbids, and records the replicas read. Changes nothing.
    async fn plan_scale(
        &self,
        namespace: &str,
        name: &str,
        to: u32,
        limits: &Guard,
    ) -> Result<Planned<Option<DeploymentUndo>, KubeHealth>, ChaosError> {
        let cluster = self.cluster().await?;
        let scale = calls::read_scale(&cluster.client, namespace, name).await?;
        let pods = cluster
            .select(&PodSelector::labels(namespace, &scale.selector))
            .await?;
        let ready = pods.iter().filter(|p| p.ready).count();
        let replicas = (scale.replicas as usize).max(pods.len());
        check_scale(limits, ready, replicas, to)?;
        // The replicas the scale-down removes leave no pod behind to list: the faults
        // after it count them against this deployment's pods through `holds_down`.
        let holds_down = (!scale.selector.is_empty())
            .then(|| equality_labels(&scale.selector))
            .flatten()
            .map(|labels| HeldDown {
                namespace: namespace.to_string(),
                labels,
                count: (scale.replicas as usize).saturating_sub(to as usize),
            });
        Ok(Planned {
            undo: Some(DeploymentUndo {
                api: self.api.clone(),
                namespace: namespace.to_string(),
                deployment: name.to_string(),
                replicas: scale.replicas,
            }),
            effect: Effect::Held,
            check: Some(KubeHealth::Deployment {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            holds_down,
        })
    }
}

impl FaultBackend for KubeFaults {
    type Undo = DeploymentUndo;
    type Check = KubeHealth;

    fn validate(action: &Action, selector: &Selector) -> Result<(), String> {
        match (action, selector) {
            (Action::DeletePod { .. } | Action::EvictPod, Selector::Pods { .. })
            | (Action::Scale { .. } | Action::RolloutRestart, Selector::Deployment { .. }) => {
                Ok(())
            }
            _ => Err(mismatch(action, selector).to_string()),
        }
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
                // Already sorted by name, the order the timeline picks in.
                Ok(pods
                    .into_iter()
                    .map(|pod| (pod.target(), pod.ready))
                    .collect())
            }
            // A deployment is one target; its replicas are guarded when its scale is
            // planned (the guard reads them then).
            Selector::Deployment { namespace, name } => {
                check_namespace(&self.namespaces, namespace)?;
                Ok(vec![(
                    Target {
                        backend: BackendKind::Kube,
                        id: TargetId::Object {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        },
                        name: name.clone(),
                        labels: Default::default(),
                    },
                    true,
                )])
            }
            other => Err(ChaosError::backend(
                BackendKind::Kube,
                format!("{other} is not a Kubernetes target"),
            )),
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
        let instantaneous = |check| Planned {
            undo: None,
            effect: Effect::Instantaneous,
            check: Some(check),
            holds_down: None,
        };
        match (&fault.action, &fault.selector) {
            (Action::Scale { replicas }, Selector::Deployment { namespace, name }) => {
                self.plan_scale(namespace, name, *replicas, &fault.guard)
                    .await
            }
            (Action::RolloutRestart, Selector::Deployment { namespace, name }) => {
                Ok(instantaneous(KubeHealth::Deployment {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }))
            }
            (
                Action::DeletePod { .. } | Action::EvictPod,
                Selector::Pods {
                    namespace,
                    selector,
                },
            ) => Ok(instantaneous(KubeHealth::Pods {
                selector: PodSelector::labels(namespace, selector),
                ready_before: occasion.ready_before,
            })),
            (action, selector) => Err(mismatch(action, selector)),
        }
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        _planned: &Planned<Option<DeploymentUndo>, KubeHealth>,
    ) -> Result<(), ChaosError> {
        // Pods and deployments alike are `namespace/name`.
        let TargetId::Object { namespace, name } = &target.id else {
            return Err(ChaosError::backend(
                BackendKind::Kube,
                format!("{} is not a Kubernetes object", target.id),
            ));
        };
        let client = &self.cluster().await?.client;
        match action {
            Action::DeletePod { grace } => calls::delete_pod(client, namespace, name, *grace).await,
            Action::EvictPod => calls::evict_pod(client, namespace, name).await,
            Action::Scale { replicas } => {
                let what = format!("scaling {namespace}/{name}");
                calls::set_replicas(client, namespace, name, *replicas, &what).await
            }
            Action::RolloutRestart => calls::rollout_restart(client, namespace, name).await,
            other => Err(ChaosError::backend(
                BackendKind::Kube,
                format!("{other:?} is not a Kubernetes action"),
            )),
        }
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

/// An action this backend cannot perform on that selector: the validator's error.
fn mismatch(action: &Action, selector: &Selector) -> ChaosError {
    ChaosError::backend(
        BackendKind::Kube,
        format!(
            "{action:?} cannot target {selector}: pod actions take a pods selector, \
         scale and rollout restart a deployment"
        ),
    )
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

/// Scaling to `to` takes the ready pods above it down. Of the deployment's `replicas`
/// (the spec's, or the pods listed if more), those not Ready are down already — a deleted
/// pod not yet replaced, or its replacement still starting — whether listed or not.
fn check_scale(limits: &Guard, ready: usize, replicas: usize, to: u32) -> Result<(), ChaosError> {
    let fleet = Fleet {
        ready,
        down: replicas.saturating_sub(ready),
    };
    let wanted = ready.saturating_sub(to as usize);
    guard::check(limits, fleet, wanted, "pod").map_err(ChaosError::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chaos::MaxUnavailable;

    fn limits(max: MaxUnavailable, allow_last: bool) -> Guard {
        Guard {
            max_unavailable: max,
            allow_last,
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
        let shop = ["shop".to_string()];
        assert!(check_namespace(&shop, "shop").is_ok());
        let message = refused(check_namespace(&shop, "kube-system"));
        assert!(message.contains("kube-system") && message.contains("allowed: shop"));
        assert!(refused(check_namespace(&[], "shop")).contains("allow-list is empty"));
    }

    #[test]
    fn scaling_down_counts_the_difference_and_replicas_already_down() {
        let one = limits(MaxUnavailable::Count(1), false);
        assert!(check_scale(&one, 3, 3, 2).is_ok());
        assert!(
            check_scale(&one, 3, 3, 5).is_ok(),
            "scaling up takes nothing down"
        );
        assert!(refused(check_scale(&one, 3, 3, 1)).contains("taking 2 pod(s) down"));
        let wide = limits(MaxUnavailable::Count(3), false);
        assert!(refused(check_scale(&wide, 3, 3, 0)).contains("would leave none"));
        // One replica of three not Ready yet: it is down, and one more is too many.
        let message = refused(check_scale(&one, 2, 3, 1));
        assert!(message.contains("with 1 already down"), "{message}");
    }

    #[test]
    fn pod_actions_take_pods_and_deployment_actions_a_deployment() {
        let pods = Selector::Pods {
            namespace: "shop".into(),
            selector: "app=api".into(),
        };
        let deployment = Selector::Deployment {
            namespace: "shop".into(),
            name: "api".into(),
        };
        let grace = Some(std::time::Duration::from_secs(5));
        assert!(KubeFaults::validate(&Action::DeletePod { grace }, &pods).is_ok());
        assert!(KubeFaults::validate(&Action::EvictPod, &pods).is_ok());
        assert!(KubeFaults::validate(&Action::Scale { replicas: 1 }, &deployment).is_ok());
        assert!(KubeFaults::validate(&Action::RolloutRestart, &deployment).is_ok());
        let error = KubeFaults::validate(&Action::RolloutRestart, &pods).unwrap_err();
        assert!(
            error.starts_with("kube: RolloutRestart cannot target pods app=api in shop"),
            "{error}"
        );
        assert!(KubeFaults::validate(&Action::EvictPod, &deployment).is_err());
    }
}
