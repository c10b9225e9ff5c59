//! `/api/v1/jobs…` and `/api/v1/backup/restore/{job_id}/status`: what clients poll, the
//! job list, and cancellation.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_auth::Role;
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use strata_core::model::{DeletePayload, ImportPayload, JobKind, JobStatus};
use strata_jobs::store::CancelOutcome;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas::{JobKindName, JobStatusName};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// How far a job got; totals are null until known.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub files_done: i64,
    pub files_total: Option<i64>,
}

/// A job: what clients poll.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: Uuid,
    #[schema(value_type = JobKindName)]
    pub kind: String,
    #[schema(value_type = JobStatusName)]
    pub status: String,
    /// What a running job is doing now (`scanning`, `uploading`…).
    pub phase: Option<String>,
    pub progress: ProgressView,
    pub source_id: Option<Uuid>,
    pub backup_id: Option<String>,
    pub attempts: i32,
    /// Why a failed job failed (`{code, message}`).
    pub error: Option<serde_json::Value>,
    pub warnings: Vec<serde_json::Value>,
    /// What a succeeded job produced, by kind: `BackupResult` (backup),
    /// `ImportResult` (import), `RestoreResult` (restore), `VerifyResult` (verify),
    /// `CollectResult` (delete, prune, gc).
    #[schema(value_type = Option<strata_jobs::results::JobOutput>)]
    pub result: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
    /// When a client asked the job to stop (it stops at its next checkpoint).
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The schedule that created this job, if one did.
    pub schedule_id: Option<Uuid>,
}

impl From<strata_jobs::store::JobRow> for JobView {
    fn from(j: strata_jobs::store::JobRow) -> Self {
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
            cancel_requested_at: j.cancel_requested_at,
            schedule_id: j.schedule_id,
        }
    }
}

pub fn status_url(job_id: Uuid) -> String {
    format!("/api/v1/backup/restore/{job_id}/status")
}

/// One job (also at `GET /api/v1/backup/restore/{job_id}/status`, the `status_url` of
/// every accepted job).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id (a UUID)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    ),
)]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let job = find_job(&mut conn, &path).await?;
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}

fn job_not_found(path: &str) -> ApiError {
    ApiError::new(ErrorCode::JobNotFound, format!("no job {path:?}"))
}

/// The job a path parameter names: `404 job_not_found` for an unknown id or one that is
/// not a UUID.
async fn find_job(
    conn: &mut sqlx::PgConnection,
    path: &str,
) -> ApiResult<strata_jobs::store::JobRow> {
    let id = Uuid::parse_str(path).map_err(|_| job_not_found(path))?;
    strata_jobs::store::get(conn, id)
        .await?
        .ok_or_else(|| job_not_found(path))
}

/// Filters of the job list; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    #[param(value_type = Option<JobStatusName>)]
    pub status: Option<String>,
    #[param(value_type = Option<JobKindName>)]
    pub kind: Option<String>,
    /// Source id or name.
    pub source: Option<String>,
    /// RFC 3339; jobs created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// RFC 3339; jobs created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub from: Option<String>,
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    pub limit: i64,
    /// Pass as `from` for the next page; null on the last page.
    pub next: Option<String>,
}

/// `GET /api/v1/jobs`: newest first, filtered, one page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(JobListQuery),
    responses(
        (status = 200, description = "One page", body = JobPage),
        (status = 400, description = "A parameter is invalid or unknown (`invalid_query`, `invalid_limit`, \
            `invalid_job_status`, `invalid_job_kind`, `invalid_cursor`); `field` names it", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<JobListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidLimit,
            "limit",
            "must be between 1 and 1000",
        ));
    }
    let status = q
        .status
        .as_deref()
        .map(JobStatus::parse)
        .transpose()?
        .map(|s| s.as_str().to_string());
    let kind = q
        .kind
        .as_deref()
        .map(JobKind::parse)
        .transpose()?
        .map(|k| k.as_str().to_string());
    let before = q
        .from
        .as_deref()
        .map(super::cursor::decode_uuid)
        .transpose()?;
    let mut conn = state.pool.acquire().await?;
    let source_id = match &q.source {
        Some(s) => Some(super::sources::named(&mut conn, s).await?.id),
        None => None,
    };
    let rows = strata_jobs::store::list(
        &mut conn,
        &strata_jobs::store::ListFilter {
            status,
            kind,
            source_id,
            created_after: q.created_after,
            created_before: q.created_before,
            limit: limit + 1,
            before,
        },
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<JobView> = rows
        .into_iter()
        .take(limit as usize)
        .map(JobView::from)
        .collect();
    let next = has_more
        .then(|| {
            items
                .last()
                .map(|j| super::cursor::encode(j.created_at, j.job_id))
        })
        .flatten();
    Ok(HttpResponse::Ok().json(JobPage { items, limit, next }))
}

