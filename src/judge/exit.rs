//! Exit codes: a documented contract (README, "Exit codes"), and the one function that
//! derives a finished run's code from its summary.
//!
//! Precedence, highest first: 4 > 3 > 1 > 0. Exit 2 (bad input) is decided before a run
//! exists, so it never comes from a summary.

use crate::record::summary::{EndReason, RunVerdict, Summary};

/// 0: the drill passed: the run completed, every objective met, every fault happened and
/// healed, and the baseline gate (if any) passed. A run without objectives: its load was
/// delivered and at least one request succeeded.
pub const OK: u8 = 0;
/// 1: the drill failed: an SLO verdict, a fault that did not happen or did not heal, an
/// abort objective, or the baseline gate.
pub const SLO_FAILED: u8 = 1;
/// 2: bad input — scenario, flags, a refused fault, a baseline of another schema. Nothing
/// was sent.
pub const BAD_INPUT: u8 = 2;
/// 3: the run could not complete — target unreachable at start, interrupted, harness
/// failure (also: its own accounting of the planned iterations does not add up), not
/// judged.
pub const COULD_NOT_RUN: u8 = 3;
/// 4: a fault could not be recovered; a human must act (the message says what to undo).
pub const FAULT_NOT_RECOVERED: u8 = 4;

/// A finished run's exit code and every reason for it (empty for 0), from its summary and
/// whether a baseline comparison regressed.
pub fn for_run(summary: &Summary, baseline_regressed: bool) -> (u8, Vec<String>) {
    let unrecovered: Vec<String> = summary
        .faults
        .unrecovered
        .iter()
        .map(|line| format!("fault not recovered, a human must act: {line}"))
        .collect();
    if !unrecovered.is_empty() {
        return (FAULT_NOT_RECOVERED, unrecovered);
    }
    let incomplete = match &summary.ended_by {
        EndReason::Interrupted => Some("the run was interrupted".to_string()),
        EndReason::HarnessFailure => Some("a worker thread of the harness failed".to_string()),
        EndReason::Killed => Some(
            "loadgen was killed before it wrote the run's summary (judged afterwards from the run directory's files)"
                .to_string(),
        ),
        EndReason::Plan | EndReason::Aborted => None,
    };
    if let Some(why) = incomplete {
        return (
            COULD_NOT_RUN,
            vec![format!(
                "{why}; its results are marked incomplete (summary.json \"complete\": false)"
            )],
        );
    }
    if let Some(accounting) = summary.accounting.as_ref().filter(|a| !a.balanced) {
        return (
            COULD_NOT_RUN,
            vec![format!(
                "loadgen's own accounting of the planned iterations does not add up (a defect of loadgen, not of the target; please report it): {}",
                accounting.problems.join("; ")
            )],
        );
    }
    if !summary.judged {
        return (
            COULD_NOT_RUN,
            vec!["the run was not judged (run `loadgen report` on its directory)".into()],
        );
    }
    let mut failed = Vec::new();
    if let Some(reason) = &summary.aborted_because {
        failed.push(format!(
            "the run was aborted: {reason}; its results are marked incomplete"
        ));
    }
    let verdicts = summary.slos.iter().filter(|v| v.fails_run()).count();
    if verdicts > 0 {
        failed.push(format!("{verdicts} SLO verdict(s) failed"));
    }
    failed.extend(summary.fault_problems.iter().cloned());
    if summary.slo_specs.is_empty() {
        failed.extend(without_objectives(summary));
    }
    if let Some(verify) = &summary.verify {
        failed.extend(verify.problems());
    }
    if baseline_regressed {
        failed.push("the baseline gate found a regression".into());
    }
    if failed.is_empty() {
        (OK, failed)
    } else {
        (SLO_FAILED, failed)
    }
}

/// A run with no objectives passes nothing: it exits 0 only when its load was delivered
/// and at least one request succeeded.
fn without_objectives(summary: &Summary) -> Vec<String> {
    let mut failed = Vec::new();
    if let Some(delivery) = summary.delivery.as_ref().filter(|d| !d.delivered) {
        failed.push(format!("load_not_delivered: {}", delivery.describe()));
    }
    let t = &summary.totals;
    if t.requests.saturating_sub(t.errors + t.redirects) == 0 {
        failed.push(format!(
            "no_successful_response: none of the {} requests succeeded, and the run has no objectives to judge",
            t.requests
        ));
    }
    failed
}

/// The run's verdict in one word, from its exit code (without a baseline gate).
pub fn verdict(summary: &Summary) -> RunVerdict {
    if !summary.judged {
        return RunVerdict::Unjudged;
    }
    match for_run(summary, false).0 {
        OK if summary.slo_specs.is_empty() => RunVerdict::NoObjectives,
        OK => RunVerdict::Pass,
        _ => RunVerdict::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A judged, complete, passing summary: the one a drill that passed leaves.
    fn passing() -> Summary {
        let text = include_str!("../../tests/fixtures/summary-passing.json");
        serde_json::from_str(text).expect("the fixture is a summary of this schema")
    }

    #[test]
    fn the_outcome_to_exit_code_table() {
        type Change = fn(&mut Summary);
        let failed_verdict: Change = |s| {
            let mut verdict = s.slos[0].clone();
            verdict.status = crate::record::verdicts::VerdictStatus::Fail;
            s.slos.push(verdict);
        };
        let allowed_no_data: Change = |s| {
            let mut verdict = s.slos[0].clone();
            verdict.status = crate::record::verdicts::VerdictStatus::NoData;
            verdict.allowed = true;
            s.slos.push(verdict);
        };
        let rows: Vec<(&str, Vec<Change>, bool, u8)> = vec![
            ("passed", vec![], false, OK),
            ("allowed no_data", vec![allowed_no_data], false, OK),
            ("a verdict failed", vec![failed_verdict], false, SLO_FAILED),
            (
                "a fault did not run",
                vec![|s| s.fault_problems.push("fault `x` #1 did not run".into())],
                false,
                SLO_FAILED,
            ),
            (
                "aborted",
                vec![|s| {
                    s.ended_by = EndReason::Aborted;
                    s.complete = false;
                    s.aborted_because = Some("objective failed".into());
                }],
                false,
                SLO_FAILED,
            ),
            ("baseline regressed", vec![], true, SLO_FAILED),
            (
                "interrupted",
                vec![|s| {
                    s.ended_by = EndReason::Interrupted;
                    s.complete = false;
                }],
                false,
                COULD_NOT_RUN,
            ),
            (
                "harness failure outranks a failed verdict",
                vec![failed_verdict, |s| s.ended_by = EndReason::HarnessFailure],
                false,
                COULD_NOT_RUN,
            ),
            (
                "not judged",
                vec![|s| s.judged = false],
                false,
                COULD_NOT_RUN,
            ),
            (
                "unrecovered outranks everything",
                vec![
                    failed_verdict,
                    |s| s.ended_by = EndReason::Interrupted,
                    |s| s.faults.unrecovered.push("pause on backend-2".into()),
                ],
                true,
                FAULT_NOT_RECOVERED,
            ),
        ];
        for (name, changes, regressed, want) in rows {
            let mut summary = passing();
            for change in changes {
                change(&mut summary);
            }
            let (code, reasons) = for_run(&summary, regressed);
            assert_eq!(code, want, "{name}: {reasons:?}");
            assert_eq!(reasons.is_empty(), code == OK, "{name}: {reasons:?}");
        }
    }
}
