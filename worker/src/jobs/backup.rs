//! The backup job: snapshot a source into the repository, then write its manifest.

use anyhow::Context;
use chrono::Utc;
use strata_shared::db;
use strata_shared::db::backups::Completion;
use strata_shared::model::BackupPayload;
use strata_shared::repo::format::FORMAT_VERSION;
use strata_shared::repo::manifest::Manifest;
use strata_shared::repo::writer::{write_snapshot, SnapshotInput};

use super::{JobContext, Outcome, Permanent};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: BackupPayload) -> anyhow::Result<Outcome> {
    let mut conn = ctx.pool.acquire().await?;
    let source = db::sources::get(&mut conn, payload.source_id)
        .await?
        .ok_or_else(|| {
            Permanent::error(
                "source_not_found",
                "the source of this backup no longer exists",
            )
        })?;
    let backup = db::backups::get(&mut conn, payload.backup_id.as_str())
        .await?
        .ok_or_else(|| {
            Permanent::error(
                "backup_not_found",
                "the backup record of this job is missing",
            )
        })?;
    drop(conn);
    let files =
        source.spec.0.files.clone().ok_or_else(|| {
            Permanent::error("nothing_to_back_up", "the source has no files part")
        })?;
    match std::fs::metadata(&files.path) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(Permanent::error(
                "source_not_a_directory",
                format!(
                    "the source path {} is not a directory",
                    files.path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(Permanent::error(
                "source_unreadable",
                format!(
                    "the source path {} cannot be read: {e}",
                    files.path.display()
                ),
            ))
        }
    }

    let output = write_snapshot(
        &ctx.repo,
        &ctx.pool,
        SnapshotInput {
            root: files.path.clone(),
            exclude: files.exclude.clone(),
        },
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await?;

    ctx.progress.set_phase("manifest");
    // Every incremental and differential runs as a full until the engine tracks parents;
    // the record says what ran.
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: backup.id.clone(),
        source_id: source.id,
        source_name: source.name.clone(),
        root: files.path.display().to_string(),
        backup_type: "full".into(),
        requested_type: payload.backup_type.to_string(),
        parent: None,
        created_at: backup.created_at,
        completed_at: Utc::now(),
        stats: output.stats.clone(),
        tree: output.tree.clone(),
        warnings: output.warnings.clone(),
    };
    let manifest_key = ctx
        .repo
        .put_manifest(&manifest)
        .await
        .context("writing the manifest")?;
    let warnings: Vec<serde_json::Value> = output
        .warnings
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let s = &output.stats;
    Ok(Outcome {
        result: serde_json::json!({
            "backup_id": backup.id,
            "type": manifest.backup_type,
            "files": s.files,
            "dirs": s.dirs,
            "symlinks": s.symlinks,
            "logical_size": s.logical_size,
            "stored_size": s.stored_size,
            "new_chunks": s.new_chunks,
            "reused_chunks": s.reused_chunks,
        }),
        warnings: warnings.clone(),
        backup: Some((
            backup.id.clone(),
            Completion {
                backup_type: manifest.backup_type.clone(),
                parent_id: None,
                logical_size: s.logical_size as i64,
                stored_size: s.stored_size as i64,
                file_count: s.files as i64,
                dir_count: s.dirs as i64,
                manifest_key,
                warnings,
            },
        )),
    })
}
