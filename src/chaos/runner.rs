//! The fault timeline of a run: inject each occurrence at its moment, recover it at its end,
//! watch each target until it is healthy again (`effect.rs`), record every step as a typed
//! event and every planned occurrence's outcome, and recover whatever is still applied when
//! the run ends — normally, on Ctrl-C/SIGTERM (the run ends early), or on panic (`Drop`).

use std::collections::HashSet;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::backends::{Backends, recover_within, within};
use super::effect::Watch;
use super::guard::{self, Fleet};
use super::ledger::{EntryState, Ledger, LedgerRecord, now};
use super::lifecycle::{Candidate, Confirmation, Effect, Occasion, Planned};
pub use super::outcome::{EventKind, Occurrence, OccurrenceStatus};
use super::outcome::{OccurrenceBook, TargetEnd};
use super::ports::Platform;
use super::undo::Undo;
use super::{ChaosError, Target};
use crate::plan::chaos::{ChaosPlan, FaultSpec, Mode};

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

struct Active {
    entry: String,
    /// The occurrence's index in the book.
    index: usize,
    fault: String,
    occurrence: u32,
    target: Target,
    /// Its undo, effect (always `Held` once active: nothing else waits for a recovery)
    /// and health check.
    planned: Planned,
    /// The apply succeeded: its effect window is open until the target is healthy again.
    applied: bool,
}

/// An injection applied and waiting for its confirmation: what settling it needs.
struct Injection {
    fault: FaultSpec,
    index: usize,
    occurrence: u32,
    target: Target,
    planned: Planned,
    /// Its ledger record, written `applying` before the apply.
    record: LedgerRecord,
    applied_ms: u64,
}

/// A confirmation under way beside the timeline.
struct PendingConfirmation {
    injection: Injection,
    confirmation: super::lifecycle::Confirming,
    /// Its planned recovery came while it was being confirmed: recovered as soon as it
    /// is settled (an ineffective rule is undone by settling it anyway).
    recovery_due: bool,
}

/// A target's effect window being watched: resolves to its occurrence, its event, its end.
type Watching = JoinHandle<(usize, FaultEvent, TargetEnd)>;

/// Target ids whose effect watch has not seen them healthy again.
type NotHealthy = Arc<std::sync::Mutex<HashSet<String>>>;

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

