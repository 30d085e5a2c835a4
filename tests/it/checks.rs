//! Response checks besides the status: a JSON value, a body substring, a header glob. A
//! failed check is the request's outcome `check_failed`, counted per step by the check that
//! said no, and shown in the report; a passing one changes nothing.

use crate::support::server::TestServer;
use crate::support::{Workspace, options, run_ok};

#[test]
fn each_check_kind_fails_as_check_failed_with_the_check_named() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "checks.toml",
        &format!(
            r#"name = "checks"
[target]
base_url = "{}"
[load]
model = "open"
start_rate = "40/s"
[[load.stage]]
duration = "2s"
rate = "40/s"
[[journey]]
name = "json"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "ana" }}
check = {{ json = {{ "/auth/token" = "not-the-token" }} }}
[[journey]]
name = "body"
[[journey.step]]
name = "hello"
url = "/hello"
check = {{ body_contains = "goodbye" }}
[[journey]]
name = "header"
[[journey.step]]
name = "hello"
url = "/hello"
check = {{ header = {{ content-type = "application/json*" }} }}
[[journey]]
name = "passing"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "bo" }}
check = {{ body_contains = "tok-", json = {{ "/echo/name" = "bo" }} }}
[[slo]]
objective = "p99 < 1s"
scope = "passing"
"#,
            server.url()
        ),
    );
    let (run_dir, summary) = run_ok(&options(&file, &workspace.out()));
    // Every request reached the server; the checks judged what came back.
    assert_eq!(summary.totals.requests, server.seen().len() as u64);
    let journey = |name: &str| {
        summary
            .journeys
            .iter()
            .find(|j| j.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    for (name, label) in [
        ("json", r#"json /auth/token = "not-the-token""#),
        ("body", r#"body contains "goodbye""#),
        ("header", "header content-type ~ application/json*"),
    ] {
        let step = &journey(name).steps[0];
        assert!(step.requests > 5, "{name}: {step:?}");
        assert_eq!(
            step.errors, step.requests,
            "{name}: every response failed its check"
        );
        assert_eq!(
            step.errors_by_class.get("check_failed"),
            Some(&step.requests),
            "{name}: {:?}",
            step.errors_by_class
        );
        assert_eq!(
            step.checks_failed.get(label),
            Some(&step.requests),
            "{name}: {:?}",
            step.checks_failed
        );
    }
    let passing = &journey("passing").steps[0];
    assert!(passing.requests > 5);
    assert_eq!(passing.errors, 0, "{passing:?}");
    assert!(passing.checks_failed.is_empty());
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains("check failed ×"),
        "the report names failed checks"
    );
    assert!(html.contains("body contains &quot;goodbye&quot;"));
}

/// A step's check takes `{{…}}` templates as a read-back's does: rendered for each
/// response, then compared (as JSON where the check is JSON). Where the values match every
/// request passes; where they cannot, every request is `check_failed` by that check.
#[test]
fn templated_checks_compare_the_rendered_values() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "templated.toml",
        &format!(
            r#"name = "templated"
[target]
base_url = "{}"
[load]
model = "open"
start_rate = "30/s"
[[load.stage]]
duration = "2s"
rate = "30/s"
[data.generator.who]
kind = "pick"
values = ["ana", "bo", "cy"]
[data.generator.nobody]
kind = "pick"
values = ["zed"]
[[journey]]
name = "matching"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "{{{{who}}}}" }}
check = {{ json = {{ "/echo/name" = "{{{{who}}}}" }}, body_contains = "\"{{{{who}}}}\"" }}
[[journey]]
name = "differing"
[[journey.step]]
name = "sign up"
method = "POST"
url = "/api/members"
json = {{ name = "{{{{who}}}}" }}
check = {{ json = {{ "/echo/name" = "{{{{nobody}}}}" }} }}
"#,
            server.url()
        ),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    assert_eq!(summary.totals.requests, server.seen().len() as u64);
    let step = |journey: &str| {
        summary
            .journeys
            .iter()
            .find(|j| j.name == journey)
            .map(|j| j.steps[0].clone())
            .unwrap_or_else(|| panic!("{journey}"))
    };
    let matching = step("matching");
    assert!(matching.requests > 5, "{matching:?}");
    assert_eq!(matching.errors, 0, "{matching:?}");
    let differing = step("differing");
    assert!(differing.requests > 5, "{differing:?}");
    assert_eq!(
        differing
            .checks_failed
            .get(r#"json /echo/name = "{{nobody}}""#),
        Some(&differing.requests),
        "{:?}",
        differing.checks_failed
    );
    // The names really varied: the check compared each request's own value.
    let bodies: std::collections::BTreeSet<String> =
        server.seen().iter().map(|r| r.body.clone()).collect();
    assert!(bodies.len() >= 3, "{bodies:?}");
}

#[test]
fn a_malformed_check_is_a_positioned_error() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "bad.toml",
        r#"name = "bad"
[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/"
check = { json = { "status" = 1 }, nonsense = true }
"#,
    );
    let errors = loadgen::api::scenario::load(&file).unwrap_err().to_string();
    assert!(
        errors.contains("bad.toml:14:36: error: unknown key `nonsense`"),
        "{errors}"
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(", nonsense = true", "");
    std::fs::write(&file, text).unwrap();
    let errors = loadgen::api::scenario::load(&file).unwrap_err().to_string();
    assert!(
        errors.contains("bad.toml:14:9: error: check json key `status` is not a JSON pointer"),
        "{errors}"
    );
}
