//! The accounting identity as a property: for random plans — open and closed, one to three
//! journeys, in-flight caps, `unique` feeders shorter than the plan, `--duration` cuts,
//! aborts — against a server that misbehaves in one of five ways, every planned iteration
//! ends as exactly one outcome, in the totals and in every second of series.csv, and
//! `started` is what the server saw of the journeys' first steps.
//!
//! The plans come from fixed seeds, so a failure names the plan that broke and replays it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use loadgen::api::plan::ArrivalSchedule;
use loadgen::api::plan::LoadModel;
use loadgen::api::record::{EndReason, Summary};
use loadgen::api::run::{self, RunOptions};

use crate::support::faulty::{ALL_MISBEHAVIOURS, FaultyServer, Misbehaviour};
use crate::support::{Workspace, eventually, test_state_dir};

/// How many random plans, and how many run at once.
const PLANS: usize = 120;
const AT_ONCE: usize = 4;

/// One random plan: its scenario text and what the test needs to check it.
struct RandomPlan {
    seed: u64,
    scenario: String,
    journeys: usize,
    /// Rows of the plan's `unique` feeder, if it has one.
    feeder_rows: Option<usize>,
    duration_cut: Option<Duration>,
    threads: usize,
    description: String,
}

fn random_plan(seed: u64, url: &str, misbehaviour: Option<Misbehaviour>, every: u64) -> RandomPlan {
    let mut rng = SmallRng::seed_from_u64(seed);
    let journeys = rng.random_range(1..=3usize);
    let aborts = rng.random_bool(0.15);
    let open = aborts || rng.random_bool(0.75);
    // An abort needs one whole failed second before it trips: those plans run 2 s.
    let (load, load_text) = if open {
        let rate = rng.random_range(20..=150u32);
        let start = if rng.random_bool(0.5) { rate } else { 0 };
        let stages = if aborts {
            format!("[[load.stage]]\nduration = \"2s\"\nrate = \"{rate}/s\"\n")
        } else if rng.random_bool(0.5) {
            format!("[[load.stage]]\nduration = \"1s\"\nrate = \"{rate}/s\"\n")
        } else {
            let second = rng.random_range(0..=rate);
            format!(
                "[[load.stage]]\nduration = \"500ms\"\nrate = \"{rate}/s\"\n[[load.stage]]\nduration = \"500ms\"\nrate = \"{second}/s\"\n"
            )
        };
        let cap = if rng.random_bool(0.4) {
            format!("max_in_flight = {}\n", rng.random_range(1..=6))
        } else {
            String::new()
        };
        (
            format!(
                "model = \"open\"\nstart_rate = \"{start}/s\"\n{cap}ramp_down = \"200ms\"\n{stages}"
            ),
            format!(
                "open from {start}/s to {rate}/s{}",
                if cap.is_empty() { "" } else { ", capped" }
            ),
        )
    } else {
        let start = rng.random_range(1..=4usize);
        let vus = rng.random_range(1..=6usize);
        (
            format!(
                "model = \"closed\"\nstart_vus = {start}\nramp_down = \"200ms\"\nfailure_backoff = \"20ms\"\n[[load.stage]]\nduration = \"1s\"\nvus = {vus}\n"
            ),
            format!("closed {start} → {vus} users"),
        )
    };
    let feeder = rng.random_bool(0.4).then(|| {
        let rows = rng.random_range(1..=15usize);
        let on_exhausted = ["fail", "stop_journey", "wrap"][rng.random_range(0..3)];
        (rows, on_exhausted)
    });
    let mut text = format!(
        "name = \"accounting-{seed}\"\nseed = {seed}\n[target]\nbase_url = \"{url}\"\nrequest_timeout = \"300ms\"\nmax_body = \"4KiB\"\n[load]\n{load}"
    );
    if let Some((_, on_exhausted)) = feeder {
        text.push_str(&format!(
            "[data.feeder.rows]\nfile = \"rows.csv\"\norder = \"unique\"\non_exhausted = \"{on_exhausted}\"\n"
        ));
    }
    for journey in 0..journeys {
        let steps = rng.random_range(1..=3usize);
        text.push_str(&format!(
            "[[journey]]\nname = \"j{journey}\"\nweight = {}\n",
            rng.random_range(1..=3)
        ));
        for step in 0..steps {
            let path = if step == 0 {
                // Journey 0 takes a feeder row when there is a feeder.
                match (journey, feeder) {
                    (0, Some(_)) => format!("/j{journey}/first?row={{{{rows.n}}}}"),
                    _ => format!("/j{journey}/first"),
                }
            } else {
                format!("/j{journey}/s{step}")
            };
            let think = if rng.random_bool(0.3) {
                "think = \"10ms\"\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "[[journey.step]]\nname = \"s{step}\"\nurl = \"{path}\"\n{think}"
            ));
        }
    }
    if aborts {
        text.push_str(
            "[[slo]]\nname = \"stop\"\nobjective = \"error_rate < 1%\"\nabort = true\ngrace = \"1s\"\n",
        );
    }
    let duration_cut = (!aborts && rng.random_bool(0.2)).then(|| Duration::from_millis(500));
    let threads = rng.random_range(1..=2usize);
    let description = format!(
        "{load_text}, {journeys} journey(s), {}{}{}, {threads} thread(s), server: {misbehaviour:?} every {every}",
        feeder.map_or(String::new(), |(rows, on)| format!(
            "unique feeder of {rows} ({on}), "
        )),
        if aborts {
            "abort objective"
        } else {
            "no objective"
        },
        duration_cut.map_or(String::new(), |d| format!(
            ", --duration {}ms",
            d.as_millis()
        )),
    );
    RandomPlan {
        seed,
        scenario: text,
        journeys,
        feeder_rows: feeder.map(|(rows, _)| rows),
        duration_cut,
        threads,
        description,
    }
}

