//! The proxy's HTTP control API, so a proxy can be driven (and, above all, cleared by
//! `loadgen recover`) from outside the process that set its fault:
//!
//! | request | answer |
//! |---|---|
//! | `GET /fault` | 200, the fault in force as JSON (`fault.rs`), or `null` |
//! | `PUT /fault` | 200 and the fault now in force; 400 `{"error": …}` for a bad body; 409 when the fault in force is another owner's |
//! | `DELETE /fault` | 204 once the proxy is clean and listening; 503 if the listener a `refuse` closed cannot be bound again within 2 s; 409 as for PUT; idempotent |
//!
//! Every request must be addressed to loopback (`Host: 127.0.0.1:…`, `[::1]`, `localhost`;
//! else 403), so a web page cannot reach the API through DNS rebinding. A `PUT` with an
//! `X-Loadgen-Owner` token makes the fault that token's: only the same token may then
//! change or clear it (a run sets one per run and keeps it in its ledger, so `loadgen
//! recover` can).
//! | `GET /stats` | 200, `Stats` as JSON |
//!
//! It has no authentication, so it only binds loopback addresses — except in `loadgen proxy
//! --container-network` (`daemon.rs`), a proxy alone in its container, where it binds the
//! container's private network and the host reaches it through a port published on
//! 127.0.0.1.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{Fault, ProxyHandle};

/// A fault is a few dozen bytes; anything much larger is not one.
const MAX_BODY: usize = 16 * 1024;
/// Bounds every step of `remote_clear`: recovery must never hang on a wedged proxy.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `DELETE /fault` waits for a refused listener to be bound again; well inside
/// `CLIENT_TIMEOUT`, so the caller hears the answer.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Serves the control API for `proxy` on `listen` (a loopback address; port 0 picks one).
/// Returns the bound address and the serving task, which ends when the proxy stops.
pub async fn serve_control(
    proxy: ProxyHandle,
    listen: SocketAddr,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    if !listen.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the proxy control API has no authentication: bind it to a loopback address, not {listen}"
            ),
        ));
    }
    serve_control_on_any_address(proxy, listen).await
}

/// [`serve_control`] without the loopback check: only for `loadgen proxy
/// --container-network`, whose checks (`daemon::check`) decided that `listen` may be the
/// container's own network.
pub(super) async fn serve_control_on_any_address(
    proxy: ProxyHandle,
    listen: SocketAddr,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Keep-alive control connections live here so they end with the server.
        let mut connections = JoinSet::new();
        let stop = proxy.shared.stop.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of descriptors or the like: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let proxy = proxy.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let proxy = proxy.clone();
                            async move { Ok::<_, Infallible>(route(&proxy, request).await) }
                        });
                        // A client that hangs up mid-request is its own problem.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
        connections.shutdown().await;
    });
    Ok((local, task))
}

/// The header a run's requests carry its owner token in.
pub(super) const OWNER_HEADER: &str = "x-loadgen-owner";

/// Whether a request's `Host` names this host's loopback (`127.x.y.z`, `[::1]`,
/// `localhost`, any port): a page that reached the API by DNS rebinding names its own.
fn loopback_host(request: &Request<Incoming>) -> bool {
    let Some(host) = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn route(proxy: &ProxyHandle, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if !loopback_host(&request) {
        return error(
            StatusCode::FORBIDDEN,
            "the control API answers only requests addressed to loopback (Host)".into(),
        );
    }
    let owner = request
        .headers()
        .get(OWNER_HEADER)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let method = request.method().clone();
    match (method, request.uri().path()) {
        (Method::GET, "/fault") => json(StatusCode::OK, &proxy.current()),
        (Method::PUT, "/fault") => {
            let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    );
                }
            };
            let fault: Fault = match serde_json::from_slice(&body) {
                Ok(fault) => fault,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad fault: {e}")),
            };
            if let Err(e) = fault.validate() {
                return error(StatusCode::BAD_REQUEST, format!("bad fault: {e}"));
            }
            match proxy.change_as(owner.as_deref(), Some(fault)) {
                Ok(()) => json(StatusCode::OK, &fault),
                Err(message) => error(StatusCode::CONFLICT, message),
            }
        }
        (Method::DELETE, "/fault") => {
            if let Err(message) = proxy.change_as(owner.as_deref(), None) {
                return error(StatusCode::CONFLICT, message);
            }
            match proxy.clear_and_wait(REOPEN_WAIT).await {
                Ok(()) => respond(StatusCode::NO_CONTENT, Bytes::new()),
                Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
            }
        }
        (Method::GET, "/stats") => json(StatusCode::OK, &proxy.stats()),
        (_, "/fault") => not_allowed("GET, PUT, DELETE"),
        (_, "/stats") => not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, "routes: /fault, /stats".into()),
    }
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = respond(status, Bytes::from(body));
            response.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from(e.to_string()),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("allowed here: {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, http::HeaderValue::from_static(allow));
    response
}

/// Puts `fault` in force on the proxy whose control API is at `control` (`http://IP:PORT`
/// or `IP:PORT`): how a run's timeline drives a proxy it did not start (`loadgen proxy`).
/// `owner`: the run's token; only it may then change or clear the fault.
pub async fn remote_set(control: &str, fault: &Fault, owner: Option<&str>) -> io::Result<()> {
    let body = serde_json::to_vec(fault).map_err(io::Error::other)?;
    exchange(control, Method::PUT, Bytes::from(body), owner).await
}

/// Clears the fault of the proxy whose control API is at `control`: what `loadgen recover`
/// does with a proxy's undo record. A proxy that is gone answers `ConnectionRefused`, which
/// the caller may count as recovered.
pub async fn remote_clear(control: &str, owner: Option<&str>) -> io::Result<()> {
    exchange(control, Method::DELETE, Bytes::new(), owner).await
}

/// One request to `/fault`, bounded by `CLIENT_TIMEOUT`; any non-2xx answer is an error
/// carrying the proxy's message.
async fn exchange(
    control: &str,
    method: Method,
    body: Bytes,
    owner: Option<&str>,
) -> io::Result<()> {
    let addr = parse_control(control)?;
    let what = format!("{control}: {method} /fault");
    let call = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri("/fault")
            .header(http::header::HOST, addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(owner) = owner {
            request = request.header(OWNER_HEADER, owner);
        }
        let request = request.body(Full::new(body)).map_err(io::Error::other)?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(io::Error::other)?;
            let status = response.status();
            let text = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, io::Error>((status, text))
        }
        .await;
        driver.abort();
        result
    };
    let (status, text) = tokio::time::timeout(CLIENT_TIMEOUT, call)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{what}: no answer")))??;
    if status.is_success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} answered {status}: {}",
            String::from_utf8_lossy(&text)
        )))
    }
}

/// The control API's address. Only loopback: a control API never listens elsewhere, so an
/// address off this host in a state file or ledger is a mistake, and no request goes there.
fn parse_control(control: &str) -> io::Result<SocketAddr> {
    let bare = control.strip_prefix("http://").unwrap_or(control);
    let addr: SocketAddr = bare.trim_end_matches('/').parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{control:?} is not a proxy control address (http://IP:PORT)"),
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{control:?}: a proxy control API is only ever on loopback; refusing to send there"
            ),
        ));
    }
    Ok(addr)
}
