//! `loadgen run FILE`: run a scenario (or only resolve its faults: `--dry-run`), then the
//! baseline gate.

use std::path::PathBuf;

use super::compare::{Gate, ToleranceFlags, compare_command};
use super::finish::finish;
use super::{Overrides, report_error, small_runtime};
use crate::judge::exit::ExitCode;
use crate::output::{table, verdict_lines};
use crate::run::{self, RunError, RunOptions};
use crate::util::text::{say, warn};
use crate::util::units::format_duration;

// `loadgen run`'s flags (its help text is `Command::Run`'s).
#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
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
    /// Serve the run's metrics on `/metrics` (OpenMetrics) at this IP:PORT from the start
    /// of the run until its verdicts are judged; port 0 picks a free one (printed, and
    /// written to metrics.addr in the run directory). Over `[output.prometheus] listen`.
    #[arg(long, value_name = "ADDR", value_parser = listen_flag)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Keep serving the final values this long after judging ("30s"), so a scraper sees
    /// them.
    #[arg(long, value_name = "DURATION", value_parser = super::duration_flag, default_value = "0s")]
    metrics_linger: std::time::Duration,
}

fn listen_flag(text: &str) -> Result<std::net::SocketAddr, String> {
    crate::scenario::parse_listen(text)
}

/// `loadgen run`: the flags as the run's options and its baseline gate.
pub(super) fn command(
    args: RunArgs,
    policy: Option<PathBuf>,
    state_dir: Option<PathBuf>,
) -> ExitCode {
    let RunArgs {
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
        metrics_listen,
        metrics_linger,
    } = args;
    run_command(
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
            policy,
            target: overrides.target,
            ca_file: overrides.ca_file,
            out,
            seed: overrides.seed,
            duration: overrides.duration,
            threads,
            quiet,
            state_dir,
            metrics_listen,
            metrics_linger,
        },
    )
}

pub(super) fn run_command(
    baseline: Option<(Vec<PathBuf>, Gate)>,
    dry_run: bool,
    run_dir_file: Option<PathBuf>,
    options: RunOptions,
) -> ExitCode {
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
            return ExitCode::BadInput;
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
                _ => ExitCode::Ok,
            };
            // The gate's verdict joins the judged record: junit.xml and report.html are
            // written again with it (summary.json's verdicts do not change).
            let mut summary = outcome.summary;
            if baseline.is_some()
                && let Err(message) = crate::run::finalize(&outcome.run_dir, &mut summary)
            {
                warn(&format!("error: {message}\n"));
                return ExitCode::CouldNotRun;
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

pub(super) fn dry_run_report(plan: &crate::plan::Plan) -> ExitCode {
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
    if bad > 0 {
        ExitCode::BadInput
    } else {
        ExitCode::Ok
    }
}