/// `POST /api/v1/jobs/{id}/cancel`: a queued job is cancelled at once and never starts
/// (`200`); a running one is asked to stop at its next checkpoint (`202`) and ends
/// `cancelled` without leaving anything half-done; an ended job is a `409`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{job_id}/cancel",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id (a UUID)")),
    responses(
        (status = 200, description = "The job was queued: it is cancelled and will never start", body = JobView),
        (status = 202, description = "The job is running: it was asked to stop at its next checkpoint \
            (`cancel_requested_at` is set) and will end `cancelled`", body = JobView),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
        (status = 409, description = "The job has already ended (`job_already_finished`, with `status`), or is a \
            running delete or prune (`job_not_cancellable`); both with `job_id`", body = ErrorBody),
    ),
)]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let not_found = || job_not_found(&path);
    let id = Uuid::parse_str(&path).map_err(|_| not_found())?;
    let mut tx = state.pool.begin().await?;
    let Some(job) = strata_jobs::store::get(&mut tx, id).await? else {
        return Err(not_found());
    };
    let kind = JobKind::parse(&job.kind).map_err(anyhow::Error::from)?;
    // Stopping a job is worth as much as starting one: an operator may cancel the
    // backups and verifies it can start, not an admin's restore, delete, prune or GC.
    let need = role_to_create(kind);
    let role = req.extensions().get::<Principal>().map(|p| p.role);
    if role.is_none_or(|r| r < need) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("cancelling a {} job needs the {need} role", kind.as_str()),
        ));
    }
    // Deleting stops only between whole steps; once started it runs to the end.
    if job.status == JobStatus::Running.as_str() && matches!(kind, JobKind::Delete | JobKind::Prune)
    {
        return Err(ApiError::new(
            ErrorCode::JobNotCancellable,
            "a running delete or prune job cannot be cancelled; it will finish shortly",
        )
        .with("job_id", id.to_string()));
    }
    let outcome = strata_jobs::store::cancel(&mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    let mut upload = None;
    let response = match outcome {
        CancelOutcome::Cancelled(job) => {
            undo_queued(&mut tx, kind, &job).await?;
            upload = (kind == JobKind::Import)
                .then(|| serde_json::from_value::<ImportPayload>(job.payload.0.clone()).ok())
                .flatten()
                .map(|p| p.upload_key);
            HttpResponse::Ok().json(JobView::from(job))
        }
        CancelOutcome::Requested(job) => HttpResponse::Accepted().json(JobView::from(job)),
        CancelOutcome::AlreadyFinished(job) => {
            return Err(ApiError::new(
                ErrorCode::JobAlreadyFinished,
                format!("the job has already ended ({})", job.status),
            )
            .with("job_id", id.to_string())
            .with("status", job.status));
        }
    };
    tx.commit().await?;
    tracing::info!(job_id = %id, "job cancellation requested");
    // A cancelled import never runs: its uploaded archive is of no further use (garbage
    // collection removes it later if this fails).
    if let Some(key) = upload {
        if let Err(e) = state.storage.delete(&key).await {
            tracing::warn!(%key, error = %e, "could not delete the upload of a cancelled import");
        }
    }
    Ok(response)
}

/// The role that may create a job of this kind (the route table's roles for the routes
/// that create them), and so cancel one.
pub fn role_to_create(kind: JobKind) -> Role {
    match kind {
        JobKind::Backup | JobKind::Verify => Role::BackupOperator,
        JobKind::Restore | JobKind::Delete | JobKind::Prune | JobKind::Import | JobKind::Gc => {
            Role::Admin
        }
    }
}