/// Runs one plan and checks every identity; `Err` names what broke.
fn check_plan(seed: u64) -> Result<Covered, String> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xFA17);
    let misbehaviour = rng
        .random_bool(0.8)
        .then(|| ALL_MISBEHAVIOURS[rng.random_range(0..ALL_MISBEHAVIOURS.len())]);
    let every = rng.random_range(1..=4u64);
    // The server is started for the plan's journey count, so draw the plan first.
    let probe = random_plan(seed, "http://127.0.0.1:1", misbehaviour, every);
    let server = FaultyServer::start(misbehaviour, every, probe.journeys);
    let plan = random_plan(seed, &server.url(), misbehaviour, every);
    let workspace = Workspace::new();
    let rows: String = (0..plan.feeder_rows.unwrap_or(1))
        .map(|n| format!("{n}\n"))
        .collect();
    workspace.write("rows.csv", &format!("n\n{rows}"));
    let scenario = workspace.write("plan.toml", &plan.scenario);
    let options = RunOptions {
        scenario: scenario.clone(),
        out: workspace.out(),
        quiet: true,
        threads: Some(plan.threads),
        duration: plan.duration_cut,
        state_dir: Some(test_state_dir().to_path_buf()),
        ..RunOptions::default()
    };
    let prepared = run::prepare(&options).map_err(|e| format!("prepare: {e}"))?;
    let model = prepared.plan.load.model.clone();
    let outcome = run::execute(prepared, &options).map_err(|e| format!("run: {e}"))?;
    let summary: Summary = serde_json::from_str(
        &std::fs::read_to_string(outcome.run_dir.join("summary.json")).unwrap(),
    )
    .unwrap();
    let context = || {
        format!(
            "plan {} ({}):\n{}\nrun dir {}",
            plan.seed,
            plan.description,
            plan.scenario,
            outcome.run_dir.display()
        )
    };
    let fail = |why: String| Err(format!("{why}\n{}", context()));

    // 1. The totals, per journey.
    let accounting = summary.accounting.as_ref().expect("schema 6 accounts");
    if !accounting.balanced {
        return fail(format!("unbalanced: {:?}", accounting.problems));
    }
    for journey in &summary.journeys {
        let not_started: u64 = journey.not_started.values().sum();
        if journey.planned != journey.started + journey.dropped + not_started {
            return fail(format!(
                "journey {} planned ≠ the sum of its outcomes",
                journey.name
            ));
        }
        if journey.started != journey.completed + journey.failed + journey.interrupted {
            return fail(format!(
                "journey {} started ≠ the sum of its ends",
                journey.name
            ));
        }
    }
    // 2. The open model's planned total is the schedule's, cut as the run was.
    if let LoadModel::Open { start_rate, stages } = &model {
        let expected = ArrivalSchedule::new(*start_rate, stages).total();
        if summary.totals.iterations.planned != expected {
            return fail(format!(
                "planned {} but the schedule holds {expected}",
                summary.totals.iterations.planned
            ));
        }
    }
    // 3. Every row of series.csv, read independently.
    let rows = read_rows(&outcome.run_dir.join("series.csv"));
    let mut planned_in_rows: BTreeMap<String, u64> = BTreeMap::new();
    for row in &rows {
        let scope = &row["scope"];
        if scope != "all" && !scope.starts_with("journey:") {
            continue;
        }
        let n = |column: &str| row[column].parse::<u64>().unwrap_or(0);
        let reasons = n("not_started_feeder_exhausted")
            + n("not_started_journey_stopped")
            + n("not_started_stopped");
        if n("not_started") != reasons {
            return fail(format!(
                "second {} {scope}: not_started ≠ its reasons",
                row["second"]
            ));
        }
        if n("planned") != n("started") + n("dropped") + n("not_started") {
            return fail(format!(
                "second {} {scope}: planned {} ≠ started {} + dropped {} + not started {}",
                row["second"],
                n("planned"),
                n("started"),
                n("dropped"),
                n("not_started")
            ));
        }
        *planned_in_rows.entry(scope.clone()).or_default() += n("planned");
    }
    let planned_rows = planned_in_rows.get("all").copied().unwrap_or(0);
    let stopped_early = summary.ended_by == EndReason::Aborted;
    if (planned_rows != summary.totals.iterations.planned && !stopped_early)
        || planned_rows > summary.totals.iterations.planned
    {
        return fail(format!(
            "series.csv plans {planned_rows}, the totals {}",
            summary.totals.iterations.planned
        ));
    }
    // 4. Started iterations against what the server saw of their first steps: each sent
    // its first request (counted as a request, or abandoned at the hard stop, when it may
    // or may not have reached the server).
    let mut server_total_low = 0;
    let mut server_total_high = 0;
    for (index, journey) in summary.journeys.iter().enumerate() {
        let first = &journey.steps[0];
        if journey.started != first.requests + first.abandoned {
            return fail(format!(
                "journey {}: started {} ≠ first-step requests {} + abandoned {}",
                journey.name, journey.started, first.requests, first.abandoned
            ));
        }
        // A request sent again because the server had not processed it was read twice.
        let (low, high) = (
            first.requests,
            first.requests + first.abandoned + first.retried_unprocessed,
        );
        eventually(Duration::from_secs(2), || server.first_steps(index) >= low);
        let seen = server.first_steps(index);
        if !(low..=high).contains(&seen) {
            return fail(format!(
                "journey {}: the server saw {seen} first steps, loadgen sent {low} (+{} abandoned)",
                journey.name, first.abandoned
            ));
        }
        server_total_low += journey.steps.iter().map(|s| s.requests).sum::<u64>();
        server_total_high += journey
            .steps
            .iter()
            .map(|s| s.requests + s.abandoned + s.retried_unprocessed)
            .sum::<u64>();
    }
    let seen = server.requests();
    if !(server_total_low..=server_total_high).contains(&seen) {
        return fail(format!(
            "the server saw {seen} requests, loadgen sent {server_total_low}..={server_total_high}"
        ));
    }
    Ok(Covered {
        iterations: summary.totals.iterations.clone(),
        description: plan.description,
    })
}

