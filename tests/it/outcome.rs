//! The run's outcome as the user meets it: summary.json never says passed before it is
//! judged (a run killed before judging is judged later by `loadgen report`, with the exit
//! code the run would have had), and the verdict lines in the terminal say what
//! summary.json says.

use loadgen::api::record::Summary;
use loadgen::api::record::VerdictStatus;
use loadgen::api::run;

use crate::support::server::TestServer;
use crate::support::{Workspace, loadgen, only_entry, options};

fn scenario(url: &str) -> String {
    format!(
        r#"name = "outcome"
[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "100/s"
ramp_down = "1s"
[[load.stage]]
duration = "2s"
rate = "100/s"
[[journey]]
name = "ok"
weight = 3
[[journey.step]]
name = "hello"
url = "/hello"
[[journey]]
name = "broken"
[[journey.step]]
name = "unavailable"
url = "/status/503"
[[slo]]
name = "fast"
objective = "p99 < 1s"
[[slo]]
name = "available"
objective = "availability >= 99.9%"
[[slo]]
name = "during a fault"
objective = "error_rate < 1%"
window = "faults"
on_no_data = "allow"
"#
    )
}

fn read_summary(run_dir: &std::path::Path) -> Summary {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_run_killed_before_judging_reads_unjudged_and_report_judges_it() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("outcome.toml", &scenario(&server.url()));
    let out = workspace.out();
    // The run up to judging and no further: what a kill between its two writes leaves.
    let run_options = options(&file, &out);
    let prepared = run::prepare(&run_options).unwrap();
    drop(run::measure(prepared, &run_options).unwrap());
    let run_dir = only_entry(&out);
    let unjudged = read_summary(&run_dir);
    assert!(!unjudged.judged);
    assert!(
        !unjudged.slo_passed,
        "nothing says passed before it is judged"
    );
    assert!(unjudged.slos.is_empty());
    assert_eq!(
        unjudged.slo_specs.len(),
        3,
        "what to judge it against is saved"
    );
    assert!(!run_dir.join("junit.xml").exists());
    assert!(!run_dir.join("report.html").exists());

    let report = loadgen(&["report", run_dir.to_str().unwrap()]);
    let judged = read_summary(&run_dir);
    assert!(judged.judged);
    let statuses: Vec<(VerdictStatus, bool)> =
        judged.slos.iter().map(|v| (v.status, v.allowed)).collect();
    assert_eq!(
        statuses,
        vec![
            (VerdictStatus::Pass, false),
            (VerdictStatus::Fail, false),
            (VerdictStatus::NoData, true)
        ]
    );
    // The run itself, not killed, exits with the same code.
    let whole = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        workspace.dir.path().join("whole").to_str().unwrap(),
    ]);
    assert_eq!(whole.status.code(), Some(1));
    assert_eq!(
        report.status.code(),
        whole.status.code(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
}

#[test]
fn the_terminal_verdict_lines_say_what_summary_json_says() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("outcome.toml", &scenario(&server.url()));
    let out = workspace.out();
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = read_summary(&only_entry(&out));
    let lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "verdicts:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(lines.len(), summary.slos.len(), "{stdout}");
    for (line, verdict) in lines.iter().zip(&summary.slos) {
        let mark = match (verdict.status, verdict.fails_run()) {
            (VerdictStatus::Pass, _) => "✓",
            (_, true) => "✗",
            (_, false) => "–",
        };
        let head = format!("  {mark} {} [{}]", verdict.name, verdict.window);
        assert!(line.starts_with(&head), "{line:?} should start {head:?}");
        for measured in verdict.measured.iter().filter(|m| !m.op.is_empty()) {
            assert!(
                line.contains(&format!(
                    "{} {} ({} {})",
                    measured.metric, measured.value_text, measured.op, measured.threshold
                )),
                "{line:?} lacks {measured:?}"
            );
        }
        if verdict.status == VerdictStatus::NoData {
            assert!(line.contains("no_data (allowed)"), "{line}");
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 SLO verdict(s) failed"), "{stderr}");
}
