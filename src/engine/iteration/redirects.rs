//! A step's request on the wire: sent, its redirects followed hop by hop under the
//! allow-lists with cookies carried both ways, and a request the server provably did not
//! process sent once more.

use bytes::Bytes;
use http::Request;
use tokio::time::Instant;

use super::{IterationValues, Session, WorkerContext};
use crate::engine::http::{Failure, Origin, Response, Route};
use crate::engine::request::{RequestTemplate, render_target};
use crate::metrics::ErrorClass;
use crate::plan::{BodyPlan, StepPlan};

/// Sends a step's request and follows its redirects (up to `[target] redirects`, each hop
/// checked against the allow-lists), carrying cookies both ways; returns the final
/// response. Every hop is counted as a request with outcome `redirect`; a step whose
/// `expect` names the 3xx is not followed. A request the server provably did not process
/// (`Failure::unprocessed`: a stream above a GOAWAY's last id, a refused stream, an
/// idempotent request on a kept-alive connection closed under it) is sent once more on a
/// fresh connection, as every client does, and counted `retried_unprocessed`: it stays one
/// request with one outcome, its latency running from the intended start. The caller
/// records the final outcome.
pub(super) async fn follow(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &mut IterationValues<'_>,
    session: &mut Session,
    route: Route,
    second: u64,
) -> Result<Response, Failure> {
    let base = &ctx.client.config.origin;
    let mut origin: Option<Origin> = None;
    // The redirect hop being sent (`None`: the step's own request).
    let mut hop: Option<Hop> = None;
    let mut hops = 0;
    let mut retried = false;
    loop {
        // Built for each send (a retry too), so nothing is cloned on the way.
        let mut request = hop_request(ctx, step, values, hop.as_ref())?;
        let at = origin.as_ref().unwrap_or(base);
        let url = add_cookies(session, at, &mut request);
        let sent = ctx
            .client
            .send(
                &mut session.held,
                route,
                origin.as_ref(),
                request,
                step.keeps_body,
                retried,
            )
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(failure) if failure.unprocessed && !retried => {
                retried = true;
                ctx.recorder
                    .borrow_mut()
                    .retried_unprocessed(step.global_index, second);
                continue;
            }
            Err(failure) => return Err(failure),
        };
        // The request went into `send`; its path is needed again only for a cookie or a
        // redirect, so it is rendered again then rather than kept for every request.
        let sent_path = |values: &IterationValues<'_>| match &hop {
            Some(hop) => hop.path.clone(),
            None => render_path(ctx, step, values),
        };
        if let Some(jar) = &mut session.jar
            && response.headers.contains_key(http::header::SET_COOKIE)
            && let Some(url) = url.clone().or_else(|| request_url(at, &sent_path(values)))
            && jar.store(&response.headers, &url)
        {
            values.refresh_cookies(ctx, session);
        }
        let status = response.status.as_u16();
        if !is_redirect(status) || step.expect.matches(status) || hops >= ctx.plan.target.redirects
        {
            return Ok(response);
        }
        let Some(location) = response
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(response);
        };
        let from = request_url(at, &sent_path(values)).ok_or(ErrorClass::Io)?;
        // A hop outside the allow-list is this response's failure: nothing more is sent.
        let (next, next_path) = redirect_target(ctx, &from, location).map_err(|class| {
            Failure::because(class, format!("a redirect to {location} was not followed (outside the allow-list, or not http/https)"))
        })?;
        ctx.recorder
            .borrow_mut()
            .redirect(step.global_index, second, Instant::now());
        hops += 1;
        retried = false;
        let as_get = next_as_get(hop.as_ref(), step, status);
        hop = Some(Hop {
            path: next_path,
            as_get,
        });
        origin = (!next.same_as(base)).then_some(next);
    }
}

/// Puts the jar's cookies for where `request` goes on it. Returns the URL it goes to when
/// the jar holds a cookie (`None`: no jar, or an empty one).
fn add_cookies(session: &Session, at: &Origin, request: &mut Request<Bytes>) -> Option<url::Url> {
    let url = match &session.jar {
        Some(jar) if !jar.is_empty() => request_url(at, request_path(request)),
        _ => None,
    };
    if let (Some(jar), Some(url)) = (&session.jar, &url)
        && let Some(cookies) = jar.header(url)
    {
        request.headers_mut().insert(http::header::COOKIE, cookies);
    }
    url
}

