//! Command-line interface: flags parsed by clap into options, each command run through the
//! library, every outcome mapped to a documented exit code (see `exit`).

pub mod ci;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::chaos::proxy::daemon::{self, DaemonOptions};
use crate::chaos::registry::Registry;
use crate::judge::exit;
use crate::output::{table, verdict_lines};
use crate::run::{self, RunError, RunOptions};
use crate::scenario::{self, ScenarioError, describe::describe};
use crate::util::text::{say, warn};
use crate::util::units::format_duration;
use crate::util::units::parse_duration;

const EXAMPLES: &str = "\
Examples:
  loadgen validate scenarios/smoke.toml
  loadgen plan scenarios/peak.toml
  loadgen run scenarios/peak.toml --target http://127.0.0.1:8080
  LOADGEN_TARGET=http://127.0.0.1:8080 loadgen run scenarios/smoke.toml --duration 10s --seed 7

Exit codes (the highest that applies wins: 4, 3, 1, 0; README.md has the whole table):
  0  the drill passed: every verdict judged and passed, every planned fault happened and
     its target was healthy again, every acknowledged write read back, the baseline gate
     (if any) passed; a run without objectives: its load delivered, a request succeeded
  1  the drill failed: a verdict failed (load_not_delivered, no_successful_response, a
     disallowed no_data among them), a fault did not happen or its target was not healthy
     again, an acknowledged write missing or changed, an abort objective fired, or the
     baseline gate
  2  bad input (scenario, flags, policy, a guardrail at pre-flight, an empty load plan, a
     baseline of another schema); nothing was sent, no run directory written
  3  the run could not complete: target unreachable or its certificate refused,
     interrupted, loadgen killed (judged later by `loadgen report`), its own accounting
     unbalanced, harness failure
  4  a fault could not be recovered: a human must act (the message says what to undo;
     then `loadgen recover`)";

#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about = "Load-and-chaos drills with honest latency", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The operator policy a scenario may only narrow (default: LOADGEN_POLICY, else
    /// /etc/loadgen/policy.toml when it exists).
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    /// Where the run registry lists runs that may still have a fault applied, for a bare
    /// `loadgen recover` (default: LOADGEN_STATE_DIR, else $XDG_STATE_HOME/loadgen, else
    /// ~/.local/state/loadgen).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario against its target and write a run directory.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        /// Parent directory of the run directory.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// No progress line and no table; print only the run directory (every failure
        /// reason and a generator warning still go to stderr).
        #[arg(long, short)]
        quiet: bool,
        /// Write the run directory's path to this file once the run is judged (so a CI
        /// step need not read it from stdout).
        #[arg(long)]
        run_dir_file: Option<PathBuf>,
        /// Compare the finished run with this earlier run directory (the nightly gate):
        /// exit 1 on a regression beyond tolerance. Repeat it for the last nights: each
        /// figure is then held to their envelope (docs/compare.md).
        #[arg(long)]
        baseline: Vec<PathBuf>,
        /// Accept a baseline of another scenario (refused otherwise: its figures measure
        /// something else).
        #[arg(long)]
        baseline_any_scenario: bool,
        #[command(flatten)]
        tolerances: ToleranceFlags,
        /// Resolve every fault's targets against the live environment, print what would be
        /// hit, and exit without sending traffic or touching anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare run directories: BASE… CURRENT (the last is the current run; several bases
    /// are held to as their envelope). Delivered share, error rate in points, percentiles
    /// with their intervals, each instance's share (docs/compare.md).
    Compare {
        #[arg(num_args = 2.., required = true, value_name = "BASE… CURRENT")]
        runs: Vec<PathBuf>,
        /// Where comparison.json and comparison.html go (default: the current run
        /// directory); created when missing.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare runs of different scenarios (refused otherwise).
        #[arg(long)]
        baseline_any_scenario: bool,
        #[command(flatten)]
        tolerances: ToleranceFlags,
    },
    /// Re-render summary.json, junit.xml and report.html from a run directory's saved data.
    Report { run_dir: PathBuf },
    /// Undo every fault a run's ledger does not show as recovered (after a crash).
    Recover {
        /// The run directory (default: every run in the run registry — LOADGEN_STATE_DIR, else
        /// $XDG_STATE_HOME/loadgen, else ~/.local/state/loadgen — and under reports/ with
        /// unrecovered faults).
        run_dir: Option<PathBuf>,
        /// How long each recovery may take, retries included, before it is listed as not
        /// recovered (default 30s, as a scenario's backend_timeout).
        #[arg(long, value_parser = duration_flag)]
        timeout: Option<Duration>,
    },
    /// Check a scenario and report every error; sends nothing.
    Validate { file: PathBuf },
    /// Run a TCP fault proxy in front of a service until SIGINT or SIGTERM. It starts clean;
    /// `{ proxy = … }` faults are set through its control API (GET/PUT/DELETE /fault,
    /// GET /stats). The local stack runs one in front of Postgres.
    Proxy {
        /// Where clients connect (loopback; port 0 picks a free one).
        #[arg(long)]
        listen: SocketAddr,
        /// The real service, HOST:PORT (allow-listed: loopback unless --allow-host).
        #[arg(long)]
        upstream: String,
        /// Where the control API listens (loopback). It has no authentication.
        #[arg(long, default_value = "127.0.0.1:0")]
        control: SocketAddr,
        /// Write the bound addresses here (JSON) once ready; removed on exit.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Another host or network the upstream may be on (repeatable); a host name is
        /// allowed by name, whatever it resolves to (e.g. a Compose service: postgres).
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        /// Let --listen and --control bind non-loopback addresses (0.0.0.0). Only for a proxy
        /// running inside a container's own network namespace: the container network is
        /// the boundary, and the host must publish the ports on 127.0.0.1 only (as
        /// docker/docker-compose.yml does). Never on a host's own network.
        #[arg(long)]
        container_network: bool,
    },
    /// Print the resolved plan: load over time, journey mix, steps. Sends nothing.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
}

