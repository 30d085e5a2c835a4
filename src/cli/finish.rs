//! A judged run's exit code and what it says about it (`loadgen run` and `loadgen report`).

use crate::exit;
use crate::util::text::{say, warn};

/// The exit code of a finished run (one function decides it: `exit::for_run`), with every
/// reason said on stderr. `gate`: the baseline comparison's own code.
pub(super) fn finish(
    summary: &crate::output::summary::Summary,
    run_dir: &std::path::Path,
    gate: u8,
) -> u8 {
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
