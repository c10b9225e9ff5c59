//! Rows that only matter for a while: idempotency keys (a replayed request is answered
//! the same way for `STRATA_IDEMPOTENCY_TTL_SECS`) and the history of schedule fires
//! (`STRATA_SCHEDULE_FIRES_KEEP_DAYS`), and user sessions a day after they ended. The newest fire of each schedule is always kept:
//! the scheduler reads it to tell a missed fire from a new one.

use std::time::Duration;

use sqlx::PgConnection;

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub schedule_fires: u64,
    pub sessions: u64,
}

/// Deletes idempotency keys older than `key_ttl` and schedule fires older than
/// `fires_keep` (except each schedule's newest).
pub async fn prune(
    conn: &mut PgConnection,
    key_ttl: Duration,
    fires_keep: Duration,
) -> Result<Pruned, sqlx::Error> {
    let keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(key_ttl.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    let fires = sqlx::query(
        "DELETE FROM schedule_fires f
          WHERE f.fire_at < now() - make_interval(secs => $1)
            AND f.fire_at < (SELECT max(l.fire_at) FROM schedule_fires l
                              WHERE l.schedule_id = f.schedule_id)",
    )
    .bind(fires_keep.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    // A session a day past its end (expired or revoked) can no longer be asked about.
    let sessions = sqlx::query(
        "DELETE FROM user_sessions
          WHERE coalesce(least(revoked_at, expires_at), expires_at) < now() - interval '1 day'",
    )
    .execute(conn)
    .await?;
    Ok(Pruned {
        idempotency_keys: keys.rows_affected(),
        schedule_fires: fires.rows_affected(),
        sessions: sessions.rows_affected(),
    })
}
