//! The clients browsers really are: HTTP/2 (ALPN, h2c, fallback), cookies, redirects,
//! source addresses and connection behaviour — each against a real server on port 0 whose
//! own counts are checked against loadgen's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use loadgen::api::plan::HttpVersion;

use crate::support::web::{Speaks, WebServer};
use crate::support::{Workspace, options, run_binary, run_ok};

/// A scenario against `server` with `target` lines, a load block and journeys.
fn scenario(server: &WebServer, tls: bool, target: &str, load: &str, journeys: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ca = if tls {
        "ca_file = \"server.pem\"\n"
    } else {
        ""
    };
    format!(
        "name = \"clients\"\nseed = 7\n[target]\nbase_url = \"{scheme}://{}\"\n{ca}{target}\n[load]\n{load}\n{journeys}",
        server.addr
    )
}

const CLOSED_8: &str = "model = \"closed\"\nstart_vus = 8\nramp_down = \"2s\"\n[[load.stage]]\nduration = \"2s\"\nvus = 8\n";

const SLOW: &str =
    "[[journey]]\nname = \"slow\"\n[[journey.step]]\nname = \"slow\"\nurl = \"/slow\"\n";

fn run_against(server: &WebServer, text: &str) -> loadgen::api::record::Summary {
    run_dir_against(server, text).2
}

/// The run, with the workspace that holds its directory (dropped: gone).
fn run_dir_against(
    server: &WebServer,
    text: &str,
) -> (Workspace, std::path::PathBuf, loadgen::api::record::Summary) {
    let workspace = Workspace::new();
    workspace.write("server.pem", &server.cert_pem);
    let file = workspace.write("clients.toml", text);
    let (dir, summary) = run_ok(&options(&file, &workspace.out()));
    (workspace, dir, summary)
}

fn versions(server: &WebServer) -> BTreeSet<String> {
    server
        .hits()
        .iter()
        .map(|h| format!("{:?}", h.version))
        .collect()
}

#[test]
fn h2_over_tls_shares_a_connection_between_a_workers_journeys() {
    let server = WebServer::start(Speaks::TlsH2);
    let (_workspace, run_dir, summary) =
        run_dir_against(&server, &scenario(&server, true, "", CLOSED_8, SLOW));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert!(summary.totals.requests > 50, "{:?}", summary.totals);
    let report = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        report.contains("over HTTP&#x2f;2 (TLS)"),
        "the report says what was spoken"
    );
    assert_eq!(
        server.hits().len() as u64,
        summary.totals.requests,
        "every request loadgen counted is a stream the server served"
    );
    assert_eq!(versions(&server), BTreeSet::from(["HTTP/2.0".to_string()]));
    assert_eq!(
        summary.protocol,
        Some(HttpVersion::H2),
        "the summary says what was spoken"
    );
    assert!(
        server.max_concurrent() >= 2,
        "journeys share a connection: at most {} stream(s) at once",
        server.max_concurrent()
    );
    // Two workers (threads), each with one shared connection (8 users, 64 streams allowed),
    // plus the pre-flight's handshake.
    assert!(
        server.connections() <= 1 + 2,
        "{} connections",
        server.connections()
    );
}

#[test]
fn a_reset_stream_is_its_own_class_and_the_connection_lives_on() {
    let server = WebServer::start(Speaks::TlsH2);
    let journeys = format!(
        "{SLOW}[[journey]]\nname = \"reset\"\n[[journey.step]]\nname = \"reset\"\nurl = \"/reset\"\n"
    );
    let summary = run_against(&server, &scenario(&server, true, "", CLOSED_8, &journeys));
    let reset = &summary.journeys[1].steps[0];
    assert!(reset.requests > 5, "{reset:?}");
    assert_eq!(
        reset.errors_by_class.get("stream_reset"),
        Some(&reset.requests),
        "{reset:?}"
    );
    assert_eq!(
        summary.journeys[0].steps[0].errors, 0,
        "the other streams were unharmed"
    );
    assert_eq!(server.hits().len() as u64, summary.totals.requests);
    assert!(
        server.connections() <= 1 + 2,
        "a reset stream keeps its connection"
    );
}

