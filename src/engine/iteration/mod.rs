//! One journey iteration: pick the journey, fill its generator and feeder slots from the
//! iteration's seeded RNG, run the steps in order carrying extracted values, stop at the
//! first failed step, record every request and the outcome.

mod redirects;
mod response;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::Value;

use self::redirects::{follow, request_url};
use self::response::{Rejected, check_response};
use super::cookies::Jar;
use super::http::{Client, Connection, Failure, Response, Route};
use super::mix::JourneyMix;
use crate::metrics::{ErrorClass, NotStarted, Recorder};
use crate::plan::data::{generate, iteration_rng};
use crate::plan::template::Values;
use crate::plan::{ConnectionMode, FeederOrder, JourneyPlan, OnExhausted, Plan, StepPlan};

/// State shared by all workers: counters whose order does not need to be per-worker.
pub(crate) struct SharedCounters {
    pub iterations: AtomicU64,
    /// Open-model journeys in flight across every worker: the run-wide `max_in_flight`.
    pub in_flight: AtomicUsize,
    feeder_cursors: Vec<AtomicU64>,
}

impl SharedCounters {
    pub(crate) fn new(plan: &Plan) -> SharedCounters {
        SharedCounters {
            iterations: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            feeder_cursors: plan.feeders.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What every task on one worker thread reads.
pub(crate) struct WorkerContext {
    pub plan: Arc<Plan>,
    /// The worker's HTTP client and its connections (idle HTTP/1.1, shared HTTP/2).
    pub client: Client,
    pub recorder: RefCell<Recorder>,
    pub shared: Arc<SharedCounters>,
    pub seed: u64,
    mix: JourneyMix,
    prefix: Bytes,
}

impl WorkerContext {
    pub(crate) fn new(
        plan: Arc<Plan>,
        client: Client,
        recorder: Recorder,
        shared: Arc<SharedCounters>,
        seed: u64,
    ) -> WorkerContext {
        let mix = JourneyMix::of(&plan.journeys);
        let prefix = Bytes::from(plan.target.base.prefix.clone());
        WorkerContext {
            plan,
            client,
            recorder: RefCell::new(recorder),
            shared,
            seed,
            mix,
            prefix,
        }
    }
}

/// One client's state between its requests: the connection it holds, its cookies and the
/// source address it sends from. A closed-model user keeps its session across iterations
/// (as a browser keeps its connection and cookies); an open-model iteration has its own.
pub(crate) struct Session {
    held: Option<Connection>,
    jar: Option<Jar>,
    source: Option<std::net::IpAddr>,
    /// A closed-model user's: the held connection stays with it between iterations.
    carried: bool,
}

/// Salt of the RNG that picks source addresses, so adding `source_addrs` to a scenario
/// does not change which journeys and values a seed replays.
const SOURCE_SALT: u64 = 0x5EED_AD0D_5A17_0001;

impl Session {
    fn new(ctx: &WorkerContext, pick: u64, carried: bool) -> Session {
        let pool = &ctx.plan.target.source_addrs;
        let source = (!pool.is_empty())
            .then(|| pool[iteration_rng(ctx.seed ^ SOURCE_SALT, pick).random_range(0..pool.len())]);
        Session {
            held: None,
            jar: ctx.plan.target.cookies.then(Jar::default),
            source,
            carried,
        }
    }

    /// A closed-model user's session: one source address for all its iterations.
    pub(crate) fn user(ctx: &WorkerContext, vu: u64) -> Session {
        Session::new(ctx, vu, true)
    }

    /// An open-model iteration's session.
    pub(crate) fn arrival(ctx: &WorkerContext, number: u64) -> Session {
        Session::new(ctx, number, false)
    }
}

/// An open-model arrival handed to its iteration: when it was due, and the second its
/// first request is charged to (held open by the recorder since the launch).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub due: Instant,
    pub second: u64,
}

/// How an iteration ended, for the closed model's pacing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IterationEnd {
    pub journey: usize,
    /// `Some`: it failed; the failed step's think time (zero without one).
    pub failed_think: Option<Duration>,
    /// It never started (a `unique` feeder had no row left).
    pub not_started: bool,
}

/// Runs iteration `number`. `arrival` is the open model's scheduled start: the first
/// request's latency is measured from it, so time spent waiting to send counts.
pub(crate) async fn run_iteration(
    ctx: &WorkerContext,
    session: &mut Session,
    number: u64,
    vu: u64,
    arrival: Option<Arrival>,
) -> IterationEnd {
    // The arrival's second was held open at its launch; from here a guard releases it,
    // however this iteration ends.
    let arrival = arrival.map(|a| (a, Pending::adopt(ctx, a.second)));
    let mut rng = iteration_rng(ctx.seed, number);
    let journey_index = ctx.mix.pick(&mut rng);
    let journey = &ctx.plan.journeys[journey_index];
    let started = arrival.as_ref().map_or_else(Instant::now, |(a, _)| a.due);
    // The second this iteration was meant to start in: the arrival's (held open), or for a
    // closed-model user, now (never final yet).
    let second = match &arrival {
        Some((a, _)) => a.second,
        None => {
            let mut recorder = ctx.recorder.borrow_mut();
            let second = recorder.second_of(started);
            recorder.iteration_begun(journey_index, second);
            second
        }
    };
    let mut values = match fill_slots(ctx, journey, &mut rng, vu, number, second) {
        Ok(values) => values,
        Err(why) => {
            ctx.recorder
                .borrow_mut()
                .journey_not_started(journey_index, second, why);
            return IterationEnd {
                journey: journey_index,
                failed_think: None,
                not_started: true,
            };
        }
    };
    ctx.recorder
        .borrow_mut()
        .journey_started(journey_index, second);
    let mut guard = Unfinished {
        ctx,
        journey: journey_index,
        started,
        armed: true,
    };

    if journey.connection == ConnectionMode::Keep && session.held.is_none() && !session.carried {
        // An open-model arrival reuses one of the worker's idle keep-alive connections, as a
        // browser population behind a few proxies would.
        session.held = ctx.client.take_idle(session.source);
    }
    values.refresh_cookies(ctx, session);
    let outcome = run_steps(ctx, journey, &mut values, session, &mut rng, arrival).await;
    match journey.connection {
        ConnectionMode::New => session.held = None,
        ConnectionMode::Keep if !session.carried => {
            if let Some(connection) = session.held.take() {
                ctx.client.put_idle(session.source, connection);
            }
        }
        ConnectionMode::Keep | ConnectionMode::Pool => {}
    }
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
        not_started: false,
    }
}

