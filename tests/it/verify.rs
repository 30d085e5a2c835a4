//! Nothing acknowledged is lost: steps record what the server acknowledged, every write is
//! read back after the run, counts and invariants are compared — against a real store on
//! 127.0.0.1:0 that loses, alters and half-commits writes on purpose, with the sets of
//! lost and altered ids checked against the ones the server itself logged.

use std::collections::BTreeSet;
use std::path::Path;

use loadgen::api::record::VerdictStatus;
use loadgen::api::record::VerifySummary;
use loadgen::api::scenario;
use loadgen::api::verify::Status;

use crate::support::server::TestServer;
use crate::support::{Workspace, options, run_ok};

/// A store-writing scenario: `values` picks each write's value (`lose…`, `alter…`,
/// `commit-500…` make the store misbehave), `extra` is appended (more [[verify]] keys).
fn scenario(url: &str, values: &str, rate: u32, verify: &str) -> String {
    format!(
        r#"name = "writes"
seed = 11
[target]
base_url = "{url}"
request_timeout = "2s"
[load]
model = "open"
start_rate = "{rate}/s"
[[load.stage]]
duration = "3s"
rate = "{rate}/s"
[data.generator.value]
kind = "pick"
values = {values}
[[journey]]
name = "write"
[[journey.step]]
name = "put"
method = "POST"
url = "/store/items"
json = {{ value = "{{{{value}}}}" }}
expect = 201
extract = {{ item = "/id" }}
record = {{ kind = "item", id = "{{{{item}}}}", fields = {{ value = "{{{{value}}}}" }} }}
{verify}"#
    )
}

const READ_BACK: &str = r#"
[[verify]]
kind = "item"
url = "/store/items/{{ack.id}}"
check = { json = { "/value" = "{{ack.fields.value}}" } }
[[verify.count]]
name = "items kept"
url = "/store/count"
extract = "/items"
[[verify.invariant]]
name = "store total"
url = "/store/total"
extract = "/total"
"#;

fn ids(writes: &[loadgen::api::record::ListedWrite]) -> BTreeSet<u64> {
    writes.iter().map(|w| w.id.as_u64().unwrap()).collect()
}

fn verify_of(summary: &loadgen::api::record::Summary) -> &VerifySummary {
    summary
        .verify
        .as_ref()
        .expect("a judged run that records writes has `verify`")
}

#[test]
fn lost_and_altered_writes_are_reported_by_id_exactly_as_the_server_did_them() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let file = ws.write(
        "writes.toml",
        &scenario(
            &server.url(),
            r#"["ok", "ok", "lose", "alter"]"#,
            20,
            READ_BACK,
        ),
    );
    let (run_dir, summary) = run_ok(&options(&file, &ws.out()));
    let (lost, altered) = server.lost_and_altered();
    assert!(
        !lost.is_empty() && !altered.is_empty(),
        "the seed picks some of each"
    );
    let verify = verify_of(&summary);
    assert_eq!(verify.status, Status::Complete);
    let kind = &verify.kinds[0];
    assert_eq!(ids(&kind.missing_writes), lost.iter().copied().collect());
    assert_eq!(
        ids(&kind.mismatched_writes),
        altered.iter().copied().collect()
    );
    assert_eq!(kind.missing, lost.len() as u64);
    assert_eq!(
        kind.mismatched,
        altered.len() as u64,
        "altered is mismatched, not missing"
    );
    // Every 201 the server gave was recorded, and every record was checked.
    let put = summary.journeys[0].steps[0].requests;
    assert_eq!(kind.acknowledged, put);
    assert_eq!(kind.verified + kind.missing + kind.mismatched, put);
    assert_eq!(kind.status, VerdictStatus::Fail);
    let acks = std::fs::read_to_string(run_dir.join("acks.jsonl")).unwrap();
    assert_eq!(acks.lines().count() as u64, put);
    // The count sees exactly the lost writes missing from the store.
    let count = &verify.counts[0];
    assert_eq!(count.platform, Some((put - lost.len() as u64) as i64));
    assert_eq!(count.status, VerdictStatus::Fail);
    assert!(
        count
            .reason_text
            .contains(&format!("{} acknowledged write(s) lost", lost.len()))
    );
    assert_eq!(verify.invariants[0].status, VerdictStatus::Pass);
    let (code, reasons) = loadgen::api::judge::for_run(&summary, false);
    assert_eq!(
        code,
        loadgen::api::judge::ExitCode::SloFailed,
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("missing")), "{reasons:?}");
    // Verification's requests are the server's reads, apart from the run's totals.
    let counts = server.counts();
    let reads = counts.get("GET /store/items/{id}").copied().unwrap_or(0)
        + counts["GET /store/count"]
        + counts["GET /store/total"];
    assert_eq!(verify.requests, reads);
    assert_eq!(counts["POST /store/items"], summary.totals.requests);
    // The JUnit file names the lost ids; the report lists them.
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains(&format!("missing {}", lost[0])), "{junit}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("id=\"writes\""));
    crate::support::schema::assert_matches_schema(&run_dir);
    assert!(html.contains(&format!("<code>{}</code>", altered[0])));
}