/// What a job that never started leaves behind: its pending backup becomes `failed`,
/// backups a delete was about to remove are `complete` again.
async fn undo_queued(
    conn: &mut sqlx::PgConnection,
    kind: JobKind,
    job: &strata_jobs::store::JobRow,
) -> ApiResult<()> {
    match kind {
        JobKind::Backup | JobKind::Import => {
            if let Some(b) = &job.backup_id {
                db::backups::mark_failed(conn, b).await?;
            }
        }
        JobKind::Delete | JobKind::Prune => {
            let payload: DeletePayload =
                serde_json::from_value(job.payload.0.clone()).map_err(anyhow::Error::from)?;
            let ids: Vec<&str> = payload.backup_ids.iter().map(|b| b.as_str()).collect();
            sqlx::query(
                // A failed backup (prune deletes those too) never got a completion time.
                "UPDATE backups SET status = CASE WHEN completed_at IS NULL THEN 'failed' ELSE 'complete' END
                 WHERE id = ANY($1) AND status = 'deleting'",
            )
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
        }
        JobKind::Restore | JobKind::Verify | JobKind::Gc => {}
    }
    Ok(())
}

/// One server-sent event of `GET /api/v1/jobs/{id}/events` (documentation: the stream
/// is `text/event-stream`, one `id:`, `event:` and `data:` line per event).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobEvent {
    /// The job's version (its last change, in microseconds): send it back as
    /// `Last-Event-ID` to resume.
    id: String,
    /// `job` while it runs, `end` with the final state.
    #[schema(pattern = "^(job|end)$")]
    event: String,
    /// The job, as JSON (what `GET /api/v1/jobs/{id}` answers).
    data: String,
}

/// How often the events stream looks at its job.
const EVENTS_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// A comment line this often keeps proxies from closing a quiet stream.
const EVENTS_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// One server-sent event: the job as `GET /api/v1/jobs/{id}` shows it, with the row's
/// version (its `updated_at`, in microseconds) as the event id.
fn job_event(job: strata_jobs::store::JobRow) -> (i64, bool, web::Bytes) {
    let id = job.updated_at.timestamp_micros();
    let done = JobStatus::parse(&job.status).is_ok_and(JobStatus::is_final);
    let data = serde_json::to_string(&JobView::from(job)).unwrap_or_else(|_| "{}".into());
    let kind = if done { "end" } else { "job" };
    (
        id,
        done,
        web::Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n")),
    )
}

/// The job's status, phase and progress as they change, as server-sent events
/// (`text/event-stream`): an event `job` with the job (as `GET /api/v1/jobs/{id}` shows
/// it) each time it changes, and a last event `end` with its final state, after which
/// the stream closes. Each event's id is the job's version: a client reconnecting with
/// `Last-Event-ID` gets the job again only if it changed since (a finished job it has
/// seen ends the stream at once). A comment line every 15 s keeps proxies from closing a
/// quiet stream.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{job_id}/events",
    tag = "jobs",
    params(
        ("job_id" = Uuid, Path, description = "The job's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume"),
    ),
    responses(
        (status = 200, description = "The event stream: `event: job` while it runs, `event: end` with the final state",
            content_type = "text/event-stream", body = JobEvent),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    ),
)]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let job = find_job(&mut conn, &path).await?;
    let id = job.id;
    drop(conn);
    let seen: Option<i64> = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let first = job_event(job);
    struct Poll {
        state: web::Data<AppState>,
        id: Uuid,
        last: Option<i64>,
        pending: Option<(i64, bool, web::Bytes)>,
        done: bool,
        quiet_since: tokio::time::Instant,
    }
    let start = Poll {
        state,
        id,
        last: seen,
        pending: Some(first),
        done: false,
        quiet_since: tokio::time::Instant::now(),
    };
    let stream = futures::stream::unfold(start, |mut p| async move {
        loop {
            if p.done {
                return None;
            }
            if let Some((version, done, bytes)) = p.pending.take() {
                if p.last.is_none_or(|l| version > l) {
                    p.last = Some(version);
                    p.done = done;
                    p.quiet_since = tokio::time::Instant::now();
                    return Some((Ok::<_, std::io::Error>(bytes), p));
                }
                if done {
                    // A final state the client has already seen: nothing more will come.
                    return None;
                }
            }
            if p.quiet_since.elapsed() >= EVENTS_KEEPALIVE {
                p.quiet_since = tokio::time::Instant::now();
                return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), p));
            }
            tokio::time::sleep(EVENTS_POLL).await;
            let row = match p.state.pool.acquire().await {
                Ok(mut conn) => strata_jobs::store::get(&mut conn, p.id).await,
                Err(e) => Err(e),
            };
            match row {
                Ok(Some(job)) => p.pending = Some(job_event(job)),
                // Deleted (its backup was deleted with it): nothing more to say.
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(job_id = %p.id, error = %e, "job events: could not read the job; retrying");
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Tells nginx not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