/// When a change between two runs counts as a regression.
#[derive(Debug, clap::Args)]
struct ToleranceFlags {
    /// A latency percentile may grow by this much…
    #[arg(long, default_value = "25%", value_parser = percent_flag)]
    latency_tolerance: f64,
    /// …and must grow by more than this to count (noise floor).
    #[arg(long, default_value = "10ms", value_parser = duration_flag)]
    latency_floor: Duration,
    /// Throughput may drop by this much.
    #[arg(long, default_value = "10%", value_parser = percent_flag)]
    throughput_tolerance: f64,
    /// The error rate may grow by this many percentage points.
    #[arg(long, default_value = "0.5%", value_parser = percent_flag)]
    error_tolerance: f64,
    /// An instance's share of the responses may fall by this much of its baseline share.
    #[arg(long, default_value = "50%", value_parser = percent_flag)]
    instance_tolerance: f64,
}

impl ToleranceFlags {
    fn tolerances(&self) -> crate::compare::Tolerances {
        crate::compare::Tolerances {
            latency: self.latency_tolerance / 100.0,
            latency_floor_us: self.latency_floor.as_secs_f64() * 1e6,
            throughput: self.throughput_tolerance / 100.0,
            error_points: self.error_tolerance,
            instance_share: self.instance_tolerance / 100.0,
        }
    }
}

fn percent_flag(text: &str) -> Result<f64, String> {
    crate::util::units::parse_percent(text)
}

#[derive(Debug, clap::Args)]
struct Overrides {
    /// Base URL of the target, overriding the scenario's [target] base_url.
    #[arg(long, env = "LOADGEN_TARGET")]
    target: Option<String>,
    /// PEM certificates to trust for an https target (a staging CA), over the scenario's
    /// ca_file. Against the local stack its CA is found without it.
    #[arg(long, env = "LOADGEN_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Seed for every random choice (default: the scenario's, else random and reported).
    #[arg(long)]
    seed: Option<u64>,
    /// Cut the load plan at this duration ("30s", "2m"), for short runs.
    #[arg(long, value_parser = duration_flag)]
    duration: Option<Duration>,
}

