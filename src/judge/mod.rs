//! Judging, in one place: the objectives over their windows and each fault's failover
//! (`analysis/`, measuring with `slo/`), the acknowledged writes (`writes.rs`), and the
//! run's exit code (`exit.rs`). Reads only the run directory, so `loadgen report` judges a
//! run again without the target.

pub(crate) mod analysis;
pub(crate) mod exit;
pub(crate) mod slo;
pub(crate) mod writes;

use std::path::Path;

use crate::record::data::ChartPoint;
use crate::record::summary::Summary;
use analysis::Inputs;

/// What judging leaves for rendering besides the verdicts it writes into the summary: the
/// run's chart, read in the same pass over its files.
pub(crate) struct Judged {
    pub chart: Vec<ChartPoint>,
    /// Seconds per chart point.
    pub chart_width: u64,
}

/// Judges the run from its directory against what its summary carries (`slo_specs`,
/// `verify_specs`, the fault occurrences): the objectives' verdicts, the failover figures,
/// the faults' problems, the accounting's, the acknowledged writes' verdicts and the run's
/// verdict, all into `summary` (now `judged`). Writes nothing.
pub(crate) fn judge(run_dir: &Path, summary: &mut Summary) -> Result<Judged, String> {
    let slos = summary.slo_specs.clone();
    let steps: Vec<(String, String)> = summary
        .journeys
        .iter()
        .flat_map(|j| j.steps.iter().map(|s| (j.name.clone(), s.name.clone())))
        .collect();
    let analyzed = analysis::analyze(
        run_dir,
        &Inputs {
            slos: &slos,
            occurrences: &summary.faults.occurrences,
            duration_s: summary.duration_s,
            planned_s: summary.planned_duration_s,
            settle_ms: summary.settle_ms,
            steps: &steps,
        },
    )?;
    let analysis = analyzed.analysis;
    summary.slos = analysis.slos;
    summary.failover = analysis.failover;
    summary.slo_passed = analysis.passed;
    summary.judged = true;
    summary.fault_problems = analysis.fault_problems;
    if !analysis.accounting_problems.is_empty() {
        let accounting = summary.accounting.get_or_insert_default();
        accounting.balanced = false;
        for problem in analysis.accounting_problems {
            if !accounting.problems.contains(&problem) {
                accounting.problems.push(problem);
            }
        }
    }
    if let Some(specs) = &summary.verify_specs {
        let uncertain = uncertain_by_step(summary);
        summary.verify = Some(writes::judge(
            run_dir,
            &writes::Inputs {
                specs,
                uncertain_by_step: &uncertain,
                occurrences: &summary.faults.occurrences,
            },
        )?);
    }
    // The platform's own series, as the run saved them (none without prometheus.json).
    if let Some(server) = crate::record::server::read(run_dir)? {
        summary.observe = server
            .observe
            .iter()
            .map(crate::record::server::ObservedSummary::of)
            .collect();
    }
    summary.verdict = exit::verdict(summary);
    Ok(Judged {
        chart: analyzed.chart,
        chart_width: analyzed.chart_width,
    })
}

/// Per global step: requests that may have changed the platform without acknowledging it
/// (failed in a way `ErrorClass::may_have_committed` names, or cut off at the hard stop).
fn uncertain_by_step(summary: &Summary) -> Vec<u64> {
    let mut by_step = Vec::new();
    for step in summary.journeys.iter().flat_map(|j| &j.steps) {
        if by_step.len() <= step.index {
            by_step.resize(step.index + 1, 0);
        }
        let failed: u64 = step
            .errors_by_class
            .iter()
            .filter(|(name, _)| {
                crate::metrics::ErrorClass::ALL
                    .iter()
                    .any(|c| c.name() == name.as_str() && c.may_have_committed())
            })
            .map(|(_, count)| count)
            .sum();
        by_step[step.index] = failed + step.abandoned;
    }
    by_step
}
