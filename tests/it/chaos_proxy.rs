//! The TCP fault proxy with real TCP on loopback (port 0 everywhere): added latency within
//! tolerance, reset and blackhole as a client sees them, bandwidth pacing, slow close,
//! refuse, connections that lived through a fault working once it is cleared, and the
//! control API driving all of it. Clients are plain blocking sockets, so what they see is
//! what any client would see; the proxy runs on a runtime the test owns.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use loadgen::api::chaos::{Direction, Fault, Proxy, remote_clear, serve_control};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;

use crate::support::server::TestServer;

/// Timers tick in milliseconds and this machine has two busy cores: the lateness allowed
/// to any one sample (a scheduling hiccup)…
const SLACK: Duration = Duration::from_millis(400);
/// …and to the median of a series, which one hiccup cannot move.
const MEDIAN_SLACK: Duration = Duration::from_millis(60);

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn proxy_to(runtime: &Runtime, upstream: SocketAddr) -> Proxy {
    runtime
        .block_on(Proxy::start("127.0.0.1:0".parse().unwrap(), upstream))
        .unwrap()
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Polls `ready` until it holds (a readiness check, not a guess at how long things take).
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(ms(5));
    }
}

/// One HTTP/1.1 keep-alive GET on `stream`; the time it took, or the I/O error.
fn get(stream: &mut TcpStream) -> std::io::Result<Duration> {
    let started = Instant::now();
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.ends_with(b"hello") {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Err(std::io::Error::from(ErrorKind::UnexpectedEof));
        }
        response.extend_from_slice(&buffer[..n]);
    }
    Ok(started.elapsed())
}

/// An upstream that echoes every byte back, on the test's runtime.
fn echo_server(runtime: &Runtime) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// An upstream that sends `size` bytes to each connection, then closes it.
fn bulk_server(runtime: &Runtime, size: usize) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(&vec![7u8; size]).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// One 8-byte round trip through an echo upstream.
fn echo_round_trip(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream.write_all(b"ping1234").unwrap();
    let mut back = [0u8; 8];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping1234");
    started.elapsed()
}

fn describe(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "n={} min={:?} median={:?} max={:?}",
        sorted.len(),
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

fn latency(delay: u64, jitter: u64, direction: Direction) -> Fault {
    Fault::Latency {
        delay: ms(delay),
        jitter: ms(jitter),
        direction,
    }
}

#[test]
fn latency_is_added_within_tolerance_and_cleared_without_dropping_the_connection() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let mut stream = connect(&proxy);
    let clean = get(&mut stream).unwrap();

    proxy.set(latency(100, 0, Direction::Both)).unwrap();
    let delayed: Vec<Duration> = (0..8).map(|_| get(&mut stream).unwrap()).collect();
    eprintln!("HTTP through 100 ms both ways: {}", describe(&delayed));
    // Request and response each wait 100 ms: a round trip of at least 200 ms.
    for d in &delayed {
        assert!(*d >= ms(200) && *d < ms(200) + SLACK, "{delayed:?}");
    }
    assert!(median(&delayed) < ms(200) + MEDIAN_SLACK, "{delayed:?}");

    proxy.clear();
    let after = get(&mut stream).expect("the connection that lived through the fault works");
    assert!(
        after < ms(150),
        "clean again: {after:?} (before: {clean:?})"
    );
    let mut fresh = connect(&proxy);
    let new = get(&mut fresh).unwrap();
    assert!(new < ms(150), "a new connection is clean: {new:?}");
    assert_eq!(server.seen().len(), 11);
    assert_eq!(proxy.stats().accepted, 2);
}

