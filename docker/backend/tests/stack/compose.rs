//! The Docker Compose platform (docker/docker-compose.yml) on images built here without a
//! registry (docker/compose/local-images.sh + docker-compose.local.yml): it comes up
//! healthy, the smoke scenario passes through its nginx (and its Postgres fault proxy),
//! every request loadgen counted reached exactly one of the three backends, a latency fault
//! on the proxy slows a database read by at least its latency and clearing it restores
//! it, and `down -v` leaves nothing behind.
//!
//! Needs docker-compose and a reachable Docker daemon (`.ci/run` installs and starts
//! them); without them it fails and says so, as the container-fault tests do.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{
    curl, exclusive_blocking, fresh_debug_loadgen, loadgen, only_run, repo_root, summary,
};

const BACKENDS: [&str; 3] = ["backend-1", "backend-2", "backend-3"];
/// The container port of postgres-proxy's control API (its `loadgen.proxy.control` label).
const PROXY_CONTROL_PORT: &str = "9000";

/// Output of a finished command.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion or kills it after `limit` (its output goes through files, so a
/// chatty command cannot block on a full pipe).
pub fn run(mut cmd: Command, limit: Duration) -> Ran {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir();
    let tag = format!(
        "compose-cmd-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let (out_path, err_path) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {described}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {limit:?}: {described}]"));
    }
    Ran {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// Why the test cannot run here, if it cannot: no docker-compose, or no reachable daemon.
fn docker_unavailable() -> Option<String> {
    let compose = Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(compose, Ok(s) if s.success()) {
        return Some("docker-compose is not installed".into());
    }
    if Command::new("docker").arg("--version").output().is_err() {
        return Some("the docker CLI is not installed".into());
    }
    let mut info = Command::new("docker");
    info.args(["version", "--format", "{{.Server.Version}}"]);
    let info = run(info, Duration::from_secs(20));
    if !info.ok {
        return Some(format!(
            "the Docker daemon is not reachable: {}",
            info.stderr.trim()
        ));
    }
    None
}

/// One Compose project on locally built images; `Drop` takes it down and removes its
/// images, also when the test panics.
struct Project {
    name: String,
    tag: String,
    down: bool,
    /// Takes the project down if this process dies without running `Drop` (SIGKILL).
    watchdog: Option<std::process::Child>,
}

impl Project {
    fn new() -> Self {
        let pid = std::process::id();
        let mut project = Project {
            name: format!("loadgen-compose-{pid}"),
            tag: format!("compose-{pid}"),
            down: false,
            watchdog: None,
        };
        // A leftover of an earlier process with the same PID would clash.
        project.take_down();
        project.down = false;
        let docker = repo_root().join("docker");
        project.watchdog = Command::new("setsid")
            .args([
                "bash",
                "-c",
                r#"while [[ -e /proc/$1 ]]; do sleep 1; done
                   LOCAL_IMAGE_TAG=$3 docker-compose -f "$4/docker-compose.yml" \
                     -f "$4/compose/docker-compose.local.yml" -p "$2" down -v --remove-orphans -t 5
                   "$4/compose/local-images.sh" remove --tag "$3""#,
                "compose-watchdog",
                &pid.to_string(),
                &project.name,
                &project.tag,
                &docker.to_string_lossy(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        project
    }

    fn compose(&self, args: &[&str]) -> Command {
        let docker = repo_root().join("docker");
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f")
            .arg(docker.join("docker-compose.yml"))
            .arg("-f")
            .arg(docker.join("compose/docker-compose.local.yml"))
            .args(["-p", &self.name, "--ansi", "never"])
            .args(args)
            .env("LOCAL_IMAGE_TAG", &self.tag)
            // Docker picks the host ports; nothing fixed, whatever the caller's env says.
            .env_remove("PLATFORM_HTTP_PORT")
            .env_remove("PLATFORM_PROMETHEUS_PORT")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME");
        cmd
    }

    fn images(&self, action: &str, loadgen_bin: Option<&Path>) -> Ran {
        let mut cmd = Command::new(repo_root().join("docker/compose/local-images.sh"));
        cmd.args([action, "--tag", &self.tag])
            .args(["--backend-bin", env!("CARGO_BIN_EXE_platform-backend")]);
        if let Some(bin) = loadgen_bin {
            cmd.arg("--loadgen-bin").arg(bin);
        }
        run(cmd, Duration::from_secs(180))
    }

    /// The host address Docker published a service's container port on.
    fn port(&self, service: &str, port: &str) -> String {
        let ran = run(
            self.compose(&["port", service, port]),
            Duration::from_secs(30),
        );
        assert!(ran.ok, "compose port {service} {port}: {}", ran.stderr);
        let addr = ran.stdout.trim().to_string();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "{service}:{port} is published on loopback only: {addr:?}"
        );
        addr
    }

    /// GET on postgres-proxy's control API (published on loopback) -> its JSON answer.
    fn proxy_get(&self, path: &str) -> Value {
        let url = format!(
            "http://{}{path}",
            self.port("postgres-proxy", PROXY_CONTROL_PORT)
        );
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {url} failed");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {url}: {e}: {:?}", out.stdout))
    }

    fn logs(&self) -> String {
        let ran = run(
            self.compose(&["logs", "--no-color", "--tail", "30"]),
            Duration::from_secs(30),
        );
        format!("{}{}", ran.stdout, ran.stderr)
    }

    /// `docker-compose down -v --remove-orphans`; true if it succeeded.
    fn take_down(&mut self) -> bool {
        self.down = true;
        let ran = run(
            self.compose(&["down", "-v", "--remove-orphans", "-t", "10"]),
            Duration::from_secs(120),
        );
        if !ran.ok {
            eprintln!("compose down failed: {}", ran.stderr);
        }
        ran.ok
    }

    /// IDs of the project's leftover objects of one kind (container, network, volume).
    fn leftovers(&self, kind: &str) -> Vec<String> {
        leftovers(&self.name, kind)
    }

    /// Requests one backend has served so far (all routes but /metrics and /health/*), from
    /// its /metrics, read inside its container with busybox wget (no port is published).
    fn served(&self, backend: &str) -> u64 {
        let ran = run(
            self.compose(&[
                "exec",
                "-T",
                backend,
                "wget",
                "-q",
                "-O",
                "-",
                "http://127.0.0.1:8080/metrics",
            ]),
            Duration::from_secs(30),
        );
        assert!(ran.ok, "metrics of {backend}: {}", ran.stderr);
        let mut total = 0;
        for line in ran.stdout.lines() {
            if line.starts_with("lms_http_requests_total{")
                && !line.contains("/metrics")
                && !line.contains("/health")
            {
                total += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64;
            }
        }
        total
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if !self.down {
            self.take_down();
        }
        let ran = self.images("remove", None);
        if !ran.ok {
            eprintln!("removing the local images failed: {}", ran.stderr);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// IDs of a Compose project's leftover objects of one kind (container, network, volume).
pub fn leftovers(project: &str, kind: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut cmd = Command::new("docker");
    match kind {
        "container" => cmd.args(["ps", "-a", "-q", "--filter", &label]),
        _ => cmd.args([kind, "ls", "-q", "--filter", &label]),
    };
    let ran = run(cmd, Duration::from_secs(30));
    assert!(ran.ok, "listing {kind}s: {}", ran.stderr);
    ran.stdout.split_whitespace().map(String::from).collect()
}

fn http_ok(url: &str) -> bool {
    Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--max-time", "2", url])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_compose_platform_serves_smoke_survives_a_container_kill_and_leaves_nothing_behind() {
    // Like the container-fault tests, this one needs Docker: a silent skip would let CI
    // pass without ever bringing the stack up.
    if let Some(why) = docker_unavailable() {
        panic!(
            "the compose test needs Docker: {why} (bash .ci/run installs docker.io and docker-compose and starts dockerd)"
        );
    }
    // Not while other stack tests send load: this one starts seven more processes.
    let _g = exclusive_blocking();
    let started = Instant::now();
    let mut project = Project::new();

    let loadgen_bin = loadgen_binary();
    let built = project.images("build", Some(&loadgen_bin));
    assert!(built.ok, "local-images.sh build failed:\n{}", built.stderr);
    eprintln!("compose: images built after {:?}", started.elapsed());

    // `up` itself waits for the service_healthy conditions (Postgres, Redis, backends).
    let up = run(
        project.compose(&["up", "-d", "--no-build"]),
        Duration::from_secs(150),
    );
    assert!(
        up.ok,
        "compose up failed:\n{}\n{}",
        up.stderr,
        project.logs()
    );
    let port = run(
        project.compose(&["port", "nginx", "8080"]),
        Duration::from_secs(30),
    );
    assert!(port.ok, "compose port: {}", port.stderr);
    let addr = port.stdout.trim().to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "nginx is published on loopback only: {addr:?}"
    );
    let base_url = format!("http://{addr}");

    // Ready when nginx answers /health/ready through a backend (polled, no fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_ok(&format!("{base_url}/health/ready")) {
        assert!(
            Instant::now() < deadline,
            "{base_url}/health/ready not ready after 60s:\n{}",
            project.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("compose: {base_url} ready after {:?}", started.elapsed());
    tls_h2_and_gzip(&project);
    drill_over_tls(&project);

    let proxy_before = project.proxy_get("/stats");
    let before: Vec<u64> = BACKENDS.iter().map(|b| project.served(b)).collect();
    let out = std::env::temp_dir().join(format!("loadgen-compose-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let code = loadgen(&[
        "run",
        repo_root().join("scenarios/smoke.toml").to_str().unwrap(),
        "--target",
        &base_url,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let after: Vec<u64> = BACKENDS.iter().map(|b| project.served(b)).collect();
    let summary = summary(&only_run(&out));
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], 0, "{:#}", summary["totals"]);
    let requests = summary["totals"]["requests"].as_u64().unwrap();
    assert!(requests > 200, "{requests}");

    // Every request loadgen counted, the run's and verification's (which reads every
    // acknowledged write back, counted apart), reached exactly one backend (nginx retries
    // only after a failure, and there was none) ...
    assert_eq!(summary["verify"]["passed"], true, "{:#}", summary["verify"]);
    let verify_requests = summary["verify"]["requests"].as_u64().unwrap();
    let per_backend: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        per_backend.iter().sum::<u64>(),
        requests + verify_requests,
        "backends served {per_backend:?}, loadgen counted {requests} + {verify_requests} verifying"
    );
    // ... and nginx spread them over all three, each response naming its instance
    // (X-Instance passed through): loadgen's per-instance counts (the run's requests only)
    // are within the backends' own.
    let instances = summary["totals"]["instances"].as_object().unwrap();
    for (name, served) in BACKENDS.iter().zip(&per_backend) {
        let counted = instances.get(*name).and_then(Value::as_u64).unwrap_or(0);
        assert!(
            counted > 0 && counted <= *served,
            "X-Instance counts {instances:?} vs backend counters {per_backend:?}"
        );
    }
    let counted: u64 = instances.values().filter_map(Value::as_u64).sum();
    assert_eq!(counted, requests, "{instances:?}");
    assert_eq!(instances.len(), 3, "{instances:?}");

    // The backends reach Postgres only through postgres-proxy: each holds pooled
    // connections to it, and the smoke's queries went through it (a few health checks alone
    // send well under 10 kB).
    let proxy_after = project.proxy_get("/stats");
    let sent = |s: &Value| s["bytes_upstream"].as_u64().unwrap();
    assert!(
        proxy_after["active"].as_u64().unwrap() >= 3,
        "{proxy_after}"
    );
    assert!(
        sent(&proxy_after) >= sent(&proxy_before) + 10_000,
        "Postgres traffic through the proxy during smoke: {proxy_before} -> {proxy_after}"
    );
    assert_eq!(proxy_after["upstream_failures"], 0, "{proxy_after}");

    // Prometheus (published on loopback too) scrapes all three backends.
    let prometheus = run(
        project.compose(&["port", "prometheus", "9090"]),
        Duration::from_secs(30),
    );
    assert!(prometheus.ok, "compose port: {}", prometheus.stderr);
    let query = format!(
        "http://{}/api/v1/query?query=sum(up%7Bjob%3D%22platform-backend%22%7D)",
        prometheus.stdout.trim()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = Command::new("curl")
            .args(["-sf", "--max-time", "2", &query])
            .output()
            .unwrap()
            .stdout;
        let up = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(String::from)
        });
        if up.as_deref() == Some("3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not see 3 backends up: {}",
            String::from_utf8_lossy(&body)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "compose: smoke passed, {requests} requests served as {per_backend:?}, after {:?}",
        started.elapsed()
    );

    proxy_drill(&project, &base_url);
    drill(&project, &base_url, prometheus.stdout.trim());

    assert!(project.take_down(), "compose down failed");
    for kind in ["container", "network", "volume"] {
        let left = project.leftovers(kind);
        assert!(
            left.is_empty(),
            "{kind}s of {} left behind: {left:?}",
            project.name
        );
    }
    eprintln!("compose: down, nothing left, after {:?}", started.elapsed());

    // The nightly gate's script on the same images: two nights, each its own bring-up.
    crate::nightly::two_nights(&project.tag, &loadgen_bin);
    eprintln!("compose: two nightly runs after {:?}", started.elapsed());
}

/// nginx's TLS listener (8443, published on loopback) serves h2 under the certificate the
/// container made at its start, trusted through the CA read out of the container; its h2c
/// listener (8081) speaks HTTP/2 by prior knowledge; JSON comes back gzip when asked.
fn tls_h2_and_gzip(project: &Project) {
    let ca = run(
        project.compose(&["exec", "-T", "nginx", "cat", "/tmp/nginx/tls/ca.pem"]),
        Duration::from_secs(30),
    );
    assert!(
        ca.ok && ca.stdout.contains("BEGIN CERTIFICATE"),
        "the CA: {}",
        ca.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.stdout).unwrap();
    let ca_file = ca_file.to_str().unwrap();

    let https = format!("https://{}", project.port("nginx", "8443"));
    let ready = curl(&["--cacert", ca_file, &format!("{https}/health/ready")]);
    assert_eq!(
        (ready.status, ready.version.as_str()),
        (200, "2"),
        "{ready:?}"
    );
    assert!(ready.header("x-instance").is_some(), "{ready:?}");
    let untrusted = curl(&[&format!("{https}/nginx-health")]);
    assert_eq!(untrusted.exit, Some(60), "{untrusted:?}");

    let h2c = format!("http://{}", project.port("nginx", "8081"));
    let reply = curl(&["--http2-prior-knowledge", &format!("{h2c}/health/ready")]);
    assert_eq!(
        (reply.status, reply.version.as_str()),
        (200, "2"),
        "{reply:?}"
    );

    let courses = curl(&[
        "--cacert",
        ca_file,
        "-H",
        "Accept-Encoding: gzip",
        &format!("{https}/api/courses"),
    ]);
    assert_eq!(courses.status, 200, "{courses:?}");
    assert_eq!(
        courses.header("content-encoding"),
        Some("gzip"),
        "{courses:?}"
    );
    eprintln!("compose: TLS (h2), h2c and gzip answer");
}

/// A drill over TLS and HTTP/2 that is told nothing about the certificate: loadgen's Compose
/// platform reads the project's CA out of the container labelled `loadgen.ca`.
fn drill_over_tls(project: &Project) {
    let https = format!("https://{}", project.port("nginx", "8443"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tls.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "compose-tls"
[target]
base_url = "{https}"
[load]
model = "open"
start_rate = "20/s"
[[load.stage]]
duration = "3s"
rate = "20/s"
[[journey]]
name = "catalogue"
[[journey.step]]
name = "courses"
url = "/api/courses"
check = {{ header = {{ content-encoding = "gzip" }} }}
[chaos]
platform = "compose"
compose_project = "{project}"
"#,
            project = project.name
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let code = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let summary = summary(&only_run(&out));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], 0, "{:#}", summary["totals"]);
    assert_eq!(summary["protocol"], "h2", "ALPN agreed on h2");
    assert!(summary["totals"]["requests"].as_u64().unwrap() >= 50);
    eprintln!("compose: a drill over TLS + h2 trusted the project's CA through the adapter");
}

/// The loadgen binary the loadgen image gets (postgres-proxy runs it): the debug one
/// `cargo test --workspace` built beside the backend, when it is newer than loadgen's
/// sources; else a release build, as docker/local/stack.sh does.
fn loadgen_binary() -> PathBuf {
    if let Some(bin) = fresh_debug_loadgen() {
        return bin;
    }
    // target/debug/platform-backend -> target/
    let target = Path::new(env!("CARGO_BIN_EXE_platform-backend"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "loadgen",
            "--bin",
            "loadgen",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(repo_root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build --release -p loadgen failed");
    target.join("release/loadgen")
}

/// A latency fault on postgres-proxy, set by loadgen's Compose platform from the proxy's
/// labels (`{ proxy = "postgres" }`), while a database read runs at 20/s: its p50 rises by
/// at least the injected latency over the steady state (before and after the fault) and is
/// back near it after the fault is cleared; the proxy holds no fault afterwards.
fn proxy_drill(project: &Project, base_url: &str) {
    // What loadgen's Compose platform finds the proxy by.
    let labels = run(
        {
            let mut cmd = Command::new("docker");
            cmd.args([
                "inspect",
                "--format",
                "{{json .Config.Labels}}",
                &format!("{}_postgres-proxy_1", project.name),
            ]);
            cmd
        },
        Duration::from_secs(20),
    );
    assert!(labels.ok, "{}", labels.stderr);
    let labels: Value = serde_json::from_str(labels.stdout.trim()).unwrap();
    assert_eq!(labels["loadgen.proxy"], "postgres", "{labels}");
    assert_eq!(
        labels["loadgen.proxy.control"], PROXY_CONTROL_PORT,
        "{labels}"
    );
    assert_eq!(
        project.proxy_get("/fault"),
        Value::Null,
        "the proxy starts clean"
    );

    let dir = tempfile::Builder::new()
        .prefix("loadgen-compose-slow-db-")
        .tempdir()
        .unwrap();
    // GET /api/courses/{id} is one Postgres query on every request (no cache): with 150 ms
    // each way on the link, every read pays at least 300 ms.
    let scenario = dir.path().join("compose-slow-db.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "compose-slow-db"
seed = 7

[target]
base_url = "{base_url}"
connect_timeout = "2s"
request_timeout = "5s"

[load]
model = "open"
start_rate = "20/s"
max_in_flight = 200
[[load.stage]]
duration = "20s"
rate = "20/s"

[data.generator.course]
kind = "int"
min = 1
max = 20

[[journey]]
name = "read"
[[journey.step]]
name = "course"
url = "/api/courses/{{{{course}}}}"
expect = 200

[chaos]
platform = "compose"
compose_project = "{project}"
settle = "2s"

[[fault]]
name = "slow-db"
action = "latency"
latency = "150ms"
target = {{ proxy = "postgres" }}
at = "6s"
duration = "6s"

[[slo]]
name = "steady"
objective = "p50 < 100ms"
window = "steady"

[[slo]]
name = "during"
objective = "p50 >= 150ms"
window = "fault:slow-db"

[[slo]]
name = "after"
objective = "p50 < 100ms"
window = "after"
"#,
            project = project.name,
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let code = loadgen(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.is_dir(),
        "loadgen exited {code} before the run began (does it know [chaos] platform = \"compose\"?)"
    );
    let summary = summary(&only_run(&out));
    let kinds: Vec<&str> = summary["faults"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["started", "applied", "recovered", "ended"],
        "{:#}",
        summary["faults"]
    );
    assert_eq!(
        summary["faults"]["occurrences"][0]["status"], "happened",
        "{:#}",
        summary["faults"]
    );
    assert_eq!(summary["totals"]["errors"], 0, "slower is not broken");
    let p50 = |window: &str| -> u64 {
        let verdict = summary["slos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == window)
            .unwrap_or_else(|| panic!("no verdict {window}: {:#}", summary["slos"]));
        assert!(
            verdict["requests"].as_u64().unwrap() >= 60,
            "{window}: {verdict:#}"
        );
        verdict["measured"][0]["value"].as_f64().unwrap() as u64
    };
    let (steady, during, after) = (p50("steady"), p50("during"), p50("after"));
    eprintln!(
        "compose slow-db: p50 {steady} µs steady, {during} µs during 150 ms of latency, {after} µs after (p99 before {} µs)",
        summary["failover"][0]["p99_before_us"]
    );
    assert!(
        during >= steady + 150_000,
        "p50 steady {steady} µs, during {during} µs"
    );
    // Back near the steady state: far below the 300 ms a fault left in place would add.
    assert!(
        after < steady + 50_000,
        "p50 steady {steady} µs, after {after} µs"
    );
    assert_eq!(code, 0, "{:#}", summary["slos"]);
    assert_eq!(
        project.proxy_get("/fault"),
        Value::Null,
        "the fault is cleared"
    );
}

/// scenarios/compose-drill.toml against the project (its selectors narrowed to this project's
/// containers): backend-1's container is killed through the Docker Engine API and started
/// again, while nginx routes around it.
/// The stock Compose drill, scoped to this project, pushing its series into the project's
/// Prometheus by remote write (its receiver is on: a generator outside the project's
/// network is not scraped).
fn drill(project: &Project, base_url: &str, prometheus: &str) {
    let dir = tempfile::Builder::new()
        .prefix("loadgen-compose-drill-")
        .tempdir()
        .unwrap();
    // The stock drill finds containers by Compose labels, which would match any project on
    // this daemon: aim this copy at this test's project alone, by container name.
    let stock = std::fs::read_to_string(repo_root().join("scenarios/compose-drill.toml")).unwrap();
    let scoped = stock
        .replace(
            r#"target = { label = "com.docker.compose.service=backend-1" }"#,
            &format!(
                r#"target = {{ container = "{}_backend-1_1" }}"#,
                project.name
            ),
        )
        .replace(
            r#"among = { label = "platform.role=backend" }"#,
            &format!(r#"among = {{ container = "{}_backend-*" }}"#, project.name),
        )
        .replace(
            r#"file = "data/members.csv""#,
            &format!(
                r#"file = "{}""#,
                repo_root().join("scenarios/data/members.csv").display()
            ),
        );
    assert_eq!(
        scoped.matches(&project.name).count(),
        2,
        "the drill's selectors moved: update this test"
    );
    let scoped = format!(
        "{scoped}\n[output.prometheus]\nremote_write = \"http://{prometheus}/api/v1/write\"\n"
    );
    let scenario = dir.path().join("compose-drill.toml");
    std::fs::write(&scenario, &scoped).unwrap();
    let out = dir.path().join("out");
    let code = loadgen(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        base_url,
        "--duration",
        "24s",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let run_dir = only_run(&out);
    let summary = summary(&run_dir);
    // Remote write carried the final counts into the project's Prometheus.
    let pushed = std::fs::read_to_string(run_dir.join("remote_write.json")).unwrap();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let query = Command::new("curl")
        .args(["-sf", "--get", "--data-urlencode"])
        .arg(format!(
            "query=sum(loadgen_requests_total{{run_id=\"{run_id}\"}})"
        ))
        .arg(format!("http://{prometheus}/api/v1/query"))
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&query.stdout).unwrap_or(Value::Null);
    assert_eq!(
        answer["data"]["result"][0]["value"][1].as_str(),
        Some(summary["totals"]["requests"].to_string().as_str()),
        "{answer} {pushed}"
    );
    let events: Vec<(&str, &str)> = summary["faults"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        vec!["started", "applied", "recovered", "ended"],
        "{events:?}"
    );
    // The kill's window lasted until the container was running (and healthy) again.
    let occurrence = &summary["faults"]["occurrences"][0];
    assert_eq!(occurrence["status"], "happened", "{occurrence:#}");
    assert!(
        events[0]
            .1
            .contains(&format!("{}_backend-1_1", project.name)),
        "the kill hit this project's backend-1: {events:?}"
    );
    // nginx routed around the dead instance: the SLOs (≥ 99 % available during the kill,
    // back within 10 s) pass, and backend-1 answered (next to) nothing while it was down:
    // a response already on its way at the kill, or one right after `docker start`
    // returned and before the recover event was stamped, may fall inside the window.
    assert_eq!(code, 0, "{:#}", summary["slos"]);
    let failover = &summary["failover"][0];
    let during = |name: &str| failover["instances_during"][name].as_u64().unwrap_or(0);
    // The window lasts until Docker's healthcheck calls the started container healthy,
    // and nginx sends it traffic from `docker start` on: up to a few seconds of a 10 s
    // window. Its share stays far below the third it had before (a kill that never happened
    // would keep it there).
    assert!(
        during("backend-1") * 5 < during("backend-2").min(during("backend-3")),
        "{failover:#}"
    );
    // Seen from outside: the container runs again.
    let state = run(
        {
            let mut cmd = Command::new("docker");
            cmd.args([
                "inspect",
                "--format",
                "{{.State.Running}}",
                &format!("{}_backend-1_1", project.name),
            ]);
            cmd
        },
        Duration::from_secs(20),
    );
    assert_eq!(state.stdout.trim(), "true", "{}", state.stderr);
    eprintln!(
        "compose drill: {} of {} requests failed during the kill, instances during {}",
        failover["requests_failed"], summary["totals"]["requests"], failover["instances_during"]
    );
}

/// Replaces `${NAME}` placeholders like docker/local/stack.sh's `render`.
fn render(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut text = template.trim_end_matches('\n').to_string();
    for (name, value) in pairs {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    text + "\n"
}

/// The generated file minus its header: everything from the template's first line on.
fn body_of(generated: &str, template: &str) -> String {
    let first = template.lines().next().unwrap();
    let start = generated
        .find(first)
        .expect("the generated file contains the template");
    generated[start..].to_string()
}

#[test]
fn the_compose_configs_are_the_local_templates_rendered() {
    let root = repo_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();

    let template = read("docker/nginx/nginx.conf.template");
    let servers = BACKENDS
        .iter()
        .map(|b| format!("server {b}:8080 max_fails=2 fail_timeout=5s;"))
        .collect::<Vec<_>>()
        .join("\n        ");
    let expected = render(
        &template,
        &[
            ("NGINX_HTTPS_LISTEN", "8443"),
            ("NGINX_H2C_LISTEN", "8081"),
            ("NGINX_HTTP_LISTEN", "8080"),
            ("TLS_CERTIFICATE", "/tmp/nginx/tls/server.pem"),
            ("TLS_CERTIFICATE_KEY", "/tmp/nginx/tls/server.key"),
            ("UPSTREAM_SERVERS", &servers),
            ("RATE_LIMIT", "off"),
            ("ACCESS_LOG", "/dev/stdout upstream"),
        ],
    );
    assert_eq!(
        body_of(&read("docker/compose/nginx.conf"), &template),
        expected,
        "docker/compose/nginx.conf drifted from docker/nginx/nginx.conf.template"
    );

    let template = read("docker/prometheus/prometheus.yml.template");
    let expected = render(
        &template,
        &[
            (
                "BACKEND_TARGETS",
                "['backend-1:8080', 'backend-2:8080', 'backend-3:8080']",
            ),
            ("PROMETHEUS_SELF", "localhost:9090"),
            ("DRILL_SCRAPE_INTERVAL", "5s"),
            ("DRILL_SCRAPE_TIMEOUT", "4s"),
            ("LOADGEN_SD_FILES", "/etc/prometheus/loadgen/*.json"),
        ],
    );
    assert_eq!(
        body_of(&read("docker/compose/prometheus.yml"), &template),
        expected,
        "docker/compose/prometheus.yml drifted from docker/prometheus/prometheus.yml.template"
    );
}
