//! Windows of a run, in whole seconds of the series, cut from the fault occurrences as the
//! timeline settled them (not from the plan: a fault injected late is judged late, and its
//! window lasts until its target was observed healthy again).
//!
//! **The one rounding rule** from milliseconds to the one-second series: a millisecond
//! interval [a, b) covers the seconds floor(a / 1000) .. ceil(b / 1000), and at least one
//! second (`seconds_of`). Every window below is made with it: a fault's own window covers
//! `seconds_of(start, end)`; steady state leaves out `seconds_of(start, end + settle)` of
//! every fault that happened; "after" a fault starts where that cut ends,
//! ceil((end + settle) / 1000), and stops where the next fault's window begins,
//! floor(next start / 1000).

use std::ops::Range;

use crate::chaos::outcome::{Occurrence, OccurrenceStatus};
use crate::plan::slo::Window;

/// One planned fault occurrence: its effect window as it really happened, or why not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Interval {
    pub fault: String,
    pub occurrence: u32,
    /// When the occurrence started (just before the first apply); a not_run occurrence:
    /// its planned time, clamped to the run's end.
    pub start_ms: u64,
    /// When its effect was over (every target healthy again), or where the window was
    /// closed (not_healthy_again); equal to `start_ms` for a not_run occurrence.
    pub end_ms: u64,
    pub targets: Vec<String>,
    pub status: OccurrenceStatus,
    pub required: bool,
    pub reason: Option<String>,
}

impl Interval {
    /// Applied to a target: has a window with seconds in it.
    pub(crate) fn happened(&self) -> bool {
        self.status != OccurrenceStatus::NotRun
    }
}

/// Every planned occurrence as an interval, sorted by start: [started_ms, ended_ms) for one
/// that happened (`ended_ms` missing: the run's end), a zero-length mark for a not_run one.
pub(crate) fn fault_intervals(occurrences: &[Occurrence], run_end_ms: u64) -> Vec<Interval> {
    let mut intervals: Vec<Interval> = occurrences
        .iter()
        .map(|o| {
            let (start_ms, end_ms) = match (o.status, o.started_ms) {
                (OccurrenceStatus::NotRun, _) | (_, None) => {
                    let at = o.started_ms.unwrap_or(o.planned_at_ms).min(run_end_ms);
                    (at, at)
                }
                (_, Some(start)) => (start, o.ended_ms.unwrap_or(run_end_ms).max(start)),
            };
            Interval {
                fault: o.fault.clone(),
                occurrence: o.occurrence,
                start_ms,
                end_ms,
                targets: o.targets.clone(),
                status: if o.started_ms.is_none() {
                    OccurrenceStatus::NotRun
                } else {
                    o.status
                },
                required: o.required,
                reason: o.reason.clone(),
            }
        })
        .collect();
    intervals.sort_by_key(|i| i.start_ms);
    intervals
}

/// Only the occurrences that happened (for failover figures and charts).
pub(crate) fn happened(intervals: &[Interval]) -> Vec<Interval> {
    intervals.iter().filter(|i| i.happened()).cloned().collect()
}

/// A fault window whose occurrence did not happen: judged as not run, never as passed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NotRun {
    pub reason: String,
    /// The fault's `required`: a required occurrence that did not run fails the run.
    pub required: bool,
}

/// A labelled set of seconds to judge an objective over.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowInstance {
    pub label: String,
    pub seconds: Vec<Range<u64>>,
    /// Set for the window of a fault occurrence that did not happen (`seconds` is empty).
    pub not_run: Option<NotRun>,
}

impl WindowInstance {
    pub(crate) fn contains(&self, second: u64) -> bool {
        self.seconds.iter().any(|r| r.contains(&second))
    }

    pub(crate) fn length(&self) -> u64 {
        self.seconds.iter().map(|r| r.end - r.start).sum()
    }
}

/// The rounding rule: the seconds [floor(start / 1000), ceil(end / 1000)) a millisecond
/// interval [start, end) touches; at least one second long.
pub(crate) fn seconds_of(start_ms: u64, end_ms: u64) -> Range<u64> {
    let start = start_ms / 1000;
    let end = end_ms.div_ceil(1000).max(start + 1);
    start..end
}

