//! A synthetic run directory, for benchmarking `loadgen report` on long runs (issue 10;
//! `bench/analysis.sh` drives it) without running load for hours.
//!
//! ```sh
//! cargo run --release --example synthetic_run -- \
//!     --scenario scenarios/peak.toml --seconds 3600 --out DIR [--seed N] [--rps 300]
//! ```
//!
//! It writes into DIR what `loadgen run` leaves when the load ends and before it judges:
//! `series.csv`, `histograms/intervals.hlog`, `histograms/totals.hlog`, `scenario.toml` and
//! a `summary.json` with `"judged": false`. It judges nothing: `loadgen report DIR` does.
//!
//! The figures come from a `SmallRng` seeded with the scenario's seed (or `--seed`): whole
//! iterations, each of a journey picked by its weight, whose steps (with their `repeat`) run in
//! order until one fails, begun and ended in the second they start in, so every iteration
//! is accounted for as `loadgen run` accounts for it; as many as make about `--rps` requests
//! per second (±10 %); success latencies mostly log-normal
//! around a few milliseconds (1–10 ms), a tail to 1 s; 0.1 % errors of four classes;
//! responses spread over three instances. Every planned fault occurrence is reported as
//! happened at its planned time (not run if it falls past `--seconds`). The summary's
//! `duration_s` is `--seconds`; `planned_duration_s` stays the scenario's own.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use loadgen::api::chaos::ChaosReport;
use loadgen::api::chaos::{Occurrence, OccurrenceStatus};
use loadgen::api::metrics::Snapshot;
use loadgen::api::metrics::{ErrorClass, Second};
use loadgen::api::plan::{FaultSpec, HttpVersion, Selector};
use loadgen::api::record::RunPlan;
use loadgen::api::record::{self, EndReason, RunFacts};
use loadgen::api::record::{PlannedTotals, SeriesWriter, write_totals};
use loadgen::api::scenario::Plan;
use loadgen::api::util::write_atomic;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const INSTANCES: [&str; 3] = ["backend-1", "backend-2", "backend-3"];
/// Share of requests that fail.
const ERROR_RATE: f64 = 0.001;
const WORKERS: usize = 2;

struct Args {
    scenario: PathBuf,
    seconds: u64,
    out: PathBuf,
    seed: Option<u64>,
    rps: u64,
}

/// One request of a journey's iteration: its step.
struct Slot {
    step: usize,
    /// Median success latency of this step, in milliseconds.
    median_ms: f64,
}

/// A journey as the synthetic iterations run it: its requests in order (a step's `repeat`
/// written out).
struct Journey {
    slots: Vec<Slot>,
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!(
                "error: {message}\nusage: synthetic_run --scenario FILE --seconds N --out DIR [--seed N] [--rps N]"
            );
            std::process::exit(2);
        }
    };
    if let Err(message) = write_run(&args) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<Args, String> {
    let mut scenario = None;
    let mut seconds = None;
    let mut out = None;
    let mut seed = None;
    let mut rps = 300;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--scenario" => scenario = Some(PathBuf::from(&value)),
            "--seconds" => seconds = Some(number()?),
            "--out" => out = Some(PathBuf::from(&value)),
            "--seed" => seed = Some(number()?),
            "--rps" => rps = number()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Args {
        scenario: scenario.ok_or("--scenario is required")?,
        seconds: seconds
            .filter(|s| *s > 0)
            .ok_or("--seconds N (> 0) is required")?,
        out: out.ok_or("--out is required")?,
        seed,
        rps,
    })
}

