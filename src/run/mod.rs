//! One `loadgen run`. `prepare` (scenario → plan, overrides, allow-list) has no side
//! effect; `execute` hands the prepared plan to the supervisor (`supervisor.rs`), which takes
//! it through its phases: pre-flight, run, stop, recover, judge, write. `execute` is two
//! steps, `measure` (up to summary.json written `"judged": false`) and `Measured::judge`,
//! and a caller can take them one at a time. Library code: the CLI and the integration
//! tests both call it in-process.

mod checks;
mod server;
pub(crate) mod signals;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::plan::BaseUrl;
use crate::record::summary::Summary;
use crate::scenario::{self, Plan, ScenarioError};

/// Judges a run directory and writes its judged record: the verdicts into summary.json
/// (`"judged": true`), then junit.xml and report.html rendered from it. The end of
/// `loadgen run`, and all of `loadgen report RUN_DIR`.
pub(crate) fn finalize(run_dir: &std::path::Path, summary: &mut Summary) -> Result<(), String> {
    let judged = crate::judge::judge(run_dir, summary)?;
    let json = serde_json::to_vec_pretty(summary).map_err(|e| e.to_string())?;
    crate::util::atomic::write_atomic(&run_dir.join("summary.json"), &json)
        .map_err(|e| format!("writing summary.json: {e}"))?;
    crate::report::render(run_dir, summary, &judged)
}

/// The chaos backends for a plan, wired to the platform under test: the composition root's
/// one place where a platform adapter meets the chaos core (the run's timeline, its check
/// before traffic, and the dry run).
pub fn fault_backends(chaos: &crate::plan::chaos::ChaosPlan) -> crate::chaos::backends::Backends {
    crate::chaos::backends::Backends::new(chaos, &crate::platform::for_plan(chaos))
}

/// Everything `loadgen run` can be told.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scenario: PathBuf,
    /// `--policy`: the operator policy (else `LOADGEN_POLICY`, else /etc/loadgen/policy.toml).
    pub policy: Option<PathBuf>,
    pub target: Option<String>,
    /// `--ca-file` (or `LOADGEN_CA_FILE`): PEM certificates to trust for an https target.
    pub ca_file: Option<PathBuf>,
    pub out: PathBuf,
    pub seed: Option<u64>,
    pub duration: Option<Duration>,
    pub threads: Option<usize>,
    pub quiet: bool,
    /// `--state-dir`: the run registry's state directory (else the environment's).
    pub state_dir: Option<PathBuf>,
    /// `--metrics-listen`: serve `/metrics` here (over `[output.prometheus] listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `--metrics-linger`: serve the final values this long after the run is judged.
    pub metrics_linger: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario or the flags are wrong; nothing was sent.
    #[error("{0}")]
    BadInput(String),
    /// The run could not start or finish: target unreachable, harness failure.
    #[error("{0}")]
    CouldNotRun(String),
    /// The pre-flight stopped the run before anything was sent; `run_dir` holds its record
    /// (junit.xml with the reason, a report.html that says it did not run).
    #[error("{reason}")]
    NotStarted { reason: String, run_dir: PathBuf },
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

/// What a run leaves: its directory and its summary — the outcome record (end reason,
/// fault occurrences and what is still applied, generator health, verdicts) from which
/// `exit::for_run` derives the exit code, the report's badge and JUnit's outcome case.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub summary: Summary,
}

