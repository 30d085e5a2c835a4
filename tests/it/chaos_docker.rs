//! Container faults under a real Docker engine. No registry is reachable here, so the test
//! image is imported from Debian's busybox-static; dockerd is started if it is not running
//! (`.ci/run` starts and stops it around the suite).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loadgen::api::chaos::{EventKind, OccurrenceStatus};

use crate::support::timeline::{event_at, only_occurrence, run_offset_ms, run_watching};
use crate::support::{Workspace, eventually, http_answers, options, run_ok, steady_get};

const IMAGE: &str = "loadgen-test/busybox:latest";

fn docker(args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker client runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts dockerd once if needed and imports the busybox image.
fn ensure_engine() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if !engine_answers() {
            // Left running for the rest of the suite (and stopped by .ci/run): the engine is
            // shared by every container test.
            let daemon = Command::new("dockerd")
                .args(["--shutdown-timeout", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dockerd is installed (apt-get install docker.io)");
            std::mem::forget(daemon);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !engine_answers() {
                assert!(
                    Instant::now() < deadline,
                    "dockerd did not answer /_ping within 60 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !docker(&["image", "inspect", IMAGE]).0 {
            let root = tempfile::tempdir().unwrap();
            let bin = root.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::copy(busybox(), bin.join("busybox")).unwrap();
            for applet in ["sh", "httpd", "sleep"] {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
            std::fs::create_dir_all(root.path().join("www")).unwrap();
            std::fs::write(
                root.path().join("www/index.html"),
                "hello from a container\n",
            )
            .unwrap();
            let mut tar = Command::new("tar")
                .args(["-C", root.path().to_str().unwrap(), "-c", "."])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let status = Command::new("docker")
                .args(["import", "-", IMAGE])
                .stdin(tar.stdout.take().unwrap())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "docker import of busybox failed");
            assert!(tar.wait().unwrap().success());
        }
    });
}

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed")
}

/// A running container serving HTTP on a loopback port Docker picked; removed on drop.
struct Container {
    id: String,
    name: String,
    port: u16,
}

impl Container {
    fn start(name: &str) -> Container {
        Container::start_with(name, &[], &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"])
    }

    /// `docker run` with `options` before the image and `command` after it.
    fn start_with(name: &str, options: &[&str], command: &[&str]) -> Container {
        ensure_engine();
        let _ = docker(&["rm", "-f", name]);
        // A free host port found by binding port 0, then pinned: a port Docker picked itself
        // may change when the container restarts.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let publish = format!("127.0.0.1:{free}:8080");
        let mut args = vec!["run", "-d", "--init", "--name", name, "-p", &publish];
        args.extend_from_slice(options);
        args.push(IMAGE);
        args.extend_from_slice(command);
        let (ok, out) = docker(&args);
        assert!(ok, "docker run failed: {out}");
        let id = out.lines().next().unwrap().to_string();
        let (_, port) = docker(&["port", &id, "8080/tcp"]);
        let port: u16 = port
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let container = Container {
            id,
            name: name.to_string(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !container.answers() {
            assert!(Instant::now() < deadline, "the container never served HTTP");
            std::thread::sleep(Duration::from_millis(50));
        }
        container
    }

    fn state(&self) -> String {
        docker(&["inspect", "--format", "{{.State.Status}}", &self.id]).1
    }

    fn wait_for_state(&self, wanted: &str, within: Duration) -> bool {
        eventually(within, || self.state() == wanted)
    }

    fn answers(&self) -> bool {
        http_answers(self.port, Duration::from_millis(500))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.id]);
    }
}

fn drill(port: u16, name: &str, action: &str, run: &str, timing: &str) -> String {
    let load = steady_get(
        &format!("http://127.0.0.1:{port}"),
        "request_timeout = \"300ms\"\n",
        20,
        run,
        "/index.html",
    );
    format!(
        r#"name = "container-drill"
{load}[[fault]]
name = "container fault"
action = "{action}"
target = {{ container = "{name}" }}
allow_last = true
{timing}
"#
    )
}

#[test]
fn pausing_a_container_fails_requests_then_unpauses() {
    let container = Container::start("loadgen-it-pause");
    let workspace = Workspace::new();
    let file = workspace.write(
        "d.toml",
        &drill(
            container.port,
            &container.name,
            "pause",
            "3s",
            "at = \"1s\"\nduration = \"1s\"",
        ),
    );
    let run_options = options(&file, &workspace.out());
    let runner = std::thread::spawn(move || run_ok(&run_options));
    assert!(
        container.wait_for_state("paused", Duration::from_secs(10)),
        "never paused: {}",
        container.state()
    );
    assert!(!container.answers(), "a paused container holds requests");
    assert!(
        container.wait_for_state("running", Duration::from_secs(10)),
        "never unpaused"
    );
    let (_, summary) = runner.join().unwrap();
    let kinds: Vec<&str> = summary
        .faults
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec!["started", "applied", "recovered", "ended"],
        "{:?}",
        summary.faults.events
    );
    assert!(
        summary
            .totals
            .errors_by_class
            .get("request_timeout")
            .copied()
            .unwrap_or(0)
            >= 10
    );
    assert!(container.answers());
}

#[test]
fn killing_a_container_refuses_connections_until_it_is_started_again() {
    let container = Container::start("loadgen-it-kill");
    let workspace = Workspace::new();
    let file = workspace.write(
        "d.toml",
        &drill(
            container.port,
            &container.name,
            "kill",
            "3s",
            "at = \"1s\"\nduration = \"1s\"",
        ),
    );
    let run_options = options(&file, &workspace.out());
    let runner = std::thread::spawn(move || run_ok(&run_options));
    assert!(
        container.wait_for_state("exited", Duration::from_secs(10)),
        "never killed: {}",
        container.state()
    );
    assert!(
        container.wait_for_state("running", Duration::from_secs(10)),
        "never started again"
    );
    let (_, summary) = runner.join().unwrap();
    let errors = &summary.totals.errors_by_class;
    // A killed container's published port refuses (or resets) connections.
    let failed: u64 = [
        "connect_refused",
        "reset",
        "connect_error",
        "request_timeout",
    ]
    .iter()
    .filter_map(|c| errors.get(*c))
    .sum();
    assert!(failed >= 5, "{errors:?}");
    assert!(summary.faults.unrecovered.is_empty());
}

#[test]
fn sigterm_mid_fault_unpauses_the_container() {
    let container = Container::start("loadgen-it-sigterm");
    let workspace = Workspace::new();
    let file = workspace.write(
        "d.toml",
        &drill(
            container.port,
            &container.name,
            "pause",
            "60s",
            "at = \"500ms\"",
        ),
    );
    let child = crate::support::spawn_run(&file, &workspace.out());
    assert!(container.wait_for_state("paused", Duration::from_secs(10)));
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
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
    assert_eq!(container.state(), "running");
    assert!(container.answers());
}

#[test]
fn a_restarted_container_is_in_its_fault_until_it_is_healthy_again() {
    // Serves two seconds after each start, and says so through its healthcheck: the
    // restart itself returns long before the container is of use again.
    let container = Container::start_with(
        "loadgen-it-restart",
        &[
            "--health-cmd",
            "/bin/busybox wget -q -O /dev/null http://127.0.0.1:8080/index.html",
            "--health-interval",
            "200ms",
            "--health-timeout",
            "1s",
            "--health-retries",
            "1000",
        ],
        &[
            "/bin/sh",
            "-c",
            "sleep 2; exec /bin/httpd -f -p 8080 -h /www",
        ],
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            docker(&[
                "inspect",
                "--format",
                "{{.State.Health.Status}}",
                &container.id,
            ])
            .1 == "healthy"
        }),
        "the healthcheck never passed"
    );
    let workspace = Workspace::new();
    let file = workspace.write(
        "d.toml",
        &drill(
            container.port,
            &container.name,
            "restart",
            "6s",
            "at = \"1s\"",
        ),
    );
    let (summary, down, back) = run_watching(&file, &workspace, Duration::from_secs(15), || {
        container.answers()
    });
    let (down, back) = (
        down.expect("never restarted"),
        back.expect("never served again"),
    );

    let occurrence = only_occurrence(&summary);
    assert_eq!(
        occurrence.status,
        OccurrenceStatus::Happened,
        "{occurrence:?}"
    );
    let applied = event_at(&summary, EventKind::Applied) as i64;
    let ended = occurrence.ended_ms.unwrap() as i64;
    let seen_back = run_offset_ms(&summary, back);
    eprintln!(
        "container restart: started {} ms, seen down {} ms, applied (restart returned) {applied} ms, seen serving {seen_back} ms, ended {ended} ms (ended − seen {} ms)",
        occurrence.started_ms.unwrap(),
        run_offset_ms(&summary, down),
        ended - seen_back
    );
    assert!(
        (ended - seen_back).abs() <= 1_000,
        "ended {ended} ms, seen serving again at {seen_back} ms"
    );
    assert!(
        ended - applied >= 1_500,
        "the two seconds to healthy are in the window: applied {applied}, ended {ended}"
    );
    let kinds: Vec<EventKind> = summary.faults.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::Started, EventKind::Applied, EventKind::Ended],
        "an instantaneous action has nothing to recover"
    );
}

