//! Ending what the timeline applied: recovering held steps (last applied, first undone),
//! watching each target until it is healthy again, and what a skipped recovery leaves.

use tokio::time::Instant;

use super::{Active, EventKind, FaultEvent, Timeline, When, lock, target_label};
use crate::chaos::ChaosError;
use crate::chaos::effect::Watch;
use crate::chaos::ledger::{EntryState, LedgerRecord, now};
use crate::chaos::lifecycle::{Dispatch, Effect, recover_within};
use crate::chaos::outcome::TargetEnd;
use crate::plan::chaos::FaultSpec;

impl<D: Dispatch> Timeline<D> {
    /// Spawns the effect watch of one target, from now.
    pub(super) fn watch(&mut self, fault: &FaultSpec, active: &Active<D>, since: &'static str) {
        let watch = Watch {
            probe: self.backends.probe(),
            check: active.planned.check.clone(),
            run_start: self.start,
            deadline: fault.effect.map(|e| Instant::now() + e),
            since,
            effect: fault.effect,
            target: target_label(&active.target),
        };
        let (index, fault_name, occurrence) = (active.index, fault.name.clone(), active.occurrence);
        let target = watch.target.clone();
        let (stop, live) = (self.controls.drained.clone(), self.live.clone());
        let (not_healthy, id) = (self.not_healthy.clone(), active.target.id.clone());
        lock(&not_healthy).insert(id.clone());
        self.watches.push(tokio::spawn(async move {
            let end = watch.run(stop).await;
            if end.healthy {
                lock(&not_healthy).remove(&id);
            }
            let event = FaultEvent {
                offset_ms: end.at_ms,
                fault: fault_name,
                occurrence,
                kind: if end.healthy {
                    EventKind::Ended
                } else {
                    EventKind::NotHealthyAgain
                },
                target: Some(target),
                message: end.reason.clone(),
            };
            if let Some(live) = live {
                let _ = live.send(event.clone());
            }
            (index, event, end)
        }));
    }

    pub(super) async fn recover_where(&mut self, wanted: impl Fn(&Active<D>) -> bool, when: When) {
        let (due, keep): (Vec<Active<D>>, Vec<Active<D>>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|a| wanted(a));
        self.active = keep;
        // Last applied, first undone: a later fault may depend on an earlier one's state.
        for active in due.into_iter().rev() {
            if self.controls.abandon.is_cancelled() {
                self.abandoned(active);
                continue;
            }
            let outcome = recover_within(
                &self.recovery,
                &active.planned.undo,
                self.plan.backend_timeout,
            )
            .await;
            self.write_recovery(&active, &outcome);
            let fault = self
                .plan
                .faults
                .iter()
                .find(|f| f.name == active.fault)
                .cloned();
            if let Some(fault) = &fault {
                self.report_recovery(fault, &active, &outcome, when);
            }
            if let Err(e) = outcome {
                self.report.unrecovered.push(format!(
                    "{} on {} ({}): {e} — undo by hand: {}",
                    active.fault,
                    active.target.name,
                    active.target.id,
                    serde_json::to_string(&active.planned.undo).unwrap_or_default()
                ));
            }
        }
    }

    /// The ledger's record of one recovery: recovered, or failed and why.
    fn write_recovery(&mut self, active: &Active<D>, outcome: &Result<(), ChaosError>) {
        let record = LedgerRecord {
            entry: active.entry.clone(),
            fault: active.fault.clone(),
            target: active.target.clone(),
            undo: active.planned.undo.clone(),
            state: if outcome.is_ok() {
                EntryState::Recovered
            } else {
                EntryState::RecoverFailed
            },
            at: now(),
            message: outcome.as_ref().err().map(|e| e.to_string()),
        };
        let _ = self.ledger.write(&record);
    }

    /// What one recovery tells: its event (a held step's, or a failure), and for a step
    /// that was applied how its target ended: not healthy, held to the run's end, or
    /// watched from now.
    fn report_recovery(
        &mut self,
        fault: &FaultSpec,
        active: &Active<D>,
        outcome: &Result<(), ChaosError>,
        when: When,
    ) {
        // A step with nothing to undo (an instantaneous one whose apply failed)
        // has no recovery to report, unless that failed too.
        if active.planned.effect == Effect::Held || outcome.is_err() {
            self.event(
                fault,
                active.occurrence,
                if outcome.is_ok() {
                    EventKind::Recovered
                } else {
                    EventKind::Failed
                },
                Some(&active.target),
                outcome.as_ref().err().map(|e| e.to_string()),
            );
        }
        if active.applied {
            match (outcome, when) {
                (Err(e), _) => {
                    let reason = format!("could not be recovered: {e}");
                    let at = self.event(
                        fault,
                        active.occurrence,
                        EventKind::NotHealthyAgain,
                        Some(&active.target),
                        Some(reason.clone()),
                    );
                    self.ended_unhealthy(active, at, reason);
                }
                // Held to the run's end: the effect lasts as long as the run.
                (Ok(()), When::RunEnd) => {
                    let at = self.run_end_ms.unwrap_or_else(|| self.offset_ms());
                    self.event_at(
                        at,
                        fault,
                        active.occurrence,
                        EventKind::Ended,
                        Some(&active.target),
                        Some("held to the run's end".to_string()),
                    );
                    self.book.ended(
                        active.index,
                        TargetEnd {
                            target: target_label(&active.target),
                            at_ms: at,
                            healthy: true,
                            reason: None,
                        },
                    );
                }
                (Ok(()), When::Planned) => self.watch(fault, active, "recovery"),
            }
        }
    }

    /// A recovery skipped by a second interrupt: the ledger still shows it applied, so
    /// `loadgen recover` finds it.
    pub(super) fn abandoned(&mut self, active: Active<D>) {
        let message = "recovery skipped by a second interrupt: still applied".to_string();
        if let Some(fault) = self
            .plan
            .faults
            .iter()
            .find(|f| f.name == active.fault)
            .cloned()
        {
            self.event(
                &fault,
                active.occurrence,
                EventKind::Failed,
                Some(&active.target),
                Some(message.clone()),
            );
            if active.applied {
                let at = self.offset_ms();
                self.ended_unhealthy(&active, at, message.clone());
            }
        }
        self.report.unrecovered.push(format!(
            "{} on {} ({}): {message}",
            active.fault, active.target.name, active.target.id
        ));
    }

    /// Closes an applied target's effect window as not healthy again, at `at_ms`.
    pub(super) fn ended_unhealthy(&mut self, active: &Active<D>, at_ms: u64, reason: String) {
        self.book.ended(
            active.index,
            TargetEnd {
                target: target_label(&active.target),
                at_ms,
                healthy: false,
                reason: Some(reason),
            },
        );
    }
}
