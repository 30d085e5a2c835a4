//! One journey iteration: pick the journey, fill its generator and feeder slots from the
//! iteration's seeded RNG, run the steps in order carrying extracted values, stop at the
//! first failed step, record every request and the outcome.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::Full;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::http::{ClientConfig, Connection, Response};
use crate::metrics::{ErrorClass, Recorder};
use crate::scenario::plan::{
    BodyPlan, CheckKind, ExtractSource, FeederOrder, GeneratorKind, JourneyPlan, Plan, StepPlan,
};
use crate::scenario::template::Values;

/// State shared by all workers: counters whose order does not need to be per-worker.
pub struct SharedCounters {
    pub iterations: AtomicU64,
    /// Open-model journeys in flight across every worker: the run-wide `max_in_flight`.
    pub in_flight: AtomicUsize,
    feeder_cursors: Vec<AtomicU64>,
}

impl SharedCounters {
    pub fn new(plan: &Plan) -> SharedCounters {
        SharedCounters {
            iterations: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            feeder_cursors: plan.feeders.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What every task on one worker thread reads.
pub struct WorkerContext {
    pub plan: Arc<Plan>,
    pub client: ClientConfig,
    pub recorder: RefCell<Recorder>,
    pub shared: Arc<SharedCounters>,
    pub seed: u64,
    /// Idle keep-alive connections between open-model arrivals.
    pub idle: RefCell<Vec<Connection>>,
    total_weight: u64,
    prefix: Bytes,
}

impl WorkerContext {
    pub fn new(
        plan: Arc<Plan>,
        client: ClientConfig,
        recorder: Recorder,
        shared: Arc<SharedCounters>,
        seed: u64,
    ) -> WorkerContext {
        let total_weight = plan.journeys.iter().map(|j| u64::from(j.weight)).sum();
        let prefix = Bytes::from(plan.target.base.prefix.clone());
        WorkerContext {
            plan,
            client,
            recorder: RefCell::new(recorder),
            shared,
            seed,
            idle: RefCell::new(Vec::new()),
            total_weight,
            prefix,
        }
    }
}

/// The RNG of iteration `number`: a pure function of the run's seed and the number, so the
/// same seed replays the same journeys, generator values and think times.
pub fn iteration_rng(seed: u64, number: u64) -> SmallRng {
    // SplitMix64 finalizer: neighbouring numbers get unrelated streams.
    let mut z = seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// An open-model arrival handed to its iteration: when it was due, and the second its
/// first request is charged to (held open by the recorder since the launch).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub due: Instant,
    pub second: u64,
}

/// How an iteration ended, for the closed model's pacing.
#[derive(Debug, Clone, Copy)]
pub struct IterationEnd {
    pub journey: usize,
    /// `Some`: it failed; the failed step's think time (zero without one).
    pub failed_think: Option<Duration>,
}

/// Runs iteration `number`. `arrival` is the open model's scheduled start: the first
/// request's latency is measured from it, so time spent waiting to send counts.
pub async fn run_iteration(
    ctx: &WorkerContext,
    connection: &mut Option<Connection>,
    number: u64,
    vu: u64,
    arrival: Option<Arrival>,
) -> IterationEnd {
    // The arrival's second was held open at its launch; from here a guard releases it,
    // however this iteration ends.
    let arrival = arrival.map(|a| (a, Pending::adopt(ctx, a.second)));
    let mut rng = iteration_rng(ctx.seed, number);
    let journey_index = pick_journey(&ctx.plan.journeys, ctx.total_weight, &mut rng);
    let journey = &ctx.plan.journeys[journey_index];
    let started = arrival.as_ref().map_or_else(Instant::now, |(a, _)| a.due);
    ctx.recorder
        .borrow_mut()
        .journey_started(journey_index, Instant::now());
    let mut guard = Unfinished {
        ctx,
        journey: journey_index,
        started,
        armed: true,
    };

    let outcome = match fill_slots(ctx, journey, &mut rng, vu, number) {
        Ok(mut values) => run_steps(ctx, journey, &mut values, connection, &mut rng, arrival).await,
        Err(class) => Err((class, Duration::ZERO)),
    };
    guard.armed = false;
    let now = Instant::now();
    ctx.recorder.borrow_mut().journey_finished(
        journey_index,
        now.saturating_duration_since(started),
        outcome.map_err(|(class, _)| class),
        now,
    );
    IterationEnd {
        journey: journey_index,
        failed_think: outcome.err().map(|(_, think)| think),
    }
}

/// The journey and first step an iteration would run: what a dropped arrival is charged to.
pub fn first_step_of(ctx: &WorkerContext, number: u64) -> (usize, usize) {
    let mut rng = iteration_rng(ctx.seed, number);
    let journey = pick_journey(&ctx.plan.journeys, ctx.total_weight, &mut rng);
    let first = ctx.plan.journeys[journey]
        .steps
        .first()
        .map_or(0, |s| s.global_index);
    (journey, first)
}

/// A request's second held open in the recorder until its outcome is recorded or the
/// request is abandoned (dropped at the hard stop).
pub struct Pending<'a> {
    ctx: &'a WorkerContext,
    second: u64,
}

impl<'a> Pending<'a> {
    fn new(ctx: &'a WorkerContext, intended: Instant) -> Pending<'a> {
        let second = ctx.recorder.borrow_mut().pend(intended);
        Pending { ctx, second }
    }

    fn adopt(ctx: &'a WorkerContext, second: u64) -> Pending<'a> {
        Pending { ctx, second }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.ctx.recorder.borrow_mut().release(self.second);
    }
}

/// Records an iteration that was dropped mid-way (the run's hard stop) as interrupted.
struct Unfinished<'a> {
    ctx: &'a WorkerContext,
    journey: usize,
    started: Instant,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed {
            let now = Instant::now();
            self.ctx.recorder.borrow_mut().journey_finished(
                self.journey,
                now.saturating_duration_since(self.started),
                Err(ErrorClass::Interrupted),
                now,
            );
        }
    }
}

fn pick_journey(journeys: &[JourneyPlan], total_weight: u64, rng: &mut SmallRng) -> usize {
    if journeys.len() == 1 {
        return 0;
    }
    let mut ticket = rng.random_range(0..total_weight);
    for (index, journey) in journeys.iter().enumerate() {
        let weight = u64::from(journey.weight);
        if ticket < weight {
            return index;
        }
        ticket -= weight;
    }
    journeys.len() - 1
}

/// The values an iteration's templates read.
struct IterationValues<'p> {
    plan: &'p Plan,
    slots: Vec<Slot>,
    vu: u64,
    iteration: u64,
    /// The round of the step being sent (`{{repeat}}`).
    round: u32,
}

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    Value(Value),
    Row { feeder: usize, row: usize },
}

