//! The hot path's HTTP/1.1 client: hyper connections owned by the task that uses them (no
//! pool, no channel per request), over TCP or TLS (`tls.rs`), timeouts on connect and on
//! the whole exchange, response bodies read with a size limit, and every failure mapped to
//! an `ErrorClass`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tls::TlsTarget;
use crate::metrics::ErrorClass;

/// Where and how to connect; shared read-only by every task of a worker.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body: u64,
    /// Set for https targets: every connection does a TLS handshake first.
    pub tls: Option<TlsTarget>,
    /// Sent as `Accept-Encoding` unless the request has its own (`[target] compression`).
    pub accept_encoding: Option<HeaderValue>,
}

/// One keep-alive HTTP/1.1 connection; its driver runs as a task on the same worker.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

/// The parts of a response a step looks at.
pub struct Response {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    /// The body, when the caller asked to keep it (for extraction); otherwise empty.
    pub body: Bytes,
}

impl Connection {
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl ClientConfig {
    pub async fn connect(&self) -> Result<Connection, ErrorClass> {
        match self.open().await.map_err(|(class, _)| class)? {
            Stream::Plain(stream) => handshake(stream).await,
            Stream::Tls(stream) => handshake(*stream).await,
        }
    }

    /// Connects (and does the TLS handshake for https) without speaking HTTP: the
    /// pre-flight check, which wants the reason in words when it fails.
    pub async fn probe(&self) -> Result<(), String> {
        self.open().await.map(drop).map_err(|(_, why)| why)
    }

    async fn open(&self) -> Result<Stream, (ErrorClass, String)> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(self.addr)).await {
            Err(_) => return Err((ErrorClass::ConnectTimeout, "connect timed out".into())),
            Ok(Err(error)) => return Err((classify_connect(&error), error.to_string())),
            Ok(Ok(stream)) => stream,
        };
        // Requests are small and latency is what we measure: do not let Nagle batch them.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(stream));
        };
        // The TLS handshake counts against the connect timeout: it is part of connecting.
        match tokio::time::timeout_at(deadline, tls.connector.connect(tls.name.clone(), stream))
            .await
        {
            Err(_) => Err((ErrorClass::ConnectTimeout, "TLS handshake timed out".into())),
            Ok(Err(error)) => Err((ErrorClass::ConnectError, format!("TLS: {error}"))),
            Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
        }
    }

    /// Sends `request` on `connection` (connecting first when there is none or it closed).
    /// On any failure the connection is dropped so the next request starts fresh.
    pub async fn send(
        &self,
        connection: &mut Option<Connection>,
        mut request: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<Response, ErrorClass> {
        request
            .headers_mut()
            .insert(http::header::HOST, self.host.clone());
        if let Some(encodings) = &self.accept_encoding {
            request
                .headers_mut()
                .entry(http::header::ACCEPT_ENCODING)
                .or_insert_with(|| encodings.clone());
        }
        let exchange = async {
            if connection.as_ref().is_none_or(|c| c.sender.is_closed()) {
                *connection = Some(self.connect().await?);
            }
            let sender = &mut connection.as_mut().expect("connected above").sender;
            if sender.ready().await.is_err() {
                // The server closed the idle keep-alive connection: one fresh try.
                *connection = Some(self.connect().await?);
            }
            let sender = &mut connection.as_mut().expect("connected above").sender;
            let response = sender.send_request(request).await.map_err(classify_hyper)?;
            let (parts, body) = response.into_parts();
            let body = read_body(body, self.max_body, keep_body).await?;
            // Kept bodies are read decoded (extraction and checks see the JSON, not gzip);
            // `max_body` bounds the inflated bytes too, so a bomb stops at the limit.
            let body = if keep_body {
                decode(
                    body,
                    parts.headers.get(http::header::CONTENT_ENCODING),
                    self.max_body,
                )?
            } else {
                body
            };
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let result = match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ErrorClass::RequestTimeout),
        };
        if result.is_err() {
            *connection = None;
        }
        result
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The HTTP/1.1 handshake on a connected stream; the connection's driver runs as a task on
/// this worker's (current-thread) runtime.
async fn handshake<S>(stream: S) -> Result<Connection, ErrorClass>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorClass::ConnectError)?;
    tokio::task::spawn_local(async move {
        // The connection ends when the sender is dropped or the peer closes; either way
        // the next request on it will notice and reconnect.
        let _ = connection.await;
    });
    Ok(Connection { sender })
}

/// What a request offers in `Accept-Encoding` when the target has `compression` on.
pub const ACCEPT_ENCODING: &str = "gzip, br, zstd";

/// `body` decoded per its `Content-Encoding` (gzip, deflate, br, zstd; none or identity:
/// as is), reading at most `limit` decoded bytes: past it, `BodyTooLarge`, never more held in
/// memory than the limit. A body that does not decode is `Io`.
pub fn decode(
    body: Bytes,
    encoding: Option<&HeaderValue>,
    limit: u64,
) -> Result<Bytes, ErrorClass> {
    use std::io::Read;
    let Some(encoding) = encoding.and_then(|v| v.to_str().ok()) else {
        return Ok(body);
    };
    let encoding = encoding.trim().to_ascii_lowercase();
    let compressed: &[u8] = &body;
    let reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(compressed)),
        "br" => Box::new(brotli_decompressor::Decompressor::new(compressed, 8192)),
        "zstd" => Box::new(
            ruzstd::decoding::StreamingDecoder::new(compressed).map_err(|_| ErrorClass::Io)?,
        ),
        // An encoding we did not offer: leave the bytes as they came.
        _ => return Ok(body),
    };
    let mut decoded = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|_| ErrorClass::Io)?;
    if decoded.len() as u64 > limit {
        return Err(ErrorClass::BodyTooLarge);
    }
    Ok(Bytes::from(decoded))
}

/// Reads the body to its end (so the connection can be reused), refusing more than
/// `limit` bytes; keeps the bytes only when asked.
async fn read_body(mut body: Incoming, limit: u64, keep: bool) -> Result<Bytes, ErrorClass> {
    let mut kept: Vec<u8> = Vec::new();
    let mut first: Option<Bytes> = None;
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(classify_hyper)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > limit {
            return Err(ErrorClass::BodyTooLarge);
        }
        if keep {
            // Most bodies arrive in one frame: keep it without copying.
            match first.take() {
                None if kept.is_empty() => first = Some(data),
                Some(previous) => {
                    kept.extend_from_slice(&previous);
                    kept.extend_from_slice(&data);
                }
                None => kept.extend_from_slice(&data),
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(kept)))
}

fn classify_connect(error: &io::Error) -> ErrorClass {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorClass::ConnectTimeout,
        _ => ErrorClass::ConnectError,
    }
}

fn classify_hyper(error: hyper::Error) -> ErrorClass {
    if error.is_timeout() {
        return ErrorClass::RequestTimeout;
    }
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return ErrorClass::Reset;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => ErrorClass::Reset,
                io::ErrorKind::TimedOut => ErrorClass::RequestTimeout,
                _ => ErrorClass::Io,
            };
        }
        source = cause.source();
    }
    if error.is_parse() || error.is_user() {
        return ErrorClass::Io;
    }
    ErrorClass::Reset
}