fn duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Parses `args` and runs the command; returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
        }
    };
    match cli.command {
        Command::Validate { file } => validate(&file, cli.policy.as_deref()),
        Command::Plan { file, overrides } => plan(file, overrides, cli.policy),
        Command::Recover { run_dir, timeout } => recover_command(
            run_dir,
            timeout.unwrap_or(crate::plan::chaos::DEFAULT_BACKEND_TIMEOUT),
            cli.policy.as_deref(),
            &Registry::at(cli.state_dir.as_deref()),
        ),
        Command::Proxy {
            listen,
            upstream,
            control,
            ready_file,
            allow_hosts,
            container_network,
        } => proxy_command(DaemonOptions {
            listen,
            upstream,
            control,
            ready_file,
            allow_hosts,
            container_network,
        }),
        Command::Report { run_dir } => report_command(&run_dir),
        Command::Compare {
            mut runs,
            out,
            baseline_any_scenario,
            tolerances,
        } => {
            let current = runs.pop().expect("clap asks for at least two runs");
            compare_command(
                &runs,
                &current,
                out.as_deref(),
                Gate {
                    tolerances: tolerances.tolerances(),
                    any_scenario: baseline_any_scenario,
                },
                true,
            )
        }
        Command::Run {
            file,
            overrides,
            out,
            threads,
            quiet,
            run_dir_file,
            dry_run,
            baseline,
            baseline_any_scenario,
            tolerances,
        } => run_command(
            (!baseline.is_empty()).then(|| {
                (
                    baseline,
                    Gate {
                        tolerances: tolerances.tolerances(),
                        any_scenario: baseline_any_scenario,
                    },
                )
            }),
            dry_run,
            run_dir_file,
            RunOptions {
                scenario: file,
                policy: cli.policy,
                target: overrides.target,
                ca_file: overrides.ca_file,
                out,
                seed: overrides.seed,
                duration: overrides.duration,
                threads,
                quiet,
                state_dir: cli.state_dir,
            },
        ),
    }
}

fn validate(file: &std::path::Path, policy: Option<&std::path::Path>) -> u8 {
    let policy = match crate::policy::find(policy) {
        Ok(policy) => policy,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::BAD_INPUT;
        }
    };
    match scenario::load_with(file, policy.as_ref()) {
        Ok(plan) => {
            println!(
                "{}: ok ({} journeys, {} steps)",
                file.display(),
                plan.journeys.len(),
                plan.step_count()
            );
            exit::OK
        }
        Err(ScenarioError::Invalid(diagnostics)) => {
            eprintln!("{diagnostics}");
            exit::BAD_INPUT
        }
        Err(other) => {
            eprintln!("error: {other}");
            exit::BAD_INPUT
        }
    }
}

fn plan(file: PathBuf, overrides: Overrides, policy: Option<PathBuf>) -> u8 {
    let options = RunOptions {
        policy,
        scenario: file,
        target: overrides.target,
        seed: overrides.seed,
        duration: overrides.duration,
        ..RunOptions::default()
    };
    match run::prepare(&options) {
        Ok(prepared) => {
            print!("{}", describe(&prepared.plan, prepared.seed));
            exit::OK
        }
        Err(error) => report_error(error),
    }
}

/// How the baseline gate judges: its tolerances, and whether another scenario's run may
/// be a baseline.
#[derive(Debug, Clone, Copy)]
struct Gate {
    tolerances: crate::compare::Tolerances,
    any_scenario: bool,
}

