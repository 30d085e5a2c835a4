//! The hot path's HTTP client. Connections belong to the worker thread that uses them (no
//! locks, no channel per request): HTTP/1.1 connections are held by a journey or lent from
//! the worker's idle pool; HTTP/2 connections are shared by the worker's concurrent journeys
//! up to the stream limit each server announces. TCP or TLS (`tls.rs`), bound to a source
//! address when the target has a pool of them; timeouts on connect and on the whole
//! exchange; bodies read with a size limit, and compressed ones inflated within it too;
//! every failure mapped to an `ErrorClass`.

mod body;
mod classify;
mod connect;
mod h1;
mod h2;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use rustls_pki_types::ServerName;
use tokio::sync::Notify;

pub(crate) use self::body::ACCEPT_ENCODING;
use self::body::{Collector, Reading};
pub(crate) use self::classify::Failure;
use self::connect::Dial;
use super::tls::TlsTarget;
use crate::metrics::ErrorClass;
use crate::plan::{ConnectionMode, HttpVersion, Protocol};

/// Where requests go: scheme, host and port, and the address resolved (and allowed) once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
    /// `host[:port]` as `Host` / `:authority` carry it.
    pub authority: HeaderValue,
}

impl Origin {
    pub(crate) fn new(
        tls: bool,
        host: &str,
        port: u16,
        addr: SocketAddr,
    ) -> Result<Origin, String> {
        let authority = crate::plan::authority(tls, host, port);
        Ok(Origin {
            tls,
            host: host.to_string(),
            port,
            addr,
            authority: HeaderValue::from_str(&authority)
                .map_err(|_| format!("`{host}` is not a valid host"))?,
        })
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `scheme://authority` followed by `uri`'s path and query.
    fn absolute(&self, uri: &http::Uri) -> Result<http::Uri, ErrorClass> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = self
            .authority
            .to_str()
            .map_err(|_| ErrorClass::InvalidRequest)?;
        http::Uri::builder()
            .scheme(self.scheme())
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| ErrorClass::InvalidRequest)
    }

    /// The same scheme, host and port: a redirect within it reuses the run's connections.
    pub(crate) fn same_as(&self, other: &Origin) -> bool {
        self.is(other.tls, &other.host, other.port)
    }

    /// Whether this origin is `scheme://host:port` (`tls` for https).
    pub(crate) fn is(&self, tls: bool, host: &str, port: u16) -> bool {
        self.tls == tls && self.port == port && self.host.eq_ignore_ascii_case(host)
    }
}

/// How to reach the target; shared read-only by every task of a worker.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    pub origin: Origin,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body: u64,
    /// Set for https targets: every connection does a TLS handshake first.
    pub tls: Option<TlsTarget>,
    pub protocol: Protocol,
    /// Whether the target speaks HTTP/2 (`h2`, `h2c`, or `auto` where the pre-flight's
    /// TLS handshake agreed on h2): then journeys share connections.
    pub multiplex: bool,
    /// Sent as `Accept-Encoding` unless the request has its own (`[target] compression`).
    pub accept_encoding: Option<HeaderValue>,
}

/// A connection a journey holds (HTTP/1.1, or its own HTTP/2 one with `connection = "new"`).
pub(crate) enum Connection {
    H1(h1::H1),
    H2(h2::H2),
}

/// The parts of a response a step looks at.
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    /// The body, decoded, when the caller asked to keep it; otherwise empty (a compressed
    /// one was still inflated within `max_body`, into a counter).
    pub body: Bytes,
}

/// One request's connection choices, from its journey and iteration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub mode: ConnectionMode,
    /// The local address its connections bind to.
    pub source: Option<IpAddr>,
}

impl ClientConfig {
    fn dial<'a>(&'a self, origin: &Origin, source: Option<IpAddr>) -> Result<Dial<'a>, ErrorClass> {
        let tls = match (&self.tls, origin.tls) {
            (_, false) => None,
            (Some(tls), true) if origin.same_as(&self.origin) => Some((tls, tls.name.clone())),
            (Some(tls), true) => Some((
                tls,
                ServerName::try_from(origin.host.clone()).map_err(|_| ErrorClass::ConnectError)?,
            )),
            // An https redirect from an http target: no TLS was configured for the run.
            (None, true) => return Err(ErrorClass::RedirectRefused),
        };
        Ok(Dial {
            addr: origin.addr,
            tls,
            protocol: self.protocol,
            source,
            timeout: self.connect_timeout,
        })
    }

    /// The HTTP version the run speaks, as reports name it.
    pub(crate) fn spoken(&self) -> HttpVersion {
        match (self.multiplex, self.origin.tls) {
            (false, _) => HttpVersion::Http1,
            (true, true) => HttpVersion::H2,
            (true, false) => HttpVersion::H2c,
        }
    }

    /// Connects (and does the TLS handshake for https) without speaking HTTP: the
    /// pre-flight check. Returns whether ALPN agreed on h2, or why it failed in words.
    pub(crate) async fn probe(&self, source: Option<IpAddr>) -> Result<bool, ProbeError> {
        let dial = self
            .dial(&self.origin, source)
            .map_err(|c| ProbeError::Unreachable(c.name().to_string()))?;
        let mut stream = dial.open().await.map_err(|(_, why)| why)?;
        // h2c by prior knowledge has no ALPN to agree on: ask the server itself, or every
        // request of the run would fail as a bare connect_error.
        if let (Protocol::H2c, connect::Stream::Plain(tcp)) = (self.protocol, &mut stream) {
            connect::answers_h2c(tcp, self.connect_timeout.max(self.request_timeout))
                .await
                .map_err(ProbeError::NotH2c)?;
        }
        Ok(stream.alpn() == Some(b"h2"))
    }
}

