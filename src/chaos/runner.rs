//! The fault timeline of a run: inject each occurrence at its moment, recover it at its end,
//! record every step as an event, and recover whatever is still applied when the run ends —
//! normally, on Ctrl-C/SIGTERM (the run ends early), or on panic (`Drop`).

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::backends::{Backends, recover};
use super::ledger::{EntryState, Ledger, LedgerRecord, now};
use super::spec::{ChaosPlan, FaultSpec, Mode, check_guard};
use super::undo::Undo;
use super::{ChaosError, Target};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultEvent {
    /// Milliseconds from the run's start.
    pub offset_ms: u64,
    pub fault: String,
    pub occurrence: u32,
    /// inject | recover | skipped | refused | failed
    pub kind: String,
    pub target: Option<String>,
    pub message: Option<String>,
}

/// What the timeline did, for summary.json and the exit code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChaosReport {
    pub events: Vec<FaultEvent>,
    /// Faults that could not be put back: a human must act. Each says what and why.
    pub unrecovered: Vec<String>,
    /// Kubernetes targets: ready replicas over the run and when replacements became Ready.
    #[serde(default)]
    pub readiness: Vec<serde_json::Value>,
}

struct Active {
    entry: String,
    fault: String,
    occurrence: u32,
    target: Target,
    undo: Undo,
}

pub struct Timeline {
    plan: Arc<ChaosPlan>,
    backends: Backends,
    ledger: Ledger,
    start: Instant,
    rng: SmallRng,
    active: Vec<Active>,
    report: ChaosReport,
    /// Each event also goes here as it happens, for the live progress output.
    live: Option<tokio::sync::mpsc::UnboundedSender<FaultEvent>>,
}

enum Step {
    Inject(usize, u32),
    Recover(usize, u32),
}

