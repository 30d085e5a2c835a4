//! One fault lifecycle, behind one trait every backend implements:
//!
//! ```text
//! validate (values, no I/O) → resolve (targets, each up or not) → plan (undo, effect,
//! health check; nothing changes) → [ledger: the undo on disk] → apply → confirm (it took
//! effect) → observe the effect (healthy again) → recover (from the undo alone)
//! ```
//!
//! Two traits: `FaultBackend`, which each backend implements with its own undo record and
//! health check, and `Dispatch`, which the one file that names every backend
//! (`backends.rs`) implements over all of them. The timeline, the health watch and the
//! ledger are generic over `Dispatch` and see only these types: a `Planned` step says how
//! long the fault's effect is held and what ends it, so no caller infers it from an undo's
//! shape.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::HeldDown;
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

/// One target's step, planned before anything changes. A backend plans `U = Option<its
/// undo>` (`None`: nothing to put back); the dispatcher's `U` is the ledger's one undo type.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned<U, C> {
    /// What puts the target back; written to the ledger before the apply.
    pub undo: U,
    pub effect: Effect,
    /// What "healthy again" means for the target, read before the change; `None`: healthy
    /// as soon as the fault is recovered (proxy and packet faults go with their rule).
    pub check: Option<C>,
    /// What the step holds down that no listing will show (a scale-down's replicas), for
    /// the guardrails of the faults that come after it.
    pub holds_down: Option<HeldDown>,
}

impl<U, C> Planned<Option<U>, C> {
    /// A step held until recovered, healthy as soon as it is (proxy and packet faults).
    pub fn held(undo: U) -> Planned<Option<U>, C> {
        Planned {
            undo: Some(undo),
            effect: Effect::Held,
            check: None,
            holds_down: None,
        }
    }
}

impl<U, C> Planned<U, C> {
    /// The same step in the dispatcher's types.
    pub fn map<V, D>(self, undo: impl FnOnce(U) -> V, check: impl FnOnce(C) -> D) -> Planned<V, D> {
        Planned {
            undo: undo(self.undo),
            effect: self.effect,
            check: self.check.map(check),
            holds_down: self.holds_down,
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
pub(crate) type Confirming = std::pin::Pin<Box<dyn Future<Output = Confirmation> + Send>>;

/// A confirmation known at once.
pub(crate) fn confirmed(confirmation: Confirmation) -> Confirming {
    Box::pin(std::future::ready(confirmation))
}

/// A resolved target and whether it is up.
pub(crate) type Candidate = (Target, bool);

/// A watch a backend keeps beside its faults for the whole run (Kubernetes: when
/// replacement pods became Ready), ending with what it saw when the run's stop fires.
pub(crate) type SideWatch = JoinHandle<serde_json::Value>;

/// One backend's part of the lifecycle. Recovery is not here: it works from a ledger's
/// undo alone (`Recovery`), with no backend state, so `loadgen recover` can run it after a
/// crash.
pub(crate) trait FaultBackend {
    /// What puts one of its targets back, as the ledger records it.
    type Undo;
    /// What "healthy again" means for one of its targets.
    type Check;

    /// Whether a failure to resolve targets means the backend cannot fault anything here
    /// (no root, no iptables): pre-flight then refuses the run before any traffic, rather
    /// than let the fault fail at its injection.
    const UNRESOLVED_REFUSES: bool = false;

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
    ) -> impl Future<Output = Result<Planned<Option<Self::Undo>, Self::Check>, ChaosError>> + Send;

    /// Makes the change. Called only once `planned.undo` is in the ledger.
    fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned<Option<Self::Undo>, Self::Check>,
    ) -> impl Future<Output = Result<(), ChaosError>> + Send;

    /// Starts checking whether the applied step took effect: what needs the backend is
    /// read here, the waiting happens in the returned `Confirming`. Most backends' apply
    /// is its own proof (the API said done); a packet rule must show it matched traffic.
    fn confirm(
        &mut self,
        target: &Target,
        planned: &Planned<Option<Self::Undo>, Self::Check>,
    ) -> impl Future<Output = Confirming> + Send {
        let _ = (target, planned);
        std::future::ready(confirmed(Confirmation::Effective))
    }

    /// Whether the target `check` was read for is healthy again.
    fn healthy(
        &mut self,
        check: &Self::Check,
    ) -> impl Future<Output = Result<bool, ChaosError>> + Send;

    /// The watches this backend keeps beside `faults` for the whole run, until `stop`; none
    /// by default (a capability, like an output declaring it takes thresholds).
    fn side_watches(
        &mut self,
        faults: &[FaultSpec],
        start: Instant,
        stop: &CancellationToken,
    ) -> impl Future<Output = Vec<SideWatch>> + Send {
        let _ = (faults, start, stop);
        std::future::ready(Vec::new())
    }
}

/// The timeline's one view of every backend: `FaultBackend`'s steps in the ledger's undo
/// and health-check types, dispatched by the target's backend. Implemented once, by the
/// file that names the backends (`backends.rs`).
pub trait Dispatch: Send + 'static {
    /// The ledger's undo record, one variant per backend.
    type Undo: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What "healthy again" means, one variant per backend.
    type Check: Clone + Debug + Send + Sync + 'static;
    /// Answers health checks beside the timeline, on the backends' connections.
    type Probe: Probe<Check = Self::Check>;
    /// Puts targets back from their undo alone.
    type Recovery: Recovery<Undo = Self::Undo>;

