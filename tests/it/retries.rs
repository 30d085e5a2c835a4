//! Requests the server provably did not process are sent again, once, on a fresh connection,
//! as every client does — and only those: a stream above a GOAWAY's last stream id, a
//! refused stream, an idempotent request on a kept-alive HTTP/1.1 connection that closed
//! with no byte of an answer. A stream the GOAWAY covered and the close cut off, or a
//! written POST, is the platform's error as before. Counts are checked against what the
//! servers saw and processed.

use loadgen::api::plan::HttpVersion;

use crate::support::bare_h2::{BareH2, Script};
use crate::support::faulty::{FaultyServer, Misbehaviour};
use crate::support::{Workspace, options, run_ok};

fn h2c_scenario(url: &str) -> String {
    format!(
        r#"name = "bare-h2"
seed = 5
[target]
base_url = "{url}"
protocol = "h2c"
request_timeout = "2s"
[load]
model = "open"
start_rate = "50/s"
ramp_down = "3s"
[[load.stage]]
duration = "1s"
rate = "50/s"
[[journey]]
name = "read"
[[journey.step]]
name = "get"
url = "/item"
"#
    )
}

fn run(text: &str) -> loadgen::api::record::Summary {
    let workspace = Workspace::new();
    let file = workspace.write("scenario.toml", text);
    let mut options = options(&file, &workspace.out());
    // One worker: every stream starts on the one connection the script plays with.
    options.threads = Some(1);
    run_ok(&options).1
}

#[test]
fn streams_above_a_goaway_are_sent_again_and_a_covered_stream_cut_off_is_an_error() {
    let server = BareH2::start(Script::GoAway {
        streams: 5,
        last: 5,
    });
    let summary = run(&h2c_scenario(&server.url()));
    let totals = &summary.totals;
    let unprocessed = server.count(|c| &c.unprocessed);
    assert!(unprocessed >= 2, "streams 7 and 9 at least: {unprocessed}");
    assert_eq!(
        totals.retried_unprocessed, unprocessed,
        "every stream above the last id, and only those, sent again"
    );
    assert_eq!(server.count(|c| &c.cut_off), 1, "stream 5");
    assert_eq!(totals.errors, 1, "{:?}", totals.errors_by_class);
    assert_eq!(totals.errors_by_class.get("reset"), Some(&1));
    assert_eq!(totals.requests, 50, "one request each, retried or not");
    assert_eq!(
        totals.requests - totals.errors,
        server.count(|c| &c.processed),
        "loadgen's successes are what the server processed"
    );
    assert!(server.count(|c| &c.connections) >= 2);
    let step = &summary.journeys[0].steps[0];
    assert_eq!(step.retried_unprocessed, unprocessed);
}

#[test]
fn a_refused_stream_is_sent_again_on_a_fresh_connection() {
    let server = BareH2::start(Script::RefuseStream3);
    let summary = run(&h2c_scenario(&server.url()));
    let totals = &summary.totals;
    let refused = server.count(|c| &c.unprocessed);
    assert!(refused >= 1, "stream 3 was refused");
    assert_eq!(totals.retried_unprocessed, refused);
    assert_eq!(totals.errors, 0, "{:?}", totals.errors_by_class);
    assert_eq!(totals.requests, 50);
    assert_eq!(server.count(|c| &c.processed), 50);
}

fn h1_scenario(url: &str, method: &str) -> String {
    format!(
        r#"name = "closing-h1"
seed = 9
[target]
base_url = "{url}"
protocol = "http1"
[load]
model = "closed"
start_vus = 4
[[load.stage]]
duration = "1s"
vus = 4
[[journey]]
name = "j0"
[[journey.step]]
name = "first"
method = "{method}"
url = "/j0/first"
think = "20ms"
"#
    )
}

