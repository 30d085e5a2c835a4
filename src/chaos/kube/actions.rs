//! The faults: delete a pod, evict it (policy/v1), scale a deployment down and back,
//! rollout restart. `prepare` only reads; `apply` changes one thing; `recover` puts back
//! what the undo recorded and treats a deployment that is gone as recovered.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, core::Status};
use serde::{Deserialize, Serialize};

use super::guard::{self, KubeGuard};
use super::select::{self, Pick, PodSelector};
use super::{FIELD_MANAGER, RESTARTED_AT, api_error, status_of};
use crate::chaos::{ChaosError, Target};
use crate::plan::chaos::{Action, BackendKind, Selector};

/// A fault as the timeline asks for it, before targets are resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KubeFault {
    /// Delete some of the selector's pods; the controller recreates them.
    DeletePods {
        selector: PodSelector,
        pick: Pick,
        /// None: the pod's own terminationGracePeriodSeconds.
        grace: Option<Duration>,
    },
    /// Evict some pods through policy/v1, so PodDisruptionBudgets get their say.
    EvictPods { selector: PodSelector, pick: Pick },
    /// Scale a deployment to `replicas` (and back on recover).
    Scale {
        namespace: String,
        deployment: String,
        replicas: u32,
    },
    /// Restart a deployment's pods the way `kubectl rollout restart` does.
    RolloutRestart {
        namespace: String,
        deployment: String,
    },
}

impl KubeFault {
    /// The fault a scenario's action and selector describe; `pick` says how many of the
    /// matched pods it hits. Scale and restart need a deployment selector.
    pub fn from_spec(
        action: &Action,
        selector: &Selector,
        pick: Pick,
    ) -> Result<KubeFault, ChaosError> {
        let fault = match (action, selector) {
            (
                Action::DeletePod { grace },
                Selector::Pods {
                    namespace,
                    selector,
                },
            ) => KubeFault::DeletePods {
                selector: PodSelector::labels(namespace, selector),
                pick,
                grace: *grace,
            },
            (
                Action::EvictPod,
                Selector::Pods {
                    namespace,
                    selector,
                },
            ) => KubeFault::EvictPods {
                selector: PodSelector::labels(namespace, selector),
                pick,
            },
            (Action::Scale { replicas }, Selector::Deployment { namespace, name }) => {
                KubeFault::Scale {
                    namespace: namespace.clone(),
                    deployment: name.clone(),
                    replicas: *replicas,
                }
            }
            (Action::RolloutRestart, Selector::Deployment { namespace, name }) => {
                KubeFault::RolloutRestart {
                    namespace: namespace.clone(),
                    deployment: name.clone(),
                }
            }
            (action, selector) => {
                return Err(super::backend_error(format!(
                    "{action:?} cannot target {selector}: pod actions take a pods selector, \
                     scale and rollout restart a deployment"
                )));
            }
        };
        Ok(fault)
    }
}

/// One mutating call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum KubeAction {
    DeletePod {
        namespace: String,
        pod: String,
        grace_seconds: Option<u32>,
    },
    EvictPod {
        namespace: String,
        pod: String,
    },
    Scale {
        namespace: String,
        deployment: String,
        replicas: u32,
    },
    RolloutRestart {
        namespace: String,
        deployment: String,
    },
}

/// What it takes to put one step back, computed before the step runs. Deletions, evictions
/// and restarts have nothing to put back (controllers heal them) but are still recorded, so
/// the ledger says what was done to which object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum KubeUndo {
    PodDeleted {
        namespace: String,
        pod: String,
        /// The deployment expected to replace it.
        deployment: Option<String>,
    },
    PodEvicted {
        namespace: String,
        pod: String,
        deployment: Option<String>,
    },
    /// Scale back to the replicas read before scaling.
    Scaled {
        namespace: String,
        deployment: String,
        replicas: u32,
    },
    Restarted {
        namespace: String,
        deployment: String,
    },
}

/// A resolved step: the target, the call, and its undo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub target: Target,
    pub action: KubeAction,
    pub undo: KubeUndo,
}

