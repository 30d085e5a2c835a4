//! What the database holds, in totals: a drill harness compares them with the writes it
//! was acknowledged, and checks that Ayni credits were only ever moved.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::app::Shared;
use crate::db::STARTING_BALANCE;
use crate::error::ApiResult;

pub fn router() -> Router<Shared> {
    Router::new().route("/api/stats", get(stats))
}

/// One statement, so every total comes from the same snapshot (a confirm that commits
/// meanwhile is either in all of them or in none). `issued` is what member creation put
/// into circulation, the only place balance is made; `drift` is 0 unless balance was
/// created or destroyed. `sum` of a bigint is numeric: cast back so every total is a
/// bigint, a plain JSON integer.
const STATS_SQL: &str = "
    SELECT jsonb_build_object(
        'members', m.members,
        'enrolments', (SELECT count(*) FROM enrolments),
        'payments', (SELECT count(*) FROM payments),
        'charges', (SELECT count(*) FROM charges),
        'exchanges', (SELECT count(*) FROM exchanges),
        'exchanges_confirmed', (SELECT count(*) FROM exchanges WHERE status = 'confirmed'),
        'ayni', jsonb_build_object(
            'credits', m.credits,
            'issued', m.issued,
            'drift', m.credits - m.issued))
    FROM (SELECT count(*) AS members,
                 coalesce(sum(balance), 0)::bigint AS credits,
                 count(*) * $1::bigint AS issued
          FROM members) m";

async fn stats(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let row = client
        .query_one(state.metrics.sql(STATS_SQL), &[&STARTING_BALANCE])
        .await?;
    Ok(Json(row.get(0)))
}
