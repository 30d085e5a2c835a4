//! Process faults against a real HTTP server process (Python's http.server on port 0):
//! the fault is verified from outside (/proc state, HTTP through it failing) and recovery is
//! verified after normal end, SIGINT, SIGTERM, and `kill -9` of loadgen + `loadgen recover`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use loadgen::api::chaos::{EventKind, OccurrenceStatus};
use loadgen::api::record::Summary;
use loadgen::api::record::VerdictStatus;

use crate::support::process::{ServerProcess, pause_scenario, stack_state, start_long_drill_in};
use crate::support::timeline::{event_at, only_occurrence, run_offset_ms, run_watching};
use crate::support::{
    Workspace, eventually, loadgen, only_entry, options, recover_twice, run_binary, run_ok,
};

#[test]
fn a_paused_server_fails_requests_then_recovers_at_the_planned_end() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let file = workspace.write(
        "drill.toml",
        &pause_scenario(
            server.port,
            &server.pidfile,
            "3s",
            "at = \"1s\"\nduration = \"1s\"",
        ),
    );
    let run_options = options(&file, &workspace.out());
    let runner = std::thread::spawn(move || run_ok(&run_options));
    // Seen from outside: the process really stops, then really resumes.
    assert!(
        server.wait_for_state('T', Duration::from_secs(5)),
        "the pause never happened"
    );
    assert!(
        !server.answers(Duration::from_millis(200)),
        "a stopped server cannot answer"
    );
    assert!(
        server.wait_until_running(Duration::from_secs(5)),
        "the pause was never recovered"
    );
    let (run_dir, summary) = runner.join().unwrap();

    assert!(server.answers(Duration::from_secs(2)));
    let kinds: Vec<(&str, u64)> = summary
        .faults
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.offset_ms))
        .collect();
    let names: Vec<&str> = kinds.iter().map(|k| k.0).collect();
    assert_eq!(
        names,
        vec!["started", "applied", "recovered", "ended"],
        "{kinds:?}"
    );
    assert!((950..1400).contains(&kinds[1].1), "{kinds:?}");
    assert!((1950..2400).contains(&kinds[2].1), "{kinds:?}");
    // Resumed is running again: the first probe after the recovery sees it.
    assert!(kinds[3].1 - kinds[2].1 < 300, "{kinds:?}");
    let occurrence = &summary.faults.occurrences[0];
    assert_eq!(occurrence.status, OccurrenceStatus::Happened);
    assert_eq!(occurrence.ended_ms, Some(kinds[3].1));
    assert!(summary.faults.unrecovered.is_empty());
    // Requests sent during the pause timed out; the rest succeeded.
    let timeouts = summary
        .totals
        .errors_by_class
        .get("request_timeout")
        .copied()
        .unwrap_or(0);
    assert!(
        (10..=30).contains(&timeouts),
        "≈20 arrivals fall in the 1 s pause: {:?}",
        summary.totals.errors_by_class
    );
    assert!(summary.totals.requests - summary.totals.errors >= 30);
    // The ledger recorded the undo before the change, then the recovery.
    let ledger = std::fs::read_to_string(run_dir.join("faults.ledger.jsonl")).unwrap();
    let states: Vec<String> = ledger
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(states, vec!["applying", "applied", "recovered"]);
}

