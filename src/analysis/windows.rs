//! Windows of a run, in whole seconds of the series, derived from the real fault timestamps
//! recorded in the run's events (not from the plan: a fault injected late is judged late).

use std::ops::Range;

use crate::chaos::runner::FaultEvent;
use crate::slo::Window;

/// One fault occurrence as it really happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Interval {
    pub fault: String,
    pub occurrence: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub targets: Vec<String>,
    /// The occurrence never happened: its windows are `not_run`.
    pub not_run: Option<NotRun>,
}

/// Why a planned fault occurrence did not happen, and whether the run needed it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NotRun {
    pub reason: String,
    pub required: bool,
}

/// Fault occurrences from the events: first inject → last recover of the occurrence (the
/// run's end if it was never recovered; the inject itself for instantaneous actions).
pub fn fault_intervals(events: &[FaultEvent], run_end_ms: u64) -> Vec<Interval> {
    let mut intervals: Vec<Interval> = Vec::new();
    for event in events {
        let found = intervals
            .iter_mut()
            .find(|i| i.fault == event.fault && i.occurrence == event.occurrence);
        match (event.kind.as_str(), found) {
            ("inject", Some(interval)) => {
                interval.targets.extend(event.target.clone());
            }
            ("inject", None) => intervals.push(Interval {
                fault: event.fault.clone(),
                occurrence: event.occurrence,
                start_ms: event.offset_ms,
                end_ms: u64::MAX,
                targets: event.target.clone().into_iter().collect(),
                not_run: None,
            }),
            ("recover", Some(interval)) => {
                interval.end_ms = if interval.end_ms == u64::MAX {
                    event.offset_ms
                } else {
                    interval.end_ms.max(event.offset_ms)
                };
            }
            _ => {}
        }
    }
    let instantaneous: Vec<bool> = intervals.iter().map(|i| i.end_ms == u64::MAX).collect();
    for (interval, open) in intervals.iter_mut().zip(instantaneous) {
        if open {
            // Never recovered by an event: held to the run's end, or instantaneous.
            let recovered_at_once = events.iter().any(|e| {
                e.fault == interval.fault
                    && e.occurrence == interval.occurrence
                    && e.kind == "recover"
            });
            interval.end_ms = if recovered_at_once {
                interval.start_ms
            } else {
                run_end_ms
            };
        }
    }
    intervals.sort_by_key(|i| i.start_ms);
    intervals
}

/// A labelled set of seconds to judge an objective over.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowInstance {
    pub label: String,
    pub seconds: Vec<Range<u64>>,
    pub not_run: Option<NotRun>,
}

impl WindowInstance {
    pub fn contains(&self, second: u64) -> bool {
        self.seconds.iter().any(|r| r.contains(&second))
    }

    pub fn length(&self) -> u64 {
        self.seconds.iter().map(|r| r.end - r.start).sum()
    }
}

/// The second range [floor(start), ceil(end)) touched by a millisecond interval; at least
/// one second long.
pub fn seconds_of(start_ms: u64, end_ms: u64) -> Range<u64> {
    let start = start_ms / 1000;
    let end = end_ms.div_ceil(1000).max(start + 1);
    start..end
}

pub fn instances(
    window: &Window,
    intervals: &[Interval],
    settle_ms: u64,
    run_seconds: u64,
) -> Vec<WindowInstance> {
    let run = 0..run_seconds.max(1);
    match window {
        Window::Run => vec![WindowInstance {
            label: "run".into(),
            seconds: vec![run],
            not_run: None,
        }],
        Window::Steady => {
            let mut seconds = vec![run];
            for interval in intervals {
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
            .map(|i| WindowInstance {
                label: format!("during {} #{}", i.fault, i.occurrence + 1),
                seconds: vec![seconds_of(i.start_ms, i.end_ms)],
                not_run: None,
            })
            .collect(),
        Window::After => intervals
            .iter()
            .enumerate()
            .map(|(index, i)| {
                let from = (i.end_ms + settle_ms) / 1000;
                let to = intervals
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

    fn event(kind: &str, fault: &str, occurrence: u32, offset_ms: u64) -> FaultEvent {
        FaultEvent {
            offset_ms,
            fault: fault.into(),
            occurrence,
            kind: kind.into(),
            target: Some("t".into()),
            message: None,
        }
    }

    #[test]
    fn intervals_follow_real_timestamps() {
        let events = vec![
            event("inject", "kill", 0, 10_200),
            event("recover", "kill", 0, 15_300),
            event("inject", "pause", 0, 30_000),
        ];
        let intervals = fault_intervals(&events, 40_000);
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
        let events = vec![
            event("inject", "kill", 0, 10_200),
            event("recover", "kill", 0, 15_300),
        ];
        let intervals = fault_intervals(&events, 60_000);
        let steady = instances(&Window::Steady, &intervals, 5_000, 60);
        assert_eq!(steady[0].seconds, vec![0..10, 21..60]);
        let during = instances(&Window::Faults, &intervals, 5_000, 60);
        assert_eq!(during[0].seconds, vec![10..16]);
        let after = instances(&Window::After, &intervals, 5_000, 60);
        assert_eq!(after[0].seconds, vec![20..60]);
    }
}
