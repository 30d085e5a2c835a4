//! Prometheus out: `/metrics` scraped during and after a real run of the binary, read by
//! python-prometheus-client's OpenMetrics parser, its final counters held to summary.json
//! and to what the server saw.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::openmetrics::{Sample, get, parse, sum};
use crate::support::prometheus::Prometheus;
use crate::support::web::{Speaks, WebServer};
use crate::support::{Workspace, eventually, loadgen_command};

/// Redirect hops (counted, not timed), a 401 (`http_4xx`), a reset connection (`reset`),
/// successes; one objective that passes and one that fails.
fn scenario(base: &str) -> String {
    format!(
        r#"
name = "exported \"drill\""
seed = 7
[target]
base_url = "{base}"
[load]
model = "open"
[[load.stage]]
duration = "4s"
rate = "40/s"
[[journey]]
name = "browse"
weight = 3
[[journey.step]]
name = "home"
url = "/hop/2"
[[journey.step]]
name = "me"
url = "/app/me"
[[journey]]
name = "break"
weight = 1
[[journey.step]]
name = "reset"
url = "/reset"
[[slo]]
name = "fast"
objective = "p90 < 5s"
scope = "browse/home"
[[slo]]
name = "clean"
objective = "error_rate < 1%"
"#
    )
}

fn scrape(address: SocketAddr) -> Vec<Sample> {
    let (status, head, body) = get(address, "/metrics").expect("the listener answers");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    parse(&body)
}

fn judged(samples: &[Sample]) -> bool {
    sum(samples, "loadgen_run_judged", &[]) == 1.0
}

fn run_dir(out: &std::path::Path) -> Option<PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .next()
}

