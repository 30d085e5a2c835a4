//! The real binary: exit codes and what it prints.

use std::process::Command;

use crate::support::Workspace;
use crate::support::server::TestServer;

fn loadgen() -> Command {
    crate::support::loadgen_command()
}

fn scenario(url: &str) -> String {
    format!(
        r#"[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "20/s"
[[load.stage]]
duration = "1s"
rate = "20/s"
[[journey]]
name = "j"
[[journey.step]]
name = "hello"
url = "/hello"
"#
    )
}

#[test]
fn a_completed_run_exits_0_and_prints_its_table() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("ok.toml", &scenario("http://127.0.0.1:1"));
    let output = loadgen()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            workspace.out().to_str().unwrap(),
        ])
        .env("LOADGEN_TARGET", server.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("20 requests"), "{stdout}");
    assert!(stdout.contains("report: "), "{stdout}");
    assert_eq!(
        server.seen().len(),
        20,
        "LOADGEN_TARGET overrode the scenario's base_url"
    );
}

#[test]
fn bad_input_exits_2_with_every_error_and_sends_nothing() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let text = scenario(&server.url())
        .replace("duration = \"1s\"", "duration = \"1q\"")
        .replace("url = \"/hello\"", "url = \"/{{ghost}}\"");
    let file = workspace.write("bad.toml", &text);
    for command in ["validate", "run"] {
        let output = loadgen()
            .args([command, file.to_str().unwrap()])
            .current_dir(workspace.dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("bad.toml:7:12: error: unknown duration unit `q`"),
            "{stderr}"
        );
        assert!(
            stderr.contains("bad.toml:13:9: error: unknown reference `ghost`"),
            "{stderr}"
        );
        assert!(stderr.contains("2 errors in"), "{stderr}");
    }
    assert!(server.seen().is_empty());
    assert!(!workspace.dir.path().join("reports").exists());
    let output = loadgen().args(["run"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing argument is bad input too"
    );
}

#[test]
fn an_unreachable_target_exits_3() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let workspace = Workspace::new();
    let file = workspace.write(
        "s.toml",
        &scenario(&format!("http://127.0.0.1:{closed_port}")),
    );
    let run_dir_file = workspace.dir.path().join("run-dir.txt");
    let output = loadgen()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            workspace.out().to_str().unwrap(),
            "--run-dir-file",
            run_dir_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    // A record a CI job can publish: junit.xml fails with the reason, report.html says the
    // run did not happen, and nothing else pretends to be a run.
    let run_dir = std::path::PathBuf::from(std::fs::read_to_string(&run_dir_file).unwrap().trim());
    assert!(
        run_dir.starts_with(workspace.out()),
        "{}",
        run_dir.display()
    );
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains(r#"<testcase classname="run" name="outcome""#),
        "{junit}"
    );
    assert!(
        junit.contains(r#"type="exit_3""#) && junit.contains("unreachable"),
        "{junit}"
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains("NOT RUN") && html.contains("No load was sent"),
        "{html}"
    );
    assert!(!run_dir.join("summary.json").exists());
    assert!(!run_dir.join("series.csv").exists());
}

#[test]
fn plan_prints_the_load_over_time_without_sending() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("s.toml", &scenario(&server.url()));
    let output = loadgen()
        .args(["plan", file.to_str().unwrap(), "--duration", "500ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("open model: 10 arrivals over 500ms"),
        "{stdout}"
    );
    assert!(stdout.contains("GET /hello"), "{stdout}");
    assert!(server.seen().is_empty());
}

/// What a newcomer checks before a first run: each objective by its name, a step's checks,
/// a closed journey's pacing, and rates as they were written.
#[test]
fn plan_names_the_objectives_checks_and_pacing() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "closed.toml",
        r#"name = "closed"
[target]
base_url = "http://127.0.0.1:9"
[load]
model = "closed"
[[load.stage]]
duration = "2s"
vus = 2
[[journey]]
name = "j"
pacing = "2s"
[[journey.step]]
name = "hello"
url = "/hello"
check = { body_contains = "hi", header = { content-type = "text/*" } }
[[slo]]
name = "fast enough"
objective = "p99 < 1s"
"#,
    );
    let output = loadgen()
        .args(["plan", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("fast enough: p99 < 1s"), "{stdout}");
    assert!(
        stdout.contains(r#"checks body contains "hi", header content-type ~ text/*"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("pacing: each user starts an iteration at most every 2s"),
        "{stdout}"
    );
    let open = workspace.write("open.toml", &scenario("http://127.0.0.1:9"));
    let output = loadgen()
        .args(["plan", open.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("20/s → 20/s"), "{stdout}");
}

#[test]
fn sigterm_stops_the_run_and_marks_it_incomplete() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let text = scenario(&server.url()).replace("duration = \"1s\"", "duration = \"60s\"");
    let file = workspace.write("long.toml", &text);
    let child = loadgen()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            workspace.out().to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until traffic flows, then ask it to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.seen().len() < 5 {
        assert!(std::time::Instant::now() < deadline, "no traffic");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&run_dir).join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["complete"], false);
    assert_eq!(summary["ended_by"], "interrupted");
    assert_eq!(
        summary["totals"]["requests"].as_u64().unwrap(),
        server.seen().len() as u64
    );
}