/// A platform that reports its total only in a header: the count reads `X-Total-Count`
/// (`extract = { header = … }`), and sees every acknowledged write.
#[test]
fn a_count_reads_a_total_from_a_response_header() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let read_back = READ_BACK.replace(
        "url = \"/store/count\"\nextract = \"/items\"",
        "url = \"/store/count\"\nextract = { header = \"x-total-count\" }",
    );
    assert_ne!(read_back, READ_BACK, "the count's extraction was replaced");
    let file = ws.write(
        "header-count.toml",
        &scenario(&server.url(), r#"["ok", "fine"]"#, 15, &read_back),
    );
    let (_, summary) = run_ok(&options(&file, &ws.out()));
    let verify = verify_of(&summary);
    let acknowledged = verify.kinds[0].acknowledged;
    assert!(acknowledged > 30, "{acknowledged}");
    assert_eq!(verify.counts[0].platform, Some(acknowledged as i64));
    assert_eq!(verify.counts[0].status, VerdictStatus::Pass);
}

#[test]
fn a_clean_store_passes_and_report_rejudges_it_without_the_target() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let file = ws.write(
        "writes.toml",
        &scenario(&server.url(), r#"["ok", "fine"]"#, 15, READ_BACK),
    );
    let (run_dir, summary) = run_ok(&options(&file, &ws.out()));
    let verify = verify_of(&summary).clone();
    assert!(verify.passed, "{verify:#?}");
    assert_eq!(
        loadgen::api::judge::for_run(&summary, false).0,
        loadgen::api::judge::ExitCode::Ok
    );
    let kind = &verify.kinds[0];
    assert!(kind.acknowledged > 30, "{}", kind.acknowledged);
    assert_eq!(kind.verified, kind.acknowledged);
    assert_eq!(verify.counts[0].platform, Some(kind.acknowledged as i64));
    // Re-judged from the run directory alone, with the server gone.
    drop(server);
    let code = loadgen::api::cli::main_with_args(["loadgen", "report", run_dir.to_str().unwrap()]);
    assert_eq!(code, loadgen::api::judge::ExitCode::Ok);
    let again: loadgen::api::record::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let again = again.verify.unwrap();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&verify).unwrap()
    );
}

#[test]
fn the_count_allows_exactly_the_writes_that_committed_without_an_answer() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let file = ws.write(
        "writes.toml",
        &scenario(
            &server.url(),
            r#"["ok", "ok", "commit-500"]"#,
            15,
            READ_BACK,
        ),
    );
    let (_, summary) = run_ok(&options(&file, &ws.out()));
    let verify = verify_of(&summary);
    let count = &verify.counts[0];
    let failed_500 = summary.journeys[0].steps[0].errors_by_class["http_5xx"];
    assert!(failed_500 > 0);
    assert_eq!(count.uncertain, failed_500);
    // The store kept more than was acknowledged: the 500s that committed.
    assert_eq!(
        count.platform,
        Some((count.acknowledged + failed_500) as i64)
    );
    assert_eq!(count.status, VerdictStatus::Pass, "{}", count.reason_text);
    assert!(verify.passed, "{verify:#?}");
}

