//! loadgen against the running stack: the smoke scenario passes with loadgen's counts equal
//! to what the backends served, and a drill that kills the instance it targets shows a
//! failover burst that ends, in summary.json, the JUnit file and the report.

use crate::fixture::{Stack, exclusive_blocking, loadgen, only_run, repo_root, stack, summary};

/// Requests each backend has served so far (all routes but /metrics and /health/*).
fn served(stack: &Stack) -> u64 {
    let state = stack.state();
    let mut total = 0;
    for backend in state["backends"].as_array().unwrap() {
        let url = format!("{}/metrics", backend["url"].as_str().unwrap());
        let text = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .unwrap()
            .stdout;
        for line in String::from_utf8_lossy(&text).lines() {
            if line.starts_with("lms_http_requests_total{")
                && !line.contains("/metrics")
                && !line.contains("/health")
            {
                total += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64;
            }
        }
    }
    total
}

#[test]
fn the_smoke_scenario_passes_and_the_backends_saw_every_request() {
    let stack = stack();
    let _g = exclusive_blocking();
    let dir = tempfile_dir("smoke");
    let out = dir.path();
    let before = served(stack);
    // nginx's plain HTTP/1.1 listener, until `loadgen run --ca-file` can trust the stack's CA.
    let code = loadgen(&[
        "run",
        repo_root().join("scenarios/smoke.toml").to_str().unwrap(),
        "--target",
        &stack.http_url,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let after = served(stack);
    let summary = summary(&only_run(out));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], 0, "{:#}", summary["totals"]);
    let requests = summary["totals"]["requests"].as_u64().unwrap();
    assert!(requests > 200, "{requests}");
    // Every acknowledged enrolment, payment and exchange read back; verification's
    // requests are counted apart from the run's.
    let verify = &summary["verify"];
    assert_eq!(verify["passed"], true, "{verify:#}");
    let verified: u64 = verify["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["verified"].as_u64().unwrap())
        .sum();
    assert!(verified > 20, "{verify:#}");
    let verify_requests = verify["requests"].as_u64().unwrap();
    // nginx retries idempotent requests on another instance only after a failure; with no
    // failure, every request loadgen counted, the run's and verification's, reached exactly
    // one backend.
    assert_eq!(
        after - before,
        requests + verify_requests,
        "backends served {} requests, loadgen counted {requests} + {verify_requests} verifying",
        after - before
    );
    assert!(
        summary["slos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["status"] == "pass"),
        "{:#}",
        summary["slos"]
    );
    // nginx spread the traffic over every instance, and each response named its server.
    let instances = summary["totals"]["instances"].as_object().unwrap();
    assert_eq!(instances.len(), 3, "{instances:?}");
    let served: u64 = instances.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(served, requests);
}

#[test]
fn killing_the_targeted_instance_shows_a_burst_that_ends() {
    let stack = stack();
    let _g = exclusive_blocking();
    let state = stack.state();
    let backend = &state["backends"][0];
    let name = backend["name"].as_str().unwrap().to_string();
    // Straight at one instance, bypassing nginx: the client sees the outage itself.
    let (_dir, code, run_dir) = run_scenario(
        "drill",
        &format!(
            r#"name = "instance-kill"
[target]
base_url = "{url}"
request_timeout = "2s"
[load]
model = "open"
start_rate = "40/s"
[[load.stage]]
duration = "12s"
rate = "40/s"
[[journey]]
name = "catalogue"
[[journey.step]]
name = "courses"
url = "/api/courses"
[chaos]
stack_state = "{state}"
settle = "2s"
[[fault]]
name = "kill {name}"
at = "3s"
duration = "3s"
action = "kill"
target = {{ process = "{name}" }}
allow_last = true
[[slo]]
name = "availability while killed"
objective = "availability >= 100%"
window = "faults"
[[slo]]
name = "back within 5s of the restart"
objective = "error_rate < 1%"
recovery = "5s"
from = "end"
[[slo]]
name = "steady latency"
objective = "p99 < 1s"
window = "steady"
"#,
            url = backend["url"].as_str().unwrap(),
            state = stack.state_dir.join("state.json").display(),
        ),
    );
    let summary = summary(&run_dir);
    assert_eq!(
        code, 1,
        "the availability objective fails during the kill: {:#}",
        summary["slos"]
    );

    let failover = &summary["failover"][0];
    let burst = failover["burst_ms"].as_u64().expect("a burst");
    assert!((2000..=6000).contains(&burst), "{failover:#}");
    assert!(
        failover["recovered_after_ms"].as_u64().is_some(),
        "the burst ended: {failover:#}"
    );
    assert!(
        failover["failed_by_class"]["connect_refused"]
            .as_u64()
            .unwrap_or(0)
            > 20,
        "{failover:#}"
    );
    // The only instance served before and after; during the kill it served nothing new.
    assert!(
        failover["instances_before"][&name].as_u64().unwrap() > 50,
        "{failover:#}"
    );
    assert!(
        failover["instances_after"][&name].as_u64().unwrap() > 50,
        "{failover:#}"
    );
    eprintln!(
        "instance kill: {} requests failed, burst {} ms, back after {} ms",
        failover["requests_failed"], burst, failover["recovered_after_ms"]
    );

    let statuses: Vec<&str> = summary["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["fail", "pass", "pass"],
        "{:#}",
        summary["slos"]
    );
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert_eq!(
        junit.matches("<testcase ").count(),
        5,
        "JUnit lists every SLO verdict, the fault occurrence and the run's outcome"
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains(">F1<") && html.contains(&format!("kill {name}")),
        "the fault band and its name"
    );

    // The instance is back: restarted through the stack, ready, and recorded in state.json.
    let pid = stack.state()["backends"][0]["pid"].as_i64().unwrap();
    assert_ne!(pid, backend["pid"].as_i64().unwrap(), "a new process");
    let ready = std::process::Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            &format!("{}/health/ready", backend["url"].as_str().unwrap()),
        ])
        .status()
        .unwrap();
    assert!(ready.success());
}

