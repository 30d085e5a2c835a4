//! A browser-facing test server on 127.0.0.1:0: HTTP/1.1 and HTTP/2 (TLS with ALPN, or h2c by
//! prior knowledge), sign-in cookies, redirect chains. It records every request with its
//! connection, protocol, peer address and cookies, and the most streams it saw open at once
//! on one connection, so tests check loadgen's counts against what the server saw.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

/// How the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// TLS; ALPN offers h2 and http/1.1.
    TlsH2,
    /// TLS; ALPN offers http/1.1 only.
    TlsHttp1,
    /// Plain TCP, HTTP/2 by prior knowledge only.
    H2c,
    /// Plain TCP, HTTP/1.1.
    Http1,
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub connection: u64,
    pub version: Version,
    pub peer: IpAddr,
    pub path: String,
    pub cookie: Option<String>,
    pub session_header: Option<String>,
}

#[derive(Default)]
struct State {
    hits: Mutex<Vec<Hit>>,
    connections: AtomicU64,
    /// Most streams open at once on any one connection.
    max_concurrent: AtomicUsize,
}

pub struct WebServer {
    pub addr: SocketAddr,
    /// PEM of the self-signed certificate (TLS modes): what `ca_file` trusts.
    pub cert_pem: String,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl WebServer {
    pub fn start(speaks: Speaks) -> WebServer {
        Self::start_with_streams(speaks, 64)
    }

    /// An HTTP/2 server that announces at most `streams` concurrent streams per connection.
    pub fn start_with_streams(speaks: Speaks, streams: u32) -> WebServer {
        let alpn: &[&[u8]] = match speaks {
            Speaks::TlsH2 => &[b"h2", b"http/1.1"],
            _ => &[b"http/1.1"],
        };
        let (config, cert_pem) = crate::support::self_signed_tls(alpn);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (runtime, listener) = crate::support::server_runtime(2);
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let connection = shared.connections.fetch_add(1, Ordering::Relaxed);
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let open = Arc::new(AtomicUsize::new(0));
                    let conn = Conn {
                        state,
                        connection,
                        peer: peer.ip(),
                        open,
                        streams,
                    };
                    match speaks {
                        Speaks::Http1 => serve(conn, stream, false).await,
                        Speaks::H2c => serve(conn, stream, true).await,
                        Speaks::TlsH2 | Speaks::TlsHttp1 => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            serve(conn, tls, h2).await
                        }
                    }
                });
            }
        });
        WebServer {
            addr,
            cert_pem,
            state,
            _runtime: runtime,
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    pub fn max_concurrent(&self) -> usize {
        self.state.max_concurrent.load(Ordering::Relaxed)
    }

    /// Requests per path (query dropped).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for hit in self.hits() {
            let path = hit.path.split('?').next().unwrap_or("").to_string();
            *counts.entry(path).or_default() += 1;
        }
        counts
    }
}

#[derive(Clone)]
struct Conn {
    state: Arc<State>,
    connection: u64,
    peer: IpAddr,
    open: Arc<AtomicUsize>,
    streams: u32,
}

async fn serve<S>(conn: Conn, stream: S, h2: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let streams = conn.streams;
    let service = service_fn(move |request| handle(conn.clone(), request));
    let io = TokioIo::new(stream);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .max_concurrent_streams(streams)
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    }
}

/// Counts a stream open for as long as it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(
    conn: Conn,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let now_open = conn.open.fetch_add(1, Ordering::Relaxed) + 1;
    let _open = Open(conn.open.clone());
    conn.state
        .max_concurrent
        .fetch_max(now_open, Ordering::Relaxed);
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let cookie = header("cookie");
    conn.state.hits.lock().unwrap().push(Hit {
        connection: conn.connection,
        version: request.version(),
        peer: conn.peer,
        path: path.clone(),
        cookie: cookie.clone(),
        session_header: header("x-session"),
    });
    let has_session = cookie
        .as_deref()
        .is_some_and(|c| c.contains("session=s3cr3t"));
    let route = path.split('?').next().unwrap_or("");
    let response = match route {
        // Long enough that a worker's journeys overlap on the connection.
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(30)).await;
            plain(StatusCode::OK, "ok")
        }
        "/signin" => {
            let mut response = plain(StatusCode::OK, "{\"signed_in\":true}");
            let headers = response.headers_mut();
            headers.append(
                "set-cookie",
                "session=s3cr3t; Path=/app; HttpOnly; Max-Age=3600"
                    .parse()
                    .unwrap(),
            );
            headers.append("set-cookie", "short=1; Path=/; Max-Age=1".parse().unwrap());
            // Only ever sent back over TLS.
            headers.append("set-cookie", "tls_only=1; Path=/; Secure".parse().unwrap());
            response
        }
        // A handler that fails: HTTP/2 resets the stream (RST_STREAM), HTTP/1.1 drops the
        // connection.
        "/reset" => return Err(std::io::Error::other("reset on purpose")),
        "/app/me" if has_session => plain(StatusCode::OK, "{\"member\":7}"),
        "/app/me" => plain(StatusCode::UNAUTHORIZED, "{\"error\":\"sign in\"}"),
        "/away" => {
            // ?to=HOST:PORT — a redirect to another origin.
            let to = path.split_once("to=").map_or("", |(_, to)| to);
            redirect(&format!("http://{to}/"))
        }
        other => match other
            .strip_prefix("/hop/")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(0) => plain(StatusCode::OK, "{\"arrived\":true}"),
            Some(n) => redirect(&format!("/hop/{}", n - 1)),
            None => plain(StatusCode::OK, "ok"),
        },
    };
    Ok(response)
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut response = plain(StatusCode::FOUND, "");
    response
        .headers_mut()
        .insert("location", location.parse().unwrap());
    response
}
