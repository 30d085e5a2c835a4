//! Runs against a real server: counts, extraction, reproducibility, models.

use crate::support::server::TestServer;
use crate::support::{Workspace, counted, options, run_ok};

fn members_scenario(url: &str, model: &str) -> String {
    let load = match model {
        "open" => {
            "model = \"open\"\nstart_rate = \"40/s\"\n[[load.stage]]\nduration = \"1s\"\nrate = \"40/s\"\n[[load.stage]]\nduration = \"1s\"\nrate = \"80/s\""
        }
        _ => "model = \"closed\"\nstart_vus = 4\n[[load.stage]]\nduration = \"1500ms\"\nvus = 4",
    };
    format!(
        r#"
name = "members"
[target]
base_url = "{url}"
request_timeout = "5s"
[load]
{load}

[data.generator.plan]
kind = "pick"
values = ["monthly", "yearly"]
[data.generator.key]
kind = "uuid"
[data.feeder.people]
file = "people.csv"
order = "random"

[[journey]]
name = "signup"
weight = 3
[[journey.step]]
name = "create member"
method = "POST"
url = "/api/members"
json = {{ name = "{{{{people.name}}}}", plan = "{{{{plan}}}}", key = "{{{{key}}}}", n = 1 }}
expect = 201
extract = {{ member_id = "/id", token = "$.auth.token", etag = {{ header = "x-member-etag" }} }}
[[journey.step]]
name = "read member"
url = "/api/members/{{{{member_id}}}}"
headers = {{ Authorization = "Bearer {{{{token}}}}", "X-Etag" = "{{{{etag}}}}" }}
expect = 200

[[journey]]
name = "browse"
weight = 1
[[journey.step]]
name = "hello"
url = "/hello?v={{{{vu}}}}"
"#
    )
}

const ROUTES: &[(&str, &str)] = &[
    ("create member", "POST /api/members"),
    ("read member", "GET /api/members/{id}"),
    ("hello", "GET /hello"),
];

fn workspace_with_people() -> Workspace {
    let workspace = Workspace::new();
    workspace.write(
        "people.csv",
        "name,email\nAna,ana@example.test\nBo \"B\",bo@example.test\nCy,cy@example.test\n",
    );
    workspace
}

#[test]
fn open_model_counts_match_what_the_server_saw_per_step() {
    let server = TestServer::start();
    let workspace = workspace_with_people();
    let scenario = workspace.write("s.toml", &members_scenario(&server.url(), "open"));
    let (_, summary) = run_ok(&options(&scenario, &workspace.out()));

    // 40/s for 1 s, then 40 → 80/s over 1 s: 40 + 60 = 100 arrivals.
    assert_eq!(summary.generator.scheduled, 100);
    assert_eq!(summary.generator.dropped, 0);
    let journeys: u64 = summary.journeys.iter().map(|j| j.started).sum();
    assert_eq!(journeys, 100);
    assert_eq!(counted(&summary, ROUTES), server.counts());
    assert_eq!(summary.totals.requests, server.seen().len() as u64);
    assert_eq!(
        summary.totals.errors, 0,
        "{:?}",
        summary.totals.errors_by_class
    );
    assert!(summary.complete);
}

#[test]
fn extraction_carries_values_into_later_requests() {
    let server = TestServer::start();
    let workspace = workspace_with_people();
    let scenario = workspace.write("s.toml", &members_scenario(&server.url(), "closed"));
    let (_, summary) = run_ok(&options(&scenario, &workspace.out()));

    let seen = server.seen();
    let reads: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/api/members/"))
        .collect();
    assert!(!reads.is_empty());
    // The server answers 200 only when the token extracted from the create response of that
    // same member comes back in the Authorization header.
    for read in &reads {
        let id = read.path.rsplit('/').next().unwrap();
        assert_eq!(
            read.authorization.as_deref(),
            Some(format!("Bearer tok-{id}").as_str())
        );
    }
    let read_step = summary.journeys[0]
        .steps
        .iter()
        .find(|s| s.name == "read member")
        .unwrap();
    assert_eq!(read_step.requests, reads.len() as u64);
    assert_eq!(read_step.errors, 0);
    // The JSON body template rendered typed values and escaped feeder text.
    let created: Vec<serde_json::Value> = seen
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| serde_json::from_str(&s.body).expect("body is JSON"))
        .collect();
    assert!(
        created
            .iter()
            .all(|b| b["n"] == 1 && b["key"].as_str().unwrap().len() == 36)
    );
    assert!(
        created
            .iter()
            .all(|b| ["Ana", "Bo \"B\"", "Cy"].contains(&b["name"].as_str().unwrap()))
    );
    assert_eq!(counted(&summary, ROUTES), server.counts());
}

