//! The edges a chaos drill is judged on, the real binary against real servers: a dead
//! target under the closed model is not hammered by a retry storm, `pacing` spaces a user's
//! iterations, arrivals dropped at the in-flight cap fail availability instead of
//! vanishing, and fast failures do not lower the latency percentiles of the successes.

use std::time::Duration;

use loadgen::api::record::{VerdictReason, VerdictStatus};

use crate::support::server::{Stall, TestServer};
use crate::support::{Workspace, binary_run};

#[test]
fn a_dead_target_under_the_closed_model_gets_paced_retries_not_a_storm() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "dead.toml",
        &format!(
            r#"name = "dead-target"
[target]
base_url = "{url}"
connect_timeout = "1s"
[load]
model = "closed"
start_vus = 10
ramp_down = "1s"
[[load.stage]]
duration = "7s"
vus = 10
[[journey]]
name = "browse"
[[journey.step]]
name = "page"
url = "/hello"
think = "1s"
"#,
            url = server.url()
        ),
    );
    // The target dies 3 s into the run: from then on every connect is refused at once.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        let served = server.seen().len() as u64;
        drop(server);
        served
    });
    let (code, _, summary) = binary_run(&scenario, &workspace.out());
    let served = killer.join().unwrap();
    assert_eq!(code, Some(0), "no objective, so the run itself passes");
    let total = summary.totals.requests;
    let failed = summary.totals.errors;
    eprintln!("dead target: {total} requests, {failed} failed, {served} served");
    // Alive: each user sends one request per think time. Dead: each waits max(think,
    // failure_backoff) = 1 s after its failed iteration. Either way about VUs × runtime / 1 s
    // (= 70), plus each user's first request; the old behaviour sent hundreds of thousands.
    assert!(
        (50..=100).contains(&total),
        "{total} requests ({failed} failed); expected about 10 users × 7 s / 1 s"
    );
    assert!(failed >= 20, "the dead phase was seen: {failed} failures");
    assert_eq!(
        total - failed,
        served,
        "successes equal what the server answered"
    );
}

#[test]
fn arrivals_dropped_at_the_in_flight_cap_fail_availability() {
    // /work stalls for 3 s, 1 s after the first request; the run may hold 5 journeys.
    let server = TestServer::start_with(Some(Stall {
        after: Duration::from_secs(1),
        length: Duration::from_secs(3),
    }));
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "capped.toml",
        &format!(
            r#"name = "capped"
[target]
base_url = "{url}"
request_timeout = "10s"
[load]
model = "open"
start_rate = "50/s"
max_in_flight = 5
ramp_down = "5s"
[[load.stage]]
duration = "5s"
rate = "50/s"
[[journey]]
name = "work"
[[journey.step]]
name = "work"
url = "/work"
[[slo]]
name = "available"
objective = "availability >= 99.9%"
"#,
            url = server.url()
        ),
    );
    let (code, run_dir, summary) = binary_run(&scenario, &workspace.out());
    assert_eq!(
        code,
        Some(1),
        "availability failed through dropped arrivals"
    );
    // The report marks the seconds that dropped arrivals, and its data says which.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("second with dropped arrivals"));
    let data = crate::support::json_block(&html, "chart-data");
    let dropped: f64 = data["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["dropped"].as_f64().unwrap())
        .sum();
    assert_eq!(dropped as u64, summary.totals.dropped);
    let totals = &summary.totals;
    eprintln!(
        "capped: {} sent, {} dropped, availability {:?}",
        totals.requests, totals.dropped, summary.slos[0].measured[0].value
    );
    assert_eq!(
        totals.requests,
        server.seen().len() as u64,
        "requests are what was sent, and equal what the server saw"
    );
    assert_eq!(totals.errors, 0, "every sent request eventually succeeded");
    // 3 s of 50/s arrive while 5 are stuck: about 145 dropped.
    assert!(
        (100..=170).contains(&totals.dropped),
        "dropped {}",
        totals.dropped
    );
    assert_eq!(
        totals.requests + totals.dropped,
        250,
        "every arrival is accounted for"
    );
    assert_eq!(summary.journeys[0].dropped, totals.dropped);
    assert_eq!(summary.journeys[0].steps[0].dropped, totals.dropped);
    let expected_rate = totals.dropped as f64 / 250.0;
    assert!((totals.error_rate - expected_rate).abs() < 1e-9);
    let verdict = &summary.slos[0];
    assert_eq!(verdict.status, VerdictStatus::Fail, "{verdict:?}");
    assert_eq!(verdict.reason, Some(VerdictReason::LoadNotDelivered));
    // Every planned arrival is accounted for: 250 planned, each sent or dropped.
    let iterations = &summary.totals.iterations;
    assert_eq!(iterations.planned, 250);
    assert_eq!(iterations.started + iterations.dropped, 250);
    assert_eq!(iterations.dropped, totals.dropped);
    assert!(summary.accounting.as_ref().unwrap().balanced);
    assert_eq!(verdict.dropped, totals.dropped);
    let availability = verdict.measured[0].value.unwrap();
    assert!(
        (availability - (100.0 - expected_rate * 100.0)).abs() < 1e-6,
        "{availability}"
    );
    assert!(!summary.slo_passed);
    assert!(summary.generator.saturated);
}

