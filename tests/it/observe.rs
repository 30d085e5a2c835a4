//! Prometheus in: `[[observe]]` queries fetched from a real Prometheus after the load,
//! saved in prometheus.json, listed in summary.json, drawn in report.html — and drawn again
//! by `loadgen report` with Prometheus gone. The server scrapes the run's own `/metrics`,
//! so what it returns can be held to what the run counted.

use std::time::Duration;

use serde_json::Value;

use crate::support::prometheus::Prometheus;
use crate::support::web::{Speaks, WebServer};
use crate::support::{Workspace, json_block};

/// A port free a moment ago (Prometheus's static config needs it before the run starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scenario(base: &str, metrics_port: u16, prometheus: &str) -> String {
    format!(
        r#"
name = "observed"
seed = 3
[target]
base_url = "{base}"
[load]
model = "open"
[[load.stage]]
duration = "6s"
rate = "40/s"
[[journey]]
name = "browse"
[[journey.step]]
name = "home"
url = "/"
[output.prometheus]
listen = "127.0.0.1:{metrics_port}"
[prometheus]
url = "{prometheus}"
scrape_interval = "1s"
[[observe]]
name = "sent"
query = "sum(rate(loadgen_requests_total[3s]))"
unit = "/s"
[[observe]]
name = "broken"
query = "sum(rate("
unit = "count"
[[slo]]
name = "fast"
objective = "p90 < 5s"
"#
    )
}

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A finished run whose own `/metrics` a real Prometheus scraped. Bind `_workspace` and
/// `_server` when destructuring: an unbound field is dropped at once (the run directory
/// with it).
struct Scraped {
    code: Option<i32>,
    stderr: String,
    run_dir: std::path::PathBuf,
    prometheus: Prometheus,
    _workspace: Workspace,
    _server: WebServer,
}

/// Runs `text(target, metrics port, Prometheus URL)` (the real binary, `--quiet`) against a
/// test server while a Prometheus scrapes the run's listener every `interval` — waiting
/// for its first scrape first unless the interval is too long for that.
fn scraped_run(interval: &str, text: impl Fn(&str, u16, &str) -> String) -> Scraped {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let metrics_port = free_port();
    let config = format!(
        "  - job_name: loadgen\n    scrape_interval: {interval}\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    );
    let prometheus = match interval {
        "1s" => Prometheus::start(workspace.dir.path(), &config),
        _ => Prometheus::start_unwaited(workspace.dir.path(), &config),
    };
    let file = workspace.write(
        "scraped.toml",
        &text(
            &format!("http://{}", server.addr),
            metrics_port,
            &format!("http://{}", prometheus.address),
        ),
    );
    let out = workspace.out();
    let output = crate::support::run_binary(&file, &out);
    Scraped {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        run_dir: crate::support::only_entry(&out),
        prometheus,
        _workspace: workspace,
        _server: server,
    }
}

#[test]
fn observed_series_are_saved_listed_drawn_and_drawn_again_without_prometheus() {
    let Scraped {
        code,
        stderr,
        run_dir,
        prometheus,
        _workspace,
        _server,
        ..
    } = scraped_run("1s", scenario);
    assert_eq!(code, Some(0), "{stderr}");
    // The broken query is said, not fatal.
    assert!(stderr.contains("[[observe]] `broken`"), "{stderr}");

    let saved = json(&run_dir.join("prometheus.json"));
    assert_eq!(saved["step_s"], 1.0);
    let sent = &saved["observe"][0];
    assert_eq!(sent["name"], "sent");
    let points = sent["series"][0]["points"].as_array().unwrap();
    assert!(points.len() >= 5, "{sent}");
    // On the run's clock: from its start to its end plus settle.
    let summary = json(&run_dir.join("summary.json"));
    let covered =
        summary["duration_s"].as_f64().unwrap() + summary["settle_ms"].as_f64().unwrap() / 1000.0;
    for point in points {
        let second = point[0].as_f64().unwrap();
        assert!((-0.001..=covered + 0.001).contains(&second), "{point}");
    }
    // The server saw the run's own rate: about the 40/s it sent.
    let peak = points
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((20.0..=60.0).contains(&peak), "peak rate {peak}: {sent}");
    let broken = &saved["observe"][1];
    assert!(broken["series"].as_array().unwrap().is_empty());
    assert!(
        broken["error"].as_str().unwrap().contains("bad_data"),
        "{broken}"
    );

    // Listed in summary.json, drawn in report.html with the numbers in its data block.
    assert_eq!(summary["schema_version"], 10);
    assert_eq!(summary["observe"][0]["name"], "sent");
    assert_eq!(summary["observe"][0]["series"], 1);
    assert_eq!(summary["observe"][0]["points"], points.len());
    assert!(summary["observe"][1]["error"].is_string());
    crate::support::schema::assert_matches_schema(&run_dir);
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains("The platform&#x27;s own metrics")
            || html.contains("The platform's own metrics")
    );
    let data = json_block(&html, "chart-data");
    assert_eq!(
        data["observe"][0]["series"][0]["points"],
        sent["series"][0]["points"]
    );

    // Prometheus gone: `loadgen report` judges and draws the same from the saved file.
    drop(prometheus);
    std::fs::remove_file(run_dir.join("report.html")).unwrap();
    let again = crate::support::loadgen(&["report", run_dir.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let data = json_block(&html, "chart-data");
    assert_eq!(
        data["observe"][0]["series"][0]["points"],
        sent["series"][0]["points"]
    );
    assert_eq!(
        json(&run_dir.join("summary.json"))["observe"],
        summary["observe"]
    );
}

#[test]
fn a_prometheus_that_cannot_be_reached_is_recorded_and_the_run_judged() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let closed = free_port();
    let file = workspace.write(
        "observed.toml",
        &scenario(
            &format!("http://{}", server.addr),
            free_port(),
            &format!("http://127.0.0.1:{closed}"),
        )
        .replace("scrape_interval = \"1s\"\n", ""),
    );
    let out = workspace.out();
    let started = std::time::Instant::now();
    let output = crate::support::run_binary(&file, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // Without a scrape interval from the scenario or the server, 15 s is assumed: the wait
    // for the last scrape is bounded by it.
    assert!(started.elapsed() < Duration::from_secs(60));
    let run_dir = crate::support::only_entry(&out);
    let saved = json(&run_dir.join("prometheus.json"));
    for observed in saved["observe"].as_array().unwrap() {
        assert!(
            observed["error"]
                .as_str()
                .unwrap()
                .contains(&format!("127.0.0.1:{closed}")),
            "{observed}"
        );
    }
    let summary = json(&run_dir.join("summary.json"));
    assert_eq!(summary["judged"], true);
    assert_eq!(summary["observe"].as_array().unwrap().len(), 2);
}

#[test]
fn observe_needs_a_server_and_a_known_unit() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "bad.toml",
        r#"name = "bad"
[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[[journey]]
name = "j"
[[journey.step]]
name = "s"
url = "/"
[[observe]]
name = "p99"
query = "up"
unit = "ms"
"#,
    );
    let output = crate::support::loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        workspace.out().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml:14:1: error: [[observe]] needs a [prometheus] section"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:17:8: error: unknown unit `ms`"),
        "{stderr}"
    );
}