#[test]
fn latency_one_way_and_with_jitter_stays_within_its_bounds() {
    let runtime = runtime();
    let proxy = proxy_to(&runtime, echo_server(&runtime));
    let mut stream = connect(&proxy);
    echo_round_trip(&mut stream);

    proxy.set(latency(100, 0, Direction::Upstream)).unwrap();
    let one_way: Vec<Duration> = (0..5).map(|_| echo_round_trip(&mut stream)).collect();
    eprintln!("echo, 100 ms upstream only: {}", describe(&one_way));
    for d in &one_way {
        assert!(*d >= ms(100) && *d < ms(100) + SLACK, "{one_way:?}");
    }
    assert!(median(&one_way) < ms(100) + MEDIAN_SLACK, "{one_way:?}");

    proxy.set(latency(100, 40, Direction::Both)).unwrap();
    let jittered: Vec<Duration> = (0..20).map(|_| echo_round_trip(&mut stream)).collect();
    eprintln!("echo, 100 ± 40 ms both ways: {}", describe(&jittered));
    for d in &jittered {
        assert!(*d >= ms(120) && *d < ms(280) + SLACK, "{jittered:?}");
    }
    let spread =
        jittered.iter().max().unwrap().as_millis() - jittered.iter().min().unwrap().as_millis();
    assert!(spread >= 10, "jitter shows: {jittered:?}");
}

#[test]
fn latency_delays_overlap_instead_of_adding_up() {
    let runtime = runtime();
    let proxy = proxy_to(&runtime, echo_server(&runtime));
    let mut stream = connect(&proxy);
    proxy.set(latency(100, 0, Direction::Both)).unwrap();
    // Ten messages 10 ms apart: each comes back 200 ms after it left, so the last arrives
    // about 290 ms after the first left; one sleep per chunk in turn would take 2 s.
    let started = Instant::now();
    for i in 0..10u8 {
        stream.write_all(&[i; 4]).unwrap();
        std::thread::sleep(ms(10));
    }
    let mut back = [0u8; 40];
    stream.read_exact(&mut back).unwrap();
    let took = started.elapsed();
    eprintln!("10 pipelined messages through 100 ms both ways: {took:?}");
    assert!(
        back.chunks(4).enumerate().all(|(i, c)| c == [i as u8; 4]),
        "order kept"
    );
    assert!(took >= ms(290) && took < ms(290) + SLACK * 2, "{took:?}");
}

#[test]
fn reset_is_seen_by_live_and_new_connections() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let mut live = connect(&proxy);
    get(&mut live).unwrap();

    proxy.set(Fault::Reset).unwrap();
    eventually("the live connection reset", || {
        proxy.stats().reset_by_fault == 1
    });
    let error = get(&mut live).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error:?}");

    let mut fresh = connect(&proxy);
    let error = get(&mut fresh).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error:?}");
    eventually("the new connection counted", || {
        proxy.stats().reset_by_fault == 2
    });

    proxy.clear();
    let mut again = connect(&proxy);
    get(&mut again).expect("new connections are clean once cleared");
    eventually("reset connections closed", || proxy.stats().active == 1);
}

#[test]
fn blackhole_accepts_reads_and_never_answers_until_cleared() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let mut live = connect(&proxy);
    get(&mut live).unwrap();

    proxy.set(Fault::Blackhole).unwrap();
    let mut fresh = connect(&proxy);
    for stream in [&mut live, &mut fresh] {
        stream.set_read_timeout(Some(ms(300))).unwrap();
        let error = get(stream).unwrap_err();
        assert!(
            matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the read times out, the connection stays open: {error:?}"
        );
    }
    assert_eq!(server.seen().len(), 1, "nothing reached the server");
    assert!(
        proxy.stats().bytes_discarded >= 2 * 31,
        "{:?}",
        proxy.stats()
    );
    assert_eq!(proxy.stats().active, 2);

    // The dropped requests are gone, but both connections are still there and work.
    proxy.clear();
    for stream in [&mut live, &mut fresh] {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        get(stream).expect("works again once cleared");
    }
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn bandwidth_limits_a_transfer_to_about_its_rate() {
    const SIZE: usize = 40 * 1024;
    const RATE: u64 = 32 * 1024;
    let runtime = runtime();
    let proxy = proxy_to(&runtime, bulk_server(&runtime, SIZE));
    let download = || {
        let mut stream = connect(&proxy);
        let started = Instant::now();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), SIZE);
        started.elapsed()
    };
    let clean = download();

    proxy
        .set(Fault::Bandwidth {
            bytes_per_second: RATE,
            direction: Direction::Downstream,
        })
        .unwrap();
    let limited = download();
    // 40 KiB at 32 KiB/s is 1.25 s; the bucket starts with 50 ms worth.
    let expected = Duration::from_secs_f64(SIZE as f64 / RATE as f64) - ms(50);
    eprintln!("{SIZE} B at {RATE} B/s: {limited:?} (expected ≈ {expected:?}; clean {clean:?})");
    assert!(limited >= expected - ms(30), "{limited:?}");
    assert!(limited < expected + SLACK * 2, "{limited:?}");

    proxy
        .set(Fault::Bandwidth {
            bytes_per_second: RATE,
            direction: Direction::Upstream,
        })
        .unwrap();
    let other_way = download();
    assert!(
        other_way < ms(200),
        "only the chosen direction is limited: {other_way:?}"
    );
    eventually("every byte counted", || {
        proxy.stats().bytes_downstream == 3 * SIZE as u64
    });
}

