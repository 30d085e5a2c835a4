//! What the fault timeline reports: typed events, and one outcome per *planned* occurrence
//! of every fault — the truth the SLO windows are cut from.
//!
//! An occurrence's effect window runs from `started_ms` (taken just before the first apply)
//! to `ended_ms`: the moment every target it hit was observed healthy again (see
//! `effect.rs`), or where the window was closed because a target was not.

use serde::{Deserialize, Serialize};

/// One step of a fault's life, per target where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// About to apply (the undo is in the ledger): written *before* the change.
    Started,
    /// The change was made.
    #[serde(alias = "inject")]
    Applied,
    /// The undo ran.
    #[serde(alias = "recover")]
    Recovered,
    /// The effect is over: the target was observed healthy again.
    Ended,
    /// The target was not healthy again within the fault's `effect` (or by the run's end).
    NotHealthyAgain,
    /// No target to hit (none matched, none up).
    Skipped,
    /// A guardrail said no at run time.
    Refused,
    /// Resolving, preparing, applying or recovering failed.
    Failed,
    /// The run ended before this occurrence was due.
    NotRun,
}

impl EventKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Applied => "applied",
            EventKind::Recovered => "recovered",
            EventKind::Ended => "ended",
            EventKind::NotHealthyAgain => "not_healthy_again",
            EventKind::Skipped => "skipped",
            EventKind::Refused => "refused",
            EventKind::Failed => "failed",
            EventKind::NotRun => "not_run",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so width and alignment flags (`{:<8}`) apply.
        f.pad(self.as_str())
    }
}

/// How a planned occurrence turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceStatus {
    /// Applied to at least one target, and every target it hit was healthy again (or it
    /// held to the run's end by plan).
    #[default]
    Happened,
    /// Applied, but a target was not observed healthy again within `effect` (default: by
    /// the run's end).
    NotHealthyAgain,
    /// Never applied: cut off by the run's end, no target matched, refused by a guardrail
    /// at run time, or failed to inject.
    NotRun,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Occurrence {
    pub fault: String,
    pub occurrence: u32,
    /// The fault's `required` (default true): a required occurrence that did not run fails
    /// the run.
    pub required: bool,
    pub status: OccurrenceStatus,
    /// Why not_run / not healthy again, for people.
    pub reason: Option<String>,
    pub targets: Vec<String>,
    pub planned_at_ms: u64,
    /// Taken just before the first apply.
    pub started_ms: Option<u64>,
    pub applied_ms: Option<u64>,
    /// The effect is over; for not_healthy_again: where the window was closed.
    pub ended_ms: Option<u64>,
}

/// How one target's effect window ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetEnd {
    pub target: String,
    pub at_ms: u64,
    /// Observed healthy again (or held to the run's end by plan).
    pub healthy: bool,
    pub reason: Option<String>,
}

/// The occurrences of a run as the timeline learns about them; `finish` settles them.
#[derive(Debug, Clone, Default)]
pub(crate) struct OccurrenceBook {
    occurrences: Vec<Occurrence>,
    /// Per occurrence: how many applied targets still have an open window, and the ends so far.
    ends: Vec<Vec<TargetEnd>>,
    /// Per occurrence: whether it was attempted (resolution at least started).
    attempted: Vec<bool>,
}

impl OccurrenceBook {
    /// Registers a planned occurrence; returns its index.
    pub(crate) fn plan(
        &mut self,
        fault: &str,
        occurrence: u32,
        required: bool,
        at_ms: u64,
    ) -> usize {
        self.occurrences.push(Occurrence {
            fault: fault.to_string(),
            occurrence,
            required,
            status: OccurrenceStatus::NotRun,
            reason: None,
            targets: Vec::new(),
            planned_at_ms: at_ms,
            started_ms: None,
            applied_ms: None,
            ended_ms: None,
        });
        self.ends.push(Vec::new());
        self.attempted.push(false);
        self.occurrences.len() - 1
    }

    pub(crate) fn find(&self, fault: &str, occurrence: u32) -> Option<usize> {
        self.occurrences
            .iter()
            .position(|o| o.fault == fault && o.occurrence == occurrence)
    }

    pub(crate) fn attempted(&mut self, index: usize) {
        self.attempted[index] = true;
    }

    /// Nothing was applied, for this reason (kept only while no target was applied).
    pub(crate) fn not_run(&mut self, index: usize, reason: String) {
        let o = &mut self.occurrences[index];
        if o.applied_ms.is_none() && o.reason.is_none() {
            o.reason = Some(reason);
        }
    }

    pub(crate) fn started(&mut self, index: usize, at_ms: u64) {
        self.occurrences[index].started_ms.get_or_insert(at_ms);
    }

    pub(crate) fn applied(&mut self, index: usize, target: &str, at_ms: u64) {
        let o = &mut self.occurrences[index];
        o.applied_ms.get_or_insert(at_ms);
        o.targets.push(target.to_string());
        o.status = OccurrenceStatus::Happened;
        o.reason = None;
    }

    pub(crate) fn ended(&mut self, index: usize, end: TargetEnd) {
        self.ends[index].push(end);
    }

