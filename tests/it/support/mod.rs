//! Shared helpers: scenario files in temp dirs, in-process runs, reading results.

pub mod bare_h2;
pub mod faulty;
pub mod nginx;
pub mod openmetrics;
pub mod process;
pub mod prometheus;
pub mod schema;
pub mod server;
pub mod timeline;
pub mod web;

use std::path::{Path, PathBuf};

use loadgen::api::record::Summary;
use loadgen::api::run::{self, RunOptions};

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("reports")
    }
}

/// Options for an in-process run. A run with faults registers itself in the test
/// process's own state directory, never ~/.local/state.
pub fn options(scenario: &Path, out: &Path) -> RunOptions {
    RunOptions {
        scenario: scenario.to_path_buf(),
        out: out.to_path_buf(),
        quiet: true,
        threads: Some(2),
        state_dir: Some(test_state_dir().to_path_buf()),
        ..RunOptions::default()
    }
}

/// Runs in-process and returns the run directory and its summary.json, read from disk.
pub fn run_ok(options: &RunOptions) -> (PathBuf, Summary) {
    let prepared = run::prepare(options).unwrap_or_else(|e| panic!("prepare failed: {e}"));
    let outcome = run::execute(prepared, options).unwrap_or_else(|e| panic!("run failed: {e}"));
    let text = std::fs::read_to_string(outcome.run_dir.join("summary.json")).unwrap();
    let summary: Summary = serde_json::from_str(&text).unwrap();
    (outcome.run_dir, summary)
}

/// Requests loadgen counted per "METHOD route" (route with ids as `{id}`), from the
/// scenario's own step definitions given as (step name, "METHOD route").
pub fn counted(
    summary: &Summary,
    routes: &[(&str, &str)],
) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for journey in &summary.journeys {
        for step in &journey.steps {
            let route = routes
                .iter()
                .find(|(name, _)| *name == step.name)
                .unwrap_or_else(|| panic!("no route given for step {}", step.name))
                .1;
            *counts.entry(route.to_string()).or_default() += step.requests;
        }
    }
    counts.retain(|_, v| *v > 0);
    counts
}

/// Whether `GET /` on 127.0.0.1:`port` answers 200 within `timeout` (a probe from outside).
pub fn http_answers(port: u16, timeout: std::time::Duration) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    stream.set_read_timeout(Some(timeout)).unwrap();
    let _ = stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut buffer = [0u8; 12];
    matches!(stream.read(&mut buffer), Ok(n) if n >= 12 && buffer.starts_with(b"HTTP/1.") && &buffer[9..12] == b"200")
}

/// Polls `probe` until it is true or `within` has passed.
pub fn eventually(within: std::time::Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if probe() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// The run registry's state directory of this test process: a temp dir of its own under
/// cargo's test temp dir, so no test ever writes to ~/.local/state. A test whose bare
/// `loadgen recover` must see only its own runs passes one of its own (`loadgen_in`).
pub fn test_state_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("state-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        // In-process runs get it in their options (`options`), the binary in its
        // environment (`loadgen_command`): this process's environment is never changed.
        dir
    })
}

/// The real loadgen binary as a command, with this test process's state directory.
pub fn loadgen_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.env("LOADGEN_STATE_DIR", test_state_dir());
    command
}

/// Runs the real loadgen binary to its end.
pub fn loadgen(args: &[&str]) -> std::process::Output {
    loadgen_command()
        .args(args)
        .output()
        .expect("the loadgen binary runs")
}

/// Runs `loadgen run FILE --out OUT --quiet` (the real binary) to its end.
pub fn run_binary(file: &Path, out: &Path) -> std::process::Output {
    loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
}

/// Starts `loadgen run FILE --out OUT --quiet` as a child process, so a test can signal it
/// or kill it mid-fault. Its output is piped.
pub fn spawn_run(file: &Path, out: &Path) -> std::process::Child {
    spawn_run_in(file, out, test_state_dir())
}

