//! HTTP handlers, one module per concern. Handlers build their JSON in SQL
//! (`jsonb_build_object`) so what is returned is exactly what is stored.

pub mod ayni;
pub mod courses;
pub mod health;
pub mod members;
pub mod payments;
pub mod session;
pub mod stats;
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

/// Runs `sql`, an `INSERT … RETURNING <json>` of at most one row that creates a `kind`
/// (`enrolment`, `payment`), and returns that JSON. In a test-only `lossy` build with
/// `LOSSY_WRITES` set, the insert may be rolled back and returned all the same.
pub async fn insert_json(
    client: &mut deadpool_postgres::Object,
    kind: &'static str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> ApiResult<Option<Value>> {
    #[cfg(feature = "lossy")]
    if let Some(lossy) = crate::lossy::active().filter(|l| l.drops_next()) {
        return lossy.insert_then_roll_back(client, kind, sql, params).await;
    }
    // Only the lossy mode says what it lost.
    #[cfg(not(feature = "lossy"))]
    let _ = kind;
    Ok(client.query_opt(sql, params).await?.map(|row| row.get(0)))
}
