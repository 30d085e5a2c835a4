//! One error type for every handler, mapped to a status code and a JSON body
//! `{"error": "<code>", "message": "<text>"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(String),
    /// 401: no or unknown bearer token.
    Unauthorized,
    /// 401: no live session cookie.
    NotSignedIn,
    /// 401: sign-in with a member id and token that do not belong together.
    BadCredentials,
    /// 402: the payment was declined.
    PaymentDeclined(serde_json::Value),
    /// 403: authenticated, but not allowed to act on this resource.
    Forbidden(String),
    /// 404: no such resource.
    NotFound(&'static str),
    /// 409: the resource is in a state that forbids the request.
    Conflict(String),
    /// 422: an idempotency key was reused with a different request.
    KeyReused,
    /// 503: a dependency (Postgres, Redis) did not answer.
    Unavailable(String),
    /// 500: anything else.
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid `Authorization: Bearer <token>` header is required".into(),
            ),
            ApiError::NotSignedIn => (
                StatusCode::UNAUTHORIZED,
                "not_signed_in",
                "a valid session cookie is required: sign in with POST /api/session".into(),
            ),
            ApiError::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "no member has this member_id and token".into(),
            ),
            ApiError::PaymentDeclined(body) => {
                return (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response();
            }
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request".into(),
            ),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        let body = serde_json::json!({ "error": code, "message": message });
        (status, Json(body)).into_response()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A closed connection means Postgres went away: a retryable 503, not a bug.
        use tokio_postgres::error::SqlState;
        if e.is_closed() || e.as_db_error().is_none() {
            ApiError::Unavailable(format!("postgres: {e}"))
        } else if matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ) {
            // Postgres rolled the transaction back because it raced another one: nothing
            // changed, and the client may simply retry.
            ApiError::Conflict(format!(
                "concurrent update, nothing was changed; retry: {e}"
            ))
        } else {
            ApiError::Internal(format!("postgres: {e}"))
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("postgres pool: {e}"))
    }
}