/// Two query objectives on the run's own rate as the server scraped it: one that holds and
/// one that cannot.
fn with_objectives(base: &str, metrics_port: u16, prometheus: &str) -> String {
    format!(
        r#"{}
[[slo]]
name = "server saw the load"
query = "sum(rate(loadgen_requests_total[3s]))"
unit = "/s"
objective = "max > 5/s"
[[slo]]
name = "server saw too little"
query = "sum(rate(loadgen_requests_total[3s]))"
unit = "/s"
objective = "max < 2/s"
"#,
        scenario(base, metrics_port, prometheus)
    )
}

fn verdicts(summary: &Value) -> Vec<(String, String, String)> {
    summary["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["window"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn query_objectives_are_judged_on_the_servers_points_and_again_without_it() {
    let Scraped {
        code,
        stderr,
        run_dir,
        prometheus,
        _workspace,
        _server,
        ..
    } = scraped_run("1s", with_objectives);
    // The failing query objective fails the run.
    assert_eq!(code, Some(1), "{stderr}");
    let summary = json(&run_dir.join("summary.json"));
    let judged = verdicts(&summary);
    assert!(
        judged.contains(&("server saw the load".into(), "run".into(), "pass".into())),
        "{judged:?} {}",
        std::fs::read_to_string(run_dir.join("prometheus.json")).unwrap()
    );
    assert!(
        judged.contains(&("server saw too little".into(), "run".into(), "fail".into())),
        "{judged:?}"
    );
    let failed = summary["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "server saw too little")
        .unwrap();
    // The value judged is the server's view of the ramp to 40/s (its counters move a
    // second at a time, so it lags the client's); the series is named.
    let measured = failed["measured"][0]["value"].as_f64().unwrap();
    assert!((5.0..=60.0).contains(&measured), "{failed}");
    assert!(
        failed["reason_text"]
            .as_str()
            .unwrap()
            .contains("1 of 1 series past the threshold: {}"),
        "{failed}"
    );
    // The evidence was counted per window: the run's samples of the selector.
    let saved = json(&run_dir.join("prometheus.json"));
    let samples = saved["objectives"][0]["windows"][0]["samples"]
        .as_u64()
        .unwrap();
    assert!(samples >= 4, "{saved}");
    crate::support::schema::assert_matches_schema(&run_dir);

    // Prometheus gone: `loadgen report` gives the same verdicts from the saved data.
    drop(prometheus);
    let again = crate::support::loadgen(&["report", run_dir.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(verdicts(&json(&run_dir.join("summary.json"))), judged);
}

#[test]
fn a_window_the_server_did_not_scrape_twice_has_no_data_whatever_its_points_say() {
    // Scraped every 30 s: over a 6 s run at most one sample, which the lookback repeats
    // into a point every second.
    let Scraped {
        code,
        stderr,
        run_dir,
        _workspace,
        _server,
        ..
    } = scraped_run("30s", with_objectives);
    assert_eq!(code, Some(1), "no_data fails the run: {stderr}");
    let summary = json(&run_dir.join("summary.json"));
    for verdict in summary["slos"].as_array().unwrap() {
        if verdict["name"] == "fast" {
            continue;
        }
        assert_eq!(verdict["status"], "no_data", "{verdict}");
        let why = verdict["reason_text"].as_str().unwrap();
        assert!(
            why.contains(
                "sample(s) of loadgen_requests_total were scraped in the window (at least 2 needed)"
            ),
            "{why}"
        );
    }
}

#[test]
fn query_objectives_are_checked_where_they_are_written() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "bad.toml",
        r#"name = "bad"
[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[[journey]]
name = "j"
[[journey.step]]
name = "s"
url = "/"
[prometheus]
url = "http://127.0.0.1:9090"
[[slo]]
name = "p99"
query = "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5s]))"
unit = "s"
objective = "p99 < 250ms"
scope = "j"
"#,
    );
    let output = crate::support::loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        workspace.out().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml:18:9: error: not PromQL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:20:13: error: unknown aggregate `p99`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a query objective takes no `scope`"),
        "{stderr}"
    );
}
