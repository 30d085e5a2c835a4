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
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::Value;

use super::check::{Body, Mismatch, first_mismatch};
use super::cookies::Jar;
use super::http::Failure;
use super::http::{Client, Connection, Origin, Response, Route};
use super::mix::{JourneyMix, iteration_rng};
use crate::metrics::samples::EXCERPT_BYTES;
use crate::metrics::{ErrorClass, NotStarted, Recorder};
use crate::plan::template::Values;
use crate::plan::{
    BodyPlan, ConnectionMode, ExtractSource, FeederOrder, GeneratorKind, JourneyPlan, OnExhausted,
    Plan, StepPlan,
};

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
    /// The worker's HTTP client and its connections (idle HTTP/1.1, shared HTTP/2).
    pub client: Client,
    pub recorder: RefCell<Recorder>,
    pub shared: Arc<SharedCounters>,
    pub seed: u64,
    mix: JourneyMix,
    prefix: Bytes,
}

impl WorkerContext {
    pub fn new(
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
pub struct Session {
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
    pub fn user(ctx: &WorkerContext, vu: u64) -> Session {
        Session::new(ctx, vu, true)
    }

    /// An open-model iteration's session.
    pub fn arrival(ctx: &WorkerContext, number: u64) -> Session {
        Session::new(ctx, number, false)
    }
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
    /// It never started (a `unique` feeder had no row left).
    pub not_started: bool,
}

/// Runs iteration `number`. `arrival` is the open model's scheduled start: the first
/// request's latency is measured from it, so time spent waiting to send counts.
pub async fn run_iteration(
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
pub fn first_step_of(ctx: &WorkerContext, number: u64) -> (usize, usize) {
    let journey = ctx.mix.journey_of(ctx.seed, number);
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

/// A generator's next value.
pub fn generate(kind: &GeneratorKind, rng: &mut SmallRng) -> Value {
    match kind {
        GeneratorKind::Uuid => Value::String(
            uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string(),
        ),
        GeneratorKind::Int { min, max } => Value::from(rng.random_range(*min..=*max)),
        GeneratorKind::Pick(values) => values[rng.random_range(0..values.len())].clone(),
    }
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
            match check_response(step, &response, values) {
                Ok(()) => Ok(()),
                Err(rejected) => {
                    let class = rejected.class();
                    let mut recorder = ctx.recorder.borrow_mut();
                    if let Rejected::Check(mismatch) = &rejected {
                        recorder.check_failed(
                            step.global_index,
                            pending.second,
                            mismatch.index as u16,
                        );
                    }
                    let status = Some(response.status.as_u16());
                    if recorder.wants_sample(step.global_index, class) {
                        let detail = rejected.detail(step, &response.body);
                        recorder.failure_sample(
                            step.global_index,
                            pending.second,
                            class,
                            status,
                            &detail,
                        );
                    }
                    Err(class)
                }
            }
        }
        Err(failure) => {
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
                recorder.failure_sample(
                    step.global_index,
                    pending.second,
                    failure.class,
                    None,
                    &detail,
                );
            }
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

/// Sends a step's request and follows its redirects (up to `[target] redirects`, each hop
/// checked against the allow-lists), carrying cookies both ways; returns the final
/// response. Every hop is counted as a request with outcome `redirect`; a step whose
/// `expect` names the 3xx is not followed. A request the server provably did not process
/// (`Failure::unprocessed`: a stream above a GOAWAY's last id, a refused stream, an
/// idempotent request on a kept-alive connection closed under it) is sent once more on a
/// fresh connection, as every client does, and counted `retried_unprocessed`: it stays one
/// request with one outcome, its latency running from the intended start. The caller
/// records the final outcome.
async fn follow(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &mut IterationValues<'_>,
    session: &mut Session,
    route: Route,
    second: u64,
) -> Result<Response, Failure> {
    let base = &ctx.client.config.origin;
    let mut origin: Option<Origin> = None;
    // The redirect hop being sent (`None`: the step's own request).
    let mut hop: Option<Hop> = None;
    let mut hops = 0;
    let mut retried = false;
    loop {
        // Built for each send (a retry too), so nothing is cloned on the way.
        let mut request = hop_request(ctx, step, values, hop.as_ref())?;
        let at = origin.as_ref().unwrap_or(base);
        let url = match &session.jar {
            Some(jar) if !jar.is_empty() => request_url(at, request_path(&request)),
            _ => None,
        };
        if let (Some(jar), Some(url)) = (&session.jar, &url)
            && let Some(cookies) = jar.header(url)
        {
            request.headers_mut().insert(http::header::COOKIE, cookies);
        }
        let sent = ctx
            .client
            .send(
                &mut session.held,
                route,
                origin.as_ref(),
                request,
                step.keeps_body,
                retried,
            )
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(failure) if failure.unprocessed && !retried => {
                retried = true;
                ctx.recorder
                    .borrow_mut()
                    .retried_unprocessed(step.global_index, second);
                continue;
            }
            Err(failure) => return Err(failure),
        };
        // The request went into `send`; its path is needed again only for a cookie or a
        // redirect, so it is rendered again then rather than kept for every request.
        let sent_path = |values: &IterationValues<'_>| match &hop {
            Some(hop) => hop.path.clone(),
            None => render_path(ctx, step, values),
        };
        if let Some(jar) = &mut session.jar
            && response.headers.contains_key(http::header::SET_COOKIE)
            && let Some(url) = url.clone().or_else(|| request_url(at, &sent_path(values)))
            && jar.store(&response.headers, &url)
        {
            values.refresh_cookies(ctx, session);
        }
        let status = response.status.as_u16();
        if !is_redirect(status) || step.expect.matches(status) || hops >= ctx.plan.target.redirects
        {
            return Ok(response);
        }
        let Some(location) = response
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(response);
        };
        let from = request_url(at, &sent_path(values)).ok_or(ErrorClass::Io)?;
        // A hop outside the allow-list is this response's failure: nothing more is sent.
        let (next, next_path) = redirect_target(ctx, &from, location).map_err(|class| {
            Failure::because(class, format!("a redirect to {location} was not followed (outside the allow-list, or not http/https)"))
        })?;
        ctx.recorder
            .borrow_mut()
            .redirect(step.global_index, second, Instant::now());
        hops += 1;
        retried = false;
        // 303 (and 301/302 after a POST, as browsers do) turn the request into a GET
        // without a body; 307 and 308 repeat it as it was.
        let was_get = hop.as_ref().is_some_and(|h| h.as_get);
        let method = if was_get {
            &http::Method::GET
        } else {
            &step.method
        };
        let as_get = was_get
            || status == 303 && method != http::Method::HEAD
            || matches!(status, 301 | 302) && method == http::Method::POST;
        hop = Some(Hop {
            path: next_path,
            as_get,
        });
        origin = (!next.same_as(base)).then_some(next);
    }
}

/// A redirect hop: where it goes, and whether it became a GET without a body.
struct Hop {
    path: String,
    as_get: bool,
}

/// The request of a step, or of one of its redirect hops.
fn hop_request(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &IterationValues<'_>,
    hop: Option<&Hop>,
) -> Result<Request<Bytes>, ErrorClass> {
    let mut request = build_request(ctx, step, values)?;
    let Some(hop) = hop else {
        return Ok(request);
    };
    *request.uri_mut() =
        http::Uri::from_maybe_shared(Bytes::from(hop.path.clone())).map_err(|_| ErrorClass::Io)?;
    if hop.as_get {
        *request.method_mut() = http::Method::GET;
        *request.body_mut() = Bytes::new();
        request.headers_mut().remove(http::header::CONTENT_TYPE);
        request.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    Ok(request)
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn request_path(request: &Request<Bytes>) -> &str {
    request.uri().path_and_query().map_or("/", |p| p.as_str())
}

/// The URL a request goes to, for the cookie jar's domain and path rules.
fn request_url(origin: &Origin, path: &str) -> Option<url::Url> {
    let authority = origin.authority.to_str().ok()?;
    url::Url::parse(&format!("{}://{authority}{path}", origin.scheme())).ok()
}

/// Where a `Location` leads: its origin (checked against the scenario's allow-list and the
/// operator policy, resolved here so a refused host is never connected to) and the
/// path-and-query to ask for there.
fn redirect_target(
    ctx: &WorkerContext,
    from: &url::Url,
    location: &str,
) -> Result<(Origin, String), ErrorClass> {
    let next = from
        .join(location)
        .map_err(|_| ErrorClass::RedirectRefused)?;
    let tls = match next.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(ErrorClass::RedirectRefused),
    };
    let host = match next.host().ok_or(ErrorClass::RedirectRefused)? {
        url::Host::Ipv6(ip) => ip.to_string(),
        other => other.to_string(),
    };
    let port = next
        .port_or_known_default()
        .ok_or(ErrorClass::RedirectRefused)?;
    let base = &ctx.client.config.origin;
    let addr = if base.is(tls, &host, port) {
        base.addr
    } else {
        let target = &ctx.plan.target;
        let addr = target
            .allow
            .resolve(&host, port)
            .map_err(|_| ErrorClass::RedirectRefused)?;
        if let Some((policy, _)) = &target.policy_allow {
            policy
                .resolve(&host, port)
                .map_err(|_| ErrorClass::RedirectRefused)?;
        }
        addr
    };
    let origin = Origin::new(tls, &host, port, addr).map_err(|_| ErrorClass::RedirectRefused)?;
    let mut path = next.path().to_string();
    if let Some(query) = next.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok((origin, path))
}

/// The step's path as `build_request` renders it (prefix included).
fn render_path(ctx: &WorkerContext, step: &StepPlan, values: &IterationValues<'_>) -> String {
    let mut target = Vec::with_capacity(ctx.prefix.len() + step.path.source.len() + 16);
    target.extend_from_slice(&ctx.prefix);
    step.path.render_into(values, &mut target);
    String::from_utf8_lossy(&target).into_owned()
}

fn build_request(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &IterationValues<'_>,
) -> Result<Request<Bytes>, ErrorClass> {
    let mut target = Vec::with_capacity(ctx.prefix.len() + step.path.source.len() + 16);
    target.extend_from_slice(&ctx.prefix);
    step.path.render_into(values, &mut target);
    let uri = http::Uri::from_maybe_shared(Bytes::from(target))
        .map_err(|_| ErrorClass::InvalidRequest)?;
    let body = match &step.body {
        BodyPlan::None => Bytes::new(),
        BodyPlan::Raw(t) | BodyPlan::Json(t) | BodyPlan::Form(t) => Bytes::from(t.render(values)),
    };
    let mut request = Request::new(body);
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
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejected {
    /// A status outside the step's `expect`.
    Status(ErrorClass),
    /// One of the step's checks said no: which, expected and found.
    Check(Mismatch),
    /// The step's extraction of `variable` found nothing (or the body was not JSON).
    Extraction { variable: String, not_json: bool },
}

impl Rejected {
    fn class(&self) -> ErrorClass {
        match self {
            Rejected::Status(class) => *class,
            Rejected::Check(_) => ErrorClass::CheckFailed,
            Rejected::Extraction { .. } => ErrorClass::ExtractionFailed,
        }
    }

    /// The failure sample's detail: the check's or extraction's reason, then the start of
    /// the body (a status's whole detail).
    fn detail(&self, step: &StepPlan, body: &[u8]) -> String {
        // Room for redaction to shorten it; the sample is cut to its length after.
        let start = || {
            let read = body.len().min(4 * EXCERPT_BYTES);
            let mut start = String::from_utf8_lossy(&body[..read]).into_owned();
            if read < body.len() {
                start.push('…');
            }
            start
        };
        match self {
            Rejected::Status(_) => start(),
            Rejected::Check(mismatch) => format!(
                "{}: expected {}, found {}",
                step.checks
                    .get(mismatch.index)
                    .map_or("check", |c| c.label.as_str()),
                mismatch.expected,
                mismatch.found
            ),
            Rejected::Extraction { variable, not_json } => format!(
                "nothing to extract into `{variable}`{}; the body starts {:?}",
                if *not_json {
                    " (the body is not JSON)"
                } else {
                    ""
                },
                start()
            ),
        }
    }
}

/// Checks the status and the step's checks (`engine::check`, as verification does), then
/// performs its extractions into the iteration's slots.
fn check_response(
    step: &StepPlan,
    response: &Response,
    values: &mut IterationValues<'_>,
) -> Result<(), Rejected> {
    let status = response.status.as_u16();
    if !step.expect.matches(status) {
        return Err(Rejected::Status(ErrorClass::for_status(status)));
    }
    let mut body = Body::new(&response.body);
    if let Some(mismatch) = first_mismatch(&step.checks, response, &mut body, &*values) {
        return Err(Rejected::Check(mismatch));
    }
    for extraction in &step.extract {
        let value = match &extraction.source {
            header @ ExtractSource::Header(_) => header
                .in_headers(&response.headers)
                .map(|v| Value::String(v.to_string())),
            json => match body.json() {
                Some(parsed) => json.in_json(parsed).cloned(),
                None => {
                    return Err(Rejected::Extraction {
                        variable: extraction.variable.clone(),
                        not_json: true,
                    });
                }
            },
        };
        match value {
            Some(Value::Null) | None => {
                return Err(Rejected::Extraction {
                    variable: extraction.variable.clone(),
                    not_json: false,
                });
            }
            Some(value) => values.slots[extraction.slot] = Slot::Value(value),
        }
    }
    Ok(())
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
