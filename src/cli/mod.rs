//! Command-line interface: flags parsed by clap into options, each command run through the
//! library, every outcome mapped to a documented exit code (`exit::ExitCode`). Here: the
//! flags and the dispatch; each command's body has a file of its own (`run.rs`,
//! `compare.rs`, …), beside its flags where it has many (`RunArgs`, `CompareArgs`,
//! `ProxyArgs`).

pub(crate) mod ci;
mod compare;
mod finish;
mod plan;
mod proxy;
mod recover;
mod report;
mod run;
mod validate;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::chaos::registry::Registry;
use crate::judge::exit::ExitCode;
use crate::run::RunError;
use crate::util::text::warn;
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
pub(crate) struct Cli {
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
    Run(run::RunArgs),
    /// Compare run directories: BASE… CURRENT (the last is the current run; several bases
    /// are held to as their envelope). Delivered share, error rate in points, percentiles
    /// with their intervals, each instance's share (docs/compare.md).
    Compare(compare::CompareArgs),
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
    Proxy(proxy::ProxyArgs),
    /// Print the resolved plan: load over time, journey mix, steps. Sends nothing.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
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

pub(super) fn duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Parses `args` and runs the command; returns its exit code (`ExitCode::code` is the number
/// the process exits with).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => dispatch(cli),
        Err(error) => {
            let _ = error.print();
            if error.use_stderr() {
                ExitCode::BadInput
            } else {
                ExitCode::Ok
            }
        }
    }
}

/// Runs the command the flags name: each command's one exit code.
fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { file } => validate::validate(&file, cli.policy.as_deref()),
        Command::Plan { file, overrides } => plan::plan(file, overrides, cli.policy),
        Command::Recover { run_dir, timeout } => recover::recover_command(
            run_dir,
            timeout.unwrap_or(crate::plan::chaos::DEFAULT_BACKEND_TIMEOUT),
            cli.policy.as_deref(),
            &Registry::at(cli.state_dir.as_deref()),
        ),
        Command::Proxy(args) => proxy::proxy_command(args.into()),
        Command::Report { run_dir } => report::report_command(&run_dir),
        Command::Compare(args) => compare::command(args),
        Command::Run(args) => run::command(args, cli.policy, cli.state_dir),
    }
}

/// A current-thread runtime for commands that only wait on a few sockets.
pub(super) fn small_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::CouldNotRun
        })
}

pub(super) fn report_error(error: RunError) -> ExitCode {
    match error {
        RunError::BadInput(message) => {
            warn(&format!("{message}\n"));
            ExitCode::BadInput
        }
        RunError::NotStarted { reason, run_dir } => {
            warn(&format!("error: {reason}\n"));
            warn(&format!(
                "its record (junit.xml, report.html): {}\n",
                run_dir.display()
            ));
            ExitCode::CouldNotRun
        }
        RunError::CouldNotRun(message) => {
            warn(&format!("error: {message}\n"));
            ExitCode::CouldNotRun
        }
    }
}
