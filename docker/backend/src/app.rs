//! Shared state, the router and the cross-cutting middleware (metrics, `X-Instance`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use deadpool_postgres::Pool;
use redis::aio::ConnectionManager;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes;

pub struct AppState {
    pub config: Config,
    pub db: Pool,
    pub redis: ConnectionManager,
    pub metrics: Metrics,
    /// One segment's worth of bytes, built once and shared by every segment response.
    pub segment: Bytes,
    /// Set on SIGTERM: `/health/ready` turns 503 while in-flight requests drain.
    pub draining: AtomicBool,
    pub instance_header: HeaderValue,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(config: Config, db: Pool, redis: ConnectionManager) -> Self {
        // A recognisable, non-compressible-looking pattern: byte i is i mod 251.
        let segment = Bytes::from(
            (0..config.segment_bytes)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        let metrics = Metrics::new(&config.instance_name);
        let instance_header = HeaderValue::from_str(&config.instance_name)
            .expect("INSTANCE_NAME validated as a token");
        AppState {
            config,
            db,
            redis,
            metrics,
            segment,
            draining: AtomicBool::new(false),
            instance_header,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(routes::health::router())
        .merge(routes::members::router())
        .merge(routes::session::router())
        .merge(routes::courses::router())
        .merge(routes::video::router())
        .merge(routes::payments::router())
        .merge(routes::ayni::router())
        .merge(routes::stats::router())
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request per route template, and stamps `X-Instance`.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    state.metrics.in_flight().inc();
    let mut response = next.run(request).await;
    state.metrics.in_flight().dec();
    if route != "/metrics" {
        state.metrics.record_request(
            &route,
            &method,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
        .headers_mut()
        .insert("x-instance", state.instance_header.clone());
    response
}

/// The member a request acts as, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: i64,
}

impl FromRequestParts<Shared> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let client = state.db.get().await?;
        let sql = state.metrics.sql("SELECT id FROM members WHERE token = $1");
        let row = client.query_opt(sql, &[&token]).await?;
        let member = row
            .map(|r| Member { id: r.get(0) })
            .ok_or(ApiError::Unauthorized)?;
        state.metrics.seen(member.id);
        Ok(member)
    }
}
