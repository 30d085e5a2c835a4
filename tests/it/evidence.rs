//! Every verdict rests on its evidence, the real binary against real servers: a recovery
//! needs three seconds in a row watched inside the run (one clean second before the end is
//! `no_data`, three are a pass), and an objective that aborts a run says so in a verdict of
//! its own that `loadgen report` reproduces from the run directory.

use std::time::Duration;

use loadgen::api::record::{VerdictReason, VerdictStatus};

use crate::support::process::{ServerProcess, pause_scenario};
use crate::support::server::TestServer;
use crate::support::{Workspace, binary_run, loadgen};

const RECOVERY: &str = r#"
[[slo]]
name = "back within 10 s"
objective = "error_rate < 1%"
recovery = "10s"
"#;

/// A server frozen from 2.0 to 4.5 s, the run `run` long.
fn frozen(run: &str) -> (Option<i32>, loadgen::api::record::Summary) {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let text = pause_scenario(
        server.port,
        &server.pidfile,
        run,
        "at = \"2s\"\nduration = \"2500ms\"",
    ) + RECOVERY;
    let file = workspace.write("frozen.toml", &text);
    let (code, _, summary) = binary_run(&file, &workspace.out());
    (code, summary)
}

#[test]
fn a_recovery_needs_three_seconds_watched_inside_the_run() {
    // Cut at 6 s: the freeze's seconds fail, at most a second or two are clean, the run
    // ends. Not enough to say it was back, nor that it was not.
    let (code, summary) = frozen("6s");
    let verdict = &summary.slos[0];
    assert_eq!(verdict.status, VerdictStatus::NoData, "{verdict:?}");
    assert_eq!(verdict.reason, Some(VerdictReason::InsufficientEvidence));
    assert!(
        verdict
            .reason_text
            .as_deref()
            .unwrap()
            .contains("the run ended at 6 s"),
        "{verdict:?}"
    );
    assert!(verdict.fails_run());
    assert_eq!(code, Some(1));
    assert_eq!(
        summary.failover[0].recovered_after_ms, None,
        "the failover figure follows the same rule"
    );
    // Watched long enough: three clean seconds in a row after the freeze, a pass.
    let (code, summary) = frozen("10s");
    let verdict = &summary.slos[0];
    assert_eq!(verdict.status, VerdictStatus::Pass, "{verdict:?}");
    let back = verdict.measured[0].value.unwrap();
    assert!(
        (2.0..=4.0).contains(&back),
        "back {back} s after the freeze began"
    );
    assert!(verdict.evidence.seconds >= 3, "{:?}", verdict.evidence);
    assert_eq!(code, Some(0), "{:?}", summary.slos);
    let failover = summary.failover[0].recovered_after_ms.unwrap();
    assert!((2_000..=4_000).contains(&failover), "{failover}");
}

#[test]
fn the_objective_that_aborted_a_run_fails_its_abort_watch() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "abort.toml",
        &format!(
            "name = \"abort\"\n{}{}",
            crate::support::steady_get(&server.url(), "", 20, "20s", "/status/503"),
            "[[slo]]\nname = \"stop if down\"\nobjective = \"error_rate < 50%\"\nabort = true\ngrace = \"2s\"\n"
        ),
    );
    let started = std::time::Instant::now();
    let (code, run_dir, summary) = binary_run(&file, &workspace.out());
    assert!(started.elapsed() < Duration::from_secs(15), "aborted early");
    assert_eq!(code, Some(1));
    assert!(summary.aborted_because.is_some());
    let windows: Vec<(&str, VerdictStatus)> = summary
        .slos
        .iter()
        .map(|v| (v.window.as_str(), v.status))
        .collect();
    assert_eq!(
        windows,
        vec![
            ("run", VerdictStatus::Fail),
            ("abort watch", VerdictStatus::Fail)
        ]
    );
    let watch = &summary.slos[1];
    assert_eq!(
        watch.measured[0].value_text, "2 s (seconds 0–1)",
        "{watch:?}"
    );
    assert!(
        watch
            .reason_text
            .as_deref()
            .unwrap()
            .contains("abort grace is 2 s"),
        "{watch:?}"
    );
    // Judged again from the run directory alone: the same two verdicts.
    let report = loadgen(&["report", run_dir.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(
        stdout.contains("✗ stop if down [abort watch]: failing streak 2 s (seconds 0–1) (< 2 s)"),
        "{stdout}"
    );
    let again: loadgen::api::record::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        serde_json::to_value(&again.slos).unwrap(),
        serde_json::to_value(&summary.slos).unwrap()
    );
}
