//! The TCP fault proxy with real TCP on loopback: added latency within tolerance, reset and
//! blackhole as a client sees them, and a connection that lived through a fault working
//! normally once it is cleared.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use loadgen::chaos::proxy::{NetFault, Proxy};

use crate::server::TestServer;

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

fn proxy_in_front_of(server: &TestServer) -> (tokio::runtime::Runtime, Proxy) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let proxy = runtime
        .block_on(Proxy::start("127.0.0.1:0".parse().unwrap(), server.addr))
        .unwrap();
    (runtime, proxy)
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream
}

#[test]
fn latency_is_added_within_tolerance_and_cleared_without_dropping_the_connection() {
    let server = TestServer::start();
    let (_runtime, proxy) = proxy_in_front_of(&server);
    let mut stream = connect(&proxy);
    let clean = get(&mut stream).unwrap();

    proxy.set(NetFault::Latency {
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
    });
    let mut delayed = Vec::new();
    for _ in 0..5 {
        delayed.push(get(&mut stream).unwrap());
    }
    // Request and response each wait 100 ms: a round trip of at least 200 ms.
    for d in &delayed {
        assert!(*d >= Duration::from_millis(200), "{delayed:?}");
        assert!(*d < Duration::from_millis(450), "{delayed:?}");
    }

    proxy.clear();
    let after = get(&mut stream).expect("the connection that lived through the fault still works");
    assert!(
        after < Duration::from_millis(100),
        "clean again: {after:?} (before the fault: {clean:?})"
    );
    assert_eq!(server.seen().len(), 7);
}

#[test]
fn reset_is_seen_by_live_and_new_connections() {
    let server = TestServer::start();
    let (_runtime, proxy) = proxy_in_front_of(&server);
    let mut live = connect(&proxy);
    get(&mut live).unwrap();
    proxy.set(NetFault::Reset);
    let error = (0..50)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            get(&mut live).err()
        })
        .expect("the live connection was reset");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
        ),
        "{error:?}"
    );
    let mut fresh = connect(&proxy);
    assert!(
        get(&mut fresh).is_err(),
        "a new connection is reset on accept"
    );

    proxy.clear();
    let mut again = connect(&proxy);
    assert!(get(&mut again).is_ok());
}

#[test]
fn blackhole_accepts_and_never_answers() {
    let server = TestServer::start();
    let (_runtime, proxy) = proxy_in_front_of(&server);
    proxy.set(NetFault::Blackhole);
    let mut stream = connect(&proxy);
    stream
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let error = get(&mut stream).unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{error:?}"
    );
    assert!(server.seen().is_empty(), "nothing reached the server");
}

#[test]
fn bandwidth_paces_a_transfer() {
    let server = TestServer::start();
    let (_runtime, proxy) = proxy_in_front_of(&server);
    proxy.set(NetFault::Bandwidth {
        bytes_per_second: 200,
    });
    let mut stream = connect(&proxy);
    // ~33 request bytes up and ~90 response bytes down at 200 B/s: about 0.6 s.
    let took = get(&mut stream).unwrap();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
