//! The restore job: rebuild a backup's tree in a staging directory beside the target,
//! then swap it in. A failed restore leaves the live target as it was.

use anyhow::Context;
use strata_shared::db;
use strata_shared::model::{BackupId, BackupPayload, BackupType, RestorePayload};
use strata_shared::repo::chain::load_chain;
use strata_shared::repo::reader::{remove_all, restore_into, staging_path, swap_into_place};

use super::{JobContext, Outcome, Permanent};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: RestorePayload) -> anyhow::Result<Outcome> {
    let mut conn = ctx.pool.acquire().await?;
    let backup = db::backups::get(&mut conn, payload.backup_id.as_str())
        .await?
        .ok_or_else(|| Permanent::error("backup_not_found", "the backup no longer exists"))?;
    if backup.status != "complete" {
        return Err(Permanent::error(
            "backup_not_complete",
            format!("backup {} is {}, not complete", backup.id, backup.status),
        ));
    }
    let source = db::sources::get(&mut conn, payload.source_id)
        .await?
        .ok_or_else(|| Permanent::error("source_not_found", "the source no longer exists"))?;
    drop(conn);
    let target = match payload.target.clone() {
        Some(t) => t,
        None => source
            .spec
            .0
            .files
            .as_ref()
            .map(|f| f.path.clone())
            .ok_or_else(|| Permanent::error("no_target", "the source has no path to restore to"))?,
    };
    let parent = target
        .parent()
        .ok_or_else(|| Permanent::error("invalid_target", "the target has no parent directory"))?;
    if !parent.is_dir() {
        return Err(Permanent::error(
            "target_parent_missing",
            format!(
                "the target's parent directory {} does not exist",
                parent.display()
            ),
        ));
    }

    let mut warnings = Vec::new();
    if let Some(id) = &payload.pre_restore_backup_id {
        if let Some(w) = pre_restore_backup(ctx, &payload, id, &target).await? {
            warnings.push(w);
        }
    }

    let manifest = ctx.repo.get_manifest(&backup.id).await?;
    let staging = staging_path(&target, &ctx.job_id.to_string())?;
    // A previous attempt of this job may have left its staging directory behind.
    remove_all(&staging).context("clearing an earlier attempt's staging directory")?;
    let chain = load_chain(&ctx.repo, manifest).await?;
    // Replacing live data (deleted after the swap) needs the new tree on disk first; a
    // restore into a new directory destroys nothing, so it skips the flush.
    let replaces_live_data = std::fs::symlink_metadata(&target).is_ok();
    let restored = restore_into(
        &ctx.repo,
        &ctx.pool,
        &chain,
        &payload.include,
        &staging,
        replaces_live_data,
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await;
    let stats = match restored {
        Ok(stats) => stats,
        Err(e) => {
            if let Err(clean) = remove_all(&staging) {
                tracing::warn!(error = %format!("{clean:#}"), "could not remove the staging directory");
            }
            return Err(e);
        }
    };
    ctx.progress.set_phase("swapping");
    swap_into_place(&staging, &target)?;
    Ok(Outcome {
        result: serde_json::json!({
            "backup_id": backup.id,
            "chain": chain.iter().map(|m| m.backup_id.clone()).collect::<Vec<_>>(),
            "include": payload.include,
            "target": target.display().to_string(),
            "files": stats.files,
            "dirs": stats.dirs,
            "symlinks": stats.symlinks,
            "bytes": stats.bytes,
            "pre_restore_backup_id": payload.pre_restore_backup_id,
        }),
        warnings,
        backup: None,
    })
}

/// Backs up the source's current state before the restore overwrites it, and records
/// that backup complete at once (its manifest is in storage): it stays even when the
/// restore then fails. A target that does not exist has nothing to keep: the pending
/// row is removed and a warning says so. If the backup fails, the restore does not run.
async fn pre_restore_backup(
    ctx: &JobContext,
    payload: &RestorePayload,
    id: &BackupId,
    target: &std::path::Path,
) -> anyhow::Result<Option<serde_json::Value>> {
    let mut conn = ctx.pool.acquire().await?;
    let row = db::backups::get(&mut conn, id.as_str()).await?;
    match row.as_ref().map(|r| r.status.as_str()) {
        // An earlier attempt of this job already took it (or it is gone).
        Some("complete") | None => return Ok(None),
        _ => {}
    }
    if std::fs::symlink_metadata(target).is_err() {
        sqlx::query("DELETE FROM backups WHERE id = $1 AND status = 'pending'")
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
        return Ok(Some(serde_json::json!({
            "code": "no_pre_restore_backup",
            "message": format!("{} does not exist: there was nothing to back up before restoring", target.display()),
        })));
    }
    drop(conn);
    ctx.progress.set_phase("pre_restore_backup");
    let backup = BackupPayload {
        backup_id: id.clone(),
        source_id: payload.source_id,
        // A full: the safety net must not depend on backups a later delete could remove.
        backup_type: BackupType::Full,
    };
    match super::backup::run(ctx, backup).await {
        Ok(outcome) => {
            let mut conn = ctx.pool.acquire().await?;
            if let Some((backup_id, completion)) = &outcome.backup {
                db::backups::mark_complete(&mut conn, backup_id, completion).await?;
            }
            tracing::info!(backup_id = %id, "pre-restore backup complete");
            Ok(None)
        }
        Err(e) => {
            if !e.is::<strata_shared::repo::writer::Stopped>() {
                let mut conn = ctx.pool.acquire().await?;
                db::backups::mark_failed(&mut conn, id.as_str()).await?;
            }
            Err(e.context("the pre-restore backup failed; nothing was restored"))
        }
    }
}
