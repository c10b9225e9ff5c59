//! One PostgreSQL advisory lock guards the repository against garbage collection:
//! jobs that add data (backup, import) hold it *shared* for their whole run, so the
//! chunks they deduplicate against cannot disappear under them; garbage collection
//! holds it *exclusively* while it decides what nobody needs and deletes it.
//!
//! The lock lives on a connection taken out of the pool (`detach`): closing that
//! connection — when the job ends, or when its process dies — releases the lock.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

/// The advisory lock key ("STRATAGC").
const KEY: i64 = 0x5354_5241_5441_4743;

/// A held lock; dropping it closes its connection, which releases the lock.
pub struct RepoLock {
    conn: PgConnection,
}

impl RepoLock {
    /// Releases the lock now (dropping does the same, without waiting).
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}

/// Waits for the shared lock (only a running garbage collection holds it up).
pub async fn shared(pool: &PgPool) -> Result<RepoLock, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SELECT pg_advisory_lock_shared($1)")
        .bind(KEY)
        .execute(&mut conn)
        .await?;
    Ok(RepoLock { conn })
}

/// Takes the exclusive lock if no job holds it shared; `None` when one does.
pub async fn try_exclusive(pool: &PgPool) -> Result<Option<RepoLock>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(KEY)
        .fetch_one(&mut conn)
        .await?;
    if got {
        Ok(Some(RepoLock { conn }))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}
