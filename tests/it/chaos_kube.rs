//! The Kubernetes backend against recorded API responses. No API server can run here
//! (DESIGN.md §4): a local HTTP server on 127.0.0.1:0 serves `tests/fixtures/kube/` and
//! records every call (method, path, query, body), so each test checks the exact calls
//! loadgen makes — and, for guardrails, that no mutating call was made at all.

mod fake_api;
mod runs;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadgen::chaos::ChaosError;
use loadgen::chaos::backends::Undo;
use loadgen::chaos::kube::DeploymentUndo;
use loadgen::chaos::kube::{
    Applied, KubeAction, KubeFault, KubeGuard, KubeUndo, MaxUnavailable, Pick, PodSelector,
    Recovered,
};

use fake_api::{FakeApi, Reply, fixture, not_found, ok};

const SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/api/scale";
const PODS: &str = "/api/v1/namespaces/shop/pods";

fn guard(max: MaxUnavailable) -> KubeGuard {
    KubeGuard {
        namespaces: vec!["shop".into()],
        max_unavailable: max,
        allow_last_replica: false,
    }
}

fn api_pods() -> PodSelector {
    PodSelector {
        namespace: "shop".into(),
        labels: "app=api".into(),
        fields: None,
    }
}

fn scale_api(replicas: u32) -> KubeFault {
    KubeFault::Scale {
        namespace: "shop".into(),
        deployment: "api".into(),
        replicas,
    }
}

#[tokio::test]
async fn scale_reads_first_then_patches_down_and_back() {
    let api = FakeApi::start(|call| match (call.method.as_str(), call.path.as_str()) {
        ("GET", SCALE) => ok("scale-api.json"),
        ("GET", PODS) => ok("pods-api.json"),
        ("PATCH", SCALE) => ok("scale-api-1.json"),
        _ => not_found(),
    })
    .await;
    let backend = api.backend().await;

    let prepared = backend
        .prepare(&scale_api(1), &guard(MaxUnavailable::Count(2)), 0)
        .await
        .unwrap();
    assert_eq!((prepared.matched, prepared.ready), (3, 3));
    let step = &prepared.steps[0];
    assert_eq!(
        step.undo,
        KubeUndo::Scaled {
            namespace: "shop".into(),
            deployment: "api".into(),
            replicas: 3
        }
    );
    assert!(api.mutating().is_empty(), "prepare changes nothing");

    // The undo goes to the ledger as JSON and must come back identical.
    let ledger = backend.api().map(str::to_string);
    let scaled = step.undo.to_ledger(ledger.as_deref()).unwrap();
    let record = serde_json::to_string(&Undo::Kube(scaled)).unwrap();
    let undo: Undo = serde_json::from_str(&record).unwrap();
    let scaled = DeploymentUndo {
        api: Some(api.url()),
        namespace: "shop".into(),
        deployment: "api".into(),
        replicas: 3,
    };
    assert_eq!(undo, Undo::Kube(scaled.clone()));

    assert_eq!(backend.apply(&step.action).await.unwrap(), Applied::Done);
    // `loadgen recover` path: from the ledger record alone, twice (idempotent).
    for _ in 0..2 {
        loadgen::chaos::kube::recover(&scaled).await.unwrap();
    }

    assert_eq!(
        api.lines(),
        vec![
            format!("GET {SCALE}"),
            format!("GET {PODS}?labelSelector=app%3Dapi"),
            format!("PATCH {SCALE}?fieldManager=loadgen"),
            format!("PATCH {SCALE}?fieldManager=loadgen"),
            format!("PATCH {SCALE}?fieldManager=loadgen"),
        ]
    );
    let patches: Vec<serde_json::Value> = api
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| {
            assert_eq!(c.content_type, "application/merge-patch+json");
            c.json()
        })
        .collect();
    assert_eq!(
        patches,
        vec![
            serde_json::json!({"spec": {"replicas": 1}}),
            serde_json::json!({"spec": {"replicas": 3}}),
            serde_json::json!({"spec": {"replicas": 3}}),
        ]
    );
}

#[tokio::test]
async fn a_deployment_that_is_gone_counts_as_recovered() {
    let api = FakeApi::start(|_| not_found()).await;
    let backend = api.backend().await;
    let undo = KubeUndo::Scaled {
        namespace: "shop".into(),
        deployment: "api".into(),
        replicas: 3,
    };
    assert_eq!(backend.recover(&undo).await.unwrap(), Recovered::TargetGone);
    assert_eq!(
        api.lines(),
        vec![format!("PATCH {SCALE}?fieldManager=loadgen")]
    );
    assert_eq!(
        api.calls()[0].json(),
        serde_json::json!({"spec": {"replicas": 3}})
    );

    // Preparing a fault against it is a missing target, not a crash.
    let error = backend
        .prepare(&scale_api(1), &guard(MaxUnavailable::Count(2)), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ChaosError::NoTarget(what) if what == "deployment shop/api"),
        "{error}"
    );
    // Undos that need nothing put back make no call at all.
    let before = api.calls().len();
    let restarted = KubeUndo::Restarted {
        namespace: "shop".into(),
        deployment: "api".into(),
    };
    assert_eq!(
        backend.recover(&restarted).await.unwrap(),
        Recovered::NothingToUndo
    );
    assert_eq!(api.calls().len(), before);
}

