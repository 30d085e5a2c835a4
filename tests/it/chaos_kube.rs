//! The Kubernetes backend against recorded API responses. No API server can run here
//! (DESIGN.md §4): a local HTTP server on 127.0.0.1:0 serves `tests/fixtures/kube/` and
//! records every call (method, path, query, body), so each test checks the exact calls
//! loadgen makes — and, for guardrails, that no mutating call was made at all.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use loadgen::chaos::ChaosError;
use loadgen::chaos::backends::Undo;
use loadgen::chaos::kube::DeploymentUndo;
use loadgen::chaos::kube::{
    Applied, KubeAction, KubeBackend, KubeFault, KubeGuard, KubeUndo, MaxUnavailable, Pick,
    PodSelector, Recovered,
};

const SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/api/scale";
const PODS: &str = "/api/v1/namespaces/shop/pods";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/kube/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: String,
}

impl Call {
    /// `METHOD path?query`. kube builds queries by appending `&name=value` to `path?`, so
    /// the raw query starts with an empty pair, which the API server ignores; it is dropped
    /// here so the expected lines read like the API reference.
    fn line(&self) -> String {
        match self.query.trim_start_matches('&') {
            "" => format!("{} {}", self.method, self.path),
            q => format!("{} {}?{q}", self.method, self.path),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{}: {e}", self.body))
    }

    fn params(&self) -> BTreeMap<String, String> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect()
    }
}

/// What the fake server answers.
enum Reply {
    Json(u16, String),
    /// Watch events, one per line, `gap` apart, counted into `sent` once written; then the
    /// stream stays open (as a real watch does until its timeout) until the client goes away.
    Watch(Vec<String>, Duration, Arc<AtomicUsize>),
}

type Router = dyn Fn(&Call) -> Reply + Send + Sync;