#[test]
fn past_the_servers_stream_limit_another_connection_opens() {
    // 2 streams per connection, 4 users per worker: each worker needs 2 connections.
    let server = WebServer::start_with_streams(Speaks::TlsH2, 2);
    let summary = run_against(&server, &scenario(&server, true, "", CLOSED_8, SLOW));
    assert_eq!(
        summary.totals.errors, 0,
        "no stream was refused: {:?}",
        summary.totals
    );
    assert_eq!(server.hits().len() as u64, summary.totals.requests);
    assert_eq!(
        server.max_concurrent(),
        2,
        "never more streams than the server allows"
    );
    let used: BTreeSet<u64> = server.hits().iter().map(|h| h.connection).collect();
    assert_eq!(used.len(), 4, "two workers × two connections: {used:?}");
}

#[test]
fn h2c_speaks_http2_by_prior_knowledge() {
    let server = WebServer::start(Speaks::H2c);
    let text = scenario(&server, false, "protocol = \"h2c\"", CLOSED_8, SLOW);
    let summary = run_against(&server, &text);
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert_eq!(server.hits().len() as u64, summary.totals.requests);
    assert_eq!(versions(&server), BTreeSet::from(["HTTP/2.0".to_string()]));
    assert!(server.max_concurrent() >= 2);
}

/// h2c against a server that speaks only HTTP/1.1: the pre-flight says so, before any
/// request, instead of a run of bare connect_errors.
#[test]
fn h2c_against_an_http1_server_is_refused_at_pre_flight_saying_why() {
    let server = WebServer::start(Speaks::Http1);
    let workspace = Workspace::new();
    let text = scenario(&server, false, "protocol = \"h2c\"", CLOSED_8, SLOW);
    let file = workspace.write("h2c.toml", &text);
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("is not an h2c server") && stderr.contains("protocol = \"http1\""),
        "{stderr}"
    );
    assert!(server.hits().is_empty(), "no request was sent");
}

#[test]
fn auto_falls_back_to_http1_when_the_server_offers_no_h2() {
    let server = WebServer::start(Speaks::TlsHttp1);
    let summary = run_against(&server, &scenario(&server, true, "", CLOSED_8, SLOW));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert_eq!(server.hits().len() as u64, summary.totals.requests);
    assert_eq!(versions(&server), BTreeSet::from(["HTTP/1.1".to_string()]));
    assert_eq!(summary.protocol, Some(HttpVersion::Http1));
    // HTTP/1.1: one connection per user, one request at a time on each.
    assert_eq!(server.max_concurrent(), 1);
    assert_eq!(
        server.connections(),
        1 + 8,
        "the pre-flight's, then one per user"
    );
}

#[test]
fn plain_http_auto_is_http1_and_h2_over_http_is_refused() {
    let server = WebServer::start(Speaks::Http1);
    let summary = run_against(&server, &scenario(&server, false, "", CLOSED_8, SLOW));
    assert_eq!(versions(&server), BTreeSet::from(["HTTP/1.1".to_string()]));
    assert_eq!(server.hits().len() as u64, summary.totals.requests);

    let workspace = Workspace::new();
    let text = scenario(&server, false, "protocol = \"h2\"", CLOSED_8, SLOW);
    let file = workspace.write("h2.toml", &text);
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("h2.toml:5:") && stderr.contains("https"),
        "{stderr}"
    );
}

/// A user who signs in once: the first step reads the session it may already have.
const SIGN_IN: &str = r#"[[journey]]
name = "member"
[[journey.step]]
name = "me-before"
url = "/app/me"
expect = [200, 401]
[[journey.step]]
name = "sign-in"
url = "/signin"
[[journey.step]]
name = "me"
url = "/app/me"
headers = { X-Session = "{{cookie.session}}" }
think = "1.2s"
[[journey.step]]
name = "elsewhere"
url = "/other"
"#;

