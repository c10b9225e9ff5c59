//! The `audit_log` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub request_id: String,
    pub actor: Option<String>,
    pub role: Option<String>,
    pub method: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub status: i32,
    pub client: Option<String>,
}

pub struct NewAudit<'a> {
    pub request_id: &'a str,
    pub actor: Option<&'a str>,
    pub role: Option<&'a str>,
    pub method: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub status: i32,
    pub client: Option<&'a str>,
}

pub async fn insert(conn: &mut PgConnection, a: &NewAudit<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (request_id, actor, role, method, action, target, outcome, status, client)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(a.request_id)
    .bind(a.actor)
    .bind(a.role)
    .bind(a.method)
    .bind(a.action)
    .bind(a.target)
    .bind(a.outcome)
    .bind(a.status)
    .bind(a.client)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub outcome: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: entries with a smaller id.
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(conn: &mut PgConnection, f: &AuditFilter) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM audit_log
         WHERE ($1::text IS NULL OR actor = $1)
           AND ($2::text IS NULL OR outcome = $2)
           AND ($3::text IS NULL OR action = $3)
           AND ($4::timestamptz IS NULL OR at >= $4)
           AND ($5::timestamptz IS NULL OR at < $5)
           AND ($6::bigint IS NULL OR id < $6)
         ORDER BY id DESC LIMIT $7",
    )
    .bind(f.actor.as_deref())
    .bind(f.outcome.as_deref())
    .bind(f.action.as_deref())
    .bind(f.since)
    .bind(f.until)
    .bind(f.before_id)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}
