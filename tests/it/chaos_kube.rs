//! The Kubernetes backend against recorded API responses. No API server can run here
//! (DESIGN.md §4): a local HTTP server on 127.0.0.1:0 serves `tests/fixtures/kube/` and
//! records every call (method, path, query, body), so each test checks the exact calls
//! loadgen makes — and, for guardrails, that no mutating call was made at all.
//!
//! Every fault here goes the way a run takes it: a `ChaosPlan`'s pre-flight for the pods it
//! would hit and the refusals (reading only), its `Timeline` for the calls, the ledger's
//! undo records and the recovery, and `backends::Recovery` for `loadgen recover`.

mod drill;
mod fake_api;
mod runs;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadgen::api::chaos::DeploymentUndo;
use loadgen::api::chaos::EntryState::{Applied, Applying, Recovered};
use loadgen::api::chaos::EventKind;
use loadgen::api::chaos::OccurrenceStatus;
use loadgen::api::chaos::RecoveryDispatch as _;
use loadgen::api::chaos::{Recovery, Undo};
use loadgen::api::plan::{Action, FaultSpec, Guard, MaxUnavailable, Mode};

use drill::{Drill, deployment, events, fault, kinds, limit, parse, plan, pods, preflight, states};
use fake_api::{FakeApi, Reply, fixture, idle_watch, not_found, ok, watching};

const SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/api/scale";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/api";

/// What `loadgen recover` puts targets back with.
fn recovery() -> Recovery {
    Recovery::new(loadgen::api::platform::for_recovery(), None)
}

/// The `app=api` LIST, as a request line.
fn list_api() -> String {
    format!("GET {PODS}?labelSelector=app%3Dapi")
}

/// A scale reads the deployment's scale and its pods, has the replicas it read on disk as
/// the undo before it patches, and is scaled back at the run's end — and again, to the
/// same count, by `loadgen recover` from that ledger record alone (idempotent).
#[tokio::test]
async fn a_scale_records_the_replicas_it_read_then_patches_down_and_back() {
    let drill = Drill::new();
    let ledger = drill.ledger();
    let at_first_patch = Arc::new(Mutex::new(None::<String>));
    let seen = at_first_patch.clone();
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", SCALE) => ok("scale-api.json"),
            ("GET", PODS) => ok("pods-api.json"),
            ("PATCH", SCALE) => {
                let on_disk = || std::fs::read_to_string(&ledger).unwrap_or_default();
                seen.lock().unwrap().get_or_insert_with(on_disk);
                ok("scale-api-1.json")
            }
            _ => not_found(),
        },
    )
    .await;
    let scale = FaultSpec {
        guard: limit(MaxUnavailable::Count(2)),
        ..fault("scale api", Action::Scale { replicas: 1 }, deployment())
    };
    let report = drill.run(plan(&api, vec![scale])).await;
    // Held to the run's end: its window closes at the end, its recovery right after (in
    // either order within a millisecond).
    let mut kinds = kinds(&report);
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(
        kinds,
        vec![
            EventKind::Applied,
            EventKind::Ended,
            EventKind::Recovered,
            EventKind::Started
        ]
    );

    let undo = Undo::Kube(DeploymentUndo {
        api: Some(api.url()),
        namespace: "shop".into(),
        deployment: "api".into(),
        replicas: 3,
    });
    // When the scale-down went out, its undo was on disk, and nothing else was.
    let before = parse(at_first_patch.lock().unwrap().as_deref().unwrap());
    assert_eq!(states(&before), vec![Applying]);
    assert_eq!(before[0].undo, undo);
    // The ledger is JSON: what comes back from it is the undo that was planned.
    let records = drill.records();
    assert_eq!(states(&records), vec![Applying, Applied, Recovered]);
    assert!(records.iter().all(|r| r.undo == undo), "{records:?}");
    assert_eq!(records[0].target.id.to_string(), "shop/api");

    // `loadgen recover` after the run's own recovery: from the record alone, once more.
    recovery().recover(&records[0].undo).await.unwrap();

    let patch = format!("PATCH {SCALE}?fieldManager=loadgen");
    assert_eq!(
        api.lines(),
        vec![
            format!("GET {SCALE}"),
            list_api(),
            patch.clone(),
            patch.clone(),
            patch
        ]
    );
    let patches: Vec<(String, serde_json::Value)> = api
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| (c.content_type.clone(), c.json()))
        .collect();
    let merge = |replicas: u32| {
        let body = serde_json::json!({"spec": {"replicas": replicas}});
        ("application/merge-patch+json".to_string(), body)
    };
    assert_eq!(patches, vec![merge(1), merge(3), merge(3)]);
}