#[test]
fn a_session_cookie_goes_back_on_its_path_until_it_expires_and_a_user_keeps_it() {
    let server = WebServer::start(Speaks::Http1);
    let load = "model = \"closed\"\nstart_vus = 2\nramp_down = \"3s\"\n[[load.stage]]\nduration = \"4s\"\nvus = 2\n";
    let summary = run_against(&server, &scenario(&server, false, "", load, SIGN_IN));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    let hits = server.hits();
    assert_eq!(hits.len() as u64, summary.totals.requests);
    let me: Vec<_> = hits.iter().filter(|h| h.path == "/app/me").collect();
    let before_with_session = me
        .iter()
        .filter(|h| {
            h.session_header.is_none()
                && h.cookie
                    .as_deref()
                    .is_some_and(|c| c.contains("session=s3cr3t"))
        })
        .count();
    let iterations = hits.iter().filter(|h| h.path == "/signin").count();
    assert!(iterations >= 4, "{iterations} iterations");
    // Every user's first iteration starts without the cookie; every later one has it.
    assert_eq!(before_with_session, iterations - 2, "{me:#?}");
    for hit in me.iter().filter(|h| h.session_header.is_some()) {
        assert!(
            hit.cookie
                .as_deref()
                .unwrap_or("")
                .contains("session=s3cr3t"),
            "{hit:?}"
        );
        assert_eq!(
            hit.session_header.as_deref(),
            Some("s3cr3t"),
            "{{{{cookie.session}}}}"
        );
    }
    for hit in hits.iter().filter(|h| h.path == "/other") {
        let cookie = hit.cookie.as_deref().unwrap_or("");
        assert!(
            !cookie.contains("session="),
            "Path=/app kept it off /other: {hit:?}"
        );
        assert!(
            !cookie.contains("short="),
            "Max-Age=1 expired during the 1.2 s think: {hit:?}"
        );
    }
    let first_me = hits
        .iter()
        .position(|h| h.path == "/app/me" && h.session_header.is_some())
        .unwrap();
    assert!(
        hits[first_me]
            .cookie
            .as_deref()
            .unwrap()
            .contains("short=1"),
        "before expiry it went"
    );
}

#[test]
fn an_open_model_iteration_starts_with_an_empty_jar_and_cookies_can_be_off() {
    let server = WebServer::start(Speaks::Http1);
    let load = "model = \"open\"\nstart_rate = \"4/s\"\nramp_down = \"3s\"\n[[load.stage]]\nduration = \"2s\"\nrate = \"4/s\"\n";
    let summary = run_against(&server, &scenario(&server, false, "", load, SIGN_IN));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    let first: Vec<_> = server
        .hits()
        .into_iter()
        .filter(|h| h.path == "/app/me" && h.session_header.is_none())
        .collect();
    assert!(!first.is_empty());
    assert!(first.iter().all(|h| h.cookie.is_none()), "{first:#?}");

    let server = WebServer::start(Speaks::Http1);
    let summary = run_against(
        &server,
        &scenario(&server, false, "cookies = false", load, SIGN_IN),
    );
    assert!(server.hits().iter().all(|h| h.cookie.is_none()));
    let me = &summary.journeys[0].steps[2];
    assert_eq!(
        me.errors, me.requests,
        "without a jar the session never comes back: {me:?}"
    );
}

const HOPS: &str = "[[journey]]\nname = \"hops\"\n[[journey.step]]\nname = \"chain\"\nurl = \"/hop/3\"\ncheck = { body_contains = \"arrived\" }\n";

const OPEN_5: &str =
    "model = \"open\"\nstart_rate = \"10/s\"\n[[load.stage]]\nduration = \"2s\"\nrate = \"10/s\"\n";

#[test]
fn a_redirect_chain_is_followed_and_counted_hop_by_hop() {
    let server = WebServer::start(Speaks::Http1);
    let summary = run_against(&server, &scenario(&server, false, "", OPEN_5, HOPS));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    let step = &summary.journeys[0].steps[0];
    let finals = server.counts()["/hop/0"];
    assert!(finals >= 15, "{step:?}");
    assert_eq!(
        step.redirects,
        3 * finals,
        "three hops before each final response"
    );
    assert_eq!(step.requests, 4 * finals);
    assert_eq!(
        server.hits().len() as u64,
        summary.totals.requests,
        "counts are the server's"
    );
    assert_eq!(summary.totals.redirects, step.redirects);

    // Not followed: a step that expects the 302, or a target with redirects = 0.
    let server = WebServer::start(Speaks::Http1);
    let expects = HOPS.replace("check = { body_contains = \"arrived\" }", "expect = 302");
    let summary = run_against(&server, &scenario(&server, false, "", OPEN_5, &expects));
    assert_eq!(
        (summary.totals.errors, summary.totals.redirects),
        (0, 0),
        "{:?}",
        summary.totals
    );
    assert_eq!(
        server.counts(),
        BTreeMap::from([("/hop/3".to_string(), summary.totals.requests)])
    );
    let server = WebServer::start(Speaks::Http1);
    let summary = run_against(
        &server,
        &scenario(&server, false, "redirects = 0", OPEN_5, HOPS),
    );
    assert_eq!(
        summary.totals.errors, summary.totals.requests,
        "{:?}",
        summary.totals
    );
    assert_eq!(
        summary.totals.errors_by_class.get("unexpected_status"),
        Some(&summary.totals.requests)
    );
}

