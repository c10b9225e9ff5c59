//! The garbage collection job (`POST /api/v1/repository/gc`): collects garbage while
//! backups keep running; its result is the collection's report.

use strata_engine::repo::gc;
use strata_jobs::results::{CollectResult, JobOutput};

use super::{JobContext, JobResult, Outcome};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id))]
pub async fn run(ctx: &JobContext, options: &gc::GcOptions) -> JobResult<Outcome> {
    let report = gc::collect(&ctx.repo, &ctx.pool, options, &ctx.progress, &ctx.cancel).await?;
    Ok(Outcome::of(JobOutput::Collect(CollectResult {
        deleted_backups: None,
        report: serde_json::to_value(&report)?,
    })))
}