#[test]
fn a_stopped_container_is_in_its_fault_until_it_runs_again() {
    let container = Container::start("loadgen-it-stop");
    let workspace = Workspace::new();
    let file = workspace.write(
        "d.toml",
        &drill(
            container.port,
            &container.name,
            "stop",
            "4s",
            "at = \"1s\"\nduration = \"1s\"",
        ),
    );
    let (summary, stopped, running) =
        run_watching(&file, &workspace, Duration::from_secs(15), || {
            container.state() == "running"
        });
    let (stopped, running) = (
        stopped.expect("never stopped"),
        running.expect("never ran again"),
    );

    let occurrence = only_occurrence(&summary);
    assert_eq!(
        occurrence.status,
        OccurrenceStatus::Happened,
        "{occurrence:?}"
    );
    let recovered = event_at(&summary, EventKind::Recovered) as i64;
    let ended = occurrence.ended_ms.unwrap() as i64;
    let seen_running = run_offset_ms(&summary, running);
    eprintln!(
        "container stop: applied {} ms, seen stopped {} ms, recovered {recovered} ms, seen running {seen_running} ms, ended {ended} ms (ended − seen {} ms)",
        occurrence.applied_ms.unwrap(),
        run_offset_ms(&summary, stopped),
        ended - seen_running
    );
    assert!(
        (ended - seen_running).abs() <= 1_000,
        "ended {ended} ms, seen running again at {seen_running} ms"
    );
    assert!(ended >= recovered);
}

