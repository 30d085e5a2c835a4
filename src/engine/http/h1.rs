//! HTTP/1.1 on one connection, driven by hyper: one request at a time, keep-alive.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{Collector, Reading};
use super::classify::Failure;
use super::{Origin, classify};
use crate::metrics::ErrorClass;

pub(crate) struct H1 {
    sender: SendRequest<Full<Bytes>>,
    /// Responses received on this connection: above zero, it is a reused one.
    served: u32,
}

/// The handshake on a connected stream; the connection's driver runs as a task on this
/// worker's (current-thread) runtime and ends when the sender is dropped or the peer closes.
pub(super) async fn handshake<S>(stream: S) -> Result<H1, ErrorClass>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorClass::ConnectError)?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(H1 { sender, served: 0 })
}

impl H1 {
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Whether the connection can take a request now; false when the server closed the
    /// idle keep-alive connection.
    pub(crate) async fn ready(&mut self) -> bool {
        self.sender.ready().await.is_ok()
    }

    pub(crate) async fn exchange(
        &mut self,
        origin: &Origin,
        mut request: Request<Bytes>,
        reading: Reading,
    ) -> Result<(http::response::Parts, Collector), Failure> {
        request
            .headers_mut()
            .insert(http::header::HOST, origin.authority.clone());
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let response = match self.sender.try_send_request(request.map(Full::new)).await {
            Ok(response) => response,
            Err(mut error) => {
                // Handed back unsent: the server saw nothing of it.
                let unsent = error.take_message().is_some();
                let error = error.into_error();
                let detail = classify::text(&error);
                let class = classify::hyper(error);
                // Written on a kept-alive connection the server closed at that instant, and
                // the connection ended (EOF or reset) before any of a response: an
                // idempotent request may be sent again (RFC 9110 §9.2.2). A written POST
                // never is: it may have changed the platform.
                let dropped = self.served > 0 && idempotent && class == ErrorClass::Reset;
                return Err(Failure {
                    class,
                    unprocessed: unsent || dropped,
                    detail: Some(detail.into_boxed_str()),
                });
            }
        };
        self.served += 1;
        let (parts, mut incoming): (_, Incoming) = response.into_parts();
        let mut body = reading.collector(parts.status, &parts.headers);
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(classify::hyper_failure)?;
            if let Ok(data) = frame.into_data() {
                body.push(data)?;
            }
        }
        Ok((parts, body))
    }
}