#[test]
fn closed_model_runs_users_back_to_back_and_counts_match() {
    let server = TestServer::start();
    let workspace = workspace_with_people();
    let scenario = workspace.write("s.toml", &members_scenario(&server.url(), "closed"));
    let (_, summary) = run_ok(&options(&scenario, &workspace.out()));
    assert_eq!(summary.model, "closed");
    assert_eq!(summary.generator.scheduled, 0);
    assert!(
        summary.totals.requests > 50,
        "4 users for 1.5 s on loopback: {}",
        summary.totals.requests
    );
    assert_eq!(summary.totals.requests, server.seen().len() as u64);
    let started: u64 = summary.journeys.iter().map(|j| j.started).sum();
    let finished: u64 = summary
        .journeys
        .iter()
        .map(|j| j.completed + j.failed)
        .sum();
    assert_eq!(started, finished, "every started journey is accounted for");
}

#[test]
fn the_same_seed_replays_the_same_requests() {
    let run = |seed: u64| {
        let server = TestServer::start();
        let workspace = workspace_with_people();
        let scenario = workspace.write("s.toml", &members_scenario(&server.url(), "open"));
        let mut options = options(&scenario, &workspace.out());
        options.seed = Some(seed);
        run_ok(&options);
        let mut seen: Vec<(String, String, String)> = server
            .seen()
            .into_iter()
            // Member ids depend on arrival order at the server; the request content does not.
            .map(|s| {
                (
                    s.method,
                    crate::support::server::route(&s.path)
                        + &s.path
                            .split('?')
                            .nth(1)
                            .map(|q| format!("?{q}"))
                            .unwrap_or_default(),
                    s.body,
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let first = run(7);
    let again = run(7);
    let other = run(8);
    assert!(
        first.len() >= 100,
        "every arrival sends at least one request"
    );
    assert_eq!(first, again, "same seed, same requests");
    assert_ne!(first, other, "another seed, other requests");
}

#[test]
fn failed_steps_stop_the_journey_and_are_classified() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "s.toml",
        &format!(
            r#"
[target]
base_url = "{}"
[load]
model = "open"
start_rate = "20/s"
[[load.stage]]
duration = "1s"
rate = "20/s"
[[journey]]
name = "fails"
[[journey.step]]
name = "server error"
url = "/status/503"
[[journey.step]]
name = "never reached"
url = "/hello"
"#,
            server.url()
        ),
    );
    let (_, summary) = run_ok(&options(&scenario, &workspace.out()));
    let journey = &summary.journeys[0];
    assert_eq!(journey.failed, 20);
    assert_eq!(journey.failed_by_class.get("http_5xx"), Some(&20));
    assert_eq!(journey.steps[1].requests, 0);
    assert_eq!(server.counts().get("GET /hello"), None);
    assert_eq!(summary.totals.errors_by_class.get("http_5xx"), Some(&20));
}

#[test]
fn bodies_over_the_limit_fail_the_step() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "s.toml",
        &format!(
            r#"
[target]
base_url = "{}"
max_body = "16B"
[load]
model = "open"
start_rate = "10/s"
[[load.stage]]
duration = "1s"
rate = "10/s"
[[journey]]
name = "sizes"
[[journey.step]]
name = "small"
url = "/hello"
[[journey.step]]
name = "large"
method = "POST"
url = "/api/members"
json = {{ padding = "a body echoed back well past sixteen bytes" }}
expect = 201
"#,
            server.url()
        ),
    );
    let (_, summary) = run_ok(&options(&scenario, &workspace.out()));
    let steps = &summary.journeys[0].steps;
    assert_eq!(steps[0].errors, 0, "5 bytes fit");
    assert_eq!(steps[1].errors_by_class.get("body_too_large"), Some(&10));
}

