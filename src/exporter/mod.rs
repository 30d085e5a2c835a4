//! Prometheus out: the run's counts as metric families, served on `/metrics` (OpenMetrics,
//! `--metrics-listen`, `[output.prometheus] listen`) while the run goes on and until its
//! verdicts are judged (then `--metrics-linger` more).
//!
//! Fed from the per-second aggregation — each final second as the supervisor writes it to
//! series.csv — and from the run's events (a fault's window opening and closing, the
//! verdicts), never from the request path: the workers do not know it exists. So the
//! counters at the end equal summary.json's, and they move a second at a time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod families;
mod openmetrics;
mod remote;
mod serve;
mod state;

pub(crate) use families::RunLabels;
pub(crate) use state::Exported;

/// The file in the run directory that names the listener's address.
pub(crate) const ADDR_FILE: &str = "metrics.addr";

/// The exporter of one run: its state, the listener serving it and the task pushing it.
pub(crate) struct Exporter {
    state: Arc<Mutex<Exported>>,
    server: Option<(SocketAddr, JoinHandle<()>)>,
    pusher: Option<remote::Pusher>,
}

impl Exporter {
    /// Binds the listener (before anything is sent, so a taken port refuses the run).
    pub(crate) async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(address).await
    }

    /// Starts serving the run's state on `listener` (writing its address to `metrics.addr`
    /// in the run directory) and pushing it to the plan's remote-write receiver.
    pub(crate) fn start(
        plan: &crate::plan::Plan,
        run_dir: &Path,
        listener: Option<TcpListener>,
    ) -> Result<Exporter, String> {
        let state = Arc::new(Mutex::new(Exported::of(plan)));
        let run = RunLabels {
            scenario: plan.name.clone(),
            run_id: run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let pusher = match &plan.output.prometheus.remote_write {
            Some(remote) => {
                let client = crate::engine::tls::control_plane(
                    None,
                    remote
                        .resolved
                        .map(|a| (remote.url.host_str().unwrap_or_default(), a)),
                    remote.interval.max(std::time::Duration::from_secs(5)),
                )?;
                Some(remote::Pusher::spawn(
                    state.clone(),
                    run.clone(),
                    remote,
                    client,
                ))
            }
            None => None,
        };
        let server = match listener {
            Some(listener) => {
                let address = listener.local_addr().map_err(|e| e.to_string())?;
                crate::util::atomic::write_atomic(
                    &run_dir.join(ADDR_FILE),
                    format!("{address}\n").as_bytes(),
                )
                .map_err(|e| format!("cannot write {ADDR_FILE}: {e}"))?;
                let registry = Arc::new(openmetrics::registry(state.clone(), run));
                Some((address, serve::spawn(listener, registry)))
            }
            None => None,
        };
        Ok(Exporter {
            state,
            server,
            pusher,
        })
    }

    /// After judging: the final values pushed (at most `remote::FINAL_PUSH`), what remote
    /// write did written to `remote_write.json`. The listener goes on serving.
    pub(crate) async fn finish_push(&mut self, run_dir: &Path) {
        if let Some(pusher) = self.pusher.as_mut() {
            pusher.finish(run_dir).await;
        }
    }

    /// The listener's address, when there is one.
    pub(crate) fn address(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|(address, _)| *address)
    }

    /// Changes the exported state (briefly under its lock).
    pub(crate) fn update(&self, change: impl FnOnce(&mut Exported)) {
        if let Ok(mut state) = self.state.lock() {
            change(&mut state);
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.server {
            task.abort();
        }
    }
}
