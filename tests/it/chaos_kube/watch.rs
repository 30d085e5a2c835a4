//! The run's observers against recorded API responses: the readiness watch of a pod
//! selector (LIST, then WATCH from its resourceVersion; LIST again when the watch expires)
//! and a deployment's health check after a fault.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use loadgen::api::chaos::PodSelector;

use super::PODS;
use super::fake_api::{FakeApi, Reply, all_sent, fixture, not_found, ok};

fn api_pods() -> PodSelector {
    PodSelector {
        namespace: "shop".into(),
        labels: "app=api".into(),
        fields: None,
    }
}

#[tokio::test]
async fn readiness_timeline_follows_a_replacement_pod() {
    let gap = Duration::from_millis(60);
    let events: Vec<String> = fixture("watch-api.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    let count = events.len();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", PODS) if call.params().get("watch").map(String::as_str) == Some("true") => {
                Reply::Watch(events.clone(), gap, counter.clone())
            }
            ("GET", PODS) => ok("pods-api.json"),
            _ => not_found(),
        },
    )
    .await;
    let backend = api.backend().await;
    let start = tokio::time::Instant::now();
    let cancel = CancellationToken::new();
    let watching = {
        let (backend, cancel) = (backend.clone(), cancel.clone());
        tokio::spawn(async move {
            backend
                .watch_readiness(&api_pods(), start, cancel)
                .await
                .unwrap()
        })
    };
    all_sent(&sent, count).await;
    cancel.cancel();
    let timeline = tokio::time::timeout(Duration::from_secs(2), watching)
        .await
        .expect("the watch stops on cancel")
        .unwrap();

    let calls = api.calls();
    assert_eq!(calls.len(), 2, "one LIST, one WATCH: {:?}", api.lines());
    assert_eq!(
        calls[0].line(),
        format!("GET {PODS}?labelSelector=app%3Dapi")
    );
    let watch = calls[1].params();
    assert_eq!(watch["watch"], "true");
    assert_eq!(
        watch["resourceVersion"], "48211",
        "picks up where the LIST left"
    );
    assert_eq!(watch["labelSelector"], "app=api");
    assert_eq!(watch["allowWatchBookmarks"], "true");

    let counts: Vec<(usize, usize)> = timeline.points.iter().map(|p| (p.ready, p.total)).collect();
    // Terminating (not ready), replacement added, old pod gone, replacement Ready.
    assert_eq!(counts, vec![(3, 3), (2, 3), (2, 4), (2, 3), (3, 3)]);
    assert!(timeline.points.windows(2).all(|w| w[0].at < w[1].at));
    assert_eq!(timeline.initial.len(), 3);
    assert!(timeline.errors.is_empty(), "{:?}", timeline.errors);

    let dip = timeline.dip().expect("readiness dipped");
    assert_eq!((dip.baseline, dip.lowest), (3, 2));
    let recovered = dip.recovered.expect("and recovered");
    // Events arrive `gap` apart: the drop is the 1st event, the recovery the 5th.
    assert!(dip.started >= gap && recovered >= gap * 5, "{dip:?}");
    assert!(recovered - dip.started >= gap * 3, "{dip:?}");

    assert_eq!(timeline.replacements.len(), 1);
    let replacement = &timeline.replacements[0];
    assert_eq!(replacement.pod, "api-7d9f8b6c5d-q8wzn");
    assert_eq!(replacement.ready_at, recovered);
    assert!(replacement.ready_at > replacement.seen_at);
    assert_eq!(replacement.startup, Some(Duration::from_secs(6)));

    let json = serde_json::to_value(&timeline).unwrap();
    assert_eq!(json["points"][1]["ready"], 2);
    assert!(json["replacements"][0]["startup"].as_f64() == Some(6.0));
}

