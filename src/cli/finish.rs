//! A judged run's exit code and what it says about it (`loadgen run` and `loadgen report`).

use crate::judge::exit::{self, ExitCode};
use crate::util::text::{say, warn};

/// The exit code of a finished run (one function decides it: `exit::for_run`), with every
/// reason said on stderr. `gate`: the baseline comparison's own code.
pub(super) fn finish(
    summary: &crate::record::summary::Summary,
    run_dir: &std::path::Path,
    gate: ExitCode,
) -> ExitCode {
    use crate::cli::ci;
    let (code, mut reasons) = exit::for_run(summary, gate == ExitCode::SloFailed);
    // Each failing objective and each regressed row of the gate, a line each: what a CI log
    // (also under --quiet) needs to say why.
    reasons.extend(ci::failing_objectives(summary));
    let comparison = crate::compare::read_comparison(run_dir);
    if gate == ExitCode::SloFailed
        && let Some(comparison) = &comparison
    {
        reasons.extend(ci::regressed_rows(comparison));
    }
    for reason in &reasons {
        warn(&format!("error: {reason}\n"));
    }
    // A comparison that could not be made (unreadable, unwritable) outranks a pass, and only
    // a pass (`ExitCode`'s precedence names this exception).
    let final_code = if code == ExitCode::Ok { gate } else { code };
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        say(&ci::annotations(&reasons));
    }
    let markdown = ci::markdown(summary, run_dir, final_code, &reasons, comparison.as_ref());
    if let Err(e) = ci::append_step_summary(&markdown) {
        warn(&format!("warning: GITHUB_STEP_SUMMARY: {e}\n"));
    }
    if code == ExitCode::FaultNotRecovered {
        warn(&format!(
            "then run `loadgen recover {}`\n",
            run_dir.display()
        ));
    }
    final_code
}