#[test]
fn slow_close_delays_the_close_not_the_data() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    proxy.set(Fault::SlowClose { delay: ms(300) }).unwrap();
    let mut stream = connect(&proxy);
    let started = Instant::now();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    let mut answered = None;
    loop {
        let n = stream.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if response.ends_with(b"hello") {
            answered.get_or_insert(started.elapsed());
        }
    }
    let closed = started.elapsed();
    let answered = answered.expect("the response arrived");
    eprintln!("slow close 300 ms: answered after {answered:?}, closed after {closed:?}");
    assert!(answered < ms(100), "{answered:?}");
    assert!(closed >= ms(300) && closed < ms(300) + SLACK, "{closed:?}");
}

#[test]
fn refuse_closes_the_listener_and_clear_reopens_it() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let mut live = connect(&proxy);
    get(&mut live).unwrap();

    proxy.set(Fault::Refuse).unwrap();
    eventually(
        "connects refused",
        || matches!(TcpStream::connect(proxy.local_addr()), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
    );
    get(&mut live).expect("live connections carry on while new ones are refused");

    // Someone takes the port while it is closed: clearing cannot claim the proxy is back.
    let squatter = std::net::TcpListener::bind(proxy.local_addr()).expect("the port is free");
    let handle = proxy.handle();
    let cleared = runtime.block_on(handle.clear_and_wait(Duration::from_millis(300)));
    assert!(
        cleared.unwrap_err().contains("is not listening again"),
        "a recovery that cannot reopen the port is a failed recovery"
    );
    drop(squatter);
    runtime
        .block_on(handle.clear_and_wait(Duration::from_secs(5)))
        .expect("reopened once the port is free");
    get(&mut connect(&proxy)).unwrap();
}

#[test]
fn shutdown_closes_live_connections_and_the_port() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let addr = proxy.local_addr();
    let mut live = connect(&proxy);
    get(&mut live).unwrap();
    runtime.block_on(proxy.shutdown());
    let mut rest = Vec::new();
    assert_eq!(live.read_to_end(&mut rest).unwrap(), 0, "closed with a FIN");
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

/// One request with `Connection: close`; the status code and body.
fn http(control: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(control, &format!("Host: {control}\r\n"), method, path, body)
}

