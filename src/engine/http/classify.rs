//! Every transport failure mapped to one `ErrorClass`: what the report counts and the
//! verdicts judge.

use std::io;

use crate::metrics::ErrorClass;

pub fn connect(error: &io::Error) -> ErrorClass {
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

pub fn hyper(error: hyper::Error) -> ErrorClass {
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

/// HTTP/2's own failures are classes of their own: a stream the server refused before
/// working on it (REFUSED_STREAM: safe to retry), a connection going away under a stream
/// (GOAWAY), a stream reset (RST_STREAM with any other reason).
pub fn h2(error: &h2::Error) -> ErrorClass {
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
