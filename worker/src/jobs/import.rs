//! Import jobs: an uploaded tar or zip archive becomes a new full backup.
//!
//! The archive the API stored under `upload_key` is downloaded to a temp file, extracted
//! into a fresh temp directory (every limit and path rule checked again, on the bytes
//! actually decompressed), and that directory is written by the snapshot writer exactly
//! like a full backup of a source; the manifest is written last. The upload object is
//! deleted once the backup exists, or when the import ends without one.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use strata_core::errors::ErrorCode;

use anyhow::Context;
use chrono::Utc;
use strata_core::model::{BackupType, ImportPayload};
use strata_engine::archive::{self, Limits};
use strata_engine::repo::format::FORMAT_VERSION;
use strata_engine::repo::manifest::Manifest;
use strata_engine::repo::progress::Stopped;
use strata_engine::repo::writer::{write_snapshot, SnapshotInput};
use strata_storage::StorageError;

use super::{JobContext, JobError, JobResult, Outcome};
use strata_jobs::results::{ImportResult, JobOutput};

/// Removes a temp file or directory when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

/// Imports the upload. An import that ends without a backup (refused, failed for good,
/// cancelled) has its upload deleted by the runner when it records that end.
#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: ImportPayload) -> JobResult<Outcome> {
    import(ctx, &payload).await
}

async fn import(ctx: &JobContext, payload: &ImportPayload) -> JobResult<Outcome> {
    let limits = limits_from_env()?;
    let (source, backup) =
        super::source_and_backup(ctx, payload.source_id, &payload.backup_id, "import").await?;

    let tmp = std::env::temp_dir();
    let archive_file =
        Scratch(tmp.join(format!("strata-import-{}.{}", ctx.job_id, payload.format)));
    let tree = Scratch(tmp.join(format!("strata-import-{}", ctx.job_id)));
    // A previous attempt of this job may have left its files behind.
    let _ = std::fs::remove_file(&archive_file.0);
    let _ = std::fs::remove_dir_all(&tree.0);

    ctx.progress.set_phase("downloading");
    match ctx
        .repo
        .storage
        .get_to_file(&payload.upload_key, &archive_file.0)
        .await
    {
        Ok(n) => ctx.progress.bytes_total.store(n, Ordering::Relaxed),
        Err(StorageError::NotFound(_)) => {
            return Err(JobError::permanent(
                ErrorCode::UploadMissing,
                "the uploaded archive is no longer in storage",
            ))
        }
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context("downloading the upload")
                .into())
        }
    }
    check_cancel(ctx)?;

    ctx.progress.set_phase("extracting");
    let summary = extract(ctx, &archive_file.0, &tree.0, limits).await?;
    drop(archive_file);
    ctx.progress.bytes_done.store(0, Ordering::Relaxed);
    ctx.progress.bytes_total.store(0, Ordering::Relaxed);

    let output = write_snapshot(
        &ctx.repo,
        &ctx.index,
        SnapshotInput {
            root: Some(tree.0.clone()),
            exclude: Vec::new(),
            skip: Vec::new(),
            parent: None,
            stream: None,
        },
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await?;

    ctx.progress.set_phase("manifest");
    let root = source
        .spec
        .0
        .files
        .as_ref()
        .map(|f| f.path.display().to_string())
        .unwrap_or_default();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: backup.id.clone(),
        source_id: source.id,
        source_name: source.name.clone(),
        root,
        backup_type: BackupType::Full.to_string(),
        requested_type: BackupType::Full.to_string(),
        parent: None,
        chain: vec![backup.id.clone()],
        created_at: backup.created_at,
        completed_at: Utc::now(),
        stats: output.stats.clone(),
        tree: output.tree.clone(),
        tree_index: output.tree_index.clone(),
        warnings: output.warnings.clone(),
        has_files: true,
        database: None,
        source_spec: Some(source.spec.0.without_secrets()),
    };
    // Last checkpoint: a lost repository session must not publish a manifest.
    check_cancel(ctx)?;
    let manifest_key = ctx
        .repo
        .put_manifest(&manifest)
        .await
        .context("writing the manifest")?;
    drop(tree);
    delete_upload(ctx, &payload.upload_key).await;

    let completion = manifest.completion(manifest_key)?;
    let s = &output.stats;
    Ok(Outcome {
        result: JobOutput::Import(ImportResult {
            backup_id: backup.id.clone(),
            source: source.name.clone(),
            backup_type: manifest.backup_type.clone(),
            format: payload.format.to_string(),
            archive: serde_json::to_value(&summary)?,
            stored: super::backup::stored(s),
        }),
        warnings: completion.warnings.clone(),
        backup: Some((backup.id.clone(), completion)),
    })
}

/// Extracts on a blocking thread, reporting bytes and stopping when the job is cancelled.
async fn extract(
    ctx: &JobContext,
    archive_path: &Path,
    dest: &Path,
    limits: Limits,
) -> JobResult<archive::Summary> {
    let archive_path = archive_path.to_path_buf();
    let dest = dest.to_path_buf();
    let progress = ctx.progress.clone();
    let cancel = ctx.cancel.clone();
    let extracted = tokio::task::spawn_blocking(move || {
        std::fs::create_dir(&dest)?;
        Ok::<_, std::io::Error>(archive::extract(
            &archive_path,
            &dest,
            &limits,
            &mut |done| {
                progress.bytes_done.store(done, Ordering::Relaxed);
                !cancel.load(Ordering::Relaxed)
            },
        ))
    })
    .await
    .context("the extraction task failed")?
    .context("creating the extraction directory")?;
    match extracted {
        Ok(summary) => Ok(summary),
        Err(e) if e.is_stopped() => Err(Stopped.into()),
        Err(e) if e.code == ErrorCode::ExtractFailed => Err(anyhow::Error::new(e).into()),
        Err(e) => Err(JobError::permanent(e.code, e.message)),
    }
}

fn check_cancel(ctx: &JobContext) -> anyhow::Result<()> {
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(Stopped.into());
    }
    Ok(())
}

async fn delete_upload(ctx: &JobContext, key: &str) {
    if let Err(e) = ctx.repo.storage.delete(key).await {
        tracing::warn!(%key, error = %e, "could not delete the uploaded archive");
    }
}

/// The worker applies the same archive limits as the API (same variables).
fn limits_from_env() -> anyhow::Result<Limits> {
    Ok(strata_engine::archive::UploadLimits::from_env()?.archive())
}