/// A Docker socket in front of the real engine that relays everything until told to hang;
/// then it still accepts and reads, and never answers: a hung daemon.
struct HangingSocket {
    path: std::path::PathBuf,
    hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HangingSocket {
    fn start(dir: &std::path::Path) -> HangingSocket {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        fn pump(mut from: UnixStream, mut to: UnixStream, hang: std::sync::Arc<AtomicBool>) {
            use std::io::{Read, Write};
            let mut buffer = [0u8; 16 * 1024];
            loop {
                let read = match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                while hang.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
        let path = dir.join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let hang = std::sync::Arc::new(AtomicBool::new(false));
        let shared = hang.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    break;
                };
                let (to_engine, from_engine) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let (a, b) = (shared.clone(), shared.clone());
                std::thread::spawn(move || pump(to_engine, engine, a));
                std::thread::spawn(move || pump(from_engine, client, b));
            }
        });
        HangingSocket { path, hang }
    }
}

#[test]
fn a_docker_daemon_that_never_answers_recovery_gives_up_at_its_deadline_and_exits_4() {
    let container = Container::start("loadgen-it-hung-daemon");
    let workspace = Workspace::new();
    let socket = HangingSocket::start(workspace.dir.path());
    let text = drill(
        container.port,
        &container.name,
        "pause",
        "3s",
        "at = \"500ms\"\nduration = \"1500ms\"",
    ) + &format!(
        "[chaos]\ndocker_host = \"unix://{}\"\nbackend_timeout = \"2s\"\n",
        socket.path.display()
    );
    let file = workspace.write("hung.toml", &text);
    let started = Instant::now();
    let child = crate::support::spawn_run(&file, &workspace.out());
    assert!(
        container.wait_for_state("paused", Duration::from_secs(10)),
        "never paused: {}",
        container.state()
    );
    // The daemon hangs between the pause and its undo.
    socket
        .hang
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let output = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(container.state(), "paused", "nothing reached the engine");
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("container fault") && stderr.contains("no answer within 2s"),
        "the fault and its deadline are named: {stderr}"
    );
    // The recovery is due at 2 s; it gives up 2 s later; the run ends with its plan.
    assert!(took < Duration::from_secs(12), "{took:?}\n{stderr}");
    let run_dir = crate::support::only_entry(&workspace.out());
    let ledger = std::fs::read_to_string(run_dir.join("faults.ledger.jsonl")).unwrap();
    assert!(
        ledger.contains("recover_failed"),
        "the ledger says so: {ledger}"
    );

    // `loadgen recover --timeout` bounds each recovery too: still hanging, it gives up
    // after 1 s and says so (exit 4); once the daemon answers, recovery succeeds and the
    // container runs again.
    let recover = |timeout: &str| {
        let started = Instant::now();
        let output = crate::support::loadgen_command()
            .args(["recover", run_dir.to_str().unwrap(), "--timeout", timeout])
            .output()
            .unwrap();
        (output, started.elapsed())
    };
    let (hung, took) = recover("1s");
    let said = String::from_utf8_lossy(&hung.stderr);
    assert_eq!(hung.status.code(), Some(4), "{said}");
    assert!(said.contains("no answer within 1s"), "{said}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(container.state(), "paused");
    socket
        .hang
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let (answered, _) = recover("10s");
    assert_eq!(
        answered.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(container.wait_for_state("running", Duration::from_secs(10)));
}

/// The loadgen rules in the network namespace of the container's first process, both
/// families (`nsenter -t PID -n iptables -S INPUT`).
fn rules_inside(container: &Container) -> Vec<String> {
    let (_, pid) = docker(&["inspect", "--format", "{{.State.Pid}}", &container.id]);
    let pid = pid.trim().to_string();
    ["iptables", "ip6tables"]
        .iter()
        .flat_map(|program| {
            let out = std::process::Command::new("nsenter")
                .args(["-t", &pid, "-n", program, "-w", "5", "-S", "INPUT"])
                .output()
                .expect("nsenter runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| line.contains("loadgen:"))
                .map(|line| format!("{program}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_reject_inside_a_containers_namespace_breaks_its_published_port_then_is_gone() {
    let container = Container::start("loadgen-it-netns");
    let workspace = Workspace::new();
    let scenario = drill(
        container.port,
        &container.name,
        "reject",
        "7s",
        "at = \"1500ms\"\nduration = \"2s\"",
    )
    .replace(
        &format!("target = {{ container = \"{}\" }}", container.name),
        &format!(
            "target = {{ container = \"{}\", port = 8080 }}",
            container.name
        ),
    );
    assert!(scenario.contains("port = 8080 }"), "{scenario}");
    let file = workspace.write("netns.toml", &scenario);
    let run_options = options(&file, &workspace.out());
    let runner = std::thread::spawn(move || run_ok(&run_options));
    // While it holds, the rule is inside the container, not on the host, and the
    // published port (through docker-proxy on 127.0.0.1) gets no answer.
    assert!(
        eventually(Duration::from_secs(10), || rules_inside(&container).len()
            == 2),
        "no rule appeared inside the container"
    );
    assert!(!container.answers(), "the published port still answers");
    let (run_dir, summary) = runner.join().unwrap();
    let kinds: Vec<&str> = summary
        .faults
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec!["started", "applied", "recovered", "ended"],
        "{:?}",
        summary.faults.events
    );
    assert_eq!(
        summary.faults.events[1].message, None,
        "applied and seen matching traffic: {:?}",
        summary.faults.events
    );
    assert!(
        summary.faults.events[0]
            .target
            .as_deref()
            .is_some_and(|t| t.contains(&format!("{}:8080", container.name))),
        "{:?}",
        summary.faults.events
    );
    assert!(summary.totals.errors >= 10, "{:?}", summary.totals);
    // After the fault (a second of margin) everything answers again, and nothing is left.
    let failover = &summary.failover[0];
    let (after_requests, after_errors) = crate::support::per_second(&run_dir)
        .into_iter()
        .filter(|(second, _, _)| second * 1000 >= failover.end_ms + 1000)
        .fold((0, 0), |(q, e), (_, requests, errors)| {
            (q + requests, e + errors)
        });
    assert!(after_requests >= 10, "{after_requests}");
    assert_eq!(after_errors, 0);
    assert_eq!(rules_inside(&container), Vec::<String>::new());
    assert!(container.answers());
}

#[test]
fn allow_targets_keep_faults_off_containers_they_do_not_name() {
    let container = Container::start("loadgen-it-allow");
    let workspace = Workspace::new();
    let with_allow = |patterns: &str| {
        drill(
            container.port,
            &container.name,
            "stop",
            "2s",
            "at = \"1s\"\nduration = \"1s\"",
        )
        .replace(
            "[[fault]]",
            &format!("[chaos]\nallow_targets = [{patterns}]\n[[fault]]"),
        )
    };
    let outside = workspace.write("outside.toml", &with_allow("\"loadgen-it-other-*\""));
    let dry = crate::support::loadgen(&["run", outside.to_str().unwrap(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("outside [chaos] allow_targets (loadgen-it-other-*): loadgen-it-allow"),
        "{stdout}"
    );
    // A real run is refused before any traffic, and the container is never touched.
    let run = crate::support::loadgen(&[
        "run",
        outside.to_str().unwrap(),
        "--out",
        workspace.out().to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(
        run.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(container.state(), "running");
    let inside = workspace.write("inside.toml", &with_allow("\"loadgen-it-*\""));
    let dry = crate::support::loadgen(&["run", inside.to_str().unwrap(), "--dry-run"]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
}
