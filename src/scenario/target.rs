//! `[target]` → `TargetPlan`: the base URL under the allow-list, protocol and connection
//! mode, timeouts, body limits, redirects, compression and source addresses.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use toml::Spanned;

use super::raw::{RawCompression, RawTarget};
use super::validate::typed;
use crate::plan::{BaseUrl, Protocol, TargetPlan};
use crate::util::diag::Diagnostics;
use crate::util::safety::AllowList;
use crate::util::units::{parse_duration, parse_size};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;

pub(super) fn validate_target(
    target: &Spanned<RawTarget>,
    diagnostics: &mut Diagnostics,
) -> Option<TargetPlan> {
    let raw = target.get_ref();
    let base = match BaseUrl::parse(raw.base_url.get_ref()) {
        Ok(base) => Some(base),
        Err(message) => {
            diagnostics.push(raw.base_url.span(), message);
            None
        }
    };
    let connect_timeout = typed(
        raw.connect_timeout.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        positive_duration,
        diagnostics,
    );
    let request_timeout = typed(
        raw.request_timeout.as_ref(),
        DEFAULT_REQUEST_TIMEOUT,
        positive_duration,
        diagnostics,
    );
    let max_body = typed(
        raw.max_body.as_ref(),
        DEFAULT_MAX_BODY,
        parse_size,
        diagnostics,
    );
    let allow = allow_list(raw, diagnostics);
    // The base_url is held to allow_hosts here, at its position, as `plan` and `run` hold
    // it: an address as it is, a name the list does not carry by what it resolves to (a
    // name on the list is resolved only when the run starts).
    if let (Some(base), Some(allow)) = (&base, &allow)
        && !allow.allows_name(&base.host)
        && let Err(message) = allow.resolve(&base.host, base.port)
    {
        diagnostics.push(raw.base_url.span(), message);
    }
    let headers = headers(raw, diagnostics);
    let ca_file = raw
        .ca_file
        .as_ref()
        .map(|f| std::path::PathBuf::from(f.get_ref()));
    check_tls_options(raw, base.as_ref(), diagnostics);
    let instance_header = instance_header(raw, diagnostics);
    let protocol = protocol(raw, base.as_ref(), diagnostics);
    let compression = compression(raw, diagnostics);
    let redirects = match &raw.redirects {
        Some(n) if *n.get_ref() > MAX_REDIRECTS => {
            diagnostics.push(n.span(), format!("`redirects` is at most {MAX_REDIRECTS}"));
            None
        }
        Some(n) => Some(*n.get_ref()),
        None => Some(DEFAULT_REDIRECTS),
    };
    let source_addrs = source_addrs(raw, diagnostics);
    Some(TargetPlan {
        protocol: protocol?,
        cookies: raw.cookies.unwrap_or(true),
        redirects: redirects?,
        source_addrs: source_addrs?,
        ca_file,
        tls_verify: raw.tls_verify.as_ref().is_none_or(|v| *v.get_ref()),
        policy_allow: None,
        instance_header: instance_header?,
        base: base?,
        connect_timeout: connect_timeout?,
        request_timeout: request_timeout?,
        max_body: max_body?,
        compression: compression?,
        headers,
        allow: allow?,
    })
}

/// `allow_hosts`, each entry that does not parse reported at its own position.
fn allow_list(raw: &RawTarget, diagnostics: &mut Diagnostics) -> Option<AllowList> {
    match &raw.allow_hosts {
        None => Some(AllowList::default()),
        Some(entries) => {
            let texts: Vec<String> = entries.iter().map(|e| e.get_ref().clone()).collect();
            match AllowList::parse(&texts) {
                Ok(list) => Some(list),
                Err(errors) => {
                    for (index, message) in errors {
                        diagnostics.push(entries[index].span(), message);
                    }
                    None
                }
            }
        }
    }
}

/// The target's own headers, each name and value that cannot be a header reported.
fn headers(raw: &RawTarget, diagnostics: &mut Diagnostics) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &raw.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.get_ref()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            (Err(_), _) => {
                diagnostics.push(value.span(), format!("`{name}` is not a valid header name"))
            }
            (_, Err(_)) => diagnostics.push(
                value.span(),
                format!("the value of header `{name}` contains characters a header cannot carry"),
            ),
        }
    }
    headers
}

/// `ca_file` and `tls_verify`: only for an https:// base_url, and not together when
/// verification is off.
fn check_tls_options(raw: &RawTarget, base: Option<&BaseUrl>, diagnostics: &mut Diagnostics) {
    if let (Some(file), Some(base)) = (&raw.ca_file, base)
        && !base.tls
    {
        diagnostics.push(
            file.span(),
            "`ca_file` only applies to an https:// base_url",
        );
    }
    if let (Some(verify), Some(base)) = (&raw.tls_verify, base)
        && !base.tls
    {
        diagnostics.push(
            verify.span(),
            "`tls_verify` only applies to an https:// base_url",
        );
    }
    // Off, nothing is verified, so a file of certificates to trust would only mislead.
    if let (Some(verify), Some(file)) = (&raw.tls_verify, &raw.ca_file)
        && !*verify.get_ref()
    {
        diagnostics.push(
            file.span(),
            "`ca_file` has no use with `tls_verify = false`: nothing is verified; drop one of them",
        );
    }
}