impl ProbeError {
    /// The reason, in words.
    pub(crate) fn text(&self) -> &str {
        match self {
            ProbeError::Unreachable(text)
            | ProbeError::Certificate(text)
            | ProbeError::NotH2c(text) => text,
        }
    }
}

/// Why the pre-flight connection failed, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeError {
    /// No connection, or the TLS handshake broke off for another reason than the
    /// certificate.
    Unreachable(String),
    /// The server answered, with a certificate loadgen refuses: whose, why, what to do.
    Certificate(String),
    /// `protocol = "h2c"`, and the server did not answer HTTP/2's connection preface as an
    /// HTTP/2 server does: what it did instead.
    NotH2c(String),
}

/// A worker's client: the configuration and the worker's connections.
pub(crate) struct Client {
    pub config: ClientConfig,
    pools: RefCell<Pools>,
}

#[derive(Default)]
struct Pools {
    /// Idle HTTP/1.1 connections by source address.
    idle: HashMap<Option<IpAddr>, Vec<h1::H1>>,
    /// Shared HTTP/2 connections by source address.
    shared: HashMap<Option<IpAddr>, Shared>,
}

#[derive(Default)]
struct Shared {
    connections: Vec<h2::H2>,
    /// A connection is being opened: others wait for it instead of opening their own.
    connecting: bool,
    opened: Rc<Notify>,
}

impl Client {
    pub(crate) fn new(config: ClientConfig) -> Client {
        Client {
            config,
            pools: RefCell::new(Pools::default()),
        }
    }

    /// Takes an idle HTTP/1.1 connection from `source`'s pool (an open-model iteration that
    /// keeps one for its length).
    pub(crate) fn take_idle(&self, source: Option<IpAddr>) -> Option<Connection> {
        self.pools
            .borrow_mut()
            .idle
            .get_mut(&source)?
            .pop()
            .map(Connection::H1)
    }

    /// Hands a journey's connection back to the idle pool (shared HTTP/2 ones need not be).
    pub(crate) fn put_idle(&self, source: Option<IpAddr>, connection: Connection) {
        if let Connection::H1(c) = connection
            && !c.is_closed()
        {
            self.pool_idle(source, c);
        }
    }

    fn pool_idle(&self, source: Option<IpAddr>, connection: h1::H1) {
        let mut pools = self.pools.borrow_mut();
        pools.idle.entry(source).or_default().push(connection);
    }

    fn share(&self, source: Option<IpAddr>, connection: h2::H2) {
        let mut pools = self.pools.borrow_mut();
        let shared = pools.shared.entry(source).or_default();
        shared.connections.push(connection);
    }

