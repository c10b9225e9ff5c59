//! The `sources` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use strata_core::model::{PostgresSecrets, SourceSpec};

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
    /// The database connection's secrets (password, key passphrase): never returned,
    /// logged or exported.
    pub secret: Option<sqlx::types::Json<PostgresSecrets>>,
}

impl std::fmt::Debug for SourceRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("spec", &self.spec.0.without_secrets())
            .field("secret", &self.secret.as_ref().map(|s| &s.0))
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
    secret: Option<&PostgresSecrets>,
) -> Result<SourceRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO sources (id, name, kind, spec, secret) VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .bind(id)
    .bind(name)
    .bind(spec.kind())
    .bind(sqlx::types::Json(spec))
    .bind(stored(secret))
    .fetch_one(conn)
    .await
}

/// What the `secret` column holds: nothing rather than an empty object.
fn stored(secret: Option<&PostgresSecrets>) -> Option<sqlx::types::Json<&PostgresSecrets>> {
    secret.filter(|s| !s.is_empty()).map(sqlx::types::Json)
}

impl SourceRow {
    /// The stored secrets (none when there are none).
    pub fn secrets(&self) -> PostgresSecrets {
        self.secret
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_default()
    }
}

/// Replaces a source's database secrets.
pub async fn set_secret(
    conn: &mut PgConnection,
    id: Uuid,
    secret: Option<&PostgresSecrets>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sources SET secret = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(stored(secret))
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

/// What deleting a source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// It still has backups (of any status): they must be deleted first.
    HasBackups(i64),
    /// A job of it is queued or running.
    JobActive {
        job_id: Uuid,
        kind: String,
    },
}

/// Deletes a source that has no backups and no active job, with its schedules (and their
/// fires); its finished jobs stay, detached from it. One transaction, the source's row
/// locked first, so a backup queued meanwhile either comes first (and this refuses) or
/// finds no source.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<DeleteOutcome, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let found: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM sources WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Ok(DeleteOutcome::NotFound);
    }
    let (backups,): (i64,) = sqlx::query_as("SELECT count(*) FROM backups WHERE source_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if backups > 0 {
        return Ok(DeleteOutcome::HasBackups(backups));
    }
    let active: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT id, kind FROM jobs WHERE source_id = $1 AND status IN ('queued', 'running') LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((job_id, kind)) = active {
        return Ok(DeleteOutcome::JobActive { job_id, kind });
    }
    sqlx::query("DELETE FROM schedules WHERE source_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE jobs SET source_id = NULL WHERE source_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sources WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(DeleteOutcome::Deleted)
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