/// Loads the scenario and applies `--target`, `--seed`, `--duration`; checks the target
/// against the allow-list. Sends nothing.
pub fn prepare(options: &RunOptions) -> Result<Prepared, RunError> {
    let policy = crate::policy::find(options.policy.as_deref()).map_err(RunError::BadInput)?;
    let mut plan =
        scenario::load_with(&options.scenario, policy.as_ref()).map_err(|e| match e {
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
        if let Some(why) = crate::plan::schedule::starts_nothing(&plan.load.model) {
            return Err(RunError::BadInput(format!(
                "--duration {:.1}s: {why}",
                duration.as_secs_f64()
            )));
        }
        warnings.extend(cut_off_faults(&plan, duration));
    }
    let base = &plan.target.base;
    if let Some(why) = plan.target.protocol.mismatch(base.tls) {
        return Err(RunError::BadInput(format!("target {base}: protocol {why}")));
    }
    let address = allowed(&plan.target, &base.host, base.port).map_err(RunError::BadInput)?;
    if policy.is_none() {
        warnings.extend(widened(&plan));
    }
    if base.tls && !plan.target.tls_verify {
        warnings.push(crate::engine::tls::UNVERIFIED_NOTICE.to_string());
        if let Some(file) = &options.ca_file {
            warnings.push(format!(
                "--ca-file {} is not read: nothing is verified",
                file.display()
            ));
        }
    }
    plan.target.base.resolved = Some(address);
    if let Some(listen) = options.metrics_listen {
        plan.output.prometheus.listen = Some(listen);
    }
    warnings.extend(platform_prometheus(&mut plan));
    allow_monitoring(&mut plan)?;
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

/// `[prometheus]` without a `url` reads the platform's own: the local stack's, from its
/// state file. When there is none, the run goes on and says why nothing will be read.
fn platform_prometheus(plan: &mut Plan) -> Option<String> {
    let prometheus = plan.prometheus.as_mut()?;
    if prometheus.url.is_some() {
        return None;
    }
    if plan.chaos.platform != crate::plan::chaos::PlatformKind::Local {
        return Some(
            "[prometheus] has no `url` and only the local stack's Prometheus is found without one: the platform's metrics will not be read".into(),
        );
    }
    match crate::platform::local::prometheus_url(plan.chaos.stack_state.as_deref()) {
        Ok(url) => {
            prometheus.url = Some(url);
            None
        }
        Err(why) => Some(format!(
            "[prometheus] has no `url` and the local stack's Prometheus was not found ({why}): the platform's metrics will not be read"
        )),
    }
}

/// The monitoring hosts loadgen talks to besides the target — a remote-write receiver, the
/// platform's Prometheus — held to the allow-list and the policy as the target is, and
/// pinned to the address they were allowed at.
fn allow_monitoring(plan: &mut Plan) -> Result<(), RunError> {
    if let Some(url) = plan
        .output
        .prometheus
        .remote_write
        .as_ref()
        .map(|r| r.url.clone())
    {
        let address = allowed_host(plan, &url, "[output.prometheus] remote_write")?;
        if let Some(remote) = plan.output.prometheus.remote_write.as_mut() {
            remote.resolved = Some(address);
        }
    }
    if let Some(url) = plan.prometheus.as_ref().and_then(|p| p.url.clone()) {
        let address = allowed_host(plan, &url, "[prometheus] url")?;
        if let Some(prometheus) = plan.prometheus.as_mut() {
            prometheus.resolved = Some(address);
        }
    }
    Ok(())
}

/// Where `url`'s host may be reached, or why not.
fn allowed_host(plan: &Plan, url: &url::Url, what: &str) -> Result<std::net::SocketAddr, RunError> {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    allowed(&plan.target, host, port).map_err(|e| RunError::BadInput(format!("{what} {url}: {e}")))
}

/// The address `host:port` is reached at when the scenario's allow-list and the operator
/// policy's both allow it (the target and every other host loadgen sends to), else why not.
fn allowed(
    target: &crate::plan::TargetPlan,
    host: &str,
    port: u16,
) -> Result<std::net::SocketAddr, String> {
    let address = target.allow.resolve(host, port)?;
    if let Some((allow, at)) = &target.policy_allow {
        allow
            .resolve(host, port)
            .map_err(|e| format!("{e} — refused by the operator policy {at}"))?;
    }
    Ok(address)
}

/// Without an operator policy, what the scenario allows itself beyond the defaults
/// (loopback, no namespaces), said before the first request.
fn widened(plan: &Plan) -> Vec<String> {
    let mut notes = Vec::new();
    if !plan
        .target
        .allow
        .within(&crate::util::safety::AllowList::default())
    {
        let hosts: Vec<String> = plan
            .target
            .allow
            .entries()
            .iter()
            .map(|e| match e {
                crate::util::safety::AllowEntry::Net(n) => n.to_string(),
                crate::util::safety::AllowEntry::Host(h) => h.clone(),
            })
            .collect();
        notes.push(format!(
            "no operator policy: the scenario itself allows hosts {} (beyond loopback only)",
            hosts.join(", ")
        ));
    }
    if !plan.chaos.kube_namespaces.is_empty() {
        notes.push(format!(
            "no operator policy: the scenario itself lets faults touch Kubernetes namespaces {}",
            plan.chaos.kube_namespaces.join(", ")
        ));
    }
    notes
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

/// Runs a prepared plan to its end (or to a signal or an abort) and writes the run
/// directory: `measure`, then `Measured::judge`.
pub fn execute(prepared: Prepared, options: &RunOptions) -> Result<RunOutcome, RunError> {
    measure(prepared, options)?.judge()
}

/// The run up to judging: pre-flight, load, stop, recovery, verification, and summary.json
/// written `"judged": false` with the objectives (`slo_specs`), no verdicts and no
/// junit.xml or report.html yet. What a run killed while it is judged leaves, and what
/// `loadgen report` judges.
pub fn measure(prepared: Prepared, options: &RunOptions) -> Result<Measured, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::CouldNotRun(format!("cannot start the runtime: {e}")))?;
    let measured = runtime.block_on(supervisor::measure(prepared, options))?;
    Ok(Measured { measured, runtime })
}

/// A run measured and not judged yet (`measure`). A signal that arrives before `judge` is
/// answered by it (judging stops; summary.json stays unjudged). Dropped unjudged, its run
/// directory stays as `measure` left it, for `loadgen report` to judge.
pub struct Measured {
    measured: supervisor::Measured,
    runtime: tokio::runtime::Runtime,
}

impl Measured {
    pub fn run_dir(&self) -> &Path {
        self.measured.run_dir()
    }

    /// Judges the run and writes summary.json whole again, junit.xml and report.html.
    pub fn judge(self) -> Result<RunOutcome, RunError> {
        let Measured { measured, runtime } = self;
        runtime.block_on(measured.judge())
    }
}