#[test]
fn metrics_are_served_during_and_after_the_run_and_end_equal_to_the_summary() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let file = workspace.write(
        "exported.toml",
        &scenario(&format!("http://{}", server.addr)),
    );
    let out = workspace.out();
    let mut child = loadgen_command()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--metrics-linger", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the loadgen binary starts");
    let mut address = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            address = run_dir(&out)
                .and_then(|d| std::fs::read_to_string(d.join("metrics.addr")).ok())
                .and_then(|a| a.trim().parse::<SocketAddr>().ok());
            address.is_some()
        }),
        "metrics.addr appears in the run directory"
    );
    let address = address.unwrap();
    let run_dir = run_dir(&out).unwrap();

    // During the run: requests counted, the objectives pending, nothing judged.
    let mut during = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            during = scrape(address);
            sum(&during, "loadgen_requests_total", &[]) > 0.0
        }),
        "a scrape during the run shows requests"
    );
    assert!(!judged(&during), "judged before the run ended");
    for (family, kind) in [
        ("loadgen_requests", "counter"),
        ("loadgen_request_duration_seconds", "histogram"),
        ("loadgen_iterations_not_started", "counter"),
        ("loadgen_active_users", "gauge"),
        ("loadgen_objective_state", "gauge"),
    ] {
        assert!(
            during.iter().any(|s| s.family == family && s.kind == kind),
            "{family} is a {kind}"
        );
    }
    assert_eq!(
        sum(
            &during,
            "loadgen_objective_state",
            &[("objective", "clean"), ("state", "pending")]
        ),
        1.0
    );

    // After judging, with final values, until the linger is cut short by a signal.
    let mut after = Vec::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            after = scrape(address);
            judged(&after)
        }),
        "the run is judged while the listener lingers"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the failed objective fails the run");

    let summary: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    let totals = &summary["totals"];
    let n = |v: &Value| v.as_u64().unwrap() as f64;
    let requests = n(&totals["requests"]);
    let redirects = n(&totals["redirects"]);
    assert!(redirects > 0.0 && n(&totals["errors"]) > 0.0, "{totals}");
    // The server's own count is the first witness: every request, and every send again of
    // a request the server provably did not process (the reset connections), cut-off ones
    // too; the pre-flight's `/` is not the load's.
    let seen = server.counts();
    let seen_load: u64 = seen
        .iter()
        .filter(|(path, _)| *path != "/")
        .map(|(_, n)| n)
        .sum();
    let retried = n(&totals["retried_unprocessed"]);
    let abandoned = n(&totals["abandoned"]);
    assert_eq!(seen_load as f64, requests + retried + abandoned, "{seen:?}");
    assert_eq!(
        sum(&after, "loadgen_retried_unprocessed_total", &[]),
        retried
    );
    assert_eq!(sum(&after, "loadgen_abandoned_total", &[]), abandoned);
    assert_eq!(sum(&after, "loadgen_requests_total", &[]), requests);
    assert_eq!(
        sum(&after, "loadgen_requests_total", &[("outcome", "redirect")]),
        redirects
    );
    for (class, count) in totals["errors_by_class"].as_object().unwrap() {
        assert_eq!(
            sum(&after, "loadgen_requests_total", &[("outcome", class)]),
            n(count),
            "{class}"
        );
    }
    // Hops are counted, not timed.
    assert_eq!(
        sum(&after, "loadgen_request_duration_seconds_count", &[]),
        requests - redirects
    );
    assert_eq!(
        sum(
            &after,
            "loadgen_request_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        requests - redirects
    );
    assert_eq!(
        sum(&after, "loadgen_dropped_total", &[]),
        n(&totals["dropped"])
    );
    for journey in summary["journeys"].as_array().unwrap() {
        let name = journey["name"].as_str().unwrap();
        let at = [("journey", name)];
        for (family, field) in [
            ("loadgen_iterations_planned_total", "planned"),
            ("loadgen_iterations_started_total", "started"),
            ("loadgen_iterations_dropped_total", "dropped"),
        ] {
            assert_eq!(
                sum(&after, family, &at),
                n(&journey[field]),
                "{name} {field}"
            );
        }
        for outcome in ["completed", "failed", "interrupted"] {
            assert_eq!(
                sum(
                    &after,
                    "loadgen_iterations_ended_total",
                    &[at[0], ("outcome", outcome)]
                ),
                n(&journey[outcome]),
                "{name} {outcome}"
            );
        }
        let not_started: f64 = journey["not_started"]
            .as_object()
            .unwrap()
            .values()
            .map(n)
            .sum();
        assert_eq!(
            sum(&after, "loadgen_iterations_not_started_total", &at),
            not_started
        );
        for step in journey["steps"].as_array().unwrap() {
            let step_name = step["name"].as_str().unwrap();
            assert_eq!(
                sum(
                    &after,
                    "loadgen_requests_total",
                    &[at[0], ("step", step_name)]
                ),
                n(&step["requests"]),
                "{name}/{step_name}"
            );
        }
    }
    // Each objective's state is its verdict.
    for (objective, state) in [("fast", "pass"), ("clean", "fail")] {
        let verdicts: Vec<&str> = summary["slos"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == objective)
            .map(|v| v["status"].as_str().unwrap())
            .collect();
        assert!(
            verdicts.iter().all(|s| *s == state),
            "{objective}: {verdicts:?}"
        );
        assert_eq!(
            sum(
                &after,
                "loadgen_objective_state",
                &[("objective", objective), ("state", state)]
            ),
            1.0,
            "{objective}"
        );
        assert_eq!(
            sum(
                &after,
                "loadgen_objective_state",
                &[("objective", objective)]
            ),
            1.0
        );
    }
    // Every series carries the scenario and the run.
    let run_id = run_dir.file_name().unwrap().to_str().unwrap();
    assert!(after.iter().all(
        |s| s.labels.get("run_id").map(String::as_str) == Some(run_id)
            && s.labels.get("scenario").map(String::as_str) == Some("exported \"drill\"")
    ));
    // Counters only grow.
    assert!(
        sum(&during, "loadgen_requests_total", &[]) <= requests,
        "a counter went down"
    );
    let (status, _, _) = get(address, "/").unwrap_or((0, String::new(), String::new()));
    assert_ne!(status, 200, "the listener is gone with the run");
}

#[test]
fn a_metrics_address_already_taken_refuses_the_run_before_anything_is_sent() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let file = workspace.write(
        "exported.toml",
        &scenario(&format!("http://{}", server.addr)),
    );
    let out = workspace.out();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = loadgen_command()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .args(["--metrics-listen", &address])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics-listen {address}: cannot listen")),
        "{stderr}"
    );
    assert!(server.hits().is_empty(), "nothing is sent");
    assert!(run_dir(&out).is_none(), "no run directory");

    let output = loadgen_command()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--metrics-listen", "metrics.example:9464"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("IP:PORT"), "{stderr}");
}