/// `http` with `headers` (each line ending in CRLF) instead of the Host line.
fn http_with(
    control: SocketAddr,
    headers: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(control).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[test]
fn control_api_drives_the_proxy() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let (control, _task) = runtime
        .block_on(serve_control(
            proxy.handle(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let mut stream = connect(&proxy);
    get(&mut stream).unwrap();

    assert_eq!(http(control, "GET", "/fault", ""), (200, "null".into()));
    let put = r#"{"kind":"latency","delay_ms":80,"jitter_ms":0,"direction":"both"}"#;
    assert_eq!(http(control, "PUT", "/fault", put), (200, put.into()));
    assert_eq!(http(control, "GET", "/fault", ""), (200, put.into()));
    let delayed = get(&mut stream).unwrap();
    assert!(
        delayed >= ms(160) && delayed < ms(160) + SLACK,
        "{delayed:?}"
    );

    let (status, body) = http(
        control,
        "PUT",
        "/fault",
        r#"{"kind":"latency","delay_ms":10,"jitter_ms":20}"#,
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("jitter_ms (20) must not exceed delay_ms (10)"),
        "{body}"
    );
    assert_eq!(
        http(control, "GET", "/fault", "").1,
        put,
        "a bad PUT changes nothing"
    );

    assert_eq!(http(control, "DELETE", "/fault", ""), (204, String::new()));
    assert_eq!(http(control, "GET", "/fault", ""), (200, "null".into()));
    assert!(
        get(&mut stream).unwrap() < ms(150),
        "clean again on the same connection"
    );

    let (status, body) = http(control, "GET", "/stats", "");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["accepted"], 1);
    assert_eq!(stats["active"], 1);
    assert!(stats["bytes_upstream"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(http(control, "POST", "/fault", "").0, 405);
    assert_eq!(http(control, "GET", "/nope", "").0, 404);

    // What `loadgen recover` does with a proxy's undo record.
    proxy.set(Fault::Blackhole).unwrap();
    runtime
        .block_on(remote_clear(&format!("http://{control}"), None))
        .unwrap();
    assert_eq!(proxy.current(), None);

    let public = runtime.block_on(serve_control(proxy.handle(), "0.0.0.0:0".parse().unwrap()));
    assert!(public.unwrap_err().to_string().contains("loopback"));
}

#[test]
fn the_control_api_refuses_foreign_hosts_and_other_runs_tokens() {
    let server = TestServer::start();
    let runtime = runtime();
    let proxy = proxy_to(&runtime, server.addr);
    let (control, _task) = runtime
        .block_on(serve_control(
            proxy.handle(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let put = r#"{"kind":"blackhole"}"#;
    // A page that reached the port by DNS rebinding names its own host: refused, unchanged.
    let (status, body) = http_with(control, "Host: evil.example\r\n", "PUT", "/fault", put);
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        http_with(control, "", "GET", "/fault", "").0,
        403,
        "no Host at all"
    );
    assert_eq!(proxy.current(), None);
    for host in ["localhost:9", "127.0.0.9:1", "[::1]:80"] {
        let line = format!("Host: {host}\r\n");
        assert_eq!(
            http_with(control, &line, "GET", "/fault", "").0,
            200,
            "{host}"
        );
    }

    // Run A sets a fault with its token; run B's token can neither clear nor replace it.
    let url = format!("http://{control}");
    runtime
        .block_on(loadgen::api::chaos::remote_set(
            &url,
            &Fault::Blackhole,
            Some("run-a"),
        ))
        .unwrap();
    let cleared = runtime.block_on(remote_clear(&url, Some("run-b")));
    assert!(
        cleared.as_ref().unwrap_err().to_string().contains("409"),
        "{cleared:?}"
    );
    let replaced = runtime.block_on(loadgen::api::chaos::remote_set(
        &url,
        &Fault::Reset,
        Some("run-b"),
    ));
    assert!(replaced.is_err());
    assert!(
        runtime.block_on(remote_clear(&url, None)).is_err(),
        "no token"
    );
    assert_eq!(proxy.current(), Some(Fault::Blackhole));
    // Its owner (a run, or `loadgen recover` with the ledger's token) can.
    runtime.block_on(remote_clear(&url, Some("run-a"))).unwrap();
    assert_eq!(proxy.current(), None);
}

/// A named upstream that moved (Compose recreated its container: same name, new address):
/// the first connection to the old address fails, the proxy looks the name up again and
/// connects there, and later connections go straight to the new address. A proxy that
/// resolved once at start would reset every one of them.
#[test]
fn a_named_upstream_that_moved_is_looked_up_again() {
    let runtime = runtime();
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let old = gone.local_addr().unwrap();
    drop(gone);
    let new = echo_server(&runtime);
    let lookups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = lookups.clone();
    let resolver: loadgen::api::chaos::Resolver = std::sync::Arc::new(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(new)
    });
    let proxy = runtime
        .block_on(Proxy::start_to(
            "127.0.0.1:0".parse().unwrap(),
            loadgen::api::chaos::Upstream::named(old, resolver),
        ))
        .unwrap();
    for _ in 0..3 {
        echo_round_trip(&mut connect(&proxy));
    }
    assert_eq!(proxy.handle().upstream(), new);
    assert_eq!(
        lookups.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "looked up once, when the old address failed"
    );
    assert_eq!(proxy.stats().upstream_failures, 0);
}