#[test]
fn a_fault_that_would_take_down_every_target_is_refused_before_traffic() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let text = pause_scenario(
        server.port,
        &server.pidfile,
        "2s",
        "at = \"1s\"\nduration = \"1s\"",
    )
    .replace("allow_last = true\n", "");
    let file = workspace.write("drill.toml", &text);
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        workspace.out().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("would leave none"), "{stderr}");
    assert!(
        !workspace.out().exists(),
        "refused before anything was written or sent"
    );
    assert!(matches!(server.state(), 'S' | 'R'));

    let dry = loadgen(&["run", file.to_str().unwrap(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("REFUSED"), "{stdout}");
}

#[test]
fn dry_run_names_the_targets_and_touches_nothing() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let file = workspace.write(
        "drill.toml",
        &pause_scenario(
            server.port,
            &server.pidfile,
            "2s",
            "at = \"1s\"\nduration = \"1s\"",
        ),
    );
    let output = loadgen(&["run", file.to_str().unwrap(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("would hit: {}", server.pidfile.display())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("({})", server.pid())), "{stdout}");
    assert!(matches!(server.state(), 'S' | 'R'));
    assert!(!workspace.out().exists());
}

fn start_long_drill(workspace: &Workspace, server: &ServerProcess) -> (Child, PathBuf) {
    let out = workspace.out();
    let child = start_long_drill_in(workspace, server, &out, crate::support::test_state_dir());
    (child, out)
}

fn stop_mid_fault(signal: &str) {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let (child, _) = start_long_drill(&workspace, &server);
    assert!(
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        server.state(),
        'T',
        "the paused server was resumed on {signal}"
    );
    assert!(server.answers(Duration::from_secs(2)));
}

#[test]
fn sigterm_mid_fault_recovers_the_target() {
    stop_mid_fault("-TERM");
}

#[test]
fn sigint_mid_fault_recovers_the_target() {
    stop_mid_fault("-INT");
}

#[test]
fn kill_9_mid_fault_then_loadgen_recover_restores_the_target() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let (mut child, out) = start_long_drill(&workspace, &server);
    // Killed once a few seconds are on disk, the fault still applied.
    let run_dir = only_entry(&out);
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(run_dir.join("series.csv"))
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("2,all,")))
    }));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(server.state(), 'T', "nothing could recover after kill -9");
    assert!(!run_dir.join("summary.json").exists());
    assert!(
        run_dir.join("plan.json").exists(),
        "written before the load"
    );

    // The killed run is judged from its files: incomplete, exit 3, the fault that was never
    // recovered runs to the end of the data and reads not_healthy_again.
    let report = loadgen(&["report", run_dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert_eq!(
        report.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert!(stdout.contains("loadgen was killed"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&report.stderr)
            .contains("killed before it wrote the run's summary"),
        "exit 3 for the kill, not for a failure to judge"
    );
    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.ended_by, loadgen::api::record::EndReason::Killed);
    assert!(!summary.complete);
    assert!(summary.judged);
    assert!(summary.duration_s >= 3.0, "{}", summary.duration_s);
    let occurrence = &summary.faults.occurrences[0];
    assert_eq!(
        occurrence.status,
        OccurrenceStatus::NotHealthyAgain,
        "{occurrence:?}"
    );
    assert_eq!(
        occurrence.ended_ms,
        Some((summary.duration_s * 1000.0) as u64)
    );
    assert!(
        occurrence
            .started_ms
            .is_some_and(|ms| (300..=1_500).contains(&ms)),
        "{occurrence:?}"
    );
    assert!(summary.totals.requests > 0);
    assert!(
        summary.totals.errors > 0,
        "requests into the frozen server failed"
    );
    assert!(run_dir.join("report.html").exists());

    recover_twice(&run_dir, "freeze server");
    assert!(server.wait_until_running(Duration::from_secs(2)));
    assert!(server.answers(Duration::from_secs(2)));
}

#[test]
fn a_fault_that_cannot_be_recovered_exits_4_and_says_what_to_fix() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    // A stack whose restart command fails: the killed instance cannot come back.
    let script = workspace.write(
        "broken-stack.sh",
        "echo 'cannot start backend-1: port in use' >&2\nexit 1\n",
    );
    let file = kill_drill(
        &workspace,
        &server,
        &script,
        "2s",
        "at = \"500ms\"\nduration = \"500ms\"",
        "backend-*",
    );
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("a human must act"), "{stderr}");
    assert!(
        stderr.contains("cannot start backend-1: port in use"),
        "{stderr}"
    );
    assert!(stderr.contains("loadgen recover"), "{stderr}");
    assert!(
        !server.answers(Duration::from_millis(200)),
        "the instance really was killed"
    );
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A drill that kills `target` (an instance name or pattern of a one-instance stack whose
/// start command is `script`) on the python server's port: the stack state file and the
/// scenario, written into `workspace`; returns the scenario file.
fn kill_drill(
    workspace: &Workspace,
    server: &ServerProcess,
    script: &Path,
    run: &str,
    timing: &str,
    target: &str,
) -> PathBuf {
    let state = stack_state(workspace, script, server.pid(), server.port);
    let text = pause_scenario(server.port, &server.pidfile, run, timing)
        .replace("action = \"pause\"", "action = \"kill\"")
        .replace(
            &format!("target = {{ pidfile = \"{}\" }}", server.pidfile.display()),
            &format!("target = {{ process = \"{target}\" }}"),
        )
        + &format!("[chaos]\nstack_state = \"{}\"\n", state.display());
    workspace.write("drill.toml", &text)
}

/// A python server the test's stack script starts again: whatever it started is killed
/// when the test ends.
struct Restarted(PathBuf);

impl Drop for Restarted {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn a_killed_instance_is_in_its_fault_until_it_listens_again() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    // The stack's restart command returns at once; the instance listens again a second
    // later (as a real backend does after its start-up): that second belongs to the fault.
    let restarted = workspace.dir.path().join("restarted.pid");
    let _cleanup = Restarted(restarted.clone());
    let script = workspace.write(
        "stack.sh",
        &format!(
            "( sleep 1; exec python3 -m http.server {port} --bind 127.0.0.1 ) >/dev/null 2>&1 </dev/null &\necho $! > {pid}\n",
            port = server.port,
            pid = restarted.display()
        ),
    );
    let file = kill_drill(
        &workspace,
        &server,
        &script,
        "5s",
        "at = \"1s\"\nduration = \"500ms\"",
        "backend-1",
    );
    let (summary, down, back) = run_watching(&file, &workspace, Duration::from_secs(10), || {
        accepts(server.port)
    });
    let (down, back) = (
        down.expect("never killed"),
        back.expect("never listened again"),
    );

    let occurrence = only_occurrence(&summary);
    assert_eq!(
        occurrence.status,
        OccurrenceStatus::Happened,
        "{occurrence:?}"
    );
    let ended = occurrence.ended_ms.expect("the effect ended") as i64;
    let seen_down = run_offset_ms(&summary, down);
    let seen_back = run_offset_ms(&summary, back);
    let recovered = event_at(&summary, EventKind::Recovered) as i64;
    eprintln!(
        "kill → restart: applied {} ms, seen down {seen_down} ms, recovered {recovered} ms, seen listening {seen_back} ms, ended {ended} ms (ended − seen {} ms)",
        occurrence.applied_ms.unwrap(),
        ended - seen_back
    );
    assert!(
        (ended - seen_back).abs() <= 1_000,
        "ended {ended} ms, seen listening again at {seen_back} ms"
    );
    assert!(
        ended - recovered >= 900,
        "the restart's second is in the window: recovered {recovered}, ended {ended}"
    );
    assert_eq!(
        occurrence.started_ms,
        Some(event_at(&summary, EventKind::Started))
    );
    assert!(summary.faults.unrecovered.is_empty());
}

#[test]
fn a_target_that_never_comes_back_keeps_its_window_open_to_effect() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    // A stack whose restart succeeds and starts nothing: the instance never comes back.
    let script = workspace.write("stack.sh", "exit 0\n");
    let file = kill_drill(
        &workspace,
        &server,
        &script,
        "5s",
        "at = \"1s\"\nduration = \"500ms\"\neffect = \"2s\"",
        "backend-1",
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    assert!(!server.answers(Duration::from_millis(200)), "still dead");

    let occurrence = only_occurrence(&summary);
    assert_eq!(
        occurrence.status,
        OccurrenceStatus::NotHealthyAgain,
        "{occurrence:?}"
    );
    let reason = occurrence.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("within effect = 2s of its recovery"),
        "{reason}"
    );
    let recovered = event_at(&summary, EventKind::Recovered);
    let closed = event_at(&summary, EventKind::NotHealthyAgain);
    let ended = occurrence.ended_ms.unwrap();
    eprintln!("never back: recovered {recovered} ms, window closed {ended} ms");
    assert_eq!(ended, closed);
    assert!(
        (2_000..2_150).contains(&(ended - recovered)),
        "the window closes effect = 2s after the recovery: {recovered} → {ended}"
    );
    assert!(
        !summary
            .faults
            .events
            .iter()
            .any(|e| e.kind == EventKind::Ended),
        "{:#?}",
        summary.faults.events
    );
}

