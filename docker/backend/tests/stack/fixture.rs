//! The shared stack: brought up once per test binary, brought down at process exit.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct Stack {
    pub state_dir: PathBuf,
    /// nginx's TLS listener (h2 and http/1.1 by ALPN), its certificate signed by `ca_file`.
    pub base_url: String,
    /// nginx's plain HTTP/1.1 listener: for clients that speak no TLS (reqwest here).
    pub http_url: String,
    /// nginx's cleartext HTTP/2 listener (prior knowledge).
    pub h2c_url: String,
    /// The throwaway CA the stack made at start.
    pub ca_file: PathBuf,
}

static STACK: OnceLock<Stack> = OnceLock::new();
static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();
static LOCK: RwLock<()> = RwLock::const_new(());

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn stack_script() -> PathBuf {
    repo_root().join("docker/local/stack.sh")
}

/// Runs stack.sh with the binaries cargo built for this test run (debug), so the tests
/// never wait for a release build.
pub fn stack_sh(args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(stack_script());
    cmd.args(args)
        .env(
            "PLATFORM_BACKEND_BIN",
            env!("CARGO_BIN_EXE_platform-backend"),
        )
        .env("STACK_READY_TIMEOUT", "90");
    // The Postgres fault proxy is `loadgen proxy`: use the debug loadgen that
    // `cargo test --workspace` built beside the backend, unless it is older than loadgen's
    // sources (`cargo test -p platform-backend` does not rebuild it); then stack.sh builds
    // a release one.
    if let Some(loadgen) = fresh_debug_loadgen() {
        cmd.env("LOADGEN_BIN", loadgen);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("running docker/local/stack.sh")
}

/// The debug loadgen binary `cargo test --workspace` built beside the backend, if it is
/// newer than every source of the loadgen package.
pub fn fresh_debug_loadgen() -> Option<PathBuf> {
    let loadgen = Path::new(env!("CARGO_BIN_EXE_platform-backend")).with_file_name("loadgen");
    is_fresh(&loadgen).then_some(loadgen)
}

/// Whether `binary` exists and is newer than every source of the loadgen package.
fn is_fresh(binary: &Path) -> bool {
    fn newest(path: &Path) -> std::time::SystemTime {
        let own = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let children = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| newest(&entry.path()));
        children.fold(own, std::cmp::max)
    }
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return false;
    };
    let root = repo_root();
    ["src", "Cargo.toml", "Cargo.lock"]
        .iter()
        .all(|source| newest(&root.join(source)) <= built)
}

/// Runs loadgen in-process (`loadgen ARGS…`) and returns its exit code. Its run registry
/// (runs with faults) is a temp dir of this test process, never ~/.local/state.
pub fn loadgen(args: &[&str]) -> u8 {
    static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();
    let state_dir = STATE_DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("loadgen-state-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep()
    });
    // Passed as a flag: this process's environment is never changed.
    let mut argv = vec!["loadgen", "--state-dir", state_dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    loadgen::api::cli::main_with_args(argv).code()
}

/// A run directory's summary.json. Each verdict's evidence is printed as it is read (seen
/// with `--nocapture`): what every stock objective rests on, run after run.
pub fn summary(run_dir: &Path) -> Value {
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    for verdict in summary["slos"].as_array().into_iter().flatten() {
        let e = &verdict["evidence"];
        eprintln!(
            "evidence: {} / {} [{}] {}: {} s, {} attempts, {} successful",
            summary["scenario"]["name"].as_str().unwrap_or_default(),
            verdict["name"].as_str().unwrap_or_default(),
            verdict["window"].as_str().unwrap_or_default(),
            verdict["status"].as_str().unwrap_or_default(),
            e["seconds"],
            e["attempts"],
            e["successes"]
        );
    }
    summary
}

/// The one run directory under a run's `--out`.
pub fn only_run(out: &Path) -> PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// A fresh state directory under the system temp dir, unique to this process.
pub fn temp_state_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("platform-stack-{tag}-{}", std::process::id()))
}

/// Tests that only send traffic share the stack.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    LOCK.read().await
}

/// Tests that restart or kill processes run alone.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOCK.write().await
}

/// [`exclusive`] for tests that are not async.
pub fn exclusive_blocking() -> RwLockWriteGuard<'static, ()> {
    LOCK.blocking_write()
}

