//! Bad input: every error at once with file:line:col, exit 2, nothing sent.

use std::path::Path;

use loadgen::api::scenario;

use crate::support::server::TestServer;
use crate::support::{Workspace, options};

const BROKEN: &str = r#"name = "broken"
[target]
base_url = "http://127.0.0.1:9"
request_timeout = "5sx"
instance_header = "bad header"
[load]
model = "open"
[[load.stage]]
duration = "10"
rate = "50/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/x/{{nope}}"
expect = "7xx"
think = "1s..0s"
repeat = 0
[[journey.step]]
name = "b"
url = "no-slash"
colour = "blue"
"#;

#[test]
fn every_error_is_reported_with_line_and_column() {
    let diagnostics =
        scenario::from_source(BROKEN, Path::new("broken.toml"), Path::new(".")).unwrap_err();
    let lines = diagnostics.headlines();
    let expected = [
        "broken.toml:4:19: unknown duration unit `sx` in `5sx`",
        "broken.toml:5:19: `bad header` is not a valid header name",
        "broken.toml:9:12: `10` has no unit",
        "broken.toml:15:11: unknown reference `nope`",
        "broken.toml:16:10: `7xx` is not a status class",
        "broken.toml:17:9: think range `1s..0s` is reversed",
        "broken.toml:18:10: `repeat` must be 1 to 10000, not 0",
        // The unknown key no longer hides the rest of its step.
        "broken.toml:21:7: a step's `url` is a path on the target and must start with `/`",
        "broken.toml:22:1: unknown key `colour`",
    ];
    for prefix in expected {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix) || l.contains(prefix)),
            "missing `{prefix}` in:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
    let rendered = diagnostics.to_string();
    assert!(
        rendered.contains("4 | request_timeout = \"5sx\""),
        "{rendered}"
    );
    assert!(rendered.ends_with("9 errors in broken.toml"), "{rendered}");
}

/// The nine mistakes a newcomer made writing a scenario from the docs (issue 25), in one
/// file: each reported at its own line, in words, once — and nothing else (no table
/// dropped for one bad value, no "unknown feeder" for a feeder whose file is missing, no
/// "no step records kind" for a step with a mistake of its own).
const NINE_MISTAKES: &str = r#"name = "nine mistakes"

[target]
base_url = "http://127.0.0.1:3000"
request_timeout = 5

[load]
model = "open"

[[load.stage]]
duration = "30s"
rate = 50

[data.feeder.users]
file = "users.csv"
order = "shuffle"

[data.generator.word]
kind = "pick"
values = ["red", "green"]
lenght = 3

[[journey]]
name = "browse"
weight = "3"

[[journey.step]]
name = "create post"
method = "POST"
url = "/posts"
json = { title = "{{word}}", author = "{{users.name}}" }
expect = "201"
extract = { post_id = "/id" }
record = { kind = "post", id = "{{post_id}}" }

[[journey.step]]
name = "read post"
url = "/posts/{{post_id}}"
expcet = 200

[[verify]]
kind = "post"
url = "/posts/{{ack.id}}"

[[verify.count]]
url = "/posts"
extract = { header = "X-Total-Count" }
per_page = 10

[[slo]]
objective = "p99 < 500ms"
scope = "browse/read post"
"#;

#[test]
fn nine_mistakes_give_nine_diagnostics_each_at_its_line() {
    let workspace = Workspace::new();
    let diagnostics =
        scenario::from_source(NINE_MISTAKES, Path::new("nine.toml"), workspace.dir.path())
            .unwrap_err();
    let lines = diagnostics.headlines();
    let expected = [
        "nine.toml:5:19: `request_timeout` takes a duration such as \"5s\", not the number 5",
        "nine.toml:12:8: `rate` takes a rate such as \"50/s\", not the number 50",
        "nine.toml:15:8: cannot read feeder",
        "nine.toml:16:9: unknown feeder order `shuffle`",
        "nine.toml:21:1: unknown key `lenght`",
        "nine.toml:25:10: `weight` takes a whole number such as 3, not the text \"3\" (write it without quotes)",
        "nine.toml:32:10: `expect` takes a status as a number: write 201 without quotes",
        "nine.toml:39:1: unknown key `expcet`: did you mean `expect`?",
        "nine.toml:48:1: unknown key `per_page`",
    ];
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
    for (line, prefix) in lines.iter().zip(expected) {
        assert!(line.starts_with(prefix), "`{line}` is not `{prefix}…`");
    }
    // Fixed, the same file validates: nothing else was wrong.
    let fixed = NINE_MISTAKES
        .replace("request_timeout = 5", "request_timeout = \"5s\"")
        .replace("rate = 50", "rate = \"50/s\"")
        .replace("order = \"shuffle\"", "order = \"random\"")
        .replace("lenght = 3\n", "")
        .replace("weight = \"3\"", "weight = 3")
        .replace("expect = \"201\"", "expect = 201")
        .replace("expcet = 200", "expect = 200")
        .replace("per_page = 10\n", "");
    std::fs::write(workspace.dir.path().join("users.csv"), "name\nada\n").unwrap();
    if let Err(diagnostics) =
        scenario::from_source(&fixed, Path::new("nine.toml"), workspace.dir.path())
    {
        panic!("the fixed file still fails:\n{diagnostics}");
    }
}

