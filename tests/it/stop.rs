//! Stop means stop (issue 11), with the real binary and real processes as targets: a
//! signal ends injection at that instant and recovery begins at once, while journeys
//! drain; a hang-up (the terminal gone) still recovers; a second interrupt during a slow
//! recovery skips what has not begun, lists it and exits 4.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::process::{ServerProcess, pause_scenario, process_state, stack_state};
use crate::support::server::TestServer;
use crate::support::{KillOnDrop, Workspace, eventually, loadgen, loadgen_command, only_entry};

/// The run directory appears once the supervisor handles signals (they are installed
/// first): the readiness check before signalling a run.
fn wait_for_run_dir(out: &Path) -> bool {
    eventually(Duration::from_secs(10), || {
        std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some())
    })
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).expect("the run is alive to signal");
}

/// Waits for the child to exit, at most `within`; its exit code.
fn exit_code(child: &mut Child, within: Duration) -> Option<i32> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("loadgen did not exit within {within:?}");
}

fn spawn(file: &Path, out: &Path) -> Child {
    loadgen_command()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the loadgen binary starts")
}

fn ledger_lines(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("faults.ledger.jsonl"))
        .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

#[test]
fn ctrl_c_before_a_scheduled_fault_means_it_is_never_applied() {
    let workspace = Workspace::new();
    // The fault's target, and a server of our own that counts what it is sent.
    let server = ServerProcess::start(workspace.dir.path());
    let target = TestServer::start();
    // Closed model, users in a 5 s think time: after Ctrl-C the journeys drain for up to
    // the ramp-down (6 s). The freeze is due 3 s in — inside that drain.
    let text = pause_scenario(server.port, &server.pidfile, "30s", "at = \"3s\"")
        .replace("ramp_down = \"1s\"", "ramp_down = \"6s\"");
    let text = text
        .replacen("model = \"open\"", "model = \"closed\"", 1)
        .replace("start_rate = \"20/s\"", "start_vus = 5")
        .replace("rate = \"20/s\"", "vus = 5")
        .replace("url = \"/\"\n", "url = \"/hello\"\nthink = \"5s\"\n")
        .replace(&format!("http://127.0.0.1:{}", server.port), &target.url());
    assert!(text.contains("think = \"5s\""), "{text}");
    let file = workspace.write("drill.toml", &text);
    let out = workspace.out();
    let started = Instant::now();
    let mut child = spawn(&file, &out);
    assert!(wait_for_run_dir(&out), "the run never started");
    // Readiness: every user has sent its first request and now thinks.
    assert!(
        eventually(Duration::from_secs(10), || target.seen().len() >= 5),
        "the users never sent their first requests"
    );
    signal(&child, Signal::SIGINT);
    let code = exit_code(&mut child, Duration::from_secs(20));
    let drained = started.elapsed();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("Ctrl-C then exit after {drained:?}");
    assert_eq!(code, Some(3), "interrupted: exit 3\n{stderr}");
    assert!(
        drained > Duration::from_secs(3),
        "the drain outlasted the fault's due time, so the test shows something: {drained:?}\n{stderr}"
    );
    assert_ne!(server.state(), 'T', "the server was never frozen");
    let run_dir = only_entry(&out);
    assert_eq!(ledger_lines(&run_dir), 0, "the ledger has no entry");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let occurrence = &summary["faults"]["occurrences"][0];
    assert_eq!(occurrence["status"], "not_run", "{summary:#}");
    let kinds: Vec<&str> = summary["faults"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["not_run"], "nothing started or was applied");
}

