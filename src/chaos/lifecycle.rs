//! One fault lifecycle, behind one trait every backend implements:
//!
//! ```text
//! validate (values, no I/O) → resolve (targets, each up or not) → plan (undo, effect,
//! health check; nothing changes) → [ledger: the undo on disk] → apply → confirm (it took
//! effect) → observe the effect (healthy again) → recover (from the undo alone)
//! ```
//!
//! The timeline and the analysis see only these types: a `Planned` step says how long the
//! fault's effect is held and what ends it, so no caller infers it from an undo's shape.

use std::future::Future;

use super::effect::HealthCheck;
use super::guard::HeldDown;
use super::undo::Undo;
use super::{ChaosError, Target};
use crate::plan::chaos::{Action, FaultSpec, Selector};

/// How a fault's change lasts, decided when it is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// In force from its apply until it is recovered (at its planned end, or at the run's
    /// end); its undo puts the target back, then the target is watched until healthy.
    Held,
    /// Done at once and healing by itself or by the apply (a restart, a pod deletion):
    /// nothing to hold or put back; watched from the apply until healthy.
    Instantaneous,
    /// Cannot be put back (a kill of a process nothing can start again): watched from the
    /// apply until healthy — which may never come, and the window says so.
    Permanent,
}

impl Effect {
    /// Whether the ledger entry is settled at apply time: nothing will ever be undone.
    pub fn settles_at_apply(self) -> bool {
        !matches!(self, Effect::Held)
    }
}

/// One target's step, planned before anything changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// What puts the target back; written to the ledger before the apply.
    pub undo: Undo,
    pub effect: Effect,
    /// What "healthy again" means for the target, read before the change.
    pub check: HealthCheck,
    /// What the step holds down that no listing will show (a scale-down's replicas), for
    /// the guardrails of the faults that come after it.
    pub holds_down: Option<HeldDown>,
}

impl Planned {
    /// A step whose health check is the recovery itself (proxy and packet faults).
    pub fn held(undo: Undo) -> Planned {
        Planned {
            undo,
            effect: Effect::Held,
            check: HealthCheck::Recovered,
            holds_down: None,
        }
    }
}

/// What a plan may need to know of the occurrence besides its fault.
#[derive(Debug, Clone, Copy)]
pub struct Occasion {
    /// How many of the selector's targets were up just before (pods: Ready).
    pub ready_before: usize,
}

/// What an applied step was seen to do, checked just after its apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// It is in force (the backend's own answer, or traffic seen hitting it).
    Effective,
    /// Nothing showed it working yet (no traffic went there): applied, with a warning.
    Unverified(String),
    /// It cannot do what it says (traffic flowed past it, or there is none to hit):
    /// recovered at once, and the occurrence fails.
    Ineffective(String),
}

/// A confirmation under way. It owns what it reads, so the timeline polls it beside its
/// next steps instead of waiting on it.
pub type Confirming = std::pin::Pin<Box<dyn Future<Output = Confirmation> + Send>>;

/// A confirmation known at once.
pub fn confirmed(confirmation: Confirmation) -> Confirming {
    Box::pin(std::future::ready(confirmation))
}

/// A resolved target and whether it is up.
pub type Candidate = (Target, bool);

/// One backend's part of the lifecycle. Recovery is not here: it works from a ledger's
/// undo alone (`backends::recover`), with no backend state, so `loadgen recover` can run it
/// after a crash.
pub trait FaultBackend {
    /// Whether this backend can perform `action` on `selector`'s targets, from the values
    /// alone (ranges a backend cannot express). The scenario validator calls it, so a bad
    /// value is a positioned error, never a failure mid-run.
    fn validate(action: &Action, selector: &Selector) -> Result<(), String>
    where
        Self: Sized;

    /// The selector's targets, sorted by name, each with whether it is up.
    fn resolve(
        &mut self,
        selector: &Selector,
    ) -> impl Future<Output = Result<Vec<Candidate>, ChaosError>> + Send;

    /// Why `fault` must not run on any of `candidates` here, if it must not (pre-flight and
    /// `--dry-run` refuse it before traffic): an undo that cannot run for its target.
    fn refusal(&mut self, fault: &FaultSpec, candidates: &[Candidate]) -> Option<String> {
        let _ = (fault, candidates);
        None
    }

    /// The step for `target`: reads what the undo and the health check need; changes
    /// nothing.
    fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        occasion: Occasion,
    ) -> impl Future<Output = Result<Planned, ChaosError>> + Send;

    /// Makes the change. Called only once `planned.undo` is in the ledger.
    fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned,
    ) -> impl Future<Output = Result<(), ChaosError>> + Send;

    /// Starts checking whether the applied step took effect: what needs the backend is
    /// read here, the waiting happens in the returned `Confirming`. Most backends' apply
    /// is its own proof (the API said done); a packet rule must show it matched traffic.
    fn confirm(
        &mut self,
        target: &Target,
        planned: &Planned,
    ) -> impl Future<Output = Confirming> + Send {
        let _ = (target, planned);
        std::future::ready(confirmed(Confirmation::Effective))
    }
}