fn write_run(args: &Args) -> Result<(), String> {
    let plan = loadgen::api::scenario::load(&args.scenario).map_err(|e| e.to_string())?;
    let seed = args.seed.unwrap_or(plan.seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = &args.out;
    let io = |e: std::io::Error| format!("writing to {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::copy(&plan.source, dir.join("scenario.toml")).map_err(io)?;

    let (journeys_run, cumulative) = journeys(&plan);
    let requests_per_iteration = mean_requests(&journeys_run, &cumulative);
    let request_timeout = plan.target.request_timeout;
    let (steps, journeys) = (plan.step_count(), plan.journeys.len());
    let mut totals = Snapshot::new(steps, journeys);
    // No arrival schedule is replayed: each second's rows count the iterations begun in it.
    let mut series = SeriesWriter::create(dir, SystemTime::now(), None, journeys).map_err(io)?;
    for second in 0..args.seconds {
        let mut snapshot = Snapshot::new(steps, journeys);
        let requests = args.rps * rng.random_range(90..=110) / 100;
        let iterations = (requests as f64 / requests_per_iteration).round().max(1.0) as u64;
        for _ in 0..iterations {
            let pick = rng.random_range(0..*cumulative.last().expect("a plan has journeys"));
            let journey = cumulative.partition_point(|c| *c <= pick);
            let iteration = Iteration::draw(&mut rng, &journeys_run[journey], request_timeout);
            iteration.record(&mut snapshot, journey);
            iteration.record(&mut totals, journey);
        }
        series
            .write_second(
                &Second {
                    second,
                    snapshot,
                    in_flight: rng.random_range(5..40),
                },
                &[],
            )
            .map_err(io)?;
    }
    series.finish(&[]).map_err(io)?;
    let duration = Duration::from_secs(args.seconds);
    write_totals(dir, &totals, duration).map_err(io)?;

    let faults = ChaosReport {
        occurrences: occurrences(&plan.chaos.faults, duration),
        ..ChaosReport::default()
    };
    let run_plan = RunPlan::of(
        &plan,
        seed,
        WORKERS,
        HttpVersion::Http1,
        jiff::Timestamp::now().to_string(),
    );
    run_plan.write(dir).map_err(io)?;
    let summary = record::build_summary(
        RunFacts {
            plan: &run_plan,
            duration_s: duration.as_secs_f64(),
            ended_by: EndReason::Plan,
            faults,
            aborted_because: None,
            planned: PlannedTotals {
                planned: totals.journeys.iter().map(|j| j.begun).collect(),
                stopped: vec![0; journeys],
            },
            host: None,
        },
        &totals,
    );
    // As `loadgen run` writes it when the load ends: `"judged": false`, nothing passed.
    let json = serde_json::to_vec_pretty(&summary).expect("a summary always serializes");
    write_atomic(&dir.join("summary.json"), &json).map_err(io)?;
    eprintln!(
        "wrote {} s of `{}` ({} requests) to {}",
        args.seconds,
        plan.name,
        totals.overall.requests,
        dir.display()
    );
    Ok(())
}

/// Every journey's requests, with the running sum of the journeys' weights.
fn journeys(plan: &Plan) -> (Vec<Journey>, Vec<u64>) {
    let mut journeys = Vec::new();
    let mut cumulative = Vec::new();
    let mut sum = 0;
    for journey in &plan.journeys {
        sum += u64::from(journey.weight);
        cumulative.push(sum);
        let slots = journey
            .steps
            .iter()
            .flat_map(|step| {
                let slot = || Slot {
                    step: step.global_index,
                    median_ms: 2.0 + (step.global_index % 5) as f64,
                };
                (0..step.repeat.max(1)).map(move |_| slot())
            })
            .collect();
        journeys.push(Journey { slots });
    }
    (journeys, cumulative)
}

/// Requests per iteration, weighted by how often each journey is picked.
fn mean_requests(journeys: &[Journey], cumulative: &[u64]) -> f64 {
    let mut previous = 0;
    let mut requests = 0.0;
    for (journey, sum) in journeys.iter().zip(cumulative) {
        requests += (sum - previous) as f64 * journey.slots.len() as f64;
        previous = *sum;
    }
    requests / previous.max(1) as f64
}

/// One synthetic iteration, every random part drawn once so the second and the totals agree:
/// its requests until the first that fails, how late its arrival left, how long it took.
struct Iteration {
    requests: Vec<(usize, Duration, Result<(), ErrorClass>, &'static str)>,
    lag: Duration,
    duration: Duration,
}

impl Iteration {
    fn draw(rng: &mut SmallRng, journey: &Journey, request_timeout: Duration) -> Iteration {
        let mut requests = Vec::new();
        let mut duration = Duration::ZERO;
        for slot in &journey.slots {
            let (latency, outcome) = draw_request(rng, slot, request_timeout);
            duration += latency + Duration::from_millis(rng.random_range(100..1_000));
            let instance = INSTANCES[rng.random_range(0..INSTANCES.len())];
            requests.push((slot.step, latency, outcome, instance));
            if outcome.is_err() {
                break;
            }
        }
        Iteration {
            requests,
            lag: Duration::from_micros(rng.random_range(20..200)),
            duration,
        }
    }

    /// Records the iteration where the engine would: begun and started, each request in its
    /// step and the run, the instance that answered, then completed or failed.
    fn record(&self, snapshot: &mut Snapshot, journey: usize) {
        snapshot.journeys[journey].begun += 1;
        snapshot.journeys[journey].started += 1;
        snapshot.generator.scheduled();
        snapshot.generator.began(self.lag);
        let mut outcome = Ok(());
        for (step, latency, result, instance) in &self.requests {
            snapshot.overall.record(*latency, *result);
            snapshot.steps[*step].record(*latency, *result);
            snapshot.overall.completed += 1;
            snapshot.steps[*step].completed += 1;
            if result.is_ok() {
                *snapshot.instances.entry(instance.to_string()).or_default() += 1;
            }
            outcome = *result;
        }
        snapshot.journeys[journey].finish(self.duration, outcome);
    }
}

/// One request of a step: its latency and outcome.
fn draw_request(
    rng: &mut SmallRng,
    slot: &Slot,
    request_timeout: Duration,
) -> (Duration, Result<(), ErrorClass>) {
    let (ms, outcome) = if rng.random_bool(ERROR_RATE) {
        match rng.random_range(0..4) {
            0 => (log_uniform(rng, 0.05, 0.5), Err(ErrorClass::ConnectRefused)),
            1 => (log_uniform(rng, 1.0, 20.0), Err(ErrorClass::Reset)),
            2 => (log_uniform(rng, 2.0, 50.0), Err(ErrorClass::Http5xx)),
            _ => (
                request_timeout.as_secs_f64() * 1000.0,
                Err(ErrorClass::RequestTimeout),
            ),
        }
    } else {
        let tail = rng.random::<f64>();
        let ms = if tail < 0.003 {
            log_uniform(rng, 100.0, 1000.0)
        } else if tail < 0.03 {
            log_uniform(rng, 10.0, 100.0)
        } else {
            // Log-normal, σ = 0.5: about 95 % within a factor 2.7 of the median.
            (slot.median_ms * (0.5 * standard_normal(rng)).exp()).min(1000.0)
        };
        (ms, Ok(()))
    };
    (Duration::from_secs_f64(ms / 1000.0), outcome)
}

/// Each planned occurrence of every fault, happened at its planned time (started, applied
/// 5 ms later, healthy again 1.5 s after its planned end), or not run if it is past the end.
fn occurrences(faults: &[FaultSpec], run: Duration) -> Vec<Occurrence> {
    let ms = |d: Duration| d.as_millis() as u64;
    let mut out = Vec::new();
    for fault in faults {
        for (number, (at, end)) in fault.occurrences().into_iter().enumerate() {
            let happened = at < run;
            out.push(Occurrence {
                fault: fault.name.clone(),
                occurrence: number as u32,
                required: fault.required,
                status: if happened {
                    OccurrenceStatus::Happened
                } else {
                    OccurrenceStatus::NotRun
                },
                reason: (!happened).then(|| "past the end of the synthetic run".to_string()),
                targets: if happened {
                    vec![target_name(&fault.selector)]
                } else {
                    Vec::new()
                },
                planned_at_ms: ms(at),
                started_ms: happened.then(|| ms(at)),
                applied_ms: happened.then(|| ms(at) + 5),
                ended_ms: happened.then(|| (ms(end.unwrap_or(at)) + 1_500).min(ms(run))),
            });
        }
    }
    out
}

fn target_name(selector: &Selector) -> String {
    match selector {
        Selector::Process { name } | Selector::Container { name } | Selector::Proxy { name } => {
            name.clone()
        }
        other => other.to_string(),
    }
}

fn log_uniform(rng: &mut SmallRng, low: f64, high: f64) -> f64 {
    low * (high / low).powf(rng.random::<f64>())
}

/// Box–Muller: one draw of N(0, 1).
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u = 1.0 - rng.random::<f64>();
    let v = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}
