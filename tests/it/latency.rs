//! Latency honesty: while the server stalls, the open model keeps its schedule and measures
//! each request from its intended send time, so the stall shows in the high percentiles.
//! A closed loop with a few users waits politely and hides it (coordinated omission).

use std::time::Duration;

use crate::support::server::{Stall, TestServer};
use crate::support::{Workspace, options, run_ok};

const STALL: Duration = Duration::from_millis(500);

fn scenario(url: &str, load: &str) -> String {
    format!(
        r#"[target]
base_url = "{url}"
[load]
{load}
[[journey]]
name = "work"
[[journey.step]]
name = "work"
url = "/work"
"#
    )
}

#[test]
fn an_open_model_run_reports_a_server_stall_in_its_high_percentiles() {
    let server = TestServer::start_with(Some(Stall {
        after: Duration::from_secs(1),
        length: STALL,
    }));
    let workspace = Workspace::new();
    let file = workspace.write(
        "open.toml",
        &scenario(&server.url(), "model = \"open\"\nstart_rate = \"200/s\"\n[[load.stage]]\nduration = \"3s\"\nrate = \"200/s\""),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    let latency = summary.totals.latency_us;
    // ~100 of 600 arrivals fall in the stall, each waiting for its rest: uniform over 0–500 ms.
    assert!(latency.max >= 450_000, "max {latency:?}");
    assert!(
        latency.p99 >= 300_000,
        "the stall must reach p99: {latency:?}"
    );
    assert!(latency.p95 >= 150_000, "and p95: {latency:?}");
    assert_eq!(summary.totals.requests, 600);
    assert_eq!(server.seen().len(), 600);
    assert_eq!(summary.generator.dropped, 0);
}

#[test]
fn a_closed_loop_would_hide_the_same_stall() {
    let server = TestServer::start_with(Some(Stall {
        after: Duration::from_secs(1),
        length: STALL,
    }));
    let workspace = Workspace::new();
    let file = workspace.write(
        "closed.toml",
        &scenario(
            &server.url(),
            "model = \"closed\"\nstart_vus = 2\n[[load.stage]]\nduration = \"3s\"\nvus = 2",
        ),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    let latency = summary.totals.latency_us;
    // Only the two requests in flight when the stall began saw it.
    assert!(
        latency.max >= 400_000,
        "the stalled requests themselves: {latency:?}"
    );
    assert!(
        latency.p99 < 100_000,
        "a closed loop's p99 misses the stall: {latency:?}"
    );
}
