//! A population behind nginx's per-client rate limit (100 requests/min per address, a
//! burst of 20): with `source_addrs`, loadgen's iterations come from many loopback
//! addresses and only an address that sends more than its budget is answered 429; from
//! one address, the limiter answers most of the drill. nginx's access log (its
//! `$remote_addr` and status per request) is the judge, not loadgen's own counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{loadgen, only_run, summary};

/// Per source address: (requests, 429s) of the drill tagged `tag`, read from the access
/// log once it holds `expected` of them (nginx flushes its log buffer each second).
fn by_address(log: &Path, tag: &str, expected: u64) -> BTreeMap<String, (u64, u64)> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut seen = BTreeMap::new();
        let mut total = 0;
        for line in text
            .lines()
            .filter(|l| l.contains(&format!("drill={tag} ")))
        {
            let address = line.split(' ').next().unwrap().to_string();
            // '... "GET /health/live?drill=x HTTP/2.0" 429 ...'
            let status = line.rsplit_once("\" ").map(|(_, rest)| &rest[..3]).unwrap();
            let entry: &mut (u64, u64) = seen.entry(address).or_default();
            entry.0 += 1;
            entry.1 += u64::from(status == "429");
            total += 1;
        }
        if total >= expected || started.elapsed() > Duration::from_secs(10) {
            assert_eq!(total, expected, "nginx logged what loadgen sent");
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `trust`: `Some(ca)` passes `--ca-file`; `None` leaves finding the CA to loadgen's local
/// platform adapter, through the scenario's `[chaos] stack_state`.
fn drill(
    state: &Value,
    dir: &Path,
    tag: &str,
    source_addrs: &str,
    trust: Option<&str>,
) -> BTreeMap<String, (u64, u64)> {
    let adapter = match trust {
        Some(_) => String::new(),
        None => format!(
            "[chaos]\nstack_state = \"{}\"\n",
            dir.join("state.json").display()
        ),
    };
    let scenario = format!(
        r#"name = "population-{tag}"
seed = 11
[target]
base_url = "{base}"
allow_hosts = ["127.0.0.1"]
cookies = false
{source_addrs}
[load]
model = "open"
start_rate = "40/s"
ramp_down = "5s"
[[load.stage]]
duration = "4s"
rate = "40/s"
[[journey]]
name = "browse"
weight = 9
[[journey.step]]
name = "live"
url = "/health/live?drill={tag}"
expect = [200, 429]
[[journey]]
name = "burst"
weight = 1
[[journey.step]]
name = "live"
url = "/health/live?drill={tag}"
expect = [200, 429]
repeat = 30
{adapter}"#,
        base = state["base_url"].as_str().unwrap(),
    );
    let file = dir.join(format!("population-{tag}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let out = dir.join(format!("population-{tag}-out"));
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    if let Some(ca) = trust {
        args.extend(["--ca-file", ca]);
    }
    let code = loadgen(&args);
    let run = summary(&only_run(&out));
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["totals"]["errors"], 0, "{}", run["totals"]);
    let requests = run["totals"]["requests"].as_u64().unwrap();
    by_address(&dir.join("nginx/logs/access.log"), tag, requests)
}

/// Runs against a stack started with `--rate-limit`, its state and state directory.
pub fn population_passes_the_limiter(state: &Value, dir: &Path) {
    let ca = state["ca_file"].as_str();
    let spread = drill(
        state,
        dir,
        "many",
        "source_addrs = [\"127.0.0.2-127.0.0.250\"]",
        ca,
    );
    assert!(spread.len() > 100, "addresses used: {}", spread.len());
    assert!(!spread.contains_key("127.0.0.1"), "{spread:?}");
    for (address, (requests, limited)) in &spread {
        if *requests <= 20 {
            assert_eq!(*limited, 0, "{address} sent {requests}, within its budget");
        }
        if *requests >= 30 {
            assert!(*limited > 0, "{address} sent {requests}: past the budget");
        }
    }
    assert!(
        spread.values().any(|(requests, _)| *requests >= 30),
        "some address ran the 30-request burst"
    );

    // This one trusts the stack's throwaway CA without being told where it is.
    let one = drill(state, dir, "one", "", None);
    let (requests, limited) = one["127.0.0.1"];
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(
        limited * 2 > requests,
        "from one address the limiter answers most: {limited} of {requests} were 429"
    );
}
