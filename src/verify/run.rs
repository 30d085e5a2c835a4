//! The verification phase: after the load and every fault have ended and `[chaos] settle`
//! has passed, every write recorded in acks.jsonl is read back — streamed from the file, at
//! most `verify_rate` checks a second and `CONCURRENCY` at once — each outcome appended to
//! verify.jsonl; then the counts and invariants are asked again. What it did goes to
//! verify.json. Nothing is judged here (`judge.rs` does, from the files).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::acks::{ACKS_FILE, AckLine, JsonLines, for_each_line};
use super::check::{Checked, Checker, Outcome};
use crate::engine::ClientConfig;
use crate::engine::http::Client;
use crate::plan::Plan;
use crate::plan::verify::CONCURRENCY;

/// What verification did, in the run directory.
pub(crate) const FACTS_FILE: &str = "verify.json";
/// One line per check.
pub(crate) const CHECKS_FILE: &str = "verify.jsonl";

/// How far verification got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every recorded write was checked and every count and invariant asked again.
    Complete,
    /// A signal stopped it; what was checked is in verify.jsonl.
    Interrupted,
    /// It did not start: the run was stopped by a signal or a harness failure first.
    Skipped,
    /// No verify.json: the run ended before verification (a crash).
    NotRun,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Interrupted => "interrupted",
            Status::Skipped => "skipped",
            Status::NotRun => "not_run",
        }
    }
}

/// verify.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Facts {
    pub status: Status,
    #[serde(default)]
    pub reason: Option<String>,
    /// Check, count and invariant requests sent (retries included): apart from the run's
    /// totals.
    pub requests: u64,
    pub retries: u64,
    /// From the run's start, in ms.
    pub started_ms: u64,
    pub ended_ms: u64,
    /// Each count and invariant, in the plan's order: counts first.
    pub probes: Vec<ProbeFacts>,
}

impl Facts {
    /// Facts of a verification that sent nothing (yet).
    pub(crate) fn nothing(status: Status, reason: Option<String>) -> Facts {
        Facts {
            status,
            reason,
            requests: 0,
            retries: 0,
            started_ms: 0,
            ended_ms: 0,
            probes: Vec::new(),
        }
    }
}

/// A count's or an invariant's two readings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProbeFacts {
    pub name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Why a reading is missing.
    #[serde(default)]
    pub error: Option<String>,
}

/// One line of verify.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckLine {
    pub kind: String,
    pub id: Value,
    pub step: usize,
    pub at_ms: u64,
    pub outcome: Outcome,
    #[serde(default)]
    pub status: Option<u16>,
    pub attempts: u32,
    #[serde(default)]
    pub detail: Option<String>,
}

/// The counts' and invariants' values before the load (pre-flight), with the requests it
/// took. A value that cannot be read stops the run before anything else is sent.
pub(crate) struct Baseline {
    pub values: Vec<Value>,
    pub requests: u64,
    pub retries: u64,
}

pub(crate) async fn baseline(
    config: &ClientConfig,
    plan: &Plan,
    seed: u64,
) -> Result<Baseline, String> {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let client = Client::new(config.clone());
            let checker = Checker::new(&client, plan, seed, CancellationToken::new());
            let mut values = Vec::new();
            for (name, probe) in plan.verify.probes() {
                let value = checker
                    .probe(probe)
                    .await
                    .map_err(|why| format!("`{name}` before the load: {why}"))?;
                values.push(value);
            }
            let (requests, retries) = checker.sent();
            Ok(Baseline {
                values,
                requests,
                retries,
            })
        })
        .await
}

/// What the phase is given.
pub(crate) struct Setup<'a> {
    pub plan: &'a Plan,
    pub config: ClientConfig,
    pub run_dir: &'a Path,
    pub seed: u64,
    /// The run's clock.
    pub start: Instant,
    /// Not before: the last fault's end plus `[chaos] settle`.
    pub not_before: Instant,
    pub baseline: Baseline,
    /// Stops it (a signal): what was checked stays.
    pub cancel: CancellationToken,
}

/// Runs verification and writes verify.jsonl and verify.json; `Err` only when a file of the
/// run directory cannot be read or written.
pub(crate) async fn run(setup: Setup<'_>) -> Result<Facts, String> {
    let local = tokio::task::LocalSet::new();
    local.run_until(verify(setup)).await
}