#[tokio::test]
async fn delete_pod_sends_its_grace_period_and_records_the_owner() {
    let api = FakeApi::start(|call| match (call.method.as_str(), call.path.as_str()) {
        ("GET", PODS) => ok("pods-api.json"),
        ("DELETE", p) if p.starts_with(PODS) => ok("pod-deleted.json"),
        _ => not_found(),
    })
    .await;
    let backend = api.backend().await;
    let fault = KubeFault::DeletePods {
        selector: api_pods(),
        pick: Pick::count(1),
        grace: Some(Duration::from_secs(5)),
    };
    let prepared = backend
        .prepare(&fault, &guard(MaxUnavailable::Count(1)), 0)
        .await
        .unwrap();
    let step = &prepared.steps[0];
    assert_eq!(step.target.id, "shop/api-7d9f8b6c5d-4kq2m");
    assert_eq!(
        step.undo,
        KubeUndo::PodDeleted {
            namespace: "shop".into(),
            pod: "api-7d9f8b6c5d-4kq2m".into(),
            deployment: Some("api".into())
        }
    );
    assert_eq!(step.undo.to_ledger(None), None);
    assert_eq!(backend.apply(&step.action).await.unwrap(), Applied::Done);
    assert_eq!(
        backend.recover(&step.undo).await.unwrap(),
        Recovered::NothingToUndo
    );

    assert_eq!(
        api.lines(),
        vec![
            format!("GET {PODS}?labelSelector=app%3Dapi"),
            format!("DELETE {PODS}/api-7d9f8b6c5d-4kq2m"),
        ]
    );
    let delete = &api.calls()[1];
    assert_eq!(delete.json(), serde_json::json!({"gracePeriodSeconds": 5}));

    // A pod that is already gone is reported, not an error.
    let gone = KubeAction::DeletePod {
        namespace: "shop".into(),
        pod: "api-7d9f8b6c5d-zzzzz".into(),
        grace_seconds: None,
    };
    let api2 = FakeApi::start(|_| not_found()).await;
    let backend2 = api2.backend().await;
    assert_eq!(backend2.apply(&gone).await.unwrap(), Applied::TargetGone);
    assert_eq!(api2.calls()[0].json(), serde_json::json!({}));
}

#[tokio::test]
async fn eviction_posts_a_policy_v1_eviction_and_a_pdb_429_is_a_refusal() {
    let refuse = Arc::new(Mutex::new(false));
    let flag = refuse.clone();
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", PODS) => ok("pods-api.json"),
            ("POST", p) if p.ends_with("/eviction") => {
                if *flag.lock().unwrap() {
                    Reply::Json(429, fixture("status-429-pdb.json"))
                } else {
                    Reply::Json(201, fixture("status-201-evicted.json"))
                }
            }
            _ => not_found(),
        },
    )
    .await;
    let backend = api.backend().await;
    let fault = KubeFault::EvictPods {
        selector: api_pods(),
        pick: Pick::count(1),
    };
    let prepared = backend
        .prepare(&fault, &guard(MaxUnavailable::Count(1)), 0)
        .await
        .unwrap();
    let action = &prepared.steps[0].action;
    assert_eq!(backend.apply(action).await.unwrap(), Applied::Done);

    *refuse.lock().unwrap() = true;
    let error = backend.apply(action).await.unwrap_err();
    let ChaosError::Refused(message) = &error else {
        panic!("a PDB refusal must be a guardrail refusal, got {error:?}");
    };
    assert!(message.contains("PodDisruptionBudget"), "{message}");
    assert!(
        message.contains("violate the pod's disruption budget"),
        "{message}"
    );

    let eviction = format!("POST {PODS}/api-7d9f8b6c5d-4kq2m/eviction");
    assert_eq!(
        api.lines(),
        vec![
            format!("GET {PODS}?labelSelector=app%3Dapi"),
            eviction.clone(),
            eviction
        ]
    );
    let post = &api.calls()[1];
    assert_eq!(post.content_type, "application/json");
    assert_eq!(
        post.json(),
        serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "api-7d9f8b6c5d-4kq2m", "namespace": "shop"}
        })
    );
}

