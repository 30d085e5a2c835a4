//! Whole runs against the fake API: a scenario file through `loadgen run`, its faults on
//! the run's timeline, and what the run reports.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake_api::{FakeApi, Reply, fixture, not_found, ok};
use super::{PODS, SCALE};

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
        loadgen::api::chaos::OccurrenceStatus::Happened,
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
        loadgen::api::chaos::OccurrenceStatus::NotRun,
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