/// The steps of one fault and the numbers the guardrails judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prepared {
    pub steps: Vec<Step>,
    /// Pods the selector matched, and how many of them were ready.
    pub matched: usize,
    pub ready: usize,
    /// A scale's deployment selector (`app=web`): the pods its held-down replicas belong to.
    pub pod_labels: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Done,
    /// The object was gone before the call (404): nothing was changed.
    TargetGone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovered {
    Restored,
    /// The object no longer exists: nothing is left broken (the chaos contract's rule).
    TargetGone,
    /// The step heals itself (a controller recreates the pod).
    NothingToUndo,
}

pub(super) async fn prepare(
    client: &Client,
    fault: &KubeFault,
    guard: &KubeGuard,
    already_down: usize,
) -> Result<Prepared, ChaosError> {
    match fault {
        KubeFault::DeletePods {
            selector,
            pick,
            grace,
        } => {
            let grace_seconds = grace.map(|g| g.as_secs().min(u32::MAX as u64) as u32);
            prepare_pods(
                client,
                selector,
                *pick,
                guard,
                already_down,
                |ns, pod, dep| {
                    (
                        KubeAction::DeletePod {
                            namespace: ns.clone(),
                            pod: pod.clone(),
                            grace_seconds,
                        },
                        KubeUndo::PodDeleted {
                            namespace: ns,
                            pod,
                            deployment: dep,
                        },
                    )
                },
            )
            .await
        }
        KubeFault::EvictPods { selector, pick } => {
            prepare_pods(
                client,
                selector,
                *pick,
                guard,
                already_down,
                |ns, pod, dep| {
                    (
                        KubeAction::EvictPod {
                            namespace: ns.clone(),
                            pod: pod.clone(),
                        },
                        KubeUndo::PodEvicted {
                            namespace: ns,
                            pod,
                            deployment: dep,
                        },
                    )
                },
            )
            .await
        }
        KubeFault::Scale {
            namespace,
            deployment,
            replicas,
        } => {
            prepare_scale(
                client,
                namespace,
                deployment,
                *replicas,
                guard,
                already_down,
            )
            .await
        }
        KubeFault::RolloutRestart {
            namespace,
            deployment,
        } => {
            guard::check_namespace(guard, namespace)?;
            // Read first: a restart of a deployment that does not exist is a missing target,
            // not a 404 surfacing in the middle of the run.
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let found = api
                .get_opt(deployment)
                .await
                .map_err(|e| api_error(&format!("reading deployment {namespace}/{deployment}"), e))?
                .ok_or_else(|| {
                    ChaosError::NoTarget(format!("deployment {namespace}/{deployment}"))
                })?;
            let ready = found
                .status
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                .max(0) as usize;
            Ok(Prepared {
                steps: vec![Step {
                    target: deployment_target(namespace, deployment),
                    action: KubeAction::RolloutRestart {
                        namespace: namespace.clone(),
                        deployment: deployment.clone(),
                    },
                    undo: KubeUndo::Restarted {
                        namespace: namespace.clone(),
                        deployment: deployment.clone(),
                    },
                }],
                matched: 1,
                ready,
                pod_labels: None,
            })
        }
    }
}

async fn prepare_pods(
    client: &Client,
    selector: &PodSelector,
    pick: Pick,
    guard: &KubeGuard,
    already_down: usize,
    step: impl Fn(String, String, Option<String>) -> (KubeAction, KubeUndo),
) -> Result<Prepared, ChaosError> {
    guard::check_namespace(guard, &selector.namespace)?;
    let (pods, _) = select::list_pods(client, selector).await?;
    guard::check_matched(&selector.to_string(), pods.len())?;
    let ready = pods.iter().filter(|p| p.ready).count();
    let victims = select::pick(&pods, pick.mode, pick.seed);
    // Every victim counts, ready or not: a conservative reading of "down".
    guard::check_take_down(guard, ready, already_down, victims.len())?;
    let steps = victims
        .into_iter()
        .map(|pod| {
            let (action, undo) = step(
                pod.namespace.clone(),
                pod.name.clone(),
                pod.deployment.clone(),
            );
            Step {
                target: pod.target(),
                action,
                undo,
            }
        })
        .collect();
    Ok(Prepared {
        steps,
        matched: pods.len(),
        ready,
        pod_labels: None,
    })
}