/// What one plan exercised.
struct Covered {
    iterations: loadgen::api::record::Iterations,
    description: String,
}

fn read_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let record = r.unwrap();
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn every_planned_iteration_ends_as_exactly_one_outcome() {
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let lines = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..AT_ONCE {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= PLANS {
                        return;
                    }
                    match check_plan(seed as u64) {
                        Ok(line) => lines.lock().unwrap().push(line),
                        Err(why) => failures.lock().unwrap().push(why),
                    }
                }
            });
        }
    });
    let covered = lines.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // What the plans covered, so a reader can see the property was exercised.
    let count = |which: &dyn Fn(&Covered) -> bool| covered.iter().filter(|c| which(c)).count();
    let reason = |c: &Covered, r: &str| c.iterations.not_started.get(r).copied().unwrap_or(0) > 0;
    let summary = [
        ("closed", count(&|c| c.description.starts_with("closed"))),
        ("dropped at the cap", count(&|c| c.iterations.dropped > 0)),
        (
            "feeder exhausted",
            count(&|c| reason(c, "feeder_exhausted")),
        ),
        ("journey stopped", count(&|c| reason(c, "journey_stopped"))),
        ("stopped by an abort", count(&|c| reason(c, "stopped"))),
        ("interrupted", count(&|c| c.iterations.interrupted > 0)),
        ("failed", count(&|c| c.iterations.failed > 0)),
        (
            "all completed",
            count(&|c| c.iterations.completed == c.iterations.started),
        ),
        (
            "cut by --duration",
            count(&|c| c.description.contains("--duration")),
        ),
    ];
    eprintln!("{} plans; {summary:?}", covered.len());
    for (what, plans) in summary {
        assert!(plans > 0, "no plan exercised {what}: {summary:?}");
    }
}