#[test]
fn an_invariant_that_changes_fails_the_run() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let bump = r#"
[[journey]]
name = "bump"
[[journey.step]]
name = "bump"
method = "POST"
url = "/store/bump"
"#;
    let file = ws.write(
        "writes.toml",
        &scenario(
            &server.url(),
            r#"["ok"]"#,
            10,
            &format!("{bump}{READ_BACK}"),
        ),
    );
    let (_, summary) = run_ok(&options(&file, &ws.out()));
    let invariant = &verify_of(&summary).invariants[0];
    let bumps = summary.journeys[1].steps[0].requests;
    assert!(bumps > 0);
    assert_eq!(invariant.before, Some(serde_json::json!(0)));
    assert_eq!(invariant.after, Some(serde_json::json!(bumps)));
    assert_eq!(invariant.status, VerdictStatus::Fail);
    assert_eq!(
        loadgen::api::judge::for_run(&summary, false).0,
        loadgen::api::judge::ExitCode::SloFailed
    );
}

#[test]
fn checks_that_keep_failing_are_unverifiable_after_their_retries() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let unreadable = |allow: &str| {
        format!(
            r#"
[[verify]]
kind = "item"
url = "/status/503?item={{{{ack.id}}}}"
{allow}
"#
        )
    };
    let file = ws.write(
        "writes.toml",
        &scenario(&server.url(), r#"["ok"]"#, 2, &unreadable("")),
    );
    let (_, summary) = run_ok(&options(&file, &ws.out()));
    let kind = &verify_of(&summary).kinds[0];
    assert_eq!(kind.unverifiable, kind.acknowledged);
    assert_eq!(kind.status, VerdictStatus::Fail);
    let reads = server.counts()["GET /status/{id}"];
    assert_eq!(reads, kind.acknowledged * 3, "three attempts each");
    assert!(kind.unverifiable_writes[0].detail.as_deref() == Some("status 503"));

    let allowed = ws.write(
        "allowed.toml",
        &scenario(
            &server.url(),
            r#"["ok"]"#,
            2,
            &unreadable(r#"on_unverifiable = "allow""#),
        ),
    );
    let (_, summary) = run_ok(&options(&allowed, &ws.out()));
    let kind = &verify_of(&summary).kinds[0];
    assert!(kind.unverifiable > 0 && kind.allowed);
    assert_eq!(
        loadgen::api::judge::for_run(&summary, false).0,
        loadgen::api::judge::ExitCode::Ok
    );
}

#[test]
fn a_kind_nothing_acknowledged_is_no_data_not_a_pass() {
    let server = TestServer::start();
    let ws = Workspace::new();
    // Every write is answered 500: nothing acknowledged, nothing to read back.
    let file = ws.write(
        "writes.toml",
        &scenario(&server.url(), r#"["commit-500"]"#, 3, READ_BACK),
    );
    let (_, summary) = run_ok(&options(&file, &ws.out()));
    let kind = &verify_of(&summary).kinds[0];
    assert_eq!(kind.acknowledged, 0);
    assert_eq!(kind.status, VerdictStatus::NoData);
    assert!(kind.fails_run());
}

#[test]
fn a_count_that_cannot_be_read_before_the_load_stops_the_run_before_any_write() {
    let server = TestServer::start();
    let ws = Workspace::new();
    let verify = r#"
[[verify]]
kind = "item"
url = "/store/items/{{ack.id}}"
[[verify.count]]
url = "/no/such/count"
extract = "/items"
"#;
    let file = ws.write(
        "writes.toml",
        &scenario(&server.url(), r#"["ok"]"#, 10, verify),
    );
    let options = options(&file, &ws.out());
    let prepared = loadgen::api::run::prepare(&options).unwrap();
    let error = match loadgen::api::run::execute(prepared, &options) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the run went ahead without its count"),
    };
    assert!(error.contains("/no/such/count"), "{error}");
    assert!(!server.counts().contains_key("POST /store/items"));
    // Its record only: why it did not start (junit.xml, report.html), no write log, no
    // figures that could pass for a run.
    let dirs: Vec<_> = std::fs::read_dir(ws.out()).unwrap().collect();
    assert_eq!(dirs.len(), 1);
    let run_dir = dirs.into_iter().next().unwrap().unwrap().path();
    let mut files: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["junit.xml", "report.html", "scenario.toml"]);
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("`item count` before the load"), "{junit}");
}