#[tokio::test]
async fn rollout_restart_patches_the_template_annotation() {
    let deployment = "/apis/apps/v1/namespaces/shop/deployments/api";
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET" | "PATCH", p) if p == deployment => ok("deployment-api.json"),
            _ => not_found(),
        },
    )
    .await;
    let backend = api.backend().await;
    let fault = KubeFault::RolloutRestart {
        namespace: "shop".into(),
        deployment: "api".into(),
    };
    let prepared = backend
        .prepare(&fault, &guard(MaxUnavailable::Count(1)), 0)
        .await
        .unwrap();
    assert_eq!(prepared.ready, 3);
    let step = &prepared.steps[0];
    assert!(matches!(step.undo, KubeUndo::Restarted { .. }));
    assert_eq!(backend.apply(&step.action).await.unwrap(), Applied::Done);

    assert_eq!(
        api.lines(),
        vec![
            format!("GET {deployment}"),
            format!("PATCH {deployment}?fieldManager=loadgen"),
        ]
    );
    let patch = &api.calls()[1];
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    let body = patch.json();
    let annotations = body["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .unwrap();
    assert_eq!(annotations.len(), 1, "{body}");
    let at = annotations["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap();
    let stamp: jiff::Timestamp = at.parse().unwrap();
    let age = jiff::Timestamp::now().duration_since(stamp);
    assert!(age.as_secs() < 60, "restartedAt {at} is now");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only the annotation: {body}"
    );
}

#[tokio::test]
async fn guardrails_refuse_before_any_mutating_call() {
    let api = FakeApi::start(|call| {
        let selector = call.params().get("labelSelector").cloned();
        match (
            call.method.as_str(),
            call.path.as_str(),
            selector.as_deref(),
        ) {
            ("GET", SCALE, _) => ok("scale-api.json"),
            ("GET", PODS, Some("app=api")) => ok("pods-api.json"),
            ("GET", PODS, Some("app=solo")) => ok("pods-solo.json"),
            ("GET", PODS, _) => ok("pods-empty.json"),
            _ => not_found(),
        }
    })
    .await;
    let backend = api.backend().await;
    let pods = |labels: &str, count: u32| KubeFault::DeletePods {
        selector: PodSelector {
            namespace: "shop".into(),
            labels: labels.into(),
            fields: None,
        },
        pick: Pick::count(count),
        grace: None,
    };
    let refusal = |result: Result<_, ChaosError>| match result {
        Err(ChaosError::Refused(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    };

    // A namespace off the allow-list: refused without even reading.
    let outside = KubeFault::DeletePods {
        selector: PodSelector {
            namespace: "kube-system".into(),
            labels: "k8s-app=kube-dns".into(),
            fields: None,
        },
        pick: Pick::count(1),
        grace: None,
    };
    let message = refusal(
        backend
            .prepare(&outside, &guard(MaxUnavailable::Count(1)), 0)
            .await,
    );
    assert!(message.contains("namespace kube-system"), "{message}");
    assert!(api.calls().is_empty());

    let one = guard(MaxUnavailable::Count(1));
    let message = refusal(backend.prepare(&pods("app=api", 2), &one, 0).await);
    assert!(
        message.contains("taking 2 pod(s) down with 0 already down exceeds max_unavailable = 1"),
        "{message}"
    );
    let message = refusal(backend.prepare(&pods("app=api", 1), &one, 1).await);
    assert!(message.contains("1 already down"), "{message}");

    let half = guard(MaxUnavailable::Percent(50.0));
    assert!(backend.prepare(&pods("app=api", 1), &half, 0).await.is_ok());
    let message = refusal(backend.prepare(&pods("app=api", 2), &half, 0).await);
    assert!(
        message.contains("max_unavailable = 50% (1 of 3"),
        "{message}"
    );

    let wide = guard(MaxUnavailable::Count(5));
    let message = refusal(backend.prepare(&pods("app=solo", 1), &wide, 0).await);
    assert!(
        message.contains("1 of 1 ready pod(s)") && message.contains("allow_last = true"),
        "{message}"
    );
    let outage = KubeGuard {
        allow_last_replica: true,
        ..wide.clone()
    };
    assert!(
        backend
            .prepare(&pods("app=solo", 1), &outage, 0)
            .await
            .is_ok()
    );

    let message = refusal(backend.prepare(&scale_api(0), &wide, 0).await);
    assert!(message.contains("taking 3 of 3 ready"), "{message}");
    let message = refusal(backend.prepare(&scale_api(1), &one, 0).await);
    assert!(message.contains("taking 2 pod(s) down"), "{message}");

    let nothing = backend.prepare(&pods("app=nothing", 1), &one, 0).await;
    assert!(
        matches!(&nothing, Err(ChaosError::NoTarget(what)) if what == "pods app=nothing in shop"),
        "{nothing:?}"
    );

    assert!(api.mutating().is_empty(), "{:?}", api.mutating());
    assert!(!api.calls().is_empty());
}