struct FakeApi {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeApi {
    async fn start(router: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let router: Arc<Router> = Arc::new(router);
        let seen = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (router, seen) = (router.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (router, seen) = (router.clone(), seen.clone());
                        async move { handle(request, &*router, &seen).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApi { addr, calls }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn backend(&self) -> KubeBackend {
        KubeBackend::connect(Some(&self.url())).await.unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.calls().iter().map(Call::line).collect()
    }

    fn mutating(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter(|c| c.method != "GET")
            .map(Call::line)
            .collect()
    }
}

async fn handle(
    request: Request<Incoming>,
    router: &Router,
    seen: &Mutex<Vec<Call>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let reply = router(&call);
    seen.lock().unwrap().push(call);
    let response = Response::builder().header("content-type", "application/json");
    Ok(match reply {
        Reply::Json(status, text) => response
            .status(status)
            .body(Full::new(Bytes::from(text)).boxed())
            .unwrap(),
        Reply::Watch(lines, gap, sent) => {
            let events = futures::stream::unfold(lines.into_iter(), move |mut lines| {
                let sent = sent.clone();
                async move {
                    tokio::time::sleep(gap).await;
                    match lines.next() {
                        Some(line) => {
                            sent.fetch_add(1, Ordering::SeqCst);
                            let frame = Frame::data(Bytes::from(line + "\n"));
                            Some((Ok::<_, Infallible>(frame), lines))
                        }
                        None => std::future::pending().await,
                    }
                }
            });
            response.body(StreamBody::new(events).boxed()).unwrap()
        }
    })
}

/// Waits until `sent` reaches `want` (the server wrote every event), then gives the client
/// a moment to read them. Polling rather than a fixed sleep keeps this robust on a busy box.
async fn all_sent(sent: &AtomicUsize, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sent.load(Ordering::SeqCst) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fake API never sent every event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
}

fn ok(name: &str) -> Reply {
    Reply::Json(200, fixture(name))
}

fn not_found() -> Reply {
    Reply::Json(404, fixture("status-404-deployment.json"))
}

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

/// A whole run against the fake API: a pod `delete` at 1 s, after which the API replays a
/// readiness sequence on the wall clock — the pod terminating and a replacement not Ready,
/// then, 2 s after the DELETE, the replacement Ready. The fault's window must end there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_in_its_fault_until_its_replacement_is_ready() {
    const READY_AFTER: Duration = Duration::from_secs(2);
    let deleted: Arc<Mutex<Option<(std::time::Instant, std::time::SystemTime)>>> =
        Arc::new(Mutex::new(None));
    let at = deleted.clone();
    let api = FakeApi::start(move |call| {
        let watching = call.params().get("watch").map(String::as_str) == Some("true");
        match (call.method.as_str(), call.path.as_str()) {
            ("GET", PODS) if watching => Reply::Watch(
                Vec::new(),
                Duration::from_millis(50),
                Arc::new(AtomicUsize::new(0)),
            ),
            ("GET", PODS) => match *at.lock().unwrap() {
                None => ok("pods-api.json"),
                Some((when, _)) if when.elapsed() < READY_AFTER => ok("pods-api-replacing.json"),
                Some(_) => ok("pods-api-replaced.json"),
            },
            ("DELETE", p) if p.starts_with(PODS) => {
                at.lock()
                    .unwrap()
                    .get_or_insert((std::time::Instant::now(), std::time::SystemTime::now()));
                ok("pod-deleted.json")
            }
            _ => not_found(),
        }
    })
    .await;
    let server = crate::support::server::TestServer::start();
    let workspace = crate::support::Workspace::new();
    let load = crate::support::steady_get(&server.url(), "", 20, "5s", "/hello");
    let file = workspace.write(
        "drill.toml",
        &format!(
            r#"name = "pod-drill"
{load}[chaos]
kube_api = "{}"
kube_namespaces = ["shop"]

[[fault]]
name = "delete api pod"
action = "delete"
target = {{ pods = "app=api", namespace = "shop" }}
at = "1s"
"#,
            api.url()
        ),
    );
    let run_options = crate::support::options(&file, &workspace.out());
    let runner = std::thread::spawn(move || crate::support::run_ok(&run_options));
    let (_, summary) = tokio::task::spawn_blocking(move || runner.join().unwrap())
        .await
        .unwrap();

    let (_, deleted_wall) = deleted.lock().unwrap().expect("the pod was deleted");
    let ready = crate::support::timeline::run_offset_ms(&summary, deleted_wall + READY_AFTER);
    let occurrence = crate::support::timeline::only_occurrence(&summary);
    assert_eq!(
        occurrence.status,
        loadgen::chaos::runner::OccurrenceStatus::Happened,
        "{occurrence:?}"
    );
    assert_eq!(
        occurrence.targets,
        vec!["api-7d9f8b6c5d-4kq2m (shop/api-7d9f8b6c5d-4kq2m)"]
    );
    let ended = occurrence.ended_ms.unwrap() as i64;
    let applied = occurrence.applied_ms.unwrap() as i64;
    eprintln!(
        "pod delete: applied {applied} ms, fixture Ready at {ready} ms, ended {ended} ms (ended − ready {} ms)",
        ended - ready
    );
    assert!(
        (ended - ready).abs() <= 1_000,
        "ended {ended} ms, the replacement was Ready at {ready} ms"
    );
    assert!(ended - applied >= 1_500, "applied {applied}, ended {ended}");
    let deletes = api.mutating();
    assert_eq!(deletes, vec![format!("DELETE {PODS}/api-7d9f8b6c5d-4kq2m")]);
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

/// A scale-down and a pod delete on one deployment share its `max_unavailable`: while
/// `api` (3 replicas) is scaled to 2, its pod list shows 2 Ready pods and nothing down,
/// yet one replica is down — a delete allowed 1 is refused before any call, one allowed
/// 67% (2 of 3) goes ahead. The fake API shrinks its pod list (recorded JSON, minus the
/// last pod) while the scale holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_and_a_delete_on_one_deployment_never_exceed_max_unavailable() {
    let replicas = Arc::new(Mutex::new(3u64));
    let scaled = replicas.clone();
    let mut two_pods: serde_json::Value = serde_json::from_str(&fixture("pods-api.json")).unwrap();
    two_pods["items"].as_array_mut().unwrap().pop();
    let two_pods = two_pods.to_string();
    let api = FakeApi::start(move |call| {
        let watching = call.params().get("watch").map(String::as_str) == Some("true");
        match (call.method.as_str(), call.path.as_str()) {
            ("GET", PODS) if watching => Reply::Watch(
                Vec::new(),
                Duration::from_millis(50),
                Arc::new(AtomicUsize::new(0)),
            ),
            ("GET", PODS) if *scaled.lock().unwrap() == 2 => Reply::Json(200, two_pods.clone()),
            ("GET", PODS) => ok("pods-api.json"),
            ("GET", SCALE) => ok("scale-api.json"),
            ("PATCH", SCALE) => {
                let wanted = call.json()["spec"]["replicas"].as_u64().unwrap();
                *scaled.lock().unwrap() = wanted;
                ok("scale-api.json")
            }
            ("DELETE", p) if p.starts_with(PODS) => ok("pod-deleted.json"),
            _ => not_found(),
        }
    })
    .await;
    let server = crate::support::server::TestServer::start();
    let workspace = crate::support::Workspace::new();
    let load = crate::support::steady_get(&server.url(), "", 20, "5s", "/hello");
    let file = workspace.write(
        "drill.toml",
        &format!(
            r#"name = "shared-budget"
{load}[chaos]
kube_api = "{}"
kube_namespaces = ["shop"]

[[fault]]
name = "scale api"
action = "scale"
replicas = 2
target = {{ deployment = "api", namespace = "shop" }}
at = "1s"
duration = "3s"
required = false

[[fault]]
name = "delete within one"
action = "delete"
target = {{ pods = "app=api", namespace = "shop" }}
at = "2s"
required = false

[[fault]]
name = "delete within two thirds"
action = "delete"
target = {{ pods = "app=api", namespace = "shop" }}
max_unavailable = "67%"
at = "2500ms"
required = false
"#,
            api.url()
        ),
    );
    let run_options = crate::support::options(&file, &workspace.out());
    let runner = std::thread::spawn(move || crate::support::run_ok(&run_options));
    let (_, summary) = tokio::task::spawn_blocking(move || runner.join().unwrap())
        .await
        .unwrap();
    let occurrence = |name: &str| {
        summary
            .faults
            .occurrences
            .iter()
            .find(|o| o.fault == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", summary.faults.occurrences))
            .clone()
    };
    let refused = occurrence("delete within one");
    assert_eq!(
        refused.status,
        loadgen::chaos::runner::OccurrenceStatus::NotRun,
        "{refused:?}"
    );
    let reason = refused.reason.unwrap_or_default();
    assert!(
        reason.contains("refused")
            && reason.contains("with 1 already down exceeds max_unavailable = 1"),
        "{reason}"
    );
    let allowed = occurrence("delete within two thirds");
    assert_eq!(allowed.targets.len(), 1, "{allowed:?}");
    assert_eq!(
        occurrence("scale api").targets.len(),
        1,
        "{:?}",
        summary.faults.occurrences
    );
    // Exactly one pod was deleted, between the scale down and the scale back.
    let mutating = api.mutating();
    let deletes: Vec<&String> = mutating
        .iter()
        .filter(|c| c.starts_with("DELETE"))
        .collect();
    assert_eq!(deletes.len(), 1, "{mutating:?}");
    assert_eq!(
        mutating.iter().filter(|c| c.starts_with("PATCH")).count(),
        2,
        "{mutating:?}"
    );
    assert!(mutating[0].starts_with("PATCH") && mutating[2].starts_with("PATCH"));
    assert_eq!(*replicas.lock().unwrap(), 3, "scaled back");
}

/// A shell pointed at another cluster: the kubeconfig's current context is `prod` (whose
/// server is the fake API), the scenario pins `staging`. The run is refused before any
/// request reaches the API server, and nothing is sent to the target either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_context_other_than_the_pinned_one_is_refused_before_any_call() {
    let api = FakeApi::start(|_| ok("pods-api.json")).await;
    let server = crate::support::server::TestServer::start();
    let workspace = crate::support::Workspace::new();
    let kubeconfig = workspace.write(
        "kubeconfig",
        &format!(
            r#"apiVersion: v1
kind: Config
current-context: prod
contexts:
- name: prod
  context: {{ cluster: prod, user: admin }}
- name: staging
  context: {{ cluster: staging, user: admin }}
clusters:
- name: prod
  cluster: {{ server: "{}" }}
- name: staging
  cluster: {{ server: "http://127.0.0.1:1" }}
users:
- name: admin
  user: {{ token: "t" }}
"#,
            api.url()
        ),
    );
    let load = crate::support::steady_get(&server.url(), "", 5, "2s", "/hello");
    let file = workspace.write(
        "pinned.toml",
        &format!(
            r#"name = "pinned"
{load}[chaos]
kube_context = "staging"
kube_namespaces = ["shop"]

[[fault]]
name = "delete api pod"
action = "delete"
target = {{ pods = "app=api", namespace = "shop" }}
at = "1s"
"#
        ),
    );
    let out = workspace.out();
    let ran = tokio::task::spawn_blocking(move || {
        crate::support::loadgen_command()
            .env("KUBECONFIG", &kubeconfig)
            .args(["run", file.to_str().unwrap(), "--quiet", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("current context is `prod`, not the pinned `staging`"),
        "{stderr}"
    );
    assert_eq!(
        api.lines(),
        Vec::<String>::new(),
        "no call reached the API server"
    );
    assert!(server.seen().is_empty(), "no traffic either");
}