/// Writes `text` as a scenario in a temporary directory and runs it: the directory (removed
/// when dropped), the exit code and the run directory inside it.
fn run_scenario(tag: &str, text: &str) -> (tempfile::TempDir, u8, std::path::PathBuf) {
    let dir = tempfile_dir(tag);
    let scenario = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("out");
    let code = loadgen(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let run_dir = only_run(&out);
    (dir, code, run_dir)
}

/// The report's `chart-data` block.
fn chart_data(html: &str) -> serde_json::Value {
    let open = r#"<script type="application/json" id="chart-data">"#;
    let start = html.find(open).expect("a chart-data block") + open.len();
    let body = &html[start..];
    serde_json::from_str(&body[..body.find("</script>").expect("the block ends")]).unwrap()
}

/// A temporary directory, removed when the test ends (also when it fails).
fn tempfile_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("loadgen-drill-{tag}-"))
        .tempdir()
        .unwrap()
}

/// Requests whose handler writes to Postgres, run while the stack's Postgres proxy (a
/// `loadgen proxy` between the backends and the database) adds latency on the timeline.
/// The backends' own latency, read from the stack's Prometheus (`[[observe]]`), rises in
/// the fault's band of the report as the client's does.
#[test]
fn latency_on_the_postgres_link_slows_writes_and_is_cleared() {
    let stack = stack();
    let _g = exclusive_blocking();
    let state = stack.state();
    let control = state["proxies"][0]["control"].as_str().unwrap().to_string();
    assert_eq!(state["proxies"][0]["name"], "postgres");
    let (_dir, code, run_dir) = run_scenario(
        "slow-db",
        &format!(
            r#"name = "slow-db"
[target]
base_url = "{url}"
request_timeout = "5s"
[load]
model = "open"
start_rate = "20/s"
[[load.stage]]
duration = "8s"
rate = "20/s"
[[journey]]
name = "sign up"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "slow-db" }}
expect = 201
[chaos]
stack_state = "{state}"
settle = "1s"
[[fault]]
name = "slow postgres"
at = "3s"
duration = "3s"
action = "latency"
latency = "100ms"
target = {{ proxy = "postgres" }}
[prometheus]
url = "{prometheus}"
scrape_interval = "1s"
[[observe]]
name = "server p99 of sign-ups"
query = "histogram_quantile(0.99, sum by (le) (rate(lms_http_request_duration_seconds_bucket{{method=\"POST\", route=\"/api/members\"}}[2s])))"
unit = "s"
"#,
            url = stack.http_url,
            state = stack.state_dir.join("state.json").display(),
            prometheus = state["prometheus"]["url"].as_str().unwrap(),
        ),
    );
    let summary = summary(&run_dir);
    assert_eq!(code, 0, "{:#}", summary["totals"]);
    assert_eq!(summary["totals"]["errors"], 0, "slower is not broken");
    // A sign-up is at least one database round trip: 100 ms each way on top of it. (The
    // p99 of a few dozen requests before the fault is nearly their maximum: on a busy
    // machine one slow request can lift it, so it is compared by ratio.)
    let failover = &summary["failover"][0];
    let before = failover["p99_before_us"].as_u64().unwrap();
    let during = failover["p99_during_us"].as_u64().unwrap();
    assert!(during >= 200_000, "p99 during: {during} µs ({failover:#})");
    assert!(
        during > 2 * before,
        "p99 before {before} µs, during {during} µs"
    );
    // The server's testimony, on the run's clock with the fault's band: its p99 rose where
    // the client's did.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let data = chart_data(&html);
    let band = &data["fault_bands"][0];
    assert_eq!(band["fault"], "slow postgres", "{band}");
    let (from, to) = (
        band["start_s"].as_f64().unwrap(),
        band["end_s"].as_f64().unwrap(),
    );
    let points: Vec<(f64, f64)> = data["observe"][0]["series"][0]["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no observed series: {}", data["observe"]))
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let peak = |keep: &dyn Fn(f64) -> bool| {
        points
            .iter()
            .filter(|(t, _)| keep(*t))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    };
    let server_before = peak(&|t| t < from);
    let server_during = peak(&|t| t > from + 1.0 && t <= to);
    assert!(
        server_during >= 0.1 && server_during > 2.0 * server_before,
        "server p99 {server_before} s before the band [{from}, {to}], {server_during} s in it: {points:?}"
    );
    let fault = std::process::Command::new("curl")
        .args(["-sf", &format!("{control}/fault")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fault.stdout).trim(), "null");
    eprintln!(
        "postgres latency 100 ms: client p99 {before} µs before, {during} µs during; server p99 {server_before} s before, {server_during} s during"
    );
}
