//! The path a run takes, for the tests: a `ChaosPlan` on the fake API, its pre-flight (the
//! targets each fault would hit, or why it is refused — reading only) and its `Timeline`
//! (resolve, choose, plan, ledger, apply, recover), with the ledger that timeline wrote.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loadgen::api::chaos::Registry;
use loadgen::api::chaos::Undo;
use loadgen::api::chaos::{ChaosReport, Controls, EventKind, FaultEvent, Timeline, Verdict};
use loadgen::api::chaos::{EntryState, LEDGER_FILE, Ledger, LedgerRecord};
use loadgen::api::plan::{Action, ChaosPlan, FaultSpec, Guard, MaxUnavailable, Mode, Selector};

use super::fake_api::FakeApi;

/// A plan on the fake API whose faults may touch namespace `shop`.
pub(super) fn plan(api: &FakeApi, faults: Vec<FaultSpec>) -> ChaosPlan {
    ChaosPlan {
        kube_api: Some(api.url()),
        kube_namespaces: vec!["shop".into()],
        faults,
        ..ChaosPlan::default()
    }
}

/// A fault at the run's start on the first target up, with the default guard.
pub(super) fn fault(name: &str, action: Action, selector: Selector) -> FaultSpec {
    FaultSpec {
        name: name.into(),
        at: Duration::ZERO,
        duration: None,
        repeat: 0,
        every: None,
        action,
        selector,
        mode: Mode::One,
        guard: Guard::default(),
        among: None,
        effect: None,
        required: true,
    }
}

/// Pods of namespace `shop`.
pub(super) fn pods(labels: &str) -> Selector {
    Selector::Pods {
        namespace: "shop".into(),
        selector: labels.into(),
    }
}

/// Deployment `shop/api`.
pub(super) fn deployment() -> Selector {
    Selector::Deployment {
        namespace: "shop".into(),
        name: "api".into(),
    }
}

/// At most `max` down at once, never the last one up.
pub(super) fn limit(max: MaxUnavailable) -> Guard {
    Guard {
        max_unavailable: max,
        allow_last: false,
    }
}

/// Each fault's pre-flight verdict, by fault: `hits a, b`, `refused: …` or `error: …`.
pub(super) async fn preflight(plan: &ChaosPlan) -> Vec<(String, String)> {
    let mut backends = loadgen::api::run::fault_backends(plan);
    loadgen::api::chaos::preflight(plan, &mut backends)
        .await
        .into_iter()
        .map(|line| {
            let verdict = match line.verdict {
                Verdict::Hits { hit, .. } => format!("hits {}", hit.join(", ")),
                Verdict::Refused(message) => format!("refused: {message}"),
                Verdict::Error(message) => format!("error: {message}"),
            };
            (line.fault, verdict)
        })
        .collect()
}

/// The kinds of a report's events, in time order.
pub(super) fn kinds(report: &ChaosReport) -> Vec<EventKind> {
    report.events.iter().map(|e| e.kind).collect()
}

/// The report's events of one kind.
pub(super) fn events(report: &ChaosReport, kind: EventKind) -> Vec<&FaultEvent> {
    report.events.iter().filter(|e| e.kind == kind).collect()
}

/// The states a ledger's records went through, in order.
pub(super) fn states(records: &[LedgerRecord<Undo>]) -> Vec<EntryState> {
    records.iter().map(|r| r.state).collect()
}

/// A ledger file's records.
pub(super) fn parse(ledger: &str) -> Vec<LedgerRecord<Undo>> {
    ledger
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// One run's timeline, in a run directory of its own.
pub(super) struct Drill {
    dir: tempfile::TempDir,
}

impl Drill {
    pub(super) fn new() -> Drill {
        Drill {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Where the timeline writes its ledger (known before it runs, so a fake API can read
    /// it at the moment of a change).
    pub(super) fn ledger(&self) -> PathBuf {
        self.dir.path().join(LEDGER_FILE)
    }

    /// Every record the timeline wrote; none if it wrote none.
    pub(super) fn records(&self) -> Vec<LedgerRecord<Undo>> {
        parse(&std::fs::read_to_string(self.ledger()).unwrap_or_default())
    }

    /// Plays `plan`'s timeline until every fault has been applied, refused, skipped or has
    /// failed, then ends the run there: what is still held is recovered, as at a run's end,
    /// and the effect watches take their last look.
    pub(super) async fn run(&self, plan: ChaosPlan) -> ChaosReport {
        // The run registers itself here, never in ~/.local/state.
        let registry = Registry::at(Some(&self.dir.path().join("state")));
        let ledger = Ledger::create(self.dir.path(), registry).unwrap();
        let backends = loadgen::api::run::fault_backends(&plan);
        let mut due: HashSet<String> = plan.faults.iter().map(|f| f.name.clone()).collect();
        let (live, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        let timeline =
            Timeline::new(Arc::new(plan), backends, ledger, start, 7).with_live_events(live);
        let controls = Controls::default();
        let end = controls.clone();
        tokio::spawn(async move {
            while !due.is_empty() {
                let Some(event) = seen.recv().await else {
                    break;
                };
                let settled = matches!(
                    event.kind,
                    EventKind::Applied
                        | EventKind::Failed
                        | EventKind::Refused
                        | EventKind::Skipped
                );
                if settled {
                    due.remove(&event.fault);
                }
            }
            end.stop.cancel();
            end.drained.cancel();
        });
        tokio::time::timeout(Duration::from_secs(30), timeline.run(controls))
            .await
            .expect("the drill ends once every fault is settled")
    }
}
