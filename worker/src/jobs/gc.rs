//! The garbage collection job (`POST /api/v1/repository/gc`): collects garbage while
//! backups keep running; its result is the collection's report.

use strata_shared::repo::gc;

use super::{JobContext, Outcome};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id))]
pub async fn run(ctx: &JobContext, options: &gc::GcOptions) -> anyhow::Result<Outcome> {
    let report = gc::collect(&ctx.repo, &ctx.pool, options, &ctx.progress, &ctx.cancel).await?;
    Ok(Outcome {
        result: serde_json::to_value(&report)?,
        warnings: Vec::new(),
        backup: None,
    })
}
