//! What every handler can reach.

use std::sync::Arc;

use crate::config::Config;
use anyhow::Context;
use strata_engine::paths::PathPolicy;
use strata_engine::repo::crypto::MasterKey;
use strata_engine::repo::Repository;
use strata_storage::DynStorage;
use tokio::sync::OnceCell;

use crate::auth::AuthState;
use strata_jobs::relay::RelayState;

pub struct AppState {
    pub config: Config,
    pub pool: sqlx::PgPool,
    pub storage: DynStorage,
    pub relay: Arc<RelayState>,
    pub auth: AuthState,
    /// The snapshot repository, opened on first use (the worker creates it; the API may
    /// start before it exists).
    pub repo: OnceCell<Repository>,
    /// `STRATA_ENCRYPTION_KEY`, to open an encrypted repository.
    pub master_key: Option<MasterKey>,
    /// Where restores may write and sources may be read.
    pub paths: PathPolicy,
    /// One permit per archive download streaming now (`STRATA_MAX_DOWNLOADS`).
    pub downloads: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The repository, opened on first call; a failure is retried on the next call.
    pub async fn repo(&self) -> anyhow::Result<&Repository> {
        self.repo
            .get_or_try_init(|| async {
                Repository::open(self.storage.clone(), self.master_key.as_ref())
                    .await
                    .context("opening the repository")
            })
            .await
    }
}
