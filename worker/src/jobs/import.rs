//! Import jobs: an uploaded tar or zip archive becomes a new full backup.

use strata_shared::model::ImportPayload;

use super::{JobContext, Outcome, Permanent};

pub async fn run(_ctx: &JobContext, _payload: ImportPayload) -> anyhow::Result<Outcome> {
    Err(Permanent::error(
        "unsupported_job_kind",
        "not implemented yet",
    ))
}
