//! The check before traffic and the dry run: every fault's selector resolved against the
//! live environment and its guardrails checked as at the run's start.

use std::collections::HashSet;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::EventKind;
use super::choose::{Held, choose};
use crate::chaos::ChaosError;
use crate::chaos::lifecycle::{Dispatch, within};
use crate::plan::chaos::ChaosPlan;

/// Resolves every fault's selector against the live environment and checks its guardrails
/// as at the run's start: the dry-run's answer, and the check made before any traffic.
pub async fn preflight<D: Dispatch>(plan: &ChaosPlan, backends: &mut D) -> Vec<PreflightLine> {
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
                if backends.unresolved_refuses(&fault.selector)
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
                    (&Held::default(), &HashSet::new()),
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
