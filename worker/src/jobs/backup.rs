//! The backup job: snapshot a source into the repository, then write its manifest.

use anyhow::Context;
use chrono::Utc;
use std::sync::Arc;
use strata_shared::db;

use strata_shared::model::{BackupPayload, BackupType};
use strata_shared::repo::chain::{load_chain, resolve};
use strata_shared::repo::format::FORMAT_VERSION;
use strata_shared::repo::manifest::Manifest;
use strata_shared::repo::reader::ChunkReader;
use strata_shared::repo::writer::{write_snapshot, SnapshotInput};

use super::{JobContext, Outcome, Permanent};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: BackupPayload) -> anyhow::Result<Outcome> {
    let (source, backup) =
        super::source_and_backup(ctx, payload.source_id, &payload.backup_id, "backup").await?;
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

    // The parent: the newest complete backup of any type for an incremental, the newest
    // full for a differential. Without one the backup runs as a full, and says so.
    let mut conn = ctx.pool.acquire().await?;
    let parent_row = match payload.backup_type {
        BackupType::Full => None,
        BackupType::Incremental => {
            db::backups::latest_complete(&mut conn, source.id, false).await?
        }
        BackupType::Differential => {
            db::backups::latest_complete(&mut conn, source.id, true).await?
        }
    };
    drop(conn);
    let parent_chain = match &parent_row {
        Some(row) => {
            let manifest = ctx
                .repo
                .get_manifest(&row.id)
                .await
                .with_context(|| format!("reading the parent backup {}", row.id))?;
            Some(load_chain(&ctx.repo, manifest).await?)
        }
        None => None,
    };
    let effective_type = match parent_chain {
        Some(_) => payload.backup_type,
        None => BackupType::Full,
    };
    let parent_stream = parent_chain.as_ref().map(|chain| {
        let reader = Arc::new(ChunkReader::new(ctx.repo.clone(), ctx.pool.clone()));
        resolve(reader, tokio::runtime::Handle::current(), chain)
    });
    let mut chain: Vec<String> = parent_chain
        .iter()
        .flatten()
        .map(|m| m.backup_id.clone())
        .collect();
    chain.push(backup.id.clone());

    let output = write_snapshot(
        &ctx.repo,
        &ctx.pool,
        SnapshotInput {
            root: files.path.clone(),
            exclude: files.exclude.clone(),
            parent: parent_stream,
        },
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await?;

    ctx.progress.set_phase("manifest");
    let parent_id = parent_row.map(|r| r.id);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: backup.id.clone(),
        source_id: source.id,
        source_name: source.name.clone(),
        root: files.path.display().to_string(),
        backup_type: effective_type.to_string(),
        requested_type: payload.backup_type.to_string(),
        parent: parent_id.clone(),
        chain: chain.clone(),
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
    let completion = super::completion(&manifest, manifest_key)?;
    let s = &output.stats;
    Ok(Outcome {
        result: serde_json::json!({
            "backup_id": backup.id,
            "type": manifest.backup_type,
            "requested_type": manifest.requested_type,
            "parent": parent_id,
            "chain": chain,
            "files": s.files,
            "changed_files": s.changed_files,
            "unchanged_files": s.unchanged_files,
            "deleted": s.deleted,
            "dirs": s.dirs,
            "symlinks": s.symlinks,
            "logical_size": s.logical_size,
            "stored_size": s.stored_size,
            "new_chunks": s.new_chunks,
            "reused_chunks": s.reused_chunks,
        }),
        warnings: completion.warnings.clone(),
        backup: Some((backup.id.clone(), completion)),
    })
}