pub struct Timeline {
    plan: Arc<ChaosPlan>,
    platform: Arc<dyn Platform>,
    backends: Backends,
    ledger: Ledger,
    start: Instant,
    rng: SmallRng,
    active: Vec<Active>,
    report: ChaosReport,
    book: OccurrenceBook,
    watches: Vec<Watching>,
    /// Applied faults whose confirmation is still under way (packet rules waiting for
    /// traffic): settled as they finish, or unverified at their recovery or the run's stop.
    confirming: Vec<PendingConfirmation>,
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

impl Timeline {
    pub fn new(
        plan: Arc<ChaosPlan>,
        platform: Arc<dyn Platform>,
        ledger: Ledger,
        start: Instant,
        seed: u64,
    ) -> Timeline {
        let backends = Backends::new(&plan, &platform);
        Timeline {
            plan,
            platform,
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
    ) -> Timeline {
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
        // Pod targets are watched for the whole run: the readiness timeline shows when
        // replacements became Ready.
        let watch_stop = CancellationToken::new();
        let watches = self.start_readiness_watches(&watch_stop).await;
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
                Step::Recover(index, occurrence) => {
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
            match watch.await {
                Ok(Ok(timeline)) => self
                    .report
                    .readiness
                    .push(serde_json::to_value(&timeline).unwrap_or_default()),
                Ok(Err(e)) => self
                    .report
                    .readiness
                    .push(serde_json::json!({ "error": e.to_string() })),
                Err(_) => {}
            }
        }
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
        // Watches report when they end; keep the events in time order (stable: ties keep
        // the order they were recorded in).
        self.report.events.sort_by_key(|e| e.offset_ms);
        std::mem::take(&mut self.report)
    }

    async fn start_readiness_watches(
        &mut self,
        stop: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<Result<super::kube::ReadinessTimeline, ChaosError>>> {
        let mut selectors: Vec<super::kube::PodSelector> = Vec::new();
        for fault in &self.plan.faults {
            if let crate::plan::chaos::Selector::Pods {
                namespace,
                selector,
            } = &fault.selector
            {
                let wanted = super::kube::PodSelector {
                    namespace: namespace.clone(),
                    labels: selector.clone(),
                    fields: None,
                };
                if !selectors.contains(&wanted) {
                    selectors.push(wanted);
                }
            }
        }
        if selectors.is_empty() {
            return Vec::new();
        }
        let pin = super::backends::kube_pin(&self.plan);
        let kube =
            match super::kube::KubeBackend::connect_pinned(self.plan.kube_api.as_deref(), &pin)
                .await
            {
                Ok(kube) => kube,
                Err(e) => {
                    self.report
                        .readiness
                        .push(serde_json::json!({ "error": e.to_string() }));
                    return Vec::new();
                }
            };
        selectors
            .into_iter()
            .map(|selector| {
                let (kube, stop, start) = (kube.clone(), stop.clone(), self.start);
                tokio::spawn(async move { kube.watch_readiness(&selector, start, stop).await })
            })
            .collect()
    }

    async fn inject(&mut self, index: usize, occurrence: u32) {
        let fault = self.plan.faults[index].clone();
        let Some(book_index) = self.book.find(&fault.name, occurrence) else {
            return;
        };
        self.book.attempted(book_index);
        let (candidates, group) = match self.resolve(&fault).await {
            Ok(resolved) => resolved,
            Err(e) => {
                return self.not_run(
                    &fault,
                    book_index,
                    occurrence,
                    EventKind::Failed,
                    e.to_string(),
                );
            }
        };
        // Busy besides the held faults: targets not healthy again, and those whose fault is
        // applied but still being confirmed.
        let mut busy = lock(&self.not_healthy).clone();
        busy.extend(
            self.confirming
                .iter()
                .map(|c| c.injection.target.id.clone()),
        );
        let chosen = match choose(
            &fault,
            &candidates,
            group.as_deref(),
            (&self.active, &busy),
            (&self.plan.allow_targets, &self.plan.policy_targets),
            &mut self.rng,
        ) {
            Ok(chosen) => chosen,
            Err((kind, message)) => {
                return self.not_run(&fault, book_index, occurrence, kind, message);
            }
        };
        let ready_before = candidates.iter().filter(|(_, up)| *up).count();
        for target in chosen {
            // A stop while the targets are resolved or hit: the rest are left alone.
            if self.controls.stop.is_cancelled() {
                break;
            }
            self.inject_one(&fault, book_index, occurrence, target, ready_before)
                .await;
        }
    }

    /// The fault's candidate targets (each with whether it is up) and the replica set its
    /// guardrails count (`among`).
    async fn resolve(
        &mut self,
        fault: &FaultSpec,
    ) -> Result<(Vec<Candidate>, Option<Vec<Candidate>>), ChaosError> {
        let deadline = self.plan.backend_timeout;
        let candidates = within(
            deadline,
            "resolving targets",
            self.backends.resolve(&fault.selector),
        )
        .await?;
        let group = match &fault.among {
            Some(among) => {
                Some(within(deadline, "resolving `among`", self.backends.resolve(among)).await?)
            }
            None => None,
        };
        Ok((candidates, group))
    }

    fn not_run(
        &mut self,
        fault: &FaultSpec,
        index: usize,
        occurrence: u32,
        kind: EventKind,
        message: String,
    ) {
        let reason = match kind {
            EventKind::Refused => format!("refused at run time: {message}"),
            EventKind::Skipped => format!("no target: {message}"),
            _ => format!("failed to inject: {message}"),
        };
        self.book.not_run(index, reason);
        self.event(fault, occurrence, kind, None, Some(message));
    }

    async fn inject_one(
        &mut self,
        fault: &FaultSpec,
        index: usize,
        occurrence: u32,
        target: Target,
        ready_before: usize,
    ) {
        let fail = |this: &mut Timeline, message: String| {
            this.failed_on(fault, index, occurrence, &target, message)
        };
        let deadline = self.plan.backend_timeout;
        let planned = match within(
            deadline,
            "planning the fault",
            self.backends
                .plan(&target, fault, Occasion { ready_before }),
        )
        .await
        {
            Ok(planned) => planned,
            Err(e) => return fail(self, e.to_string()),
        };
        let entry = format!("{}#{}@{}", fault.name, occurrence, target.id);
        let record = LedgerRecord {
            entry,
            fault: fault.name.clone(),
            target: target.clone(),
            undo: planned.undo.clone(),
            state: EntryState::Applying,
            at: now(),
            message: None,
        };
        // The undo is on disk before anything changes.
        if let Err(e) = self.ledger.write(&record) {
            return fail(self, format!("ledger write failed, fault not applied: {e}"));
        }
        let started = self.event(fault, occurrence, EventKind::Started, Some(&target), None);
        self.book.started(index, started);
        let applied = within(
            deadline,
            "applying",
            self.backends.apply(&target, &fault.action, &planned),
        )
        .await;
        let applied_ms = self.offset_ms();
        let injection = Injection {
            fault: fault.clone(),
            index,
            occurrence,
            target,
            planned,
            record,
            applied_ms,
        };
        let Ok(()) = applied else {
            return self
                .settle_injection(injection, applied, Confirmation::Effective)
                .await;
        };
        // Did it take effect? Most backends know at once; a packet rule must see traffic,
        // which may take its CONFIRM_WITHIN: that wait goes on beside the timeline, so the
        // faults due meanwhile are injected on time.
        let mut confirming = self
            .backends
            .confirm(&injection.target, &injection.planned)
            .await;
        match confirming.as_mut().now_or_never() {
            Some(confirmation) => self.settle_injection(injection, Ok(()), confirmation).await,
            None => self.confirming.push(PendingConfirmation {
                injection,
                confirmation: confirming,
                recovery_due: false,
            }),
        }
    }

    /// Finishes an injection once its confirmation is known: the `applied` event (or the
    /// failure), the ledger, and what is then held, watched or undone.
    async fn settle_injection(
        &mut self,
        injection: Injection,
        mut applied: Result<(), ChaosError>,
        confirmation: Confirmation,
    ) {
        let Injection {
            fault,
            index,
            occurrence,
            target,
            planned,
            mut record,
            applied_ms,
        } = injection;
        let mut note = None;
        match confirmation {
            Confirmation::Effective => {}
            Confirmation::Unverified(why) => note = Some(format!("unverified: {why}")),
            Confirmation::Ineffective(why) => {
                applied = Err(ChaosError::Backend {
                    backend: target.backend.name(),
                    message: format!("ineffective: {why}"),
                })
            }
        }
        match &applied {
            Ok(()) => {
                let at = self.event_at(
                    applied_ms,
                    &fault,
                    occurrence,
                    EventKind::Applied,
                    Some(&target),
                    note,
                );
                self.book.applied(index, &target_label(&target), at);
            }
            Err(e) => self.failed_on(&fault, index, occurrence, &target, e.to_string()),
        }
        record.state = EntryState::Applied;
        record.at = now();
        let _ = self.ledger.write(&record);
        let active = Active {
            entry: record.entry.clone(),
            index,
            fault: fault.name.clone(),
            occurrence,
            target,
            planned,
            applied: applied.is_ok(),
        };
        if applied.is_err() {
            // Nothing to watch; recovery is idempotent, so running it after a failed apply
            // is safe and leaves nothing half-done.
            self.active.push(active);
            let entry = self.active.last().map(|a| a.entry.clone());
            // (`applied` is false: no window to close.)
            self.recover_where(|a| Some(&a.entry) == entry.as_ref(), When::RunEnd)
                .await;
        } else if active.planned.effect.settles_at_apply() {
            // Done at once (a restart's own apply brought it back), or for good (nothing
            // can bring it back): nothing is left to undo, so the ledger entry is settled,
            // and its effect lasts until the target is seen healthy again.
            record.state = EntryState::Recovered;
            record.at = now();
            let _ = self.ledger.write(&record);
            self.watch(&fault, &active, "apply");
        } else {
            self.active.push(active);
        }
    }

    /// Settles every confirmation still under way as unverified, for `why` (the run
    /// stopped): what they applied is then held like any other fault, and undone with it.
    async fn settle_confirming_now(&mut self, why: &str) {
        for confirming in std::mem::take(&mut self.confirming) {
            let why = Confirmation::Unverified(why.to_string());
            self.settle_injection(confirming.injection, Ok(()), why)
                .await;
        }
    }

    /// The next confirmation under way to finish: its position and result. Cancel-safe
    /// (it takes nothing out), so it can race the timeline's next step; the caller settles
    /// it (`settle_confirmed`) outside the race, where nothing can cut that short.
    async fn next_confirmation(&mut self) -> (usize, Confirmation) {
        std::future::poll_fn(|cx| {
            for (position, pending) in self.confirming.iter_mut().enumerate() {
                if let Poll::Ready(confirmation) = pending.confirmation.as_mut().poll(cx) {
                    return Poll::Ready((position, confirmation));
                }
            }
            Poll::Pending
        })
        .await
    }

    async fn settle_confirmed(&mut self, (position, confirmation): (usize, Confirmation)) {
        let done = self.confirming.remove(position);
        let entry = done.injection.record.entry.clone();
        self.settle_injection(done.injection, Ok(()), confirmation)
            .await;
        if done.recovery_due {
            self.recover_where(|a| a.entry == entry, When::Planned)
                .await;
        }
    }

    /// Records a failed injection of `fault` on `target`.
    fn failed_on(
        &mut self,
        fault: &FaultSpec,
        index: usize,
        occurrence: u32,
        target: &Target,
        message: String,
    ) {
        let label = target_label(target);
        self.book
            .not_run(index, format!("failed to inject on {label}: {message}"));
        self.event(
            fault,
            occurrence,
            EventKind::Failed,
            Some(target),
            Some(message),
        );
    }

    /// Spawns the effect watch of one target, from now.
    fn watch(&mut self, fault: &FaultSpec, active: &Active, since: &'static str) {
        let watch = Watch {
            plan: self.plan.clone(),
            platform: self.platform.clone(),
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

    async fn recover_where(&mut self, wanted: impl Fn(&Active) -> bool, when: When) {
        let (due, keep): (Vec<Active>, Vec<Active>) = std::mem::take(&mut self.active)
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
                &active.planned.undo,
                self.plan.backend_timeout,
                &*self.platform,
            )
            .await;
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
            let fault = self
                .plan
                .faults
                .iter()
                .find(|f| f.name == active.fault)
                .cloned();
            if let Some(fault) = &fault {
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
                    match (&outcome, when) {
                        (Err(e), _) => {
                            let reason = format!("could not be recovered: {e}");
                            let at = self.event(
                                fault,
                                active.occurrence,
                                EventKind::NotHealthyAgain,
                                Some(&active.target),
                                Some(reason.clone()),
                            );
                            self.ended_unhealthy(&active, at, reason);
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
                        (Ok(()), When::Planned) => self.watch(fault, &active, "recovery"),
                    }
                }
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

    /// A recovery skipped by a second interrupt: the ledger still shows it applied, so
    /// `loadgen recover` finds it.
    fn abandoned(&mut self, active: Active) {
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
    fn ended_unhealthy(&mut self, active: &Active, at_ms: u64, reason: String) {
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

impl Drop for Timeline {
    /// On panic (or any early drop) nothing may stay broken: recover on a thread of our own,
    /// since the runtime that ran us may be unwinding.
    fn drop(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let undos: Vec<Undo> = self
            .active
            .drain(..)
            .rev()
            .map(|a| a.planned.undo)
            .collect();
        let deadline = self.plan.backend_timeout;
        let platform = self.platform.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for undo in &undos {
                    let _ = recover_within(undo, deadline, &*platform).await;
                }
            });
        })
        .join();
    }
}

/// Which targets an occurrence hits, or why none: (`skipped` | `refused`, message).
/// `group`: the replica set the guardrails count (the fault's `among` selector); by default
/// the selector's own matches. Targets held by an `active` fault, and those in `busy` (not
/// healthy again after a fault, or still being confirmed), are never chosen and count as
/// down.
fn choose(
    fault: &FaultSpec,
    candidates: &[(Target, bool)],
    group: Option<&[(Target, bool)]>,
    (active, busy): (&[Active], &HashSet<String>),
    (allow_targets, policy_targets): (&[String], &[String]),
    rng: &mut SmallRng,
) -> Result<Vec<Target>, (EventKind, String)> {
    if candidates.is_empty() {
        return Err((
            EventKind::Skipped,
            ChaosError::NoTarget(fault.selector.to_string()).to_string(),
        ));
    }
    let allowed = |t: &Target| {
        guard::allowed_target(allow_targets, t) && guard::allowed_target(policy_targets, t)
    };
    if !candidates.iter().any(|(t, _)| allowed(t)) {
        let names: Vec<&str> = candidates.iter().map(|(t, _)| t.name.as_str()).collect();
        let mut limits = Vec::new();
        if !allow_targets.is_empty() {
            limits.push(format!(
                "[chaos] allow_targets ({})",
                allow_targets.join(", ")
            ));
        }
        if !policy_targets.is_empty() {
            limits.push(format!(
                "the operator policy's targets ({})",
                policy_targets.join(", ")
            ));
        }
        return Err((
            EventKind::Refused,
            format!(
                "{} matched only targets outside {}: {}",
                fault.selector,
                limits.join(" and "),
                names.join(", ")
            ),
        ));
    }
    let busy = |t: &Target| active.iter().any(|a| a.target.id == t.id) || busy.contains(&t.id);
    let up: Vec<&Target> = candidates
        .iter()
        .filter(|(t, up)| *up && !busy(t) && allowed(t))
        .map(|(t, _)| t)
        .collect();
    let wanted = fault.mode.count(up.len());
    let group = group.unwrap_or(candidates);
    if wanted == 0 {
        return Err((
            EventKind::Skipped,
            format!("no target of {} is up to fault", fault.selector),
        ));
    }
    if fault.action.takes_down() {
        let ready = group.iter().filter(|(t, up)| *up && !busy(t)).count();
        guard::check(&fault.guard, fleet(group, ready, active), wanted, "target")
            .map_err(|m| (EventKind::Refused, m))?;
    }
    let chosen = match fault.mode {
        Mode::Random => vec![up[rng.random_range(0..up.len())].clone()],
        _ => up.into_iter().take(wanted).cloned().collect(),
    };
    Ok(chosen)
}

/// The replica set `group` as the guardrails count it: its `ready` members up; down, those
/// listed but not up or held by an active fault, and what active faults hold down out of
/// sight (a deployment's scaled-away replicas count against its pods).
fn fleet(group: &[Candidate], ready: usize, active: &[Active]) -> Fleet {
    let unseen: usize = active
        .iter()
        .filter_map(|a| a.planned.holds_down.as_ref())
        .filter(|held| {
            group.iter().any(|(t, _)| {
                let namespace = t.id.split_once('/').map_or("", |(ns, _)| ns);
                held.covers(namespace, &t.labels)
            })
        })
        .map(|held| held.count)
        .sum();
    Fleet {
        ready,
        down: group.len() - ready + unseen,
    }
}

/// Resolves every fault's selector against the live environment and checks its guardrails
/// as at the run's start: the dry-run's answer, and the check made before any traffic.
pub async fn preflight(plan: &ChaosPlan, platform: &Arc<dyn Platform>) -> Vec<PreflightLine> {
    let mut backends = Backends::new(plan, platform);
    let mut rng = SmallRng::seed_from_u64(0);
    let mut lines = Vec::new();
    for fault in &plan.faults {
        let resolved = within(
            plan.backend_timeout,
            "resolving targets",
            backends.resolve(&fault.selector),
        )
        .await;
        let verdict = match resolved {
            // Packet faults that cannot be made here (no root, no iptables) stop the run
            // before any traffic rather than fail at their injection.
            Err(e)
                if fault.selector.backend() == crate::plan::chaos::BackendKind::Firewall
                    || matches!(e, ChaosError::Refused(_)) =>
            {
                Verdict::Refused(e.to_string())
            }
            Err(e) => Verdict::Error(e.to_string()),
            Ok(candidates) => {
                let matched: Vec<String> = candidates
                    .iter()
                    .map(|(t, up)| {
                        format!("{} ({}{})", t.name, t.id, if *up { "" } else { ", down" })
                    })
                    .collect();
                let group = match &fault.among {
                    Some(among) => within(
                        plan.backend_timeout,
                        "resolving `among`",
                        backends.resolve(among),
                    )
                    .await
                    .ok(),
                    None => None,
                };
                // A fault whose undo cannot run for a target it may hit is refused too.
                let refusal = backends.refusal(fault, &candidates);
                let chosen = choose(
                    fault,
                    &candidates,
                    group.as_deref(),
                    (&[], &HashSet::new()),
                    (&plan.allow_targets, &plan.policy_targets),
                    &mut rng,
                )
                .and_then(|hit| refusal.map_or(Ok(hit), |m| Err((EventKind::Refused, m))));
                match chosen {
                    Ok(hit) => Verdict::Hits {
                        matched,
                        hit: hit.iter().map(|t| t.name.clone()).collect(),
                    },
                    Err((EventKind::Refused, m)) => Verdict::Refused(m),
                    Err((_, m)) => Verdict::Error(m),
                }
            }
        };
        lines.push(PreflightLine {
            fault: fault.name.clone(),
            action: format!("{:?}", fault.action),
            selector: fault.selector.to_string(),
            occurrences: fault.occurrences(),
            verdict,
        });
    }
    lines
}

/// The set, even if a watch panicked holding it (a set of ids cannot be left half-written).
fn lock(set: &NotHealthy) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct PreflightLine {
    pub fault: String,
    pub action: String,
    pub selector: String,
    pub occurrences: Vec<(Duration, Option<Duration>)>,
    pub verdict: Verdict,
}

pub enum Verdict {
    Hits {
        matched: Vec<String>,
        hit: Vec<String>,
    },
    Refused(String),
    Error(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chaos::Guard;
    use crate::plan::chaos::{Action, BackendKind, Selector};

    fn backend(n: u32) -> Candidate {
        let target = Target {
            backend: BackendKind::Process,
            id: format!("{}", 100 + n),
            name: format!("backend-{n}"),
            labels: Default::default(),
        };
        (target, true)
    }

    fn kill_one() -> FaultSpec {
        FaultSpec {
            name: "kill".into(),
            at: Duration::ZERO,
            duration: None,
            repeat: 0,
            every: None,
            action: Action::Kill,
            selector: Selector::Process {
                name: "backend-*".into(),
            },
            mode: Mode::One,
            guard: Guard::default(),
            among: None,
            effect: None,
            required: true,
        }
    }

    /// Two backends, both listed up; the first was restarted by an earlier fault and is
    /// still starting. Taking the second down would leave none healthy: refused, and the
    /// first is never chosen.
    #[test]
    fn a_target_not_healthy_again_counts_as_down() {
        let candidates = [backend(1), backend(2)];
        let mut rng = SmallRng::seed_from_u64(1);
        let none: (&[String], &[String]) = (&[], &[]);
        let all_healthy = choose(
            &kill_one(),
            &candidates,
            None,
            (&[], &HashSet::new()),
            none,
            &mut rng,
        )
        .expect("one of two healthy backends may go down");
        assert_eq!(all_healthy[0].name, "backend-1");

        let starting = HashSet::from([candidates[0].0.id.clone()]);
        let refused = choose(
            &kill_one(),
            &candidates,
            None,
            (&[], &starting),
            none,
            &mut rng,
        )
        .expect_err("the last healthy backend must not go down");
        assert_eq!(refused.0, EventKind::Refused);
        assert!(refused.1.contains("1 already down"), "{}", refused.1);
    }
}