#[test]
fn fast_failures_do_not_lower_the_successes_percentiles() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "fast502.toml",
        &format!(
            r#"name = "fast-502"
seed = 7
[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "300/s"
ramp_down = "2s"
[[load.stage]]
duration = "4s"
rate = "300/s"
[[journey]]
name = "broken"
weight = 99
[[journey.step]]
name = "bad gateway"
url = "/status/502"
[[journey]]
name = "slow"
weight = 1
[[journey.step]]
name = "page"
url = "/slow/40"
[[slo]]
name = "fast"
objective = "max < 20ms"
[[slo]]
name = "fast p99"
objective = "p99 < 20ms"
"#,
            url = server.url()
        ),
    );
    let (code, _, summary) = binary_run(&scenario, &workspace.out());
    assert_eq!(code, Some(1), "the successes' latency breaks the objective");
    let totals = &summary.totals;
    let successes = totals.requests - totals.errors;
    eprintln!(
        "fast 502s: {successes} successes p99 {} us, {} failures p99 {} us",
        totals.latency_us.p99, totals.errors, totals.failed_latency_us.p99
    );
    assert!(successes >= 3, "{successes} successes");
    assert!(totals.errors > 1_000, "{} fast 502s", totals.errors);
    assert!(
        totals.latency_us.p99 >= 40_000,
        "p99 of the successes is the slow page's: {:?}",
        totals.latency_us
    );
    assert!(
        totals.failed_latency_us.p99 < 20_000,
        "the 502s are fast: {:?}",
        totals.failed_latency_us
    );
    let verdict = &summary.slos[0];
    assert_eq!(verdict.status, VerdictStatus::Fail, "{verdict:?}");
    assert!(verdict.measured[0].value.unwrap() >= 40_000.0);
    // A p99 over a dozen successes is their slowest: too little evidence to pass or fail.
    let p99 = &summary.slos[1];
    assert_eq!(p99.status, VerdictStatus::NoData, "{p99:?}");
    assert_eq!(p99.reason, Some(VerdictReason::InsufficientEvidence));
    assert_eq!(p99.evidence.successes, successes);
    assert!(p99.fails_run());
}

#[test]
fn pacing_spaces_a_users_iterations() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "paced.toml",
        &format!(
            r#"name = "paced"
[target]
base_url = "{url}"
[load]
model = "closed"
start_vus = 2
ramp_down = "1s"
[[load.stage]]
duration = "3s"
vus = 2
[[journey]]
name = "page"
pacing = "1s"
[[journey.step]]
name = "get"
url = "/hello"
"#,
            url = server.url()
        ),
    );
    let (code, _, summary) = binary_run(&scenario, &workspace.out());
    assert_eq!(code, Some(0));
    // Each user's iterations start at 0 s, 1 s and 2 s (unpaced: thousands).
    assert_eq!(summary.totals.requests, server.seen().len() as u64);
    assert!(
        (5..=7).contains(&summary.totals.requests),
        "{} requests; expected 2 users × 3 paced iterations",
        summary.totals.requests
    );
}

/// A drift objective (what a soak is for): fails on a target that slows down over the run
/// (15 ms more per second), passes on a steady one, judged on each third's interval.
#[test]
fn a_drift_objective_fails_on_a_target_that_slows_down_and_passes_on_a_steady_one() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = |name: &str, path: &str| {
        format!(
            r#"name = "{name}"
[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "40/s"
[[load.stage]]
duration = "6s"
rate = "40/s"
[[journey]]
name = "j"
[[journey.step]]
name = "get"
url = "{path}"
[[slo]]
name = "no growth"
objective = "p90 drift < 100%"
"#,
            url = server.url()
        )
    };
    let steady = workspace.write("steady.toml", &scenario("steady", "/hello"));
    let slowing = workspace.write("slowing.toml", &scenario("slowing", "/ramp/15"));
    let (code, _, summary) = binary_run(&steady, &workspace.out());
    let verdict = &summary.slos[0];
    assert_eq!(code, Some(0), "{verdict:?}");
    assert_eq!(verdict.status, VerdictStatus::Pass, "{verdict:?}");
    assert_eq!(verdict.measured[0].metric, "p90 drift");
    let elsewhere = workspace.dir.path().join("slowing-reports");
    let (code, _, summary) = binary_run(&slowing, &elsewhere);
    let verdict = &summary.slos[0];
    assert_eq!(code, Some(1), "{verdict:?}");
    assert_eq!(verdict.status, VerdictStatus::Fail, "{verdict:?}");
    let measured = &verdict.measured[0];
    // 15 ms a second: the first third answers in 0–30 ms, the last in 60–90 ms.
    assert!(measured.value.unwrap() > 100.0, "{measured:?}");
    assert!(measured.value_text.contains("p90 "), "{measured:?}");
    assert!(measured.value_text.contains("judged +"), "{measured:?}");
    let ramp = server
        .seen()
        .iter()
        .filter(|r| r.path.starts_with("/ramp/"))
        .count() as u64;
    assert_eq!(
        summary.totals.requests, ramp,
        "every request counted is one the server saw"
    );
}
