//! The `jobs` table: the truth about every job. Workers claim a job with a lease and
//! fence every later write with their worker id, so a worker that lost its lease can
//! no longer change the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use strata_core::model::JobStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub source_id: Option<Uuid>,
    pub backup_id: Option<String>,
    pub payload: sqlx::types::Json<serde_json::Value>,
    pub phase: Option<String>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub files_done: i64,
    pub files_total: Option<i64>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub error: Option<sqlx::types::Json<serde_json::Value>>,
    pub warnings: sqlx::types::Json<Vec<serde_json::Value>>,
    pub result: Option<sqlx::types::Json<serde_json::Value>>,
    pub trace_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The schedule that created this job, if one did.
    pub schedule_id: Option<Uuid>,
}

/// The partial unique index allowing one active backup or restore per source.
pub const ONE_ACTIVE_PER_SOURCE: &str = "jobs_one_active_per_source";

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The queued or running backup / restore of a source, if any.
pub async fn active_for_source(
    conn: &mut PgConnection,
    source_id: Uuid,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM jobs WHERE source_id = $1 AND status IN ('queued', 'running')
           AND kind IN ('backup', 'restore') LIMIT 1",
    )
    .bind(source_id)
    .fetch_optional(conn)
    .await
}

/// Whether any backup or restore is running anywhere (health's `canBackup`).
pub async fn any_active(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND kind IN ('backup', 'restore'))",
    )
    .fetch_one(conn)
    .await
}

/// Claims a queued job for `worker_id`: `queued → running` only if still queued, so a
/// duplicate delivery claims nothing.
pub async fn claim(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs SET status = 'running', worker_id = $2, attempts = attempts + 1,
             lease_expires_at = now() + make_interval(secs => $3),
             started_at = COALESCE(started_at, now()), phase = 'starting', error = NULL,
             updated_at = now()
         WHERE id = $1 AND status = 'queued'
         RETURNING *",
    )
    .bind(id)
    .bind(worker_id)
    .bind(lease.as_secs_f64())
    .fetch_optional(conn)
    .await
}

/// Extends the lease. `false` means the lease was lost (swept, cancelled, or finished
/// elsewhere): the worker must stop.
pub async fn heartbeat(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker_id)
    .bind(lease.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Progress of a running job, as clients poll it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub phase: String,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub files_done: i64,
    pub files_total: Option<i64>,
}

/// Writes progress, fenced by the worker id. `false` means the lease was lost.
pub async fn set_progress(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    p: &Progress,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET phase = $3, bytes_done = $4, bytes_total = $5, files_done = $6,
             files_total = $7, updated_at = now()
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker_id)
    .bind(&p.phase)
    .bind(p.bytes_done)
    .bind(p.bytes_total)
    .bind(p.files_done)
    .bind(p.files_total)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a running job, fenced by the worker id. `false` means the lease was lost and
