//! The engine: turns a `Plan` into traffic on worker threads and reports what happened to
//! the aggregator through a channel, one message per worker per second.

pub(crate) mod check;
pub(crate) mod cookies;
pub(crate) mod drive;
pub(crate) mod http;
pub(crate) mod iteration;
pub(crate) mod mix;
pub(crate) mod planned;
pub(crate) mod request;
pub(crate) mod tls;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use self::http::ClientConfig;
use self::iteration::SharedCounters;
use crate::metrics::WorkerReport;
use crate::plan::Plan;

/// A running engine: its worker threads and the tokens that stop them.
pub(crate) struct Engine {
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Stop starting new journeys; in-flight ones get the ramp-down to finish.
    pub stop: CancellationToken,
    /// Abandon in-flight journeys at once.
    pub kill: CancellationToken,
    pub start: Instant,
}

impl Engine {
    /// Starts `workers` threads. The run's clock starts a few milliseconds from now so every
    /// worker is ready before the first arrival is due.
    pub(crate) fn start(
        plan: Arc<Plan>,
        client: ClientConfig,
        workers: usize,
        seed: u64,
        reports: UnboundedSender<WorkerReport>,
    ) -> std::io::Result<Engine> {
        let workers = workers.max(1);
        let start = Instant::now() + Duration::from_millis(50);
        let stop = CancellationToken::new();
        let kill = CancellationToken::new();
        let shared = Arc::new(SharedCounters::new(&plan));
        let mut threads = Vec::with_capacity(workers);
        for index in 0..workers {
            threads.push(worker::spawn(worker::WorkerSetup {
                index,
                workers,
                plan: plan.clone(),
                client: client.clone(),
                shared: shared.clone(),
                seed,
                start,
                stop: stop.clone(),
                kill: kill.clone(),
                reports: reports.clone(),
            })?);
        }
        Ok(Engine {
            threads,
            stop,
            kill,
            start,
        })
    }

    /// Waits for every worker thread; `false` if one of them panicked.
    pub(crate) fn join(self) -> bool {
        self.threads.into_iter().all(|t| t.join().is_ok())
    }
}
