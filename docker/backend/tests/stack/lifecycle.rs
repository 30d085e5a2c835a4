//! The stack starts and stops cleanly twice in a row, `up` twice is harmless, and `down`
//! after a failed start leaves nothing running. These use their own state directories.

use std::path::Path;

use crate::fixture::{
    exclusive_blocking, pid_alive, port_listening, read_state, stack_sh, temp_state_dir,
};

/// (pid, port) of every process recorded in a state dir's run/ records.
fn recorded(dir: &Path) -> Vec<(String, i64, Option<u16>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("run")) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pid") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let pid: i64 = text.split_whitespace().next().unwrap().parse().unwrap();
            let port = std::fs::read_to_string(dir.join("run").join(format!("{name}.port")))
                .ok()
                .and_then(|p| p.trim().parse().ok());
            out.push((name, pid, port));
        }
    }
    out
}

fn assert_all_gone(dir: &Path, procs: &[(String, i64, Option<u16>)]) {
    for (name, pid, port) in procs {
        assert!(
            !pid_alive(*pid),
            "{name} (pid {pid}) still running after down"
        );
        if let Some(port) = port {
            assert!(
                !port_listening(*port),
                "{name}'s port {port} still open after down"
            );
        }
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Runs `down` on the test's own stack however the test ends.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        stack_sh(&["down", "--state-dir", &self.0], &[]);
    }
}

#[test]
fn up_down_twice_and_down_after_failed_up() {
    let _g = exclusive_blocking();
    let dir = temp_state_dir("lifecycle");
    let d = dir.to_string_lossy().to_string();
    let _down = Down(d.clone());

    for round in 1..=2 {
        let out = stack_sh(&["up", "--state-dir", &d, "--backends", "2"], &[]);
        assert!(
            out.status.success(),
            "round {round} up:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = read_state(&dir);
        assert_eq!(state["backends"].as_array().unwrap().len(), 2);
        // up again: reports it is running, changes nothing.
        let again = stack_sh(&["up", "--state-dir", &d, "--backends", "2"], &[]);
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));
        assert_eq!(read_state(&dir), state);
        let status = stack_sh(&["status", "--state-dir", &d], &[]);
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stdout)
        );

        let procs = recorded(&dir);
        assert!(procs.len() >= 6, "{procs:?}");
        let down = stack_sh(&["down", "--state-dir", &d], &[]);
        assert!(
            down.status.success(),
            "round {round} down:\n{}",
            String::from_utf8_lossy(&down.stderr)
        );
        assert_all_gone(&dir, &procs);
    }

    // A backend that refuses its configuration (exit 2) makes `up` fail half-way, with
    // Postgres and Redis already running; `down` must still clean everything.
    let out = stack_sh(&["up", "--state-dir", &d], &[("SEGMENT_BYTES", "lots")]);
    assert!(
        !out.status.success(),
        "up with a bad SEGMENT_BYTES must fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SEGMENT_BYTES"),
        "the error names the bad setting:\n{stderr}"
    );
    let procs = recorded(&dir);
    assert!(
        procs
            .iter()
            .any(|(n, p, _)| n == "postgres" && pid_alive(*p)),
        "{procs:?}"
    );
    let down = stack_sh(&["down", "--state-dir", &d], &[]);
    assert!(
        down.status.success(),
        "down after failed up:\n{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_all_gone(&dir, &procs);
    // down with nothing there is fine too.
    assert!(stack_sh(&["down", "--state-dir", &d], &[]).status.success());
}