extern "C" fn stop_shared_stack() {
    if let Some(dir) = SHARED_DIR.get() {
        let out = stack_sh(&["down", "--state-dir", &dir.to_string_lossy()], &[]);
        if !out.status.success() {
            eprintln!(
                "stack.sh down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The shared stack, started on first use.
pub fn stack() -> &'static Stack {
    STACK.get_or_init(|| {
        let dir = temp_state_dir("shared");
        // A failed first attempt (the closure panicked) leaves this set already.
        let first_attempt = SHARED_DIR.set(dir.clone()).is_ok();
        // Registered before `up`, so even a half-started stack is stopped at exit.
        // SAFETY: registers a plain extern "C" function with no captured state.
        if first_attempt {
            unsafe { libc::atexit(stop_shared_stack) };
        }
        let pid = std::process::id().to_string();
        let dir_s = dir.to_string_lossy().to_string();
        let out = stack_sh(&["up", "--state-dir", &dir_s, "--watch-pid", &pid], &[]);
        assert!(
            out.status.success(),
            "stack.sh up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = read_state(&dir);
        let url = |key: &str| {
            state[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} in state.json"))
                .to_string()
        };
        Stack {
            base_url: url("base_url"),
            http_url: url("http_url"),
            h2c_url: url("h2c_url"),
            ca_file: PathBuf::from(url("ca_file")),
            state_dir: dir,
        }
    })
}

pub fn read_state(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("state.json")).expect("reading state.json");
    serde_json::from_str(&text).expect("state.json is JSON")
}

impl Stack {
    pub fn state(&self) -> Value {
        read_state(&self.state_dir)
    }

    /// `path` on the plain HTTP/1.1 listener (what the reqwest client here speaks).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_url)
    }

    pub fn restart_backend(&self, name: &str) {
        let out = stack_sh(
            &[
                "restart-backend",
                name,
                "--state-dir",
                &self.state_dir.to_string_lossy(),
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "restart-backend {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A direct Postgres connection (bypassing the backends).
    pub async fn postgres(&self) -> tokio_postgres::Client {
        let url = self.state()["postgres"]["url"]
            .as_str()
            .expect("postgres url")
            .to_string();
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connecting to Postgres");
        tokio::spawn(conn);
        client
    }
}

/// What curl got back: status, protocol version ("1.1", "2"), headers (names in lower
/// case, in order) and the body as received (not decoded).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's exit code and message (e.g. 60 for an untrusted certificate).
    pub exit: Option<i32>,
    pub error: String,
}

impl Reply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request with curl (which speaks TLS, HTTP/2 and h2c here, and has a cookie jar):
/// `args` are curl's, the URL among them. Status 0 when no HTTP response came back.
pub fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "*", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{response_code} %{http_version}"])
        .args(args)
        .output()
        .expect("running curl");
    let written = String::from_utf8_lossy(&out.stdout).to_string();
    let mut fields = written.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = fields.next().unwrap_or("").to_string();
    let head = std::fs::read_to_string(&head).unwrap_or_default();
    // The last response's block (after any 1xx), without its status line.
    let block = head
        .trim_end()
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_string();
    let headers = block
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        version,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        exit: out.status.code(),
        error: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

pub fn http() -> reqwest::Client {
    // The workspace's reqwest has no provider of its own (loadgen hands its clients a
    // configuration on ring): this process's default is ring. Installed once; later calls
    // find it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A member created through the API: (id, bearer token).
pub async fn new_member(client: &reqwest::Client, name: &str) -> (i64, String) {
    let resp = client
        .post(stack().url("/api/members"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("create member");
    assert_eq!(resp.status(), 201, "create member");
    let body: Value = resp.json().await.expect("member JSON");
    (
        body["id"].as_i64().expect("id"),
        body["auth"]["token"].as_str().expect("token").to_string(),
    )
}

/// True if PID is a live process (zombies, which a non-reaping PID 1 leaves, count as dead).
pub fn pid_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

pub fn port_listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// One more backend instance (the binary cargo built for this test run) on the shared
/// stack's Postgres and Redis, beside the stack's own instances: not behind nginx, not in
/// state.json. For tests that need a backend configured differently, e.g. `LOSSY_WRITES`.
/// Killed when dropped.
pub struct ExtraBackend {
    child: Child,
    url: String,
    /// Its stderr, kept for failure messages and for tests that check what it logged.
    stderr: PathBuf,
    /// Held open: the backend must never find its stdout closed.
    _stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl ExtraBackend {
    /// Starts instance `name` with `env` on top of the stack's settings, and returns once it
    /// listens and answers `/health/ready`. Call it from the test's own thread: the
    /// instance is also killed when the thread that started it ends (so a test process
    /// killed outright leaves none behind), and the guard normally outlives that.
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> ExtraBackend {
        let state = stack().state();
        let dir = tempfile::Builder::new()
            .prefix(&format!("extra-backend-{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_platform-backend"));
        cmd.env("BACKEND_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", backend_database_url(&state))
            .env(
                "REDIS_URL",
                state["redis"]["url"].as_str().expect("redis url"),
            )
            .env("INSTANCE_NAME", name)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        // SAFETY: prctl(2) is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = cmd.spawn().expect("starting platform-backend");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut backend = match listening_on(&mut stdout) {
            Some(addr) => ExtraBackend {
                child,
                url: format!("http://{addr}"),
                stderr,
                _stdout: stdout,
                _dir: dir,
            },
            None => {
                let status = child.wait().unwrap();
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("backend {name} never listened ({status}); its stderr:\n{log}");
            }
        };
        backend.wait_ready(name);
        backend
    }

    /// Where it listens, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls `/health/ready` until it answers 200. Bounded, and it panics early when
    /// the process exits, so a broken start fails the test instead of hanging it.
    fn wait_ready(&mut self, name: &str) {
        let url = format!("{}/health/ready", self.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = curl(&["--max-time", "2", &url]);
            if reply.status == 200 {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("backend {name} exited ({status}):\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "backend {name} not ready after 30 s: {} {}\n{}",
                reply.status,
                String::from_utf8_lossy(&reply.body),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ExtraBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the backend's `listening on IP:PORT` line, or None if it exits first
/// (it gives up on its dependencies within 60 s, so this cannot block for ever).
fn listening_on(stdout: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            return Some(addr.to_string());
        }
    }
}

/// The Postgres URL the stack's own backends use: through the stack's fault proxy when it
/// has one, so a drill's faults on the database link reach an extra instance too.
fn backend_database_url(state: &Value) -> String {
    let direct = state["postgres"]["url"].as_str().expect("postgres url");
    let proxy = state["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "postgres")
        .and_then(|p| p["listen"].as_str());
    // postgres://user@HOST:PORT/db: swap HOST:PORT for the proxy's.
    match (proxy, direct.split_once('@')) {
        (Some(listen), Some((user, rest))) => {
            let db = rest.split_once('/').map_or("", |(_, db)| db);
            format!("{user}@{listen}/{db}")
        }
        _ => direct.to_string(),
    }
}