#[test]
fn a_fault_cut_off_by_the_runs_end_did_not_run_and_one_held_to_the_end_ends_with_it() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let text = pause_scenario(server.port, &server.pidfile, "2s", "at = \"500ms\"")
        + &format!(
            r#"[[fault]]
name = "late freeze"
action = "pause"
target = {{ pidfile = "{}" }}
allow_last = true
at = "40s"
duration = "1s"
required = false
"#,
            server.pidfile.display()
        );
    let file = workspace.write("drill.toml", &text);
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    let occurrences = &summary.faults.occurrences;
    assert_eq!(occurrences.len(), 2, "{occurrences:#?}");
    let held = &occurrences[0];
    assert_eq!(held.status, OccurrenceStatus::Happened);
    assert!(held.required);
    let end = held.ended_ms.unwrap();
    assert!(
        (end as f64 - summary.duration_s * 1000.0).abs() < 500.0,
        "held to the run's end by plan: ended {end} ms, run {} s",
        summary.duration_s
    );
    let late = &occurrences[1];
    assert_eq!(late.status, OccurrenceStatus::NotRun);
    assert!(!late.required);
    assert_eq!(
        (late.started_ms, late.applied_ms, late.ended_ms),
        (None, None, None)
    );
    assert_eq!(late.planned_at_ms, 40_000);
    let reason = late.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("before this occurrence was due at 40.0 s"),
        "{reason}"
    );
    let not_run: Vec<&str> = summary
        .faults
        .events
        .iter()
        .filter(|e| e.kind == EventKind::NotRun)
        .map(|e| e.fault.as_str())
        .collect();
    assert_eq!(not_run, vec!["late freeze"]);
}

