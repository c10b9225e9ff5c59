//! Repository sessions: who is reading or writing the repository right now, and since
//! when. Garbage collection deletes a condemned pack only once every live session
//! started after the pack was condemned (docs/FORMAT.md).

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Registers a session, ordered against condemnations by the `repo_gc_state` row lock
/// (held FOR SHARE for the length of this transaction); returns its `started_at`.
pub async fn register(
    conn: &mut PgConnection,
    id: Uuid,
    kind: &str,
    job_id: Option<Uuid>,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM repo_gc_state FOR SHARE")
        .execute(&mut *tx)
        .await?;
    let started: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO repo_sessions (id, kind, job_id, started_at, heartbeat_at)
         VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp()) RETURNING started_at",
    )
    .bind(id)
    .bind(kind)
    .bind(job_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(started)
}

/// Refreshes a session; `false` when its row is gone (garbage collection removed it as
/// stale): the session no longer protects anything.
pub async fn heartbeat(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE repo_sessions SET heartbeat_at = clock_timestamp() WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a session.
pub async fn end(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM repo_sessions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The sweep horizon: the `started_at` of the oldest live session (heartbeat newer than
/// `stale_secs`), or the current time when none is live; with the number of live sessions.
pub async fn horizon(
    conn: &mut PgConnection,
    stale_secs: f64,
) -> Result<(DateTime<Utc>, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT LEAST(clock_timestamp(), MIN(started_at)), COUNT(*)
         FROM repo_sessions
         WHERE heartbeat_at > clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(stale_secs)
    .fetch_one(conn)
    .await
}

/// Removes the sessions stale for `stale_secs`: their process is dead (or so late that
/// its next heartbeat finds its row gone and it stops).
pub async fn remove_stale(conn: &mut PgConnection, stale_secs: f64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM repo_sessions WHERE heartbeat_at <= clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(stale_secs)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Takes the `repo_gc_state` row lock FOR UPDATE for the rest of the transaction:
/// registrations wait (milliseconds) while packs are condemned.
pub async fn lock_for_condemnation(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM repo_gc_state FOR UPDATE")
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE repo_gc_state SET last_run_at = clock_timestamp()")
        .execute(conn)
        .await?;
    Ok(())
}