fn run_command(
    baseline: Option<(Vec<PathBuf>, Gate)>,
    dry_run: bool,
    run_dir_file: Option<PathBuf>,
    options: RunOptions,
) -> u8 {
    let prepared = match run::prepare(&options) {
        Ok(prepared) => prepared,
        Err(error) => return report_error(error),
    };
    // A baseline that cannot be compared is bad input: refused before anything is sent.
    for base in baseline.iter().flat_map(|(bases, _)| bases) {
        let any = baseline.as_ref().is_some_and(|(_, gate)| gate.any_scenario);
        let valid = crate::compare::read_summary(base).and_then(|summary| {
            crate::compare::check_baseline(&summary, base, &prepared.plan.name, any)
        });
        if let Err(message) = valid {
            eprintln!("error: --baseline: {message}");
            return exit::BAD_INPUT;
        }
    }
    for warning in &prepared.warnings {
        eprintln!("warning: {warning}");
    }
    if dry_run {
        return dry_run_report(&prepared.plan);
    }
    // Everything from here on may run after the terminal went away (a hang-up mid-drill):
    // output is best effort (`say`, `warn`), never a panic.
    match run::execute(prepared, &options) {
        Ok(outcome) => {
            let summary = &outcome.summary;
            if let Some(file) = &run_dir_file
                && let Err(e) = crate::cli::ci::write_run_dir(file, &outcome.run_dir)
            {
                warn(&format!("error: --run-dir-file {}: {e}\n", file.display()));
            }
            if options.quiet {
                say(&format!("{}\n", outcome.run_dir.display()));
                // The table that would say it is not printed: said on stderr.
                if let Some(warning) = &summary.generator.warning {
                    warn(&format!("warning: {warning}\n"));
                }
            } else {
                say(&table::render(summary));
                say(&verdict_lines::render(summary));
                say(&format!("report: {}\n", outcome.run_dir.display()));
            }
            // The baseline gate only judges a run that completed and was judged.
            let gate = match &baseline {
                Some((bases, gate)) if summary.complete && summary.judged => {
                    compare_command(bases, &outcome.run_dir, None, *gate, !options.quiet)
                }
                _ => exit::OK,
            };
            // The gate's verdict joins the judged record: junit.xml and report.html are
            // written again with it (summary.json's verdicts do not change).
            let mut summary = outcome.summary;
            if baseline.is_some()
                && let Err(message) = crate::run::finalize(&outcome.run_dir, &mut summary)
            {
                warn(&format!("error: {message}\n"));
                return exit::COULD_NOT_RUN;
            }
            finish(&summary, &outcome.run_dir, gate)
        }
        Err(RunError::NotStarted { reason, run_dir }) => {
            // A run that could not start has a directory too (its record): said where a
            // CI step looks for it.
            if let Some(file) = &run_dir_file {
                let _ = crate::cli::ci::write_run_dir(file, &run_dir);
            }
            if options.quiet {
                say(&format!("{}\n", run_dir.display()));
            }
            report_error(RunError::NotStarted { reason, run_dir })
        }
        Err(error) => report_error(error),
    }
}

/// The exit code of a finished run (one function decides it: `exit::for_run`), with every
/// reason said on stderr. `gate`: the baseline comparison's own code.
fn finish(summary: &crate::record::summary::Summary, run_dir: &std::path::Path, gate: u8) -> u8 {
    use crate::cli::ci;
    let (code, mut reasons) = exit::for_run(summary, gate == exit::SLO_FAILED);
    // Each failing objective and each regressed row of the gate, a line each: what a CI log
    // (also under --quiet) needs to say why.
    reasons.extend(ci::failing_objectives(summary));
    let comparison = crate::compare::read_comparison(run_dir);
    if gate == exit::SLO_FAILED
        && let Some(comparison) = &comparison
    {
        reasons.extend(ci::regressed_rows(comparison));
    }
    for reason in &reasons {
        warn(&format!("error: {reason}\n"));
    }
    let final_code = if code == exit::OK { gate } else { code };
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        say(&ci::annotations(&reasons));
    }
    let markdown = ci::markdown(summary, run_dir, final_code, &reasons, comparison.as_ref());
    if let Err(e) = ci::append_step_summary(&markdown) {
        warn(&format!("warning: GITHUB_STEP_SUMMARY: {e}\n"));
    }
    if code == exit::FAULT_NOT_RECOVERED {
        warn(&format!(
            "then run `loadgen recover {}`\n",
            run_dir.display()
        ));
    }
    // A comparison that could not be made (unreadable, unwritable) outranks a pass.
    final_code
}

