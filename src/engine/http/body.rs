//! Response bodies: read to the end with a size limit (so a connection can be reused and a
//! huge body cannot exhaust memory), and, when compressed in a coding we decode, inflated
//! with the same limit on the inflated bytes — every such body, whether a step reads it or
//! not, so a compression bomb stops at the limit too and `max_body` means the same for a
//! step with checks as for one without.

use std::io::{Read, Write};

use bytes::Bytes;
use http::HeaderMap;

use crate::metrics::ErrorClass;

/// What a request offers in `Accept-Encoding` when the target has `compression` on.
pub(crate) const ACCEPT_ENCODING: &str = "gzip, br, zstd";

/// How a response's body is read: within `limit` bytes on the wire and inflated, and kept
/// for the step (extraction, checks) or only drained.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub limit: u64,
    pub keep: bool,
}

impl Reading {
    /// The collector for a response with this status and these headers. An error status's
    /// body is kept even when the step does not keep bodies: its start is what a failure
    /// sample shows (failures are few; the limit still holds).
    pub(crate) fn collector(self, status: http::StatusCode, headers: &HeaderMap) -> Collector {
        let coding = Coding::of(headers);
        let keep = self.keep || status.as_u16() >= 400;
        Collector {
            limit: self.limit,
            keep,
            // A compressed body is held even when the step does not keep it (at most
            // `limit` bytes), so that its inflated size can be bounded too; any other body
            // the step does not keep is only counted.
            hold: keep || coding.is_some(),
            coding,
            seen: 0,
            first: None,
            rest: Vec::new(),
        }
    }
}

/// A `Content-Encoding` we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The response's coding, when it is one we decode; `None` for none, `identity`, or one
    /// we did not offer (the bytes are left as they came).
    fn of(headers: &HeaderMap) -> Option<Coding> {
        let value = headers.get(http::header::CONTENT_ENCODING)?.to_str().ok()?;
        let value = value.trim();
        let is = |name: &str| value.eq_ignore_ascii_case(name);
        if is("gzip") || is("x-gzip") {
            Some(Coding::Gzip)
        } else if is("deflate") {
            Some(Coding::Deflate)
        } else if is("br") {
            Some(Coding::Brotli)
        } else if is("zstd") {
            Some(Coding::Zstd)
        } else {
            None
        }
    }
}

/// Inflates `compressed` into `sink`, at most `limit` bytes: past it, `BodyTooLarge` (with
/// no more than `limit` + 1 bytes written). A body that does not decode is `Io`; an empty
/// one (a HEAD's, a 204's, a 304's) inflates to nothing.
fn inflate(
    coding: Coding,
    compressed: &[u8],
    limit: u64,
    sink: &mut impl Write,
) -> Result<(), ErrorClass> {
    if compressed.is_empty() {
        return Ok(());
    }
    // `bufread` decoders read the slice in place (no buffer of their own for the input).
    let inflated = match coding {
        Coding::Gzip => pump(
            flate2::bufread::MultiGzDecoder::new(compressed),
            limit,
            sink,
        ),
        Coding::Deflate => pump(flate2::bufread::ZlibDecoder::new(compressed), limit, sink),
        Coding::Brotli => pump(
            brotli_decompressor::Decompressor::new(compressed, 8192),
            limit,
            sink,
        ),
        Coding::Zstd => pump(
            ruzstd::decoding::StreamingDecoder::new(compressed).map_err(|_| ErrorClass::Io)?,
            limit,
            sink,
        ),
    }
    .map_err(|_| ErrorClass::Io)?;
    if inflated > limit {
        return Err(ErrorClass::BodyTooLarge);
    }
    Ok(())
}

/// Copies at most `limit` + 1 bytes from `reader` to `sink` (through `io::copy`'s stack
/// buffer, or straight into a `Vec`'s spare room), returning how many.
fn pump(reader: impl Read, limit: u64, sink: &mut impl Write) -> std::io::Result<u64> {
    std::io::copy(&mut reader.take(limit.saturating_add(1)), sink)
}

