//! No green without evidence, the real binary against a real server: load that never ran
//! fails as `load_not_delivered` and says so wherever the load shows; a plan that starts
//! nothing is refused before anything is sent; a run without objectives is never a PASS,
//! and exits 0 only when its load was delivered and some request succeeded.

use crate::support::server::TestServer;
use crate::support::{Workspace, binary_run, loadgen};

fn feeder_scenario(url: &str, on_exhausted: &str, slo: bool) -> String {
    let on_exhausted = if on_exhausted.is_empty() {
        String::new()
    } else {
        format!("on_exhausted = \"{on_exhausted}\"\n")
    };
    let slo = if slo {
        "[[slo]]\nname = \"errors\"\nobjective = \"error_rate < 1%\"\n"
    } else {
        ""
    };
    format!(
        r#"name = "short-feeder"
[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "10/s"
[[load.stage]]
duration = "1s"
rate = "10/s"
[data.feeder.skus]
file = "skus.csv"
order = "unique"
{on_exhausted}
[[journey]]
name = "buy"
[[journey.step]]
name = "sku"
url = "/hello?sku={{{{skus.sku}}}}"
{slo}"#
    )
}

#[test]
fn a_unique_feeder_shorter_than_the_plan_is_load_not_delivered_everywhere() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    workspace.write("skus.csv", "sku\na\nb\nc\nd\n");
    let file = workspace.write("short.toml", &feeder_scenario(&server.url(), "", true));
    // Not --quiet: the terminal's table is part of what is checked.
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        workspace.out().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("feeder `skus` (4 rows) is exhausted"),
        "warned as it happened: {stderr}"
    );
    let run_dir = crate::support::only_entry(&workspace.out());
    let summary: loadgen::api::record::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    // What the server saw is what started: 4 of the 10 planned.
    assert_eq!(server.seen().len(), 4);
    let i = &summary.totals.iterations;
    assert_eq!((i.planned, i.started, i.dropped), (10, 4, 0));
    assert_eq!(i.not_started.get("feeder_exhausted"), Some(&6));
    assert_eq!(i.planned, i.started + i.dropped + i.not_started_total());
    assert_eq!(i.started, i.completed + i.failed + i.interrupted);
    assert_eq!(
        summary.journeys[0].not_started.get("feeder_exhausted"),
        Some(&6)
    );
    assert_eq!(summary.feeders[0].exhausted, 6);
    assert!(summary.accounting.as_ref().unwrap().balanced);
    assert!(!summary.delivery.as_ref().unwrap().delivered);
    assert_eq!(summary.totals.errors, 0, "nothing that was sent failed");
    let verdict = &summary.slos[0];
    assert_eq!(
        verdict.reason,
        Some(loadgen::api::record::VerdictReason::LoadNotDelivered),
        "{verdict:?}"
    );
    assert!(verdict.fails_run());
    assert_eq!(summary.verdict.name(), "fail");

    // The shortfall shows wherever the load shows: the terminal…
    let headline = "4 of 10 iterations started: 6 not started, feeder `skus` (4 rows) exhausted";
    assert!(stdout.contains(headline), "{stdout}");
    assert!(stdout.contains("LOAD NOT DELIVERED"), "{stdout}");
    assert!(stdout.contains("— load_not_delivered: 6 of 10"), "{stdout}");
    // …JUnit…
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains(headline), "{junit}");
    assert!(junit.contains(r#"type="load_not_delivered""#), "{junit}");
    // …the report: no PASS, the line at a glance, the chart's numbers.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(r#"badge fail">FAIL"#));
    assert!(!html.contains("PASS"));
    assert!(html.contains(headline), "the at-a-glance line");
    let data = crate::support::json_block(&html, "chart-data");
    let sum = |key: &str| -> f64 {
        data["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[key].as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum("planned") as u64, 10);
    assert_eq!(sum("not_started") as u64, 6);
    // …and series.csv, per second.
    let series = std::fs::read_to_string(run_dir.join("series.csv")).unwrap();
    let header: Vec<&str> = series.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let all: Vec<Vec<&str>> = series
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[1] == "all")
        .collect();
    let total = |name: &str| -> u64 {
        all.iter()
            .map(|r| r[col(name)].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(total("planned"), 10);
    assert_eq!(total("started"), 4);
    assert_eq!(total("not_started_feeder_exhausted"), 6);
}

#[test]
fn a_feeder_used_up_by_design_is_reported_and_a_wrapping_one_starts_everything() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    workspace.write("skus.csv", "sku\na\nb\nc\nd\n");
    // stop_journey: the same count, reported, failing no window.
    let file = workspace.write(
        "stop.toml",
        &feeder_scenario(&server.url(), "stop_journey", true),
    );
    let out = workspace.dir.path().join("stop");
    let (code, _, summary) = binary_run(&file, &out);
    assert_eq!(code, Some(0), "{:?}", summary.slos);
    let i = &summary.totals.iterations;
    assert_eq!(i.not_started.get("journey_stopped"), Some(&6));
    assert_eq!(i.started, 4);
    assert!(summary.delivery.as_ref().unwrap().delivered);
    assert!(
        summary
            .iterations_line()
            .contains("6 not started, feeder `skus` (4 rows) used up")
    );
    // wrap: every arrival starts, the rows come round again.
    let server = TestServer::start();
    let file = workspace.write("wrap.toml", &feeder_scenario(&server.url(), "wrap", true));
    let out = workspace.dir.path().join("wrap");
    let output = crate::support::run_binary(&file, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("wraps around"), "{stderr}");
    let summary: loadgen::api::record::Summary = serde_json::from_str(
        &std::fs::read_to_string(crate::support::only_entry(&out).join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary.totals.iterations.started, 10);
    assert_eq!(summary.feeders[0].wrapped, 6);
    // 4 + 4 + 2: the rows a, b came round three times.
    let skus: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.path.rsplit('=').next().unwrap().to_string())
        .collect();
    assert_eq!(skus.iter().filter(|s| *s == "a").count(), 3, "{skus:?}");
    assert_eq!(skus.iter().filter(|s| *s == "d").count(), 2, "{skus:?}");
    // on_exhausted belongs to unique feeders only.
    let bad = workspace.write(
        "bad.toml",
        &feeder_scenario(&server.url(), "wrap", true)
            .replace("order = \"unique\"", "order = \"random\""),
    );
    let output = loadgen(&["validate", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("bad.toml:13:16:"),
        "at on_exhausted's line: {stderr}"
    );
    assert!(
        stderr.contains("applies to `order = \"unique\"` only"),
        "{stderr}"
    );
}

#[test]
fn a_plan_that_starts_nothing_is_refused_at_its_stage() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "zero.toml",
        &format!(
            r#"name = "zero-users"
[target]
base_url = "{url}"
[load]
model = "closed"
[[load.stage]]
duration = "1s"
vus = 1
[[journey]]
name = "a"
[[journey.step]]
name = "get"
url = "/hello"
"#,
            url = server.url()
        ),
    );
    for command in ["validate", "plan", "run"] {
        let output = loadgen(
            &[
                command,
                file.to_str().unwrap(),
                "--out",
                workspace.out().to_str().unwrap(),
            ]
            .into_iter()
            .take(if command == "run" { 4 } else { 2 })
            .collect::<Vec<_>>(),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("zero.toml:6:1:"), "{command}: {stderr}");
        assert!(
            stderr.contains("starts no virtual user"),
            "{command}: {stderr}"
        );
    }
    assert!(server.seen().is_empty(), "nothing was sent");
    assert!(!workspace.out().exists(), "no run directory");

    // A plan that runs, cut by --duration before its first user joins.
    let ramp = workspace.write(
        "ramp.toml",
        &std::fs::read_to_string(&file).unwrap().replace(
            "vus = 1\n",
            "vus = 10\n[[load.stage]]\nduration = \"1s\"\nvus = 10\n",
        ),
    );
    assert_eq!(
        loadgen(&["validate", ramp.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let output = loadgen(&[
        "run",
        ramp.to_str().unwrap(),
        "--duration",
        "50ms",
        "--out",
        workspace.out().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--duration 0.1s") || stderr.contains("--duration 0.0s"),
        "{stderr}"
    );
    assert!(server.seen().is_empty());
}

fn no_objectives(url: &str, path: &str) -> String {
    format!(
        "name = \"no-objectives\"\n{}",
        crate::support::steady_get(url, "", 20, "1s", path)
    )
}

#[test]
fn a_run_without_objectives_passes_nothing() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    // Every request fails: exit 1, and no PASS anywhere.
    let failing = workspace.write(
        "failing.toml",
        &no_objectives(&server.url(), "/nothing-here"),
    );
    let out = workspace.dir.path().join("failing");
    let output = crate::support::run_binary(&failing, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no_successful_response"), "{stderr}");
    let run_dir = crate::support::only_entry(&out);
    let summary: loadgen::api::record::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.totals.errors, 20);
    assert_eq!(server.seen().len(), 20);
    assert_eq!(summary.verdict.name(), "fail");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(r#"badge fail">FAIL"#));
    assert!(!html.contains("PASS"));
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("no_successful_response"), "{junit}");
    assert!(junit.contains(r#"failures="1""#), "{junit}");

    // Load delivered and answered: exit 0, but NO OBJECTIVES, never PASS.
    let fine = workspace.write("fine.toml", &no_objectives(&server.url(), "/hello"));
    let out = workspace.dir.path().join("fine");
    let output = crate::support::run_binary(&fine, &out);
    assert_eq!(output.status.code(), Some(0));
    let run_dir = crate::support::only_entry(&out);
    let summary: loadgen::api::record::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.verdict.name(), "no_objectives");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(r#"badge none">NO OBJECTIVES"#));
    assert!(!html.contains("PASS"));
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains(r#"skipped="1""#), "{junit}");
    assert!(
        junit.contains("<skipped message=\"no objectives"),
        "{junit}"
    );
    let report = loadgen(&["report", run_dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("no objectives"), "{text}");
    assert_eq!(report.status.code(), Some(0));
}
