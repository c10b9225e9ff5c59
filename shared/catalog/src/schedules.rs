//! The `schedules` and `schedule_fires` tables.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub source_id: Uuid,
    pub backup_type: String,
    pub cron: String,
    pub timezone: String,
    pub retention: Option<sqlx::types::Json<serde_json::Value>>,
    pub catch_up: bool,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A schedule with what its fires and jobs say about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleView {
    #[sqlx(flatten)]
    pub schedule: ScheduleRow,
    pub source_name: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
    pub last_job_id: Option<Uuid>,
    pub last_job_status: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// One recorded fire.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FireRow {
    pub schedule_id: Uuid,
    pub fire_at: DateTime<Utc>,
    pub outcome: String,
    pub covers: i32,
    pub job_id: Option<Uuid>,
    pub error: Option<sqlx::types::Json<serde_json::Value>>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: String,
}

/// The fields a client sets.
#[derive(Debug, Clone)]
pub struct ScheduleFields {
    pub source_id: Uuid,
    pub backup_type: String,
    pub cron: String,
    pub timezone: String,
    pub retention: Option<serde_json::Value>,
    pub catch_up: bool,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
}

const VIEW: &str = "SELECT s.*, src.name AS source_name,
        f.fire_at AS last_run_at, f.outcome AS last_outcome, f.job_id AS last_job_id,
        j.status AS last_job_status,
        (SELECT max(finished_at) FROM jobs
          WHERE schedule_id = s.id AND kind = 'backup' AND status = 'succeeded') AS last_success_at
     FROM schedules s
     JOIN sources src ON src.id = s.source_id
     LEFT JOIN LATERAL (SELECT * FROM schedule_fires
                         WHERE schedule_id = s.id ORDER BY fire_at DESC LIMIT 1) f ON true
     LEFT JOIN jobs j ON j.id = f.job_id";

/// Binds a schedule's fields as `$2` to `$9` (`$1` is its id).
fn bind_fields<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    f: &'q ScheduleFields,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(f.source_id)
        .bind(&f.backup_type)
        .bind(&f.cron)
        .bind(&f.timezone)
        .bind(f.retention.as_ref().map(sqlx::types::Json))
        .bind(f.catch_up)
        .bind(f.enabled)
        .bind(f.next_run_at)
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    f: &ScheduleFields,
) -> Result<(), sqlx::Error> {
    let q = sqlx::query(
        "INSERT INTO schedules (id, source_id, backup_type, cron, timezone, retention, catch_up, enabled, next_run_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id);
    bind_fields(q, f).execute(conn).await?;
    Ok(())
}

/// Replaces a schedule's fields; `false` when there is no such schedule.
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    f: &ScheduleFields,
) -> Result<bool, sqlx::Error> {
    let q = sqlx::query(
        "UPDATE schedules SET source_id = $2, backup_type = $3, cron = $4, timezone = $5,
                retention = $6, catch_up = $7, enabled = $8, next_run_at = $9, updated_at = now()
          WHERE id = $1",
    )
    .bind(id);
    let done = bind_fields(q, f).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// Locks a schedule for an update (waits for a replica firing it).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<ScheduleRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM schedules WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<ScheduleView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{VIEW} WHERE s.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Every schedule (of one source when given), oldest first.
pub async fn list(
    conn: &mut PgConnection,
    source_id: Option<Uuid>,
) -> Result<Vec<ScheduleView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{VIEW} WHERE $1::uuid IS NULL OR s.source_id = $1 ORDER BY s.created_at, s.id"
    )))
    .bind(source_id)
    .fetch_all(conn)
    .await
}

/// The newest fires of a schedule.
pub async fn recent_fires(
    conn: &mut PgConnection,
    id: Uuid,
    limit: i64,
) -> Result<Vec<FireRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM schedule_fires WHERE schedule_id = $1 ORDER BY fire_at DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Locks one enabled schedule due at `now` that no other replica has locked, skipping
/// `except` (schedules that failed this tick).
pub async fn lock_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    except: &[Uuid],
) -> Result<Option<ScheduleRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM schedules
          WHERE enabled AND next_run_at <= $1 AND id <> ALL($2)
          ORDER BY next_run_at LIMIT 1
          FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(except)
    .fetch_optional(conn)
    .await
}

pub async fn set_next_run(
    conn: &mut PgConnection,
    id: Uuid,
    next: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE schedules SET next_run_at = $2 WHERE id = $1")
        .bind(id)
        .bind(next)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a fire; `false` when this (schedule, fire time) is recorded already.
#[allow(clippy::too_many_arguments)]
pub async fn record_fire(
    conn: &mut PgConnection,
    schedule_id: Uuid,
    fire_at: DateTime<Utc>,
    outcome: &str,
    covers: i32,
    job_id: Option<Uuid>,
    error: Option<&serde_json::Value>,
    replica: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO schedule_fires (schedule_id, fire_at, outcome, covers, job_id, error, recorded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (schedule_id, fire_at) DO NOTHING",
    )
    .bind(schedule_id)
    .bind(fire_at)
    .bind(outcome)
    .bind(covers)
    .bind(job_id)
    .bind(error.map(sqlx::types::Json))
    .bind(replica)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn update_fire(
    conn: &mut PgConnection,
    schedule_id: Uuid,
    fire_at: DateTime<Utc>,
    outcome: &str,
    job_id: Option<Uuid>,
    error: Option<&serde_json::Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE schedule_fires SET outcome = $3, job_id = $4, error = $5
          WHERE schedule_id = $1 AND fire_at = $2",
    )
    .bind(schedule_id)
    .bind(fire_at)
    .bind(outcome)
    .bind(job_id)
    .bind(error.map(sqlx::types::Json))
    .execute(conn)
    .await?;
    Ok(())
}

/// The retention policy of a schedule (JSON), when it has one.
pub async fn retention(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let row: Option<Option<sqlx::types::Json<serde_json::Value>>> =
        sqlx::query_scalar("SELECT retention FROM schedules WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.flatten().map(|j| j.0))
}

/// Per-schedule figures for the metrics endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleMetrics {
    pub id: Uuid,
    pub source_name: String,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub fires_queued: i64,
    pub fires_skipped_busy: i64,
    pub fires_missed: i64,
    pub fires_failed: i64,
}

pub async fn metrics(conn: &mut PgConnection) -> Result<Vec<ScheduleMetrics>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, src.name AS source_name, s.enabled, s.next_run_at,
                (SELECT max(finished_at) FROM jobs
                  WHERE schedule_id = s.id AND kind = 'backup' AND status = 'succeeded') AS last_success_at,
                count(*) FILTER (WHERE f.outcome = 'queued') AS fires_queued,
                count(*) FILTER (WHERE f.outcome = 'skipped_busy') AS fires_skipped_busy,
                count(*) FILTER (WHERE f.outcome = 'missed') AS fires_missed,
                count(*) FILTER (WHERE f.outcome = 'failed') AS fires_failed
           FROM schedules s
           JOIN sources src ON src.id = s.source_id
           LEFT JOIN schedule_fires f ON f.schedule_id = s.id
          GROUP BY s.id, src.name
          ORDER BY s.id",
    )
    .fetch_all(conn)
    .await
}
