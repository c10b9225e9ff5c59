//! Query parameters of the list, browse and download routes. Every field is optional
//! unless the route needs it; a field left `None` is not sent. (strata-tests checks each
//! field is a parameter the server's document names for its route.)

use chrono::{DateTime, Utc};
use serde::Serialize;

/// `GET /api/v1/backup`: newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupFilter {
    /// Source id or name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `pending`, `complete`, `failed`, `deleting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `full`, `incremental`, `differential`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `GET /api/v1/jobs`: newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobFilter {
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `backup`, `restore`, `delete`, `prune`, `verify`, `import`, `gc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `GET /api/v1/backup/{id}/tree`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TreeOptions {
    /// The directory, relative to the backup's root (the root when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Everything below it, depth first, instead of one directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `GET /api/v1/backup/{id}/diff`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffOptions {
    /// The other backup (same source).
    pub against: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `GET /api/v1/search`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SearchOptions {
    /// `**/*.conf`, `etc/nginx/*`.
    pub glob: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// RFC 3339 or a duration ago (`7d`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newer_than: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `GET /api/v1/backup/{id}/download`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownloadOptions {
    /// `tar` (default) or `zip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `files` or `database` (the `.db` / `.sql` file itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Only this path (and what is below it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
    /// A file token instead of the `Authorization` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `DELETE /api/v1/backup/{id}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeleteOptions {
    /// `true`: delete the backups that depend on it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<String>,
}

/// `POST /api/v1/backup/upload`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /api/v1/backup/schedule`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScheduleFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `GET /api/v1/audit`: newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `allowed`, `denied`, `failed`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
}
