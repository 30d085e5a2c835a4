//! Injecting one occurrence: resolve its targets, choose among them under the guardrails,
//! plan each step, write its undo to the ledger, apply it, and settle it once its
//! confirmation is known — held, watched, or undone at once.

use std::task::Poll;

use futures::FutureExt;

use super::choose::{Held, choose};
use super::{
    Active, EventKind, Injection, PendingConfirmation, Timeline, When, lock, target_label,
};
use crate::chaos::ledger::{EntryState, LedgerRecord, now};
use crate::chaos::lifecycle::{Candidate, Confirmation, Dispatch, Occasion, within};
use crate::chaos::{ChaosError, Target};
use crate::plan::chaos::FaultSpec;

impl<D: Dispatch> Timeline<D> {
    /// What the faults in force hold, for choosing targets and counting the fleet.
    pub(super) fn held(&self) -> Held {
        Held {
            ids: self.active.iter().map(|a| a.target.id.clone()).collect(),
            down: self
                .active
                .iter()
                .filter_map(|a| a.planned.holds_down.clone())
                .collect(),
        }
    }

    pub(super) async fn inject(&mut self, index: usize, occurrence: u32) {
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
        let held = self.held();
        let chosen = match choose(
            &fault,
            &candidates,
            group.as_deref(),
            (&held, &busy),
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
    pub(super) async fn resolve(
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

    pub(super) fn not_run(
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

    pub(super) async fn inject_one(
        &mut self,
        fault: &FaultSpec,
        index: usize,
        occurrence: u32,
        target: Target,
        ready_before: usize,
    ) {
        let fail = |this: &mut Timeline<D>, message: String| {
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
    pub(super) async fn settle_injection(
        &mut self,
        injection: Injection<D>,
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
    pub(super) async fn settle_confirming_now(&mut self, why: &str) {
        for confirming in std::mem::take(&mut self.confirming) {
            let why = Confirmation::Unverified(why.to_string());
            self.settle_injection(confirming.injection, Ok(()), why)
                .await;
        }
    }

    /// The next confirmation under way to finish: its position and result. Cancel-safe
    /// (it takes nothing out), so it can race the timeline's next step; the caller settles
    /// it (`settle_confirmed`) outside the race, where nothing can cut that short.
    pub(super) async fn next_confirmation(&mut self) -> (usize, Confirmation) {
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

    pub(super) async fn settle_confirmed(
        &mut self,
        (position, confirmation): (usize, Confirmation),
    ) {
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
    pub(super) fn failed_on(
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
}