/// `spawn_run` with the run registry in `state_dir`.
pub fn spawn_run_in(file: &Path, out: &Path, state_dir: &Path) -> std::process::Child {
    loadgen_command()
        .env("LOADGEN_STATE_DIR", state_dir)
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the loadgen binary starts")
}

/// After a crash: `loadgen recover RUN_DIR` exits 0 and reports `fault` recovered; a
/// second call finds nothing left to do (recover is idempotent).
pub fn recover_twice(run_dir: &Path, fault: &str) {
    let output = loadgen(&["recover", run_dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("recovered: {fault}")), "{stdout}");
    let again = loadgen(&["recover", run_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to recover"));
}

/// The one entry of `dir` (an `--out` directory holds one run directory per run).
pub fn only_entry(dir: &Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

/// A child process (a `loadgen run` mid-fault) killed when the test ends, also on panic.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What every drill test's scenario shares: `base_url` and `target_lines` (each ending in a
/// newline) under `[target]`, an open model at `rate`/s for `run`, one journey that GETs
/// `path`. The caller adds the name and the faults.
pub fn steady_get(base_url: &str, target_lines: &str, rate: u32, run: &str, path: &str) -> String {
    format!(
        r#"[target]
base_url = "{base_url}"
{target_lines}[load]
model = "open"
start_rate = "{rate}/s"
ramp_down = "1s"
[[load.stage]]
duration = "{run}"
rate = "{rate}/s"
[[journey]]
name = "page"
[[journey.step]]
name = "get"
url = "{path}"
"#
    )
}

/// Runs `loadgen run FILE --out OUT --quiet` (the real binary) to its end and reads the run
/// directory it wrote: (exit code, run directory, summary.json).
pub fn binary_run(file: &Path, out: &Path) -> (Option<i32>, PathBuf, Summary) {
    let output = run_binary(file, out);
    let run_dir = only_entry(out);
    let text = std::fs::read_to_string(run_dir.join("summary.json")).unwrap_or_else(|e| {
        panic!(
            "no summary.json ({e}); loadgen said: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output.status.code(),
        run_dir,
        serde_json::from_str(&text).unwrap(),
    )
}

/// The JSON of a page's `<script type="application/json" id="ID">` data block (the numbers
/// behind report.html's and comparison.html's charts).
pub fn json_block(html: &str, id: &str) -> serde_json::Value {
    let open = format!(r#"<script type="application/json" id="{id}">"#);
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no {id} block in the page"))
        + open.len();
    let body = &html[start..];
    serde_json::from_str(&body[..body.find("</script>").expect("the block ends")]).unwrap()
}

/// Per second of the run: (second, requests, errors), from series.csv's "all" rows.
pub fn per_second(run_dir: &Path) -> Vec<(u64, u64, u64)> {
    let mut reader = csv::Reader::from_path(run_dir.join("series.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (second, scope, requests, errors) = (
        column("second"),
        column("scope"),
        column("requests"),
        column("errors"),
    );
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[scope] == "all")
        .map(|r| {
            (
                r[second].parse().unwrap(),
                r[requests].parse().unwrap(),
                r[errors].parse().unwrap(),
            )
        })
        .collect()
}

/// A runtime of `threads` workers for a test server, and a listener on 127.0.0.1:0 in it.
pub fn server_runtime(threads: usize) -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    (runtime, listener)
}

/// A TLS server configuration with a fresh self-signed certificate for 127.0.0.1, offering
/// `alpn`, and the certificate's PEM (what a scenario's `ca_file` trusts).
pub fn self_signed_tls(alpn: &[&[u8]]) -> (tokio_rustls::rustls::ServerConfig, String) {
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    tls_config(params, alpn)
}

/// A TLS server configuration presenting a certificate made from `params`, self-signed with
/// a fresh key, offering `alpn`; and the certificate's PEM.
pub fn tls_config(
    params: rcgen::CertificateParams,
    alpn: &[&[u8]],
) -> (tokio_rustls::rustls::ServerConfig, String) {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls::{ServerConfig, crypto::ring};
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key_pair).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pair.serialize_pem().as_bytes()).unwrap();
    let mut config =
        ServerConfig::builder_with_provider(std::sync::Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (config, cert.pem())
}