/// What `run` refuses on the scenario alone, `validate` refuses too, at its position: a
/// base_url name outside the allow-list (`.invalid` never resolves), a `restart` of a PID
/// file's process, a kill of one held for a duration (nothing could start it again).
#[test]
fn validate_refuses_what_run_would_at_its_position() {
    let workspace = Workspace::new();
    let scenario = |target: &str, fault: &str| {
        format!(
            r#"[target]
base_url = "{target}"
[load]
model = "open"
[[load.stage]]
duration = "2s"
rate = "1/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/"
{fault}"#
        )
    };
    let cases = [
        (
            scenario("http://loadgen-test.invalid:8080", ""),
            (
                "2:12",
                "target host `loadgen-test.invalid` is outside the allow-list",
            ),
        ),
        (
            scenario(
                "http://127.0.0.1:9",
                "[[fault]]\nname = \"r\"\nat = \"1s\"\naction = \"restart\"\ntarget = { pidfile = \"app.pid\" }\n",
            ),
            ("16:10", "a `restart` of the process in"),
        ),
        (
            scenario(
                "http://127.0.0.1:9",
                "[[fault]]\nname = \"k\"\nat = \"1s\"\nduration = \"2s\"\naction = \"kill\"\ntarget = { pidfile = \"app.pid\" }\n",
            ),
            ("16:12", "a held `kill` of the process in"),
        ),
    ];
    for (text, (position, expected)) in cases {
        let path = workspace.write("case.toml", &text);
        let output = crate::support::loadgen_command()
            .args(["validate", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("case.toml:{position}: error: {expected}")),
            "expected `{expected}` in:\n{stderr}"
        );
        assert!(stderr.contains("\n1 error in "), "{stderr}");
    }
    // A kill without a duration is a deliberate permanent stop: allowed.
    let path = workspace.write(
        "case.toml",
        &scenario(
            "http://127.0.0.1:9",
            "[[fault]]\nname = \"k\"\nat = \"1s\"\naction = \"kill\"\ntarget = { pidfile = \"app.pid\" }\n",
        ),
    );
    let output = crate::support::loadgen_command()
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn toml_syntax_errors_are_positioned_too() {
    let diagnostics = scenario::from_source(
        "[target]\nbase_url = \n",
        Path::new("s.toml"),
        Path::new("."),
    )
    .unwrap_err();
    let lines = diagnostics.headlines();
    assert!(lines[0].starts_with("s.toml:2:"), "{lines:?}");
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
    let workspace = Workspace::new();
    let path = workspace.dir.path().join("latin1.toml");
    std::fs::write(&path, b"name = \"caf\xe9\"\n[target]\n").unwrap();
    let Err(scenario::ScenarioError::Invalid(diagnostics)) = scenario::load(&path) else {
        panic!("a file that is not UTF-8 must be refused with a position");
    };
    let lines = diagnostics.headlines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{}:1:12: ", path.display())),
        "{lines:?}"
    );
    assert!(
        diagnostics
            .to_string()
            .contains("1 | name = \"caf\u{fffd}\"")
    );
}

#[test]
fn a_bad_scenario_sends_nothing() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let text = BROKEN.replace("http://127.0.0.1:9", &server.url());
    let scenario = workspace.write("broken.toml", &text);
    let error =
        loadgen::api::run::prepare(&options(&scenario, &workspace.out())).expect_err("refused");
    assert!(matches!(error, loadgen::api::run::RunError::BadInput(_)));
    assert!(server.seen().is_empty());
    assert!(
        !workspace.out().exists(),
        "no run directory for a refused run"
    );
}

#[test]
fn a_host_outside_the_allow_list_is_refused_before_any_request() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = workspace.write(
        "s.toml",
        &format!(
            r#"[target]
base_url = "{}"
allow_hosts = ["127.0.0.2"]
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "10/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/hello"
"#,
            server.url()
        ),
    );
    let error =
        loadgen::api::run::prepare(&options(&scenario, &workspace.out())).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("outside the allow-list"), "{message}");
    assert!(server.seen().is_empty());
    // `validate` refuses it too, at the base_url.
    let Err(scenario::ScenarioError::Invalid(diagnostics)) = scenario::load(&scenario) else {
        panic!("validate accepts a base_url its own allow_hosts refuses");
    };
    let lines = diagnostics.headlines();
    assert!(
        lines[0].starts_with(&format!(
            "{}:2:12: target host `127.0.0.1` is outside the allow-list",
            scenario.display()
        )),
        "{lines:?}"
    );
}