/// A deployment that no longer exists: scaling it back counts as recovered (one PATCH,
/// answered 404), and a scale of it is a missing target that fails before anything
/// reaches the ledger. An undo with nothing to put back makes no call at all.
#[tokio::test]
async fn a_deployment_that_is_gone_counts_as_recovered() {
    let api = FakeApi::start(|_| not_found()).await;
    let undo = Undo::Kube(DeploymentUndo {
        api: Some(api.url()),
        namespace: "shop".into(),
        deployment: "api".into(),
        replicas: 3,
    });
    recovery().recover(&undo).await.unwrap();
    assert_eq!(
        api.lines(),
        vec![format!("PATCH {SCALE}?fieldManager=loadgen")]
    );
    assert_eq!(
        api.calls()[0].json(),
        serde_json::json!({"spec": {"replicas": 3}})
    );

    // Scaling it in a run is a missing target, not a crash.
    let drill = Drill::new();
    let scale = fault("scale api", Action::Scale { replicas: 1 }, deployment());
    let report = drill.run(plan(&api, vec![scale])).await;
    let failed = events(&report, EventKind::Failed);
    assert_eq!(failed.len(), 1, "{report:?}");
    assert_eq!(
        failed[0].message.as_deref(),
        Some("no target matches deployment shop/api")
    );
    assert_eq!(report.occurrences[0].status, OccurrenceStatus::NotRun);
    assert!(drill.records().is_empty(), "nothing reached the ledger");
    assert_eq!(api.lines()[1..], [format!("GET {SCALE}")]);

    let before = api.calls().len();
    recovery().recover(&Undo::Nothing).await.unwrap();
    assert_eq!(api.calls().len(), before);
}

/// A pod delete hits the first Ready pod by name and sends the fault's grace period. Its
/// ledger record names the pod and the labels that tie it to its deployment, with nothing
/// to put back (the ReplicaSet recreates the pod), settled at the apply. A pod that is gone
/// already (404) is not an error.
#[tokio::test]
async fn delete_pod_sends_its_grace_period_and_records_the_pod() {
    let api = FakeApi::start(|call| match (call.method.as_str(), call.path.as_str()) {
        ("GET", PODS) if watching(call) => idle_watch(),
        ("GET", PODS) => ok("pods-api.json"),
        ("DELETE", p) if p.starts_with(PODS) => ok("pod-deleted.json"),
        _ => not_found(),
    })
    .await;
    let grace = Some(Duration::from_secs(5));
    let delete = FaultSpec {
        mode: Mode::Count(1),
        ..fault(
            "delete api pod",
            Action::DeletePod { grace },
            pods("app=api"),
        )
    };
    let drill = Drill::new();
    let report = drill.run(plan(&api, vec![delete])).await;
    let victim = "shop/api-7d9f8b6c5d-4kq2m";
    assert_eq!(
        report.occurrences[0].targets,
        vec![format!("api-7d9f8b6c5d-4kq2m ({victim})")]
    );
    let records = drill.records();
    assert_eq!(states(&records), vec![Applying, Applied, Recovered]);
    let record = &records[0];
    assert_eq!(
        (record.target.id.to_string().as_str(), &record.undo),
        (victim, &Undo::Nothing)
    );
    let label = |key: &str| record.target.labels.get(key).map(String::as_str);
    assert_eq!(label("app"), Some("api"));
    assert_eq!(label("pod-template-hash"), Some("7d9f8b6c5d"));

    // Listed (by the resolve, the readiness watch and the health check), deleted once.
    let deleted = format!("DELETE {PODS}/api-7d9f8b6c5d-4kq2m");
    let requests = api.requests();
    assert!(
        requests.iter().all(|l| *l == list_api() || *l == deleted),
        "{requests:?}"
    );
    assert!(requests.iter().position(|l| *l == deleted).unwrap() >= 1);
    assert_eq!(api.mutating(), vec![deleted]);
    let sent = api
        .calls()
        .into_iter()
        .find(|c| c.method == "DELETE")
        .unwrap();
    assert_eq!(sent.json(), serde_json::json!({"gracePeriodSeconds": 5}));

    // A pod that is already gone is reported applied, not failed.
    let gone = FakeApi::start(|call| match (call.method.as_str(), call.path.as_str()) {
        ("GET", PODS) if watching(call) => idle_watch(),
        ("GET", PODS) => ok("pods-api.json"),
        _ => not_found(),
    })
    .await;
    let delete = fault("delete", Action::DeletePod { grace: None }, pods("app=api"));
    let report = Drill::new().run(plan(&gone, vec![delete])).await;
    assert_eq!(events(&report, EventKind::Applied).len(), 1, "{report:?}");
    assert!(events(&report, EventKind::Failed).is_empty(), "{report:?}");
    let sent = gone
        .calls()
        .into_iter()
        .find(|c| c.method == "DELETE")
        .unwrap();
    assert_eq!(sent.json(), serde_json::json!({}));
}

