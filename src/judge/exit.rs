//! Exit codes: a documented contract (README, "Exit codes"), and the one function that
//! derives a finished run's code from its summary.

use crate::record::summary::{EndReason, RunVerdict, Summary};

/// loadgen's exit code: the documented contract (README.md, "Exit codes"; `loadgen --help`).
///
/// **Precedence.** The variants are declared in their order of precedence, lowest first, so
/// where more than one applies `max` gives the one that wins: a fault not recovered (4)
/// outranks a run that could not complete (3), which outranks a failed drill (1), which
/// outranks a pass (0) — the order `for_run` checks a summary in, and how `loadgen recover`
/// combines its runs. The order is that of the numbers: the highest code wins. Bad input (2)
/// is decided before a run exists (nothing was sent), so it never meets 1, 3 or 4 from a
/// run; it ranks where its number puts it, between 1 and 3.
///
/// One combination is not by precedence: the baseline gate's own trouble (a comparison that
/// could not be read, 2, or written, 3) replaces only a pass; a failed or incomplete run
/// keeps its code (`cli::finish`). A regression the gate found is part of the run's outcome
/// (`for_run`'s `baseline_regressed`): 1, under 3 and 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// 0: the drill passed: the run completed, every objective met, every fault happened and
    /// healed, and the baseline gate (if any) passed. A run without objectives: its load was
    /// delivered and at least one request succeeded.
    Ok = 0,
    /// 1: the drill failed: an SLO verdict, a fault that did not happen or did not heal, an
    /// abort objective, or the baseline gate.
    SloFailed = 1,
    /// 2: bad input — scenario, flags, a refused fault, a baseline of another schema. Nothing
    /// was sent.
    BadInput = 2,
    /// 3: the run could not complete — target unreachable at start, interrupted, harness
    /// failure (also: its own accounting of the planned iterations does not add up), not
    /// judged.
    CouldNotRun = 3,
    /// 4: a fault could not be recovered; a human must act (the message says what to undo).
    FaultNotRecovered = 4,
}

impl ExitCode {
    /// The number the process exits with.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> std::process::ExitCode {
        std::process::ExitCode::from(code.code())
    }
}

/// A finished run's exit code and every reason for it (empty for 0), from its summary and
/// whether a baseline comparison regressed.
pub fn for_run(summary: &Summary, baseline_regressed: bool) -> (ExitCode, Vec<String>) {
    let unrecovered: Vec<String> = summary
        .faults
        .unrecovered
        .iter()
        .map(|line| format!("fault not recovered, a human must act: {line}"))
        .collect();
    if !unrecovered.is_empty() {
        return (ExitCode::FaultNotRecovered, unrecovered);
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
            ExitCode::CouldNotRun,
            vec![format!(
                "{why}; its results are marked incomplete (summary.json \"complete\": false)"
            )],
        );
    }
    if let Some(accounting) = summary.accounting.as_ref().filter(|a| !a.balanced) {
        return (
            ExitCode::CouldNotRun,
            vec![format!(
                "loadgen's own accounting of the planned iterations does not add up (a defect of loadgen, not of the target; please report it): {}",
                accounting.problems.join("; ")
            )],
        );
    }
    if !summary.judged {
        return (
            ExitCode::CouldNotRun,
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
        (ExitCode::Ok, failed)
    } else {
        (ExitCode::SloFailed, failed)
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
pub(crate) fn verdict(summary: &Summary) -> RunVerdict {
    if !summary.judged {
        return RunVerdict::Unjudged;
    }
    match for_run(summary, false).0 {
        ExitCode::Ok if summary.slo_specs.is_empty() => RunVerdict::NoObjectives,
        ExitCode::Ok => RunVerdict::Pass,
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
    fn the_codes_are_the_documented_numbers_and_the_highest_wins() {
        use ExitCode::{BadInput, CouldNotRun, FaultNotRecovered, Ok, SloFailed};
        let declared = [Ok, SloFailed, BadInput, CouldNotRun, FaultNotRecovered];
        assert_eq!(declared.map(ExitCode::code), [0, 1, 2, 3, 4]);
        // Declared order is precedence: each outranks those before it.
        assert!(declared.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(SloFailed.max(FaultNotRecovered), FaultNotRecovered);
        assert_eq!(CouldNotRun.max(SloFailed), CouldNotRun);
        assert_eq!(Ok.max(SloFailed), SloFailed);
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one table of outcomes and their codes, read as a table"
    )]
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
        let rows: Vec<(&str, Vec<Change>, bool, ExitCode)> = vec![
            ("passed", vec![], false, ExitCode::Ok),
            (
                "allowed no_data",
                vec![allowed_no_data],
                false,
                ExitCode::Ok,
            ),
            (
                "a verdict failed",
                vec![failed_verdict],
                false,
                ExitCode::SloFailed,
            ),
            (
                "a fault did not run",
                vec![|s| s.fault_problems.push("fault `x` #1 did not run".into())],
                false,
                ExitCode::SloFailed,
            ),
            (
                "aborted",
                vec![|s| {
                    s.ended_by = EndReason::Aborted;
                    s.complete = false;
                    s.aborted_because = Some("objective failed".into());
                }],
                false,
                ExitCode::SloFailed,
            ),
            ("baseline regressed", vec![], true, ExitCode::SloFailed),
            (
                "interrupted",
                vec![|s| {
                    s.ended_by = EndReason::Interrupted;
                    s.complete = false;
                }],
                false,
                ExitCode::CouldNotRun,
            ),
            (
                "harness failure outranks a failed verdict",
                vec![failed_verdict, |s| s.ended_by = EndReason::HarnessFailure],
                false,
                ExitCode::CouldNotRun,
            ),
            (
                "not judged",
                vec![|s| s.judged = false],
                false,
                ExitCode::CouldNotRun,
            ),
            (
                "unrecovered outranks everything",
                vec![
                    failed_verdict,
                    |s| s.ended_by = EndReason::Interrupted,
                    |s| s.faults.unrecovered.push("pause on backend-2".into()),
                ],
                true,
                ExitCode::FaultNotRecovered,
            ),
        ];
        for (name, changes, regressed, want) in rows {
            let mut summary = passing();
            for change in changes {
                change(&mut summary);
            }
            let (code, reasons) = for_run(&summary, regressed);
            assert_eq!(code, want, "{name}: {reasons:?}");
            assert_eq!(
                reasons.is_empty(),
                code == ExitCode::Ok,
                "{name}: {reasons:?}"
            );
        }
    }
}