fn dry_run_report(plan: &crate::plan::Plan) -> u8 {
    use crate::chaos::runner::{Verdict, preflight};
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let lines = runtime.block_on(preflight(
        &plan.chaos,
        &mut crate::run::fault_backends(&plan.chaos),
    ));
    println!(
        "dry run of {}: {} fault(s); no traffic sent, nothing touched",
        plan.name,
        lines.len()
    );
    let mut bad = 0;
    for line in lines {
        let when: Vec<String> = line
            .occurrences
            .iter()
            .map(|(start, end)| match end {
                Some(end) => format!("{}–{}", format_duration(*start), format_duration(*end)),
                None => format!("at {}", format_duration(*start)),
            })
            .collect();
        println!(
            "fault `{}`: {} on {} [{}]",
            line.fault,
            line.action,
            line.selector,
            when.join(", ")
        );
        match line.verdict {
            Verdict::Hits { matched, hit } => {
                say(&format!("  matches: {}\n", matched.join(", ")));
                say(&format!("  would hit: {}\n", hit.join(", ")));
            }
            Verdict::Refused(message) => {
                bad += 1;
                say(&format!("  REFUSED: {message}\n"));
            }
            Verdict::Error(message) => {
                bad += 1;
                say(&format!("  ERROR: {message}\n"));
            }
        }
    }
    if bad > 0 { exit::BAD_INPUT } else { exit::OK }
}

/// A current-thread runtime for commands that only wait on a few sockets.
fn small_runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            exit::COULD_NOT_RUN
        })
}

fn proxy_command(options: DaemonOptions) -> u8 {
    let upstream = match daemon::check(&options) {
        Ok(upstream) => upstream,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return exit::BAD_INPUT;
        }
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(daemon::serve(options, upstream)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: proxy: {e}");
            exit::COULD_NOT_RUN
        }
    }
}

/// `loadgen recover [RUN_DIR]`: exit 0 when everything is recovered (or nothing was left),
/// 4 when anything may still be applied: an undo failed, or a ledger or the run registry
/// could not be read or written.
fn recover_command(
    run_dir: Option<PathBuf>,
    deadline: Duration,
    policy: Option<&std::path::Path>,
    registry: &Registry,
) -> u8 {
    use crate::chaos::recover::{find_runs, recover_run};
    // The policy bounds which stack script a ledger's restart may run.
    let dirs = match crate::policy::find(policy) {
        Ok(policy) => policy.and_then(|p| p.dirs()),
        Err(message) => {
            eprintln!("error: {message}");
            return exit::BAD_INPUT;
        }
    };
    let runs = match run_dir {
        Some(run_dir) => vec![run_dir],
        None => {
            let found = find_runs(std::path::Path::new("reports"), registry);
            let mut code = exit::OK;
            if let Some(e) = &found.registry_error {
                eprintln!(
                    "error: {e}; runs elsewhere may still have faults applied (then run `loadgen recover RUN_DIR`)"
                );
                code = exit::FAULT_NOT_RECOVERED;
            }
            for gone in &found.gone {
                println!(
                    "registered run {} no longer exists: removed from the registry",
                    gone.display()
                );
            }
            if found.runs.is_empty() {
                println!(
                    "nothing to recover: no registered run (state directory {}) and none under reports/ has unrecovered faults",
                    registry
                        .state_dir()
                        .map_or_else(|| "unset".to_string(), |d| d.display().to_string())
                );
                return code;
            }
            found.runs
        }
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let mut code = exit::OK;
    for run_dir in &runs {
        println!("recovering {}", run_dir.display());
        let recovery =
            crate::chaos::backends::Recovery::new(crate::platform::for_recovery(), dirs.clone());
        match runtime.block_on(recover_run(run_dir, deadline, &recovery, registry)) {
            Err(message) => {
                eprintln!("error: {message}");
                code = exit::FAULT_NOT_RECOVERED;
            }
            Ok(report) => {
                for line in &report.recovered {
                    say(&format!("recovered: {line}\n"));
                }
                for line in &report.failed {
                    warn(&format!("NOT recovered: {line}\n"));
                }
                if report.recovered.is_empty() && report.failed.is_empty() {
                    println!("nothing to recover in {}", run_dir.display());
                }
                if !report.failed.is_empty() {
                    code = exit::FAULT_NOT_RECOVERED;
                }
            }
        }
    }
    code
}

fn compare_command(
    bases: &[PathBuf],
    current: &std::path::Path,
    out: Option<&std::path::Path>,
    gate: Gate,
    show_table: bool,
) -> u8 {
    let current_summary = match crate::compare::read_summary(current) {
        Ok(summary) => summary,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::BAD_INPUT;
        }
    };
    let mut base_summaries = Vec::new();
    for base in bases {
        let valid = crate::compare::read_summary(base).and_then(|summary| {
            crate::compare::check_baseline(
                &summary,
                base,
                &current_summary.scenario.name,
                gate.any_scenario,
            )
            .map(|_| summary)
        });
        match valid {
            Ok(summary) => base_summaries.push(summary),
            Err(message) => {
                eprintln!("error: {message}");
                return exit::BAD_INPUT;
            }
        }
    }
    let base_figures: Vec<_> = base_summaries
        .iter()
        .zip(bases)
        .map(|(summary, dir)| crate::compare::figures::read(summary, dir))
        .collect();
    let current_figures = crate::compare::figures::read(&current_summary, current);
    let names: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
    let mut comparison = crate::compare::compare(
        &base_figures,
        &current_figures,
        &names.join(", "),
        &current.display().to_string(),
        gate.tolerances,
    );
    comparison.notes = crate::compare::notes(
        &base_summaries,
        &base_figures,
        &current_summary,
        &current_figures,
    );
    if show_table {
        print!("{}", crate::compare::table(&comparison));
    }
    // The spectrum chart draws the first baseline against the current run.
    let spectra = bases
        .first()
        .and_then(|base| crate::compare::spectra(base, current));
    if let Err(message) = crate::compare::write(out.unwrap_or(current), &comparison, spectra) {
        eprintln!("error: {message}");
        return exit::COULD_NOT_RUN;
    }
    if comparison.regressed {
        exit::SLO_FAILED
    } else {
        exit::OK
    }
}

