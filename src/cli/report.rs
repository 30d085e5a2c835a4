//! `loadgen report RUN_DIR`: judge a run directory again and re-render its files.

use super::finish::finish;
use crate::judge::exit::ExitCode;
use crate::output::{table, verdict_lines};

pub(super) fn report_command(run_dir: &std::path::Path) -> ExitCode {
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
            return ExitCode::BadInput;
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
                Some(comparison) if comparison.regressed => ExitCode::SloFailed,
                _ => ExitCode::Ok,
            };
            finish(&summary, run_dir, gate)
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::CouldNotRun
        }
    }
}
