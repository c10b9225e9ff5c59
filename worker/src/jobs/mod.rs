//! One module per job kind. A job function does the work and says how it ended; the
//! runner owns claiming, heartbeats, progress and the final status.

pub mod backup;
pub mod delete;
pub mod gc;
pub mod import;
pub mod restore;
pub mod verify;

use std::sync::Arc;

use strata_shared::db;
use strata_shared::db::backups::{BackupRow, Completion};
use strata_shared::db::sources::SourceRow;
use strata_shared::model::BackupId;
use strata_shared::paths::PathPolicy;
use strata_shared::repo::writer::{CancelFlag, Progress};
use strata_shared::repo::Repository;
use uuid::Uuid;

/// What a job needs while it runs.
pub struct JobContext {
    pub job_id: Uuid,
    pub pool: sqlx::PgPool,
    pub repo: Repository,
    pub progress: Arc<Progress>,
    pub cancel: CancelFlag,
    /// Where restores may write and sources may be read (checked again right before).
    pub paths: Arc<PathPolicy>,
}

/// How a job ended well.
#[derive(Debug, Default)]
pub struct Outcome {
    pub result: serde_json::Value,
    pub warnings: Vec<serde_json::Value>,
    /// A backup job's catalog entry, committed together with the job's final status.
    pub backup: Option<(String, Completion)>,
}

/// The source and the catalog row of the backup a job writes; their absence is a
/// permanent failure (`what` names the job: "backup", "import").
pub async fn source_and_backup(
    ctx: &JobContext,
    source_id: Uuid,
    backup_id: &BackupId,
    what: &str,
) -> anyhow::Result<(SourceRow, BackupRow)> {
    let mut conn = ctx.pool.acquire().await?;
    let source = db::sources::get(&mut conn, source_id)
        .await?
        .ok_or_else(|| {
            Permanent::error(
                "source_not_found",
                format!("the source of this {what} no longer exists"),
            )
        })?;
    let backup = db::backups::get(&mut conn, backup_id.as_str())
        .await?
        .ok_or_else(|| {
            Permanent::error(
                "backup_not_found",
                "the backup record of this job is missing",
            )
        })?;
    Ok((source, backup))
}

impl JobContext {
    /// A restore target checked right before it is written: where it really lands, or a
    /// permanent `target_not_allowed`.
    pub fn allowed_target(&self, path: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
        self.paths
            .restore_target(path, "target")
            .map_err(|e| Permanent::error(e.code, e.message))
    }

    /// A source path checked right before it is read: a permanent `source_not_allowed`
    /// when it lands where no source may be.
    pub fn allowed_source(&self, path: &std::path::Path, field: &str) -> anyhow::Result<()> {
        self.paths
            .source(path, field)
            .map(|_| ())
            .map_err(|e| Permanent::error(e.code, e.message))
    }
}

/// A failure that retrying cannot fix (bad source path, missing backup…): the job fails
/// at once instead of using its other attempts.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Permanent {
    pub code: &'static str,
    pub message: String,
    /// A report to keep as the job's result (e.g. what verify found).
    pub details: Option<serde_json::Value>,
}

impl Permanent {
    pub fn error(code: &'static str, message: impl Into<String>) -> anyhow::Error {
        Self {
            code,
            message: message.into(),
            details: None,
        }
        .into()
    }

    /// A failure with a report kept as the job's result.
    pub fn with_details(
        code: &'static str,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> anyhow::Error {
        Self {
            code,
            message: message.into(),
            details: Some(details),
        }
        .into()
    }
}
