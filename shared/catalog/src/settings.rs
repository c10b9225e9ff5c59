//! The `settings` table: installation-wide values every replica shares.

use sqlx::PgConnection;

/// The value under `key`, creating it with `make()` when absent. Every replica gets the
/// same value, whoever created it.
pub async fn get_or_create(
    conn: &mut PgConnection,
    key: &str,
    make: impl FnOnce() -> String,
) -> Result<String, sqlx::Error> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(make())
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_one(conn)
        .await
}
