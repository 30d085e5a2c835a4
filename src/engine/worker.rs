//! A worker: one OS thread with its own single-threaded tokio runtime. It runs its share of
//! the arrivals (open model: every `workers`-th one) or of the virtual users (closed model),
//! records into its own recorder, and reports to the aggregator once a second. Nothing on the
//! request path is shared with other threads except two atomic counters.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::drive::{drive_arrivals, drive_vus};
use super::http::{Client, ClientConfig};
use super::iteration::{
    Arrival, IterationEnd, Session, SharedCounters, WorkerContext, first_step_of, run_iteration,
};
use crate::metrics::{Recorder, WorkerReport};
use crate::plan::schedule::{ArrivalSchedule, vu_changes};
use crate::plan::{LoadModel, Plan};

pub(super) struct WorkerSetup {
    pub index: usize,
    pub workers: usize,
    pub plan: Arc<Plan>,
    pub client: ClientConfig,
    pub shared: Arc<SharedCounters>,
    pub seed: u64,
    pub start: Instant,
    /// Stop starting new work (end of plan reached early: abort, Ctrl-C).
    pub stop: CancellationToken,
    /// Abandon work in flight now.
    pub kill: CancellationToken,
    pub reports: UnboundedSender<WorkerReport>,
}

pub(super) fn spawn(setup: WorkerSetup) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("loadgen-worker-{}", setup.index))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run(setup));
        })
}

pub(super) async fn run(setup: WorkerSetup) {
    let plan = setup.plan.clone();
    let recorder = Recorder::new(
        setup.index,
        setup.start,
        plan.step_count(),
        plan.journeys.len(),
        setup.reports.clone(),
    )
    .with_secrets(plan.secrets.clone().into());
    let ctx = Rc::new(WorkerContext::new(
        plan.clone(),
        Client::new(setup.client.clone()),
        recorder,
        setup.shared.clone(),
        setup.seed,
    ));
    let ticker = tokio::task::spawn_local(tick(ctx.clone(), setup.start));
    let mut tasks = JoinSet::new();

    match &plan.load.model {
        LoadModel::Open { start_rate, stages } => {
            let schedule = ArrivalSchedule::new(*start_rate, stages);
            run_arrivals(&ctx, &setup, &mut tasks, &schedule).await;
        }
        LoadModel::Closed { start_vus, stages } => {
            let changes = vu_changes(*start_vus, stages);
            run_users(&ctx, &setup, &mut tasks, &changes).await;
        }
    }

    drain(&mut tasks, plan.load.ramp_down, &setup.kill).await;
    ticker.abort();
    ctx.recorder.borrow_mut().finish();
}

/// The open model: this worker's share of the arrivals, each an iteration of its own
/// under the run-wide in-flight cap.
async fn run_arrivals(
    ctx: &Rc<WorkerContext>,
    setup: &WorkerSetup,
    tasks: &mut JoinSet<()>,
    schedule: &ArrivalSchedule,
) {
    let cap = setup.plan.load.max_in_flight;
    let next_due = ctx.recorder.borrow().next_due();
    let worker = setup.index as u64;
    drive_arrivals(
        schedule,
        setup.start,
        setup.index as u64,
        setup.workers as u64,
        &setup.stop,
        &next_due,
        |k, due| {
            while tasks.try_join_next().is_some() {}
            // One run-wide cap, not a share per thread: a stalled target fills it
            // the same however the arrivals are spread over workers.
            if ctx.shared.in_flight.fetch_add(1, Ordering::Relaxed) >= cap {
                ctx.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                let (journey, first_step) = first_step_of(ctx, k);
                ctx.recorder
                    .borrow_mut()
                    .arrival_dropped(due, journey, first_step);
                return;
            }
            let second = {
                let mut recorder = ctx.recorder.borrow_mut();
                let second = recorder.pend(due);
                recorder.arrival_scheduled(second);
                second
            };
            let ctx = ctx.clone();
            tasks.spawn_local(async move {
                let _in_flight = InFlight::enter(&ctx, true);
                let mut session = Session::arrival(&ctx, k);
                let arrival = Arrival { due, second };
                run_iteration(&ctx, &mut session, k, worker, Some(arrival)).await;
            });
        },
        |unlaunched| ctx.recorder.borrow_mut().arrivals_stopped(unlaunched),
    )
    .await;
}

