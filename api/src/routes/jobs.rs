//! `/api/v1/jobs/{id}` and `/api/v1/backup/restore/{job_id}/status`: what clients poll.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use strata_shared::db;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct ProgressView {
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub files_done: i64,
    pub files_total: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct JobView {
    pub job_id: Uuid,
    pub kind: String,
    pub status: String,
    pub phase: Option<String>,
    pub progress: ProgressView,
    pub source_id: Option<Uuid>,
    pub backup_id: Option<String>,
    pub attempts: i32,
    pub error: Option<serde_json::Value>,
    pub warnings: Vec<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
}

impl From<db::jobs::JobRow> for JobView {
    fn from(j: db::jobs::JobRow) -> Self {
        Self {
            job_id: j.id,
            kind: j.kind,
            status: j.status,
            phase: j.phase,
            progress: ProgressView {
                bytes_done: j.bytes_done,
                bytes_total: j.bytes_total,
                files_done: j.files_done,
                files_total: j.files_total,
            },
            source_id: j.source_id,
            backup_id: j.backup_id,
            attempts: j.attempts,
            error: j.error.map(|e| e.0),
            warnings: j.warnings.0,
            result: j.result.map(|r| r.0),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            trace_id: j.trace_id,
        }
    }
}

pub fn status_url(job_id: Uuid) -> String {
    format!("/api/v1/backup/restore/{job_id}/status")
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let not_found = || ApiError::not_found("job_not_found", format!("no job {:?}", path.as_str()));
    let id = Uuid::parse_str(&path).map_err(|_| not_found())?;
    let mut conn = state.pool.acquire().await?;
    let job = db::jobs::get(&mut conn, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}
