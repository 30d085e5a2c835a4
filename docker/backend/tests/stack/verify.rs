//! Nothing acknowledged is lost, proved on the real platform: loadgen records every
//! enrolment, payment and Ayni exchange the platform acknowledged, reads each back after
//! the chaos, and compares the database's totals and the Ayni credit invariant.
//!
//! - a test-only lossy backend (`lossy` feature) acknowledges writes it rolls back and logs
//!   each: loadgen reports exactly that set as missing;
//! - the real backends, one SIGKILLed mid-drill: nothing missing or changed, the counts
//!   within their bounds, the invariant held;
//! - enrolments changed in Postgres behind the run's back: mismatched, not missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{
    ExtraBackend, exclusive_blocking, loadgen, only_run, repo_root, stack, summary,
};

/// The stock smoke scenario at `rate` journeys/s for `seconds`, with `extra` appended.
fn smoke_at(rate: u32, seconds: u32, extra: &str) -> String {
    let stock = std::fs::read_to_string(repo_root().join("scenarios/smoke.toml")).unwrap();
    let load = "[[load.stage]]\nduration = \"2s\"\nrate = \"8/s\"\n[[load.stage]]\nduration = \"6s\"\nrate = \"8/s\"\n";
    assert!(
        stock.contains(load),
        "smoke.toml's load changed: update this test"
    );
    let stock = stock.replace(
        load,
        &format!(
            "[[load.stage]]\nduration = \"2s\"\nrate = \"{rate}/s\"\n[[load.stage]]\nduration = \"{seconds}s\"\nrate = \"{rate}/s\"\n"
        ),
    );
    format!("{stock}\n{extra}")
}

/// A scenario file with smoke's feeder beside it (feeder paths are relative to the
/// scenario), in a temp dir; returns the dir, the file and the `--out` directory.
fn scenario_file(tag: &str, text: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("loadgen-verify-{tag}-"))
        .tempdir()
        .unwrap();
    let scenario = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&scenario, text).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(
        repo_root().join("scenarios/data/members.csv"),
        dir.path().join("data/members.csv"),
    )
    .unwrap();
    let out = dir.path().join("out");
    (dir, scenario, out)
}

