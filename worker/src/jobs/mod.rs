//! One module per job kind. A job function does the work and says how it ended; the
//! runner (`strata_jobs::runner`) owns claiming, heartbeats, progress and the final
//! status.

pub mod backup;
pub mod delete;
pub mod gc;
pub mod import;
pub mod restore;
pub mod verify;

use std::sync::Arc;
use strata_core::errors::ErrorCode;

use strata_catalog as db;
use strata_catalog::backups::BackupRow;
use strata_catalog::sources::SourceRow;
use strata_core::model::BackupId;
use strata_engine::paths::PathPolicy;
use strata_engine::repo::index::DynIndex;
use strata_engine::repo::progress::{CancelFlag, Progress};
use strata_engine::repo::Repository;
use uuid::Uuid;

/// What a job needs while it runs.
pub struct JobContext {
    pub job_id: Uuid,
    pub pool: sqlx::PgPool,
    /// The chunk index (in `pool`).
    pub index: DynIndex,
    pub repo: Repository,
    pub progress: Arc<Progress>,
    pub cancel: CancelFlag,
    /// Where restores may write and sources may be read (checked again right before).
    pub paths: Arc<PathPolicy>,
}

pub use strata_jobs::runner::Outcome;
pub use strata_jobs::{JobError, JobResult};

/// The source and the catalog row of the backup a job writes; their absence is a
/// permanent failure (`what` names the job: "backup", "import").
pub async fn source_and_backup(
    ctx: &JobContext,
    source_id: Uuid,
    backup_id: &BackupId,
    what: &str,
) -> JobResult<(SourceRow, BackupRow)> {
    let mut conn = ctx.pool.acquire().await?;
    let source = db::sources::get(&mut conn, source_id)
        .await?
        .ok_or_else(|| {
            JobError::permanent(
                ErrorCode::SourceNotFound,
                format!("the source of this {what} no longer exists"),
            )
        })?;
    let backup = db::backups::get(&mut conn, backup_id.as_str())
        .await?
        .ok_or_else(|| {
            JobError::permanent(
                ErrorCode::BackupNotFound,
                "the backup record of this job is missing",
            )
        })?;
    Ok((source, backup))
}

/// The backup a restore or verify reads, re-checked when the job starts, in its own
/// transaction with the row locked `FOR SHARE`: a backup deleted (or being deleted)
/// since the API accepted the job is `backup_not_found` / `backup_not_complete`, and a
/// delete cannot mark it `deleting` in between.
pub async fn complete_backup(ctx: &JobContext, backup_id: &BackupId) -> JobResult<BackupRow> {
    let mut tx = ctx.pool.begin().await?;
    let backup = db::backups::get_for_share(&mut tx, backup_id.as_str())
        .await?
        .ok_or_else(|| {
            JobError::permanent(ErrorCode::BackupNotFound, "the backup no longer exists")
        })?;
    if backup.status != "complete" {
        return Err(JobError::permanent(
            ErrorCode::BackupNotComplete,
            format!("backup {} is {}, not complete", backup.id, backup.status),
        ));
    }
    tx.commit().await?;
    Ok(backup)
}

impl JobContext {
    /// A restore target checked right before it is written: where it really lands, or a
    /// permanent `target_not_allowed`.
    pub fn allowed_target(&self, path: &std::path::Path) -> JobResult<std::path::PathBuf> {
        self.paths
            .restore_target(path, "target")
            .map_err(|e| JobError::permanent(e.code, e.message))
    }

    /// A source path checked right before it is read: a permanent `source_not_allowed`
    /// when it lands where no source may be.
    pub fn allowed_source(&self, path: &std::path::Path, field: &str) -> JobResult<()> {
        self.paths
            .source(path, field)
            .map(|_| ())
            .map_err(|e| JobError::permanent(e.code, e.message))
    }
}