/// `instance_header`, `x-instance` unless named.
fn instance_header(raw: &RawTarget, diagnostics: &mut Diagnostics) -> Option<HeaderName> {
    match &raw.instance_header {
        None => Some(http::HeaderName::from_static("x-instance")),
        Some(name) => match HeaderName::from_bytes(name.get_ref().as_bytes()) {
            Ok(header) => Some(header),
            Err(_) => {
                diagnostics.push(
                    name.span(),
                    format!("`{}` is not a valid header name", name.get_ref()),
                );
                None
            }
        },
    }
}

/// `protocol`, `auto` unless named; one the base_url's scheme cannot carry is refused.
fn protocol(
    raw: &RawTarget,
    base: Option<&BaseUrl>,
    diagnostics: &mut Diagnostics,
) -> Option<Protocol> {
    raw.protocol.as_ref().map_or(Some(Protocol::Auto), |text| {
        let parsed = Protocol::parse(text.get_ref());
        match (parsed, base) {
            (Err(message), _) => {
                diagnostics.push(text.span(), message);
                None
            }
            (Ok(protocol), Some(base)) if protocol.mismatch(base.tls).is_some() => {
                diagnostics.push(text.span(), protocol.mismatch(base.tls).unwrap_or_default());
                None
            }
            (Ok(protocol), _) => Some(protocol),
        }
    })
}

/// `compression`: the Accept-Encoding to offer (`None` when it is off).
fn compression(raw: &RawTarget, diagnostics: &mut Diagnostics) -> Option<Option<HeaderValue>> {
    match raw.compression.as_ref().map(|c| (c.get_ref(), c.span())) {
        None | Some((RawCompression::On(true), _)) => Some(Some(HeaderValue::from_static(
            crate::engine::http::ACCEPT_ENCODING,
        ))),
        Some((RawCompression::On(false), _)) => Some(None),
        Some((RawCompression::Offer(text), span)) => {
            let known = ["gzip", "x-gzip", "deflate", "br", "zstd", "identity"];
            let unknown: Vec<&str> = text
                .split(',')
                .map(|part| part.split(';').next().unwrap_or("").trim())
                .filter(|coding| !known.contains(&coding.to_ascii_lowercase().as_str()))
                .collect();
            match (unknown.as_slice(), HeaderValue::from_str(text)) {
                ([], Ok(value)) => Some(Some(value)),
                _ => {
                    diagnostics.push(
                        span,
                        format!(
                            "`{text}`: compression offers a list of gzip, deflate, br, zstd (with optional ;q=), or is true or false"
                        ),
                    );
                    None
                }
            }
        }
    }
}

/// `source_addrs`, every address of every range; an empty list is reported.
fn source_addrs(raw: &RawTarget, diagnostics: &mut Diagnostics) -> Option<Vec<std::net::IpAddr>> {
    let mut source_addrs = Some(Vec::new());
    for entry in raw.source_addrs.iter().flatten() {
        match parse_address_range(entry.get_ref()) {
            Ok(range) => {
                if let Some(all) = &mut source_addrs {
                    all.extend(range);
                }
            }
            Err(message) => {
                diagnostics.push(entry.span(), message);
                source_addrs = None;
            }
        }
    }
    if let Some(list) = &raw.source_addrs
        && list.is_empty()
    {
        diagnostics.push(
            raw.base_url.span(),
            "`source_addrs` is empty: leave it out to let the kernel pick",
        );
    }
    source_addrs
}

/// Redirects a step follows unless `redirects` says otherwise (browsers allow 20; five is
/// what a real journey needs and keeps a loop from multiplying load).
const DEFAULT_REDIRECTS: u32 = 5;
const MAX_REDIRECTS: u32 = 20;
/// The most addresses `source_addrs` may name: a /16's worth.
const MAX_SOURCE_ADDRS: usize = 65_536;

/// `127.0.0.2` or `127.0.0.2-127.0.0.250` (same family, first ≤ last), as addresses.
pub(super) fn parse_address_range(text: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::IpAddr;
    let parse = |part: &str| {
        part.trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("`{text}` is not an IP address or a first-last range"))
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let one = parse(text)?;
            (one, one)
        }
    };
    let (a, b) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => {
            return Err(format!(
                "`{text}`: both ends of a range must be the same family"
            ));
        }
    };
    if a > b {
        return Err(format!(
            "`{text}`: the range's first address is after its last"
        ));
    }
    if b - a >= MAX_SOURCE_ADDRS as u128 {
        return Err(format!(
            "`{text}` names more than {MAX_SOURCE_ADDRS} addresses"
        ));
    }
    Ok((a..=b)
        .map(|n| match first {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        })
        .collect())
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        Err(format!("`{text}` must be longer than zero"))
    } else {
        Ok(duration)
    }
}
