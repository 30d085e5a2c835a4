//! Payments: create (honouring `Idempotency-Key`) and confirm (charges at most once).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{insert_json, one_json};
use crate::app::{Member, Shared};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Business;

/// The test card that is always declined (as in most payment sandboxes).
pub const DECLINED_CARD: &str = "4000000000000002";
const DEFAULT_CARD: &str = "4242424242424242";

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/payments", post(create))
        .route("/api/payments/{id}", get(read))
        .route("/api/payments/{id}/confirm", post(confirm))
}

const PAYMENT_JSON: &str = "jsonb_build_object('id', p.id, 'member_id', p.member_id, 'course_id', p.course_id,
    'amount_cents', p.amount_cents, 'card_last4', right(p.card, 4), 'status', p.status,
    'idempotency_key', p.idempotency_key, 'created_at', p.created_at,
    'charges', (SELECT count(*) FROM charges c WHERE c.payment_id = p.id),
    'charged_cents', (SELECT coalesce(sum(amount_cents), 0) FROM charges c WHERE c.payment_id = p.id))";

#[derive(Deserialize)]
struct NewPayment {
    course_id: i32,
    amount_cents: Option<i32>,
    card: Option<String>,
}

/// Creates a pending payment. With an `Idempotency-Key`, the unique (member, key)
/// constraint decides the winner of concurrent retries: exactly one insert succeeds
/// (201), every other request gets that same payment back (200,
/// `Idempotent-Replayed: true`), or 422 if its body differs.
async fn create(
    State(state): State<Shared>,
    member: Member,
    headers: HeaderMap,
    Json(body): Json<NewPayment>,
) -> ApiResult<Response> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))?;
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::BadRequest(
                    "Idempotency-Key must be 1 to 255 characters".into(),
                ));
            }
            Some(k.to_string())
        }
    };
    let card = body.card.unwrap_or_else(|| DEFAULT_CARD.to_string());
    if card.len() < 4 || card.len() > 19 || !card.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest("card must be 4 to 19 digits".into()));
    }
    let mut client = state.db.get().await?;
    let price: i32 = client
        .query_opt(
            state
                .metrics
                .sql("SELECT price_cents FROM courses WHERE id = $1"),
            &[&body.course_id],
        )
        .await?
        .ok_or(ApiError::NotFound("course"))?
        .get(0);
    let amount = body.amount_cents.unwrap_or(price);
    if amount <= 0 {
        return Err(ApiError::BadRequest("amount_cents must be positive".into()));
    }
    let insert = format!(
        "WITH p AS (INSERT INTO payments (member_id, course_id, amount_cents, card, idempotency_key)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (member_id, idempotency_key) DO NOTHING RETURNING *)
         SELECT {PAYMENT_JSON} FROM p"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&member.id, &body.course_id, &amount, &card, &key];
    if let Some(payment) =
        insert_json(&mut client, "payment", state.metrics.sql(&insert), &params).await?
    {
        return Ok((StatusCode::CREATED, Json(payment)).into_response());
    }
    // The key was used before (or concurrently, and that insert has committed by now:
    // ON CONFLICT waits for it). Return the original if the request matches it.
    let sql = format!(
        "SELECT {PAYMENT_JSON}, p.course_id = $3 AND p.amount_cents = $4 AND p.card = $5
         FROM payments p WHERE p.member_id = $1 AND p.idempotency_key = $2"
    );
    let row = client
        .query_one(
            state.metrics.sql(&sql),
            &[&member.id, &key, &body.course_id, &amount, &card],
        )
        .await?;
    if !row.get::<_, bool>(1) {
        return Err(ApiError::KeyReused);
    }
    Ok((
        StatusCode::OK,
        [("idempotent-replayed", "true")],
        Json(row.get::<_, Value>(0)),
    )
        .into_response())
}

async fn read(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {PAYMENT_JSON} FROM payments p WHERE p.id = $1");
    one_json(&**client, state.metrics.sql(&sql), &[&id], "payment").await
}

/// Confirms a pending payment under a row lock: the first confirm charges (or declines),
/// later ones replay the outcome. The charges table's unique payment_id backs this up.
async fn confirm(
    State(state): State<Shared>,
    member: Member,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            state.metrics.sql("SELECT member_id, status, card, amount_cents FROM payments WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    let (owner, status, card, amount): (i64, String, String, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if owner != member.id {
        return Err(ApiError::Forbidden(
            "this payment belongs to another member".into(),
        ));
    }
    let mut outcome = None;
    if status == "pending" {
        if card == DECLINED_CARD {
            tx.execute(
                state
                    .metrics
                    .sql("UPDATE payments SET status = 'failed' WHERE id = $1"),
                &[&id],
            )
            .await?;
            outcome = Some(Business::PaymentFailed);
        } else {
            tx.execute(
                state.metrics.sql(
                    "INSERT INTO charges (payment_id, amount_cents) VALUES ($1, $2)
                 ON CONFLICT (payment_id) DO NOTHING",
                ),
                &[&id, &amount],
            )
            .await?;
            tx.execute(
                state
                    .metrics
                    .sql("UPDATE payments SET status = 'succeeded' WHERE id = $1"),
                &[&id],
            )
            .await?;
            outcome = Some(Business::PaymentSucceeded {
                amount_cents: i64::from(amount),
            });
        }
    }
    let sql = format!("SELECT {PAYMENT_JSON} FROM payments p WHERE p.id = $1");
    let body: Value = tx.query_one(state.metrics.sql(&sql), &[&id]).await?.get(0);
    tx.commit().await?;
    if let Some(outcome) = outcome {
        state.metrics.count(outcome);
    }
    if body["status"] == "failed" {
        return Err(ApiError::PaymentDeclined(body));
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}