    fn resolve(
        &mut self,
        selector: &Selector,
    ) -> impl Future<Output = Result<Vec<Candidate>, ChaosError>> + Send;

    fn refusal(&mut self, fault: &FaultSpec, candidates: &[Candidate]) -> Option<String>;

    fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        occasion: Occasion,
    ) -> impl Future<Output = Result<Planned<Self::Undo, Self::Check>, ChaosError>> + Send;

    fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned<Self::Undo, Self::Check>,
    ) -> impl Future<Output = Result<(), ChaosError>> + Send;

    fn confirm(
        &mut self,
        target: &Target,
        planned: &Planned<Self::Undo, Self::Check>,
    ) -> impl Future<Output = Confirming> + Send;

    /// `FaultBackend::UNRESOLVED_REFUSES` of the backend `selector` belongs to.
    fn unresolved_refuses(&self, selector: &Selector) -> bool;

    /// Every backend's side watches for `faults`.
    fn side_watches(
        &mut self,
        faults: &[FaultSpec],
        start: Instant,
        stop: &CancellationToken,
    ) -> impl Future<Output = Vec<SideWatch>> + Send;

    /// A prober for one effect watch, sharing the backends' connections.
    fn probe(&self) -> Self::Probe;

    /// What recovers this run's faults, also from a thread of its own at panic time.
    fn recovery(&self) -> Self::Recovery;
}

/// Answers "is it healthy again?" for one effect watch, off the timeline's task.
pub trait Probe: Send + 'static {
    type Check: Send + Sync;

    fn healthy(
        &mut self,
        check: &Self::Check,
    ) -> impl Future<Output = Result<bool, ChaosError>> + Send;
}

/// Puts a target back from its undo record alone: idempotent, and a target that no longer
/// exists counts as recovered.
pub trait Recovery: Clone + Send + Sync + 'static {
    type Undo: Send + Sync;

    /// Unbounded: callers go through `recover_within`.
    fn recover(&self, undo: &Self::Undo) -> impl Future<Output = Result<(), ChaosError>> + Send;
}

/// A backend call bounded by `deadline`: one that has not answered by then is dropped
/// (children it started are killed on drop) and is an error naming what hung.
pub(crate) async fn within<T>(
    deadline: Duration,
    what: &str,
    call: impl Future<Output = Result<T, ChaosError>>,
) -> Result<T, ChaosError> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(ChaosError::Backend {
                backend: "deadline",
                message: format!("{what}: no answer within {deadline:?} (backend_timeout)"),
            })
        })
}

/// Puts a target back within `deadline`. A backend error (a daemon restarting, a refused
/// connection) is retried with back-off, 100 ms doubling to 2 s; a guardrail refusal is
/// not. Still failing, or still waiting for an answer, at the deadline: the last error.
pub(crate) async fn recover_within<R: Recovery>(
    recovery: &R,
    undo: &R::Undo,
    deadline: Duration,
) -> Result<(), ChaosError> {
    let until = Instant::now() + deadline;
    let mut pause = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout_at(until, recovery.recover(undo)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => {
                return Err(ChaosError::Backend {
                    backend: "deadline",
                    message: format!(
                        "recovery got no answer within {deadline:?} (backend_timeout; attempt {attempts})"
                    ),
                });
            }
        };
        let transient = matches!(error, ChaosError::Backend { .. });
        if !transient || Instant::now() + pause >= until {
            return Err(match error {
                ChaosError::Backend { backend, message } if attempts > 1 => ChaosError::Backend {
                    backend,
                    message: format!("{message} (after {attempts} attempts in {deadline:?})"),
                },
                other => other,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
