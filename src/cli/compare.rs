//! `loadgen compare BASE… CURRENT`, and the baseline gate of `loadgen run`.

use std::path::PathBuf;
use std::time::Duration;

use crate::judge::exit::ExitCode;

// `loadgen compare`'s flags (its help text is `Command::Compare`'s).
#[derive(Debug, clap::Args)]
pub(super) struct CompareArgs {
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
}

/// When a change between two runs counts as a regression.
#[derive(Debug, clap::Args)]
pub(super) struct ToleranceFlags {
    /// A latency percentile may grow by this much…
    #[arg(long, default_value = "25%", value_parser = percent_flag)]
    latency_tolerance: f64,
    /// …and must grow by more than this to count (noise floor).
    #[arg(long, default_value = "10ms", value_parser = super::duration_flag)]
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
    pub(super) fn tolerances(&self) -> crate::compare::Tolerances {
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

/// How the baseline gate judges: its tolerances, and whether another scenario's run may
/// be a baseline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gate {
    pub(super) tolerances: crate::compare::Tolerances,
    pub(super) any_scenario: bool,
}

/// `loadgen compare BASE… CURRENT`: the last run is the current one.
pub(super) fn command(args: CompareArgs) -> ExitCode {
    let CompareArgs {
        mut runs,
        out,
        baseline_any_scenario,
        tolerances,
    } = args;
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

pub(super) fn compare_command(
    bases: &[PathBuf],
    current: &std::path::Path,
    out: Option<&std::path::Path>,
    gate: Gate,
    show_table: bool,
) -> ExitCode {
    let current_summary = match crate::compare::read_summary(current) {
        Ok(summary) => summary,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::BadInput;
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
                return ExitCode::BadInput;
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
        return ExitCode::CouldNotRun;
    }
    if comparison.regressed {
        ExitCode::SloFailed
    } else {
        ExitCode::Ok
    }
}