    /// Sends `request` (a path-only URI) to the target, or to `origin` for a redirect that
    /// left it, within the request timeout. A connection that failed is dropped, so the next
    /// request starts fresh; with `fresh`, this one does too (a retry of an unprocessed
    /// request goes on a new connection). The failure says whether the server provably
    /// processed none of the request (`Failure::unprocessed`): the caller may send it again.
    pub(crate) async fn send(
        &self,
        held: &mut Option<Connection>,
        route: Route,
        origin: Option<&Origin>,
        mut request: Request<Bytes>,
        keep_body: bool,
        fresh: bool,
    ) -> Result<Response, Failure> {
        if let Some(encodings) = &self.config.accept_encoding {
            request
                .headers_mut()
                .entry(http::header::ACCEPT_ENCODING)
                .or_insert_with(|| encodings.clone());
        }
        let reading = Reading {
            limit: self.config.max_body,
            keep: keep_body,
        };
        let exchange = async {
            let (parts, body) = match origin {
                Some(origin) => self.one_off(origin, route.source, request, reading).await?,
                None => self.exchange(held, route, request, reading, fresh).await?,
            };
            // Kept bodies are read decoded (extraction and checks see the JSON, not gzip);
            // every compressed body, kept or not, is inflated within `max_body`, so a bomb
            // stops at the limit and a step's checks do not change what passes.
            let body = body.finish()?;
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let result = tokio::time::timeout(self.config.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::because(
                    ErrorClass::RequestTimeout,
                    format!(
                        "no complete response within request_timeout ({})",
                        crate::util::units::format_duration(self.config.request_timeout)
                    ),
                ))
            });
        if result.is_err() {
            *held = None;
        }
        result
    }

    async fn exchange(
        &self,
        held: &mut Option<Connection>,
        route: Route,
        request: Request<Bytes>,
        reading: Reading,
        fresh: bool,
    ) -> Result<(http::response::Parts, Collector), Failure> {
        let origin = &self.config.origin;
        if !fresh
            && route.mode != ConnectionMode::New
            && self.config.multiplex
            && let Some(sender) = self.shared_stream(route.source).await?
        {
            return h2::exchange(sender, origin, request, reading).await;
        }
        let lent = match (fresh, route.mode) {
            (true, _) => None,
            (false, ConnectionMode::Pool) => self.take_idle(route.source),
            (false, ConnectionMode::Keep | ConnectionMode::New) => held.take(),
        };
        let mut connection = match lent {
            Some(connection) => connection,
            None => self.connect(route).await?,
        };
        // A kept connection the server has since closed (idle keep-alive timeout, GOAWAY):
        // one fresh try — nothing was sent on it.
        let result = loop {
            match &mut connection {
                Connection::H1(c) => {
                    if !c.is_closed() && c.ready().await {
                        break c.exchange(origin, request, reading).await;
                    }
                }
                Connection::H2(c) => {
                    if let Some(stream) = c.ready().await {
                        break h2::exchange(stream, origin, request, reading).await;
                    }
                }
            }
            connection = self.connect(route).await?;
        };
        if result.is_ok() {
            match route.mode {
                ConnectionMode::Pool => self.put_idle(route.source, connection),
                ConnectionMode::Keep | ConnectionMode::New => *held = Some(connection),
            }
        }
        result
    }

    /// Opens a connection for a journey; an HTTP/2 one (when the server chose h2 where the
    /// pre-flight did not) joins the shared pool unless the journey wants its own.
    async fn connect(&self, route: Route) -> Result<Connection, Failure> {
        let connection = self
            .config
            .dial(&self.config.origin, route.source)?
            .connect()
            .await?;
        if let (Connection::H2(c), false) = (&connection, route.mode == ConnectionMode::New) {
            self.share(route.source, c.clone());
        }
        Ok(connection)
    }

    /// A stream on one of the worker's HTTP/2 connections from `source` that has room for
    /// it; opens a connection when none has (one at a time: the others wait for it).
    /// `None`: the server answered HTTP/1.1 — that connection went to the idle pool.
    async fn shared_stream(&self, source: Option<IpAddr>) -> Result<Option<h2::Stream>, Failure> {
        loop {
            let next = {
                let mut pools = self.pools.borrow_mut();
                let shared = pools.shared.entry(source).or_default();
                shared.connections.retain(|c| !c.is_closed());
                if let Some(connection) = shared.connections.iter().find(|c| c.has_capacity()) {
                    Next::Use(connection.clone())
                } else if shared.connecting {
                    Next::Wait(shared.opened.clone())
                } else {
                    shared.connecting = true;
                    Next::Open
                }
            };
            match next {
                Next::Use(connection) => match connection.ready().await {
                    Some(stream) => return Ok(Some(stream)),
                    None => continue,
                },
                Next::Wait(opened) => {
                    opened.notified().await;
                    continue;
                }
                Next::Open => {}
            }
            let opening = Opening {
                client: self,
                source,
            };
            let connection = self
                .config
                .dial(&self.config.origin, source)?
                .connect()
                .await;
            drop(opening);
            match connection? {
                Connection::H2(c) => self.share(source, c),
                Connection::H1(c) => {
                    self.pool_idle(source, c);
                    return Ok(None);
                }
            }
        }
    }

    /// A redirect hop to another origin: a connection of its own, closed after it.
    async fn one_off(
        &self,
        origin: &Origin,
        source: Option<IpAddr>,
        request: Request<Bytes>,
        reading: Reading,
    ) -> Result<(http::response::Parts, Collector), Failure> {
        match self.config.dial(origin, source)?.connect().await? {
            Connection::H1(mut c) => c.exchange(origin, request, reading).await,
            Connection::H2(c) => {
                let sender = c.ready().await.ok_or(ErrorClass::Reset)?;
                h2::exchange(sender, origin, request, reading).await
            }
        }
    }
}

/// What a journey does for a stream on a shared connection.
enum Next {
    Use(h2::H2),
    /// Another journey is opening a connection: wait for it.
    Wait(Rc<Notify>),
    Open,
}

/// Marks a shared connection being opened; however the opening ends (done, failed,
/// abandoned at the hard stop), the mark goes and the journeys waiting for it go on.
struct Opening<'a> {
    client: &'a Client,
    source: Option<IpAddr>,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.client.pools.borrow_mut().shared.get_mut(&self.source) {
            shared.connecting = false;
            shared.opened.notify_waiters();
        }
    }
}