#[tokio::test]
async fn an_expired_watch_lists_again_and_carries_on() {
    let gap = Duration::from_millis(30);
    let watches = Arc::new(Mutex::new(0u32));
    let seen = watches.clone();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let api = FakeApi::start(move |call| {
        let watching = call.params().get("watch").map(String::as_str) == Some("true");
        match (call.method.as_str(), call.path.as_str()) {
            ("GET", PODS) if watching => {
                let mut n = seen.lock().unwrap();
                *n += 1;
                let file = if *n == 1 {
                    "watch-expired.jsonl"
                } else {
                    "watch-api.jsonl"
                };
                let lines = fixture(file).lines().map(str::to_string).collect();
                Reply::Watch(lines, gap, counter.clone())
            }
            ("GET", PODS) => ok("pods-api.json"),
            _ => not_found(),
        }
    })
    .await;
    let backend = api.backend().await;
    let cancel = CancellationToken::new();
    let watching = {
        let (backend, cancel) = (backend.clone(), cancel.clone());
        let start = tokio::time::Instant::now();
        tokio::spawn(async move { backend.watch_readiness(&api_pods(), start, cancel).await })
    };
    // The expired watch's one event, a backoff second, a new LIST, the second watch's events.
    let second = fixture("watch-api.jsonl").lines().count();
    all_sent(&sent, 1 + second).await;
    cancel.cancel();
    let timeline = watching.await.unwrap().unwrap();

    let lines: Vec<String> = api
        .calls()
        .iter()
        .map(|c| {
            let watch = c.params().contains_key("watch");
            format!("{} {}", c.method, if watch { "watch" } else { "list" })
        })
        .collect();
    assert_eq!(
        lines,
        vec!["GET list", "GET watch", "GET list", "GET watch"]
    );
    assert_eq!(timeline.errors.len(), 1, "{:?}", timeline.errors);
    assert!(
        timeline.errors[0].1.contains("(410)"),
        "{:?}",
        timeline.errors
    );
    let dip = timeline.dip().unwrap();
    assert!(dip.recovered.is_some(), "{timeline:?}");
    assert_eq!(timeline.replacements.len(), 1);
}

/// A deployment is healthy again only once its rollout is done: the controller has seen
/// the latest generation and every replica of the spec is updated and Ready, no old one left.
#[tokio::test]
async fn a_deployment_is_healthy_again_when_its_rollout_is_done() {
    let state = Arc::new(Mutex::new(fixture("deployment-api.json")));
    let served = state.clone();
    let path = "/apis/apps/v1/namespaces/shop/deployments/api";
    let api = FakeApi::start(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", p) if p == path => Reply::Json(200, served.lock().unwrap().clone()),
            _ => not_found(),
        },
    )
    .await;
    let backend = api.backend().await;
    let with_status = |generation: i64, status: serde_json::Value| {
        let mut d: serde_json::Value =
            serde_json::from_str(&fixture("deployment-api.json")).unwrap();
        d["metadata"]["generation"] = generation.into();
        d["status"] = status;
        *state.lock().unwrap() = d.to_string();
    };
    assert!(
        backend.deployment_ready("shop", "api").await.unwrap(),
        "the fixture is settled"
    );
    // Just patched: the controller has not seen generation 5 yet.
    with_status(
        5,
        serde_json::json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}),
    );
    assert!(!backend.deployment_ready("shop", "api").await.unwrap());
    // Mid-rollout: a new pod not Ready, an old one still there.
    with_status(
        5,
        serde_json::json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3}),
    );
    assert!(!backend.deployment_ready("shop", "api").await.unwrap());
    // Scaled back up, not every replica Ready yet.
    with_status(
        5,
        serde_json::json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2}),
    );
    assert!(!backend.deployment_ready("shop", "api").await.unwrap());
    with_status(
        5,
        serde_json::json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}),
    );
    assert!(backend.deployment_ready("shop", "api").await.unwrap());
    // A deployment that is gone is not healthy.
    let gone = FakeApi::start(|_| not_found()).await;
    assert!(
        !gone
            .backend()
            .await
            .deployment_ready("shop", "api")
            .await
            .unwrap()
    );
}