const BAD_CLIENTS: &str = r#"name = "clients"
[target]
base_url = "http://127.0.0.1:9"
protocol = "h3"
redirects = 99
source_addrs = ["127.0.0.9-127.0.0.2", "::1-127.0.0.3", "not-an-ip"]
compression = "gzip, lzma"
[data.feeder.cookie]
file = "members.csv"
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[[journey]]
name = "j"
connection = "sometimes"
[[journey.step]]
name = "a"
url = "/x"
headers = { X = "{{cookie.}}" }
extract = { cookie = "/id" }
"#;

#[test]
fn client_fields_are_validated_with_positions() {
    let diagnostics =
        scenario::from_source(BAD_CLIENTS, Path::new("c.toml"), Path::new(".")).unwrap_err();
    let lines = diagnostics.headlines();
    let expected = [
        "c.toml:4:12: `h3` is not a protocol",
        "c.toml:5:13: `redirects` is at most 20",
        "c.toml:6:17: `127.0.0.9-127.0.0.2`: the range's first address is after its last",
        "c.toml:6:40: `::1-127.0.0.3`: both ends of a range must be the same family",
        "c.toml:6:57: `not-an-ip` is not an IP address",
        "c.toml:7:15: `gzip, lzma`: compression offers a list of gzip",
        "c.toml:8:1: `cookie` is a reserved name",
        "c.toml:17:14: `sometimes` is not a connection mode",
        "c.toml:21:18: `` is not a cookie name",
        "c.toml:22:22: `cookie` cannot be a variable name",
    ];
    for prefix in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "missing `{prefix}` in:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
}

/// A closed model of billions of users is refused at the numbers (it panicked on a capacity
/// overflow, or aborted allocating 32 GiB for the plan of every user's join).
#[test]
fn a_closed_models_users_are_bounded() {
    let source = r#"[target]
base_url = "http://127.0.0.1:9"
[load]
model = "closed"
start_vus = 2147483647
[[load.stage]]
duration = "10s"
vus = 9223372036854775807
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/x"
"#;
    let diagnostics =
        scenario::from_source(source, Path::new("vus.toml"), Path::new(".")).unwrap_err();
    let lines = diagnostics.headlines();
    assert_eq!(
        lines,
        [
            "vus.toml:5:13: `start_vus` is at most 100000, not 2147483647",
            "vus.toml:8:7: `vus` is at most 100000, not 9223372036854775807",
        ],
        "{lines:?}"
    );
}

/// Weights are u32 each; `loadgen plan` adds them up without overflowing (it panicked on
/// two journeys of weight 4294967295).
#[test]
fn plan_describes_weights_that_add_up_past_u32() {
    let source = r#"[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "10s"
rate = "5/s"
[[journey]]
name = "a"
weight = 4294967295
[[journey.step]]
name = "a"
url = "/a"
[[journey]]
name = "b"
weight = 4294967295
[[journey.step]]
name = "b"
url = "/b"
"#;
    let plan = scenario::from_source(source, Path::new("w.toml"), Path::new(".")).unwrap();
    let text = scenario::describe(&plan, 1);
    assert!(text.contains("50.0%  a"), "{text}");
    assert!(text.contains("50.0%  b"), "{text}");
}

/// A fault repeated 4294967295 times is refused at the number (`loadgen plan` aborted
/// allocating every injection of it).
#[test]
fn a_faults_repeat_is_bounded() {
    let source = r#"[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "60s"
rate = "5/s"
[[journey]]
name = "a"
[[journey.step]]
name = "a"
url = "/x"
[[fault]]
name = "slow"
at = "1s"
duration = "1ms"
repeat = 4294967295
every = "2ms"
action = "latency"
latency = "10ms"
target = { proxy = "postgres" }
"#;
    let diagnostics =
        scenario::from_source(source, Path::new("f.toml"), Path::new(".")).unwrap_err();
    let lines = diagnostics.headlines();
    assert_eq!(
        lines,
        ["f.toml:17:10: a fault's `repeat` is at most 10000, not 4294967295"],
        "{lines:?}"
    );
    let allowed = source.replace("4294967295", "10000");
    scenario::from_source(&allowed, Path::new("f.toml"), Path::new(".")).unwrap();
}