async fn prepare_scale(
    client: &Client,
    namespace: &str,
    deployment: &str,
    replicas: u32,
    guard: &KubeGuard,
    already_down: usize,
) -> Result<Prepared, ChaosError> {
    guard::check_namespace(guard, namespace)?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    // The scale subresource gives both the replicas to restore and the pod selector.
    let scale = match api.get_scale(deployment).await {
        Ok(scale) => scale,
        Err(e) if status_of(&e) == Some(404) => {
            return Err(ChaosError::NoTarget(format!(
                "deployment {namespace}/{deployment}"
            )));
        }
        Err(e) => {
            return Err(api_error(
                &format!("reading the scale of {namespace}/{deployment}"),
                e,
            ));
        }
    };
    let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32;
    let labels = scale.status.and_then(|s| s.selector).unwrap_or_default();
    let selector = PodSelector {
        namespace: namespace.to_string(),
        labels,
        fields: None,
    };
    let (pods, _) = select::list_pods(client, &selector).await?;
    let ready = pods.iter().filter(|p| p.ready).count();
    let wanted = ready.saturating_sub(replicas as usize);
    // Down already: replicas of the spec that are not Ready (a deleted pod not yet
    // replaced, or its replacement still starting), whether listed or not.
    let not_ready = (current as usize).max(pods.len()).saturating_sub(ready);
    guard::check_take_down(guard, ready, already_down + not_ready, wanted)?;
    let pod_labels = Some(selector.labels.clone()).filter(|l| !l.is_empty());
    Ok(Prepared {
        steps: vec![Step {
            target: deployment_target(namespace, deployment),
            action: KubeAction::Scale {
                namespace: namespace.to_string(),
                deployment: deployment.to_string(),
                replicas,
            },
            undo: KubeUndo::Scaled {
                namespace: namespace.to_string(),
                deployment: deployment.to_string(),
                replicas: current,
            },
        }],
        matched: pods.len(),
        ready,
        pod_labels,
    })
}

