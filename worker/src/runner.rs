//! The worker's [`Handler`]: opens the repository a job may use, holds a repository
//! session while the job reads or writes it, and runs the job of each kind. Claiming,
//! heartbeats, progress, stalls and how a job ends are `strata_jobs::runner`'s.

use std::sync::Arc;

use anyhow::Context;
use strata_engine::paths::PathPolicy;
use strata_engine::repo::cancel::until_stopped;
use strata_engine::repo::crypto::MasterKey;
use strata_engine::repo::identity;
use strata_engine::repo::session::Session;
use strata_engine::repo::Repository;
use strata_jobs::enqueue::JobRequest;
use strata_jobs::runner::{Handler, Outcome, RunContext, Unfinished};
use strata_jobs::{JobError, JobResult};
use strata_storage::DynStorage;

use crate::config::Config;
use crate::jobs::{self, JobContext};

/// What every job of this worker shares.
pub struct Worker {
    pub config: Config,
    pub pool: sqlx::PgPool,
    pub storage: DynStorage,
    pub master: Option<MasterKey>,
    /// The repository last opened; `None` while the catalog and the storage disagree.
    pub repo: tokio::sync::Mutex<Option<Repository>>,
    pub paths: Arc<PathPolicy>,
}

impl Worker {
    /// The repository a job may use. The catalog and the storage must describe the same
    /// one; this is checked before every job (a query and one small read), so a
    /// repository emptied or replaced while the worker runs is caught before a job
    /// writes anything: the job fails `repository_mismatch`, with what to do.
    async fn job_repository(&self) -> JobResult<Repository> {
        let id = match identity::reconcile(&self.storage, &self.pool, self.master.as_ref()).await? {
            Ok(id) => id,
            Err(mismatch) => {
                return Err(JobError::permanent(
                    identity::MISMATCH_CODE,
                    mismatch.message,
                ))
            }
        };
        let mut cached = self.repo.lock().await;
        if let Some(repo) = cached.as_ref().filter(|r| r.config.repository_id == id) {
            return Ok(repo.clone());
        }
        let repo = Repository::open(self.storage.clone(), self.master.as_ref())
            .await
            .context("opening the repository")?;
        if repo.config.repository_id != id {
            return Err(anyhow::anyhow!(
                "the repository at {} changed while it was opened",
                self.storage.describe()
            )
            .into());
        }
        tracing::info!(repository = %id, "opened the repository");
        *cached = Some(repo.clone());
        Ok(repo)
    }

    async fn run_kind(&self, ctx: &JobContext, request: &JobRequest) -> JobResult<Outcome> {
        match request {
            JobRequest::Backup(payload) => jobs::backup::run(ctx, payload.clone()).await,
            JobRequest::Restore(payload) => jobs::restore::run(ctx, payload.clone()).await,
            JobRequest::Verify { payload, .. } => jobs::verify::run(ctx, payload.clone()).await,
            JobRequest::Delete { payload, .. } | JobRequest::Prune { payload, .. } => {
                jobs::delete::run(ctx, payload.clone(), &self.config.gc).await
            }
            JobRequest::Import(payload) => jobs::import::run(ctx, payload.clone()).await,
            JobRequest::Gc => jobs::gc::run(ctx, &self.config.gc).await,
        }
    }
}

#[async_trait::async_trait]
impl Handler for Worker {
    async fn run(&self, run: &RunContext) -> JobResult<Outcome> {
        // The identity check reads the store: it gives way to a stop too.
        let repo = {
            let _waiting = run
                .progress
                .wait("storage and catalog: the repository's identity");
            until_stopped(&run.cancel, self.job_repository()).await??
        };
        // Storage requests race the stop flag, so a cancel never waits for a slow
        // store. Not for delete and prune, which stop only between whole steps.
        let repo = match &run.request {
            JobRequest::Delete { .. } | JobRequest::Prune { .. } => repo,
            _ => repo.stopping_on(run.cancel.clone()),
        };
        let ctx = JobContext {
            job_id: run.job.id,
            pool: self.pool.clone(),
            index: strata_engine::repo::index::PgIndex::shared(self.pool.clone()),
            repo,
            progress: run.progress.clone(),
            cancel: run.cancel.clone(),
            paths: self.paths.clone(),
        };
        // Jobs that read or write the repository hold a session for their whole run:
        // garbage collection keeps every pack condemned after it started.
        let session = match &run.request {
            JobRequest::Backup(_)
            | JobRequest::Import(_)
            | JobRequest::Restore(_)
            | JobRequest::Verify { .. } => Some(
                Session::start(
                    &self.pool,
                    run.request.kind().as_str(),
                    Some(run.job.id),
                    Some(run.cancel.clone()),
                )
                .await?,
            ),
            _ => None,
        };
        let outcome = self.run_kind(&ctx, &run.request).await;
        if let Some(session) = session {
            session.end().await;
        }
        outcome
    }

    /// An import that ended without a backup (failed, cancelled) no longer needs its
    /// uploaded archive: it is deleted (garbage collection removes any left behind).
    async fn ended_unfinished(&self, job: &Unfinished) {
        let Some(key) = &job.upload_key else {
            return;
        };
        match self.storage.delete(key).await {
            Ok(()) => {
                tracing::info!(%key, job_id = %job.id, "deleted the upload of an import that did not succeed")
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "could not delete the upload; garbage collection will")
            }
        }
    }
}
