//! `{ port = … }` faults: real iptables rules on loopback in front of a real HTTP server.
//! The fault is seen in the run (fast resets, lost packets), the rule is gone afterwards —
//! at the planned end, and by `loadgen recover` after a `kill -9` of loadgen — as
//! `iptables -S INPUT` shows from outside. Needs root and iptables (as CI has).
//!
//! Every rule loadgen makes carries the comment `loadgen:<port>-…`; each test's server has
//! a port of its own, and a guard deletes whatever rule for that port is left, whatever
//! happens.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::server::TestServer;
use crate::support::{
    KillOnDrop, Workspace, eventually, loadgen, only_entry, options, per_second, recover_twice,
    run_binary, run_ok, spawn_run, steady_get,
};

const PROGRAMS: [&str; 2] = ["iptables", "ip6tables"];

/// The INPUT rules loadgen made for `port`, in both families (`iptables -S INPUT` and
/// `ip6tables -S INPUT` lines, each after its program's name).
fn rules_for(port: u16) -> Vec<String> {
    PROGRAMS
        .iter()
        .flat_map(|program| {
            listed(program, port)
                .unwrap_or_else(|| panic!("{program} -S INPUT runs"))
                .into_iter()
                .map(move |line| format!("{program}: {line}"))
        })
        .collect()
}

fn listed(program: &str, port: u16) -> Option<Vec<String>> {
    let output = Command::new(program)
        .args(["-w", "5", "-S", "INPUT"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    // iptables -S quotes comments: `--comment "loadgen:PORT-…"`.
    let mark = format!("--comment \"loadgen:{port}-");
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains(&mark))
            .map(str::to_string)
            .collect(),
    )
}

/// Deletes every rule loadgen made for its port when dropped — also when a test fails.
struct RuleGuard {
    port: u16,
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        for program in PROGRAMS {
            for line in listed(program, self.port).unwrap_or_default() {
                if let Some(spec) = line.strip_prefix("-A INPUT ") {
                    let _ = Command::new(program)
                        .args(["-w", "5", "-D", "INPUT"])
                        .args(spec.split_whitespace().map(|w| w.trim_matches('"')))
                        .status();
                }
            }
        }
    }
}

fn scenario(port: u16, run: &str, request_timeout: &str, fault: &str) -> String {
    scenario_at(
        &format!("http://127.0.0.1:{port}"),
        port,
        run,
        request_timeout,
        fault,
    )
}

/// The drill against `base_url`, with a fault on `port` (not necessarily the target's).
fn scenario_at(base_url: &str, port: u16, run: &str, request_timeout: &str, fault: &str) -> String {
    let load = steady_get(
        base_url,
        &format!(
            "connect_timeout = \"{request_timeout}\"\nrequest_timeout = \"{request_timeout}\"\n"
        ),
        20,
        run,
        "/hello",
    );
    format!(
        r#"name = "packet-drill"
{load}[chaos]
settle = "500ms"
[[fault]]
name = "cut"
target = {{ port = {port} }}
allow_last = true
{fault}
"#
    )
}

