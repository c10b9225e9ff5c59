//! PostgreSQL advisory locks that garbage collection needs. None of them is ever taken
//! by a backup, import, restore or verify as a whole: those register a repository
//! session instead (`db::repo_sessions`) and never wait for a collection.
//!
//! - The collection lock: one collection at a time (a second one waits for the first).
//! - The pack locks: one per pack id, held by a writer while it indexes a pack (and
//!   checks the object it uploaded is still there) and by the sweep from the removal of
//!   a pack's index rows to the deletion of its object, so a writer that happens to
//!   write a byte-identical pack (same id) while it is swept never ends up indexed
//!   without its object.
//!
//! A session-level lock lives on a connection taken out of the pool (`detach`): closing
//! that connection — when the holder ends, or when its process dies — releases it.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

/// The collection lock key ("STRATAGC").
const KEY: i64 = 0x5354_5241_5441_4743;
/// The class of the per-pack locks ("STPK"); the pack id's hash is the object.
const PACK_CLASS: i32 = 0x5354_504B;

/// A held lock; dropping it closes its connection, which releases the lock.
pub struct RepoLock {
    conn: PgConnection,
}

impl RepoLock {
    /// Releases the lock now (dropping does the same, without waiting).
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }

    /// The connection holding the lock.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// Takes the collection lock if no other collection holds it; `None` when one does.
pub async fn try_collection(pool: &PgPool) -> Result<Option<RepoLock>, sqlx::Error> {
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

/// Takes the lock of one pack until the end of the current transaction of `conn`.
/// A wait longer than a minute fails the transaction (`lock_timeout`) rather than
/// blocking its job forever behind a holder that will never let go.
pub async fn pack_xact(conn: &mut PgConnection, pack_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL lock_timeout = '60s'")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(PACK_CLASS)
        .bind(pack_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the lock of one pack on `conn` until [`pack_unlock`] (or the connection closes).
pub async fn pack_lock(conn: &mut PgConnection, pack_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(PACK_CLASS)
        .bind(pack_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Releases a lock taken with [`pack_lock`].
pub async fn pack_unlock(conn: &mut PgConnection, pack_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(PACK_CLASS)
        .bind(pack_id)
        .execute(conn)
        .await?;
    Ok(())
}
