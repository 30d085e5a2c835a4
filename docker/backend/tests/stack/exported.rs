//! Prometheus out on the local stack: a drill with a metrics listener is announced to the
//! stack's Prometheus (a file_sd file the local-stack adapter writes), which scrapes it —
//! and every backend — each second while it runs; the announcement is withdrawn at its end.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{exclusive_blocking, loadgen, only_run, stack};

/// An instant query's result vector against the stack's Prometheus.
fn query(prometheus: &str, promql: &str) -> Vec<Value> {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--get", "--data-urlencode"])
        .arg(format!("query={promql}"))
        .arg(format!("{prometheus}/api/v1/query"))
        .output()
        .expect("curl runs");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value(result: &Value) -> f64 {
    result["value"][1].as_str().unwrap().parse().unwrap()
}

fn run_dir(out: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .next()
}

#[test]
fn the_stacks_prometheus_scrapes_a_drill_and_every_backend_each_second() {
    let stack = stack();
    let _g = exclusive_blocking();
    let state = stack.state();
    let prometheus = state["prometheus"]["url"].as_str().unwrap().to_string();
    let backends = state["backends"].as_array().unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scraped.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
name = "scraped"
[target]
base_url = "{}"
[load]
model = "open"
[[load.stage]]
duration = "12s"
rate = "20/s"
[[journey]]
name = "catalogue"
[[journey.step]]
name = "courses"
url = "/api/courses"
[chaos]
stack_state = "{}"
[[slo]]
name = "clean"
objective = "error_rate < 1%"
"#,
            stack.http_url,
            stack.state_dir.join("state.json").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = {
        let (scenario, out) = (scenario.clone(), out.clone());
        std::thread::spawn(move || {
            loadgen(&[
                "run",
                scenario.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--quiet",
                "--metrics-listen",
                "127.0.0.1:0",
                "--metrics-linger",
                "2s",
            ])
        })
    };
    // The listener's address, and the announcement naming it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (run_id, address) = loop {
        let found = run_dir(&out).and_then(|d| {
            let address = std::fs::read_to_string(d.join("metrics.addr")).ok()?;
            Some((
                d.file_name()?.to_string_lossy().into_owned(),
                address.trim().to_string(),
            ))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "metrics.addr never appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    let announcement = stack
        .state_dir
        .join(format!("prometheus/loadgen/{run_id}.json"));
    let announced: Value =
        serde_json::from_str(&std::fs::read_to_string(&announcement).unwrap()).unwrap();
    assert_eq!(announced[0]["targets"][0], address.as_str());

    // Prometheus scrapes loadgen (up == 1 for its job) and sees the run's requests.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let up = query(
            &prometheus,
            &format!("up{{job=\"loadgen\", instance=\"{address}\"}}"),
        );
        let requests = query(
            &prometheus,
            &format!("sum(loadgen_requests_total{{job=\"loadgen\", run_id=\"{run_id}\"}})"),
        );
        if up.len() == 1 && value(&up[0]) == 1.0 && requests.first().is_some_and(|r| value(r) > 0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the run: up {up:?}, requests {requests:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every backend is up (each one's first scrape may still be due on a stack just
    // started), and both drill jobs are scraped every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let backends_up = query(&prometheus, "count(up{job=\"platform-backend\"} == 1)");
        if backends_up.first().map(value) == Some(backends as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every backend is up: {backends_up:?} of {backends}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    for selector in [
        "job=\"platform-backend\"".to_string(),
        format!("job=\"loadgen\", instance=\"{address}\""),
    ] {
        let scrapes = query(
            &prometheus,
            &format!("min(count_over_time(up{{{selector}}}[4s]))"),
        );
        assert!(
            scrapes.first().is_some_and(|r| value(r) >= 3.0),
            "{selector} is scraped about once a second: {scrapes:?}"
        );
    }

    let code = run.join().unwrap();
    let run_dir = only_run(&out);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(code, 0, "{:#}", summary["slos"]);
    assert!(
        !announcement.exists(),
        "the announcement is withdrawn at the run's end"
    );
}
