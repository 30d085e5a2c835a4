//! platform-backend: the reference backend of the platform loadgen drills.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when a dependency stays
//! unreachable at start or the server fails, 2 when the configuration is bad.

#[cfg(feature = "lossy")]
use platform_backend::lossy;
use platform_backend::{app, db};

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use platform_backend::config::Config;

/// How long to keep retrying Postgres and Redis at start (they may start alongside us).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// In-flight requests get this long to finish after SIGTERM before we exit anyway.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("platform-backend: {e}");
            return ExitCode::from(2);
        }
    };
    // Before anything is connected: an unusable LOSSY_LOG is a configuration problem too.
    #[cfg(feature = "lossy")]
    if let Some(settings) = &config.lossy
        && let Err(e) = lossy::start(settings, &config.instance_name)
    {
        eprintln!("platform-backend: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("platform-backend: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("platform-backend: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let name = config.instance_name.clone();
    let pool = db::pool(&config.database_url, config.db_pool_size)?;
    retry("postgres schema", || db::migrate(&pool)).await?;
    let redis = retry("redis", || connect_redis(&config.redis_url)).await?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let state = Arc::new(app::AppState::new(config, pool, redis));
    let router = app::router(state.clone());

    // A launcher reads this line to learn the port when BACKEND_LISTEN ends in :0.
    println!("listening on {bound}");
    let _ = std::io::stdout().flush();
    eprintln!("platform-backend {name}: serving on {bound}");

    let shutdown = {
        let state = state.clone();
        async move {
            let signal = wait_for_signal().await;
            eprintln!("platform-backend {name}: {signal}, draining in-flight requests");
            state.draining.store(true, Ordering::Relaxed);
            // Bound the drain: a stuck client must not keep the process alive forever.
            tokio::spawn(async move {
                tokio::time::sleep(DRAIN_DEADLINE).await;
                eprintln!("platform-backend: drain deadline passed, exiting");
                std::process::exit(0);
            });
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    eprintln!("platform-backend: stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

async fn connect_redis(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| e.to_string())
}

/// Retries `attempt` with a capped backoff until it succeeds or the startup deadline passes.
async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() + delay < STARTUP_DEADLINE => {
                eprintln!("platform-backend: {what} not available yet ({e}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(format!(
                    "{what} unavailable after {STARTUP_DEADLINE:?}: {e}"
                ));
            }
        }
    }
}
