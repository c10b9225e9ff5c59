//! The `backups` table: the catalog of snapshots.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use strata_core::model::{BackupId, BackupType};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BackupRow {
    pub id: String,
    pub source_id: Uuid,
    pub requested_type: String,
    #[sqlx(rename = "type")]
    pub backup_type: String,
    pub parent_id: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub logical_size: i64,
    pub stored_size: i64,
    pub file_count: i64,
    pub dir_count: i64,
    pub manifest_key: Option<String>,
    pub warnings: sqlx::types::Json<Vec<serde_json::Value>>,
    /// `files` and / or `database`.
    pub parts: Vec<String>,
}

impl BackupRow {
    pub fn has_part(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

/// The primary key, violated by a duplicate backup name.
pub const ID_UNIQUE: &str = "backups_pkey";

pub async fn insert_pending(
    conn: &mut PgConnection,
    id: &BackupId,
    source_id: Uuid,
    requested: BackupType,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO backups (id, source_id, requested_type, type, status)
         VALUES ($1, $2, $3, $3, 'pending')",
    )
    .bind(id.as_str())
    .bind(source_id)
    .bind(requested.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The source's newest complete backup (of any type, or only full ones): the parent of
/// an incremental, respectively a differential.
pub async fn latest_complete(
    conn: &mut PgConnection,
    source_id: Uuid,
    full_only: bool,
) -> Result<Option<BackupRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM backups WHERE source_id = $1 AND status = 'complete'
           AND (NOT $2 OR type = 'full')
         ORDER BY completed_at DESC, id DESC LIMIT 1",
    )
    .bind(source_id)
    .bind(full_only)
    .fetch_optional(conn)
    .await
}

/// The ids of a backup's chain, full first, the backup itself last.
pub async fn chain(conn: &mut PgConnection, id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE chain AS (
             SELECT id, parent_id, 0 AS depth FROM backups WHERE id = $1
             UNION ALL
             SELECT b.id, b.parent_id, c.depth + 1 FROM backups b JOIN chain c ON b.id = c.parent_id
         )
         SELECT id FROM chain ORDER BY depth DESC",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: &str) -> Result<Option<BackupRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM backups WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A backup row locked `FOR SHARE` in the caller's transaction: a concurrent delete or
/// prune (which marks it `deleting` under `FOR UPDATE`) waits for that transaction.
pub async fn get_for_share(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<BackupRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM backups WHERE id = $1 FOR SHARE")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Filters and cursor of the backup list.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub source_id: Option<Uuid>,
    pub status: Option<String>,
    pub backup_type: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub limit: i64,
    /// Keyset cursor: list backups created before (created_at, id).
    pub before: Option<(DateTime<Utc>, String)>,
}

/// Every complete backup of a source, newest first (the PocketBase-compatible list and
/// searches across a source's backups).
pub async fn complete_of_source(
    conn: &mut PgConnection,
    source_id: Uuid,
) -> Result<Vec<BackupRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM backups WHERE source_id = $1 AND status = 'complete'
         ORDER BY created_at DESC, id DESC",
    )
    .bind(source_id)
    .fetch_all(conn)
    .await
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    filter: &ListFilter,
) -> Result<Vec<BackupRow>, sqlx::Error> {
    let (before_at, before_id) = match &filter.before {
        Some((at, id)) => (Some(*at), Some(id.clone())),
        None => (None, None),
    };
    sqlx::query_as(
        "SELECT * FROM backups
         WHERE ($1::uuid IS NULL OR source_id = $1)
           AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
           AND ($6::text IS NULL OR type = $6)
           AND ($7::timestamptz IS NULL OR created_at >= $7)
           AND ($8::timestamptz IS NULL OR created_at < $8)
         ORDER BY created_at DESC, id DESC
         LIMIT $5",
    )
    .bind(filter.source_id)
    .bind(filter.status.as_deref())
    .bind(before_at)
    .bind(before_id)
    .bind(filter.limit)
    .bind(filter.backup_type.as_deref())
    .bind(filter.created_after)
    .bind(filter.created_before)
    .fetch_all(conn)
    .await
}

/// Figures a finished backup records.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub backup_type: String,
    pub parent_id: Option<String>,
    pub logical_size: i64,
    pub stored_size: i64,
    pub file_count: i64,
    pub dir_count: i64,
    pub manifest_key: String,
    pub warnings: Vec<serde_json::Value>,
    pub parts: Vec<String>,
}

/// Marks a backup complete: called only after its manifest is in storage.
pub async fn mark_complete(
    conn: &mut PgConnection,
    id: &str,
    c: &Completion,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE backups SET status = 'complete', completed_at = now(), type = $2, parent_id = $3,
             logical_size = $4, stored_size = $5, file_count = $6, dir_count = $7,
             manifest_key = $8, warnings = $9, parts = $10
         WHERE id = $1",
    )
    .bind(id)
    .bind(&c.backup_type)
    .bind(c.parent_id.as_deref())
    .bind(c.logical_size)
    .bind(c.stored_size)
    .bind(c.file_count)
    .bind(c.dir_count)
    .bind(&c.manifest_key)
    .bind(sqlx::types::Json(&c.warnings))
    .bind(&c.parts)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_failed(conn: &mut PgConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE backups SET status = 'failed' WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every backup whose parent chain reaches `id` (children, grandchildren…), except those
/// already being deleted; nearest first.
pub async fn dependents(conn: &mut PgConnection, id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE deps AS (
             SELECT id, 1 AS depth FROM backups WHERE parent_id = $1 AND status <> 'deleting'
             UNION
             SELECT b.id, d.depth + 1 FROM backups b JOIN deps d ON b.parent_id = d.id
              WHERE b.status <> 'deleting'
         )
         SELECT id FROM deps GROUP BY id ORDER BY MIN(depth), id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// Locks the named backups for the caller's transaction (`FOR UPDATE`) and returns them.
pub async fn lock(conn: &mut PgConnection, ids: &[String]) -> Result<Vec<BackupRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM backups WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// Every backup of the given sources, locked for the caller's transaction when `lock`.
pub async fn of_sources(
    conn: &mut PgConnection,
    source_ids: &[Uuid],
    lock: bool,
) -> Result<Vec<BackupRow>, sqlx::Error> {
    let sql = if lock {
        "SELECT * FROM backups WHERE source_id = ANY($1) ORDER BY id FOR UPDATE"
    } else {
        "SELECT * FROM backups WHERE source_id = ANY($1) ORDER BY id"
    };
    sqlx::query_as(sql).bind(source_ids).fetch_all(conn).await
}

/// Marks backups `deleting`: hidden from restore and download until the job removes them.
pub async fn mark_deleting(conn: &mut PgConnection, ids: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE backups SET status = 'deleting' WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes catalog rows. One statement, so a child and its parent in the same set go
/// together (the parent FK is checked at the end of the statement).
pub async fn delete_rows(conn: &mut PgConnection, ids: &[String]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM backups WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