#[test]
fn sighup_from_a_closed_terminal_recovers_the_target_and_exits_3() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    let file = workspace.write(
        "drill.toml",
        &pause_scenario(server.port, &server.pidfile, "60s", "at = \"300ms\""),
    );
    let out = workspace.out();
    // loadgen on a pseudo-terminal of its own, as in an SSH session: a new session whose
    // controlling terminal is the pty. Closing the master hangs the terminal up: the kernel
    // sends SIGHUP, and every later write to it fails with EIO.
    let pty = nix::pty::openpty(None, None).expect("a pty");
    let tty = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut command = loadgen_command();
    command
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(tty())
        .stdout(tty())
        .stderr(tty());
    // openpty's descriptors are inherited: the child must not hold the master open, or
    // closing ours would hang nothing up.
    let master_fd = std::os::fd::AsRawFd::as_raw_fd(&pty.master);
    // SAFETY: between fork and exec only async-signal-safe calls (close, setsid, ioctl).
    unsafe {
        command.pre_exec(move || {
            nix::libc::close(master_fd);
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = KillOnDrop(command.spawn().expect("loadgen starts on the pty"));
    drop(pty.slave);
    // (What loadgen writes in its first second fits the pty's buffer: nothing reads it.)
    assert!(
        server.wait_for_state('T', Duration::from_secs(10)),
        "the freeze never happened"
    );
    // The hang-up: the master's last handle closed, as when sshd loses the connection.
    drop(pty.master);
    let mut child = child;
    let code = exit_code(&mut child.0, Duration::from_secs(20));
    assert!(
        server.wait_until_running(Duration::from_secs(2)),
        "the frozen server was resumed after the hang-up"
    );
    assert!(server.answers(Duration::from_secs(2)));
    assert_eq!(code, Some(3), "a hang-up interrupts the run: exit 3");
    let run_dir = only_entry(&out);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["ended_by"], "interrupted", "{summary:#}");
    assert_eq!(summary["faults"]["unrecovered"], serde_json::json!([]));
}

#[test]
fn a_second_ctrl_c_during_a_slow_recovery_exits_4_and_lists_what_is_still_applied() {
    let workspace = Workspace::new();
    let server = ServerProcess::start(workspace.dir.path());
    // A second target: a process the stack says is backend-1, whose restart (the undo of
    // killing it) takes 60 s — far past the scenario's 3 s backend deadline.
    let backend = KillOnDrop(
        std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap(),
    );
    let script = workspace.write("slow-stack.sh", "exec sleep 60\n");
    let state = stack_state(&workspace, &script, backend.0.id() as i32, 9);
    let text = pause_scenario(server.port, &server.pidfile, "60s", "at = \"200ms\"")
        + &format!(
            r#"[[fault]]
name = "kill backend"
action = "kill"
target = {{ process = "backend-1" }}
allow_last = true
at = "400ms"
duration = "50s"

[chaos]
stack_state = "{}"
backend_timeout = "3s"
"#,
            state.display()
        );
    let file = workspace.write("drill.toml", &text);
    let out = workspace.out();
    let mut child = spawn(&file, &out);
    assert!(server.wait_for_state('T', Duration::from_secs(10)));
    let backend_pid = backend.0.id() as i32;
    assert!(
        eventually(Duration::from_secs(10), || {
            process_state(backend_pid).is_none_or(|s| s == 'Z')
        }),
        "the backend was never killed"
    );
    // First Ctrl-C: recovery begins, last applied first — the slow restart.
    signal(&child, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(1300));
    let second = Instant::now();
    signal(&child, Signal::SIGINT);
    let code = exit_code(&mut child, Duration::from_secs(20));
    let waited = second.elapsed();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(code, Some(4), "{stderr}");
    // The restart in progress ran to its deadline (3 s from the first Ctrl-C), no longer.
    assert!(waited < Duration::from_secs(5), "{waited:?}\n{stderr}");
    // The pause's recovery had not begun: skipped, still applied, and said so.
    assert_eq!(server.state(), 'T', "the skipped recovery was not run");
    assert!(
        stderr.contains("freeze server") && stderr.contains("skipped by a second interrupt"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kill backend") && stderr.contains("3s"),
        "the restart that hit its deadline is named: {stderr}"
    );
    assert!(stderr.contains("loadgen recover"), "{stderr}");

    // The ledger kept both: a recover (with a restart that now works) puts them back.
    std::fs::write(&script, "exit 0\n").unwrap();
    let run_dir = only_entry(&out);
    let recovered = loadgen(&["recover", run_dir.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&recovered.stdout);
    assert_eq!(recovered.status.code(), Some(0), "{said}");
    assert!(said.contains("freeze server"), "{said}");
    assert!(server.wait_until_running(Duration::from_secs(2)));
}