#[test]
fn reject_fails_requests_fast_then_the_rule_is_gone() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let port = server.addr.port();
    let _guard = RuleGuard { port };
    let file = workspace.write(
        "reject.toml",
        &scenario(
            port,
            "6s",
            "2s",
            "action = \"reject\"\nat = \"1500ms\"\nduration = \"2s\"",
        ),
    );
    let (run_dir, summary) = run_ok(&options(&file, &workspace.out()));

    let target = format!("port {port} (tcp/{port})");
    let events: Vec<(&str, String)> = summary
        .faults
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.target.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        events,
        vec![
            ("started", target.clone()),
            ("applied", target.clone()),
            ("recovered", target.clone()),
            ("ended", target)
        ]
    );
    assert!(summary.faults.unrecovered.is_empty());

    // Requests in the window failed with resets or refused connects, never by waiting for
    // a timeout: a reset answers at once.
    let by_class = &summary.totals.errors_by_class;
    let fast = by_class.get("connect_refused").copied().unwrap_or(0)
        + by_class.get("reset").copied().unwrap_or(0);
    assert!(fast >= 10, "errors by class: {by_class:?}");
    assert_eq!(fast, summary.totals.errors, "errors by class: {by_class:?}");
    let failover = &summary.failover[0];
    assert!(failover.requests_failed >= 10, "{failover:?}");
    assert!(
        failover
            .failed_by_class
            .keys()
            .all(|class| class == "connect_refused" || class == "reset"),
        "{failover:?}"
    );
    let during = failover.p99_during_us.expect("requests during the fault");
    assert!(during < 500_000, "p99 during a reject: {during} µs");
    // The rejected requests never reached the server; the others did.
    let seen = server.seen().len() as u64;
    assert!(
        seen < summary.totals.requests,
        "{seen} of {}",
        summary.totals.requests
    );
    assert!(seen >= summary.totals.requests - summary.totals.errors);

    // A second after the rule was deleted, every request succeeds again.
    let after: Vec<(u64, u64, u64)> = per_second(&run_dir)
        .into_iter()
        .filter(|(second, _, _)| second * 1000 >= failover.end_ms + 1000)
        .collect();
    assert!(
        after.iter().map(|(_, r, _)| r).sum::<u64>() >= 20,
        "{after:?}"
    );
    assert!(after.iter().all(|(_, _, errors)| *errors == 0), "{after:?}");
    assert_eq!(rules_for(port), Vec::<String>::new());

    // The ledger recorded the exact rule before inserting it.
    let ledger = std::fs::read_to_string(run_dir.join("faults.ledger.jsonl")).unwrap();
    assert!(
        ledger.contains(&format!("loadgen:{port}-")) && ledger.contains("tcp-reset"),
        "{ledger}"
    );
}

/// A `loadgen run` child whose partition is injected at 500 ms and held to the end of a
/// 60 s run; returns once the rule is in INPUT.
fn start_long_partition(workspace: &Workspace, port: u16) -> (KillOnDrop, PathBuf) {
    let file = workspace.write(
        "long.toml",
        &scenario(
            port,
            "60s",
            "500ms",
            "action = \"partition\"\nat = \"500ms\"\nduration = \"59s\"",
        ),
    );
    let child = KillOnDrop(spawn_run(&file, &workspace.out()));
    assert!(
        eventually(Duration::from_secs(10), || rules_for(port).len() == 2),
        "the partition rule never appeared"
    );
    (child, workspace.out())
}

/// A child `loadgen run`, killed when dropped (a failed test leaves no run behind).
/// Whether a fresh TCP connection to the port completes within `timeout`.
fn connects(port: u16, timeout: Duration) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).is_ok()
}

/// Whether a client bound to 127.0.0.2:`local_port` completes a connect to 127.0.0.1:`to`
/// (its SYN-ACK arrives addressed to `local_port`).
fn replies_reach_local_port(local_port: u16, to: u16) -> bool {
    let client = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket; s = socket.socket(); s.settimeout(1); \
                 s.bind(('127.0.0.2', {local_port})); s.connect(('127.0.0.1', {to})); print('ok')"
            ),
        ])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&client.stdout).trim() == "ok"
}

#[test]
fn kill_9_mid_partition_leaves_the_rule_and_loadgen_recover_removes_it() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let port = server.addr.port();
    let _guard = RuleGuard { port };
    let (mut child, out) = start_long_partition(&workspace, port);
    let rules = rules_for(port);
    assert!(
        rules[1].starts_with("ip6tables: ") && rules[1].contains("-d ::1/128 -i lo -p tcp"),
        "{rules:?}"
    );
    let rule = &rules[0];
    assert!(
        rule.contains("-d 127.0.0.0/8 -i lo -p tcp") && rule.ends_with("-j DROP"),
        "{rule}"
    );
    // The partition is real: a connect to the port gets no answer at all.
    assert!(!connects(port, Duration::from_millis(300)));
    // …in the client → server direction only: a client on another loopback address whose
    // own port is the partitioned one still gets its replies from any other server.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(
        replies_reach_local_port(port, other.local_addr().unwrap().port()),
        "a reply to a client port equal to the partitioned port was dropped"
    );

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(
        rules_for(port).len(),
        2,
        "nothing could delete the rules (IPv4 and IPv6) after kill -9"
    );

    recover_twice(&only_entry(&out), "cut");
    assert_eq!(rules_for(port), Vec::<String>::new());
    assert!(connects(port, Duration::from_secs(1)));
}