/// nothing was written.
pub async fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    status: JobStatus,
    result: Option<&serde_json::Value>,
    error: Option<&serde_json::Value>,
    warnings: &[serde_json::Value],
) -> Result<bool, sqlx::Error> {
    debug_assert!(status.is_final());
    let done = sqlx::query(
        "UPDATE jobs SET status = $3, result = $4, error = $5, warnings = $6,
             phase = $3, finished_at = now(), lease_expires_at = NULL, updated_at = now()
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker_id)
    .bind(status.as_str())
    .bind(result.map(sqlx::types::Json))
    .bind(error.map(sqlx::types::Json))
    .bind(sqlx::types::Json(warnings))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts a running job back in the queue after a transient failure, to run again after
/// `delay_secs` (its outbox row wakes a worker then). Fenced by the worker id: `false`
/// when the job was no longer this worker's, and nothing was written.
pub async fn retry(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    error: &serde_json::Value,
    delay_secs: f64,
) -> Result<bool, sqlx::Error> {
    let requeued = requeue(&mut *conn, id, worker_id, error).await?;
    if requeued {
        crate::outbox::insert(conn, id, delay_secs).await?;
    }
    Ok(requeued)
}

/// Hands a running job back without spending an attempt (its worker stops), to run
/// again at once. Fenced by the worker id.
pub async fn release(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    error: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let requeued = requeue(&mut *conn, id, worker_id, error).await?;
    if requeued {
        sqlx::query("UPDATE jobs SET attempts = GREATEST(attempts - 1, 0) WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        crate::outbox::insert(conn, id, 0.0).await?;
    }
    Ok(requeued)
}

/// Wakes a worker for a queued job (the sweeper re-queued it).
pub async fn wake(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    crate::outbox::insert(conn, id, 0.0).await
}

/// Sets one field of a finished job's result (a scheduled backup's `retention`).
pub async fn set_result_field(
    conn: &mut PgConnection,
    id: Uuid,
    field: &str,
    value: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET result = jsonb_set(COALESCE(result, '{}'::jsonb), ARRAY[$2], $3) WHERE id = $1",
    )
    .bind(id)
    .bind(field)
    .bind(sqlx::types::Json(value))
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts a running job back in the queue. Fenced by the worker id.
async fn requeue(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
    error: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL,
             phase = 'retrying', error = $3, updated_at = now()
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker_id)
    .bind(sqlx::types::Json(error))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Re-queues running jobs whose lease expired, or fails them when they have used all
/// their attempts; a job whose cancel was requested ends `cancelled` instead (it must
/// never run again). Rows locked by a concurrent sweeper are skipped.
/// The rows come back as the sweep left them.
pub async fn sweep_expired(conn: &mut PgConnection) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH expired AS (
             SELECT id,
                    CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                         WHEN attempts >= max_attempts THEN 'failed'
                         ELSE 'queued' END AS next
             FROM jobs
             WHERE status = 'running' AND lease_expires_at < now()
             FOR UPDATE SKIP LOCKED
         )
         UPDATE jobs j SET
             status = e.next,
             phase = CASE WHEN e.next = 'queued' THEN 'requeued' ELSE e.next END,
             error = CASE e.next
                 WHEN 'cancelled' THEN jsonb_build_object('code', 'cancelled',
                     'message', 'cancelled at the client''s request (the worker running it stopped responding)')
                 WHEN 'failed' THEN jsonb_build_object('code', 'lease_expired',
                     'message', 'the worker running this job stopped responding on every attempt')
                 ELSE j.error END,
             finished_at = CASE WHEN e.next = 'queued' THEN NULL ELSE now() END,
             worker_id = NULL, lease_expires_at = NULL, updated_at = now()
         FROM expired e WHERE j.id = e.id
         RETURNING j.*",
    )
    .fetch_all(conn)
    .await
}

/// Filters and cursor of the job list.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub source_id: Option<Uuid>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub limit: i64,
    /// Keyset cursor: jobs created before (created_at, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

/// Newest first.
pub async fn list(conn: &mut PgConnection, f: &ListFilter) -> Result<Vec<JobRow>, sqlx::Error> {
    let (before_at, before_id) = match f.before {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    };
    sqlx::query_as(
        "SELECT * FROM jobs
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR kind = $2)
           AND ($3::uuid IS NULL OR source_id = $3)
           AND ($4::timestamptz IS NULL OR created_at >= $4)
           AND ($5::timestamptz IS NULL OR created_at < $5)
           AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7))
         ORDER BY created_at DESC, id DESC
         LIMIT $8",
    )
    .bind(f.status.as_deref())
    .bind(f.kind.as_deref())
    .bind(f.source_id)
    .bind(f.created_after)
    .bind(f.created_before)
    .bind(before_at)
    .bind(before_id)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job was queued: it is cancelled now and will never start.
    Cancelled(JobRow),
    /// The job is running: it stops at its next checkpoint.
    Requested(JobRow),
    /// The job had already ended.
    AlreadyFinished(JobRow),
}

