//! Delete and prune jobs: remove backups the API marked `deleting`, then reclaim the
//! storage no remaining backup needs.
//!
//! Order, so that every crash point is harmless and a retry finishes the work:
//! 1. the catalog rows (one statement, children and parents together), only for backups
//!    still `deleting`: a backup outside the set that still needs one of them makes the
//!    job fail before anything is removed;
//! 2. the manifests of every backup of the payload the catalog no longer has (deleting
//!    an absent manifest is fine, so a retry repeats it safely);
//! 3. garbage collection (`repo::gc`), which runs alongside backups (it waits only for
//!    another collection).

use std::collections::HashSet;
use strata_core::errors::ErrorCode;

use strata_catalog as db;
use strata_core::model::DeletePayload;
use strata_engine::repo::gc;
use strata_engine::repo::manifest::manifest_key;

use strata_jobs::results::{CollectResult, JobOutput};

use super::{JobContext, JobError, JobResult, Outcome};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, count = payload.backup_ids.len()))]
pub async fn run(
    ctx: &JobContext,
    payload: DeletePayload,
    gc_options: &gc::GcOptions,
) -> JobResult<Outcome> {
    let ids: Vec<String> = payload
        .backup_ids
        .iter()
        .map(|b| b.as_str().to_string())
        .collect();
    ctx.progress.set_phase("deleting_backups");
    let removed = remove_from_catalog(ctx, &ids).await?;
    let gone = not_in_catalog(ctx, &ids).await?;
    for id in &gone {
        ctx.repo
            .storage
            .delete(&manifest_key(id))
            .await
            .map_err(|e| anyhow::Error::from(e).context(format!("deleting manifest of {id}")))?;
    }
    tracing::info!(
        removed = removed.len(),
        manifests = gone.len(),
        "backups deleted; collecting garbage"
    );
    let report = gc::collect(&ctx.repo, &ctx.pool, gc_options, &ctx.progress, &ctx.cancel).await?;
    Ok(Outcome::of(JobOutput::Collect(CollectResult {
        deleted_backups: Some(gone),
        report: serde_json::to_value(&report)?,
    })))
}

/// Deletes the catalog rows of the payload's backups still marked `deleting`.
async fn remove_from_catalog(ctx: &JobContext, ids: &[String]) -> JobResult<Vec<String>> {
    let mut tx = ctx.pool.begin().await?;
    let rows = db::backups::lock(&mut tx, ids).await?;
    let deleting: Vec<String> = rows
        .into_iter()
        .filter(|r| r.status == "deleting")
        .map(|r| r.id)
        .collect();
    match db::backups::delete_rows(&mut tx, &deleting).await {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => {
            return Err(JobError::permanent(ErrorCode::BackupHasDependents,
                format!("another backup still depends on one of these backups; nothing was deleted ({e})"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(deleting)
}

/// The payload's backups the catalog does not have (any more).
async fn not_in_catalog(ctx: &JobContext, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let mut conn = ctx.pool.acquire().await?;
    let present: HashSet<String> = db::backups::lock(&mut conn, ids)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    Ok(ids
        .iter()
        .filter(|i| !present.contains(*i))
        .cloned()
        .collect())
}
