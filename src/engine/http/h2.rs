//! HTTP/2 on one connection, with the `h2` crate directly: it tells how many streams the
//! server allows and how many are open, so a worker's journeys can share a connection up to
//! the server's limit and open another past it, and its errors say GOAWAY, RST_STREAM or
//! REFUSED_STREAM.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{Collector, Reading};
use super::classify::Failure;
use super::{Origin, classify};
use crate::metrics::ErrorClass;

/// A handle on an HTTP/2 connection; clones share it (one per concurrent journey).
#[derive(Clone)]
pub(crate) struct H2 {
    sender: SendRequest<Bytes>,
    /// Set by the connection's driver when it ends (GOAWAY, reset, closed).
    closed: Rc<Cell<bool>>,
    /// Streams open on it now (ours: h2 counts them only behind an unstable feature).
    active: Rc<Cell<usize>>,
    /// How the connection ended, once it has: a stream cut off by it reports only a broken
    /// pipe, so this is where a GOAWAY is seen.
    ended: Rc<Cell<Option<ErrorClass>>>,
}

/// The right to open one stream: counted as active until it is dropped.
pub(crate) struct Stream {
    sender: SendRequest<Bytes>,
    ended: Rc<Cell<Option<ErrorClass>>>,
    _slot: Slot,
}

struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

pub(super) async fn handshake<S>(stream: S) -> Result<H2, ErrorClass>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, mut connection) = h2::client::Builder::new()
        // A load generator reads what it asked for: no server push.
        .enable_push(false)
        .handshake(stream)
        .await
        .map_err(|_| ErrorClass::ConnectError)?;
    let mut ping = connection.ping_pong().ok_or(ErrorClass::ConnectError)?;
    let closed = Rc::new(Cell::new(false));
    let ended = Rc::new(Cell::new(None));
    let (flag, how) = (closed.clone(), ended.clone());
    tokio::task::spawn_local(async move {
        if let Err(error) = connection.await {
            how.set(Some(classify::h2(&error)));
        }
        flag.set(true);
    });
    // The server's SETTINGS come before its answer to a PING: once the PONG is in, the
    // stream limit is the server's, not the default of 100 the client assumes before — so
    // the journeys sharing this connection never open more streams than it allows (the
    // excess would be refused).
    ping.ping(h2::Ping::opaque())
        .await
        .map_err(|_| ErrorClass::ConnectError)?;
    Ok(H2 {
        sender,
        closed,
        active: Rc::new(Cell::new(0)),
        ended,
    })
}

impl H2 {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Whether another stream fits under the server's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub(crate) fn has_capacity(&self) -> bool {
        !self.is_closed() && self.active.get() < self.sender.current_max_send_streams()
    }

    /// A sender for one new stream, once the connection can open it; `None` when the
    /// connection cannot take new streams at all (going away or gone) — nothing reached the
    /// server, so the caller may use a fresh connection.
    pub(crate) async fn ready(&self) -> Option<Stream> {
        // Counted before waiting, so journeys arriving meanwhile see the room taken.
        self.active.set(self.active.get() + 1);
        let slot = Slot(self.active.clone());
        match self.sender.clone().ready().await {
            Ok(sender) => Some(Stream {
                sender,
                ended: self.ended.clone(),
                _slot: slot,
            }),
            Err(_) => {
                self.closed.set(true);
                None
            }
        }
    }
}

/// One request on its own stream: the URI carries scheme and authority (`:scheme`,
/// `:authority`), and the headers HTTP/2 forbids are left out.
pub(super) async fn exchange(
    stream: Stream,
    origin: &Origin,
    request: Request<Bytes>,
    reading: Reading,
) -> Result<(http::response::Parts, Collector), Failure> {
    let (mut parts, payload) = request.into_parts();
    parts.uri = origin.absolute(&parts.uri)?;
    for name in CONNECTION_SPECIFIC {
        parts.headers.remove(name);
    }
    let end = payload.is_empty();
    let Stream {
        mut sender,
        ended,
        _slot,
    } = stream;
    // A stream that broke because its connection went away carries the connection's reason.
    let class_of = |error: &h2::Error| Failure {
        class: match (error.is_io(), ended.get()) {
            (true, Some(connection)) => connection,
            _ => classify::h2(error),
        },
        unprocessed: classify::h2_unprocessed(error),
        detail: Some(classify::text(error).into_boxed_str()),
    };
    let (response, mut sending) = sender
        .send_request(Request::from_parts(parts, ()), end)
        .map_err(|e| class_of(&e))?;
    if !end {
        sending.send_data(payload, true).map_err(|e| class_of(&e))?;
    }
    let response = response.await.map_err(|e| class_of(&e))?;
    let (parts, mut incoming) = response.into_parts();
    let mut body = reading.collector(parts.status, &parts.headers);
    while let Some(data) = incoming.data().await {
        let data = data.map_err(|e| class_of(&e))?;
        // Give the flow-control window back, or a large body stalls the stream.
        let _ = incoming.flow_control().release_capacity(data.len());
        body.push(data).map_err(Failure::from)?;
    }
    Ok((parts, body))
}

/// Headers of HTTP/1.1's connection management, which HTTP/2 forbids (RFC 9113 §8.2.2);
/// `Host` becomes `:authority`.
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];