    /// The occurrences the timeline never reached (the run ended first).
    pub(crate) fn never_attempted(&self) -> Vec<usize> {
        (0..self.occurrences.len())
            .filter(|i| !self.attempted[*i])
            .collect()
    }

    /// Settles every occurrence once the run is over at `run_end_ms`: an occurrence that
    /// never applied is not_run (with why); one whose every target ended healthy is
    /// happened, ending at the last target's end; one with a target not healthy again is
    /// not_healthy_again, closed at the latest end.
    pub(crate) fn finish(mut self, run_end_ms: u64) -> Vec<Occurrence> {
        for (index, o) in self.occurrences.iter_mut().enumerate() {
            if o.applied_ms.is_none() {
                o.status = OccurrenceStatus::NotRun;
                if o.reason.is_none() {
                    o.reason = Some(if self.attempted[index] {
                        "nothing was applied".to_string()
                    } else {
                        format!(
                            "the run ended at {:.1} s, before this occurrence was due at {:.1} s",
                            run_end_ms as f64 / 1000.0,
                            o.planned_at_ms as f64 / 1000.0
                        )
                    });
                }
                continue;
            }
            let ends = &self.ends[index];
            let open = o.targets.len().saturating_sub(ends.len());
            let last = ends.iter().map(|e| e.at_ms).max();
            let unhealthy: Vec<&TargetEnd> = ends.iter().filter(|e| !e.healthy).collect();
            if open > 0 {
                // A window nothing closed (cannot happen when the timeline ran to its end):
                // closed at the run's end, and said so.
                o.status = OccurrenceStatus::NotHealthyAgain;
                o.ended_ms = Some(run_end_ms.max(last.unwrap_or(0)));
                o.reason = Some(format!(
                    "{open} target(s) were never observed healthy again"
                ));
            } else if unhealthy.is_empty() {
                o.status = OccurrenceStatus::Happened;
                o.ended_ms = last;
            } else {
                o.status = OccurrenceStatus::NotHealthyAgain;
                o.ended_ms = last;
                o.reason = Some(
                    unhealthy
                        .iter()
                        .map(|e| match &e.reason {
                            Some(r) => format!("{}: {r}", e.target),
                            None => format!("{}: not healthy again", e.target),
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
        }
        self.occurrences
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(target: &str, at_ms: u64, healthy: bool) -> TargetEnd {
        TargetEnd {
            target: target.into(),
            at_ms,
            healthy,
            reason: (!healthy).then(|| "still refusing connections".to_string()),
        }
    }

    #[test]
    fn an_occurrence_ends_when_its_last_target_is_healthy_again() {
        let mut book = OccurrenceBook::default();
        let kill = book.plan("kill", 0, true, 1_000);
        book.attempted(kill);
        book.started(kill, 1_002);
        book.applied(kill, "b1", 1_010);
        book.started(kill, 1_020);
        book.applied(kill, "b2", 1_030);
        book.ended(kill, end("b2", 4_000, true));
        book.ended(kill, end("b1", 3_500, true));
        let late = book.plan("late", 0, false, 40_000);
        let out = book.finish(5_000);
        assert_eq!(out[0].status, OccurrenceStatus::Happened);
        assert_eq!(
            (out[0].started_ms, out[0].applied_ms, out[0].ended_ms),
            (Some(1_002), Some(1_010), Some(4_000))
        );
        assert_eq!(out[0].targets, vec!["b1", "b2"]);
        assert_eq!(out[late].status, OccurrenceStatus::NotRun);
        assert!(!out[late].required);
        assert_eq!(
            out[late].reason.as_deref(),
            Some("the run ended at 5.0 s, before this occurrence was due at 40.0 s")
        );
    }

    #[test]
    fn a_target_not_healthy_again_closes_the_window_there() {
        let mut book = OccurrenceBook::default();
        let i = book.plan("kill", 0, true, 1_000);
        book.attempted(i);
        book.started(i, 1_000);
        book.applied(i, "b1", 1_001);
        book.ended(i, end("b1", 3_500, false));
        let refused = book.plan("kill", 1, true, 10_000);
        book.attempted(refused);
        book.not_run(refused, "guardrail: would leave none".into());
        let out = book.finish(20_000);
        assert_eq!(out[0].status, OccurrenceStatus::NotHealthyAgain);
        assert_eq!(out[0].ended_ms, Some(3_500));
        assert_eq!(
            out[0].reason.as_deref(),
            Some("b1: still refusing connections")
        );
        assert_eq!(out[1].status, OccurrenceStatus::NotRun);
        assert_eq!(
            out[1].reason.as_deref(),
            Some("guardrail: would leave none")
        );
    }

    #[test]
    fn kinds_serialize_snake_case_and_pad() {
        assert_eq!(
            serde_json::to_string(&EventKind::NotHealthyAgain).unwrap(),
            "\"not_healthy_again\""
        );
        let old: EventKind = serde_json::from_str("\"inject\"").unwrap();
        assert_eq!(old, EventKind::Applied);
        assert_eq!(format!("[{:<8}]", EventKind::Ended), "[ended   ]");
    }
}