/// The scenario with its series pushed to `receiver` (…/api/v1/write).
fn pushing(base: &str, receiver: &str) -> String {
    format!(
        "{}\n[output.prometheus]\nremote_write = \"{receiver}\"\n",
        scenario(base)
    )
}

#[test]
fn remote_write_carries_the_final_counts_into_prometheus() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let prometheus = Prometheus::start(workspace.dir.path(), "");
    let receiver = format!("http://{}/api/v1/write", prometheus.address);
    let file = workspace.write(
        "pushed.toml",
        &pushing(&format!("http://{}", server.addr), &receiver),
    );
    let out = workspace.out();
    let output = crate::support::run_binary(&file, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("remote write"), "nothing lost: {stderr}");
    let run_dir = run_dir(&out).unwrap();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    let pushed: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("remote_write.json")).unwrap()).unwrap();
    // A batch a second over the 4 s run, and the final one.
    assert!(pushed["batches_sent"].as_u64().unwrap() >= 4, "{pushed}");
    assert_eq!(pushed["batches_refused"], 0, "{pushed}");
    assert_eq!(pushed["batches_dropped"], 0, "{pushed}");

    let totals = &summary["totals"];
    let requests = totals["requests"].as_u64().unwrap() as f64;
    let redirects = totals["redirects"].as_u64().unwrap() as f64;
    let of_run = format!("run_id=\"{run_id}\"");
    assert_eq!(
        prometheus.value(&format!("sum(loadgen_requests_total{{{of_run}}})")),
        Some(requests)
    );
    assert_eq!(
        prometheus.value(&format!(
            "sum(loadgen_request_duration_seconds_count{{{of_run}}})"
        )),
        Some(requests - redirects)
    );
    assert_eq!(
        prometheus.value(&format!(
            "sum(loadgen_requests_total{{{of_run}, outcome=\"redirect\"}})"
        )),
        Some(redirects)
    );
    assert_eq!(
        prometheus.value(&format!("loadgen_run_judged{{{of_run}}}")),
        Some(1.0)
    );
    assert_eq!(
        prometheus.value(&format!(
            "loadgen_objective_state{{{of_run}, objective=\"clean\", state=\"fail\"}}"
        )),
        Some(1.0)
    );
    // Each pushed second is a sample: the counter grew over the run, in order.
    let samples = prometheus.value(&format!(
        "count_over_time(sum(loadgen_requests_total{{{of_run}}})[5m:1s]) > 0"
    ));
    assert!(samples.is_some(), "the series has samples over time");
    assert!(
        prometheus
            .value(&format!(
                "max_over_time(loadgen_active_users{{{of_run}}}[5m])"
            ))
            .is_some_and(|v| v > 0.0),
        "users were active while the run pushed"
    );
}

#[test]
fn a_receiver_that_is_down_loses_the_pushes_not_the_run() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let file = workspace.write(
        "pushed.toml",
        &pushing(
            &format!("http://{}", server.addr),
            &format!("http://{closed}/api/v1/write"),
        ),
    );
    let out = workspace.out();
    let output = crate::support::run_binary(&file, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Judged as it would be without the push: the failing objective's exit code.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: remote write to http://{closed}/api/v1/write"
        )),
        "{stderr}"
    );
    let run_dir = run_dir(&out).unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["judged"], true);
    assert_eq!(summary["complete"], true);
    let pushed: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("remote_write.json")).unwrap()).unwrap();
    assert_eq!(pushed["batches_sent"], 0, "{pushed}");
    assert!(pushed["batches_dropped"].as_u64().unwrap() >= 4, "{pushed}");
    assert!(pushed["retries"].as_u64().unwrap() >= 1, "{pushed}");
    assert!(pushed["last_error"].as_str().is_some(), "{pushed}");
}

#[test]
fn a_receiver_off_the_allow_list_is_refused_before_anything_is_sent() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let file = workspace.write(
        "pushed.toml",
        &pushing(
            &format!("http://{}", server.addr),
            "http://192.0.2.10:9090/api/v1/write",
        ),
    );
    let out = workspace.out();
    let output = crate::support::loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[output.prometheus] remote_write http://192.0.2.10:9090/api/v1/write"),
        "{stderr}"
    );
    assert!(server.hits().is_empty(), "nothing is sent");
    assert!(run_dir(&out).is_none(), "no run directory");
}