/// The journey and first step an iteration would run: what a dropped arrival is charged to.
pub(crate) fn first_step_of(ctx: &WorkerContext, number: u64) -> (usize, usize) {
    let journey = ctx.mix.journey_of(ctx.seed, number);
    let first = ctx.plan.journeys[journey]
        .steps
        .first()
        .map_or(0, |s| s.global_index);
    (journey, first)
}

/// A request's second held open in the recorder until its outcome is recorded or the
/// request is abandoned (dropped at the hard stop).
pub(crate) struct Pending<'a> {
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

/// Counts a request dropped before its outcome came (the run's hard stop) as abandoned.
struct CutOff<'a> {
    ctx: &'a WorkerContext,
    step: usize,
    second: u64,
    armed: bool,
}

impl Drop for CutOff<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.ctx
                .recorder
                .borrow_mut()
                .abandoned(self.step, self.second);
        }
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
            self.ctx.recorder.borrow_mut().journey_interrupted(
                self.journey,
                now.saturating_duration_since(self.started),
                now,
            );
        }
    }
}

/// The values an iteration's templates read.
struct IterationValues<'p> {
    plan: &'p Plan,
    slots: Vec<Slot>,
    vu: u64,
    iteration: u64,
    /// The round of the step being sent (`{{repeat}}`).
    round: u32,
    /// The jar's values of the plan's `cookie_names`, refreshed when a response sets one.
    cookies: Vec<Option<String>>,
}

impl IterationValues<'_> {
    fn refresh_cookies(&mut self, ctx: &WorkerContext, session: &Session) {
        if self.plan.cookie_names.is_empty() {
            return;
        }
        let Some(jar) = &session.jar else { return };
        let url = request_url(&ctx.client.config.origin, "/");
        for (value, name) in self.cookies.iter_mut().zip(&self.plan.cookie_names) {
            *value = url.as_ref().and_then(|url| jar.value(url, name));
        }
    }
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

    fn cookie(&self, index: usize) -> Option<&str> {
        self.cookies.get(index)?.as_deref()
    }
}

/// The iteration's values: its generators' draws and its feeders' rows. A `unique`
/// feeder with no row left either wraps around or keeps the iteration from starting.
fn fill_slots<'p>(
    ctx: &'p WorkerContext,
    journey: &JourneyPlan,
    rng: &mut SmallRng,
    vu: u64,
    iteration: u64,
    second: u64,
) -> Result<IterationValues<'p>, NotStarted> {
    let plan = &*ctx.plan;
    let mut slots = vec![Slot::Empty; journey.slot_count];
    for &(generator, slot) in &journey.generator_slots {
        slots[slot] = Slot::Value(generate(&plan.generators[generator].kind, rng));
    }
    for &(feeder_index, slot) in &journey.feeder_slots {
        let feeder = &plan.feeders[feeder_index];
        let rows = feeder.rows.len() as u64;
        let row = match feeder.order {
            FeederOrder::Random => rng.random_range(0..rows),
            FeederOrder::Sequential => {
                ctx.shared.feeder_cursors[feeder_index].fetch_add(1, Ordering::Relaxed) % rows
            }
            FeederOrder::Unique => {
                let next = ctx.shared.feeder_cursors[feeder_index].fetch_add(1, Ordering::Relaxed);
                if next >= rows {
                    let wraps = feeder.on_exhausted == OnExhausted::Wrap;
                    ctx.recorder
                        .borrow_mut()
                        .feeder_ran_out(feeder_index, second, wraps);
                    match feeder.on_exhausted {
                        OnExhausted::Wrap => {}
                        OnExhausted::Fail => return Err(NotStarted::FeederExhausted),
                        OnExhausted::StopJourney => return Err(NotStarted::JourneyStopped),
                    }
                }
                next % rows
            }
        };
        slots[slot] = Slot::Row {
            feeder: feeder_index,
            row: row as usize,
        };
    }
    Ok(IterationValues {
        plan,
        slots,
        vu,
        iteration,
        round: 0,
        cookies: vec![None; plan.cookie_names.len()],
    })
}