fn report_command(run_dir: &std::path::Path) -> u8 {
    let killed = !run_dir.join("summary.json").exists()
        && run_dir.join(crate::record::run_plan::PLAN_FILE).exists();
    let read = if killed {
        // loadgen was killed before it wrote the summary: rebuilt from the run's files.
        crate::report::killed::rebuild(run_dir)
    } else {
        crate::compare::read_summary(run_dir)
    };
    let mut summary = match read {
        Ok(summary) => summary,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::BAD_INPUT;
        }
    };
    if killed {
        println!(
            "no summary.json: loadgen was killed before it wrote one; judging from plan.json, series.csv, the interval log and the fault ledger"
        );
    }
    // Judged again from the objectives the summary carries, never from earlier verdicts:
    // a run killed before it was judged gets its verdicts here.
    match crate::run::finalize(run_dir, &mut summary) {
        Ok(()) => {
            if killed {
                print!("{}", table::render(&summary));
            }
            print!("{}", verdict_lines::render(&summary));
            println!("rendered {}", run_dir.join("report.html").display());
            // The baseline gate the run was judged with is part of its record: its exit
            // code is the run's.
            let gate = match crate::compare::read_comparison(run_dir) {
                Some(comparison) if comparison.regressed => exit::SLO_FAILED,
                _ => exit::OK,
            };
            finish(&summary, run_dir, gate)
        }
        Err(message) => {
            eprintln!("error: {message}");
            exit::COULD_NOT_RUN
        }
    }
}

fn report_error(error: RunError) -> u8 {
    match error {
        RunError::BadInput(message) => {
            warn(&format!("{message}\n"));
            exit::BAD_INPUT
        }
        RunError::NotStarted { reason, run_dir } => {
            warn(&format!("error: {reason}\n"));
            warn(&format!(
                "its record (junit.xml, report.html): {}\n",
                run_dir.display()
            ));
            exit::COULD_NOT_RUN
        }
        RunError::CouldNotRun(message) => {
            warn(&format!("error: {message}\n"));
            exit::COULD_NOT_RUN
        }
    }
}
