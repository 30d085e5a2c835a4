//! Judging, in one place: the objectives over their windows and each fault's failover
//! (`analysis/`, measuring with `slo/`), the acknowledged writes (`writes.rs`), and the
//! run's exit code (`exit.rs`). Reads only the run directory, so `loadgen report` judges a
//! run again without the target.

pub(crate) mod analysis;
pub(crate) mod exit;
mod server;
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
    // Client objectives are judged on the series, query objectives on the server's data.
    let slos: Vec<_> = summary
        .slo_specs
        .iter()
        .filter(|s| s.server.is_none())
        .cloned()
        .collect();
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
    let server_data = crate::record::server::read(run_dir)?;
    summary.slos = in_spec_order(
        &summary.slo_specs,
        analysis.slos,
        &server_data,
        &server::Windows {
            intervals: &analysis::windows::fault_intervals(
                &summary.faults.occurrences,
                (summary.duration_s * 1000.0) as u64,
            ),
            settle_ms: summary.settle_ms,
            run_seconds: analyzed.run_seconds,
        },
    );
    summary.failover = analysis.failover;
    summary.slo_passed = !summary.slos.iter().any(|v| v.fails_run());
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
    if let Some(server) = &server_data {
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

/// Every objective's verdicts in the scenario's order: the client ones as the analysis
/// judged them (in its order), the query ones judged on the server's saved data.
fn in_spec_order(
    specs: &[crate::plan::slo::SloSpec],
    client: Vec<crate::record::verdicts::SloVerdict>,
    server: &Option<crate::record::server::ServerData>,
    windows: &server::Windows<'_>,
) -> Vec<crate::record::verdicts::SloVerdict> {
    let mut client = client.into_iter().peekable();
    let mut out = Vec::new();
    for spec in specs {
        if spec.server.is_some() {
            out.extend(server::verdicts(spec, server.as_ref(), windows));
            continue;
        }
        while let Some(verdict) =
            client.next_if(|v| v.name == spec.name && v.objective == spec.objective)
        {
            out.push(verdict);
        }
    }
    // Nothing is dropped, whatever the names.
    out.extend(client);
    out
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
