//! Liveness, readiness and the Prometheus scrape endpoint.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::Shared;

/// A dependency that does not answer within this is reported as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
}

async fn live(State(state): State<Shared>) -> impl IntoResponse {
    Json(json!({ "status": "live", "instance": state.config.instance_name }))
}

/// 200 only when Postgres and Redis both answer and the instance is not draining.
async fn ready(State(state): State<Shared>) -> impl IntoResponse {
    let postgres = async {
        let client = state.db.get().await.map_err(|e| e.to_string())?;
        client
            .query_one(state.metrics.sql("SELECT 1"), &[])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let redis = async {
        let mut conn = state.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, postgres),
        tokio::time::timeout(CHECK_TIMEOUT, redis)
    );
    let describe = |r: Result<Result<(), String>, _>| match r {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_string(),
    };
    let (postgres, redis) = (describe(postgres), describe(redis));
    let draining = state.is_draining();
    let ok = postgres == "ok" && redis == "ok" && !draining;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "instance": state.config.instance_name,
        "postgres": postgres,
        "redis": redis,
        "draining": draining,
    });
    (status, Json(body))
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(connections_in_use(&state.db)),
    )
}

/// Pool connections handed out right now: created, less those idle in the pool.
fn connections_in_use(pool: &deadpool_postgres::Pool) -> usize {
    let status = pool.status();
    status.size.saturating_sub(status.available)
}
