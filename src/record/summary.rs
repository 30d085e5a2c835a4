//! `summary.json`: the run's figures as a versioned contract. The schema lives in
//! `docs/summary.schema.json`; a test validates real output against it. Bump
//! `SCHEMA_VERSION` on any change that could break a reader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::generator::generator_summary;
pub(crate) use super::generator::{GeneratorSummary, arrivals_late};
pub use super::iterations::Iterations;
pub(crate) use super::iterations::{Accounting, FeederSummary, by_reason, rows};
use super::iterations::{
    JourneyAccount, check_accounting, feeder_summaries, journey_accounts, total_iterations,
};
use super::tag::Tag;
use super::verdicts::{Failover, SloVerdict};
use super::writes::VerifySummary;
use crate::chaos::runner::ChaosReport;
use crate::metrics::host::HostLoad;
use crate::metrics::stats::RequestStats;
use crate::metrics::{ErrorClass, ErrorCounts, FailureSample, NotStarted, Percentiles, Snapshot};
use crate::plan::HttpVersion;
use crate::plan::slo::SloSpec;
use crate::plan::verify::VerifySpecs;
use crate::record::delivery::Delivery;
use crate::record::run_plan::RunPlan;
use crate::record::series::PlannedTotals;

/// 3: outcomes keyed by intended start, successes' and failures' latency apart, dropped
/// arrivals counted as failed attempts, typed verdict statuses (`not_run`, allowed
/// `no_data`), fault occurrences with effect windows. 4: redirects, HTTP/2 error classes.
/// 5: requests abandoned at the hard stop; acknowledged writes verified (`verify_specs`,
/// `verify`). 6: every planned iteration accounted for (`totals.iterations`, per journey
/// `planned`, `not_started`, `interrupted`; `accounting`; `delivery`), `verdict` (with
/// `no_objectives`), verdict reason `load_not_delivered` (was `generator_saturated`);
/// error classes `feeder_exhausted` and `interrupted` are no longer request or journey
/// failures (they became `not_started` and `interrupted`); each verdict's `evidence`,
/// reason `insufficient_evidence`, `ended_by = "killed"`; requests the server did not
/// process sent again (`retried_unprocessed`, in the totals and per step). 7: whether an
/// https target's certificate was verified (`tls_verified`). 8: failure samples, the
/// host's CPU (`generator.host_cpu`). 9: the lateness p99's lower bound
/// (`generator.lag_p99_low_us`), on which the bottleneck rule now judges. 10: the
/// platform's own series fetched from its Prometheus (`observe`).
pub(crate) const SCHEMA_VERSION: u32 = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub loadgen_version: String,
    /// False when the run did not play its whole plan (interrupted, or a worker failed):
    /// such figures must not be read as a finished run's.
    pub complete: bool,
    pub ended_by: EndReason,
    /// False until the objectives and faults have been judged: a summary written when the
    /// load ended (and a run killed before judging leaves it so). `loadgen report` judges it.
    pub judged: bool,
    /// The objectives the run is judged against, as parsed from the scenario: what `loadgen
    /// report` judges, never earlier verdicts.
    pub slo_specs: Vec<SloSpec>,
    /// Why an aborted run stopped.
    #[serde(default)]
    pub aborted_because: Option<String>,
    pub scenario: ScenarioInfo,
    pub target: String,
    /// The HTTP version spoken to the target; `None` in a summary of schema 3 (which wrote
    /// an empty string).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub protocol: Option<HttpVersion>,
    /// Over https, whether the server's certificate was verified: `false` when the
    /// scenario turned verification off (`tls_verify = false`), so whatever answered at the
    /// address was measured. Absent over http and in summaries before schema 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verified: Option<bool>,
    pub model: String,
    pub workers: usize,
    pub started_at: String,
    pub planned_duration_s: f64,
    pub duration_s: f64,
    pub totals: Totals,
    pub journeys: Vec<JourneySummary>,
    pub generator: GeneratorSummary,
    /// Files of the run directory, relative to it.
    pub files: BTreeMap<String, String>,
    /// What each histogram-log tag stands for ("all", "journey:N", "step:N").
    pub scopes: BTreeMap<String, String>,
    /// The fault timeline: every inject/recover with its offset, target and outcome.
    pub faults: ChaosReport,
    /// After a fault, how long "steady state" waits (SLO windows), in milliseconds.
    pub settle_ms: u64,
    /// Every SLO verdict, per window instance.
    pub slos: Vec<SloVerdict>,
    /// Failover figures per fault occurrence.
    pub failover: Vec<Failover>,
    /// No SLO verdict fails the run (see `SloVerdict::fails_run`).
    pub slo_passed: bool,
    /// Fault occurrences that fail the run: required ones that did not happen, ones whose
    /// target was not healthy again. Empty until judged.
    #[serde(default)]
    pub fault_problems: Vec<String>,
    /// What verification reads back and compares, as the scenario said: what `loadgen
    /// report` judges. Absent when the scenario records nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_specs: Option<VerifySpecs>,
    /// Verification judged: every acknowledged write read back, counts and invariants.
    /// Absent until judged, and when the scenario records nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// Whether every planned iteration is accounted for: `planned = started + dropped +
    /// not_started` per journey, and `started = completed + failed + interrupted`. Absent
    /// in summaries before schema 6. Not balanced is loadgen's own defect (exit 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<Accounting>,
    /// Whether the run delivered the load it planned (the whole run; windows are judged
    /// the same way). Absent in summaries before schema 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// The run's verdict, as its exit code has it (without a baseline gate):
    /// `unjudged` until judged.
    #[serde(default)]
    pub verdict: RunVerdict,
    /// The `unique` feeders: how many rows they had and what became of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feeders: Vec<FeederSummary>,
    /// The platform's own series the run fetched from its Prometheus (`[[observe]]`, kept
    /// in prometheus.json): filled when judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observe: Vec<crate::record::server::ObservedSummary>,
}