#[test]
fn a_repeated_step_sends_each_round_with_its_number_and_stops_at_a_failed_one() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "repeat.toml",
        &format!(
            r#"name = "repeat"
[target]
base_url = "{url}"
[load]
model = "closed"
start_vus = 2
failure_backoff = "0s"
[[load.stage]]
duration = "1s"
vus = 2
[[journey]]
name = "rounds"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "r" }}
expect = 201
extract = {{ id = "/id" }}
[[journey.step]]
name = "segment"
url = "/hello?member={{{{id}}}}&round={{{{repeat}}}}"
repeat = 3
[[journey.step]]
name = "give up"
url = "/status/503"
repeat = 4
"#,
            url = server.url()
        ),
    );
    let (_, summary) = run_ok(&options(&scenario, &workspace.out()));
    let steps = &summary.journeys[0].steps;
    let sign_ups = steps[0].requests;
    assert!(sign_ups > 5, "{sign_ups}");
    // Every member fetched rounds 0, 1 and 2 (a journey cut by the run's end may hold fewer).
    let seen = server.seen();
    let mut rounds: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for s in seen.iter().filter(|s| s.path.starts_with("/hello")) {
        let query = s.path.split_once('?').unwrap().1;
        let (member, round) = query.split_once('&').unwrap();
        rounds
            .entry(member.to_string())
            .or_default()
            .push(round.to_string());
    }
    let complete = rounds
        .values()
        .filter(|r| **r == ["round=0", "round=1", "round=2"])
        .count();
    assert!(complete as u64 >= sign_ups - 2, "{rounds:?}");
    assert!(rounds.values().all(|r| r.len() <= 3), "{rounds:?}");
    assert_eq!(
        steps[1].requests,
        seen.iter().filter(|s| s.path.starts_with("/hello")).count() as u64
    );
    // The first failed round ends the journey: one 503 per journey that got that far.
    let failed = seen.iter().filter(|s| s.path == "/status/503").count() as u64;
    assert_eq!(steps[2].requests, failed);
    assert!(
        failed >= complete as u64 - 2 && failed <= sign_ups,
        "{failed}"
    );
    assert_eq!(steps[2].errors, failed);
}

/// `[target] instance_header` names the serving instance; a target that puts a new value
/// there on every response (here a per-member ETag) keeps 64 names and counts the rest as
/// "(other)", without losing a response.
#[test]
fn an_unbounded_instance_header_keeps_64_names_and_counts_the_rest_as_other() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "etag.toml",
        &format!(
            r#"name = "etags"
[target]
base_url = "{}"
instance_header = "X-Member-Etag"
[load]
model = "open"
start_rate = "200/s"
[[load.stage]]
duration = "1s"
rate = "200/s"
[[journey]]
name = "signup"
[[journey.step]]
name = "create member"
method = "POST"
url = "/api/members"
json = {{ n = 1 }}
expect = 201
"#,
            server.url()
        ),
    );
    let (run_dir, summary) = run_ok(&options(&file, &workspace.out()));
    let served = server.seen().len() as u64;
    let instances = &summary.totals.instances;
    assert!(served > 64, "more distinct values than are kept: {served}");
    assert_eq!(instances.len(), 65, "{instances:?}");
    assert_eq!(
        instances.values().sum::<u64>(),
        served,
        "every response counted"
    );
    assert_eq!(instances["(other)"], served - 64);
    assert!(instances.keys().any(|k| k.starts_with("etag-")));
    // series.csv: no second lists more than 64 names and "(other)".
    let series = std::fs::read_to_string(run_dir.join("series.csv")).unwrap();
    let mut per_second: std::collections::BTreeMap<&str, usize> = Default::default();
    for line in series.lines().filter(|l| l.contains(",instance:")) {
        *per_second
            .entry(line.split(',').next().unwrap())
            .or_default() += 1;
    }
    assert!(!per_second.is_empty());
    assert!(per_second.values().all(|n| *n <= 65), "{per_second:?}");
}
