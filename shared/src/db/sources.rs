//! The `sources` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::SourceSpec;

#[derive(Clone, sqlx::FromRow)]
pub struct SourceRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub spec: sqlx::types::Json<SourceSpec>,
    /// The retention policy prune applies when a request names none (JSON object with
    /// `keep_last`, `daily`, `weekly`, `monthly`, `yearly`, `retention_days`).
    pub retention: Option<sqlx::types::Json<serde_json::Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The database password: never returned, logged or exported.
    pub secret: Option<String>,
}

impl std::fmt::Debug for SourceRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("spec", &self.spec)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// The unique index that makes source names unique.
pub const NAME_UNIQUE: &str = "sources_name_key";

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    spec: &SourceSpec,
    secret: Option<&str>,
) -> Result<SourceRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO sources (id, name, kind, spec, secret) VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .bind(id)
    .bind(name)
    .bind(spec.kind())
    .bind(sqlx::types::Json(spec))
    .bind(secret)
    .fetch_one(conn)
    .await
}

/// Replaces a source's database password.
pub async fn set_secret(
    conn: &mut PgConnection,
    id: Uuid,
    secret: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sources SET secret = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(secret)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<SourceRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM sources WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Finds a source by id (when `key` is a UUID) or by name.
pub async fn find(conn: &mut PgConnection, key: &str) -> Result<Option<SourceRow>, sqlx::Error> {
    if let Ok(id) = Uuid::parse_str(key) {
        if let Some(row) = get(&mut *conn, id).await? {
            return Ok(Some(row));
        }
    }
    sqlx::query_as("SELECT * FROM sources WHERE name = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<SourceRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM sources ORDER BY name")
        .fetch_all(conn)
        .await
}

/// Replaces a source's spec and retention policy.
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    spec: &SourceSpec,
    retention: Option<&serde_json::Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sources SET spec = $2, retention = $3, kind = $4, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(sqlx::types::Json(spec))
    .bind(retention.map(sqlx::types::Json))
    .bind(spec.kind())
    .execute(conn)
    .await?;
    Ok(())
}
