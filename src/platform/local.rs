//! The local stack adapter: its state file (written by `docker/local/stack.sh up`) says
//! which instances run where and which links go through a fault proxy, so process faults
//! find their targets and restart them, and `{ proxy = … }` faults find their proxies.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ProxyLink;
use crate::chaos::ports::{BackendName, Restart};

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StackState {
    pub state_dir: PathBuf,
    #[serde(default)]
    pub stack_script: Option<PathBuf>,
    #[serde(default)]
    pub backends: Vec<Instance>,
    #[serde(default)]
    pub nginx: Option<Instance>,
    #[serde(default)]
    pub postgres: Option<Instance>,
    #[serde(default)]
    pub redis: Option<Instance>,
    #[serde(default)]
    pub prometheus: Option<Instance>,
    #[serde(default)]
    pub proxies: Vec<ProxyLink>,
    /// The https URL nginx serves the platform on, and the CA that signed its certificate
    /// (made fresh at each start).
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Instance {
    #[serde(default)]
    pub name: Option<String>,
    pub pid: i32,
    #[serde(default)]
    pub port: Option<u16>,
}

impl StackState {
    pub(crate) fn load(path: &Path) -> Result<StackState, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the stack state file {}: {e} (is the local stack up?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a stack state file: {e}", path.display()))
    }

    /// Every named instance: the backends by their names, the services by theirs.
    pub(crate) fn instances(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    b.name
                        .clone()
                        .unwrap_or_else(|| format!("backend-{}", i + 1)),
                    b.pid,
                )
            })
            .collect();
        for (name, instance) in [
            ("nginx", &self.nginx),
            ("postgres", &self.postgres),
            ("redis", &self.redis),
            ("prometheus", &self.prometheus),
        ] {
            if let Some(instance) = instance {
                out.push((name.to_string(), instance.pid));
            }
        }
        out
    }

    /// The PID and port the state file gives instance `name` now.
    pub(crate) fn instance(&self, name: &str) -> Option<(i32, Option<u16>)> {
        let named = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let n = b
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("backend-{}", i + 1));
                (n, b)
            })
            .chain(
                [
                    ("nginx", &self.nginx),
                    ("postgres", &self.postgres),
                    ("redis", &self.redis),
                    ("prometheus", &self.prometheus),
                ]
                .into_iter()
                .filter_map(|(n, i)| i.as_ref().map(|i| (n.to_string(), i))),
            )
            .find(|(n, _)| n == name);
        named.map(|(_, i)| (i.pid, i.port))
    }

    /// The stack script that starts instances again: the one the state file names, else
    /// `docker/local/stack.sh` beside the state directory's parent (the repository).
    pub(crate) fn script(&self) -> PathBuf {
        self.stack_script.clone().unwrap_or_else(|| {
            self.state_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("docker/local/stack.sh")
        })
    }
}

/// Where the state file is: the scenario's `[chaos] stack_state`, else `LOADGEN_STACK_STATE`,
/// else `.stack/state.json` under the working directory.
pub(crate) fn state_path(configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LOADGEN_STACK_STATE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".stack/state.json"))
}

/// The CA of the local stack whose https URL is `target`, when that stack is up: the
/// platform adapter hands its certificate's CA to a drill against it, so no flag is needed.
pub(crate) fn ca_file_for(target: &str, configured: Option<&Path>) -> Option<PathBuf> {
    let state = StackState::load(&state_path(configured)).ok()?;
    let served = state.base_url.as_deref()?.trim_end_matches('/');
    (served == target.trim_end_matches('/'))
        .then_some(state.ca_file)
        .flatten()
}

/// How the stack starts instance `name` again, if it can: only its backends (`backend-N`,
/// the instances `stack.sh start-backend` starts).
pub(crate) fn restart_for(stack: &StackState, name: &str) -> Option<Restart> {
    stack.instance(name)?;
    let instance = BackendName::try_from(name.to_string()).ok()?;
    Some(Restart::Stack {
        script: stack.script(),
        state_dir: stack.state_dir.clone(),
        instance,
    })
}

/// `bash SCRIPT start-backend INSTANCE --state-dir STATE_DIR`. The stack script starts only
/// what is down, so running it again (at the run's end, then on every `loadgen recover`)
/// never restarts a running instance.
pub(crate) async fn start_backend(
    script: &Path,
    state_dir: &Path,
    instance: &BackendName,
) -> Result<(), String> {
    let output = tokio::process::Command::new("bash")
        .arg(script)
        .args(["start-backend", instance.as_str(), "--state-dir"])
        .arg(state_dir)
        // Its own process group: a second Ctrl-C at the terminal cannot kill a restart
        // half done; the deadline (`backends::within`) kills it on drop.
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} start-backend {}` failed: {}",
            script.display(),
            instance.as_str(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A run's metrics listener announced to the local stack's Prometheus: a `file_sd` file in
/// the stack's state directory (`prometheus/loadgen/<run>.json`, the glob its `loadgen` job
/// watches), removed when dropped — the run's end, after its linger.
#[derive(Debug)]
pub(crate) struct ScrapeAnnouncement {
    pub(crate) path: PathBuf,
}

impl Drop for ScrapeAnnouncement {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Announces `address` to the stack whose state file is at `configured` (else the default
/// place), when that stack is up and its Prometheus watches for runs; `None` otherwise.
pub(crate) fn announce_scrape(
    configured: Option<&Path>,
    run_id: &str,
    address: std::net::SocketAddr,
) -> Result<Option<ScrapeAnnouncement>, String> {
    let Ok(state) = StackState::load(&state_path(configured)) else {
        return Ok(None);
    };
    let dir = state.state_dir.join("prometheus/loadgen");
    if state.prometheus.is_none() || !dir.is_dir() {
        return Ok(None);
    }
    // Prometheus runs on this machine: an address bound to every interface is reached on
    // loopback.
    let mut reach = address;
    if reach.ip().is_unspecified() {
        reach.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = dir.join(format!("{run_id}.json"));
    let targets = serde_json::json!([{ "targets": [reach.to_string()] }]);
    crate::util::atomic::write_atomic(&path, targets.to_string().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Some(ScrapeAnnouncement { path }))
}

/// The URL of the local stack's Prometheus, from its state file.
pub(crate) fn prometheus_url(configured: Option<&Path>) -> Result<url::Url, String> {
    let path = state_path(configured);
    let state = StackState::load(&path)?;
    let port = state
        .prometheus
        .and_then(|p| p.port)
        .ok_or_else(|| format!("{} names no Prometheus", path.display()))?;
    url::Url::parse(&format!("http://127.0.0.1:{port}")).map_err(|e| e.to_string())
}
