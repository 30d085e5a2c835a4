//! Recovery after a crash, with the real binary: a restart undone exactly once through the
//! real `docker/local/stack.sh`, a torn ledger line, a bare `loadgen recover` that finds a
//! run written elsewhere through the run registry, an unreadable ledger, and the faults
//! pre-flight refuses because their undo could not run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use loadgen::api::chaos::LEDGER_FILE;

use crate::support::process::{ServerProcess, pause_scenario, start_long_drill_in};
use crate::support::{
    KillOnDrop, Workspace, eventually, http_answers, loadgen, loadgen_command, only_entry,
    recover_twice, spawn_run, steady_get,
};

fn stack_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/local/stack.sh")
}

/// The real stack script's state for one backend, `backend-1`, run by a stand-in program
/// (a tiny Python HTTP server that takes a second to listen, as a real backend takes to get
/// ready, and prints `started` to its log at every start). The other services are absent.
struct OneBackendStack {
    dir: PathBuf,
    port: u16,
}

impl OneBackendStack {
    fn start(workspace: &Workspace) -> OneBackendStack {
        let dir = workspace.dir.path().join("stack");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let python = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap();
        let backend = workspace.write(
            "fake-backend",
            &format!(
                "#!{}\n{}",
                String::from_utf8_lossy(&python.stdout).trim(),
                r#"import http.server, os, time
print("started", flush=True)
time.sleep(1)
host, port = os.environ["BACKEND_LISTEN"].rsplit(":", 1)
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((host, int(port)), Ready).serve_forever()
"#
            ),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A port the kernel hands out now; the stand-in binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let run = dir.join("run");
        let write = |name: &str, text: String| std::fs::write(run.join(name), text).unwrap();
        write("backends", "1\n".into());
        write(
            "stack.env",
            format!(
                "BACKEND_BIN='{}'\nDATABASE_URL='unused'\nREDIS_URL='unused'\n",
                backend.display()
            ),
        );
        write("backend-1.port", format!("{port}\n"));
        for service in [
            "postgres",
            "postgres-proxy",
            "redis",
            "nginx",
            "nginx-h2c",
            "nginx-http",
            "prometheus",
        ] {
            write(&format!("{service}.port"), "0\n".into());
            write(&format!("{service}.pid"), "0 absent\n".into());
        }
        write("postgres-proxy.control", "0".into());
        // start-backend needs a stack; its first call starts the instance (it is down)
        // and writes the real state.json.
        std::fs::write(dir.join("state.json"), "{}").unwrap();
        let stack = OneBackendStack { dir, port };
        let first = stack.start_backend();
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert_eq!(stack.starts(), 1);
        stack
    }

    fn start_backend(&self) -> std::process::Output {
        Command::new("bash")
            .arg(stack_script())
            .args(["start-backend", "backend-1", "--state-dir"])
            .arg(&self.dir)
            .output()
            .unwrap()
    }

    /// How many times the instance was started: one `started` line per start.
    fn starts(&self) -> usize {
        std::fs::read_to_string(self.dir.join("logs/backend-1.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "started")
            .count()
    }

    fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("run/backend-1.pid")).unwrap_or_default()
    }
}

impl Drop for OneBackendStack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(stack_script())
            .args(["down", "--state-dir"])
            .arg(&self.dir)
            .output();
    }
}

#[test]
fn a_restart_is_done_exactly_once_across_a_crash_mid_restart_and_two_recovers() {
    let workspace = Workspace::new();
    let stack = OneBackendStack::start(&workspace);
    let load = steady_get(
        &format!("http://127.0.0.1:{}", stack.port),
        "request_timeout = \"300ms\"\n",
        10,
        "60s",
        "/health/ready",
    );
    let file = workspace.write(
        "restart.toml",
        &format!(
            "name = \"restart-drill\"\n{load}[[fault]]\nname = \"restart backend\"\naction = \"restart\"\ntarget = {{ process = \"backend-1\" }}\nallow_last = true\nat = \"500ms\"\n[chaos]\nstack_state = \"{}\"\n",
            stack.dir.join("state.json").display()
        ),
    );
    let mut child = KillOnDrop(spawn_run(&file, &workspace.out()));
    // The restart has started the instance again and waits for it to get ready: loadgen
    // dies there, before its ledger can say the restart is done.
    assert!(
        eventually(Duration::from_secs(10), || stack.starts() == 2),
        "the restart never started the instance"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let restarted_pid = stack.pid();

    // The undo runs again from the ledger, twice: the instance is started by nobody.
    recover_twice(&only_entry(&workspace.out()), "restart backend");
    assert_eq!(
        stack.starts(),
        2,
        "the instance was started more than once by the restart"
    );
    assert_eq!(stack.pid(), restarted_pid);
    // Asked once more by hand: nothing to do.
    let again = stack.start_backend();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already running"), "{said}");
    assert_eq!(stack.starts(), 2);
    assert!(http_answers(stack.port, Duration::from_secs(2)));
}

#[test]
fn a_torn_last_ledger_line_is_recovered_once_then_nothing_is_left() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let out = workspace.out();
    let mut child =
        start_long_drill_in(&workspace, &server, &out, crate::support::test_state_dir());
    child.kill().unwrap();
    child.wait().unwrap();
    // A crash mid-write leaves half a record and no newline.
    let run_dir = only_entry(&out);
    let mut ledger = std::fs::OpenOptions::new()
        .append(true)
        .open(run_dir.join(LEDGER_FILE))
        .unwrap();
    ledger.write_all(br#"{"entry":"freeze server#0@"#).unwrap();
    drop(ledger);

    // Recovered once; recover's own `recovered` record was not glued onto the torn line,
    // so the second call finds nothing to do.
    recover_twice(&run_dir, "freeze server");
    assert!(server.wait_until_running(Duration::from_secs(2)));
}

#[test]
fn a_bare_recover_from_another_directory_finds_a_run_written_elsewhere() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let state = workspace.dir.path().join("state");
    let out = workspace.dir.path().join("elsewhere/runs");
    let mut child = start_long_drill_in(&workspace, &server, &out, &state);
    child.kill().unwrap();
    child.wait().unwrap();
    let registered = std::fs::read_dir(state.join("runs")).unwrap().count();
    assert_eq!(registered, 1, "the run mid-fault is registered");

    let somewhere = workspace.dir.path().join("somewhere");
    std::fs::create_dir_all(&somewhere).unwrap();
    let bare = || {
        loadgen_command()
            .env("LOADGEN_STATE_DIR", &state)
            .arg("recover")
            .current_dir(&somewhere)
            .output()
            .unwrap()
    };
    let output = bare();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("recovering {}", only_entry(&out).display())),
        "{stdout}"
    );
    assert!(stdout.contains("recovered: freeze server"), "{stdout}");
    assert!(server.wait_until_running(Duration::from_secs(2)));
    assert_eq!(
        std::fs::read_dir(state.join("runs")).unwrap().count(),
        0,
        "the recovered run left the registry"
    );
    let again = bare();
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to recover"));
}