#[test]
fn a_redirect_outside_the_allow_list_is_refused_and_never_connected() {
    // A listener on another loopback address, outside allow_hosts = ["127.0.0.1"].
    let outside = TcpListener::bind("127.0.0.3:0").unwrap();
    outside.set_nonblocking(true).unwrap();
    let port = outside.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let server = WebServer::start(Speaks::Http1);
    let journeys = format!(
        "[[journey]]\nname = \"away\"\n[[journey.step]]\nname = \"away\"\nurl = \"/away?to=127.0.0.3:{port}\"\n"
    );
    let text = scenario(
        &server,
        false,
        "allow_hosts = [\"127.0.0.1\"]",
        OPEN_5,
        &journeys,
    );
    let summary = run_against(&server, &text);
    while outside.accept().is_ok() {
        accepted.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        0,
        "no connection to the refused host"
    );
    assert!(summary.totals.requests >= 15);
    assert_eq!(
        summary.totals.errors_by_class.get("redirect_refused"),
        Some(&summary.totals.requests),
        "{:?}",
        summary.totals
    );
    assert_eq!(server.hits().len() as u64, summary.totals.requests);

    // Allowed, the same hop is followed to the other address.
    let text = scenario(
        &server,
        false,
        "allow_hosts = [\"127.0.0.0/8\"]",
        OPEN_5,
        &journeys,
    );
    let before = server.hits().len() as u64;
    let summary = run_against(&server, &text);
    let mut followed = 0;
    while outside.accept().is_ok() {
        followed += 1;
    }
    assert!(followed > 0, "the allowed hop connected");
    assert_eq!(
        summary.totals.redirects,
        server.hits().len() as u64 - before
    );
}

fn peers(server: &WebServer) -> BTreeSet<IpAddr> {
    server.hits().iter().map(|h| h.peer).collect()
}

#[test]
fn source_addrs_spread_connections_over_the_pool_and_must_be_local() {
    let server = WebServer::start(Speaks::Http1);
    let load = "model = \"open\"\nstart_rate = \"40/s\"\n[[load.stage]]\nduration = \"2s\"\nrate = \"40/s\"\n";
    let target = "source_addrs = [\"127.0.0.2-127.0.0.9\"]";
    let summary = run_against(&server, &scenario(&server, false, target, load, SLOW));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    let pool: BTreeSet<IpAddr> = (2..=9).map(|n| IpAddr::from([127, 0, 0, n])).collect();
    let seen = peers(&server);
    assert!(seen.is_subset(&pool), "{seen:?}");
    assert!(
        seen.len() >= 6,
        "iterations pick addresses from the pool: {seen:?}"
    );

    // A closed-model user sends from one address all run long.
    let server = WebServer::start(Speaks::Http1);
    let one_user =
        "model = \"closed\"\nstart_vus = 1\n[[load.stage]]\nduration = \"1s\"\nvus = 1\n";
    run_against(&server, &scenario(&server, false, target, one_user, SLOW));
    assert_eq!(peers(&server).len(), 1);

    let workspace = Workspace::new();
    let text = scenario(
        &server,
        false,
        "source_addrs = [\"192.0.2.10\"]",
        one_user,
        SLOW,
    );
    let file = workspace.write("far.toml", &text);
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("192.0.2.10 is not an address of this host"),
        "{stderr}"
    );
}

