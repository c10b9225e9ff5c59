//! `POST /api/v1/repository/gc`: a garbage collection job. It runs alongside backups
//! (docs/FORMAT.md, "Garbage collection and concurrent backups"); delete and prune jobs
//! run one too, after they delete.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use strata_core::errors::ErrorCode;
use strata_jobs::enqueue::JobRequest;
use utoipa::ToSchema;
use uuid::Uuid;

use super::backups::enqueue;
use super::jobs::status_url;
use crate::error::{ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// A garbage collection job was accepted: poll `status_url`; its `result` is the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct GcAccepted {
    pub job_id: Uuid,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    pub status_url: String,
}

/// Serializes the "is one queued or running?" check with the insert ("STRATAGQ").
const ENQUEUE_LOCK: i64 = 0x5354_5241_5441_4751;

/// Queues a garbage collection: packs no backup references are deleted, packs mostly
/// dead are repacked. Backups keep running meanwhile.
#[utoipa::path(
    post,
    path = "/api/v1/repository/gc",
    tag = "repository",
    responses(
        (status = 202, description = "Accepted: the garbage collection job is queued", body = GcAccepted),
        (status = 409, description = "A garbage collection, delete or prune job is already queued or running (`job_in_progress`, with `job_id` and `job_kind`)", body = ErrorBody),
    ),
)]
pub async fn gc(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut tx = state.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ENQUEUE_LOCK)
        .execute(&mut *tx)
        .await?;
    let busy: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT id, kind FROM jobs WHERE status IN ('queued', 'running')
           AND kind IN ('gc', 'delete', 'prune') ORDER BY created_at LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, kind)) = busy {
        return Err(ApiError::new(
            ErrorCode::JobInProgress,
            format!("a {kind} job is already queued or running; it collects garbage too"),
        )
        .with("job_id", id.to_string())
        .with("job_kind", kind));
    }
    let job_id = Uuid::now_v7();
    enqueue(&state, &mut tx, job_id, JobRequest::Gc).await?;
    tx.commit().await?;
    tracing::info!(%job_id, "garbage collection accepted");
    Ok(HttpResponse::Accepted().json(GcAccepted {
        job_id,
        status: "queued".into(),
        status_url: status_url(job_id),
    }))
}