/// Cancels a queued job at once, or asks a running one to stop. Locks the row, so a
/// worker's claim and this cannot both win.
pub async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<CancelOutcome>, sqlx::Error> {
    let Some(job): Option<JobRow> = sqlx::query_as("SELECT * FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    match job.status.as_str() {
        "queued" => {
            let row = sqlx::query_as(
                "UPDATE jobs SET status = 'cancelled', phase = 'cancelled',
                     cancel_requested_at = now(), finished_at = now(), updated_at = now(),
                     error = jsonb_build_object('code', 'cancelled',
                         'message', 'cancelled before it started')
                 WHERE id = $1 RETURNING *",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
            Ok(Some(CancelOutcome::Cancelled(row)))
        }
        "running" => {
            let row = sqlx::query_as(
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()),
                     updated_at = now()
                 WHERE id = $1 RETURNING *",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
            Ok(Some(CancelOutcome::Requested(row)))
        }
        _ => Ok(Some(CancelOutcome::AlreadyFinished(job))),
    }
}

/// Whether a client asked this job to stop.
pub async fn cancel_requested(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT cancel_requested_at IS NOT NULL FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map(|r| r.unwrap_or(false))
}

/// A queued or running job that is about one of `backup_ids` (restore, verify…).
pub async fn active_for_backups(
    conn: &mut PgConnection,
    backup_ids: &[String],
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND backup_id = ANY($1)
         ORDER BY created_at",
    )
    .bind(backup_ids)
    .fetch_all(conn)
    .await
}

/// Queued or running backup and restore jobs: each may make one of its source's newest
/// complete backups the parent of the backup it writes (a restore's pre-restore backup).
pub async fn active_writers(conn: &mut PgConnection) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND kind IN ('backup', 'restore')",
    )
        .fetch_all(conn)
        .await
}

/// Job figures for the metrics endpoint, read at each scrape.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    /// (kind, status, count) of every job in the catalog.
    pub by_kind_status: Vec<(String, String, i64)>,
    /// Seconds the oldest queued job has waited; `None` when none waits.
    pub oldest_queued_secs: Option<f64>,
    /// (source name, when its newest complete backup finished).
    pub last_backup_by_source: Vec<(String, DateTime<Utc>)>,
}

pub async fn metrics(conn: &mut PgConnection) -> Result<JobMetrics, sqlx::Error> {
    let by_kind_status = sqlx::query_as(
        "SELECT kind, status, count(*) FROM jobs GROUP BY kind, status ORDER BY kind, status",
    )
    .fetch_all(&mut *conn)
    .await?;
    let oldest_queued_secs = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM jobs WHERE status = 'queued'",
    )
    .fetch_one(&mut *conn)
    .await?;
    let last_backup_by_source = sqlx::query_as(
        "SELECT s.name, max(b.completed_at) FROM backups b JOIN sources s ON s.id = b.source_id
          WHERE b.status = 'complete' AND b.completed_at IS NOT NULL
          GROUP BY s.name ORDER BY s.name",
    )
    .fetch_all(conn)
    .await?;
    Ok(JobMetrics {
        by_kind_status,
        oldest_queued_secs,
        last_backup_by_source,
    })
}

#[cfg(test)]
mod tests {
    use strata_core::errors::ErrorCode;

    /// The codes this module's SQL writes into a job's `error` are codes of the table.
    #[test]
    fn codes_written_by_sql_are_listed_codes() {
        let source = include_str!("store.rs");
        let marker = concat!("jsonb_build_object('code', ", "'");
        let mut found = Vec::new();
        for (at, _) in source.match_indices(marker) {
            let rest = &source[at + marker.len()..];
            let code = &rest[..rest.find('\'').expect("a closing quote")];
            assert!(
                ErrorCode::parse(code).is_some(),
                "the SQL writes {code:?}, which is not an ErrorCode"
            );
            found.push(code);
        }
        found.sort_unstable();
        found.dedup();
        assert_eq!(found, ["cancelled", "lease_expired"]);
    }
}