/// `loadgen run SCENARIO --target TARGET --out OUT --quiet`, in-process: its exit code.
fn run_to(scenario: &Path, target: &str, out: &Path) -> u8 {
    loadgen(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        target,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
}

/// Runs `text` against `target`; returns the exit code, the run directory and its dir.
fn run(tag: &str, text: &str, target: &str) -> (u8, PathBuf, tempfile::TempDir) {
    let (dir, scenario, out) = scenario_file(tag, text);
    let code = run_to(&scenario, target, &out);
    (code, only_run(&out), dir)
}

/// (kind, id) of every write the summary lists under `outcome` (`missing_writes`, …).
fn listed(summary: &Value, outcome: &str) -> BTreeSet<(String, i64)> {
    let mut set = BTreeSet::new();
    for kind in summary["verify"]["kinds"].as_array().unwrap() {
        for write in kind[outcome].as_array().unwrap() {
            set.insert((
                kind["name"].as_str().unwrap().to_string(),
                write["id"].as_i64().unwrap(),
            ));
        }
    }
    set
}

fn kind<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["verify"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no kind {name}: {:#}", summary["verify"]))
}

#[test]
fn a_lossy_backend_is_caught_losing_exactly_the_writes_it_logged() {
    let _stack = stack();
    let _g = exclusive_blocking();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("lost.log");
    let lossy = ExtraBackend::spawn(
        "lossy",
        &[
            ("LOSSY_WRITES", "0.25"),
            ("LOSSY_LOG", log.to_str().unwrap()),
        ],
    );
    // Enrolments and payments, each written once (a retry after a lost write would write
    // anew, unrecorded): sign up, write, record.
    let scenario = r#"name = "lossy"
seed = 5
[target]
base_url = "http://127.0.0.1:1"
request_timeout = "5s"
[load]
model = "open"
start_rate = "20/s"
[[load.stage]]
duration = "5s"
rate = "20/s"
[data.generator.course]
kind = "int"
min = 1
max = 20
[data.generator.key]
kind = "uuid"
[[journey]]
name = "enrol"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = { name = "lossy drill" }
expect = 201
extract = { token = "/auth/token" }
[[journey.step]]
name = "enrol"
method = "POST"
url = "/api/courses/{{course}}/enrolments"
headers = { Authorization = "Bearer {{token}}" }
expect = 201
extract = { enrolment_id = "/id" }
record = { kind = "enrolment", id = "{{enrolment_id}}", fields = { course = "{{course}}" } }
[[journey]]
name = "payment"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = { name = "lossy drill" }
expect = 201
extract = { token = "/auth/token" }
[[journey.step]]
name = "create payment"
method = "POST"
url = "/api/payments"
headers = { Authorization = "Bearer {{token}}", "Idempotency-Key" = "{{key}}" }
json = { course_id = "{{course}}" }
expect = 201
extract = { payment_id = "/id" }
record = { kind = "payment", id = "{{payment_id}}", fields = { course = "{{course}}" } }
[[verify]]
kind = "enrolment"
url = "/api/enrolments/{{ack.id}}"
check = { json = { "/course_id" = "{{ack.fields.course}}" } }
[[verify.count]]
url = "/api/stats"
extract = "/enrolments"
[[verify]]
kind = "payment"
url = "/api/payments/{{ack.id}}"
check = { json = { "/course_id" = "{{ack.fields.course}}" } }
"#;
    let (code, run_dir, _dir) = run("lossy", scenario, lossy.url());
    let summary = summary(&run_dir);
    let logged: BTreeSet<(String, i64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| {
            let (kind, id) = line.split_once(' ').unwrap();
            (kind.to_string(), id.parse().unwrap())
        })
        .collect();
    assert!(
        logged.len() >= 5,
        "the backend lost too few to tell: {logged:?}"
    );
    assert!(logged.iter().any(|(k, _)| k == "enrolment"));
    assert!(logged.iter().any(|(k, _)| k == "payment"));
    assert_eq!(
        listed(&summary, "missing_writes"),
        logged,
        "loadgen's missing writes are exactly the ones the backend lost"
    );
    assert_eq!(listed(&summary, "mismatched_writes"), BTreeSet::new());
    assert_eq!(code, 1, "{:#}", summary["verify"]);
    // The enrolment count sees the same loss.
    let count = &summary["verify"]["counts"][0];
    let lost_enrolments = logged.iter().filter(|(k, _)| k == "enrolment").count() as i64;
    let acknowledged = kind(&summary, "enrolment")["acknowledged"]
        .as_i64()
        .unwrap();
    assert_eq!(
        count["platform"].as_i64(),
        Some(acknowledged - lost_enrolments),
        "{count:#}"
    );
    assert_eq!(count["status"], "fail");
    // Every loss is in the JUnit file and the report, by id.
    let (kind_name, id) = logged.iter().next().unwrap();
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains(&format!("missing {id} ")),
        "{kind_name} {id} in {junit}"
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(&format!("<code>{id}</code>")));
}

#[test]
fn a_backend_killed_mid_drill_loses_no_acknowledged_write() {
    let stack = stack();
    let _g = exclusive_blocking();
    let chaos = format!(
        r#"
[chaos]
stack_state = "{state}"
settle = "2s"
[[fault]]
name = "kill backend-1"
at = "4s"
duration = "3s"
action = "kill"
target = {{ process = "backend-1" }}
among = {{ process = "backend-*" }}
"#,
        state = stack.state_dir.join("state.json").display()
    );
    let (code, run_dir, _dir) = run("killed", &smoke_at(30, 8, &chaos), &stack.http_url);
    let summary = summary(&run_dir);
    let verify = &summary["verify"];
    assert_eq!(summary["faults"]["occurrences"][0]["status"], "happened");
    assert_eq!(verify["status"], "complete", "{verify:#}");
    for name in ["enrolment", "payment", "exchange"] {
        let kind = kind(&summary, name);
        assert!(kind["acknowledged"].as_u64().unwrap() > 20, "{kind:#}");
        assert_eq!(kind["verified"], kind["acknowledged"], "{kind:#}");
        for outcome in ["missing", "mismatched", "unverifiable", "unchecked"] {
            assert_eq!(kind[outcome], 0, "{name} {outcome}: {kind:#}");
        }
    }
    for count in verify["counts"].as_array().unwrap() {
        assert_eq!(count["status"], "pass", "{count:#}");
        let platform = count["platform"].as_i64().unwrap();
        let acknowledged = count["acknowledged"].as_i64().unwrap();
        let uncertain = count["uncertain"].as_i64().unwrap();
        assert!(acknowledged <= platform && platform <= acknowledged + uncertain);
    }
    assert_eq!(verify["invariants"][0]["status"], "pass", "{verify:#}");
    assert_eq!(verify["invariants"][0]["after"], 0);
    assert_eq!(verify["passed"], true);
    // The kill may fail an objective of smoke's; never because of a write.
    if code != 0 {
        let failed: Vec<&Value> = summary["slos"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"] != "pass")
            .collect();
        assert!(!failed.is_empty(), "exit {code} with every verdict passed");
    }
}

#[test]
fn an_enrolment_changed_behind_the_runs_back_is_mismatched_not_missing() {
    let stack = stack();
    let _g = exclusive_blocking();
    let (_dir, scenario, out) = scenario_file("changed", &smoke_at(12, 6, ""));
    // While the load runs, three acknowledged enrolments are moved to another course
    // straight in Postgres, as a buggy job or a bad migration would.
    let changed = std::thread::scope(|scope| {
        let changer = scope.spawn(|| change_enrolments_when_acknowledged(&out, 3));
        assert_eq!(run_to(&scenario, &stack.http_url, &out), 1);
        changer.join().unwrap()
    });
    let summary = summary(&only_run(&out));
    let enrolment = kind(&summary, "enrolment");
    let mismatched: BTreeSet<i64> = enrolment["mismatched_writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(mismatched, changed, "{enrolment:#}");
    assert_eq!(enrolment["missing"], 0);
    let detail = enrolment["mismatched_writes"][0]["detail"]
        .as_str()
        .unwrap();
    assert!(detail.starts_with("/course_id: acknowledged "), "{detail}");
    // Moved, not lost: the enrolment count still holds.
    assert_eq!(summary["verify"]["counts"][0]["status"], "pass");
}

/// Waits until the run under `out` has recorded `n` enrolments, then changes their course
/// in Postgres; returns their ids.
fn change_enrolments_when_acknowledged(out: &Path, n: usize) -> BTreeSet<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let ids = recorded_enrolments(out);
        if ids.len() >= n {
            break ids.into_iter().take(n).collect::<Vec<i64>>();
        }
        assert!(
            Instant::now() < deadline,
            "no {n} enrolments acknowledged in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = stack().postgres().await;
        let changed = db
            .execute(
                "UPDATE enrolments SET course_id = course_id % 20 + 1 WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap();
        assert_eq!(changed as usize, n);
    });
    ids.into_iter().collect()
}

/// Enrolment ids in the acks.jsonl of the one run under `out`, so far.
fn recorded_enrolments(out: &Path) -> Vec<i64> {
    let Some(run_dir) = std::fs::read_dir(out)
        .ok()
        .and_then(|mut dirs| dirs.next())
        .and_then(Result::ok)
    else {
        return Vec::new();
    };
    std::fs::read_to_string(run_dir.path().join("acks.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|ack| ack["kind"] == "enrolment")
        .filter_map(|ack| ack["id"].as_i64())
        .collect()
}