/// The run's verdict in one word, for people and CI tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    /// Exit 0 with objectives judged.
    Pass,
    /// Exit 0, and nothing to judge: the run had no objectives (only that its load was
    /// delivered and some request succeeded).
    NoObjectives,
    /// Any other exit code.
    Fail,
    #[default]
    Unjudged,
}

impl RunVerdict {
    pub fn name(self) -> &'static str {
        match self {
            RunVerdict::Pass => "pass",
            RunVerdict::NoObjectives => "no_objectives",
            RunVerdict::Fail => "fail",
            RunVerdict::Unjudged => "unjudged",
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It played its whole plan.
    Plan,
    /// An `abort` objective failed for its grace period.
    Aborted,
    /// Ctrl-C, SIGTERM.
    Interrupted,
    /// A worker thread failed.
    HarnessFailure,
    /// loadgen itself was killed (SIGKILL, a crash) before it wrote this summary: it was
    /// rebuilt by `loadgen report` from plan.json, series.csv, the interval log and the
    /// fault ledger.
    Killed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub description: Option<String>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    /// Requests sent: what the server saw (redirect hops included).
    pub requests: u64,
    /// Of `requests`, redirects followed: answered 3xx, counted, not timed.
    #[serde(default)]
    pub redirects: u64,
    /// Arrivals dropped at the in-flight cap: failed attempts that were never sent.
    pub dropped: u64,
    pub errors: u64,
    /// (errors + dropped) / (requests + dropped).
    pub error_rate: f64,
    pub rps: f64,
    pub errors_by_class: BTreeMap<String, u64>,
    /// Latency of successful responses.
    pub latency_us: Percentiles,
    /// Latency of failed requests, apart so fast failures do not hide slow successes.
    pub failed_latency_us: Percentiles,
    /// Latencies above the histograms' 1 h ceiling (recorded as 1 h).
    pub saturated: u64,
    /// Requests cut off in flight at the hard stop: not in `requests` (no outcome), but
    /// they may have reached the server.
    #[serde(default)]
    pub abandoned: u64,
    /// Requests the server provably did not process, sent once more on a fresh connection
    /// (not in `requests`: each is one request with one outcome; docs/slo.md).
    #[serde(default)]
    pub retried_unprocessed: u64,
    /// Every planned iteration and what became of it (schema 6).
    #[serde(default)]
    pub iterations: Iterations,
    /// Responses per value of the target's instance header (`[target] instance_header`,
    /// default `X-Instance`; empty when the target sends none): at most 64 names, the rest
    /// under "(other)".
    #[serde(default)]
    pub instances: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneySummary {
    pub name: String,
    pub weight: u32,
    /// Open model: the schedule's arrivals of this journey; closed: iterations begun.
    #[serde(default)]
    pub planned: u64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Started iterations cut off at the hard stop.
    #[serde(default)]
    pub interrupted: u64,
    /// Arrivals of this journey dropped at the in-flight cap (never started).
    pub dropped: u64,
    /// Planned iterations that never started, by reason (only reasons that happened).
    #[serde(default)]
    pub not_started: BTreeMap<String, u64>,
    pub failed_by_class: BTreeMap<String, u64>,
    pub duration_us: Percentiles,
    pub steps: Vec<StepSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    pub name: String,
    pub index: usize,
    pub requests: u64,
    /// Of `requests`, redirects followed.
    #[serde(default)]
    pub redirects: u64,
    /// Arrivals dropped at the cap that would have started with this step.
    pub dropped: u64,
    /// Requests cut off in flight at the hard stop (not in `requests`).
    #[serde(default)]
    pub abandoned: u64,
    /// Requests sent once more because the server provably did not process them.
    #[serde(default)]
    pub retried_unprocessed: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub latency_us: Percentiles,
    pub failed_latency_us: Percentiles,
    /// `check_failed` requests by the check that said no (its label, as `loadgen plan`
    /// shows it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks_failed: BTreeMap<String, u64>,
    /// What failed requests looked like, by error class: a few distinct ones each
    /// (`metrics::samples`). Absent in summaries before schema 8.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_samples: BTreeMap<String, Vec<FailureSample>>,
}

/// The files of the run directory, relative to it: every run's, and verification's when
/// the scenario `verifies`.
fn run_files(verifies: bool) -> BTreeMap<String, String> {
    let verification = [
        ("acks", crate::verify::acks::ACKS_FILE),
        ("verify_checks", crate::verify::run::CHECKS_FILE),
        ("verify_facts", crate::verify::run::FACTS_FILE),
    ];
    [
        ("plan", crate::record::run_plan::PLAN_FILE),
        ("series", "series.csv"),
        ("intervals", "histograms/intervals.hlog"),
        ("totals", "histograms/totals.hlog"),
        ("junit", "junit.xml"),
        ("report", "report.html"),
        ("scenario", "scenario.toml"),
    ]
    .into_iter()
    .chain(verification.into_iter().filter(|_| verifies))
    .map(|(key, file)| (key.to_string(), file.to_string()))
    .collect()
}

/// What the run knows besides its statistics.
pub struct RunFacts<'a> {
    /// What it set out to do (plan.json).
    pub plan: &'a RunPlan,
    pub duration_s: f64,
    pub ended_by: EndReason,
    pub faults: ChaosReport,
    pub aborted_because: Option<String>,
    /// The open model's planned arrivals per journey, from the schedule (empty: closed).
    pub planned: PlannedTotals,
    /// The host's CPU over the load, and loadgen's share of it (where /proc tells).
    pub host: Option<HostLoad>,
}

pub fn build(facts: RunFacts<'_>, totals: &Snapshot) -> Summary {
    let plan = facts.plan;
    let elapsed = facts.duration_s.max(1e-9);
    let accounts = journey_accounts(&facts.planned, totals);
    let journeys = journey_summaries(plan, &accounts, totals);
    let iterations = total_iterations(&accounts);
    // Every started iteration has ended only when the workers ended them: not after a
    // worker thread failed, nor when loadgen itself was killed.
    let finished = !matches!(
        facts.ended_by,
        EndReason::HarnessFailure | EndReason::Killed
    );
    let accounting = check_accounting(plan, &accounts, finished);
    let not_started = not_started(&accounts);
    let delivery = Delivery::judge(iterations.planned, iterations.dropped, &not_started);
    let scopes = scopes(plan);

    let overall = &totals.overall;
    Summary {
        schema_version: SCHEMA_VERSION,
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        complete: facts.ended_by == EndReason::Plan,
        ended_by: facts.ended_by,
        judged: false,
        slo_specs: plan.slo_specs.clone(),
        aborted_because: facts.aborted_because,
        scenario: ScenarioInfo {
            name: plan.name.clone(),
            file: plan.file.clone(),
            description: plan.description.clone(),
            seed: plan.seed,
        },
        target: plan.target.clone(),
        protocol: Some(plan.protocol),
        tls_verified: plan.tls_verified,
        model: plan.load.model.clone(),
        workers: plan.workers,
        started_at: plan.started_at.clone(),
        planned_duration_s: plan.load.duration_s,
        duration_s: round3(facts.duration_s),
        totals: Totals {
            requests: overall.requests,
            redirects: overall.redirects,
            dropped: overall.dropped,
            errors: overall.error_total(),
            error_rate: rate(overall.failed_attempts(), overall.attempts()),
            rps: round3(overall.requests as f64 / elapsed),
            errors_by_class: by_class(&overall.errors),
            latency_us: Percentiles::of(overall.latency.as_ref()),
            failed_latency_us: Percentiles::of(overall.failed_latency.as_ref()),
            saturated: overall.saturated,
            abandoned: overall.abandoned,
            retried_unprocessed: overall.retried_unprocessed,
            iterations,
            instances: totals.instances.clone(),
        },
        journeys,
        generator: generator_summary(
            &totals.generator,
            Percentiles::of(overall.latency.as_ref()).p50,
            facts.host.map(|host| (host, plan.workers)),
        ),
        files: run_files(plan.verify_specs.is_some()),
        scopes,
        faults: facts.faults,
        settle_ms: plan.settle_ms,
        slos: Vec::new(),
        failover: Vec::new(),
        // Nothing says passed before the verdicts exist.
        slo_passed: false,
        fault_problems: Vec::new(),
        verify_specs: plan.verify_specs.clone(),
        verify: None,
        accounting: Some(accounting),
        delivery: Some(delivery),
        verdict: RunVerdict::Unjudged,
        feeders: feeder_summaries(plan, totals),
        observe: Vec::new(),
    }
}

/// A summary per journey of the plan, with one per step.
fn journey_summaries(
    plan: &RunPlan,
    accounts: &[JourneyAccount<'_>],
    totals: &Snapshot,
) -> Vec<JourneySummary> {
    plan.journeys
        .iter()
        .zip(accounts)
        .map(|(journey, account)| {
            let steps = journey
                .steps
                .iter()
                .map(|step| {
                    let stats = &totals.steps[step.index];
                    let mut summary = step_summary(step.name.clone(), step.index, stats);
                    summary.checks_failed = stats
                        .checks_failed
                        .iter()
                        .filter_map(|(index, count)| {
                            step.checks
                                .get(*index as usize)
                                .map(|label| (label.clone(), *count))
                        })
                        .collect();
                    summary.failure_samples = stats
                        .samples
                        .iter()
                        .map(|(class, samples)| (class.name().to_string(), samples.to_vec()))
                        .collect();
                    summary
                })
                .collect();
            journey_summary(journey.name.clone(), journey.weight, account, steps)
        })
        .collect()
}

/// The iterations that did not start, by reason, over every journey.
fn not_started(accounts: &[JourneyAccount<'_>]) -> [u64; NotStarted::COUNT] {
    let mut not_started = [0; NotStarted::COUNT];
    for account in accounts {
        for (total, n) in not_started.iter_mut().zip(account.not_started.iter()) {
            *total += n;
        }
    }
    not_started
}

/// What each scope of the histograms and series is: every request, a journey's iteration
/// durations, a step's requests.
fn scopes(plan: &RunPlan) -> BTreeMap<String, String> {
    let mut scopes = BTreeMap::new();
    scopes.insert(Tag::All.to_string(), "every request".to_string());
    for (index, journey) in plan.journeys.iter().enumerate() {
        scopes.insert(
            Tag::Journey(index).to_string(),
            format!("{} (iteration durations)", journey.name),
        );
        for step in &journey.steps {
            scopes.insert(
                Tag::Step(step.index).to_string(),
                format!("{} / {}", journey.name, step.name),
            );
        }
    }
    scopes
}

fn journey_summary(
    name: String,
    weight: u32,
    account: &JourneyAccount<'_>,
    steps: Vec<StepSummary>,
) -> JourneySummary {
    let stats = account.stats;
    JourneySummary {
        name,
        weight,
        planned: account.planned,
        started: stats.started,
        completed: stats.completed,
        failed: stats.failed,
        interrupted: stats.interrupted,
        dropped: stats.dropped,
        not_started: by_reason(&account.not_started),
        failed_by_class: by_class(&stats.failed_by),
        duration_us: Percentiles::of(stats.duration.as_ref()),
        steps,
    }
}

fn step_summary(name: String, index: usize, stats: &RequestStats) -> StepSummary {
    StepSummary {
        name,
        index,
        requests: stats.requests,
        redirects: stats.redirects,
        dropped: stats.dropped,
        abandoned: stats.abandoned,
        retried_unprocessed: stats.retried_unprocessed,
        errors: stats.error_total(),
        error_rate: rate(stats.failed_attempts(), stats.attempts()),
        errors_by_class: by_class(&stats.errors),
        latency_us: Percentiles::of(stats.latency.as_ref()),
        failed_latency_us: Percentiles::of(stats.failed_latency.as_ref()),
        checks_failed: BTreeMap::new(),
        failure_samples: BTreeMap::new(),
    }
}

pub(crate) fn by_class(counts: &ErrorCounts) -> BTreeMap<String, u64> {
    ErrorClass::ALL
        .iter()
        .filter(|c| counts[c.index()] > 0)
        .map(|c| (c.name().to_string(), counts[c.index()]))
        .collect()
}

/// `part` of `whole` (0 when there is no whole).
pub(crate) fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Schema 3 wrote an unknown protocol as `""`: read as none.
fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<HttpVersion>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<String>::deserialize(deserializer)?.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => {
            HttpVersion::deserialize(serde::de::value::StrDeserializer::new(text)).map(Some)
        }
    }
}
