//! The restore job: rebuild a backup's tree in a staging directory beside the target,
//! then swap it in. A failed restore leaves the live target as it was.

use anyhow::Context;
use strata_shared::db;
use strata_shared::model::RestorePayload;
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
        }),
        warnings: Vec::new(),
        backup: None,
    })
}
