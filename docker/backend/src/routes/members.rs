//! Members and their bearer tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::one_json;
use crate::app::{Member, Shared};
use crate::db::STARTING_BALANCE;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Business;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/members", post(create))
        .route("/api/members/me", get(me))
        .route("/api/members/{id}", get(read))
        .route("/api/members/{id}/balance", get(balance))
}

#[derive(Deserialize)]
struct NewMember {
    name: String,
}

/// Public view of a member: never includes the token.
pub const MEMBER_JSON: &str =
    "jsonb_build_object('id', id, 'name', name, 'balance', balance, 'created_at', created_at)";

async fn create(
    State(state): State<Shared>,
    Json(body): Json<NewMember>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 200 characters".into(),
        ));
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let client = state.db.get().await?;
    let sql = format!(
        "INSERT INTO members (name, token, balance) VALUES ($1, $2, $3)
         RETURNING {MEMBER_JSON} || jsonb_build_object('auth', jsonb_build_object('token', token))"
    );
    let row = client
        .query_one(state.metrics.sql(&sql), &[&name, &token, &STARTING_BALANCE])
        .await?;
    state.metrics.count(Business::MemberCreated);
    Ok((StatusCode::CREATED, Json(row.get(0))))
}

async fn me(State(state): State<Shared>, member: Member) -> ApiResult<Json<Value>> {
    read(State(state), Path(member.id)).await
}

async fn read(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {MEMBER_JSON} FROM members WHERE id = $1");
    one_json(&**client, state.metrics.sql(&sql), &[&id], "member").await
}

async fn balance(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    one_json(
        &**client,
        state.metrics.sql("SELECT jsonb_build_object('member_id', id, 'balance', balance) FROM members WHERE id = $1"),
        &[&id],
        "member",
    )
    .await
}
