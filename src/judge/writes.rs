//! Judging verification from the run directory alone (acks.jsonl, verify.jsonl,
//! verify.json) and the summary's step counts, so `loadgen report` reaches the same verdict
//! without the target. Both files are streamed; only counts and a bounded list of the
//! writes that failed are kept.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::chaos::runner::Occurrence;
use crate::plan::slo::OnNoData;
use crate::plan::verify::{KindSpec, OnUnverifiable, VerifySpecs};
use crate::record::verdicts::VerdictStatus;
use crate::record::writes::{
    CountVerdict, InvariantVerdict, KindVerdict, ListedWrite, VerifySummary,
};
use crate::verify::acks::{ACKS_FILE, AckLine, for_each_line};
use crate::verify::check::Outcome;
use crate::verify::run::{FACTS_FILE, Facts, ProbeFacts, Status, for_each_check};

/// Writes listed by id per kind and outcome, at most (verify.jsonl has them all).
pub(crate) const LISTED: usize = 1_000;

/// What judging reads besides the files.
pub(crate) struct Inputs<'a> {
    pub specs: &'a VerifySpecs,
    /// Per global step: requests that may have committed without an answer
    /// (`ErrorClass::may_have_committed`, and requests cut off at the hard stop).
    pub uncertain_by_step: &'a [u64],
    pub occurrences: &'a [Occurrence],
}

pub(crate) fn judge(run_dir: &Path, inputs: &Inputs<'_>) -> Result<VerifySummary, String> {
    let facts = read_facts(run_dir)?;
    let specs = inputs.specs;
    let index: BTreeMap<&str, usize> = specs
        .kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (k.name.as_str(), i))
        .collect();
    let tallies = tally(run_dir, inputs, &index)?;
    let kinds: Vec<KindVerdict> = specs
        .kinds
        .iter()
        .zip(tallies)
        .map(|(spec, tally)| tally.verdict(spec, facts.status))
        .collect();
    let probe = |name: &str| facts.probes.iter().find(|p| p.name == name);
    let counts = specs
        .counts
        .iter()
        .map(|spec| {
            let kind = index.get(spec.kind.as_str()).copied();
            let acknowledged = kind.map_or(0, |i| kinds[i].acknowledged);
            let uncertain = kind.map_or(0, |i| {
                specs.kinds[i]
                    .recorded_by
                    .iter()
                    .map(|step| inputs.uncertain_by_step.get(*step).copied().unwrap_or(0))
                    .sum()
            });
            count_verdict(
                &spec.name,
                &spec.kind,
                acknowledged,
                uncertain,
                probe(&spec.name),
            )
        })
        .collect::<Vec<_>>();
    let invariants = specs
        .invariants
        .iter()
        .map(|spec| invariant_verdict(&spec.name, probe(&spec.name)))
        .collect::<Vec<_>>();
    let passed = facts.status == Status::Complete
        && !kinds.iter().any(KindVerdict::fails_run)
        && counts.iter().all(|c| c.status == VerdictStatus::Pass)
        && invariants.iter().all(|i| i.status == VerdictStatus::Pass);
    Ok(VerifySummary {
        status: facts.status,
        reason: facts.reason,
        requests: facts.requests,
        retries: facts.retries,
        kinds,
        counts,
        invariants,
        passed,
    })
}

/// Each kind's acknowledged writes (acks.jsonl) and its read-backs' outcomes
/// (verify.jsonl), the writes that failed listed with the fault in force then.
fn tally(
    run_dir: &Path,
    inputs: &Inputs<'_>,
    index: &BTreeMap<&str, usize>,
) -> Result<Vec<Tally>, String> {
    let specs = inputs.specs;
    let mut tallies: Vec<Tally> = specs.kinds.iter().map(|_| Tally::default()).collect();
    let acks = run_dir.join(ACKS_FILE);
    if acks.exists() {
        for_each_line::<AckLine>(&acks, |line| {
            if let Some(&i) = index.get(line.kind.as_str()) {
                tallies[i].acknowledged += 1;
            }
            Ok(())
        })?;
    }
    for_each_check(run_dir, |line| {
        let Some(&i) = index.get(line.kind.as_str()) else {
            return Err(format!(
                "verify.jsonl: kind `{}` is not in verify_specs",
                line.kind
            ));
        };
        let during = during(inputs.occurrences, line.at_ms);
        tallies[i].add(
            line.outcome,
            ListedWrite {
                id: line.id,
                at_ms: line.at_ms,
                during,
                detail: line.detail,
            },
        );
        Ok(())
    })?;
    Ok(tallies)
}