#[test]
fn record_and_verify_are_validated_with_positions() {
    let source = r#"name = "bad"
[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[data.generator.ack]
kind = "uuid"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
method = "POST"
url = "/x/{{ack.id}}"
extract = { id = "/id" }
record = { kind = "thing", id = "{{id}}" }
[[journey.step]]
name = "b"
url = "/y"
record = { kind = "item", id = "fixed", fields = { v = "{{id}}" } }
[[verify]]
kind = "item"
method = "POST"
url = "/store/{{ack.fields.colour}}"
expect = 200
absent = [200, 404]
[[verify.count]]
url = "/count/{{ack.id}}"
extract = "items"
"#;
    let diagnostics =
        scenario::from_source(source, Path::new("bad.toml"), Path::new(".")).unwrap_err();
    let lines = diagnostics.headlines();
    let expected = [
        "bad.toml:9:1: `ack` is a reserved name",
        "bad.toml:16:11: `{{ack.id}}` is only for [[verify]] templates",
        "bad.toml:18:19: no [[verify]] reads back kind `thing`",
        "bad.toml:22:32: `id` is the same for every write",
        "bad.toml:25:10: a check reads, it never writes",
        "bad.toml:26:15: no `record` of this kind has field `colour`",
        "bad.toml:28:10: status 200 cannot mean both present",
        "bad.toml:30:7: this `url` is asked before the load and after verification",
        "bad.toml:31:11: `items` is neither a JSON pointer",
    ];
    for prefix in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "missing `{prefix}` in:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn a_verify_for_a_kind_no_step_records_is_an_error() {
    let source = r#"[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/y"
[[verify]]
kind = "item"
url = "/store/{{ack.id}}"
"#;
    let diagnostics =
        scenario::from_source(source, Path::new("v.toml"), Path::new(".")).unwrap_err();
    let lines = diagnostics.headlines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("v.toml:14:8: no step records kind `item`")),
        "{lines:?}"
    );
}

#[test]
fn ctrl_c_during_verification_stops_it_and_the_run_is_incomplete() {
    use crate::support::{eventually, only_entry, spawn_run};
    let server = TestServer::start();
    let ws = Workspace::new();
    // ~30 writes read back at 3 a second: about ten seconds of verification to interrupt.
    let text = scenario(&server.url(), r#"["ok"]"#, 10, READ_BACK)
        .replace("seed = 11", "seed = 11\nverify_rate = \"3/s\"");
    let file = ws.write("writes.toml", &text);
    let out = ws.out();
    let mut child = crate::support::KillOnDrop(spawn_run(&file, &out));
    // verify.jsonl is created when the read-backs begin.
    assert!(eventually(std::time::Duration::from_secs(30), || {
        std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .is_some_and(|d| d.path().join("verify.jsonl").exists())
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(3), "an interrupted run is incomplete");
    let run_dir = only_entry(&out);
    let summary: loadgen::api::record::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary.ended_by,
        loadgen::api::record::EndReason::Interrupted
    );
    let verify = verify_of(&summary);
    assert_eq!(verify.status, Status::Interrupted);
    let kind = &verify.kinds[0];
    assert!(kind.unchecked > 0, "{kind:#?}");
    assert_eq!(
        kind.verified + kind.unchecked,
        kind.acknowledged,
        "every acknowledged write is either read back or counted unchecked"
    );
    let reads = server
        .counts()
        .get("GET /store/items/{id}")
        .copied()
        .unwrap_or(0);
    assert!(reads < kind.acknowledged, "it stopped reading: {reads}");
}

#[test]
fn requests_cut_off_at_the_hard_stop_are_counted_abandoned_as_the_server_saw_them() {
    let server = TestServer::start();
    let ws = Workspace::new();
    // Every answer takes 5 s; the ramp-down ends 1 s after the last arrival: every request
    // is still in flight at the hard stop. They reached the server (which may have acted
    // on them), so a count of writes must allow for them.
    let text = format!(
        r#"name = "cut"
[target]
base_url = "{}"
request_timeout = "10s"
[load]
model = "open"
start_rate = "5/s"
ramp_down = "1s"
[[load.stage]]
duration = "2s"
rate = "5/s"
[[journey]]
name = "slow"
[[journey.step]]
name = "slow"
url = "/slow/5000"
"#,
        server.url()
    );
    let file = ws.write("cut.toml", &text);
    let (_, summary) = run_ok(&options(&file, &ws.out()));
    let seen = server.seen().len() as u64;
    assert!(seen >= 8, "{seen}");
    assert_eq!(summary.totals.requests, 0, "no request was answered");
    assert_eq!(summary.totals.abandoned, seen);
    assert_eq!(summary.journeys[0].steps[0].abandoned, seen);
}