/// Whether the next hop goes as a GET without a body: 303 (and 301/302 after a POST, as
/// browsers do) turn the request into one; 307 and 308 repeat it as it was.
fn next_as_get(hop: Option<&Hop>, step: &StepPlan, status: u16) -> bool {
    let was_get = hop.is_some_and(|h| h.as_get);
    let method = if was_get {
        &http::Method::GET
    } else {
        &step.method
    };
    was_get
        || status == 303 && method != http::Method::HEAD
        || matches!(status, 301 | 302) && method == http::Method::POST
}

/// A redirect hop: where it goes, and whether it became a GET without a body.
pub(super) struct Hop {
    path: String,
    as_get: bool,
}

/// The request of a step, or of one of its redirect hops.
pub(super) fn hop_request(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &IterationValues<'_>,
    hop: Option<&Hop>,
) -> Result<Request<Bytes>, ErrorClass> {
    let mut request = build_request(ctx, step, values)?;
    let Some(hop) = hop else {
        return Ok(request);
    };
    *request.uri_mut() =
        http::Uri::from_maybe_shared(Bytes::from(hop.path.clone())).map_err(|_| ErrorClass::Io)?;
    if hop.as_get {
        *request.method_mut() = http::Method::GET;
        *request.body_mut() = Bytes::new();
        request.headers_mut().remove(http::header::CONTENT_TYPE);
        request.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    Ok(request)
}

pub(super) fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

pub(super) fn request_path(request: &Request<Bytes>) -> &str {
    request.uri().path_and_query().map_or("/", |p| p.as_str())
}

/// The URL a request goes to, for the cookie jar's domain and path rules.
pub(super) fn request_url(origin: &Origin, path: &str) -> Option<url::Url> {
    let authority = origin.authority.to_str().ok()?;
    url::Url::parse(&format!("{}://{authority}{path}", origin.scheme())).ok()
}

/// Where a `Location` leads: its origin (checked against the scenario's allow-list and the
/// operator policy, resolved here so a refused host is never connected to) and the
/// path-and-query to ask for there.
pub(super) fn redirect_target(
    ctx: &WorkerContext,
    from: &url::Url,
    location: &str,
) -> Result<(Origin, String), ErrorClass> {
    let next = from
        .join(location)
        .map_err(|_| ErrorClass::RedirectRefused)?;
    let tls = match next.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(ErrorClass::RedirectRefused),
    };
    let host = match next.host().ok_or(ErrorClass::RedirectRefused)? {
        url::Host::Ipv6(ip) => ip.to_string(),
        other => other.to_string(),
    };
    let port = next
        .port_or_known_default()
        .ok_or(ErrorClass::RedirectRefused)?;
    let base = &ctx.client.config.origin;
    let addr = if base.is(tls, &host, port) {
        base.addr
    } else {
        let target = &ctx.plan.target;
        let addr = target
            .allow
            .resolve(&host, port)
            .map_err(|_| ErrorClass::RedirectRefused)?;
        if let Some((policy, _)) = &target.policy_allow {
            policy
                .resolve(&host, port)
                .map_err(|_| ErrorClass::RedirectRefused)?;
        }
        addr
    };
    let origin = Origin::new(tls, &host, port, addr).map_err(|_| ErrorClass::RedirectRefused)?;
    let mut path = next.path().to_string();
    if let Some(query) = next.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok((origin, path))
}

/// The step's path as `build_request` renders it (prefix included).
fn render_path(ctx: &WorkerContext, step: &StepPlan, values: &IterationValues<'_>) -> String {
    String::from_utf8_lossy(&render_target(&ctx.prefix, &step.path, values)).into_owned()
}

/// The step's request, rendered by the one request path verification uses too.
fn build_request(
    ctx: &WorkerContext,
    step: &StepPlan,
    values: &IterationValues<'_>,
) -> Result<Request<Bytes>, ErrorClass> {
    let body = match &step.body {
        BodyPlan::None => Bytes::new(),
        BodyPlan::Raw(t) | BodyPlan::Json(t) | BodyPlan::Form(t) => Bytes::from(t.render(values)),
    };
    RequestTemplate {
        method: &step.method,
        prefix: &ctx.prefix,
        path: &step.path,
        target_headers: &ctx.plan.target.headers,
        headers: &step.headers,
    }
    .render(values, body)
    .map_err(|_| ErrorClass::InvalidRequest)
}
