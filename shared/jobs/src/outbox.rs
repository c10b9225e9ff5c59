//! The transactional outbox: job messages written with the job, published by a relay.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The channel the relay listens on so that a new row is published at once.
pub const NOTIFY_CHANNEL: &str = "strata_outbox";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub job_id: Uuid,
    pub payload: sqlx::types::Json<serde_json::Value>,
    pub headers: sqlx::types::Json<serde_json::Value>,
    pub available_at: DateTime<Utc>,
}

/// Adds the job message (`{"job_id": …}`) for `job_id`, deliverable after `delay_secs`;
/// the relay is notified when the surrounding transaction commits. The row's headers
/// are the job's trace context, so every attempt joins the job's trace.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    job_id: Uuid,
    delay_secs: f64,
) -> Result<(), sqlx::Error> {
    let payload = strata_core::model::JobMessage { job_id };
    sqlx::query(
        "INSERT INTO outbox (job_id, payload, headers, available_at)
         VALUES ($1, $2,
                 COALESCE((SELECT trace_context FROM jobs WHERE id = $1), '{}'),
                 now() + make_interval(secs => $3))",
    )
    .bind(job_id)
    .bind(sqlx::types::Json(&payload))
    .bind(delay_secs)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks up to `limit` due, unsent rows (skipping rows another relay holds).
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, job_id, payload, headers, available_at FROM outbox
         WHERE sent_at IS NULL AND available_at <= now()
         ORDER BY available_at, id LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Seconds until the next unsent row becomes due, if any.
pub async fn next_due_in(conn: &mut PgConnection) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT GREATEST(0, EXTRACT(EPOCH FROM (MIN(available_at) - now())))::float8
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(conn)
    .await
}
