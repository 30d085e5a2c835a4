//! A real HTTP server process (Python's http.server on port 0) for process faults, and the
//! drills that pause or kill it: the scenario, a long drill run by the real binary, a local
//! stack's state file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Workspace, eventually, http_answers, steady_get};

/// A process's state letter from /proc/PID/stat ('T' stopped, 'Z' a zombie), `None` when it
/// is gone. Read here, not through loadgen's own /proc reader, so a fault is checked by a
/// second witness.
pub fn process_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows the last.
    text.rsplit_once(") ")?.1.chars().next()
}

/// A real server process: `python3 -m http.server 0` with its PID in a file.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub pidfile: PathBuf,
}

impl ServerProcess {
    pub fn start(dir: &Path) -> ServerProcess {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // Readiness: the server prints its port once it is listening.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected http.server banner: {line}"));
        let pidfile = dir.join("server.pid");
        std::fs::write(&pidfile, child.id().to_string()).unwrap();
        ServerProcess {
            child,
            port,
            pidfile,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The process state letter: 'S'/'R' running, 'T' stopped; '?' when gone.
    pub fn state(&self) -> char {
        process_state(self.pid()).unwrap_or('?')
    }

    pub fn wait_for_state(&self, wanted: char, within: Duration) -> bool {
        eventually(within, || self.state() == wanted)
    }

    /// Running or sleeping: anything but stopped ('T') or gone.
    pub fn wait_until_running(&self, within: Duration) -> bool {
        eventually(within, || matches!(self.state(), 'S' | 'R'))
    }

    /// Whether an HTTP GET answers within `timeout`.
    pub fn answers(&self, timeout: Duration) -> bool {
        http_answers(self.port, timeout)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGCONT,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pause_scenario(port: u16, pidfile: &Path, run: &str, fault: &str) -> String {
    let load = steady_get(
        &format!("http://127.0.0.1:{port}"),
        "request_timeout = \"300ms\"\n",
        20,
        run,
        "/",
    );
    format!(
        r#"name = "pause-drill"
{load}[[fault]]
name = "freeze server"
action = "pause"
target = {{ pidfile = "{}" }}
allow_last = true
{fault}
"#,
        pidfile.display()
    )
}

/// Starts a 60 s drill (the real binary) writing to `out`, its run registry in
/// `state_dir`, and returns once the server is paused by it.
pub fn start_long_drill_in(
    workspace: &Workspace,
    server: &ServerProcess,
    out: &Path,
    state_dir: &Path,
) -> Child {
    let file = workspace.write(
        "long.toml",
        &pause_scenario(server.port, &server.pidfile, "60s", "at = \"500ms\""),
    );
    let child = crate::support::spawn_run_in(&file, out, state_dir);
    assert!(
        server.wait_for_state('T', Duration::from_secs(10)),
        "the pause never happened"
    );
    child
}

/// A local-stack state file whose one backend, `backend-1`, is process `pid` on `port`,
/// started again by `script`.
pub fn stack_state(workspace: &Workspace, script: &Path, pid: i32, port: u16) -> PathBuf {
    workspace.write(
        "state.json",
        &serde_json::json!({
            "version": 1,
            "state_dir": workspace.dir.path(),
            "stack_script": script,
            "backends": [{"name": "backend-1", "pid": pid, "port": port}]
        })
        .to_string(),
    )
}