/// An eviction POSTs a policy/v1 Eviction for the first Ready pod. When a
/// PodDisruptionBudget says no (429), the run reports the cluster's own guardrail refusing
/// it, not a crash.
#[tokio::test]
async fn eviction_posts_a_policy_v1_eviction_and_a_pdb_429_is_a_refusal() {
    let refuse = Arc::new(Mutex::new(false));
    let flag = refuse.clone();
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", PODS) if watching(call) => idle_watch(),
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
    let evict = || fault("evict api pod", Action::EvictPod, pods("app=api"));
    let report = Drill::new().run(plan(&api, vec![evict()])).await;
    let applied = events(&report, EventKind::Applied);
    let target = "api-7d9f8b6c5d-4kq2m (shop/api-7d9f8b6c5d-4kq2m)";
    assert_eq!(applied.len(), 1, "{report:?}");
    assert_eq!(applied[0].target.as_deref(), Some(target));

    *refuse.lock().unwrap() = true;
    let report = Drill::new().run(plan(&api, vec![evict()])).await;
    let failed = events(&report, EventKind::Failed);
    assert_eq!(failed.len(), 1, "{report:?}");
    let message = failed[0].message.clone().unwrap_or_default();
    assert!(
        message.starts_with("guardrail: evicting pod shop/api-7d9f8b6c5d-4kq2m"),
        "a PDB refusal must be a guardrail refusal: {message}"
    );
    assert!(message.contains("PodDisruptionBudget"), "{message}");
    assert!(
        message.contains("violate the pod's disruption budget"),
        "{message}"
    );

    let eviction = format!("POST {PODS}/api-7d9f8b6c5d-4kq2m/eviction");
    let posts: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|l| *l != list_api())
        .collect();
    assert_eq!(posts, vec![eviction.clone(), eviction]);
    let post = api
        .calls()
        .into_iter()
        .find(|c| c.method == "POST")
        .unwrap();
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

/// A rollout restart is one strategic-merge PATCH of the pod template's `restartedAt`
/// annotation, as `kubectl rollout restart` makes, with nothing to put back; the
/// deployment is then read for its health (the fixture's rollout is done).
#[tokio::test]
async fn rollout_restart_patches_the_template_annotation() {
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET" | "PATCH", DEPLOYMENT) => ok("deployment-api.json"),
            _ => not_found(),
        },
    )
    .await;
    // A rollout restart replaces the pods a few at a time and keeps the deployment
    // serving: it does not take its one target down, so the default guard lets it run.
    let restart = fault("restart api", Action::RolloutRestart, deployment());
    let drill = Drill::new();
    let report = drill.run(plan(&api, vec![restart])).await;
    assert_eq!(events(&report, EventKind::Applied).len(), 1, "{report:?}");
    assert_eq!(events(&report, EventKind::Ended).len(), 1, "{report:?}");
    let records = drill.records();
    assert_eq!(states(&records), vec![Applying, Applied, Recovered]);
    assert_eq!(records[0].undo, Undo::Nothing);

    let lines = api.lines();
    assert_eq!(lines[0], format!("PATCH {DEPLOYMENT}?fieldManager=loadgen"));
    assert!(
        lines.len() > 1 && lines[1..].iter().all(|l| *l == format!("GET {DEPLOYMENT}")),
        "{lines:?}"
    );
    let patch = &api.calls()[0];
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

/// `pods-api.json` with its first pod (`4kq2m`) not Ready: one of three already down.
fn one_pod_down() -> String {
    let mut pods: serde_json::Value = serde_json::from_str(&fixture("pods-api.json")).unwrap();
    let conditions = pods["items"][0]["status"]["conditions"]
        .as_array_mut()
        .unwrap();
    for condition in conditions {
        if condition["type"] == "Ready" {
            condition["status"] = "False".into();
        }
    }
    pods.to_string()
}

/// Pods by selector as the guardrail tests see them: `app=api` three Ready, `app=degraded`
/// the same with one not Ready, `app=solo` one, anything else none; `shop/api`'s scale.
async fn guarded_api() -> FakeApi {
    let degraded = one_pod_down();
    FakeApi::start(move |call| {
        let selector = call.params().get("labelSelector").cloned();
        match (
            call.method.as_str(),
            call.path.as_str(),
            selector.as_deref(),
        ) {
            ("GET", SCALE, _) => ok("scale-api.json"),
            ("GET", PODS, Some("app=api")) => ok("pods-api.json"),
            ("GET", PODS, Some("app=degraded")) => Reply::Json(200, degraded.clone()),
            ("GET", PODS, Some("app=solo")) => ok("pods-solo.json"),
            ("GET", PODS, _) => ok("pods-empty.json"),
            _ => not_found(),
        }
    })
    .await
}

