//! Delete and prune jobs: remove backups the API marked `deleting`, then reclaim the
//! storage no remaining backup needs.

use strata_shared::model::DeletePayload;

use super::{JobContext, Outcome, Permanent};

pub async fn run(_ctx: &JobContext, _payload: DeletePayload) -> anyhow::Result<Outcome> {
    Err(Permanent::error(
        "unsupported_job_kind",
        "not implemented yet",
    ))
}