fn deployment_target(namespace: &str, deployment: &str) -> Target {
    Target {
        backend: BackendKind::Kube,
        id: format!("{namespace}/deployments/{deployment}"),
        name: deployment.to_string(),
        labels: Default::default(),
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// `Ok(Applied::TargetGone)` for a 404, the error otherwise.
fn gone_or(result: Result<(), kube::Error>, what: &str) -> Result<Applied, ChaosError> {
    match result {
        Ok(()) => Ok(Applied::Done),
        Err(e) if status_of(&e) == Some(404) => Ok(Applied::TargetGone),
        Err(e) => Err(api_error(what, e)),
    }
}

pub(super) async fn apply(client: &Client, action: &KubeAction) -> Result<Applied, ChaosError> {
    match action {
        KubeAction::DeletePod {
            namespace,
            pod,
            grace_seconds,
        } => {
            let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let params = DeleteParams {
                grace_period_seconds: *grace_seconds,
                ..DeleteParams::default()
            };
            let result = api.delete(pod, &params).await.map(|_| ());
            gone_or(result, &format!("deleting pod {namespace}/{pod}"))
        }
        KubeAction::EvictPod { namespace, pod } => evict(client, namespace, pod).await,
        KubeAction::Scale {
            namespace,
            deployment,
            replicas,
        } => {
            let result = scale(client, namespace, deployment, *replicas).await;
            gone_or(result, &format!("scaling {namespace}/{deployment}"))
        }
        KubeAction::RolloutRestart {
            namespace,
            deployment,
        } => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let patch = serde_json::json!({
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
            });
            // Strategic merge, as kubectl does: only this annotation changes.
            let result = api
                .patch(deployment, &params(), &Patch::Strategic(patch))
                .await
                .map(|_| ());
            gone_or(result, &format!("restarting {namespace}/{deployment}"))
        }
    }
}

async fn scale(
    client: &Client,
    namespace: &str,
    deployment: &str,
    replicas: u32,
) -> Result<(), kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    api.patch_scale(deployment, &params(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// A policy/v1 Eviction, built here rather than with `Api::evict`, whose body carries
/// neither apiVersion nor kind and names its options `delete_options` (which the API server
/// ignores): this body is the one the API reference documents.
async fn evict(client: &Client, namespace: &str, pod: &str) -> Result<Applied, ChaosError> {
    let what = format!("evicting pod {namespace}/{pod}");
    let eviction = Eviction {
        metadata: ObjectMeta {
            name: Some(pod.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        delete_options: None::<DeleteOptions>,
    };
    // k8s-openapi writes apiVersion and kind for resource types.
    let body = serde_json::to_vec(&eviction).map_err(|e| super::backend_error(e.to_string()))?;
    let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/eviction");
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| super::backend_error(format!("{what}: {e}")))?;
    match client.request::<Status>(request).await {
        Ok(_) => Ok(Applied::Done),
        Err(e) if status_of(&e) == Some(404) => Ok(Applied::TargetGone),
        // 429 is the API's answer when a PodDisruptionBudget forbids the eviction: the
        // cluster's own guardrail said no, which is a refusal, not a failure.
        Err(kube::Error::Api(status)) if status.code == 429 => Err(ChaosError::Refused(format!(
            "{what}: refused by a PodDisruptionBudget: {}",
            status.message
        ))),
        Err(e) => Err(api_error(&what, e)),
    }
}

pub(super) async fn recover(client: &Client, undo: &KubeUndo) -> Result<Recovered, ChaosError> {
    let KubeUndo::Scaled {
        namespace,
        deployment,
        replicas,
    } = undo
    else {
        return Ok(Recovered::NothingToUndo);
    };
    // Setting the recorded count is idempotent: a second recover sends the same PATCH.
    match scale(client, namespace, deployment, *replicas).await {
        Ok(()) => Ok(Recovered::Restored),
        Err(e) if status_of(&e) == Some(404) => Ok(Recovered::TargetGone),
        Err(e) => Err(api_error(
            &format!("scaling {namespace}/{deployment} back to {replicas}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chaos::Mode;

    #[test]
    fn scenario_actions_map_to_faults_and_mismatches_are_errors() {
        let pods = Selector::Pods {
            namespace: "shop".into(),
            selector: "app=api".into(),
        };
        let deployment = Selector::Deployment {
            namespace: "shop".into(),
            name: "api".into(),
        };
        let pick = Pick {
            mode: Mode::One,
            seed: 0,
        };
        let grace = Some(Duration::from_secs(5));
        assert_eq!(
            KubeFault::from_spec(&Action::DeletePod { grace }, &pods, pick).unwrap(),
            KubeFault::DeletePods {
                selector: PodSelector::labels("shop", "app=api"),
                pick,
                grace
            }
        );
        assert_eq!(
            KubeFault::from_spec(&Action::Scale { replicas: 1 }, &deployment, pick).unwrap(),
            KubeFault::Scale {
                namespace: "shop".into(),
                deployment: "api".into(),
                replicas: 1
            }
        );
        let error = KubeFault::from_spec(&Action::RolloutRestart, &pods, pick).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot target pods app=api in shop")
        );
    }

    #[test]
    fn undo_records_round_trip_through_json() {
        let undo = KubeUndo::Scaled {
            namespace: "shop".into(),
            deployment: "api".into(),
            replicas: 3,
        };
        let text = serde_json::to_string(&undo).unwrap();
        assert_eq!(
            text,
            r#"{"undo":"scaled","namespace":"shop","deployment":"api","replicas":3}"#
        );
        assert_eq!(serde_json::from_str::<KubeUndo>(&text).unwrap(), undo);
    }
}