pub(crate) fn instances(
    window: &Window,
    intervals: &[Interval],
    settle_ms: u64,
    run_seconds: u64,
) -> Vec<WindowInstance> {
    let run = 0..run_seconds.max(1);
    let happened: Vec<&Interval> = intervals.iter().filter(|i| i.happened()).collect();
    match window {
        Window::Run => vec![WindowInstance {
            label: "run".into(),
            seconds: vec![run],
            not_run: None,
        }],
        Window::Steady => {
            let mut seconds = vec![run];
            for interval in &happened {
                let cut = seconds_of(interval.start_ms, interval.end_ms + settle_ms);
                seconds = seconds
                    .into_iter()
                    .flat_map(|r| {
                        [
                            r.start..cut.start.clamp(r.start, r.end),
                            cut.end.clamp(r.start, r.end)..r.end,
                        ]
                    })
                    .filter(|r| r.start < r.end)
                    .collect();
            }
            vec![WindowInstance {
                label: "steady".into(),
                seconds,
                not_run: None,
            }]
        }
        Window::Faults | Window::Fault(_) => intervals
            .iter()
            .filter(|i| !matches!(window, Window::Fault(name) if *name != i.fault))
            .map(|i| {
                let label = format!("during {} #{}", i.fault, i.occurrence + 1);
                if i.happened() {
                    WindowInstance {
                        label,
                        seconds: vec![seconds_of(i.start_ms, i.end_ms)],
                        not_run: None,
                    }
                } else {
                    WindowInstance {
                        label,
                        seconds: Vec::new(),
                        not_run: Some(NotRun {
                            reason: i
                                .reason
                                .clone()
                                .unwrap_or_else(|| "the fault did not happen".into()),
                            required: i.required,
                        }),
                    }
                }
            })
            .collect(),
        Window::After => happened
            .iter()
            .enumerate()
            .map(|(index, i)| {
                let from = seconds_of(i.start_ms, i.end_ms + settle_ms).end;
                let to = happened
                    .get(index + 1)
                    .map_or(run.end, |next| next.start_ms / 1000)
                    .max(from);
                WindowInstance {
                    label: format!("after {} #{}", i.fault, i.occurrence + 1),
                    seconds: std::iter::once(from..to).collect(),
                    not_run: None,
                }
            })
            .filter(|w| w.length() > 0)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An occurrence that happened: started at `start`, effect over at `end`.
    fn done(fault: &str, occurrence: u32, start: u64, end: Option<u64>) -> Occurrence {
        Occurrence {
            fault: fault.into(),
            occurrence,
            required: true,
            status: OccurrenceStatus::Happened,
            reason: None,
            targets: vec!["t".into()],
            planned_at_ms: start,
            started_ms: Some(start),
            applied_ms: Some(start + 5),
            ended_ms: end,
        }
    }

    fn not_run(fault: &str, planned: u64, required: bool, reason: &str) -> Occurrence {
        Occurrence {
            fault: fault.into(),
            occurrence: 0,
            required,
            status: OccurrenceStatus::NotRun,
            reason: Some(reason.into()),
            targets: Vec::new(),
            planned_at_ms: planned,
            started_ms: None,
            applied_ms: None,
            ended_ms: None,
        }
    }

    #[test]
    fn the_rounding_rule_covers_floor_start_to_ceil_end_and_at_least_a_second() {
        assert_eq!(seconds_of(0, 2_000), 0..2, "whole seconds stay whole");
        assert_eq!(seconds_of(999, 1_000), 0..1);
        assert_eq!(seconds_of(1_000, 1_001), 1..2);
        assert_eq!(seconds_of(200, 2_001), 0..3, "a touched second is covered");
        assert_eq!(seconds_of(1_500, 1_500), 1..2, "at least one second");
        assert_eq!(seconds_of(10_200, 15_300), 10..16);
    }

    #[test]
    fn intervals_follow_real_timestamps() {
        let occurrences = vec![
            done("kill", 0, 10_200, Some(15_300)),
            done("pause", 0, 30_000, None),
        ];
        let intervals = fault_intervals(&occurrences, 40_000);
        assert_eq!(intervals.len(), 2);
        assert_eq!(
            (intervals[0].start_ms, intervals[0].end_ms),
            (10_200, 15_300)
        );
        assert_eq!(
            (intervals[1].start_ms, intervals[1].end_ms),
            (30_000, 40_000),
            "held to the run's end"
        );
    }

    #[test]
    fn steady_excludes_faults_and_their_settle_time() {
        let occurrences = vec![done("kill", 0, 10_200, Some(15_300))];
        let intervals = fault_intervals(&occurrences, 60_000);
        let steady = instances(&Window::Steady, &intervals, 5_000, 60);
        // seconds_of(10_200, 15_300 + 5_000) = 10..21 is cut out.
        assert_eq!(steady[0].seconds, vec![0..10, 21..60]);
        let during = instances(&Window::Faults, &intervals, 5_000, 60);
        assert_eq!(during[0].seconds, vec![10..16]);
        // "After" begins where steady state resumes: the same rule, the same second.
        let after = instances(&Window::After, &intervals, 5_000, 60);
        assert_eq!(after[0].seconds, vec![21..60]);
    }

    #[test]
    fn an_instantaneous_fault_ends_when_its_target_is_healthy_again() {
        // A container restart at 20.0 s whose container served again at 23.4 s: the window
        // is 20..24, "after" starts at ceil(23.4 s + 2 s) = 26 — not at the run's end.
        let occurrences = vec![
            done("restart", 0, 20_000, Some(23_400)),
            done("restart", 1, 40_000, Some(41_100)),
        ];
        let intervals = fault_intervals(&occurrences, 60_000);
        let during = instances(&Window::Fault("restart".into()), &intervals, 2_000, 60);
        assert_eq!(during.len(), 2);
        assert_eq!(during[0].seconds, vec![20..24]);
        assert_eq!(during[1].seconds, vec![40..42]);
        let after = instances(&Window::After, &intervals, 2_000, 60);
        assert_eq!(after[0].seconds, vec![26..40]);
        assert_eq!(after[1].seconds, vec![44..60]);
        let steady = instances(&Window::Steady, &intervals, 2_000, 60);
        assert_eq!(steady[0].seconds, vec![0..20, 26..40, 44..60]);
    }

    #[test]
    fn a_window_not_healthy_again_closes_at_its_effect() {
        let mut gone = done("kill", 0, 3_000, Some(6_000));
        gone.status = OccurrenceStatus::NotHealthyAgain;
        gone.reason = Some("not healthy again within effect = 2s of its recovery".into());
        let intervals = fault_intervals(&[gone], 10_000);
        assert_eq!(intervals[0].status, OccurrenceStatus::NotHealthyAgain);
        assert!(
            intervals[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("effect = 2s")
        );
        let during = instances(&Window::Faults, &intervals, 1_000, 10);
        assert_eq!(during[0].seconds, vec![3..6]);
        assert_eq!(during[0].not_run, None, "it happened: judged, not skipped");
    }

    #[test]
    fn not_run_occurrences_mark_their_fault_windows_and_leave_the_rest_alone() {
        let occurrences = vec![
            done("kill", 0, 2_000, Some(3_000)),
            not_run(
                "freeze",
                40_000,
                true,
                "the run ended at 5.0 s, before this occurrence was due at 40.0 s",
            ),
            not_run(
                "spare",
                1_000,
                false,
                "refused at run time: would leave none",
            ),
        ];
        let intervals = fault_intervals(&occurrences, 5_000);
        assert_eq!(intervals.len(), 3);
        assert!(
            intervals
                .iter()
                .filter(|i| !i.happened())
                .all(|i| i.start_ms == i.end_ms)
        );
        assert_eq!(happened_only(&intervals), vec!["kill"]);

        let freeze = instances(&Window::Fault("freeze".into()), &intervals, 1_000, 5);
        assert_eq!(freeze.len(), 1);
        assert!(freeze[0].seconds.is_empty());
        let why = freeze[0].not_run.as_ref().expect("marked not run");
        assert!(why.required);
        assert!(
            why.reason.contains("before this occurrence was due"),
            "{}",
            why.reason
        );

        let all = instances(&Window::Faults, &intervals, 1_000, 5);
        let marks: Vec<(String, Option<bool>)> = all
            .iter()
            .map(|w| (w.label.clone(), w.not_run.as_ref().map(|n| n.required)))
            .collect();
        assert_eq!(
            marks,
            vec![
                ("during spare #1".to_string(), Some(false)),
                ("during kill #1".to_string(), None),
                ("during freeze #1".to_string(), Some(true)),
            ]
        );
        // Steady state and "after" ignore what did not happen.
        let steady = instances(&Window::Steady, &intervals, 1_000, 5);
        assert_eq!(steady[0].seconds, vec![0..2, 4..5]);
        let after = instances(&Window::After, &intervals, 1_000, 5);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].seconds, vec![4..5]);
    }

    fn happened_only(intervals: &[Interval]) -> Vec<String> {
        super::happened(intervals)
            .into_iter()
            .map(|i| i.fault)
            .collect()
    }
}
