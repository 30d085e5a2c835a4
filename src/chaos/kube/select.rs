//! Pods by namespace + label selector (+ field selector), reduced to what a fault and its
//! guardrails need: readiness and the owning deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};

use super::api_error;
use crate::chaos::TargetId;
use crate::chaos::{ChaosError, Target};

/// Which pods a fault or a readiness watch looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSelector {
    pub namespace: String,
    /// A Kubernetes label selector (`app=api,tier!=canary`); empty matches every pod.
    pub labels: String,
    /// An optional field selector (`status.phase=Running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
}

impl std::fmt::Display for PodSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pods {} in {}", self.labels, self.namespace)?;
        if let Some(fields) = &self.fields {
            write!(f, " where {fields}")?;
        }
        Ok(())
    }
}

impl PodSelector {
    /// Pods of `namespace` matching a label selector.
    pub fn labels(namespace: &str, labels: &str) -> PodSelector {
        PodSelector {
            namespace: namespace.to_string(),
            labels: labels.to_string(),
            fields: None,
        }
    }

    pub(crate) fn list_params(&self) -> ListParams {
        let mut params = ListParams::default();
        if !self.labels.is_empty() {
            params = params.labels(&self.labels);
        }
        if let Some(fields) = &self.fields {
            params = params.fields(fields);
        }
        params
    }
}

/// One pod as the guardrails and the timeline see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// The `Ready` condition is `True` and the pod is not being deleted (a terminating pod
    /// is taken out of its Service's endpoints even while its containers still run).
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    pub phase: Option<String>,
    pub node: Option<String>,
    /// The controlling owner (`ReplicaSet/api-7d9f8b6c5d`).
    pub owner: Option<String>,
    /// The deployment behind the owning ReplicaSet, when there is one.
    pub deployment: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl PodInfo {
    /// The pod as a chaos target: id `namespace/name`.
    pub fn target(&self) -> Target {
        Target {
            backend: crate::plan::chaos::BackendKind::Kube,
            id: TargetId::Object {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            },
            name: self.name.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// Whether the pod's `Ready` condition is `True` (what a Service's endpoints go by).
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The Deployment a pod belongs to, from its controlling ReplicaSet. A Deployment names its
/// ReplicaSets `<deployment>-<pod-template-hash>` and labels their pods with that hash, so
/// the name is derived without an extra GET (and without RBAC on replicasets).
pub(crate) fn deployment_of(pod: &Pod) -> Option<String> {
    let owner = controller_of(pod)?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let hash = pod.metadata.labels.as_ref()?.get("pod-template-hash")?;
    owner
        .name
        .strip_suffix(hash.as_str())?
        .strip_suffix('-')
        .map(str::to_string)
}

fn controller_of(
    pod: &Pod,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// The facts about one pod; pure, so fixtures test it directly.
pub(crate) fn pod_info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let terminating = meta.deletion_timestamp.is_some();
    PodInfo {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        ready: is_ready(pod) && !terminating,
        terminating,
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        owner: controller_of(pod).map(|o| format!("{}/{}", o.kind, o.name)),
        deployment: deployment_of(pod),
        labels: meta
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// The selector's pods sorted by name (a stable order for "the first N"), and the list's
/// resourceVersion (where a watch picks up).
pub(crate) async fn list_pods(
    client: &kube::Client,
    selector: &PodSelector,
) -> Result<(Vec<PodInfo>, String), ChaosError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &selector.namespace);
    let list = api
        .list(&selector.list_params())
        .await
        .map_err(|e| api_error(&format!("listing {selector}"), e))?;
    let version = list.metadata.resource_version.clone().unwrap_or_default();
    let mut pods: Vec<PodInfo> = list.items.iter().map(pod_info).collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((pods, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn readiness_owner_and_deployment_come_from_the_pod() {
        let p = pod(serde_json::json!({
            "metadata": {
                "name": "api-7d9f8b6c5d-x2x7k", "namespace": "shop",
                "labels": {"app": "api", "pod-template-hash": "7d9f8b6c5d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "api-7d9f8b6c5d", "uid": "u", "controller": true}]
            },
            "spec": {"nodeName": "node-a", "containers": [{"name": "api"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"}]}
        }));
        let info = pod_info(&p);
        assert!(info.ready && !info.terminating);
        assert_eq!(info.owner.as_deref(), Some("ReplicaSet/api-7d9f8b6c5d"));
        assert_eq!(info.deployment.as_deref(), Some("api"));
        assert_eq!(info.node.as_deref(), Some("node-a"));
        assert_eq!(info.target().id.to_string(), "shop/api-7d9f8b6c5d-x2x7k");
    }

    /// What a target's "up" is made of: the timeline picks only pods up, so an unready or
    /// terminating pod is never chosen (`tests/it/chaos_kube.rs` shows it on a run).
    #[test]
    fn terminating_and_unready_pods_are_not_ready() {
        let make = |name: &str, ready: &str, deleting: bool| {
            let mut meta = serde_json::json!({"name": name, "namespace": "shop"});
            if deleting {
                meta["deletionTimestamp"] = "2026-11-22T10:00:00Z".into();
            }
            pod_info(&pod(serde_json::json!({
                "metadata": meta,
                "status": {"conditions": [{"type": "Ready", "status": ready}]}
            })))
        };
        let unready = make("a", "False", false);
        assert!(!unready.ready && !unready.terminating);
        let terminating = make("b", "True", true);
        assert!(!terminating.ready && terminating.terminating);
        assert!(terminating.deployment.is_none(), "no owner, no deployment");
        assert!(make("c", "True", false).ready);
    }
}