/// A failed step: its class and its think time (what the closed model waits at least).
type StepFailure = (ErrorClass, Duration);

async fn run_steps<'c>(
    ctx: &'c WorkerContext,
    journey: &JourneyPlan,
    values: &mut IterationValues<'_>,
    session: &mut Session,
    rng: &mut SmallRng,
    mut arrival: Option<(Arrival, Pending<'c>)>,
) -> Result<(), StepFailure> {
    for step in &journey.steps {
        for round in 0..step.repeat {
            values.round = round;
            run_step(ctx, journey, step, values, session, rng, arrival.take()).await?;
        }
    }
    Ok(())
}

/// One request of a step (one round of a repeated one), then its think time. `arrival` is
/// the open model's scheduled start, for the journey's first request only; every other
/// request is meant to start the moment the journey is ready to send it.
async fn run_step<'c>(
    ctx: &'c WorkerContext,
    journey: &JourneyPlan,
    step: &StepPlan,
    values: &mut IterationValues<'_>,
    session: &mut Session,
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
    let route = Route {
        mode: journey.connection,
        source: session.source,
    };
    // Dropped before its outcome is recorded (the hard stop), the request is counted as
    // abandoned: it may have reached the server. Declared after `pending`, so it is
    // counted before the second is released.
    let mut cut_off = CutOff {
        ctx,
        step: step.global_index,
        second: pending.second,
        armed: true,
    };
    let outcome = match follow(ctx, step, values, session, route, pending.second).await {
        Ok(response) => answered(ctx, step, values, &response, pending.second),
        Err(failure) => {
            sample_failure(ctx, step, &failure, pending.second);
            Err(failure.class)
        }
    };
    let done = Instant::now();
    cut_off.armed = false;
    {
        let mut recorder = ctx.recorder.borrow_mut();
        recorder.request(
            step.global_index,
            pending.second,
            done.saturating_duration_since(intended),
            outcome,
            done,
        );
        // An acknowledged write: what it wrote, for reading back after the run.
        if let (Ok(()), Some(record)) = (outcome, &step.record) {
            recorder.ack(
                record.kind,
                step.global_index,
                done,
                record.body.render(values),
            );
        }
    }
    drop(pending);
    let pause = think_time(step, rng);
    if let Err(class) = outcome {
        return Err((class, pause.unwrap_or_default()));
    }
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// A response: the instance that served it counted, then its checks; a rejected one's
/// check and a sample of why counted against its step.
fn answered(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &mut IterationValues<'_>,
    response: &Response,
    second: u64,
) -> Result<(), ErrorClass> {
    if let Some(instance) = response
        .headers
        .get(&ctx.plan.target.instance_header)
        .and_then(|v| v.to_str().ok())
    {
        ctx.recorder.borrow_mut().served_by(second, instance);
    }
    match check_response(step, response, values) {
        Ok(()) => Ok(()),
        Err(rejected) => {
            let class = rejected.class();
            let mut recorder = ctx.recorder.borrow_mut();
            if let Rejected::Check(mismatch) = &rejected {
                recorder.check_failed(step.global_index, second, mismatch.index as u16);
            }
            let status = Some(response.status.as_u16());
            if recorder.wants_sample(step.global_index, class) {
                let detail = rejected.detail(step, &response.body);
                recorder.failure_sample(step.global_index, second, class, status, &detail);
            }
            Err(class)
        }
    }
}

/// A sample of why a request failed, while its step and class have room for one.
fn sample_failure(ctx: &WorkerContext, step: &StepPlan, failure: &Failure, second: u64) {
    let mut recorder = ctx.recorder.borrow_mut();
    if recorder.wants_sample(step.global_index, failure.class) {
        let detail = match (failure.detail.as_deref(), failure.class) {
            (Some(detail), _) => detail.to_string(),
            (None, ErrorClass::BodyTooLarge) => format!(
                "the body passed max_body ({} bytes, inflated)",
                ctx.plan.target.max_body
            ),
            (None, class) => class.name().replace('_', " "),
        };
        recorder.failure_sample(step.global_index, second, failure.class, None, &detail);
    }
}

/// The think time after a step: its `think`, or a uniform draw between its bounds.
fn think_time(step: &StepPlan, rng: &mut SmallRng) -> Option<Duration> {
    step.think.map(|think| {
        if think.min == think.max {
            think.min
        } else {
            Duration::from_secs_f64(
                rng.random_range(think.min.as_secs_f64()..=think.max.as_secs_f64()),
            )
        }
    })
}
