//! The stack starts and stops cleanly twice in a row, `up` twice is harmless, and `down`
//! after a failed start leaves nothing running. These use their own state directories.

use std::path::Path;

use crate::fixture::{
    curl, exclusive_blocking, pid_alive, port_listening, read_state, stack_sh, temp_state_dir,
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

/// With `--rate-limit`, one client's budget (100/min, a burst of 20) is spent on any of
/// nginx's three listeners and then refused (429) on all of them.
fn assert_rate_limited(state: &serde_json::Value) {
    let ca = state["ca_file"].as_str().unwrap();
    let h2c = format!("{}/health/live", state["h2c_url"].as_str().unwrap());
    let statuses: Vec<u16> = (0..25)
        .map(|_| curl(&["--http2-prior-knowledge", &h2c]).status)
        .collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (20..=22).contains(&allowed) && statuses.iter().all(|s| [200, 429].contains(s)),
        "a burst of 20 (plus what 100/min refills): {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let https = format!("{}/health/live", state["base_url"].as_str().unwrap());
    let http = format!("{}/health/live", state["http_url"].as_str().unwrap());
    assert_eq!(curl(&["--cacert", ca, &https]).status, 429);
    assert_eq!(curl(&[&http]).status, 429);
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
        // The second round with nginx's optional rate limit on.
        let mut up = vec!["up", "--state-dir", &d, "--backends", "2"];
        if round == 2 {
            up.push("--rate-limit");
        }
        let out = stack_sh(&up, &[]);
        assert!(
            out.status.success(),
            "round {round} up:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = read_state(&dir);
        assert_eq!(state["backends"].as_array().unwrap().len(), 2);
        // up again: reports it is running, changes nothing.
        let again = stack_sh(&up, &[]);
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));
        assert_eq!(read_state(&dir), state);
        let status = stack_sh(&["status", "--state-dir", &d], &[]);
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stdout)
        );

        if round == 2 {
            assert_rate_limited(&state);
            crate::population::population_passes_the_limiter(&state, &dir);
        }

        let procs = recorded(&dir);
        assert!(procs.len() >= 6, "{procs:?}");
        let down = stack_sh(&["down", "--state-dir", &d], &[]);
        assert!(
            down.status.success(),
            "round {round} down:\n{}",
            String::from_utf8_lossy(&down.stderr)
        );
        assert_all_gone(&dir, &procs);
        // nginx's h2c and HTTP/1.1 listeners have ports of their own.
        for key in ["h2c_port", "http_port"] {
            let port = state["nginx"][key].as_u64().unwrap() as u16;
            assert!(!port_listening(port), "nginx {key} {port} still open");
        }
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
