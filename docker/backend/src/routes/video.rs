//! Video lessons: a manifest, fixed-size segments, views and their heartbeats.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::one_json;
use crate::app::{Member, Shared};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Business;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/lessons/{id}/manifest", get(manifest))
        .route("/api/lessons/{id}/segments/{index}", get(segment))
        .route("/api/lessons/{id}/views", post(start_view))
        .route("/api/views/{id}", get(read_view))
        .route("/api/views/{id}/heartbeats", post(heartbeat))
}

async fn lesson_segments(state: &Shared, lesson: i32) -> ApiResult<(i32, i32)> {
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            state
                .metrics
                .sql("SELECT course_id, segments FROM lessons WHERE id = $1"),
            &[&lesson],
        )
        .await?
        .ok_or(ApiError::NotFound("lesson"))?;
    Ok((row.get(0), row.get(1)))
}

async fn manifest(State(state): State<Shared>, Path(lesson): Path<i32>) -> ApiResult<Json<Value>> {
    let (course, count) = lesson_segments(&state, lesson).await?;
    let segments: Vec<Value> = (0..count)
        .map(|i| json!({ "index": i, "url": format!("/api/lessons/{lesson}/segments/{i}"), "bytes": state.segment.len() }))
        .collect();
    Ok(Json(json!({
        "lesson_id": lesson,
        "course_id": course,
        "segment_bytes": state.segment.len(),
        "segment_count": count,
        "segments": segments,
    })))
}

async fn segment(
    State(state): State<Shared>,
    Path((lesson, index)): Path<(i32, i32)>,
) -> ApiResult<Response> {
    let (_, count) = lesson_segments(&state, lesson).await?;
    if !(0..count).contains(&index) {
        return Err(ApiError::NotFound("segment"));
    }
    Response::builder()
        .header("content-type", "video/mp2t")
        .header("cache-control", "public, max-age=3600")
        .body(Body::from(state.segment.clone()))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

const VIEW_JSON: &str =
    "jsonb_build_object('id', v.id, 'lesson_id', v.lesson_id, 'member_id', v.member_id,
    'created_at', v.created_at,
    'heartbeats', (SELECT count(*) FROM view_heartbeats h WHERE h.view_id = v.id),
    'last_position_s', (SELECT max(position_s) FROM view_heartbeats h WHERE h.view_id = v.id))";

async fn start_view(
    State(state): State<Shared>,
    member: Member,
    Path(lesson): Path<i32>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    lesson_segments(&state, lesson).await?;
    let client = state.db.get().await?;
    let sql = format!(
        "WITH v AS (INSERT INTO video_views (member_id, lesson_id) VALUES ($1, $2) RETURNING *)
         SELECT {VIEW_JSON} FROM v"
    );
    let row = client
        .query_one(state.metrics.sql(&sql), &[&member.id, &lesson])
        .await?;
    state.metrics.count(Business::VideoView);
    Ok((StatusCode::CREATED, Json(row.get(0))))
}

async fn read_view(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {VIEW_JSON} FROM video_views v WHERE v.id = $1");
    one_json(&**client, state.metrics.sql(&sql), &[&id], "view").await
}

#[derive(Deserialize)]
struct Heartbeat {
    position_s: i32,
}

async fn heartbeat(
    State(state): State<Shared>,
    member: Member,
    Path(view): Path<i64>,
    Json(body): Json<Heartbeat>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.position_s < 0 {
        return Err(ApiError::BadRequest("position_s must be >= 0".into()));
    }
    let client = state.db.get().await?;
    let owner: i64 = client
        .query_opt(
            state
                .metrics
                .sql("SELECT member_id FROM video_views WHERE id = $1"),
            &[&view],
        )
        .await?
        .ok_or(ApiError::NotFound("view"))?
        .get(0);
    if owner != member.id {
        return Err(ApiError::Forbidden(
            "this view belongs to another member".into(),
        ));
    }
    // The watch time this heartbeat reports: its position past the view's furthest before.
    let sql = state.metrics.sql(
        "WITH before AS (SELECT coalesce(max(position_s), 0) AS p FROM view_heartbeats
                         WHERE view_id = $1),
              h AS (INSERT INTO view_heartbeats (view_id, position_s) VALUES ($1, $2)
                    RETURNING *)
         SELECT jsonb_build_object('id', h.id, 'view_id', h.view_id,
                                   'position_s', h.position_s, 'created_at', h.created_at),
                before.p
         FROM h, before",
    );
    let row = client
        .query_one(state.metrics.sql(sql), &[&view, &body.position_s])
        .await?;
    let before: i32 = row.get(1);
    state
        .metrics
        .watched(f64::from(body.position_s.saturating_sub(before).max(0)));
    Ok((StatusCode::CREATED, Json(row.get(0))))
}