impl Values for IterationValues<'_> {
    fn slot(&self, slot: usize) -> Option<&Value> {
        match self.slots.get(slot) {
            Some(Slot::Value(value)) => Some(value),
            _ => None,
        }
    }

    fn column(&self, slot: usize, column: usize) -> Option<&Value> {
        match self.slots.get(slot) {
            Some(Slot::Row { feeder, row }) => self.plan.feeders[*feeder].rows[*row].get(column),
            _ => None,
        }
    }

    fn vu(&self) -> u64 {
        self.vu
    }

    fn iteration(&self) -> u64 {
        self.iteration
    }

    fn repeat(&self) -> u32 {
        self.round
    }
}

fn fill_slots<'p>(
    ctx: &'p WorkerContext,
    journey: &JourneyPlan,
    rng: &mut SmallRng,
    vu: u64,
    iteration: u64,
) -> Result<IterationValues<'p>, ErrorClass> {
    let plan = &*ctx.plan;
    let mut slots = vec![Slot::Empty; journey.slot_count];
    for &(generator, slot) in &journey.generator_slots {
        slots[slot] = Slot::Value(match &plan.generators[generator].kind {
            GeneratorKind::Uuid => Value::String(
                uuid::Builder::from_random_bytes(rng.random())
                    .into_uuid()
                    .to_string(),
            ),
            GeneratorKind::Int { min, max } => Value::from(rng.random_range(*min..=*max)),
            GeneratorKind::Pick(values) => values[rng.random_range(0..values.len())].clone(),
        });
    }
    for &(feeder_index, slot) in &journey.feeder_slots {
        let feeder = &plan.feeders[feeder_index];
        let rows = feeder.rows.len();
        let row = match feeder.order {
            FeederOrder::Random => rng.random_range(0..rows),
            FeederOrder::Sequential => {
                (ctx.shared.feeder_cursors[feeder_index].fetch_add(1, Ordering::Relaxed)
                    % rows as u64) as usize
            }
            FeederOrder::Unique => {
                let next = ctx.shared.feeder_cursors[feeder_index].fetch_add(1, Ordering::Relaxed);
                if next >= rows as u64 {
                    return Err(ErrorClass::FeederExhausted);
                }
                next as usize
            }
        };
        slots[slot] = Slot::Row {
            feeder: feeder_index,
            row,
        };
    }
    Ok(IterationValues {
        plan,
        slots,
        vu,
        iteration,
        round: 0,
    })
}