#[test]
fn connection_modes_keep_pool_and_new_open_what_they_say() {
    let journeys = |mode: &str| {
        format!(
            "[[journey]]\nname = \"j\"\nconnection = \"{mode}\"\n[[journey.step]]\nname = \"a\"\nurl = \"/a\"\nthink = \"50ms\"\n[[journey.step]]\nname = \"b\"\nurl = \"/b\"\n"
        )
    };
    let load =
        "model = \"closed\"\nstart_vus = 4\n[[load.stage]]\nduration = \"1500ms\"\nvus = 4\n";
    let connections_per_iteration = |mode: &str| {
        let server = WebServer::start(Speaks::Http1);
        let summary = run_against(
            &server,
            &scenario(&server, false, "", load, &journeys(mode)),
        );
        assert_eq!(summary.totals.errors, 0, "{mode}: {:?}", summary.totals);
        let iterations = server.counts()["/a"];
        let by_connection: BTreeSet<u64> = server.hits().iter().map(|h| h.connection).collect();
        // The pre-flight probe's connection carries no request.
        (
            server.connections() - 1,
            iterations,
            by_connection.len() as u64,
        )
    };
    let (keep, iterations, _) = connections_per_iteration("keep");
    assert!(iterations >= 20);
    assert_eq!(keep, 4, "keep: one connection per user");
    let (new, iterations, used) = connections_per_iteration("new");
    assert_eq!(
        (new, used),
        (iterations, iterations),
        "new: one connection per iteration"
    );
    let (pool, _, _) = connections_per_iteration("pool");
    assert!(
        pool <= 4,
        "pool: think times hold none, so at most one per concurrent request ({pool})"
    );
}

/// A bare HTTP/2 server (h2c) that can misbehave on purpose: `/refuse` is answered with
/// RST_STREAM(REFUSED_STREAM), `/goaway` takes the whole connection down with
/// GOAWAY(INTERNAL_ERROR) while the stream waits; anything else is 200. Counts streams and
/// connections.
struct RudeH2 {
    addr: std::net::SocketAddr,
    streams: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl RudeH2 {
    fn start() -> RudeH2 {
        let (runtime, listener) = crate::support::server_runtime(1);
        let addr = listener.local_addr().unwrap();
        let (streams, connections) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, c) = (streams.clone(), connections.clone());
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::Relaxed);
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        s.fetch_add(1, Ordering::Relaxed);
                        match request.uri().path() {
                            "/refuse" => respond.send_reset(h2::Reason::REFUSED_STREAM),
                            "/goaway" => {
                                connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                                // Drive the GOAWAY out, then the connection ends.
                                let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
                                return;
                            }
                            _ => {
                                let response = http::Response::new(());
                                if let Ok(mut body) = respond.send_response(response, false) {
                                    let _ = body.send_data(bytes::Bytes::from_static(b"ok"), true);
                                }
                            }
                        }
                    }
                });
            }
        });
        RudeH2 {
            addr,
            streams,
            connections,
            _runtime: runtime,
        }
    }
}

#[test]
fn refused_streams_and_goaway_are_classes_of_their_own() {
    let server = RudeH2::start();
    let text = format!(
        "name = \"rude\"\nseed = 3\n[target]\nbase_url = \"http://{}\"\nprotocol = \"h2c\"\n[load]\n{OPEN_5}\n\
         [[journey]]\nname = \"fine\"\n[[journey.step]]\nname = \"fine\"\nurl = \"/\"\n\
         [[journey]]\nname = \"refuse\"\n[[journey.step]]\nname = \"refuse\"\nurl = \"/refuse\"\n\
         [[journey]]\nname = \"goaway\"\n[[journey.step]]\nname = \"goaway\"\nurl = \"/goaway\"\n",
        server.addr
    );
    let workspace = Workspace::new();
    let file = workspace.write("rude.toml", &text);
    let summary = run_ok(&options(&file, &workspace.out())).1;
    let step = |j: usize| &summary.journeys[j].steps[0];
    assert_eq!(step(0).errors, 0, "{:?}", step(0));
    assert!(
        step(1).requests > 0 && step(2).requests > 0,
        "{:?}",
        summary.journeys
    );
    assert_eq!(
        step(1).errors_by_class.get("refused_stream"),
        Some(&step(1).requests),
        "{:?}",
        step(1)
    );
    assert_eq!(
        step(1).retried_unprocessed,
        step(1).requests,
        "each refused stream was sent once more, and refused again"
    );
    assert_eq!(
        step(2).errors_by_class.get("goaway"),
        Some(&step(2).requests),
        "{:?}",
        step(2)
    );
    assert_eq!(
        server.streams.load(Ordering::Relaxed),
        summary.totals.requests + summary.totals.retried_unprocessed
    );
    assert!(
        server.connections.load(Ordering::Relaxed) > step(2).requests,
        "each GOAWAY cost a connection; the next request opened a fresh one"
    );
}
