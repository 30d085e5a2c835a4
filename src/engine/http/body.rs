//! Response bodies: read to the end with a size limit (so a connection can be reused and a
//! huge body cannot exhaust memory), and decoded per `Content-Encoding` with the same limit
//! on the inflated bytes (so a compression bomb stops at the limit too).

use bytes::Bytes;
use http::HeaderValue;

use crate::metrics::ErrorClass;

/// What a request offers in `Accept-Encoding` when the target has `compression` on.
pub const ACCEPT_ENCODING: &str = "gzip, br, zstd";

/// Collects a body's data frames, refusing more than `limit` bytes; keeps the bytes only
/// when asked. Most bodies arrive in one frame: that one is kept without copying.
pub struct Collector {
    limit: u64,
    keep: bool,
    seen: u64,
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl Collector {
    pub fn new(limit: u64, keep: bool) -> Collector {
        Collector {
            limit,
            keep,
            seen: 0,
            first: None,
            rest: Vec::new(),
        }
    }

    pub fn push(&mut self, data: Bytes) -> Result<(), ErrorClass> {
        self.seen += data.len() as u64;
        if self.seen > self.limit {
            return Err(ErrorClass::BodyTooLarge);
        }
        if !self.keep {
            return Ok(());
        }
        match self.first.take() {
            None if self.rest.is_empty() => self.first = Some(data),
            Some(previous) => {
                self.rest.extend_from_slice(&previous);
                self.rest.extend_from_slice(&data);
            }
            None => self.rest.extend_from_slice(&data),
        }
        Ok(())
    }

    pub fn finish(self) -> Bytes {
        self.first.unwrap_or_else(|| Bytes::from(self.rest))
    }
}

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
