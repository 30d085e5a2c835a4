//! The fault timeline of a run: inject each occurrence at its moment, recover it at its end,
//! watch each target until it is healthy again (`effect.rs`), record every step as a typed
//! event and every planned occurrence's outcome, and recover whatever is still applied when
//! the run ends — normally, on Ctrl-C/SIGTERM (the run ends early), or on panic (`Drop`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

mod choose;
mod inject;
mod preflight;
mod recovery;

pub use preflight::{Verdict, preflight};

use super::Target;
use super::ledger::{Ledger, LedgerRecord};
use super::lifecycle::{Confirming, Dispatch, Planned, recover_within};
pub use super::outcome::{EventKind, Occurrence, OccurrenceStatus};
use super::outcome::{OccurrenceBook, TargetEnd};
use crate::chaos::TargetId;
use crate::plan::chaos::{ChaosPlan, FaultSpec};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultEvent {
    /// Milliseconds from the run's start.
    pub offset_ms: u64,
    pub fault: String,
    pub occurrence: u32,
    pub kind: EventKind,
    pub target: Option<String>,
    pub message: Option<String>,
}

/// What the timeline did, for summary.json and the exit code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChaosReport {
    pub events: Vec<FaultEvent>,
    /// One per planned occurrence of every fault: what happened, and its effect window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub occurrences: Vec<Occurrence>,
    /// Faults that could not be put back: a human must act. Each says what and why.
    pub unrecovered: Vec<String>,
    /// Kubernetes targets: ready replicas over the run and when replacements became Ready.
    #[serde(default)]
    pub readiness: Vec<serde_json::Value>,
}

struct Active<D: Dispatch> {
    entry: String,
    /// The occurrence's index in the book.
    index: usize,
    fault: String,
    occurrence: u32,
    target: Target,
    /// Its undo, effect (always `Held` once active: nothing else waits for a recovery)
    /// and health check.
    planned: Planned<D::Undo, D::Check>,
    /// The apply succeeded: its effect window is open until the target is healthy again.
    applied: bool,
}

/// An injection applied and waiting for its confirmation: what settling it needs.
struct Injection<D: Dispatch> {
    fault: FaultSpec,
    index: usize,
    occurrence: u32,
    target: Target,
    planned: Planned<D::Undo, D::Check>,
    /// Its ledger record, written `applying` before the apply.
    record: LedgerRecord<D::Undo>,
    applied_ms: u64,
}

/// A confirmation under way beside the timeline.
struct PendingConfirmation<D: Dispatch> {
    injection: Injection<D>,
    confirmation: Confirming,
    /// Its planned recovery came while it was being confirmed: recovered as soon as it
    /// is settled (an ineffective rule is undone by settling it anyway).
    recovery_due: bool,
}

/// A target's effect window being watched: resolves to its occurrence, its event, its end.
type Watching = JoinHandle<(usize, FaultEvent, TargetEnd)>;

/// Target ids whose effect watch has not seen them healthy again.
type NotHealthy = Arc<std::sync::Mutex<HashSet<TargetId>>>;

/// How the run steers its timeline.
#[derive(Clone, Default)]
pub struct Controls {
    /// The load has ended (plan end, interrupt, abort): from this instant nothing more is
    /// injected and everything still applied is recovered, while the engine drains.
    pub stop: CancellationToken,
    /// The engine has drained: effect watches end here.
    pub drained: CancellationToken,
    /// A second interrupt: skip the recoveries not yet begun (the one in progress runs to
    /// its deadline); they stay in the ledger, listed as unrecovered.
    pub abandon: CancellationToken,
}