async fn verify(setup: Setup<'_>) -> Result<Facts, String> {
    let Setup {
        plan,
        run_dir,
        start,
        cancel,
        ..
    } = setup;
    let client = Client::new(setup.config.clone());
    let checker = Checker::new(&client, plan, setup.seed, cancel.clone());
    let since = |at: Instant| at.saturating_duration_since(start).as_millis() as u64;
    let mut facts = Facts {
        probes: plan
            .verify
            .probes()
            .zip(setup.baseline.values)
            .map(|((name, _), before)| ProbeFacts {
                name: name.to_string(),
                before: Some(before),
                ..ProbeFacts::default()
            })
            .collect(),
        ..Facts::nothing(Status::Complete, None)
    };
    let settled = tokio::select! {
        _ = sleep_until(setup.not_before) => true,
        _ = cancel.cancelled() => false,
    };
    facts.started_ms = since(Instant::now());
    if settled {
        let path = run_dir.join(CHECKS_FILE);
        let out = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = BufWriter::new(out);
        check_all(&checker, plan, run_dir, &mut out).await?;
        out.flush()
            .and_then(|_| out.get_ref().sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if !cancel.is_cancelled() {
        let probes: Vec<_> = plan.verify.probes().collect();
        for (facts, (_, probe)) in facts.probes.iter_mut().zip(probes) {
            match checker.probe(probe).await {
                Ok(value) => facts.after = Some(value),
                Err(why) => facts.error = Some(format!("after verification: {why}")),
            }
        }
    }
    if cancel.is_cancelled() {
        facts.status = Status::Interrupted;
        facts.reason = Some("stopped by a signal".into());
    }
    let (requests, retries) = checker.sent();
    facts.requests = setup.baseline.requests + requests;
    facts.retries = setup.baseline.retries + retries;
    facts.ended_ms = since(Instant::now());
    write_facts(run_dir, &facts)?;
    Ok(facts)
}

/// verify.json for a run that does not verify (stopped first), so judging says why.
pub(crate) fn skipped(run_dir: &Path, reason: &str) -> Result<Facts, String> {
    let facts = Facts::nothing(Status::Skipped, Some(reason.to_string()));
    write_facts(run_dir, &facts)?;
    Ok(facts)
}

fn write_facts(run_dir: &Path, facts: &Facts) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(facts).expect("facts serialize");
    crate::util::atomic::write_atomic(&run_dir.join(FACTS_FILE), &json)
        .map_err(|e| format!("writing {FACTS_FILE}: {e}"))
}

/// Streams acks.jsonl into checks: one started per `1/verify_rate`, at most `CONCURRENCY`
/// in flight, each outcome written as it comes. Reading the next line waits for a free
/// place, so neither the file nor the results are ever held whole.
async fn check_all(
    checker: &Checker<'_>,
    plan: &Plan,
    run_dir: &Path,
    out: &mut BufWriter<File>,
) -> Result<(), String> {
    let acks = run_dir.join(ACKS_FILE);
    if !acks.exists() {
        return Ok(());
    }
    let mut lines = JsonLines::open(&acks)?;
    let interval = Duration::from_secs_f64(1.0 / plan.verify.rate);
    let mut next_at = Instant::now();
    let mut next = lines.read()?;
    let mut number = 0u64;
    let mut in_flight = FuturesUnordered::new();
    while next.is_some() || !in_flight.is_empty() {
        tokio::select! {
            biased;
            _ = checker.cancel.cancelled() => return Ok(()),
            Some((line, checked)) = in_flight.next(), if !in_flight.is_empty() => {
                write_check(out, line, checked).map_err(|e| format!("{CHECKS_FILE}: {e}"))?;
            }
            _ = sleep_until(next_at), if next.is_some() && in_flight.len() < CONCURRENCY => {
                let line: AckLine = next.take().expect("guarded");
                let kind = plan
                    .verify
                    .kinds
                    .iter()
                    .find(|k| k.name == line.kind)
                    .ok_or_else(|| format!("{ACKS_FILE}: kind `{}` is not in the scenario", line.kind))?;
                let this = number;
                number += 1;
                in_flight.push(async move {
                    let checked = checker.check(kind, &line, this).await;
                    (line, checked)
                });
                // A stall (a slow check holding every place) does not turn into a burst.
                next_at = (next_at + interval).max(Instant::now());
                next = lines.read()?;
            }
        }
    }
    Ok(())
}

fn write_check(out: &mut BufWriter<File>, line: AckLine, checked: Checked) -> std::io::Result<()> {
    let record = CheckLine {
        kind: line.kind,
        id: line.id,
        step: line.step,
        at_ms: line.at_ms,
        outcome: checked.outcome,
        status: checked.status,
        attempts: checked.attempts,
        detail: checked.detail,
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}

/// Reads a JSON-lines file of checks (for judging).
pub(crate) fn for_each_check(
    run_dir: &Path,
    each: impl FnMut(CheckLine) -> Result<(), String>,
) -> Result<(), String> {
    let path = run_dir.join(CHECKS_FILE);
    if !path.exists() {
        return Ok(());
    }
    for_each_line(&path, each)
}
