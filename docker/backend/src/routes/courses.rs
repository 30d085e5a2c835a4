//! Courses (the list is cached in Redis) and enrolments.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::AsyncCommands;
use serde_json::Value;

use super::{insert_json, one_json};
use crate::app::{Member, Shared};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Business;

/// Redis key of the cached course list, and how long it lives.
const CACHE_KEY: &str = "platform:courses:v1";
const CACHE_TTL_SECS: u64 = 30;
/// A slow Redis must not make the course list slow: past this, read Postgres instead.
const CACHE_TIMEOUT: Duration = Duration::from_millis(250);

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/courses", get(list))
        .route("/api/courses/{id}", get(read))
        .route("/api/courses/{id}/enrolments", post(enrol))
        .route("/api/enrolments/{id}", get(read_enrolment))
}

/// The course list, from Redis when cached (`X-Cache: hit`), else from Postgres
/// (`X-Cache: miss`, then cached). Redis being down degrades to `X-Cache: bypass`, counted
/// as a miss: the cache did not serve the read.
async fn list(State(state): State<Shared>) -> ApiResult<Response> {
    let mut redis = state.redis.clone();
    let cached: Result<Result<Option<String>, _>, _> =
        tokio::time::timeout(CACHE_TIMEOUT, redis.get(CACHE_KEY)).await;
    let redis_ok = match cached {
        Ok(Ok(Some(body))) => {
            state.metrics.cache(true);
            return Ok(json_response(body, "hit"));
        }
        Ok(Ok(None)) => true,
        _ => false,
    };
    state.metrics.cache(false);
    let client = state.db.get().await?;
    let row = client
        .query_one(
            state.metrics.sql(
                "SELECT jsonb_build_object('courses', coalesce(jsonb_agg(jsonb_build_object(
                 'id', id, 'title', title, 'price_cents', price_cents) ORDER BY id), '[]'::jsonb))
             FROM courses",
            ),
            &[],
        )
        .await?;
    let body = row.get::<_, Value>(0).to_string();
    if redis_ok {
        let _: Result<Result<(), _>, _> = tokio::time::timeout(
            CACHE_TIMEOUT,
            redis.set_ex(CACHE_KEY, &body, CACHE_TTL_SECS),
        )
        .await;
        Ok(json_response(body, "miss"))
    } else {
        Ok(json_response(body, "bypass"))
    }
}

fn json_response(body: String, cache: &'static str) -> Response {
    (
        [("content-type", "application/json"), ("x-cache", cache)],
        body,
    )
        .into_response()
}

async fn read(State(state): State<Shared>, Path(id): Path<i32>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    one_json(
        &**client,
        state.metrics.sql(
            "SELECT jsonb_build_object('id', c.id, 'title', c.title, 'price_cents', c.price_cents,
             'lessons', (SELECT coalesce(jsonb_agg(l.id ORDER BY l.id), '[]'::jsonb)
                         FROM lessons l WHERE l.course_id = c.id))
         FROM courses c WHERE c.id = $1",
        ),
        &[&id],
        "course",
    )
    .await
}

const ENROLMENT_JSON: &str = "jsonb_build_object('id', id, 'member_id', member_id, 'course_id', course_id, 'created_at', created_at)";

/// Enrols the caller. The unique (member, course) constraint makes a second enrolment
/// a 409 even when both arrive at once on different instances.
async fn enrol(
    State(state): State<Shared>,
    member: Member,
    Path(course): Path<i32>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut client = state.db.get().await?;
    let exists = client
        .query_opt(
            state.metrics.sql("SELECT 1 FROM courses WHERE id = $1"),
            &[&course],
        )
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound("course"));
    }
    let sql = format!(
        "INSERT INTO enrolments (member_id, course_id) VALUES ($1, $2)
         ON CONFLICT (member_id, course_id) DO NOTHING RETURNING {ENROLMENT_JSON}"
    );
    match insert_json(
        &mut client,
        "enrolment",
        state.metrics.sql(&sql),
        &[&member.id, &course],
    )
    .await?
    {
        Some(enrolment) => {
            state.metrics.count(Business::Enrolment);
            Ok((StatusCode::CREATED, Json(enrolment)))
        }
        None => Err(ApiError::Conflict(format!(
            "member {} is already enrolled in course {course}",
            member.id
        ))),
    }
}

async fn read_enrolment(
    State(state): State<Shared>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {ENROLMENT_JSON} FROM enrolments WHERE id = $1");
    one_json(&**client, state.metrics.sql(&sql), &[&id], "enrolment").await
}
