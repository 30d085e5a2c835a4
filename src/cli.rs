//! Command-line interface: flags parsed by clap into options, each command run through the
//! library, every outcome mapped to a documented exit code (see `exit`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::exit;
use crate::output::table;
use crate::run::{self, RunError, RunOptions};
use crate::scenario::{self, ScenarioError, describe::describe, units::parse_duration};

const EXAMPLES: &str = "\
Examples:
  loadgen validate scenarios/smoke.toml
  loadgen plan scenarios/peak.toml
  loadgen run scenarios/peak.toml --target http://127.0.0.1:8080
  LOADGEN_TARGET=http://127.0.0.1:8080 loadgen run scenarios/smoke.toml --duration 10s --seed 7

Exit codes:
  0  the run completed
  1  an SLO or the baseline gate failed
  2  bad input (scenario or flags); nothing was sent
  3  the run could not complete (target unreachable, interrupted, harness failure)";

#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about = "Load-and-chaos drills with honest latency", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// No progress line and no table; print only the run directory.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a scenario and report every error; sends nothing.
    Validate { file: PathBuf },
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
        Command::Validate { file } => validate(&file),
        Command::Plan { file, overrides } => plan(file, overrides),
        Command::Run {
            file,
            overrides,
            out,
            threads,
            quiet,
        } => run_command(RunOptions {
            scenario: file,
            target: overrides.target,
            out,
            seed: overrides.seed,
            duration: overrides.duration,
            threads,
            quiet,
        }),
    }
}

fn validate(file: &std::path::Path) -> u8 {
    match scenario::load(file) {
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

fn plan(file: PathBuf, overrides: Overrides) -> u8 {
    let options = RunOptions {
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

fn run_command(options: RunOptions) -> u8 {
    let prepared = match run::prepare(&options) {
        Ok(prepared) => prepared,
        Err(error) => return report_error(error),
    };
    match run::execute(prepared, &options) {
        Ok(outcome) => {
            if options.quiet {
                println!("{}", outcome.run_dir.display());
            } else {
                print!("{}", table::render(&outcome.summary));
                println!("report: {}", outcome.run_dir.display());
            }
            if outcome.summary.complete {
                exit::OK
            } else {
                eprintln!(
                    "error: the run was {}; its results are marked incomplete (summary.json \"complete\": false)",
                    outcome.summary.ended_by
                );
                exit::COULD_NOT_RUN
            }
        }
        Err(error) => report_error(error),
    }
}

fn report_error(error: RunError) -> u8 {
    match error {
        RunError::BadInput(message) => {
            eprintln!("{message}");
            exit::BAD_INPUT
        }
        RunError::CouldNotRun(message) => {
            eprintln!("error: {message}");
            exit::COULD_NOT_RUN
        }
    }
}
