//! Failures say why (issue 25): per step and error class, at most five distinct samples —
//! a status with the start of its body, a check's expected and found value, the redirect
//! refused — carried in summary.json, the terminal and the report, at most 256 bytes each,
//! with the scenario's secret values redacted.

use crate::support::server::TestServer;
use crate::support::{Workspace, loadgen_command};

const API_KEY: &str = "sk-live-0123456789abcdef";

#[test]
fn a_failed_steps_samples_say_why_in_the_summary_the_terminal_and_the_report() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "failing.toml",
        &format!(
            r#"name = "failing"
[target]
base_url = "{}"
[target.headers]
X-Api-Key = "{API_KEY}"
[load]
model = "open"
start_rate = "30/s"
[[load.stage]]
duration = "2s"
rate = "30/s"
[[journey]]
name = "busy"
[[journey.step]]
name = "overloaded"
url = "/status/503/echo?n={{{{iteration}}}}"
[[journey]]
name = "wrong"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "bo" }}
check = {{ json = {{ "/echo/name" = "al" }} }}
[[journey]]
name = "off"
[[journey.step]]
name = "moved"
url = "/away"
"#,
            server.url()
        ),
    );
    let out = workspace.out();
    let output = loadgen_command()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let run_dir = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["schema_version"], 10);
    let samples = |journey: &str, class: &str| -> Vec<serde_json::Value> {
        let journey = summary["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == journey)
            .unwrap();
        journey["steps"][0]["failure_samples"][class]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };

    // Every request of "busy" differs (its query): five distinct kept, no more.
    let busy = samples("busy", "http_5xx");
    assert_eq!(busy.len(), 5, "{busy:#?}");
    for sample in &busy {
        assert_eq!(sample["status"], 503);
        let detail = sample["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("upstream busy; key=[redacted]; at /status/503/echo?n="),
            "{detail}"
        );
        assert!(!detail.contains(API_KEY), "{detail}");
        assert!(
            detail.len() <= 256 + '…'.len_utf8() && detail.ends_with('…'),
            "{detail}"
        );
    }
    let firsts: std::collections::BTreeSet<&str> = busy
        .iter()
        .map(|s| &s["detail"].as_str().unwrap()[..60])
        .collect();
    assert_eq!(firsts.len(), 5, "distinct by their detail: {firsts:#?}");

    // A check: what it expected and what it found.
    let wrong = samples("wrong", "check_failed");
    assert_eq!(
        wrong.len(),
        1,
        "every response failed the same way: {wrong:#?}"
    );
    assert_eq!(wrong[0]["status"], 201);
    assert_eq!(
        wrong[0]["detail"],
        r#"json /echo/name = "al": expected "al", found "bo""#
    );

    // A redirect off the allow-list: where it pointed, and nothing sent there.
    let off = samples("off", "redirect_refused");
    assert_eq!(off.len(), 1, "{off:#?}");
    assert!(
        off[0]["detail"]
            .as_str()
            .unwrap()
            .contains("http://192.0.2.10/elsewhere"),
        "{off:#?}"
    );

    // The terminal: one line each, the secret redacted there too.
    assert!(stdout.contains("why requests failed"), "{stdout}");
    assert!(
        stdout.contains("busy/overloaded http_5xx 503: upstream busy; key=[redacted];"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"wrong/sign up check_failed 201: json /echo/name = "al": expected "al", found "bo""#
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(API_KEY));

    // The report: the same samples under their step, escaped, the key nowhere.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert_eq!(
        html.matches("class=\"failure-sample\"").count(),
        7,
        "5 + 1 + 1 samples"
    );
    assert!(html.contains("expected &quot;al&quot;, found &quot;bo&quot;"));
    assert!(!html.contains(API_KEY));
    // The requests the summary counts are the ones the server saw (none left loopback).
    assert_eq!(
        summary["totals"]["requests"].as_u64().unwrap(),
        server.seen().len() as u64
    );
}
