//! The verdicts in the terminal, at the end of `loadgen run` and `loadgen report`: one line
//! per verdict and one per planned fault occurrence, from summary.json's own fields (so what
//! the terminal says is what the file says).

use std::fmt::Write;

use crate::chaos::runner::{Occurrence, OccurrenceStatus};
use crate::judge::writes::id_text;
use crate::record::summary::Summary;
use crate::record::verdicts::{SloVerdict, VerdictStatus};
use crate::record::writes::VerifySummary;
use crate::verify::run::Status;

/// ✓ passed, ✗ fails the run, – allowed (`no_data` / `not_run` the scenario accepts).
pub(crate) fn mark(passed: bool, fails: bool) -> &'static str {
    match (passed, fails) {
        (true, _) => "✓",
        (false, true) => "✗",
        (false, false) => "–",
    }
}

pub(crate) fn render(summary: &Summary) -> String {
    let mut out = String::new();
    if !summary.slos.is_empty() {
        let _ = writeln!(out, "verdicts:");
    } else if summary.judged && summary.slo_specs.is_empty() {
        let _ = writeln!(
            out,
            "no objectives: the scenario states no [[slo]], so nothing is judged PASS; the run exits 0 only if its load was delivered and some request succeeded"
        );
    }
    for v in &summary.slos {
        let _ = writeln!(out, "{}", verdict_line(v));
    }
    for o in &summary.faults.occurrences {
        let _ = writeln!(out, "{}", occurrence_line(summary, o));
    }
    if let Some(verify) = &summary.verify {
        render_verify(verify, &mut out);
    }
    out
}

/// One objective's line: its mark, name and window, what was measured against its
/// threshold, its evidence, and why it did not pass.
fn verdict_line(v: &SloVerdict) -> String {
    let measured: Vec<String> = v
        .measured
        .iter()
        .filter(|m| !m.op.is_empty())
        .map(|m| format!("{} {} ({} {})", m.metric, m.value_text, m.op, m.threshold))
        .collect();
    let mut line = format!(
        "  {} {} [{}]",
        mark(v.status == VerdictStatus::Pass, v.fails_run()),
        v.name,
        v.window
    );
    if !measured.is_empty() {
        let _ = write!(line, ": {}", measured.join("; "));
    }
    if v.evidence != Default::default() {
        let _ = write!(line, " · {}", v.evidence.describe());
    }
    if v.status != VerdictStatus::Pass && v.status != VerdictStatus::Fail {
        let _ = write!(
            line,
            " — {}{}",
            v.status.name(),
            if v.allowed { " (allowed)" } else { "" }
        );
    } else if let Some(reason) = v.reason {
        let reason = serde_json::to_value(reason).unwrap_or_default();
        let _ = write!(line, " — {}", reason.as_str().unwrap_or_default());
    }
    if let Some(text) = v
        .reason_text
        .as_deref()
        .filter(|_| v.status != VerdictStatus::Pass)
    {
        let _ = write!(line, ": {text}");
    }
    line
}

/// One fault occurrence's line: where it happened with its failover and how long the
/// target took to be healthy again, or why it did not run or did not recover.
fn occurrence_line(summary: &Summary, o: &Occurrence) -> String {
    let name = format!("{} #{}", o.fault, o.occurrence + 1);
    let failover = summary
        .failover
        .iter()
        .find(|f| f.fault == o.fault && f.occurrence == o.occurrence);
    match o.status {
        OccurrenceStatus::Happened => {
            let mut parts = vec![format!("on {}", o.targets.join(", "))];
            if let Some(f) = failover {
                parts.push(match f.first_error_after_ms {
                    Some(ms) => format!("first error after {}", seconds(ms)),
                    None => "no error".into(),
                });
                if let Some(ms) = f.burst_ms {
                    parts.push(format!("burst {}", seconds(ms)));
                }
                parts.push(format!("{} failed", f.requests_failed));
            }
            if let (Some(start), Some(end)) = (o.started_ms, o.ended_ms) {
                parts.push(format!(
                    "healthy again after {}",
                    seconds(end.saturating_sub(start))
                ));
            }
            format!("  ✓ fault {name}: {}", parts.join(", "))
        }
        OccurrenceStatus::NotRun => format!(
            "  {} fault {name} — not_run{}: {}",
            mark(false, o.required),
            if o.required { "" } else { " (allowed)" },
            o.reason.as_deref().unwrap_or_default()
        ),
        OccurrenceStatus::NotHealthyAgain => format!(
            "  ✗ fault {name} — not_healthy_again: {}",
            o.reason.as_deref().unwrap_or_default()
        ),
    }
}

/// Acknowledged writes: a line per kind, count and invariant; the ids of writes that
/// failed their read-back (the first 20 of each kind; summary.json lists more).
fn render_verify(verify: &VerifySummary, out: &mut String) {
    let _ = writeln!(
        out,
        "acknowledged writes ({} verification request(s), not in the totals):",
        verify.requests
    );
    if verify.status != Status::Complete {
        let _ = writeln!(
            out,
            "  ✗ verification {}: {}",
            verify.status.name(),
            verify.reason.as_deref().unwrap_or_default()
        );
    }
    for kind in &verify.kinds {
        let passed = kind.status == VerdictStatus::Pass;
        let _ = writeln!(
            out,
            "  {} {}: {} acknowledged, {} verified, {} missing, {} mismatched, {} unverifiable{}",
            mark(passed, kind.fails_run()),
            kind.name,
            kind.acknowledged,
            kind.verified,
            kind.missing,
            kind.mismatched,
            kind.unverifiable,
            if passed {
                String::new()
            } else {
                format!(" — {}", kind.reason_text)
            }
        );
        let listed = [
            ("missing", &kind.missing_writes),
            ("mismatched", &kind.mismatched_writes),
            ("unverifiable", &kind.unverifiable_writes),
        ];
        for (what, writes) in listed {
            for write in writes.iter().take(20) {
                let _ = writeln!(
                    out,
                    "      {what} {} (acknowledged at {}{}){}",
                    id_text(&write.id),
                    seconds(write.at_ms),
                    write
                        .during
                        .as_deref()
                        .map(|f| format!(", during {f}"))
                        .unwrap_or_default(),
                    write
                        .detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    for count in &verify.counts {
        let passed = count.status == VerdictStatus::Pass;
        let _ = writeln!(
            out,
            "  {} count {}: {}",
            mark(passed, !passed),
            count.name,
            count.reason_text
        );
    }
    for invariant in &verify.invariants {
        let passed = invariant.status == VerdictStatus::Pass;
        let _ = writeln!(
            out,
            "  {} invariant {}: {}",
            mark(passed, !passed),
            invariant.name,
            invariant.reason_text
        );
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