#[test]
fn a_registered_run_that_is_gone_is_reported_and_removed() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let state = workspace.dir.path().join("state");
    let out = workspace.dir.path().join("gone");
    let mut child = start_long_drill_in(&workspace, &server, &out, &state);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&out).unwrap();

    let output = loadgen_command()
        .env("LOADGEN_STATE_DIR", &state)
        .arg("recover")
        .current_dir(workspace.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("no longer exists: removed from the registry"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(state.join("runs")).unwrap().count(), 0);
}

#[test]
fn an_unreadable_ledger_exits_4_and_names_it() {
    let workspace = Workspace::new();
    let run_dir = workspace.dir.path().join("run");
    // A directory where the ledger file should be: unreadable as a file even for root.
    std::fs::create_dir_all(run_dir.join(LEDGER_FILE)).unwrap();
    let output = loadgen(&["recover", run_dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&run_dir.join(LEDGER_FILE).display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("may still be applied"), "{stderr}");
}

#[test]
fn faults_whose_undo_cannot_run_are_refused_by_the_dry_run_and_before_traffic() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let state = workspace.write(
        "state.json",
        &serde_json::json!({
            "state_dir": workspace.dir.path(),
            "backends": [],
            "nginx": {"pid": server.pid(), "port": server.port},
        })
        .to_string(),
    );
    let drill = |action: &str, target: &str, timing: &str| {
        let text = pause_scenario(server.port, &server.pidfile, "2s", timing)
            .replace("action = \"pause\"", &format!("action = \"{action}\""))
            .replace(
                &format!("target = {{ pidfile = \"{}\" }}", server.pidfile.display()),
                target,
            )
            + &format!("[chaos]\nstack_state = \"{}\"\n", state.display());
        let file = workspace.write("drill.toml", &text);
        loadgen(&["run", file.to_str().unwrap(), "--dry-run"])
    };
    let pidfile = format!("target = {{ pidfile = \"{}\" }}", server.pidfile.display());
    let nginx = "target = { process = \"nginx\" }";
    for (action, target, timing) in [
        ("restart", pidfile.as_str(), "at = \"1s\""),
        ("kill", nginx, "at = \"1s\"\nduration = \"500ms\""),
        (
            "terminate",
            pidfile.as_str(),
            "at = \"1s\"\nduration = \"500ms\"",
        ),
    ] {
        let output = drill(action, target, timing);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{action} {target}: {stdout}");
        if target.contains("pidfile") {
            // Nothing could ever start a PID file's process again: the scenario alone says
            // so, and validation refuses it at its position.
            assert!(
                stderr.contains("drill.toml:") && stderr.contains("could not be undone"),
                "{stderr}"
            );
        } else {
            assert!(
                stdout.contains("REFUSED") && stdout.contains("cannot be undone"),
                "{stdout}"
            );
        }
    }
    // Killing it for good on purpose (no duration) is allowed.
    let output = drill("kill", nginx, "at = \"1s\"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");

    // A real run is refused before anything is sent or written.
    let text = std::fs::read_to_string(workspace.dir.path().join("drill.toml"))
        .unwrap()
        .replace("at = \"1s\"", "at = \"1s\"\nduration = \"500ms\"");
    let file = workspace.write("drill.toml", &text);
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        workspace.out().to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!workspace.out().exists());
    assert!(matches!(server.state(), 'S' | 'R'), "nothing was touched");
}

#[test]
fn an_old_ledgers_command_line_is_refused_not_run() {
    let workspace = Workspace::new();
    let run_dir = workspace.dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let ran = workspace.dir.path().join("ran");
    let record = serde_json::json!({
        "entry": "kill backend#0@1", "fault": "kill backend", "state": "applied", "at": "now",
        "target": {"backend": "process", "id": "1", "name": "backend-1"},
        "undo": {"backend": "process", "pid": 1, "start_time": 0,
                 "step": {"do": "restart", "command": ["touch", ran.to_str().unwrap()]}},
    });
    std::fs::write(run_dir.join(LEDGER_FILE), format!("{record}\n")).unwrap();
    let output = loadgen(&["recover", run_dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("never runs"), "{stderr}");
    assert!(!ran.exists(), "the ledger's command was executed");
}
