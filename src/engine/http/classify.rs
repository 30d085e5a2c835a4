//! Every transport failure mapped to one `ErrorClass`: what the report counts and the
//! verdicts judge.

use std::io;

use crate::metrics::ErrorClass;

/// A request that failed: the class it counts as, and whether the server provably processed
/// none of it — so it may be sent again, as browsers, curl and every client library do
/// (RFC 9113 §8.7, RFC 9110 §9.2.2). Which failures are unprocessed is a mechanical rule:
/// HTTP/2, a stream above a GOAWAY's last stream id or opened after it (h2's remote GOAWAY
/// error) and a REFUSED_STREAM; HTTP/1.1, a request hyper gave back unsent, and an
/// idempotent one written on a reused connection that closed before any of a response.
///
/// `detail` is the failure in words (the transport's error text), for the failure
/// samples: built only when a request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub class: ErrorClass,
    pub unprocessed: bool,
    pub detail: Option<Box<str>>,
}

impl Failure {
    /// A failure of `class`, in words.
    pub(crate) fn because(class: ErrorClass, detail: impl Into<String>) -> Failure {
        Failure {
            class,
            unprocessed: false,
            detail: Some(detail.into().into_boxed_str()),
        }
    }
}

impl From<ErrorClass> for Failure {
    fn from(class: ErrorClass) -> Failure {
        Failure {
            class,
            unprocessed: false,
            detail: None,
        }
    }
}

/// An error and its causes, as one line: "error sending request: connection reset".
pub(super) fn text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A hyper error as a failure: its class and its text.
pub(super) fn hyper_failure(error: hyper::Error) -> Failure {
    let detail = text(&error);
    Failure::because(hyper(error), detail)
}

pub(super) fn connect(error: &io::Error) -> ErrorClass {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorClass::ConnectTimeout,
        _ => ErrorClass::ConnectError,
    }
}

fn io_kind(error: &io::Error) -> ErrorClass {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ErrorClass::Reset,
        io::ErrorKind::TimedOut => ErrorClass::RequestTimeout,
        _ => ErrorClass::Io,
    }
}

pub(super) fn hyper(error: hyper::Error) -> ErrorClass {
    if error.is_timeout() {
        return ErrorClass::RequestTimeout;
    }
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return ErrorClass::Reset;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io_kind(io);
        }
        source = cause.source();
    }
    if error.is_parse() || error.is_user() {
        return ErrorClass::Io;
    }
    ErrorClass::Reset
}

/// Whether an HTTP/2 error says the server did not process the stream: it was above the
/// last stream id of the server's GOAWAY, or opened after it (h2 hands both a remote
/// GOAWAY error), or refused (REFUSED_STREAM). A stream the GOAWAY covered and the close cut
/// off is an I/O error, never this.
pub(super) fn h2_unprocessed(error: &h2::Error) -> bool {
    (error.is_go_away() && error.is_remote()) || error.reason() == Some(h2::Reason::REFUSED_STREAM)
}

/// HTTP/2's own failures are classes of their own: a stream the server refused before
/// working on it (REFUSED_STREAM: safe to retry), a connection going away under a stream
/// (GOAWAY), a stream reset (RST_STREAM with any other reason).
pub(super) fn h2(error: &h2::Error) -> ErrorClass {
    if error.reason() == Some(h2::Reason::REFUSED_STREAM) {
        return ErrorClass::RefusedStream;
    }
    if error.is_go_away() {
        return ErrorClass::GoAway;
    }
    if error.is_reset() {
        return ErrorClass::StreamReset;
    }
    if let Some(io) = error.get_io() {
        return io_kind(io);
    }
    ErrorClass::Io
}
