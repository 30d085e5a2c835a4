//! One `loadgen run`: prepare (scenario → plan, overrides, allow-list) with no side effect,
//! then execute (pre-flight, engine, aggregation, outputs). Library code: the CLI and the
//! integration tests both call it in-process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chaos::ledger::Ledger;
use crate::chaos::runner::{
    ChaosReport, FaultEvent, Timeline, Verdict, preflight as preflight_faults,
};

use crate::engine::tls::TlsTarget;
use crate::engine::{ClientConfig, Engine};
use crate::metrics::Aggregator;
use crate::output::progress::Progress;
use crate::output::series::{SeriesWriter, write_totals};
use crate::output::summary::{self, EndReason, RunFacts, Summary};
use crate::output::{create_run_dir, write_atomic};
use crate::scenario::plan::BaseUrl;
use crate::scenario::{self, Plan, ScenarioError};
use crate::slo::live::AbortWatch;

/// Everything `loadgen run` can be told.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scenario: PathBuf,
    pub target: Option<String>,
    pub out: PathBuf,
    pub seed: Option<u64>,
    pub duration: Option<Duration>,
    pub threads: Option<usize>,
    pub quiet: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario or the flags are wrong; nothing was sent.
    #[error("{0}")]
    BadInput(String),
    /// The run could not start or finish: target unreachable, harness failure.
    #[error("{0}")]
    CouldNotRun(String),
}

/// A plan with every override applied and its target checked and resolved.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: Arc<Plan>,
    pub seed: u64,
    pub workers: usize,
    /// What the user must know before the first request (e.g. faults `--duration` cuts
    /// off, which will be `not_run`).
    pub warnings: Vec<String>,
}

pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub summary: Summary,
}

/// Loads the scenario and applies `--target`, `--seed`, `--duration`; checks the target
/// against the allow-list. Sends nothing.
pub fn prepare(options: &RunOptions) -> Result<Prepared, RunError> {
    let mut plan = scenario::load(&options.scenario).map_err(|e| match e {
        ScenarioError::Invalid(d) => RunError::BadInput(d.to_string()),
        other => RunError::BadInput(other.to_string()),
    })?;
    if let Some(target) = &options.target {
        plan.target.base =
            BaseUrl::parse(target).map_err(|e| RunError::BadInput(format!("--target: {e}")))?;
    }
    let mut warnings = Vec::new();
    if let Some(duration) = options.duration {
        if duration.is_zero() {
            return Err(RunError::BadInput(
                "--duration must be longer than zero".into(),
            ));
        }
        plan.load.model.truncate(duration);
        warnings.extend(cut_off_faults(&plan, duration));
    }
    let base = &plan.target.base;
    let address = plan
        .target
        .allow
        .resolve(&base.host, base.port)
        .map_err(RunError::BadInput)?;
    plan.target.base.resolved = Some(address);
    let seed = options.seed.unwrap_or(plan.seed);
    let workers = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    Ok(Prepared {
        plan: Arc::new(plan),
        seed,
        workers,
        warnings,
    })
}

/// The fault occurrences a `--duration` cut leaves past the end of the run: they will not
/// happen, and (unless the fault says `required = false`) that fails the run.
fn cut_off_faults(plan: &Plan, duration: Duration) -> Vec<String> {
    let end = plan.load.model.total_duration().min(duration);
    plan.chaos
        .faults
        .iter()
        .flat_map(|fault| {
            fault
                .occurrences()
                .into_iter()
                .enumerate()
                .filter(move |(_, (at, _))| *at >= end)
                .map(move |(occurrence, (at, _))| {
                    format!(
                        "--duration {:.1}s cuts off fault `{}` #{} (due at {:.1}s): it will not run, and the run fails with its windows `not_run` unless the fault says `required = false`",
                        end.as_secs_f64(),
                        fault.name,
                        occurrence + 1,
                        at.as_secs_f64()
                    )
                })
        })
        .collect()
}