/// The fault timeline, generic over the backends it drives (`backends::Backends` in a
/// run): it knows the lifecycle's types and nothing of any backend.
pub struct Timeline<D: Dispatch> {
    plan: Arc<ChaosPlan>,
    backends: D,
    /// Puts targets back from their undo alone (also from `Drop`, on a thread of its own).
    recovery: D::Recovery,
    ledger: Ledger,
    start: Instant,
    rng: SmallRng,
    active: Vec<Active<D>>,
    report: ChaosReport,
    book: OccurrenceBook,
    watches: Vec<Watching>,
    /// Applied faults whose confirmation is still under way (packet rules waiting for
    /// traffic): settled as they finish, or unverified at their recovery or the run's stop.
    confirming: Vec<PendingConfirmation<D>>,
    /// Targets recovered (or restarted by their fault) but not seen healthy again: their
    /// effect watch adds them and takes them off when the health check passes. The
    /// guardrails count them as down — a restarted process still starting is up to its
    /// backend's listing, not to the platform.
    not_healthy: NotHealthy,
    /// The run's controls, once `run` has them.
    controls: Controls,
    /// When `stop` fired: where windows held to the run's end close.
    run_end_ms: Option<u64>,
    /// Each event also goes here as it happens, for the live progress output.
    live: Option<tokio::sync::mpsc::UnboundedSender<FaultEvent>>,
}

enum Step {
    Inject(usize, u32),
    Recover(usize, u32),
}

/// When a recovery happens: mid-run (the target is then watched), or at the run's end.
#[derive(Clone, Copy, PartialEq)]
enum When {
    Planned,
    RunEnd,
}

impl<D: Dispatch> Timeline<D> {
    pub fn new(
        plan: Arc<ChaosPlan>,
        backends: D,
        ledger: Ledger,
        start: Instant,
        seed: u64,
    ) -> Timeline<D> {
        Timeline {
            plan,
            recovery: backends.recovery(),
            backends,
            ledger,
            start,
            rng: SmallRng::seed_from_u64(seed ^ 0xC4A0_5EED),
            active: Vec::new(),
            report: ChaosReport::default(),
            book: OccurrenceBook::default(),
            watches: Vec::new(),
            confirming: Vec::new(),
            not_healthy: NotHealthy::default(),
            controls: Controls::default(),
            run_end_ms: None,
            live: None,
        }
    }

    /// Also sends every event to `live` as it happens.
    pub fn with_live_events(
        mut self,
        live: tokio::sync::mpsc::UnboundedSender<FaultEvent>,
    ) -> Timeline<D> {
        self.live = Some(live);
        self
    }

