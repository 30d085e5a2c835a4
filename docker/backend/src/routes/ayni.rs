//! Ayni reciprocity exchanges: a provider offers a service for `amount` credits, the
//! receiver accepts, then either party confirms and the credits move from receiver to
//! provider in one transaction. Balance is only ever moved, never created or destroyed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::one_json;
use crate::app::{Member, Shared};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Business;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/ayni/exchanges", post(offer))
        .route("/api/ayni/exchanges/{id}", get(read))
        .route("/api/ayni/exchanges/{id}/accept", post(accept))
        .route("/api/ayni/exchanges/{id}/confirm", post(confirm))
}

const EXCHANGE_JSON: &str = "jsonb_build_object('id', e.id, 'provider_id', e.provider_id,
    'receiver_id', e.receiver_id, 'amount', e.amount, 'description', e.description,
    'status', e.status, 'created_at', e.created_at, 'updated_at', e.updated_at)";

#[derive(Deserialize)]
struct Offer {
    receiver_id: i64,
    amount: i64,
    #[serde(default)]
    description: String,
}

async fn offer(
    State(state): State<Shared>,
    member: Member,
    Json(body): Json<Offer>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.amount <= 0 || body.amount > 1_000_000 {
        return Err(ApiError::BadRequest(
            "amount must be between 1 and 1000000".into(),
        ));
    }
    if body.receiver_id == member.id {
        return Err(ApiError::BadRequest(
            "a member cannot exchange with themself".into(),
        ));
    }
    let client = state.db.get().await?;
    if client
        .query_opt(
            state.metrics.sql("SELECT 1 FROM members WHERE id = $1"),
            &[&body.receiver_id],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("receiver"));
    }
    let sql = format!(
        "WITH e AS (INSERT INTO exchanges (provider_id, receiver_id, amount, description)
                    VALUES ($1, $2, $3, $4) RETURNING *)
         SELECT {EXCHANGE_JSON} FROM e"
    );
    let row = client
        .query_one(
            state.metrics.sql(&sql),
            &[
                &member.id,
                &body.receiver_id,
                &body.amount,
                &body.description,
            ],
        )
        .await?;
    state.metrics.count(Business::ExchangeOffered);
    Ok((StatusCode::CREATED, Json(row.get(0))))
}

async fn read(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {EXCHANGE_JSON} FROM exchanges e WHERE e.id = $1");
    one_json(&**client, state.metrics.sql(&sql), &[&id], "exchange").await
}

/// The receiver accepts an offer. Accepting twice is harmless (200, same exchange).
async fn accept(
    State(state): State<Shared>,
    member: Member,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            state
                .metrics
                .sql("SELECT receiver_id, status FROM exchanges WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("exchange"))?;
    let (receiver, status): (i64, String) = (row.get(0), row.get(1));
    if receiver != member.id {
        return Err(ApiError::Forbidden(
            "only the receiver can accept an exchange".into(),
        ));
    }
    let mut accepted_now = false;
    match status.as_str() {
        "offered" => {
            tx.execute(
                state.metrics.sql(
                    "UPDATE exchanges SET status = 'accepted', updated_at = now() WHERE id = $1",
                ),
                &[&id],
            )
            .await?;
            accepted_now = true;
        }
        "accepted" => {}
        other => {
            return Err(ApiError::Conflict(format!(
                "exchange is {other}, not offered"
            )));
        }
    }
    let sql = format!("SELECT {EXCHANGE_JSON} FROM exchanges e WHERE e.id = $1");
    let body: Value = tx.query_one(state.metrics.sql(&sql), &[&id]).await?.get(0);
    tx.commit().await?;
    if accepted_now {
        state.metrics.count(Business::ExchangeAccepted);
    }
    Ok(Json(body))
}

/// Either party confirms an accepted exchange; credits move receiver -> provider.
///
/// Lock order: the exchange row first, then both member rows in ascending id order
/// (`ORDER BY id FOR NO KEY UPDATE`: that lock does not conflict with the
/// KEY SHARE locks foreign-key checks take when offers insert exchanges, so offers and
/// confirms cannot deadlock), so concurrent confirms touching the same members can
/// never wait on each other in a cycle. Confirming twice replays the result.
async fn confirm(
    State(state): State<Shared>,
    member: Member,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            state.metrics.sql("SELECT provider_id, receiver_id, amount, status FROM exchanges WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("exchange"))?;
    let (provider, receiver, amount, status): (i64, i64, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if member.id != provider && member.id != receiver {
        return Err(ApiError::Forbidden(
            "only the two parties can confirm an exchange".into(),
        ));
    }
    let mut confirmed_now = false;
    match status.as_str() {
        "accepted" => {
            let rows = tx
                .query(
                    state.metrics.sql("SELECT id, balance FROM members WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE"),
                    &[&vec![provider, receiver]],
                )
                .await?;
            let receiver_balance: i64 = rows
                .iter()
                .find(|r| r.get::<_, i64>(0) == receiver)
                .map(|r| r.get(1))
                .ok_or(ApiError::NotFound("receiver"))?;
            if receiver_balance < amount {
                return Err(ApiError::Conflict(format!(
                    "insufficient balance: receiver has {receiver_balance}, exchange needs {amount}"
                )));
            }
            tx.execute(
                state.metrics.sql("UPDATE members SET balance = balance + CASE WHEN id = $1 THEN $3::bigint ELSE -$3::bigint END
                 WHERE id IN ($1, $2)"),
                &[&provider, &receiver, &amount],
            )
            .await?;
            tx.execute(
                state.metrics.sql(
                    "UPDATE exchanges SET status = 'confirmed', updated_at = now() WHERE id = $1",
                ),
                &[&id],
            )
            .await?;
            confirmed_now = true;
        }
        "confirmed" => {}
        other => {
            return Err(ApiError::Conflict(format!(
                "exchange is {other}, not accepted"
            )));
        }
    }
    let sql = format!("SELECT {EXCHANGE_JSON} FROM exchanges e WHERE e.id = $1");
    let body: Value = tx.query_one(state.metrics.sql(&sql), &[&id]).await?.get(0);
    tx.commit().await?;
    if confirmed_now {
        state.metrics.count(Business::ExchangeConfirmed);
    }
    Ok(Json(body))
}
