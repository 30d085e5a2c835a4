//! Kubernetes backend: pods and deployments through the API server (kube crate, client only).
//!
//! One lifecycle, the one every backend follows (`chaos/lifecycle.rs`): `KubeFaults`
//! resolves pods and deployments, plans each step (a scale reads the replicas it will put
//! back, so its undo is in the ledger before the change), applies it with one API call, and
//! `recover` scales a deployment back from its ledger record (`DeploymentUndo`) alone; a
//! deployment that no longer exists counts as recovered.
//!
//! - `faults`: the lifecycle, the namespace allow-list and the scale guardrail.
//! - `calls`: the scale read and the mutating calls (delete, evict, scale, rollout restart).
//! - `select`: pods by namespace + label (+ field) selector, with readiness and owner.
//! - `timeline`: a list+watch of a selector's pods recording ready counts over time.
//! - `pin`: which cluster a run may touch.
//!
//! No API server can run on the machines this is developed on: tests serve recorded API JSON
//! from a local HTTP server (see README.md here and `tests/it/chaos_kube.rs`).

mod calls;
pub(crate) mod faults;
pub(crate) mod pin;
pub(crate) mod select;
pub(crate) mod timeline;

pub use faults::DeploymentUndo;
pub(crate) use faults::{KubeFaults, KubeHealth};
pub(crate) use pin::Pin;
pub(crate) use select::PodInfo;
pub use select::PodSelector;
pub(crate) use timeline::ReadinessTimeline;

use kube::Client;
use tokio_util::sync::CancellationToken;

use super::ChaosError;

use crate::plan::chaos::BackendKind;

/// The annotation `kubectl rollout restart` sets; using the same key means a restart by
/// loadgen looks like any other to the humans reading the deployment.
pub(crate) const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Shows up in managedFields and audit logs as the writer of every change loadgen makes.
pub(crate) const FIELD_MANAGER: &str = "loadgen";

/// A connection to one cluster's API server.
#[derive(Clone)]
pub struct KubeBackend {
    client: Client,
}

impl KubeBackend {
    /// Connects through `api` (an explicit URL such as `http://127.0.0.1:8001` from
    /// `kubectl proxy`, or a test server), or else kubeconfig / the in-cluster service account.
    /// `connect`, once `pin` agrees with where it would go (no call is made otherwise).
    pub async fn connect_pinned(api: Option<&str>, pin: &Pin) -> Result<KubeBackend, ChaosError> {
        pin.check(api)?;
        KubeBackend::connect(api).await
    }

    pub async fn connect(api: Option<&str>) -> Result<KubeBackend, ChaosError> {
        let mut config = match api {
            Some(url) => {
                let uri = url.parse().map_err(|e| {
                    ChaosError::backend(BackendKind::Kube, format!("kube API URL {url:?}: {e}"))
                })?;
                kube::Config::new(uri)
            }
            None => kube::Config::infer().await.map_err(|e| {
                ChaosError::backend(
                    BackendKind::Kube,
                    format!("no kubeconfig or in-cluster config: {e}"),
                )
            })?,
        };
        // The client's default policy retries 429/503 with backoff for up to ~15 attempts.
        // A 429 on an eviction is a PodDisruptionBudget saying no, and a fault on a timeline
        // must not stall for minutes: every call here fails fast and the caller decides.
        config.default_retry = false;
        let client = Client::try_from(config).map_err(|e| {
            ChaosError::backend(
                BackendKind::Kube,
                format!("kube client for {}: {e}", api.unwrap_or("kubeconfig")),
            )
        })?;
        Ok(KubeBackend { client })
    }

    /// The selector's pods, sorted by name.
    pub async fn select(&self, selector: &PodSelector) -> Result<Vec<PodInfo>, ChaosError> {
        let listed = bounded("listing pods", select::list_pods(&self.client, selector)).await?;
        Ok(listed.0)
    }

    /// How many of the selector's pods are Ready now (one LIST; terminating pods do not
    /// count).
    pub async fn ready_pods(&self, selector: &PodSelector) -> Result<usize, ChaosError> {
        Ok(self
            .select(selector)
            .await?
            .iter()
            .filter(|p| p.ready)
            .count())
    }

    /// Healthy again: the controller has seen the latest spec, and every replica of the
    /// spec is updated and Ready with no old replica left. A deployment that is gone is
    /// not healthy.
    pub async fn deployment_ready(&self, namespace: &str, name: &str) -> Result<bool, ChaosError> {
        let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(self.client.clone(), namespace);
        let found = bounded("reading a deployment", async {
            api.get_opt(name)
                .await
                .map_err(|e| api_error(&format!("reading deployment {namespace}/{name}"), e))
        })
        .await?;
        let Some(deployment) = found else {
            return Ok(false);
        };
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let generation = deployment.metadata.generation.unwrap_or(0);
        let Some(status) = deployment.status else {
            return Ok(wanted == 0);
        };
        Ok(status.observed_generation.unwrap_or(0) >= generation
            && status.updated_replicas.unwrap_or(0) >= wanted
            && status.ready_replicas.unwrap_or(0) >= wanted
            && status.replicas.unwrap_or(0) <= wanted)
    }

    /// Watches the selector's pods until `cancel` fires; offsets are from `start`.
    pub async fn watch_readiness(
        &self,
        selector: &PodSelector,
        start: tokio::time::Instant,
        cancel: CancellationToken,
    ) -> Result<ReadinessTimeline, ChaosError> {
        timeline::watch(&self.client, selector, start, cancel).await
    }
}

/// Recovery from a ledger record alone (the timeline's, and `loadgen recover` after a
/// crash): reconnects to the recorded API and sets the replicas read before the scale
/// again. Idempotent, and a deployment that is gone counts as recovered.
pub(crate) async fn recover(undo: &DeploymentUndo) -> Result<(), ChaosError> {
    let DeploymentUndo {
        api,
        namespace,
        deployment,
        replicas,
    } = undo;
    let backend = KubeBackend::connect(api.as_deref()).await?;
    let what = format!("scaling {namespace}/{deployment} back to {replicas}");
    calls::set_replicas(&backend.client, namespace, deployment, *replicas, &what).await
}

/// How long one API exchange may take. The client has no read timeout of its own (a watch
/// must be able to idle), so one-shot calls get this bound: a stuck API server then fails a
/// fault or a recovery visibly instead of hanging the run.
pub(crate) const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One API call under `CALL_TIMEOUT`: one exchange each, never a sequence of them, so
/// every call has the whole bound and a timeout names the call that hung.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, ChaosError>>,
) -> Result<T, ChaosError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ChaosError::backend(
                BackendKind::Kube,
                format!(
                    "{what}: no answer from the API server within {}s",
                    CALL_TIMEOUT.as_secs()
                ),
            ))
        })
}

/// The HTTP status of an API error, when the server answered.
fn status_of(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// An API failure while doing `what`, with the server's own message when it sent one.
fn api_error(what: &str, error: kube::Error) -> ChaosError {
    let message = match &error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{what}: {} ({})", status.message, status.code)
        }
        other => format!("{what}: {other}"),
    };
    ChaosError::backend(BackendKind::Kube, message)
}