/// Runs a prepared plan to the end (or to Ctrl-C / SIGTERM) and writes the run directory.
pub fn execute(prepared: Prepared, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::CouldNotRun(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(execute_async(prepared, options))
}

async fn execute_async(prepared: Prepared, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let plan = prepared.plan.clone();
    let target = &plan.target;
    let address = target.base.resolved.expect("prepare resolved the target");
    let client = ClientConfig {
        addr: address,
        host: http::HeaderValue::from_str(&target.base.authority()).map_err(|_| {
            RunError::BadInput(format!("`{}` is not a valid host", target.base.host))
        })?,
        connect_timeout: target.connect_timeout,
        request_timeout: target.request_timeout,
        max_body: target.max_body,
        tls: match target.base.tls {
            false => None,
            true => {
                // `ca_file` is written relative to the scenario file, like data files.
                let ca_file = target.ca_file.as_ref().map(|file| {
                    options
                        .scenario
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(file)
                });
                Some(
                    TlsTarget::new(&target.base.host, ca_file.as_deref())
                        .map_err(RunError::BadInput)?,
                )
            }
        },
    };
    preflight(&client, &target.base).await?;
    check_faults(&plan).await?;

    let started_wall = jiff::Timestamp::now();
    let run_dir = create_run_dir(&options.out, &plan.name, started_wall).map_err(|e| {
        RunError::CouldNotRun(format!(
            "cannot create the run directory under {}: {e}",
            options.out.display()
        ))
    })?;
    // The scenario as run, so the report can show it and be re-rendered later.
    let _ = std::fs::copy(&plan.source, run_dir.join("scenario.toml"));
    let mut series = SeriesWriter::create(&run_dir, SystemTime::now()).map_err(|e| {
        RunError::CouldNotRun(format!("cannot write to {}: {e}", run_dir.display()))
    })?;

    let planned = plan.load.model.total_duration();
    let mut progress = Progress::new(options.quiet, planned);
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let engine = Engine::start(
        plan.clone(),
        client,
        prepared.workers,
        prepared.seed,
        reports_tx,
    )
    .map_err(|e| RunError::CouldNotRun(format!("cannot start worker threads: {e}")))?;
    let start = engine.start;
    let stop = engine.stop.clone();
    let kill = engine.kill.clone();
    let chaos_stop = CancellationToken::new();
    let (live_tx, mut live_events) = mpsc::unbounded_channel::<FaultEvent>();
    let chaos = if plan.chaos.faults.is_empty() {
        None
    } else {
        let ledger = Ledger::create(&run_dir).map_err(|e| {
            RunError::CouldNotRun(format!(
                "cannot create the fault ledger in {}: {e}",
                run_dir.display()
            ))
        })?;
        let timeline = Timeline::new(Arc::new(plan.chaos.clone()), ledger, start, prepared.seed)
            .with_live_events(live_tx.clone());
        Some(tokio::spawn(timeline.run(chaos_stop.clone())))
    };

    let mut aggregator = Aggregator::new(prepared.workers, plan.step_count(), plan.journeys.len());
    let mut interrupted = false;
    let mut aborted: Option<String> = None;
    let mut abort_watch = AbortWatch::new(&plan.slos, &plan.step_names());
    let mut write_error: Option<std::io::Error> = None;
    let mut signals = Signals::new();
    loop {
        tokio::select! {
            report = reports.recv() => {
                let Some(report) = report else { break };
                for second in aggregator.accept(report) {
                    progress.second(&second, planned);
                    if aborted.is_none() && let Some(reason) = abort_watch.second(&second) {
                        progress.note(&format!("aborting: {reason}; recovering faults"));
                        aborted = Some(reason);
                        stop.cancel();
                    }
                    if let Err(e) = series.write_second(&second) {
                        write_error.get_or_insert(e);
                    }
                }
            }
            Some(event) = live_events.recv() => progress.note(&describe_event(&event)),
            signal = signals.next() => {
                if interrupted {
                    progress.note(&format!("{signal} again: abandoning requests in flight"));
                    kill.cancel();
                } else {
                    progress.note(&format!("{signal}: stopping; in-flight journeys get the ramp-down to finish (again to abandon them)"));
                    interrupted = true;
                    stop.cancel();
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let workers_ok = tokio::task::spawn_blocking(move || engine.join())
        .await
        .unwrap_or(false);
    // The run is over: every fault still applied is recovered now.
    chaos_stop.cancel();
    let faults = match chaos {
        Some(task) => task.await.unwrap_or_else(|e| ChaosReport {
            unrecovered: vec![format!(
                "the fault timeline failed ({e}); run `loadgen recover {}`",
                run_dir.display()
            )],
            ..ChaosReport::default()
        }),
        None => ChaosReport::default(),
    };
    // Recoveries at the run's end happen after the loop: show them too.
    while let Ok(event) = live_events.try_recv() {
        progress.note(&describe_event(&event));
    }
    for second in aggregator.flush() {
        if let Err(e) = series.write_second(&second) {
            write_error.get_or_insert(e);
        }
    }
    progress.finish();
    if let Err(e) = series
        .finish()
        .and_then(|_| write_totals(&run_dir, aggregator.totals(), elapsed))
    {
        write_error.get_or_insert(e);
    }

    let ended_by = if !workers_ok || !aggregator.all_finished() {
        EndReason::HarnessFailure
    } else if aborted.is_some() {
        EndReason::Aborted
    } else if interrupted {
        EndReason::Interrupted
    } else {
        EndReason::Plan
    };
    let mut summary = summary::build(
        RunFacts {
            plan: &plan,
            seed: prepared.seed,
            workers: prepared.workers,
            started_at: started_wall.to_string(),
            duration_s: elapsed.as_secs_f64(),
            ended_by,
            faults,
            aborted_because: aborted,
        },
        aggregator.totals(),
    );
    // Written first as it stands — `"judged": false`, no verdict, nothing passed — so a
    // run killed while it is judged leaves its figures and what to judge them against
    // (`loadgen report` finishes the job); rewritten whole once judged.
    let json = serde_json::to_vec_pretty(&summary).expect("a summary always serializes");
    if let Err(e) = write_atomic(&run_dir.join("summary.json"), &json) {
        write_error.get_or_insert(e);
    }
    pause_before_judging();
    if write_error.is_none()
        && let Err(e) = crate::report::finalize(&run_dir, &mut summary)
    {
        write_error.get_or_insert(std::io::Error::other(e));
    }
    if let Some(e) = write_error {
        return Err(RunError::CouldNotRun(format!(
            "writing the run's results in {} failed: {e}",
            run_dir.display()
        )));
    }
    if ended_by == EndReason::HarnessFailure {
        return Err(RunError::CouldNotRun(format!(
            "a worker thread failed; partial results (marked incomplete) are in {}",
            run_dir.display()
        )));
    }
    Ok(RunOutcome { run_dir, summary })
}

/// Tests only: `LOADGEN_TEST_PAUSE_BEFORE_JUDGING_MS` holds the run between the first
/// summary.json and judging, so a test can kill it exactly there.
fn pause_before_judging() {
    if let Some(ms) = std::env::var("LOADGEN_TEST_PAUSE_BEFORE_JUDGING_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn describe_event(event: &FaultEvent) -> String {
    format!(
        "fault {:>7.1}s {:<8} {} {}{}",
        event.offset_ms as f64 / 1000.0,
        event.kind,
        event.fault,
        event.target.as_deref().unwrap_or(""),
        event
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )
}

/// Resolves every fault's targets against the live environment before any traffic: a fault
/// its guardrails refuse (e.g. one that would take down every replica) stops the run here.
async fn check_faults(plan: &Plan) -> Result<(), RunError> {
    if plan.chaos.faults.is_empty() {
        return Ok(());
    }
    let refusals: Vec<String> = preflight_faults(&plan.chaos)
        .await
        .into_iter()
        .filter_map(|line| match line.verdict {
            Verdict::Refused(message) => Some(format!("fault `{}`: {message}", line.fault)),
            _ => None,
        })
        .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(RunError::BadInput(format!(
            "refusing to start: {}\n(nothing was sent; see `loadgen run --dry-run`)",
            refusals.join("\n")
        )))
    }
}

/// Refuses to start against a target that does not accept connections: a run against
/// nothing would only measure refusals.
async fn preflight(client: &ClientConfig, base: &BaseUrl) -> Result<(), RunError> {
    client.probe().await.map_err(|why| {
        RunError::CouldNotRun(format!(
            "target {base} ({}) is unreachable: {why}; is the platform up{}?",
            client.addr,
            if client.tls.is_some() {
                ", and does its certificate match the host and a trusted CA (ca_file)"
            } else {
                ""
            }
        ))
    })
}

/// Ctrl-C and SIGTERM as one stream of names.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok(),
        }
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupt",
                _ = terminate => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}