#[test]
fn half_the_packets_lost_slows_or_fails_some_requests_but_not_all() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let port = server.addr.port();
    let _guard = RuleGuard { port };
    let file = workspace.write(
        "loss.toml",
        &scenario(
            port,
            "6s",
            "1500ms",
            "action = \"loss\"\nprobability = \"50%\"\nat = \"1s\"\nduration = \"4s\"",
        ),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    let kinds: Vec<&str> = summary
        .faults
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, vec!["started", "applied", "recovered", "ended"]);
    assert_eq!(rules_for(port), Vec::<String>::new());

    let failover = &summary.failover[0];
    let before = failover.p99_before_us.expect("requests before the fault");
    assert!(before < 100_000, "p99 before the loss: {before} µs");
    // Half the packets lost: TCP retransmits (≥ 200 ms on Linux; a lost SYN costs 1 s) or
    // gives up, so the slow tail shows during the fault; but most requests still get through.
    let during = failover.p99_during_us.expect("requests during the fault");
    assert!(during >= 200_000, "no slow tail under loss: {failover:?}");
    let requests = summary.totals.requests;
    assert!(requests >= 100, "{requests} requests");
    assert!(
        summary.totals.errors < requests / 2,
        "a 50% loss should not fail most requests: {:?}",
        summary.totals
    );
    assert!(server.seen().len() as u64 >= requests / 2);
}

