//! A run's fault timeline against what a test saw from outside: where an instant falls on
//! the run's clock, the run's one occurrence, an event's offset, and an outage watched while
//! a drill runs in-process.

use std::path::Path;
use std::time::{Duration, SystemTime};

use loadgen::api::chaos::{EventKind, Occurrence};
use loadgen::api::record::Summary;

use crate::support::{Workspace, options, run_ok};

/// Where `at` (a wall-clock instant the test observed) falls on the run's own clock, in ms
/// from its start. The run's clock starts a little after `started_at` (the engine starts
/// its clock ≈ 50 ms after the run directory is made), so this reads up to that much late —
/// well inside the 1 s the effect tests allow, and printed by them.
pub fn run_offset_ms(summary: &Summary, at: SystemTime) -> i64 {
    let started: jiff::Timestamp = summary.started_at.parse().expect("started_at parses");
    let at = jiff::Timestamp::try_from(at).expect("a wall-clock instant");
    at.duration_since(started).as_millis() as i64
}

/// The one occurrence of a run's one fault.
pub fn only_occurrence(summary: &Summary) -> &Occurrence {
    assert_eq!(
        summary.faults.occurrences.len(),
        1,
        "{:#?}",
        summary.faults.occurrences
    );
    &summary.faults.occurrences[0]
}

/// The first offset of an event of `kind`.
pub fn event_at(summary: &Summary, kind: EventKind) -> u64 {
    summary
        .faults
        .events
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} event: {:#?}", summary.faults.events))
        .offset_ms
}

/// Runs the drill in-process while polling `probe` every 10 ms; returns the summary and
/// when the probe first went false and first came true again.
pub fn run_watching(
    file: &Path,
    workspace: &Workspace,
    within: Duration,
    probe: impl FnMut() -> bool,
) -> (Summary, Option<SystemTime>, Option<SystemTime>) {
    let run_options = options(file, &workspace.out());
    let runner = std::thread::spawn(move || run_ok(&run_options));
    let (down, back) = watch_outage(within, probe);
    let (_, summary) = runner.join().unwrap();
    (summary, down, back)
}

/// Polls `probe` every 10 ms until `within` has passed; returns when it first went false
/// and when it was first true again after that.
pub fn watch_outage(
    within: Duration,
    mut probe: impl FnMut() -> bool,
) -> (Option<SystemTime>, Option<SystemTime>) {
    let deadline = std::time::Instant::now() + within;
    let (mut down, mut back) = (None, None);
    while std::time::Instant::now() < deadline && back.is_none() {
        let up = probe();
        let now = SystemTime::now();
        match (up, down) {
            (false, None) => down = Some(now),
            (true, Some(_)) => back = Some(now),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (down, back)
}