impl Timeline {
    pub fn new(plan: Arc<ChaosPlan>, ledger: Ledger, start: Instant, seed: u64) -> Timeline {
        let backends = Backends::new(&plan);
        Timeline {
            plan,
            backends,
            ledger,
            start,
            rng: SmallRng::seed_from_u64(seed ^ 0xC4A0_5EED),
            active: Vec::new(),
            report: ChaosReport::default(),
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

    /// Plays the timeline until it is done and `stop` is cancelled (the run's end), then
    /// recovers everything still applied.
    pub async fn run(mut self, stop: CancellationToken) -> ChaosReport {
        let mut steps: Vec<(Duration, Step)> = Vec::new();
        for (index, fault) in self.plan.faults.iter().enumerate() {
            for (occurrence, (start, end)) in fault.occurrences().into_iter().enumerate() {
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
        for (at, step) in steps {
            tokio::select! {
                _ = sleep_until(self.start + at) => {}
                _ = stop.cancelled() => break,
            }
            match step {
                Step::Inject(index, occurrence) => self.inject(index, occurrence).await,
                Step::Recover(index, occurrence) => {
                    let name = self.plan.faults[index].name.clone();
                    self.recover_where(|a| a.fault == name && a.occurrence == occurrence)
                        .await
                }
            }
        }
        stop.cancelled().await;
        self.recover_where(|_| true).await;
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
        std::mem::take(&mut self.report)
    }

    async fn start_readiness_watches(
        &mut self,
        stop: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<Result<super::kube::ReadinessTimeline, ChaosError>>> {
        let mut selectors: Vec<super::kube::PodSelector> = Vec::new();
        for fault in &self.plan.faults {
            if let super::spec::Selector::Pods {
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
        let kube = match super::kube::KubeBackend::connect(self.plan.kube_api.as_deref()).await {
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
        let candidates = match self.backends.resolve(&fault.selector).await {
            Ok(c) => c,
            Err(e) => return self.event(&fault, occurrence, "failed", None, Some(e.to_string())),
        };
        let group = match &fault.among {
            Some(among) => match self.backends.resolve(among).await {
                Ok(group) => Some(group),
                Err(e) => {
                    return self.event(&fault, occurrence, "failed", None, Some(e.to_string()));
                }
            },
            None => None,
        };
        let chosen = match choose(
            &fault,
            &candidates,
            group.as_deref(),
            &self.active,
            &mut self.rng,
        ) {
            Ok(chosen) => chosen,
            Err((kind, message)) => {
                return self.event(&fault, occurrence, kind, None, Some(message));
            }
        };
        for target in chosen {
            self.inject_one(&fault, occurrence, target).await;
        }
    }

    async fn inject_one(&mut self, fault: &FaultSpec, occurrence: u32, target: Target) {
        let undo = match self
            .backends
            .undo_for(&target, &fault.action, &fault.selector, &fault.guard)
            .await
        {
            Ok(undo) => undo,
            Err(e) => {
                return self.event(
                    fault,
                    occurrence,
                    "failed",
                    Some(&target),
                    Some(e.to_string()),
                );
            }
        };
        let entry = format!("{}#{}@{}", fault.name, occurrence, target.id);
        let mut record = LedgerRecord {
            entry: entry.clone(),
            fault: fault.name.clone(),
            target: target.clone(),
            undo: undo.clone(),
            state: EntryState::Applying,
            at: now(),
            message: None,
        };
        // The undo is on disk before anything changes.
        if let Err(e) = self.ledger.write(&record) {
            return self.event(
                fault,
                occurrence,
                "failed",
                Some(&target),
                Some(format!("ledger write failed, fault not applied: {e}")),
            );
        }
        let applied = self.backends.apply(&target, &fault.action, &undo).await;
        self.event(
            fault,
            occurrence,
            if applied.is_ok() { "inject" } else { "failed" },
            Some(&target),
            applied.as_ref().err().map(|e| e.to_string()),
        );
        record.state = EntryState::Applied;
        record.at = now();
        let _ = self.ledger.write(&record);
        self.active.push(Active {
            entry,
            fault: fault.name.clone(),
            occurrence,
            target,
            undo,
        });
        // Instantaneous actions (and failed applies) are settled at once: recovery is
        // idempotent, so running it after a failed apply is safe.
        if applied.is_err() || self.active.last().is_some_and(|a| a.undo == Undo::Nothing) {
            let name = fault.name.clone();
            self.recover_where(|a| {
                a.fault == name && a.occurrence == occurrence && a.undo == Undo::Nothing
            })
            .await;
        }
    }

    async fn recover_where(&mut self, wanted: impl Fn(&Active) -> bool) {
        let (due, keep): (Vec<Active>, Vec<Active>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|a| wanted(a));
        self.active = keep;
        for active in due {
            let outcome = recover(&active.undo).await;
            let record = LedgerRecord {
                entry: active.entry.clone(),
                fault: active.fault.clone(),
                target: active.target.clone(),
                undo: active.undo.clone(),
                state: if outcome.is_ok() {
                    EntryState::Recovered
                } else {
                    EntryState::RecoverFailed
                },
                at: now(),
                message: outcome.as_ref().err().map(|e| e.to_string()),
            };
            let _ = self.ledger.write(&record);
            if active.undo != Undo::Nothing || outcome.is_err() {
                let fault = self
                    .plan
                    .faults
                    .iter()
                    .find(|f| f.name == active.fault)
                    .cloned();
                if let Some(fault) = fault {
                    self.event(
                        &fault,
                        active.occurrence,
                        if outcome.is_ok() { "recover" } else { "failed" },
                        Some(&active.target),
                        outcome.as_ref().err().map(|e| e.to_string()),
                    );
                }
            }
            if let Err(e) = outcome {
                self.report.unrecovered.push(format!(
                    "{} on {} ({}): {e} — undo by hand: {}",
                    active.fault,
                    active.target.name,
                    active.target.id,
                    serde_json::to_string(&active.undo).unwrap_or_default()
                ));
            }
        }
    }

    fn event(
        &mut self,
        fault: &FaultSpec,
        occurrence: u32,
        kind: &str,
        target: Option<&Target>,
        message: Option<String>,
    ) {
        let event = FaultEvent {
            offset_ms: self.start.elapsed().as_millis() as u64,
            fault: fault.name.clone(),
            occurrence,
            kind: kind.to_string(),
            target: target.map(|t| format!("{} ({})", t.name, t.id)),
            message,
        };
        if let Some(live) = &self.live {
            let _ = live.send(event.clone());
        }
        self.report.events.push(event);
    }
}

impl Drop for Timeline {
    /// On panic (or any early drop) nothing may stay broken: recover on a thread of our own,
    /// since the runtime that ran us may be unwinding.
    fn drop(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let undos: Vec<Undo> = self.active.drain(..).map(|a| a.undo).collect();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for undo in &undos {
                    let _ = recover(undo).await;
                }
            });
        })
        .join();
    }
}

/// Which targets an occurrence hits, or why none: (`skipped` | `refused`, message).
/// `group`: the replica set the guardrails count (the fault's `among` selector); by default
/// the selector's own matches.
fn choose(
    fault: &FaultSpec,
    candidates: &[(Target, bool)],
    group: Option<&[(Target, bool)]>,
    active: &[Active],
    rng: &mut SmallRng,
) -> Result<Vec<Target>, (&'static str, String)> {
    if candidates.is_empty() {
        return Err((
            "skipped",
            ChaosError::NoTarget(fault.selector.to_string()).to_string(),
        ));
    }
    let busy = |t: &Target| active.iter().any(|a| a.target.id == t.id);
    let up: Vec<&Target> = candidates
        .iter()
        .filter(|(t, up)| *up && !busy(t))
        .map(|(t, _)| t)
        .collect();
    let wanted = fault.mode.count(up.len());
    let group = group.unwrap_or(candidates);
    let group_up = group.iter().filter(|(t, up)| *up && !busy(t)).count();
    let down = group.len() - group_up;
    if wanted == 0 {
        return Err((
            "skipped",
            format!("no target of {} is up to fault", fault.selector),
        ));
    }
    if fault.action.takes_down() {
        check_guard(&fault.guard, group_up, down, wanted).map_err(|m| ("refused", m))?;
    }
    let chosen = match fault.mode {
        Mode::Random => vec![up[rng.random_range(0..up.len())].clone()],
        _ => up.into_iter().take(wanted).cloned().collect(),
    };
    Ok(chosen)
}

/// Resolves every fault's selector against the live environment and checks its guardrails
/// as at the run's start: the dry-run's answer, and the check made before any traffic.
pub async fn preflight(plan: &ChaosPlan) -> Vec<PreflightLine> {
    let mut backends = Backends::new(plan);
    let mut rng = SmallRng::seed_from_u64(0);
    let mut lines = Vec::new();
    for fault in &plan.faults {
        let verdict = match backends.resolve(&fault.selector).await {
            // Packet faults that cannot be made here (no root, no iptables) stop the run
            // before any traffic rather than fail at their injection.
            Err(e) if matches!(fault.selector, super::spec::Selector::Port { .. }) => {
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
                    Some(among) => backends.resolve(among).await.ok(),
                    None => None,
                };
                match choose(fault, &candidates, group.as_deref(), &[], &mut rng) {
                    Ok(hit) => Verdict::Hits {
                        matched,
                        hit: hit.iter().map(|t| t.name.clone()).collect(),
                    },
                    Err(("refused", m)) => Verdict::Refused(m),
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