    fn offset_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Plays the timeline until it is done or `controls.stop` fires (the load's end), then
    /// at once recovers everything still applied, waits for the engine to drain (the
    /// effect watches end then) and settles every planned occurrence.
    pub async fn run(mut self, controls: Controls) -> ChaosReport {
        self.controls = controls.clone();
        let stop = controls.stop.clone();
        let mut steps = self.plan_steps();
        // What backends watch for the whole run (pod readiness: when replacements became
        // Ready).
        let watch_stop = CancellationToken::new();
        let watches = self
            .backends
            .side_watches(&self.plan.faults, self.start, &watch_stop)
            .await;
        // At equal times recover first, so a repeated fault never overlaps itself.
        steps.sort_by_key(|(at, step)| (*at, matches!(step, Step::Inject(..))));
        'steps: for (at, step) in steps {
            loop {
                tokio::select! {
                    // A stop due at the same instant as a step wins: nothing is injected
                    // after it.
                    biased;
                    _ = stop.cancelled() => break 'steps,
                    _ = sleep_until(self.start + at) => break,
                    done = self.next_confirmation(), if !self.confirming.is_empty() => {
                        self.settle_confirmed(done).await;
                    }
                }
            }
            match step {
                Step::Inject(index, occurrence) => self.inject(index, occurrence).await,
                Step::Recover(index, occurrence) => self.recover_step(index, occurrence).await,
            }
        }
        while !self.confirming.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                done = self.next_confirmation() => self.settle_confirmed(done).await,
            }
        }
        stop.cancelled().await;
        self.settle_confirming_now("the run stopped before traffic was seen")
            .await;
        let run_end_ms = self.offset_ms();
        self.run_end_ms = Some(run_end_ms);
        self.recover_where(|_| true, When::RunEnd).await;
        tokio::select! {
            _ = controls.drained.cancelled() => {}
            _ = controls.abandon.cancelled() => {}
        }
        for watching in std::mem::take(&mut self.watches) {
            if let Ok((index, event, end)) = watching.await {
                self.report.events.push(event);
                self.book.ended(index, end);
            }
        }
        watch_stop.cancel();
        for watch in watches {
            if let Ok(seen) = watch.await {
                self.report.readiness.push(seen);
            }
        }
        self.close_book(run_end_ms);
        // Watches report when they end; keep the events in time order (stable: ties keep
        // the order they were recorded in).
        self.report.events.sort_by_key(|e| e.offset_ms);
        std::mem::take(&mut self.report)
    }

    /// Every planned occurrence, entered in the book, as its inject step and (held) its
    /// recover step.
    fn plan_steps(&mut self) -> Vec<(Duration, Step)> {
        let mut steps: Vec<(Duration, Step)> = Vec::new();
        for (index, fault) in self.plan.faults.iter().enumerate() {
            for (occurrence, (start, end)) in fault.occurrences().into_iter().enumerate() {
                self.book.plan(
                    &fault.name,
                    occurrence as u32,
                    fault.required,
                    start.as_millis() as u64,
                );
                steps.push((start, Step::Inject(index, occurrence as u32)));
                if let Some(end) = end {
                    steps.push((end, Step::Recover(index, occurrence as u32)));
                }
            }
        }
        steps
    }

    /// An occurrence's planned recovery: a confirmation still pending learns that it is
    /// due, and what the occurrence applied is recovered.
    async fn recover_step(&mut self, index: usize, occurrence: u32) {
        let name = self.plan.faults[index].name.clone();
        for pending in &mut self.confirming {
            let i = &pending.injection;
            if i.fault.name == name && i.occurrence == occurrence {
                pending.recovery_due = true;
            }
        }
        self.recover_where(
            |a| a.fault == name && a.occurrence == occurrence,
            When::Planned,
        )
        .await
    }

    /// Settles every planned occurrence at the run's end; one never attempted is reported
    /// `not_run`.
    fn close_book(&mut self, run_end_ms: u64) {
        let never = self.book.never_attempted();
        let occurrences = std::mem::take(&mut self.book).finish(run_end_ms);
        for index in never {
            let o = &occurrences[index];
            self.report.events.push(FaultEvent {
                offset_ms: run_end_ms,
                fault: o.fault.clone(),
                occurrence: o.occurrence,
                kind: EventKind::NotRun,
                target: None,
                message: o.reason.clone(),
            });
        }
        self.report.occurrences = occurrences;
    }

    /// Records an event now; returns its offset.
    fn event(
        &mut self,
        fault: &FaultSpec,
        occurrence: u32,
        kind: EventKind,
        target: Option<&Target>,
        message: Option<String>,
    ) -> u64 {
        let offset_ms = self.offset_ms();
        self.event_at(offset_ms, fault, occurrence, kind, target, message)
    }

    fn event_at(
        &mut self,
        offset_ms: u64,
        fault: &FaultSpec,
        occurrence: u32,
        kind: EventKind,
        target: Option<&Target>,
        message: Option<String>,
    ) -> u64 {
        let event = FaultEvent {
            offset_ms,
            fault: fault.name.clone(),
            occurrence,
            kind,
            target: target.map(target_label),
            message,
        };
        if let Some(live) = &self.live {
            let _ = live.send(event.clone());
        }
        self.report.events.push(event);
        offset_ms
    }
}

/// How events and occurrences name a target: `name (id)`.
fn target_label(target: &Target) -> String {
    format!("{} ({})", target.name, target.id)
}

impl<D: Dispatch> Drop for Timeline<D> {
    /// On panic (or any early drop) nothing may stay broken: recover on a thread of our own,
    /// since the runtime that ran us may be unwinding.
    fn drop(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let undos: Vec<D::Undo> = self
            .active
            .drain(..)
            .rev()
            .map(|a| a.planned.undo)
            .collect();
        let deadline = self.plan.backend_timeout;
        let recovery = self.recovery.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for undo in &undos {
                    let _ = recover_within(&recovery, undo, deadline).await;
                }
            });
        })
        .join();
    }
}

/// The set, even if a watch panicked holding it (a set of ids cannot be left half-written).
fn lock(set: &NotHealthy) -> std::sync::MutexGuard<'_, HashSet<TargetId>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
