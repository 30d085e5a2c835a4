//! Opening a connection: TCP (bound to a source address when the target has a pool of
//! them), TLS with ALPN for https, then the HTTP handshake of the version the server agreed
//! to. Connect timeout covers all of it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};

use super::classify::Failure;
use super::{Connection, ProbeError, h1, h2};
use crate::engine::tls::{Refusal, TlsTarget};
use crate::metrics::ErrorClass;
use crate::plan::Protocol;

/// What a connection is opened with.
pub(super) struct Dial<'a> {
    pub addr: SocketAddr,
    /// The TLS connector and the name the certificate must carry; `None` for plain TCP.
    pub tls: Option<(&'a TlsTarget, ServerName<'static>)>,
    pub protocol: Protocol,
    pub source: Option<IpAddr>,
    pub timeout: Duration,
}

/// An open byte stream before HTTP, and whether TLS agreed on h2.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// What ALPN settled (`None` over plain TCP or when the server chose nothing).
    pub(super) fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.get_ref().1.alpn_protocol(),
        }
    }
}

/// Whether the server at the other end of `tcp` speaks HTTP/2 by prior knowledge: sends
/// the connection preface and an empty SETTINGS frame, and expects the server's own
/// SETTINGS frame (type 4) first, as RFC 9113 §3.4 has it. `Err`: what it did instead, in
/// words (an HTTP/1.1 server answers with a status line, or closes).
pub(super) async fn answers_h2c(tcp: &mut TcpStream, within: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let exchange = async {
        tcp.write_all(PREFACE).await?;
        tcp.write_all(&EMPTY_SETTINGS).await?;
        let mut answer = vec![0u8; 128];
        let mut read = 0;
        // A frame header is 9 bytes; a status line is longer: read what comes, up to 128.
        while read < 9 {
            match tcp.read(&mut answer[read..]).await? {
                0 => break,
                n => read += n,
            }
        }
        answer.truncate(read);
        Ok::<_, std::io::Error>(answer)
    };
    let instead = match tokio::time::timeout(within, exchange).await {
        Ok(Ok(answer)) if answer.len() >= 9 && answer[3] == 4 => return Ok(()),
        Ok(Ok(answer)) if answer.is_empty() => "it closed the connection".to_string(),
        Ok(Ok(answer)) => {
            let text = String::from_utf8_lossy(&answer);
            let first = text.lines().next().unwrap_or_default().trim();
            format!("it answered `{first}`")
        }
        Ok(Err(e)) => format!("the connection failed ({e})"),
        Err(_) => format!("no answer within {within:?}"),
    };
    Err(format!(
        "{instead} to HTTP/2's connection preface: it does not speak HTTP/2 without TLS \
         (h2c); set [target] protocol = \"http1\" (or \"auto\" on an https target, where TLS \
         agrees on the protocol)"
    ))
}

impl Dial<'_> {
    /// TCP and TLS, without HTTP: the pre-flight probe (which wants the reason in words).
    pub(super) async fn open(&self) -> Result<Stream, (ErrorClass, ProbeError)> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let connect = async {
            let socket = match self.addr {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }?;
            if let Some(source) = self.source {
                socket.bind(SocketAddr::new(source, 0))?;
            }
            socket.connect(self.addr).await
        };
        let stream = match tokio::time::timeout_at(deadline, connect).await {
            Err(_) => {
                let why = ProbeError::Unreachable("connect timed out".into());
                return Err((ErrorClass::ConnectTimeout, why));
            }
            Ok(Err(error)) => {
                let why = ProbeError::Unreachable(error.to_string());
                return Err((super::classify::connect(&error), why));
            }
            Ok(Ok(stream)) => stream,
        };
        // Requests are small and latency is what we measure: do not let Nagle batch them.
        let _ = stream.set_nodelay(true);
        let Some((tls, name)) = &self.tls else {
            return Ok(Stream::Plain(stream));
        };
        // The TLS handshake counts against the connect timeout: it is part of connecting.
        match tokio::time::timeout_at(deadline, tls.connector.connect(name.clone(), stream)).await {
            Err(_) => Err((
                ErrorClass::ConnectTimeout,
                ProbeError::Unreachable("TLS handshake timed out".into()),
            )),
            Ok(Err(error)) => Err((
                ErrorClass::ConnectError,
                match Refusal::of(&error) {
                    Some(refusal) => ProbeError::Certificate(refusal.to_string()),
                    None => ProbeError::Unreachable(format!("TLS: {error}")),
                },
            )),
            Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
        }
    }

    /// A connection ready for requests: HTTP/2 when the protocol is h2c or ALPN chose h2,
    /// HTTP/1.1 otherwise.
    pub(super) async fn connect(&self) -> Result<Connection, Failure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let stream = self
            .open()
            .await
            .map_err(|(class, why)| Failure::because(class, why.text()))?;
        let multiplexed = match self.protocol {
            Protocol::H2c => true,
            _ => stream.alpn() == Some(b"h2"),
        };
        if self.protocol == Protocol::H2 && !multiplexed {
            // The scenario asked for h2 and the server would not speak it.
            return Err(Failure::because(
                ErrorClass::ConnectError,
                "protocol = \"h2\", and the server's TLS did not agree on h2 (ALPN)",
            ));
        }
        let handshake = async {
            match (stream, multiplexed) {
                (Stream::Plain(s), false) => h1::handshake(s).await.map(Connection::H1),
                (Stream::Tls(s), false) => h1::handshake(*s).await.map(Connection::H1),
                (Stream::Plain(s), true) => h2::handshake(s).await.map(Connection::H2),
                (Stream::Tls(s), true) => h2::handshake(*s).await.map(Connection::H2),
            }
        };
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(class)) => Err(Failure::because(
                class,
                if multiplexed {
                    "the HTTP/2 handshake failed"
                } else {
                    "the HTTP/1.1 handshake failed"
                },
            )),
            Err(_) => Err(Failure::because(
                ErrorClass::ConnectTimeout,
                "the connection was not ready within connect_timeout",
            )),
        }
    }
}
