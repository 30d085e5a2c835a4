//! Which targets an occurrence hits: pure, from the candidates, what the faults in force
//! hold, and the guardrails.

use std::collections::HashSet;

use rand::Rng;
use rand::rngs::SmallRng;

use super::EventKind;
use crate::chaos::TargetId;
use crate::chaos::guard::{self, Fleet, HeldDown};
use crate::chaos::lifecycle::Candidate;
use crate::chaos::{ChaosError, Target};
use crate::plan::chaos::{FaultSpec, Mode};

/// Which targets an occurrence hits, or why none: (`skipped` | `refused`, message).
/// `group`: the replica set the guardrails count (the fault's `among` selector); by default
/// the selector's own matches. Targets held by an `active` fault, and those in `busy` (not
/// healthy again after a fault, or still being confirmed), are never chosen and count as
/// down.
pub(super) fn choose(
    fault: &FaultSpec,
    candidates: &[(Target, bool)],
    group: Option<&[(Target, bool)]>,
    (active, busy): (&Held, &HashSet<TargetId>),
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
    let busy = |t: &Target| active.ids.contains(&t.id) || busy.contains(&t.id);
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

/// What the faults in force hold: their targets, and what they hold down out of sight.
#[derive(Default)]
pub(super) struct Held {
    pub(super) ids: HashSet<TargetId>,
    pub(super) down: Vec<HeldDown>,
}

/// The replica set `group` as the guardrails count it: its `ready` members up; down, those
/// listed but not up or held by an active fault, and what active faults hold down out of
/// sight (a deployment's scaled-away replicas count against its pods).
fn fleet(group: &[Candidate], ready: usize, active: &Held) -> Fleet {
    let unseen: usize = active
        .down
        .iter()
        .filter(|held| {
            group
                .iter()
                .any(|(t, _)| held.covers(t.id.namespace().unwrap_or(""), &t.labels))
        })
        .map(|held| held.count)
        .sum();
    Fleet {
        ready,
        down: group.len() - ready + unseen,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;

    use super::*;
    use crate::plan::chaos::Guard;
    use crate::plan::chaos::{Action, BackendKind, Selector};

    fn backend(n: u32) -> Candidate {
        let target = Target {
            backend: BackendKind::Process,
            id: TargetId::Pid(100 + n as i32),
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
            (&Held::default(), &HashSet::new()),
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
            (&Held::default(), &starting),
            none,
            &mut rng,
        )
        .expect_err("the last healthy backend must not go down");
        assert_eq!(refused.0, EventKind::Refused);
        assert!(refused.1.contains("1 already down"), "{}", refused.1);
    }
}
