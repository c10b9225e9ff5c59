//! The verify job: read every pack a backup's chain needs and check every chunk.

use strata_shared::db;
use strata_shared::model::VerifyPayload;
use strata_shared::repo::chain::load_chain;
use strata_shared::repo::verify::verify;

use super::{JobContext, Outcome, Permanent};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: VerifyPayload) -> anyhow::Result<Outcome> {
    let mut conn = ctx.pool.acquire().await?;
    let backup = db::backups::get(&mut conn, payload.backup_id.as_str())
        .await?
        .ok_or_else(|| Permanent::error("backup_not_found", "the backup no longer exists"))?;
    drop(conn);
    if backup.status != "complete" {
        return Err(Permanent::error(
            "backup_not_complete",
            format!("backup {} is {}, not complete", backup.id, backup.status),
        ));
    }
    let manifest = match ctx.repo.get_manifest(&backup.id).await {
        Ok(m) => m,
        Err(e) => {
            return Err(Permanent::with_details(
                "backup_damaged",
                format!("the manifest of backup {} cannot be read: {e:#}", backup.id),
                serde_json::json!({ "backup_id": backup.id, "ok": false }),
            ))
        }
    };
    let chain = load_chain(&ctx.repo, manifest).await?;
    let report = verify(
        &ctx.repo,
        &ctx.pool,
        &chain,
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await?;
    let json = serde_json::to_value(&report)?;
    if !report.ok {
        let files: usize = report.problems.iter().map(|p| p.files_affected).sum();
        return Err(Permanent::with_details(
            "backup_damaged",
            format!(
                "backup {} is damaged: {} problem(s) affecting {files} file(s); see the job's result",
                backup.id,
                report.problems.len()
            ),
            json,
        ));
    }
    Ok(Outcome {
        result: json,
        warnings: Vec::new(),
        backup: None,
    })
}