/// A failed step: its class and its think time (what the closed model waits at least).
type StepFailure = (ErrorClass, Duration);

async fn run_steps<'c>(
    ctx: &'c WorkerContext,
    journey: &JourneyPlan,
    values: &mut IterationValues<'_>,
    connection: &mut Option<Connection>,
    rng: &mut SmallRng,
    mut arrival: Option<(Arrival, Pending<'c>)>,
) -> Result<(), StepFailure> {
    for step in &journey.steps {
        for round in 0..step.repeat {
            values.round = round;
            run_step(ctx, step, values, connection, rng, arrival.take()).await?;
        }
    }
    Ok(())
}

/// One request of a step (one round of a repeated one), then its think time. `arrival` is
/// the open model's scheduled start, for the journey's first request only; every other
/// request is meant to start the moment the journey is ready to send it.
async fn run_step<'c>(
    ctx: &'c WorkerContext,
    step: &StepPlan,
    values: &mut IterationValues<'_>,
    connection: &mut Option<Connection>,
    rng: &mut SmallRng,
    arrival: Option<(Arrival, Pending<'c>)>,
) -> Result<(), StepFailure> {
    let (intended, pending) = match arrival {
        Some((arrival, pending)) => {
            // Lateness ends here, as the request begins (before any connect: connect time
            // is the target's latency, not the generator's lateness).
            let lag = Instant::now().saturating_duration_since(arrival.due);
            ctx.recorder.borrow_mut().arrival_began(pending.second, lag);
            (arrival.due, pending)
        }
        None => {
            let now = Instant::now();
            (now, Pending::new(ctx, now))
        }
    };
    let outcome = match build_request(ctx, step, values) {
        Ok(request) => match ctx.client.send(connection, request, step.keeps_body).await {
            Ok(response) => {
                if let Some(instance) = response
                    .headers
                    .get(&ctx.plan.target.instance_header)
                    .and_then(|v| v.to_str().ok())
                {
                    ctx.recorder
                        .borrow_mut()
                        .served_by(pending.second, instance);
                }
                check_response(step, &response, values).map_err(|failure| {
                    if let Failure::Check(index) = failure {
                        ctx.recorder.borrow_mut().check_failed(
                            step.global_index,
                            pending.second,
                            index,
                        );
                    }
                    failure.class()
                })
            }
            Err(class) => Err(class),
        },
        Err(class) => Err(class),
    };
    let done = Instant::now();
    ctx.recorder.borrow_mut().request(
        step.global_index,
        pending.second,
        done.saturating_duration_since(intended),
        outcome,
        done,
    );
    drop(pending);
    let pause = step.think.map(|think| {
        if think.min == think.max {
            think.min
        } else {
            Duration::from_secs_f64(
                rng.random_range(think.min.as_secs_f64()..=think.max.as_secs_f64()),
            )
        }
    });
    if let Err(class) = outcome {
        return Err((class, pause.unwrap_or_default()));
    }
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

fn build_request(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &IterationValues<'_>,
) -> Result<Request<Full<Bytes>>, ErrorClass> {
    let mut target = Vec::with_capacity(ctx.prefix.len() + step.path.source.len() + 16);
    target.extend_from_slice(&ctx.prefix);
    step.path.render_into(values, &mut target);
    let uri = http::Uri::from_maybe_shared(Bytes::from(target))
        .map_err(|_| ErrorClass::InvalidRequest)?;
    let body = match &step.body {
        BodyPlan::None => Bytes::new(),
        BodyPlan::Raw(t) | BodyPlan::Json(t) | BodyPlan::Form(t) => Bytes::from(t.render(values)),
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = step.method.clone();
    *request.uri_mut() = uri;
    if !ctx.plan.target.headers.is_empty() {
        *request.headers_mut() = ctx.plan.target.headers.clone();
    }
    for (name, template) in &step.headers {
        let value = HeaderValue::from_maybe_shared(Bytes::from(template.render(values)))
            .map_err(|_| ErrorClass::InvalidRequest)?;
        request.headers_mut().insert(name.clone(), value);
    }
    Ok(request)
}

/// Why a response did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Class(ErrorClass),
    /// The step's check with this index said no.
    Check(u16),
}

impl Failure {
    fn class(self) -> ErrorClass {
        match self {
            Failure::Class(class) => class,
            Failure::Check(_) => ErrorClass::CheckFailed,
        }
    }
}

impl From<ErrorClass> for Failure {
    fn from(class: ErrorClass) -> Failure {
        Failure::Class(class)
    }
}

/// Checks the status and the step's checks, then performs its extractions into the
/// iteration's slots.
fn check_response(
    step: &StepPlan,
    response: &Response,
    values: &mut IterationValues<'_>,
) -> Result<(), Failure> {
    let status = response.status.as_u16();
    if !step.expect.matches(status) {
        return Err(ErrorClass::for_status(status).into());
    }
    let mut body: Option<Value> = None;
    for (index, check) in step.checks.iter().enumerate() {
        let passed = match &check.kind {
            CheckKind::Json { pointer, expected } => parsed(&mut body, &response.body)
                .ok()
                .and_then(|json| json.pointer(pointer))
                .is_some_and(|found| found == expected),
            CheckKind::BodyContains(text) => {
                String::from_utf8_lossy(&response.body).contains(text.as_str())
            }
            CheckKind::Header { name, pattern } => response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| crate::chaos::spec::glob_match(pattern, v)),
        };
        if !passed {
            return Err(Failure::Check(index as u16));
        }
    }
    for extraction in &step.extract {
        let value = match &extraction.source {
            ExtractSource::Header(name) => response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| Value::String(v.to_string())),
            ExtractSource::JsonPointer(pointer) => {
                parsed(&mut body, &response.body)?.pointer(pointer).cloned()
            }
            ExtractSource::JsonPath(path) => path
                .query(parsed(&mut body, &response.body)?)
                .first()
                .cloned(),
        };
        match value {
            Some(Value::Null) | None => return Err(ErrorClass::ExtractionFailed.into()),
            Some(value) => values.slots[extraction.slot] = Slot::Value(value),
        }
    }
    Ok(())
}

fn parsed<'a>(cache: &'a mut Option<Value>, body: &Bytes) -> Result<&'a Value, ErrorClass> {
    if cache.is_none() {
        *cache = Some(serde_json::from_slice(body).map_err(|_| ErrorClass::ExtractionFailed)?);
    }
    Ok(cache.as_ref().expect("filled above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_rngs_are_reproducible_and_distinct() {
        let a: u64 = iteration_rng(42, 7).random();
        let b: u64 = iteration_rng(42, 7).random();
        let c: u64 = iteration_rng(42, 8).random();
        let d: u64 = iteration_rng(43, 7).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