/// Collects a body's data frames, refusing more than `limit` bytes, then gives the body as
/// the step sees it. Most bodies arrive in one frame: that one is held without copying.
pub(crate) struct Collector {
    limit: u64,
    /// Whether the step reads the body.
    keep: bool,
    /// Whether the frames are held (kept, or compressed: to be inflated).
    hold: bool,
    coding: Option<Coding>,
    seen: u64,
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl Collector {
    pub(crate) fn push(&mut self, data: Bytes) -> Result<(), ErrorClass> {
        self.seen += data.len() as u64;
        if self.seen > self.limit {
            return Err(ErrorClass::BodyTooLarge);
        }
        if !self.hold {
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

    /// The body as the step sees it: decoded when kept, empty when not. A compressed body
    /// is inflated either way, at most `limit` bytes — into memory when kept, into a
    /// counter when not: past the limit, `BodyTooLarge`. A body that does not decode is
    /// `Io`.
    pub(crate) fn finish(self) -> Result<Bytes, ErrorClass> {
        let body = self.first.unwrap_or_else(|| Bytes::from(self.rest));
        let Some(coding) = self.coding else {
            return Ok(body);
        };
        if self.keep {
            let mut decoded = Vec::new();
            inflate(coding, &body, self.limit, &mut decoded)?;
            Ok(Bytes::from(decoded))
        } else {
            inflate(coding, &body, self.limit, &mut std::io::sink())?;
            Ok(Bytes::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// 2,000 bytes of JSON that compress to well under 1,000 in every coding.
    fn json() -> Vec<u8> {
        let json = format!(r#"{{"token":"abc","padding":"{}"}}"#, "x".repeat(1972));
        assert_eq!(json.len(), 2000);
        json.into_bytes()
    }

    fn encoded(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::default();
        match coding {
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Coding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                brotli::BrotliCompress(&mut &bytes[..], &mut out, &Default::default()).unwrap();
                out
            }
            Coding::Zstd => ruzstd::encoding::compress_to_vec(
                bytes,
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        }
    }

    const CODINGS: [(Coding, &str); 4] = [
        (Coding::Gzip, "gzip"),
        (Coding::Deflate, "deflate"),
        (Coding::Brotli, "br"),
        (Coding::Zstd, "zstd"),
    ];

    fn headers(encoding: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(encoding) = encoding {
            headers.insert(http::header::CONTENT_ENCODING, encoding.parse().unwrap());
        }
        headers
    }

    /// The body as `finish` gives it, pushed in frames of 7 bytes.
    fn read(
        body: &[u8],
        encoding: Option<&str>,
        limit: u64,
        keep: bool,
    ) -> Result<Bytes, ErrorClass> {
        let mut collector =
            Reading { limit, keep }.collector(http::StatusCode::OK, &headers(encoding));
        for chunk in body.chunks(7) {
            collector.push(Bytes::copy_from_slice(chunk))?;
        }
        collector.finish()
    }

    #[test]
    fn codings_are_named_as_offered_and_the_rest_left_alone() {
        for (coding, name) in CODINGS {
            assert_eq!(Coding::of(&headers(Some(name))), Some(coding));
            assert_eq!(
                Coding::of(&headers(Some(&format!(" {} ", name.to_uppercase())))),
                Some(coding)
            );
        }
        assert_eq!(Coding::of(&headers(Some("x-gzip"))), Some(Coding::Gzip));
        for other in [
            None,
            Some(""),
            Some("identity"),
            Some("compress"),
            Some("gzip, br"),
        ] {
            assert_eq!(Coding::of(&headers(other)), None, "{other:?}");
        }
    }

    #[test]
    fn a_kept_body_is_decoded_and_one_not_kept_is_empty() {
        let json = json();
        let limit = json.len() as u64;
        for (coding, name) in CODINGS {
            let wire = encoded(coding, &json);
            assert_eq!(
                read(&wire, Some(name), limit, true).unwrap(),
                json,
                "{name}"
            );
            assert_eq!(read(&wire, Some(name), limit, false).unwrap(), "", "{name}");
        }
        assert_eq!(read(&json, None, limit, true).unwrap(), json);
        assert_eq!(read(&json, None, limit, false).unwrap(), "");
        // A coding we do not decode: the bytes as they came.
        assert_eq!(read(&json, Some("compress"), limit, true).unwrap(), json);
    }

    #[test]
    fn max_body_bounds_the_inflated_bytes_whether_kept_or_not() {
        let json = json();
        let limit = 1000;
        for (coding, name) in CODINGS {
            let wire = encoded(coding, &json);
            assert!(wire.len() as u64 <= limit, "{name}: {} bytes", wire.len());
            for keep in [true, false] {
                assert_eq!(
                    read(&wire, Some(name), limit, keep),
                    Err(ErrorClass::BodyTooLarge),
                    "{name}, kept: {keep}"
                );
            }
            // The wire bytes are bounded before anything is inflated.
            let below = wire.len() as u64 - 1;
            assert_eq!(
                read(&wire, Some(name), below, false),
                Err(ErrorClass::BodyTooLarge)
            );
        }
        assert_eq!(
            read(&json, None, limit, false),
            Err(ErrorClass::BodyTooLarge)
        );
    }

    #[test]
    fn a_body_that_does_not_decode_is_io_and_an_empty_one_is_empty() {
        for (_, name) in CODINGS {
            for keep in [true, false] {
                assert_eq!(
                    read(b"not compressed at all", Some(name), 1024, keep),
                    Err(ErrorClass::Io),
                    "{name}, kept: {keep}"
                );
                assert_eq!(read(b"", Some(name), 1024, keep).unwrap(), "", "{name}");
            }
        }
    }
}
