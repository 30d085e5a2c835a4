//! `{ proxy = … }` faults on a run's timeline, through a real `loadgen proxy` process in
//! front of a real HTTP server: the fault is seen in the run's latency and events, the proxy
//! is clean afterwards — at the planned end, on SIGTERM, and by `loadgen recover` after a
//! `kill -9` of loadgen.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loadgen::api::record::VerdictStatus;

use crate::support::server::TestServer;
use crate::support::{
    KillOnDrop, Workspace, binary_run, eventually, loadgen, only_entry, options, recover_twice,
    run_ok, spawn_run, steady_get,
};

/// A `loadgen proxy` child process in front of `upstream`, and the stack state file that
/// names it `web`.
struct ProxyProcess {
    child: Child,
    listen: String,
    control: String,
    state_file: PathBuf,
}

impl ProxyProcess {
    fn start(workspace: &Workspace, upstream: &str) -> ProxyProcess {
        let mut child = crate::support::loadgen_command()
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Readiness: the proxy prints its bound addresses once both listeners are up.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("unexpected ready line {line:?}: {e}"));
        let control = ready["control"].as_str().unwrap().to_string();
        let state_file = workspace.write(
            "state.json",
            &serde_json::json!({
                "state_dir": workspace.dir.path(),
                "proxies": [{ "name": "web", "control": control }],
            })
            .to_string(),
        );
        ProxyProcess {
            child,
            listen: ready["listen"].as_str().unwrap().to_string(),
            control,
            state_file,
        }
    }

    /// The fault in force, read from outside through the control API.
    fn fault(&self) -> serde_json::Value {
        curl(&["-sf", &format!("{}/fault", self.control)])
    }

    /// Whether the control API answers with a fault of this kind (a failed read is "no").
    fn has_fault(&self, kind: &str) -> bool {
        let output = Command::new("curl")
            .args(["-sf", &format!("{}/fault", self.control)])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .is_ok_and(|fault| fault["kind"] == kind)
    }

    fn stats(&self) -> serde_json::Value {
        curl(&["-sf", &format!("{}/stats", self.control)])
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> serde_json::Value {
    let output = Command::new("curl").args(args).output().unwrap();
    assert!(output.status.success(), "curl {args:?} failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn scenario(proxy: &ProxyProcess, run: &str, fault: &str) -> String {
    let load = steady_get(
        &format!("http://{}", proxy.listen),
        "request_timeout = \"2s\"\n",
        25,
        run,
        "/hello",
    );
    format!(
        r#"name = "slow-link"
{load}[chaos]
stack_state = "{state}"
settle = "500ms"
[[fault]]
name = "slow link"
action = "latency"
latency = "150ms"
jitter = "10ms"
target = {{ proxy = "web" }}
{fault}
"#,
        state = proxy.state_file.display(),
    )
}

#[test]
fn latency_on_a_proxied_link_shows_in_the_run_and_is_cleared_at_its_end() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let proxy = ProxyProcess::start(&workspace, &server.addr.to_string());
    let file = workspace.write(
        "drill.toml",
        &scenario(&proxy, "5s", "at = \"1500ms\"\nduration = \"2s\""),
    );
    let (run_dir, summary) = run_ok(&options(&file, &workspace.out()));

    // Every request went through the proxy to the server, and none failed: latency is not
    // an outage.
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert_eq!(server.seen().len() as u64, summary.totals.requests);
    let events: Vec<(&str, String)> = summary
        .faults
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.target.clone().unwrap_or_default()))
        .collect();
    let target = format!("web ({})", proxy.control);
    assert_eq!(
        events,
        vec![
            ("started", target.clone()),
            ("applied", target.clone()),
            ("recovered", target.clone()),
            ("ended", target)
        ]
    );
    // 150 ms ± 10 ms each way: a round trip through the faulty link takes ≥ 280 ms; before
    // it, loopback answers in a few milliseconds.
    let failover = &summary.failover[0];
    let during = failover.p99_during_us.expect("requests during the fault");
    let before = failover.p99_before_us.expect("requests before the fault");
    assert!(during >= 280_000, "p99 during the fault: {during} µs");
    assert!(before < 100_000, "p99 before the fault: {before} µs");
    // Seen from outside: the proxy is clean and carried the traffic.
    assert_eq!(proxy.fault(), serde_json::Value::Null);
    assert!(proxy.stats()["accepted"].as_u64().unwrap() > 0);
    let ledger = std::fs::read_to_string(run_dir.join("faults.ledger.jsonl")).unwrap();
    assert!(ledger.contains(&proxy.control), "{ledger}");
}

