//! `loadgen compare BASE… CURRENT`, and the baseline gate of `loadgen run`.

use std::path::PathBuf;

use crate::exit::ExitCode;

/// How the baseline gate judges: its tolerances, and whether another scenario's run may
/// be a baseline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gate {
    pub(super) tolerances: crate::compare::Tolerances,
    pub(super) any_scenario: bool,
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
