//! Objectives marked `abort = true`, judged each second while the run goes: when one has
//! failed for its whole grace period without a break, the run stops early (the faults are
//! recovered as at any end) and is reported as aborted.

use crate::metrics::Second;
use crate::metrics::stats::RequestStats;

use super::Observed;
use crate::plan::slo::{Condition, Scope, SloSpec};

pub(crate) struct AbortWatch {
    watched: Vec<Watched>,
}

struct Watched {
    spec: SloSpec,
    /// Global step indices of the scope; empty for "all".
    steps: Vec<usize>,
    streak: Streak,
}

/// One abort objective's failing streak, second by second: the one rule both the live
/// watch (which stops the run) and the judged `abort watch` verdict (replayed from the run
/// directory by analysis) follow. A second without an attempt neither breaks nor extends a
/// streak; a second where the objective holds ends it; the streak trips once it spans
/// `grace` (at least one second).
#[derive(Debug, Clone)]
pub(crate) struct Streak {
    grace_s: u64,
    since: Option<u64>,
}

impl Streak {
    pub(crate) fn new(grace: std::time::Duration) -> Streak {
        Streak {
            grace_s: grace.as_secs().max(1),
            since: None,
        }
    }

    /// Second `second`'s state (`None`: no attempt; else whether the objective held);
    /// `Some((first, last))` when the failing streak has now lasted the grace period.
    pub(crate) fn second(&mut self, second: u64, held: Option<bool>) -> Option<(u64, u64)> {
        match held {
            None => None,
            Some(true) => {
                self.since = None;
                None
            }
            Some(false) => {
                let since = *self.since.get_or_insert(second);
                (second + 1 - since >= self.grace_s).then_some((since, second))
            }
        }
    }
}

impl AbortWatch {
    /// `steps`: (journey, step) names by global step index, to resolve scopes.
    pub(crate) fn new(slos: &[SloSpec], steps: &[(String, String)]) -> AbortWatch {
        let watched = slos
            .iter()
            .filter(|s| s.abort_after.is_some())
            .map(|spec| Watched {
                steps: scope_steps(&spec.scope, steps),
                streak: Streak::new(spec.abort_after.expect("only abort objectives are watched")),
                spec: spec.clone(),
            })
            .collect();
        AbortWatch { watched }
    }

    /// Takes one completed second; returns why the run must stop, if it must.
    pub(crate) fn second(&mut self, second: &Second) -> Option<String> {
        for watched in &mut self.watched {
            let stats = if watched.steps.is_empty() {
                second.snapshot.overall.clone()
            } else {
                let mut merged = RequestStats::default();
                for index in &watched.steps {
                    merged.merge(&second.snapshot.steps[*index]);
                }
                merged
            };
            let held = (stats.attempts() > 0)
                .then(|| watched.spec.conditions.iter().all(|c| holds(c, &stats)));
            if let Some((since, last)) = watched.streak.second(second.second, held) {
                let grace = watched
                    .spec
                    .abort_after
                    .expect("only abort objectives are watched");
                return Some(format!(
                    "objective `{}` ({}) failed for {} s in a row (abort grace {} s)",
                    watched.spec.name,
                    watched.spec.objective,
                    last + 1 - since,
                    grace.as_secs()
                ));
            }
        }
        None
    }
}

/// A condition over one second; a latency condition with no successful response in it
/// does not hold (an outage is not a fast second).
fn holds(condition: &Condition, stats: &RequestStats) -> bool {
    let observed = Observed {
        requests: stats.requests,
        errors: stats.error_total(),
        dropped: stats.dropped,
        seconds: 1,
        latency: stats.latency.as_ref(),
    };
    observed
        .value(condition.metric)
        .is_some_and(|value| condition.holds(value))
}

/// The global indices of the steps a scope names (`journey` or `journey/step`); none for
/// `all`, which every caller takes as the whole run. The live watch and the verdicts
/// resolve scopes alike through it.
pub(crate) fn scope_steps(scope: &Scope, steps: &[(String, String)]) -> Vec<usize> {
    if *scope == Scope::All {
        return Vec::new();
    }
    steps
        .iter()
        .enumerate()
        .filter(|(_, (journey, step))| scope.covers(journey, step))
        .map(|(index, _)| index)
        .collect()
}