/// Starts a 60 s run whose fault is injected at 500 ms and held to the end; returns once
/// the proxy reports the fault in force. The run is killed if the test fails first.
fn start_long_drill(workspace: &Workspace, proxy: &ProxyProcess) -> KillOnDrop {
    let file = workspace.write(
        "long.toml",
        &scenario(proxy, "60s", "at = \"500ms\"\nduration = \"59s\""),
    );
    let child = KillOnDrop(spawn_run(&file, &workspace.out()));
    assert!(
        eventually(Duration::from_secs(10), || proxy.has_fault("latency")),
        "the fault was never set"
    );
    child
}

#[test]
fn sigterm_mid_fault_leaves_the_proxy_clean() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let proxy = ProxyProcess::start(&workspace, &server.addr.to_string());
    let mut child = start_long_drill(&workspace, &proxy);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert_eq!(proxy.fault(), serde_json::Value::Null);
}

#[test]
fn kill_9_mid_fault_then_loadgen_recover_clears_the_proxy() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let proxy = ProxyProcess::start(&workspace, &server.addr.to_string());
    let mut child = start_long_drill(&workspace, &proxy);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(
        proxy.fault()["kind"],
        "latency",
        "nothing could clear it after kill -9"
    );

    recover_twice(&only_entry(&workspace.out()), "slow link on web");
    assert_eq!(proxy.fault(), serde_json::Value::Null);
}

#[test]
fn a_proxy_that_is_gone_counts_as_recovered() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let mut proxy = ProxyProcess::start(&workspace, &server.addr.to_string());
    let mut child = start_long_drill(&workspace, &proxy);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The proxy process ends too (a stack torn down after the crash): no fault is left.
    proxy.child.kill().unwrap();
    proxy.child.wait().unwrap();

    recover_twice(&only_entry(&workspace.out()), "slow link on web");
}

#[test]
fn the_proxy_refuses_non_loopback_addresses_and_says_each_problem() {
    let output = loadgen(&[
        "proxy",
        "--listen",
        "0.0.0.0:0",
        "--upstream",
        "10.9.8.7:5432",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--listen 0.0.0.0:0"), "{stderr}");
    assert!(
        stderr.contains("`10.9.8.7` is outside the allow-list"),
        "{stderr}"
    );
}

#[test]
fn a_jitter_larger_than_the_latency_is_a_positioned_validation_error() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "bad.toml",
        r#"name = "bad-link"
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
[[fault]]
name = "slow"
at = "0s"
duration = "1s"
action = "latency"
latency = "10ms"
jitter = "20ms"
target = { proxy = "web" }
"#,
    );
    let output = loadgen(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml:20:10: error: `jitter` (20ms) must not exceed `latency` (10ms)"),
        "{stderr}"
    );
}

/// 50 arrivals/s through the proxy; a 3 s blackhole on the link at 2 s; a 5 s request
/// timeout. The requests sent into the blackhole time out after it is cleared — and they
/// are charged to the blackhole (the second they were meant to start in), not to the
/// recovered platform after it.
#[test]
fn requests_sent_into_a_blackhole_fail_its_window_and_leave_the_time_after_it_clean() {
    let workspace = Workspace::new();
    let server = TestServer::start();
    let proxy = ProxyProcess::start(&workspace, &server.addr.to_string());
    let load = steady_get(
        &format!("http://{}", proxy.listen),
        "request_timeout = \"5s\"\n",
        50,
        "10s",
        "/hello",
    );
    let text = format!(
        r#"name = "blackhole"
{load}[chaos]
stack_state = "{state}"
settle = "1s"
[[fault]]
name = "blackhole"
action = "blackhole"
target = {{ proxy = "web" }}
at = "2s"
duration = "3s"
allow_last = true
[[slo]]
name = "during"
objective = "availability >= 99%"
window = "fault:blackhole"
[[slo]]
name = "after"
objective = "availability >= 99%"
window = "after"
"#,
        state = proxy.state_file.display(),
    );
    let file = workspace.write("blackhole.toml", &text);
    let (code, _, summary) = binary_run(&file, &workspace.out());
    assert_eq!(code, Some(1), "the blackhole's window fails the drill");
    let (during, after) = (&summary.slos[0], &summary.slos[1]);
    eprintln!(
        "blackhole: during {:?} over {} requests, after {:?} over {}",
        during.measured[0].value, during.requests, after.measured[0].value, after.requests
    );
    let timeouts = summary
        .totals
        .errors_by_class
        .get("request_timeout")
        .copied();
    assert!(
        timeouts.is_some_and(|t| (120..=160).contains(&t)),
        "3 s × 50/s sent into the blackhole time out: {timeouts:?}"
    );
    assert_eq!(during.status, VerdictStatus::Fail, "{during:?}");
    assert!(
        during.measured[0].value.unwrap() < 50.0,
        "the blackhole's own window holds its timeouts: {during:?}"
    );
    assert_eq!(after.status, VerdictStatus::Pass, "{after:?}");
    assert!(after.requests >= 150, "{after:?}");
    assert_eq!(
        summary.totals.requests - summary.totals.errors,
        server.seen().len() as u64,
        "every success is a request the server answered"
    );
}
