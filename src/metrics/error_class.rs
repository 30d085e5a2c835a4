//! Why a request or a journey failed. One fixed list, so counters are arrays, not maps.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The target refused the TCP connection (nothing listening: a killed backend).
    ConnectRefused,
    /// The TCP connection was not established within `connect_timeout`.
    ConnectTimeout,
    /// Any other failure to connect (unreachable network, no route…).
    ConnectError,
    /// A redirect pointed outside the allow-list (or to a scheme other than http/https):
    /// not followed, no connection made.
    RedirectRefused,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// HTTP/2: the server sent GOAWAY and the stream was not processed to its end.
    GoAway,
    /// HTTP/2: the server reset the stream (RST_STREAM) for a reason other than refusing it.
    StreamReset,
    /// HTTP/2: the server refused the stream before processing it (REFUSED_STREAM).
    RefusedStream,
    /// No complete response within `request_timeout`.
    RequestTimeout,
    /// An unexpected 4xx status.
    Http4xx,
    /// An unexpected 5xx status.
    Http5xx,
    /// A status outside the step's `expect` that is neither 4xx nor 5xx.
    UnexpectedStatus,
    /// A value the step extracts was missing from the response.
    ExtractionFailed,
    /// A response check of the step (`check = { json, body_contains, header }`) failed.
    CheckFailed,
    /// The response body was larger than `max_body`.
    BodyTooLarge,
    /// The rendered request was not valid HTTP (e.g. a header value with a newline).
    InvalidRequest,
    /// Any other I/O or protocol error.
    Io,
}

impl ErrorClass {
    pub const COUNT: usize = 17;
    pub const ALL: [ErrorClass; Self::COUNT] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::ConnectError,
        ErrorClass::RedirectRefused,
        ErrorClass::Reset,
        ErrorClass::GoAway,
        ErrorClass::StreamReset,
        ErrorClass::RefusedStream,
        ErrorClass::RequestTimeout,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::UnexpectedStatus,
        ErrorClass::ExtractionFailed,
        ErrorClass::CheckFailed,
        ErrorClass::BodyTooLarge,
        ErrorClass::InvalidRequest,
        ErrorClass::Io,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::ConnectError => "connect_error",
            ErrorClass::RedirectRefused => "redirect_refused",
            ErrorClass::Reset => "reset",
            ErrorClass::GoAway => "goaway",
            ErrorClass::StreamReset => "stream_reset",
            ErrorClass::RefusedStream => "refused_stream",
            ErrorClass::RequestTimeout => "request_timeout",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::UnexpectedStatus => "unexpected_status",
            ErrorClass::ExtractionFailed => "extraction_failed",
            ErrorClass::CheckFailed => "check_failed",
            ErrorClass::BodyTooLarge => "body_too_large",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::Io => "io",
        }
    }

    /// Whether a request that failed this way may still have changed the platform: the
    /// server may have received and processed it, and only the answer failed or was not
    /// the expected one (a timeout, a reset, a 5xx, an unexpected 2xx/3xx, a body that did
    /// not check out). Not: nothing was sent (connect failures, a refused redirect hop, an
    /// invalid request), HTTP/2 REFUSED_STREAM (the server guarantees
    /// it did nothing), or a 4xx (the server refused the request). A count of writes is
    /// bounded above by the acknowledged ones plus these.
    pub fn may_have_committed(self) -> bool {
        match self {
            ErrorClass::ConnectRefused
            | ErrorClass::ConnectTimeout
            | ErrorClass::ConnectError
            | ErrorClass::RedirectRefused
            | ErrorClass::RefusedStream
            | ErrorClass::Http4xx
            | ErrorClass::InvalidRequest => false,
            ErrorClass::Reset
            | ErrorClass::GoAway
            | ErrorClass::StreamReset
            | ErrorClass::RequestTimeout
            | ErrorClass::Http5xx
            | ErrorClass::UnexpectedStatus
            | ErrorClass::ExtractionFailed
            | ErrorClass::CheckFailed
            | ErrorClass::BodyTooLarge
            | ErrorClass::Io => true,
        }
    }

    /// The class of an unexpected status code.
    pub fn for_status(status: u16) -> ErrorClass {
        match status {
            400..=499 => ErrorClass::Http4xx,
            500..=599 => ErrorClass::Http5xx,
            _ => ErrorClass::UnexpectedStatus,
        }
    }
}

/// Counts per error class.
pub(crate) type ErrorCounts = [u64; ErrorClass::COUNT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, class) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}
