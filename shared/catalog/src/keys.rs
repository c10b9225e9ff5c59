//! The `api_keys` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub struct NewKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    pub hash: &'a str,
    pub created_by: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut PgConnection, k: &NewKey<'_>) -> Result<KeyRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, name, role, hash, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .bind(k.id)
    .bind(k.name)
    .bind(k.role)
    .bind(k.hash)
    .bind(k.created_by)
    .bind(k.expires_at)
    .fetch_one(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM api_keys ORDER BY created_at DESC, id")
        .fetch_all(conn)
        .await
}

pub async fn count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(conn)
        .await
}

/// Revokes a key; `false` when there is no such key.
pub async fn revoke(conn: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a use, at most once a minute per key (no write on every request).
pub async fn touch(conn: &mut PgConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