fn read_facts(run_dir: &Path) -> Result<Facts, String> {
    let path = run_dir.join(FACTS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{FACTS_FILE}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Facts::nothing(
            Status::NotRun,
            Some("the run ended before verification (no verify.json)".into()),
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The fault occurrence whose window held `at_ms`, as `name #n`.
fn during(occurrences: &[Occurrence], at_ms: u64) -> Option<String> {
    occurrences
        .iter()
        .find(|o| match (o.started_ms, o.ended_ms) {
            (Some(start), Some(end)) => (start..=end).contains(&at_ms),
            (Some(start), None) => at_ms >= start,
            _ => false,
        })
        .map(|o| format!("{} #{}", o.fault, o.occurrence + 1))
}

#[derive(Default)]
struct Tally {
    acknowledged: u64,
    counts: BTreeMap<Outcome, u64>,
    listed: BTreeMap<Outcome, Vec<ListedWrite>>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, write: ListedWrite) {
        *self.counts.entry(outcome).or_default() += 1;
        if outcome != Outcome::Verified {
            let listed = self.listed.entry(outcome).or_default();
            if listed.len() < LISTED {
                listed.push(write);
            }
        }
    }

    fn verdict(mut self, spec: &crate::plan::verify::KindSpec, status: Status) -> KindVerdict {
        let count = |o| self.counts.get(&o).copied().unwrap_or(0);
        let (verified, missing, mismatched, unverifiable) = (
            count(Outcome::Verified),
            count(Outcome::Missing),
            count(Outcome::Mismatched),
            count(Outcome::Unverifiable),
        );
        let checked = verified + missing + mismatched + unverifiable;
        let unchecked = self.acknowledged.saturating_sub(checked);
        let mut problems = Vec::new();
        let mut take = |o: Outcome| self.listed.remove(&o).unwrap_or_default();
        let missing_writes = take(Outcome::Missing);
        let mismatched_writes = take(Outcome::Mismatched);
        let unverifiable_writes = take(Outcome::Unverifiable);
        if missing > 0 {
            problems.push(format!("{missing} missing ({})", ids(&missing_writes)));
        }
        if mismatched > 0 {
            problems.push(format!(
                "{mismatched} mismatched ({})",
                ids(&mismatched_writes)
            ));
        }
        let unverifiable_allowed = spec.on_unverifiable == OnUnverifiable::Allow;
        if unverifiable > 0 {
            problems.push(format!(
                "{unverifiable} unverifiable{} ({})",
                if unverifiable_allowed {
                    ", allowed"
                } else {
                    ""
                },
                ids(&unverifiable_writes)
            ));
        }
        if unchecked > 0 {
            problems.push(format!(
                "{unchecked} never checked (verification {})",
                status.name()
            ));
        }
        let failing = missing > 0
            || mismatched > 0
            || unchecked > 0
            || (unverifiable > 0 && !unverifiable_allowed);
        let (status, allowed, reason_text) = kind_status(
            spec,
            self.acknowledged,
            verified,
            unverifiable,
            failing,
            &problems,
        );
        KindVerdict {
            name: spec.name.clone(),
            acknowledged: self.acknowledged,
            verified,
            missing,
            mismatched,
            unverifiable,
            unchecked,
            status,
            allowed,
            reason_text,
            missing_writes,
            mismatched_writes,
            unverifiable_writes,
        }
    }
}

/// The first ten ids of a list of writes, and how many more there are.
fn ids(writes: &[ListedWrite]) -> String {
    let shown: Vec<String> = writes.iter().take(10).map(|w| id_text(&w.id)).collect();
    let more = writes.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// A kind's status, whether it is allowed, and why: no data when nothing was
/// acknowledged, a failure when a read-back was, else a pass (allowed when some write was
/// unverifiable).
fn kind_status(
    spec: &KindSpec,
    acknowledged: u64,
    verified: u64,
    unverifiable: u64,
    failing: bool,
    problems: &[String],
) -> (VerdictStatus, bool, String) {
    if acknowledged == 0 {
        (
            VerdictStatus::NoData,
            spec.on_no_data == OnNoData::Allow,
            "nothing of this kind was acknowledged: no write to read back".to_string(),
        )
    } else if failing {
        (VerdictStatus::Fail, false, problems.join("; "))
    } else {
        let mut text = format!("{verified} of {acknowledged} read back as acknowledged");
        if !problems.is_empty() {
            text = format!("{text}; {}", problems.join("; "));
        }
        (VerdictStatus::Pass, unverifiable > 0, text)
    }
}

/// An id as people read it: a string without its quotes.
pub(crate) fn id_text(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// acknowledged ≤ platform ≤ acknowledged + uncertain, where platform is the count's
/// change over the run: every acknowledged write is there, and nothing else is but what a
/// request that got no answer may have committed.
fn count_verdict(
    name: &str,
    kind: &str,
    acknowledged: u64,
    uncertain: u64,
    probe: Option<&ProbeFacts>,
) -> CountVerdict {
    let (before, after) = probe.map_or((None, None), |p| (p.before.clone(), p.after.clone()));
    let platform = match (&before, &after) {
        (Some(b), Some(a)) => integer(b).zip(integer(a)).map(|(b, a)| a - b),
        _ => None,
    };
    let (status, reason_text) = match platform {
        None => (
            VerdictStatus::Fail,
            match probe.and_then(|p| p.error.clone()) {
                Some(error) => format!("unverifiable: {error}"),
                None if before.is_some() && after.is_some() => format!(
                    "unverifiable: the platform's count is not a whole number (before {}, after {})",
                    before.clone().unwrap_or_default(),
                    after.clone().unwrap_or_default()
                ),
                None => "unverifiable: the platform's count was not read".to_string(),
            },
        ),
        Some(platform) => {
            let low = acknowledged as i64;
            let high = (acknowledged + uncertain) as i64;
            let bound = format!(
                "{acknowledged} acknowledged + up to {uncertain} unanswered that may have committed"
            );
            if platform < low {
                (
                    VerdictStatus::Fail,
                    format!(
                        "the platform holds {platform} new, fewer than the {acknowledged} acknowledged: {} acknowledged write(s) lost",
                        low - platform
                    ),
                )
            } else if platform > high {
                (
                    VerdictStatus::Fail,
                    format!(
                        "the platform holds {platform} new, more than {bound} ({high}): {} write(s) nobody was told about",
                        platform - high
                    ),
                )
            } else {
                (
                    VerdictStatus::Pass,
                    format!("the platform holds {platform} new, within {low}..={high} ({bound})"),
                )
            }
        }
    };
    CountVerdict {
        name: name.to_string(),
        kind: kind.to_string(),
        acknowledged,
        uncertain,
        platform,
        before,
        after,
        status,
        reason_text,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn invariant_verdict(name: &str, probe: Option<&ProbeFacts>) -> InvariantVerdict {
    let (before, after) = probe.map_or((None, None), |p| (p.before.clone(), p.after.clone()));
    let (status, reason_text) = match (&before, &after) {
        (Some(b), Some(a)) if b == a => (VerdictStatus::Pass, format!("{b} before and after")),
        (Some(b), Some(a)) => (
            VerdictStatus::Fail,
            format!("changed: {b} before the load, {a} after"),
        ),
        _ => (
            VerdictStatus::Fail,
            format!(
                "unverifiable: {}",
                probe
                    .and_then(|p| p.error.clone())
                    .unwrap_or_else(|| "the value was not read".into())
            ),
        ),
    };
    InvariantVerdict {
        name: name.to_string(),
        before,
        after,
        status,
        reason_text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(before: i64, after: i64) -> ProbeFacts {
        ProbeFacts {
            name: "n".into(),
            before: Some(Value::from(before)),
            after: Some(Value::from(after)),
            error: None,
        }
    }

    #[test]
    fn the_count_bound_is_exact_at_both_ends() {
        let judged = |platform: i64| {
            count_verdict("n", "k", 10, 3, Some(&probe(100, 100 + platform))).status
        };
        assert_eq!(
            judged(9),
            VerdictStatus::Fail,
            "one acknowledged write lost"
        );
        assert_eq!(judged(10), VerdictStatus::Pass);
        assert_eq!(judged(13), VerdictStatus::Pass);
        assert_eq!(
            judged(14),
            VerdictStatus::Fail,
            "one write nobody was told about"
        );
        let unread = ProbeFacts {
            error: Some("after verification: status 503".into()),
            after: None,
            ..probe(1, 1)
        };
        let verdict = count_verdict("n", "k", 0, 0, Some(&unread));
        assert_eq!(verdict.status, VerdictStatus::Fail);
        assert!(
            verdict.reason_text.contains("status 503"),
            "{}",
            verdict.reason_text
        );
    }

    #[test]
    fn an_invariant_passes_only_when_both_readings_agree() {
        assert_eq!(
            invariant_verdict("i", Some(&probe(0, 0))).status,
            VerdictStatus::Pass
        );
        assert_eq!(
            invariant_verdict("i", Some(&probe(0, 3))).status,
            VerdictStatus::Fail
        );
        assert_eq!(invariant_verdict("i", None).status, VerdictStatus::Fail);
    }
}