/// The closed model: this worker's share of the users, each running its iterations one
/// after another while the plan keeps it and the run goes on.
async fn run_users(
    ctx: &Rc<WorkerContext>,
    setup: &WorkerSetup,
    tasks: &mut JoinSet<()>,
    changes: &[(Duration, usize)],
) {
    let target = Rc::new(Cell::new(0usize));
    let running: Rc<RefCell<Vec<bool>>> = Rc::new(RefCell::new(Vec::new()));
    let stop = setup.stop.clone();
    drive_vus(changes, setup.start, &setup.stop, |count| {
        target.set(count);
        for vu in (setup.index..count).step_by(setup.workers) {
            let mut running_now = running.borrow_mut();
            if running_now.len() <= vu {
                running_now.resize(vu + 1, false);
            }
            if running_now[vu] {
                continue;
            }
            running_now[vu] = true;
            let (ctx, target, running, stop) =
                (ctx.clone(), target.clone(), running.clone(), stop.clone());
            tasks.spawn_local(async move {
                let mut session = Session::user(&ctx, vu as u64);
                while vu < target.get() && !stop.is_cancelled() {
                    let began = Instant::now();
                    let end = {
                        let _in_flight = InFlight::enter(&ctx, false);
                        let number = ctx.shared.iterations.fetch_add(1, Ordering::Relaxed);
                        run_iteration(&ctx, &mut session, number, vu as u64, None).await
                    };
                    let next = next_iteration_at(&ctx.plan, began, end);
                    if next > Instant::now() {
                        tokio::select! {
                            _ = sleep_until(next) => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
                running.borrow_mut()[vu] = false;
            });
        }
    })
    .await;
    let end = setup.start + setup.plan.load.model.total_duration();
    tokio::select! {
        _ = sleep_until(end) => {}
        _ = setup.stop.cancelled() => {}
    }
    // Users finish the iteration they are in, then leave.
    target.set(0);
}

/// Waits for work in flight to finish, at most `ramp_down`; then abandons the rest, whose
/// iterations record themselves as interrupted.
async fn drain(tasks: &mut JoinSet<()>, ramp_down: Duration, kill: &CancellationToken) {
    let deadline = Instant::now() + ramp_down;
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            _ = sleep_until(deadline) => break,
            _ = kill.cancelled() => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Reports each second even when no request finished in it, with the in-flight gauge.
async fn tick(ctx: Rc<WorkerContext>, start: Instant) {
    let mut next = start + Duration::from_secs(1);
    loop {
        sleep_until(next + Duration::from_millis(1)).await;
        ctx.recorder.borrow_mut().roll(Instant::now());
        next += Duration::from_secs(1);
    }
}

/// The least a closed-model user waits after an iteration that could not start (a
/// `unique` feeder out of rows), however small `failure_backoff` is: such an iteration
/// ends at once, and a user must not spin on it.
const NOT_STARTED_PAUSE: Duration = Duration::from_millis(10);

/// When a closed-model user may start its next iteration: at once after a success,
/// after at least the failed step's think time and `failure_backoff` after a failure (or
/// an iteration that could not start), and never sooner than the journey's `pacing` after
/// the previous iteration began.
fn next_iteration_at(plan: &Plan, began: Instant, end: IterationEnd) -> Instant {
    let now = Instant::now();
    let mut next = now;
    if let Some(think) = end.failed_think {
        next = now + think.max(plan.load.failure_backoff);
    }
    if end.not_started {
        next = next.max(now + NOT_STARTED_PAUSE);
    }
    if let Some(pacing) = plan.journeys[end.journey].pacing {
        next = next.max(began + pacing);
    }
    next
}

/// Counts a journey in flight for as long as it lives, however it ends; an open-model
/// arrival also holds its place under the run-wide cap.
struct InFlight {
    ctx: Rc<WorkerContext>,
    capped: bool,
}

impl InFlight {
    fn enter(ctx: &Rc<WorkerContext>, capped: bool) -> InFlight {
        ctx.recorder.borrow_mut().in_flight += 1;
        InFlight {
            ctx: ctx.clone(),
            capped,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ctx.recorder.borrow_mut().in_flight -= 1;
        if self.capped {
            self.ctx.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
