//! Kubernetes backend: pods and deployments through the API server (kube crate, client only).
//!
//! It follows the chaos contract of `chaos/mod.rs`, after chaos-mesh's Apply/Recover pair:
//! `prepare` reads what it needs (current replicas, ready pods), checks the guardrails and
//! returns each step with its `KubeUndo` — nothing has changed yet; the caller writes the
//! undo to the ledger, *then* calls `apply`; `recover(undo)` is idempotent and a deployment
//! that no longer exists counts as recovered.
//!
//! - `select`: pods by namespace + label (+ field) selector, with readiness and owner.
//! - `guard`: pure guardrail checks (namespace allow-list, max_unavailable, last replica).
//! - `actions`: delete, evict, scale, rollout restart, and their recovery.
//! - `timeline`: a list+watch of a selector's pods recording ready counts over time.
//!
//! No API server can run on the machines this is developed on: tests serve recorded API JSON
//! from a local HTTP server (see README.md here and `tests/it/chaos_kube.rs`).

mod actions;
pub mod faults;
pub mod guard;
pub mod pin;
pub mod select;
pub mod timeline;

pub use actions::{Applied, KubeAction, KubeFault, KubeUndo, Prepared, Recovered, Step};
pub use faults::{DeploymentUndo, KubeFaults, KubeHealth};
pub use guard::{KubeGuard, MaxUnavailable};
pub use pin::Pin;
pub use select::{Pick, PodInfo, PodSelector};
pub use timeline::{Dip, PodReady, ReadinessPoint, ReadinessTimeline};

use kube::Client;
use tokio_util::sync::CancellationToken;

use super::ChaosError;

/// The annotation `kubectl rollout restart` sets; using the same key means a restart by
/// loadgen looks like any other to the humans reading the deployment.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Shows up in managedFields and audit logs as the writer of every change loadgen makes.
pub const FIELD_MANAGER: &str = "loadgen";

/// A connection to one cluster's API server.
#[derive(Clone)]
pub struct KubeBackend {
    client: Client,
    api: Option<String>,
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
                let uri = url
                    .parse()
                    .map_err(|e| backend_error(format!("kube API URL {url:?}: {e}")))?;
                kube::Config::new(uri)
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| backend_error(format!("no kubeconfig or in-cluster config: {e}")))?,
        };
        // The client's default policy retries 429/503 with backoff for up to ~15 attempts.
        // A 429 on an eviction is a PodDisruptionBudget saying no, and a fault on a timeline
        // must not stall for minutes: every call here fails fast and the caller decides.
        config.default_retry = false;
        let client = Client::try_from(config).map_err(|e| {
            backend_error(format!(
                "kube client for {}: {e}",
                api.unwrap_or("kubeconfig")
            ))
        })?;
        Ok(KubeBackend {
            client,
            api: api.map(str::to_string),
        })
    }

    /// The API URL this backend was given (None: kubeconfig); recorded in ledger entries so
    /// `loadgen recover` reconnects to the same place.
    pub fn api(&self) -> Option<&str> {
        self.api.as_deref()
    }

    pub fn client(&self) -> &Client {
        &self.client
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

    /// Reads state, checks the guardrails and computes each step's undo. Makes no change.
    /// `already_down`: the selector's pods other faults hold down right now.
    pub async fn prepare(
        &self,
        fault: &KubeFault,
        guard: &KubeGuard,
        already_down: usize,
    ) -> Result<Prepared, ChaosError> {
        bounded(
            "reading the cluster",
            actions::prepare(&self.client, fault, guard, already_down),
        )
        .await
    }

    /// Performs one step. Call only after its undo is in the ledger.
    pub async fn apply(&self, action: &KubeAction) -> Result<Applied, ChaosError> {
        bounded("applying a fault", actions::apply(&self.client, action)).await
    }

    /// Puts back what `undo` records; idempotent.
    pub async fn recover(&self, undo: &KubeUndo) -> Result<Recovered, ChaosError> {
        bounded("recovering", actions::recover(&self.client, undo)).await
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

impl KubeUndo {
    /// The ledger's record. Only a scale has something to put back; the other actions
    /// heal through their controllers (`None`).
    pub fn to_ledger(&self, api: Option<&str>) -> Option<DeploymentUndo> {
        match self {
            KubeUndo::Scaled {
                namespace,
                deployment,
                replicas,
            } => Some(DeploymentUndo {
                api: api.map(str::to_string),
                namespace: namespace.clone(),
                deployment: deployment.clone(),
                replicas: *replicas,
            }),
            _ => None,
        }
    }
}

/// Recovery from a ledger record alone (`loadgen recover` after a crash): reconnects to
/// the recorded API and scales the deployment back.
pub async fn recover(undo: &DeploymentUndo) -> Result<(), ChaosError> {
    let DeploymentUndo {
        api,
        namespace,
        deployment,
        replicas,
    } = undo;
    let backend = KubeBackend::connect(api.as_deref()).await?;
    backend
        .recover(&KubeUndo::Scaled {
            namespace: namespace.clone(),
            deployment: deployment.clone(),
            replicas: *replicas,
        })
        .await
        .map(drop)
}

/// How long one API exchange may take. The client has no read timeout of its own (a watch
/// must be able to idle), so one-shot calls get this bound: a stuck API server then fails a
/// fault or a recovery visibly instead of hanging the run.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, ChaosError>>,
) -> Result<T, ChaosError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(backend_error(format!(
                "{what}: no answer from the API server within {}s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

fn backend_error(message: String) -> ChaosError {
    ChaosError::Backend {
        backend: "kube",
        message,
    }
}

/// The HTTP status of an API error, when the server answered.
pub(crate) fn status_of(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// An API failure while doing `what`, with the server's own message when it sent one.
pub(crate) fn api_error(what: &str, error: kube::Error) -> ChaosError {
    let message = match &error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{what}: {} ({})", status.message, status.code)
        }
        other => format!("{what}: {other}"),
    };
    backend_error(message)
}