/// The server answers each connection's first request and closes it under the second: from
/// the client's side, a kept-alive connection closed under a request it wrote.
#[test]
fn an_idempotent_request_on_a_closed_keepalive_connection_is_sent_again_a_post_is_not() {
    let server = FaultyServer::start(Some(Misbehaviour::CloseKeptAlive), 1, 1);
    let get = run(&h1_scenario(&server.url(), "GET"));
    let totals = &get.totals;
    assert!(
        totals.retried_unprocessed > 0,
        "a run without a retry proves nothing"
    );
    assert_eq!(totals.errors, 0, "{:?}", totals.errors_by_class);
    assert_eq!(
        server.requests(),
        totals.requests + totals.retried_unprocessed,
        "the server read each retried request twice"
    );

    let server = FaultyServer::start(Some(Misbehaviour::CloseKeptAlive), 1, 1);
    let post = run(&h1_scenario(&server.url(), "POST"));
    let totals = &post.totals;
    assert_eq!(
        totals.retried_unprocessed, 0,
        "a written POST may have changed the platform"
    );
    assert!(totals.errors > 0);
    assert_eq!(server.requests(), totals.requests);
}

/// nginx ends an HTTP/2 connection with GOAWAY after `keepalive_requests`; streams loadgen
/// opened while it was on its way were never processed. At 2,000 requests/s with a limit
/// of 10, there are many: each is sent again, none is an error, and nginx's own log has
/// as many answers as loadgen has successes.
#[test]
fn nginx_closing_h2_connections_every_ten_requests_costs_no_error() {
    let nginx = crate::support::nginx::Nginx::start("keepalive_requests 10;");
    let text = format!(
        r#"name = "nginx-goaway"
[target]
base_url = "https://127.0.0.1:{port}"
ca_file = "{ca}"
request_timeout = "5s"
[load]
model = "open"
start_rate = "2000/s"
ramp_down = "5s"
[[load.stage]]
duration = "5s"
rate = "2000/s"
[[journey]]
name = "read"
[[journey.step]]
name = "get"
url = "/"
"#,
        port = nginx.tls_port,
        ca = nginx.ca_file.display()
    );
    let workspace = Workspace::new();
    let file = workspace.write("goaway.toml", &text);
    let summary = run_ok(&options(&file, &workspace.out())).1;
    assert_eq!(summary.protocol, Some(HttpVersion::H2));
    let totals = &summary.totals;
    let (connections, answered) = nginx.served();
    eprintln!(
        "nginx, keepalive_requests 10: {} requests, {} sent again, {} errors; nginx: {connections} connections, {answered} answered",
        totals.requests, totals.retried_unprocessed, totals.errors
    );
    assert_eq!(totals.requests, 10_000);
    assert!(
        totals.retried_unprocessed > 0,
        "a run in which nothing was sent again proves nothing"
    );
    assert_eq!(totals.errors, 0, "{:?}", totals.errors_by_class);
    assert!(
        connections as u64 >= totals.requests / 10,
        "nginx closed a connection every 10 requests: {connections}"
    );
    assert_eq!(answered, totals.requests - totals.errors);
}

/// The HTTP/1.1 twin: nginx closes a kept-alive connection after `keepalive_timeout`, and
/// users who think about that long send their next request into the close.
#[test]
fn nginx_closing_idle_h1_connections_under_thinking_users_costs_no_error() {
    let nginx = crate::support::nginx::Nginx::start("keepalive_timeout 500ms;");
    let text = format!(
        r#"name = "nginx-keepalive"
[target]
base_url = "http://127.0.0.1:{port}"
[load]
model = "closed"
start_vus = 200
[[load.stage]]
duration = "8s"
vus = 200
[[journey]]
name = "read"
[[journey.step]]
name = "get"
url = "/"
think = "490ms..510ms"
"#,
        port = nginx.http_port,
    );
    let workspace = Workspace::new();
    let file = workspace.write("keepalive.toml", &text);
    let summary = run_ok(&options(&file, &workspace.out())).1;
    let totals = &summary.totals;
    let (connections, answered) = nginx.served();
    eprintln!(
        "nginx, keepalive_timeout 500ms: {} requests, {} sent again, {} errors; nginx: {connections} connections, {answered} answered",
        totals.requests, totals.retried_unprocessed, totals.errors
    );
    assert!(
        totals.retried_unprocessed > 0,
        "a run in which nothing was sent again proves nothing"
    );
    assert_eq!(totals.errors, 0, "{:?}", totals.errors_by_class);
    assert_eq!(answered, totals.requests);
}
