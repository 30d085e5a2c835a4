//! HTTP handlers, one module per concern. Handlers build their JSON in SQL
//! (`jsonb_build_object`) so what is returned is exactly what is stored.

pub mod ayni;
pub mod courses;
pub mod health;
pub mod members;
pub mod payments;
pub mod session;
pub mod video;

use axum::Json;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Runs a query that returns one JSON column in at most one row.
pub async fn one_json(
    client: &impl tokio_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &'static str,
) -> ApiResult<Json<Value>> {
    let row = client.query_opt(sql, params).await?;
    row.map(|r| Json(r.get::<_, Value>(0)))
        .ok_or(ApiError::NotFound(what))
}
