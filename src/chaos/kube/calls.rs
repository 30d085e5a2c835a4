//! The API calls behind the faults: the scale read a scale's plan needs, and the one
//! mutating call of each action. Each is bounded by `CALL_TIMEOUT` on its own. A 404 on a
//! mutating call means the object is gone already: nothing was changed, so nothing is left
//! broken (the chaos contract's rule) and the call succeeds.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, core::Status};

use super::{FIELD_MANAGER, RESTARTED_AT, api_error, bounded, status_of};
use crate::chaos::ChaosError;
use crate::plan::chaos::BackendKind;

/// A deployment's scale subresource: the replicas to restore and its pods' selector.
pub(super) struct ScaleNow {
    pub replicas: u32,
    /// The deployment's label selector (`app=api`); empty when the API gave none.
    pub selector: String,
}

/// One call, bounded; `Ok(None)` when the object is not there (404).
async fn found<T>(
    what: &str,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Option<T>, ChaosError> {
    match bounded(what, async { Ok(request.await) }).await? {
        Ok(value) => Ok(Some(value)),
        Err(e) if status_of(&e) == Some(404) => Ok(None),
        Err(e) => Err(api_error(what, e)),
    }
}

/// The scale subresource gives both the replicas to restore and the pod selector in one
/// read. A deployment that does not exist is a missing target, not an API failure.
pub(super) async fn read_scale(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<ScaleNow, ChaosError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let what = format!("reading the scale of {namespace}/{deployment}");
    let scale = found(&what, api.get_scale(deployment))
        .await?
        .ok_or_else(|| ChaosError::NoTarget(format!("deployment {namespace}/{deployment}")))?;
    Ok(ScaleNow {
        replicas: scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32,
        selector: scale.status.and_then(|s| s.selector).unwrap_or_default(),
    })
}

/// `grace`: None leaves the pod's own terminationGracePeriodSeconds.
pub(super) async fn delete_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    grace: Option<Duration>,
) -> Result<(), ChaosError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: grace.map(|g| g.as_secs().min(u32::MAX as u64) as u32),
        ..DeleteParams::default()
    };
    let what = format!("deleting pod {namespace}/{pod}");
    found(&what, api.delete(pod, &params)).await.map(drop)
}

/// A policy/v1 Eviction, built here rather than with `Api::evict`, whose body carries
/// neither apiVersion nor kind and names its options `delete_options` (which the API server
/// ignores): this body is the one the API reference documents.
pub(super) async fn evict_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
) -> Result<(), ChaosError> {
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
    let body = serde_json::to_vec(&eviction)
        .map_err(|e| ChaosError::backend(BackendKind::Kube, e.to_string()))?;
    let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/eviction");
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| ChaosError::backend(BackendKind::Kube, format!("{what}: {e}")))?;
    match bounded(&what, async { Ok(client.request::<Status>(request).await) }).await? {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        // 429 is the API's answer when a PodDisruptionBudget forbids the eviction: the
        // cluster's own guardrail said no, which is a refusal, not a failure.
        Err(kube::Error::Api(status)) if status.code == 429 => Err(ChaosError::Refused(format!(
            "{what}: refused by a PodDisruptionBudget: {}",
            status.message
        ))),
        Err(e) => Err(api_error(&what, e)),
    }
}

/// Sets the deployment's replicas: the scale-down and, with the recorded count, its
/// recovery — setting a count is idempotent, so a second recovery sends the same PATCH.
/// `what` names the call in errors ("scaling shop/api", "… back to 3").
pub(super) async fn set_replicas(
    client: &Client,
    namespace: &str,
    deployment: &str,
    replicas: u32,
    what: &str,
) -> Result<(), ChaosError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    found(
        what,
        api.patch_scale(deployment, &params(), &Patch::Merge(patch)),
    )
    .await
    .map(drop)
}

/// What `kubectl rollout restart` does: a new `restartedAt` annotation on the pod
/// template, which makes the controller roll every pod.
pub(super) async fn rollout_restart(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<(), ChaosError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
    });
    let what = format!("restarting {namespace}/{deployment}");
    // Strategic merge, as kubectl does: only this annotation changes.
    found(
        &what,
        api.patch(deployment, &params(), &Patch::Strategic(patch)),
    )
    .await
    .map(drop)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}