/// The guardrails on pod faults, as a run judges them at its start (pre-flight), each
/// refusing before any mutating call: the namespace allow-list (before any call at all),
/// max_unavailable as a count and a percent, counting a pod already down, the last ready
/// pod, and a selector matching nothing. Pods are chosen Ready first.
#[tokio::test]
async fn guardrails_refuse_pod_faults_before_any_mutating_call() {
    let api = guarded_api().await;
    let delete = |name: &str, labels: &str, count: u32, guard: Guard| FaultSpec {
        mode: Mode::Count(count),
        guard,
        ..fault(name, Action::DeletePod { grace: None }, pods(labels))
    };
    let one = limit(MaxUnavailable::Count(1));

    // A namespace off the allow-list: refused without even reading.
    let outside = FaultSpec {
        selector: loadgen::api::plan::Selector::Pods {
            namespace: "kube-system".into(),
            selector: "k8s-app=kube-dns".into(),
        },
        ..delete("outside", "", 1, one)
    };
    let verdicts = preflight(&plan(&api, vec![outside])).await;
    assert!(
        verdicts[0]
            .1
            .starts_with("refused: guardrail: namespace kube-system"),
        "{verdicts:?}"
    );
    assert!(api.calls().is_empty());

    let half = limit(MaxUnavailable::Percent(50.0));
    let wide = limit(MaxUnavailable::Count(5));
    let outage = Guard {
        allow_last: true,
        ..wide
    };
    let two = limit(MaxUnavailable::Count(2));
    let faults = vec![
        delete("two of one", "app=api", 2, one),
        delete("one more of one", "app=degraded", 1, one),
        delete("one of half", "app=api", 1, half),
        delete("two of half", "app=api", 2, half),
        delete("the last", "app=solo", 1, wide),
        delete("the last, allowed", "app=solo", 1, outage),
        delete("ready first", "app=degraded", 1, two),
        delete("nothing", "app=nothing", 1, one),
    ];
    let verdicts = preflight(&plan(&api, faults)).await;
    let verdict = |name: &str| {
        let found = verdicts.iter().find(|(fault, _)| fault == name);
        found.map(|(_, v)| v.as_str()).unwrap_or_default()
    };
    let refused = |name: &str, says: &[&str]| {
        let v = verdict(name);
        let all = says.iter().all(|s| v.contains(s));
        assert!(v.starts_with("refused: ") && all, "{name}: {v}");
    };
    refused(
        "two of one",
        &["taking 2 target(s) down with 0 already down exceeds max_unavailable = 1"],
    );
    refused("one more of one", &["with 1 already down"]);
    assert_eq!(verdict("one of half"), "hits api-7d9f8b6c5d-4kq2m");
    refused("two of half", &["max_unavailable = 50% (1 of 3"]);
    refused("the last", &["1 of 1 ready target(s)", "allow_last = true"]);
    assert_eq!(verdict("the last, allowed"), "hits solo-5c8f6d7b9c-h7rtp");
    // 4kq2m comes first by name but is not Ready: the next one is hit.
    assert_eq!(verdict("ready first"), "hits api-7d9f8b6c5d-9xwz7");
    assert_eq!(
        verdict("nothing"),
        "error: no target matches pods app=nothing in shop"
    );
    assert!(api.mutating().is_empty(), "{:?}", api.mutating());
}

/// A scale is judged on the deployment's replicas, read when the run plans it: taking
/// every replica down, or more than max_unavailable, is refused before anything reaches
/// the ledger or the cluster changes.
#[tokio::test]
async fn guardrails_refuse_a_scale_on_the_replicas_it_reads() {
    let api = guarded_api().await;
    let scale = |name: &str, replicas: u32, max: u32| FaultSpec {
        guard: limit(MaxUnavailable::Count(max)),
        ..fault(name, Action::Scale { replicas }, deployment())
    };
    let faults = vec![scale("to none", 0, 5), scale("to one", 1, 1)];
    let drill = Drill::new();
    let report = drill.run(plan(&api, faults)).await;
    let failed = |name: &str| {
        let event = events(&report, EventKind::Failed)
            .into_iter()
            .find(|e| e.fault == name);
        event.and_then(|e| e.message.clone()).unwrap_or_default()
    };
    assert!(
        failed("to none").starts_with("guardrail: taking 3 of 3 ready"),
        "{report:?}"
    );
    assert!(
        failed("to one").starts_with("guardrail: taking 2 pod(s) down"),
        "{report:?}"
    );
    assert!(drill.records().is_empty(), "nothing reached the ledger");
    assert!(api.mutating().is_empty(), "{:?}", api.mutating());
    assert_eq!(api.lines()[..2], [format!("GET {SCALE}"), list_api()]);
}