#[test]
fn a_port_target_with_a_bad_probability_is_a_positioned_validation_error() {
    let workspace = Workspace::new();
    for (probability, expected) in [
        ("0%", "must be above 0%"),
        ("150%", "between 0% and 100%"),
        ("ten", "not a percentage"),
    ] {
        let text = scenario(
            5432,
            "2s",
            "1s",
            &format!("action = \"loss\"\nprobability = \"{probability}\"\nat = \"1s\""),
        );
        let file = workspace.write("bad.toml", &text);
        let output = run_binary(&file, &workspace.out());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let line = text
            .lines()
            .position(|l| l.starts_with("probability"))
            .unwrap()
            + 1;
        let col = "probability = ".len() + 1;
        assert!(
            stderr.contains(&format!("bad.toml:{line}:{col}")),
            "{probability}: {stderr}"
        );
        assert!(stderr.contains(expected), "{probability}: {stderr}");
        assert!(
            !workspace.out().exists(),
            "no run directory for a bad scenario"
        );
    }
    // An action the firewall does not have, and a missing probability.
    let text = scenario(5432, "2s", "1s", "action = \"latency\"\nat = \"1s\"");
    let file = workspace.write("bad.toml", &text);
    let output = loadgen(&["plan", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("loss, partition, reject"), "{stderr}");
    let text = scenario(5432, "2s", "1s", "action = \"loss\"\nat = \"1s\"");
    let file = workspace.write("bad.toml", &text);
    let output = loadgen(&["plan", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`loss` needs `probability`"), "{stderr}");
}

#[test]
fn dry_run_names_the_port_and_adds_no_rule() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let port = server.addr.port();
    let _guard = RuleGuard { port };
    let file = workspace.write(
        "dry.toml",
        &scenario(port, "2s", "1s", "action = \"partition\"\nat = \"1s\""),
    );
    let output = loadgen(&["run", file.to_str().unwrap(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("would hit: port {port}")),
        "{stdout}"
    );
    assert!(rules_for(port).is_empty());
    assert!(server.seen().is_empty());
}

#[test]
fn without_root_a_packet_fault_is_refused_before_any_traffic() {
    use std::os::unix::fs::PermissionsExt;
    let workspace = Workspace::new();
    let server = TestServer::start();
    let port = server.addr.port();
    let _guard = RuleGuard { port };
    let file = workspace.write(
        "nobody.toml",
        &scenario(port, "2s", "1s", "action = \"reject\"\nat = \"1s\""),
    );
    // `nobody` may read the scenario and write nowhere else.
    std::fs::set_permissions(workspace.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = |extra: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_loadgen"))
            .env("LOADGEN_STATE_DIR", crate::support::test_state_dir())
            .args(["run", file.to_str().unwrap()])
            .args(extra)
            .output()
            .expect("setpriv (util-linux) runs")
    };
    let dry = as_nobody(&["--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("packet faults need root, iptables and ip6tables"),
        "{stdout}"
    );
    let out = std::env::temp_dir().join(format!("loadgen-nobody-{port}"));
    let run = as_nobody(&["--out", out.to_str().unwrap(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("packet faults need root, iptables and ip6tables"),
        "{stderr}"
    );
    assert!(!out.exists(), "no run directory");
    assert!(server.seen().is_empty(), "nothing was sent");
    assert!(rules_for(port).is_empty());
}

/// Seconds of the run ending before `from_ms` or starting at `to_ms` or later: (requests,
/// errors) summed.
fn outside(rows: &[(u64, u64, u64)], from_ms: u64, to_ms: u64) -> (u64, u64) {
    rows.iter()
        .filter(|(second, _, _)| (second + 1) * 1000 <= from_ms || second * 1000 >= to_ms)
        .fold((0, 0), |(r, e), (_, requests, errors)| {
            (r + requests, e + errors)
        })
}

#[test]
fn over_ipv6_loopback_a_reject_resets_requests_and_both_families_are_clean_after() {
    let workspace = Workspace::new();
    let server = TestServer::start_v6();
    let port = server.addr.port();
    assert!(server.addr.is_ipv6(), "{}", server.addr);
    let _guard = RuleGuard { port };
    let file = workspace.write(
        "reject6.toml",
        &scenario_at(
            &format!("http://[::1]:{port}"),
            port,
            "6s",
            "2s",
            "action = \"reject\"\nat = \"1500ms\"\nduration = \"2s\"",
        ),
    );
    let (run_dir, summary) = run_ok(&options(&file, &workspace.out()));
    let kinds: Vec<&str> = summary
        .faults
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["started", "applied", "recovered", "ended"],
        "{:?}",
        summary.faults.events
    );
    // Applied means seen working: its rule matched packets (no "unverified" note).
    assert_eq!(
        summary.faults.events[1].message, None,
        "{:?}",
        summary.faults.events
    );

    // Over ::1 the requests in the window were reset at once (an IPv4-only rule would
    // let every one of them through) ...
    let by_class = &summary.totals.errors_by_class;
    let fast = by_class.get("connect_refused").copied().unwrap_or(0)
        + by_class.get("reset").copied().unwrap_or(0);
    assert!(fast >= 10, "errors by class: {by_class:?}");
    assert_eq!(fast, summary.totals.errors, "errors by class: {by_class:?}");
    // ... and never reached the server, which saw exactly the others.
    assert_eq!(
        server.seen().len() as u64,
        summary.totals.requests - summary.totals.errors
    );
    // Outside the fault's window (a second of margin after it) every request succeeded.
    let failover = &summary.failover[0];
    let (requests, errors) = outside(
        &per_second(&run_dir),
        failover.start_ms,
        failover.end_ms + 1000,
    );
    assert!(requests >= 30, "{requests}");
    assert_eq!(errors, 0);
    assert_eq!(rules_for(port), Vec::<String>::new());
    let ledger = std::fs::read_to_string(run_dir.join("faults.ledger.jsonl")).unwrap();
    assert!(ledger.contains("::1/128"), "{ledger}");
}

/// A port nobody listens on: bound, then closed.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_rule_on_a_port_nothing_listens_on_is_ineffective_and_fails_the_run() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let wrong = closed_port();
    let _guard = RuleGuard { port: wrong };
    let file = workspace.write(
        "wrong-port.toml",
        &scenario_at(
            &format!("http://{}", server.addr),
            wrong,
            "4s",
            "2s",
            "action = \"partition\"\nat = \"1s\"\nduration = \"2s\"",
        ),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    let (code, reasons) = loadgen::api::judge::for_run(&summary, false);
    assert_eq!(
        code,
        loadgen::api::judge::ExitCode::SloFailed,
        "{reasons:?}"
    );
    let failed = summary
        .faults
        .events
        .iter()
        .find(|e| e.kind.as_str() == "failed")
        .unwrap_or_else(|| panic!("{:?}", summary.faults.events));
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.contains("ineffective") && message.contains(&format!("port {wrong}")),
        "{message}"
    );
    assert!(
        !summary
            .faults
            .events
            .iter()
            .any(|e| e.kind.as_str() == "applied"),
        "an ineffective rule is not reported applied: {:?}",
        summary.faults.events
    );
    let occurrence = &summary.faults.occurrences[0];
    assert_eq!(
        occurrence.status,
        loadgen::api::chaos::OccurrenceStatus::NotRun
    );
    assert!(
        occurrence
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("ineffective"),
        "{occurrence:?}"
    );
    // The load itself went through, and the rule did not stay.
    assert_eq!(summary.totals.errors, 0);
    assert_eq!(rules_for(wrong), Vec::<String>::new());
}

/// Confirming a packet rule waits up to CONFIRM_WITHIN for traffic; that wait goes on beside
/// the timeline. A rule on a port nothing listens on (confirmed ineffective only after the
/// whole wait) at 1 s does not hold back a second fault due at 1.5 s: it starts on time,
/// not when the first confirmation ends (3 s).
#[test]
fn confirming_a_packet_fault_does_not_hold_back_the_next_fault() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let wrong = closed_port();
    // Listened on, never sent to: its rule is applied and left unverified.
    let idle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let idle_port = idle.local_addr().unwrap().port();
    let (_wrong_guard, _idle_guard) = (RuleGuard { port: wrong }, RuleGuard { port: idle_port });
    let load = steady_get(&format!("http://{}", server.addr), "", 20, "5s", "/hello");
    let file = workspace.write(
        "two-packet-faults.toml",
        &format!(
            r#"name = "two-packet-faults"
{load}[chaos]
settle = "500ms"
[[fault]]
name = "wrong port"
target = {{ port = {wrong} }}
allow_last = true
action = "partition"
at = "1s"
duration = "3s"
[[fault]]
name = "idle port"
target = {{ port = {idle_port} }}
allow_last = true
action = "partition"
at = "1500ms"
duration = "2s"
"#
        ),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    let events = &summary.faults.events;
    let event = |fault: &str, kind: &str| {
        events
            .iter()
            .find(|e| e.fault == fault && e.kind.as_str() == kind)
            .unwrap_or_else(|| panic!("no {kind} event of {fault}: {events:?}"))
    };
    let second = event("idle port", "started").offset_ms;
    assert!(
        (1500..2500).contains(&second),
        "the second fault started at {second} ms, due at 1500 ms: {events:?}"
    );
    let first = event("wrong port", "failed");
    assert!(
        first.offset_ms >= 3000,
        "the first was found ineffective only after its wait: {events:?}"
    );
    assert!(
        first
            .message
            .as_deref()
            .unwrap_or("")
            .contains("ineffective"),
        "{first:?}"
    );
    let applied = event("idle port", "applied");
    assert!(
        applied
            .message
            .as_deref()
            .unwrap_or("")
            .contains("unverified"),
        "{applied:?}"
    );
    assert_eq!(rules_for(wrong), Vec::<String>::new());
    assert_eq!(rules_for(idle_port), Vec::<String>::new());
    drop(idle);
}