#[test]
fn every_target_of_a_mode_all_fault_has_its_own_events_and_window() {
    let workspace = Workspace::new();
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let servers = [
        ServerProcess::start(one.path()),
        ServerProcess::start(two.path()),
    ];
    let state = workspace.write(
        "state.json",
        &serde_json::json!({
            "version": 1,
            "state_dir": workspace.dir.path(),
            "backends": [
                {"name": "backend-1", "pid": servers[0].pid(), "port": servers[0].port},
                {"name": "backend-2", "pid": servers[1].pid(), "port": servers[1].port}
            ]
        })
        .to_string(),
    );
    let text = pause_scenario(
        servers[0].port,
        &servers[0].pidfile,
        "3s",
        "at = \"1s\"\nduration = \"500ms\"\nmode = \"all\"\nmax_unavailable = 2",
    )
    .replace(
        &format!(
            "target = {{ pidfile = \"{}\" }}",
            servers[0].pidfile.display()
        ),
        "target = { process = \"backend-*\" }",
    ) + &format!("[chaos]\nstack_state = \"{}\"\n", state.display());
    let file = workspace.write("drill.toml", &text);
    let (_, summary) = run_ok(&options(&file, &workspace.out()));

    let occurrence = only_occurrence(&summary);
    assert_eq!(
        occurrence.status,
        OccurrenceStatus::Happened,
        "{occurrence:?}"
    );
    assert_eq!(occurrence.targets.len(), 2, "{occurrence:?}");
    for server in &servers {
        let target = format!("({})", server.pid());
        let kinds: Vec<EventKind> = summary
            .faults
            .events
            .iter()
            .filter(|e| e.target.as_deref().is_some_and(|t| t.ends_with(&target)))
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::Started,
                EventKind::Applied,
                EventKind::Recovered,
                EventKind::Ended
            ],
            "{:#?}",
            summary.faults.events
        );
    }
    let last_end = summary
        .faults
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Ended)
        .map(|e| e.offset_ms)
        .max();
    assert_eq!(
        occurrence.ended_ms, last_end,
        "the window ends with its last target"
    );
}

/// `loadgen run --duration 2s` of a drill whose fault is due at 40 s: said before the first
/// request, the fault's window is `not_run`, and the drill fails (exit 1) unless the fault
/// says `required = false`.
struct CutOff {
    output: std::process::Output,
    summary: Summary,
    junit: String,
    html: String,
}

fn run_cut_off_drill(required: &str) -> CutOff {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let text = pause_scenario(
        server.port,
        &server.pidfile,
        "10s",
        &format!("at = \"40s\"\nduration = \"1s\"\n{required}"),
    ) + r#"[[slo]]
name = "the freeze is survived"
objective = "availability >= 50%"
window = "fault:freeze server"
"#;
    let file = workspace.write("drill.toml", &text);
    let out = workspace.out();
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--duration",
        "2s",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let run_dir = only_entry(&out);
    crate::support::schema::assert_matches_schema(&run_dir);
    let read = |name: &str| std::fs::read_to_string(run_dir.join(name)).unwrap();
    assert!(
        server.wait_until_running(Duration::from_secs(1)),
        "never paused"
    );
    CutOff {
        output,
        summary: serde_json::from_str(&read("summary.json")).unwrap(),
        junit: read("junit.xml"),
        html: read("report.html"),
    }
}

#[test]
fn a_fault_cut_off_by_duration_fails_the_drill_as_not_run() {
    let CutOff {
        output,
        summary,
        junit,
        html,
    } = run_cut_off_drill("");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--duration 2.0s cuts off fault `freeze server` #1 (due at 40.0s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fault `freeze server` #1 did not run"),
        "{stderr}"
    );
    let verdict = &summary.slos[0];
    assert_eq!(verdict.status, VerdictStatus::NotRun, "{verdict:?}");
    assert!(!verdict.allowed);
    assert!(verdict.fails_run());
    assert!(!summary.slo_passed);
    assert_eq!(
        summary.fault_problems.len(),
        1,
        "{:?}",
        summary.fault_problems
    );
    // The verdict, the fault occurrence and the run's outcome (exit 1).
    assert!(junit.contains(r#"failures="3""#), "{junit}");
    assert!(junit.contains(r#"type="not_run""#), "{junit}");
    assert!(html.contains(r#"badge fail">FAIL"#));
    assert!(html.contains("did not run"));
}

#[test]
fn a_cut_off_fault_that_is_not_required_is_allowed_never_passed() {
    let CutOff {
        output,
        summary,
        junit,
        ..
    } = run_cut_off_drill("required = false\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let verdict = &summary.slos[0];
    assert_eq!(verdict.status, VerdictStatus::NotRun);
    assert!(verdict.allowed && !verdict.fails_run());
    assert!(summary.fault_problems.is_empty());
    assert!(junit.contains(r#"failures="0""#), "{junit}");
    assert!(junit.contains(r#"skipped="2""#), "{junit}");
}
