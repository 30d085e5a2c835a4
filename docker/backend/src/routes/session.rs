//! Browser sign-in: a member's id and token are exchanged for a session cookie, kept in
//! Redis for an hour; `GET /api/me` needs the cookie, not a bearer token.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::Value;

use super::members::MEMBER_JSON;
use super::one_json;
use crate::app::Shared;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Business;

/// The cookie's name, and how long a session lives (the cookie's Max-Age and the Redis TTL).
pub const COOKIE: &str = "session";
pub const SESSION_TTL_SECS: u64 = 3600;
/// Redis keys of sessions: this prefix and the token; the value is the member id.
const KEY_PREFIX: &str = "platform:session:v1:";
/// Beside each session, when it began (Unix milliseconds), for the session duration a
/// sign-out observes: sign-in and sign-out may reach different instances.
const STARTED_PREFIX: &str = "platform:session-started:v1:";
/// A session store that does not answer within this is down (503), not "signed out".
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/session", post(sign_in).delete(sign_out))
        .route("/api/me", get(me))
}

#[derive(Deserialize)]
struct SignIn {
    member_id: i64,
    token: String,
}

/// 201 with the member and `Set-Cookie: session=…` when the id and token belong together;
/// 401 otherwise (the same answer for an unknown member and a wrong token).
async fn sign_in(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<SignIn>,
) -> ApiResult<Response> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {MEMBER_JSON} FROM members WHERE id = $1 AND token = $2");
    let Some(row) = client
        .query_opt(
            state.metrics.sql(&sql),
            &[&body.member_id, &body.token.trim()],
        )
        .await?
    else {
        state.metrics.count(Business::SignInRejected);
        return Err(ApiError::BadCredentials);
    };
    let member: Value = row.get(0);
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut redis = state.redis.clone();
    let stored: Result<Result<(), _>, _> = tokio::time::timeout(
        REDIS_TIMEOUT,
        redis::pipe()
            .atomic()
            .set_ex(key(&token), body.member_id, SESSION_TTL_SECS)
            .ignore()
            .set_ex(started_key(&token), unix_ms(), SESSION_TTL_SECS)
            .ignore()
            .query_async(&mut redis),
    )
    .await;
    redis_answer(stored)?;
    state.metrics.count(Business::SignedIn);
    let cookie = cookie(&headers, &token, SESSION_TTL_SECS);
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(member),
    )
        .into_response())
}

/// 204, the session gone from Redis and the cookie expired; also without a session (idempotent).
async fn sign_out(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = session_token(&headers) {
        let mut redis = state.redis.clone();
        let removed: Result<Result<(Option<u64>, usize), _>, _> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::pipe()
                .atomic()
                .get(started_key(token))
                .del(key(token))
                .del(started_key(token))
                .ignore()
                .query_async(&mut redis),
        )
        .await;
        let (started, removed) = redis_answer(removed)?;
        if removed > 0 {
            let session = started.map(|at| Duration::from_millis(unix_ms().saturating_sub(at)));
            state.metrics.count(Business::SignedOut { session });
        }
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(&headers, "", 0))],
    )
        .into_response())
}

/// The signed-in member (200), from the session cookie alone.
async fn me(State(state): State<Shared>, session: Session) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {MEMBER_JSON} FROM members WHERE id = $1");
    one_json(
        &**client,
        state.metrics.sql(&sql),
        &[&session.member_id],
        "member",
    )
    .await
}

/// The member a request's session cookie signs in; 401 without a live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub member_id: i64,
}

impl FromRequestParts<Shared> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = session_token(&parts.headers).ok_or(ApiError::NotSignedIn)?;
        let mut redis = state.redis.clone();
        let found: Result<Result<Option<i64>, _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, redis.get(key(token))).await;
        let session = redis_answer(found)?
            .map(|member_id| Session { member_id })
            .ok_or(ApiError::NotSignedIn)?;
        state.metrics.seen(session.member_id);
        Ok(session)
    }
}

fn key(token: &str) -> String {
    format!("{KEY_PREFIX}{token}")
}

fn started_key(token: &str) -> String {
    format!("{STARTED_PREFIX}{token}")
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A Redis answer, or 503: a session store that is down or slow is not a signed-out user.
fn redis_answer<T, E: std::fmt::Display>(
    answer: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> ApiResult<T> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("redis: {e}"))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "redis: no answer within {REDIS_TIMEOUT:?}"
        ))),
    }
}

/// The `session` cookie's value, if the request carries one that could be ours (64 lowercase
/// hex digits); anything else is no session. Every `Cookie` header is read (HTTP/2 clients
/// may send one per cookie).
fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| v.len() == 64 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The `Set-Cookie` value: `Secure` when the request came over TLS (nginx says so in
/// `X-Forwarded-Proto`; the backends are only reachable through it and on loopback).
fn cookie(headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/api; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("a cookie of hex digits and fixed attributes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[
            ("cookie", "theme=dark"),
            (
                "cookie",
                "a=1; session=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ]);
        assert_eq!(session_token(&h), Some(TOKEN));
        assert_eq!(session_token(&headers(&[("cookie", "session=nope")])), None);
        assert_eq!(session_token(&headers(&[("cookie", "xsession=1")])), None);
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn the_cookie_is_secure_only_over_tls() {
        let plain = cookie(&HeaderMap::new(), TOKEN, 3600);
        assert_eq!(
            plain.to_str().unwrap(),
            format!("session={TOKEN}; Path=/api; HttpOnly; SameSite=Lax; Max-Age=3600")
        );
        let tls = cookie(&headers(&[("x-forwarded-proto", "https")]), "", 0);
        assert_eq!(
            tls.to_str().unwrap(),
            "session=; Path=/api; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
        );
    }
}
