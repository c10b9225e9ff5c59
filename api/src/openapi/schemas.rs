//! Documentation-only schemas: the shape on the wire of values whose Rust types live in
//! the shared crates (`strata-core`…) (which does not depend on utoipa) or are checked as plain strings.
//! Handlers point at them with `#[schema(value_type = …)]` / `#[param(value_type = …)]`.

use std::borrow::Cow;

use strata_core::errors::ErrorCode;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// An error's machine-readable `code`: every value of `strata_core::errors::ErrorCode`
/// (the table with each code's status and meaning is docs/ERRORS.md).
pub struct ErrorCodeName;

impl PartialSchema for ErrorCodeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Stable and machine-readable; the table of every code with its HTTP status \
                 and meaning is docs/ERRORS.md. Codes whose status there is `job` appear only \
                 in a job's `error` or result.",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .examples([ErrorCode::InvalidSourceName.as_str()])
            .into()
    }
}

impl ToSchema for ErrorCodeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// What a backup holds relative to its parent.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum BackupTypeName {
    Full,
    Incremental,
    Differential,
}

/// Where a backup is in its life.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum BackupStatusName {
    Pending,
    Complete,
    Failed,
    Deleting,
}

/// What a job does.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobKindName {
    Backup,
    Restore,
    Delete,
    Prune,
    Verify,
    Import,
    Gc,
}

/// Where a job is in its life.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobStatusName {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// An archive format.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ArchiveFormatName {
    Tar,
    Zip,
}

/// The part of a backup a download selects.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DownloadPartName {
    Files,
    Database,
}

/// A retention policy; a rule left out (or null) keeps nothing by that rule.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RetentionPolicy {
    /// The newest N backups.
    keep_last: Option<u32>,
    /// The newest backup of each of the last N days.
    daily: Option<u32>,
    /// The newest backup of each of the last N weeks.
    weekly: Option<u32>,
    /// The newest backup of each of the last N months.
    monthly: Option<u32>,
    /// The newest backup of each of the last N years.
    yearly: Option<u32>,
    /// Every backup younger than N days.
    retention_days: Option<u32>,
}

/// What an uploaded archive holds, as inspected before it was accepted.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ArchiveSummary {
    entries: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    /// Bytes of file content.
    uncompressed_size: u64,
    /// Bytes of the archive itself.
    archive_size: u64,
}

/// Where a restore writes: one path or name for every part, or one per part.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RestoreTarget {
    /// An absolute path, or a name (`[a-z0-9_-]`, at most 64 characters): a directory
    /// beside the source's (and, for a database, a database or file of that name).
    Path(String),
    /// One target per part.
    Parts(RestoreTargetParts),
}

/// A restore's target for each part of a backup with both.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub struct RestoreTargetParts {
    /// The directory (absolute, or a name beside the source's).
    files: Option<String>,
    /// The PostgreSQL database, or the SQLite file (absolute, or a name).
    database: Option<String>,
}
