//! Takes jobs from the queue and runs them: claim in PostgreSQL (a duplicate delivery
//! claims nothing), ack, heartbeat the lease, report progress, commit the final status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use strata_shared::config::Config;
use strata_shared::db;
use strata_shared::db::jobs::{JobRow, Progress as DbProgress};
use strata_shared::model::{
    BackupPayload, DeletePayload, ImportPayload, JobKind, JobMessage, JobStatus, RestorePayload,
    VerifyPayload,
};
use strata_shared::paths::PathPolicy;
use strata_shared::queue::{self, Topology};
use strata_shared::repo::crypto::MasterKey;
use strata_shared::repo::identity;
use strata_shared::repo::session::Session;
use strata_shared::repo::writer::{is_stopped, Progress, Stopped};
use strata_shared::repo::Repository;
use strata_shared::storage::{DynStorage, StorageError};
use strata_shared::telemetry;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use crate::jobs::{self, JobContext, Outcome, Permanent};

/// Everything the runner shares between jobs.
pub struct Runner {
    pub config: Config,
    pub pool: sqlx::PgPool,
    pub storage: DynStorage,
    pub master: Option<MasterKey>,
    /// The repository last opened; `None` while the catalog and the storage disagree.
    pub repo: tokio::sync::Mutex<Option<Repository>>,
    pub paths: Arc<PathPolicy>,
    pub worker_id: String,
}

impl Runner {
    /// The repository a job may use. The catalog and the storage must describe the same
    /// one; this is checked before every job (a query and one small read), so a
    /// repository emptied or replaced while the worker runs is caught before a job
    /// writes anything: the job fails `repository_mismatch`, with what to do.
    async fn job_repository(&self) -> anyhow::Result<Repository> {
        let id = match identity::reconcile(&self.storage, &self.pool, self.master.as_ref()).await? {
            Ok(id) => id,
            Err(mismatch) => {
                return Err(Permanent::error(identity::MISMATCH_CODE, mismatch.message))
            }
        };
        let mut cached = self.repo.lock().await;
        if let Some(repo) = cached.as_ref().filter(|r| r.config.repository_id == id) {
            return Ok(repo.clone());
        }
        let repo = Repository::open(self.storage.clone(), self.master.as_ref())
            .await
            .context("opening the repository")?;
        anyhow::ensure!(
            repo.config.repository_id == id,
            "the repository at {} changed while it was opened",
            self.storage.describe()
        );
        tracing::info!(repository = %id, "opened the repository");
        *cached = Some(repo.clone());
        Ok(repo)
    }

    /// Consumes until `shutdown` turns true, reconnecting to RabbitMQ as needed; then
    /// waits for running jobs, which stop at their next checkpoint and are released.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let topo = Topology::new(&self.config.queue_name);
        let slots = Arc::new(Semaphore::new(self.config.worker_concurrency as usize));
        let mut running = JoinSet::new();
        let mut backoff = Duration::from_millis(200);
        'connect: while !*shutdown.borrow() {
            let name = format!(
                "strata-worker {} {}",
                self.worker_id, self.config.queue_name
            );
            let conn = match queue::connect(&self.config.amqp_url, &name).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "RabbitMQ unreachable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let (_channel, mut consumer) = match queue::consume(
                &conn,
                &topo,
                self.config.worker_concurrency,
                &self.worker_id,
            )
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot consume; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            tracing::info!(queue = %topo.queue, "consuming jobs");
            loop {
                while running.try_join_next().is_some() {}
                let delivery = tokio::select! {
                    d = consumer.next() => d,
                    _ = shutdown.changed() => break 'connect,
                };
                match delivery {
                    Some(Ok(delivery)) => {
                        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                        let me = self.clone();
                        let stop = shutdown.clone();
                        running.spawn(async move {
                            me.handle(delivery, stop).await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "lost the RabbitMQ connection; reconnecting");
                        continue 'connect;
                    }
                    None => {
                        tracing::warn!("the consumer was cancelled; reconnecting");
                        continue 'connect;
                    }
                }
            }
        }
        tracing::info!(
            jobs = running.len(),
            "stopping: waiting for running jobs to stop"
        );
        while running.join_next().await.is_some() {}
    }

    async fn handle(&self, delivery: lapin::message::Delivery, shutdown: watch::Receiver<bool>) {
        let message: JobMessage = match serde_json::from_slice(&delivery.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(
                    message_id = ?delivery.properties.message_id().as_ref().map(|m| m.to_string()),
                    error = %e,
                    "unreadable job message; sending it to the dead-letter queue"
                );
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
        };
        let job_id = message.job_id;
        // The job's span continues the trace the message carries (the request that made
        // the job, through the outbox's publish).
        let span = tracing::info_span!(
            "job",
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            %job_id,
            kind = tracing::field::Empty,
            attempt = tracing::field::Empty,
            status = tracing::field::Empty,
            error_code = tracing::field::Empty,
            worker_id = %self.worker_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::set_parent_from(&span, &queue::string_headers(&delivery.properties));
        telemetry::record_ids(&span);
        self.handle_job(delivery, job_id, shutdown)
            .instrument(span)
            .await;
    }

    async fn handle_job(
        &self,
        delivery: lapin::message::Delivery,
        job_id: Uuid,
        shutdown: watch::Receiver<bool>,
    ) {
        let claimed = async {
            let mut conn = self.pool.acquire().await?;
            let claimed =
                db::jobs::claim(&mut conn, job_id, &self.worker_id, self.config.job_lease).await?;
            let exists = match &claimed {
                Some(_) => true,
                None => db::jobs::get(&mut conn, job_id).await?.is_some(),
            };
            Ok::<_, anyhow::Error>((claimed, exists))
        }
        .instrument(tracing::info_span!("claim"))
        .await;
        let job = match claimed {
            Ok((Some(job), _)) => job,
            Ok((None, true)) => {
                tracing::debug!(%job_id, "job already claimed or finished; duplicate delivery ignored");
                let _ = delivery.ack(BasicAckOptions::default()).await;
                return;
            }
            Ok((None, false)) => {
                tracing::error!(%job_id, "message names no known job; sending it to the dead-letter queue");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
            Err(e) => {
                // PostgreSQL is unreachable: give the message back and try later.
                tracing::warn!(%job_id, error = %format!("{e:#}"), "cannot claim the job; requeueing the message");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = delivery.reject(BasicRejectOptions { requeue: true }).await;
                return;
            }
        };
        // PostgreSQL holds the job now; the broker can forget the message.
        if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(%job_id, error = %e, "ack failed; a redelivery will be ignored");
        }
        let span = tracing::Span::current();
        span.record("kind", job.kind.as_str());
        span.record("attempt", job.attempts);
        self.execute(job, shutdown).await;
    }

    async fn execute(&self, job: JobRow, mut shutdown: watch::Receiver<bool>) {
        tracing::info!("job started");
        let progress = Arc::new(Progress::traced(tracing::Span::current()));
        let cancel = Arc::new(AtomicBool::new(false));
        let lease_lost = Arc::new(AtomicBool::new(false));
        let user_cancel = AtomicBool::new(false);
        let work = async {
            // The identity check reads the store: it gives way to a cancel too.
            let repo = strata_shared::repo::cancel::until_stopped(&cancel, self.job_repository())
                .await??;
            // Storage requests race the stop flag, so a cancel never waits for a slow
            // store. Not for delete and prune, which stop only between whole steps.
            let repo = match JobKind::parse(&job.kind) {
                Ok(JobKind::Delete | JobKind::Prune) => repo,
                _ => repo.stopping_on(cancel.clone()),
            };
            let ctx = JobContext {
                job_id: job.id,
                pool: self.pool.clone(),
                repo,
                progress: progress.clone(),
                cancel: cancel.clone(),
                paths: self.paths.clone(),
            };
            self.dispatch(&ctx, &job).await
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // A client's cancel is looked for more often than progress is written, so a job
        // stops within about 0.1 s of the request.
        let mut cancel_tick = tokio::time::interval(Duration::from_millis(100));
        let beat_every = self.config.job_lease / 3;
        let mut last_beat = tokio::time::Instant::now();
        let mut last_progress = DbProgress::default();
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = shutdown.changed() => {
                    tracing::info!("shutting down: stopping the job at its next checkpoint");
                    cancel.store(true, Ordering::Relaxed);
                }
                _ = cancel_tick.tick(), if !user_cancel.load(Ordering::Relaxed) => {
                    let asked = async {
                        let mut conn = self.pool.acquire().await?;
                        db::jobs::cancel_requested(&mut conn, job.id).await
                    }.await;
                    if let Ok(true) = asked {
                        tracing::info!("cancel requested: stopping the job at its next checkpoint");
                        user_cancel.store(true, Ordering::Relaxed);
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                _ = tick.tick() => {
                    let now = snapshot(&progress);
                    let beat = last_beat.elapsed() >= beat_every;
                    if now == last_progress && !beat {
                        continue;
                    }
                    let kept = async {
                        let mut conn = self.pool.acquire().await?;
                        let ok = db::jobs::set_progress(&mut conn, job.id, &self.worker_id, &now).await?
                            && (!beat || db::jobs::heartbeat(&mut conn, job.id, &self.worker_id, self.config.job_lease).await?);
                        Ok::<bool, sqlx::Error>(ok)
                    }.await;
                    match kept {
                        Ok(true) => {
                            last_progress = now;
                            if beat { last_beat = tokio::time::Instant::now(); }
                        }
                        Ok(false) => {
                            tracing::warn!("lost the job's lease; stopping");
                            lease_lost.store(true, Ordering::Relaxed);
                            cancel.store(true, Ordering::Relaxed);
                        }
                        // PostgreSQL briefly unreachable: keep working, the lease has slack.
                        Err(e) => tracing::warn!(error = %e, "could not record progress"),
                    }
                }
            }
        };
        progress.end_phase();
        if lease_lost.load(Ordering::Relaxed) {
            tracing::Span::current().record("status", "lease_lost");
            return;
        }
        let last = snapshot(&progress);
        let result = match result {
            // After a client's cancel, whatever error the stop surfaced as (a storage
            // request abandoned, a half-written file…), the job was cancelled: never
            // retried, never `failed`.
            Err(_) if user_cancel.load(Ordering::Relaxed) => Err(Cancelled.into()),
            Err(e) if is_stopped(&e) => Err(Stopped.into()),
            other => other,
        };
        if let Err(e) = self.conclude(&job, &last, result).await {
            tracing::error!(error = %format!("{e:#}"), "could not record the job's end; the sweeper will retry it");
        }
    }

    async fn dispatch(&self, ctx: &JobContext, job: &JobRow) -> anyhow::Result<Outcome> {
        let kind = JobKind::parse(&job.kind)
            .map_err(|e| Permanent::error("unknown_job_kind", e.to_string()))?;
        // Jobs that read or write the repository hold a session for their whole run:
        // garbage collection keeps every pack condemned after it started.
        let session = match kind {
            JobKind::Backup | JobKind::Import | JobKind::Restore | JobKind::Verify => Some(
                Session::start(
                    &self.pool,
                    kind.as_str(),
                    Some(job.id),
                    Some(ctx.cancel.clone()),
                )
                .await?,
            ),
            _ => None,
        };
        let outcome = self.run_kind(ctx, job, kind).await;
        if let Some(session) = session {
            session.end().await;
        }
        outcome
    }

    async fn run_kind(
        &self,
        ctx: &JobContext,
        job: &JobRow,
        kind: JobKind,
    ) -> anyhow::Result<Outcome> {
        match kind {
            JobKind::Backup => {
                let payload: BackupPayload = serde_json::from_value(job.payload.0.clone())
                    .map_err(|e| Permanent::error("bad_payload", format!("backup payload: {e}")))?;
                jobs::backup::run(ctx, payload).await
            }
            JobKind::Restore => {
                let payload: RestorePayload = serde_json::from_value(job.payload.0.clone())
                    .map_err(|e| {
                        Permanent::error("bad_payload", format!("restore payload: {e}"))
                    })?;
                jobs::restore::run(ctx, payload).await
            }
            JobKind::Verify => {
                let payload: VerifyPayload = serde_json::from_value(job.payload.0.clone())
                    .map_err(|e| Permanent::error("bad_payload", format!("verify payload: {e}")))?;
                jobs::verify::run(ctx, payload).await
            }
            JobKind::Delete | JobKind::Prune => {
                let payload: DeletePayload = serde_json::from_value(job.payload.0.clone())
                    .map_err(|e| Permanent::error("bad_payload", format!("delete payload: {e}")))?;
                jobs::delete::run(ctx, payload, &self.config.gc).await
            }
            JobKind::Import => {
                let payload: ImportPayload = serde_json::from_value(job.payload.0.clone())
                    .map_err(|e| Permanent::error("bad_payload", format!("import payload: {e}")))?;
                jobs::import::run(ctx, payload).await
            }
            JobKind::Gc => jobs::gc::run(ctx, &self.config.gc).await,
        }
    }

    /// Commits how the job ended, fenced by this worker's id.
    /// A scheduled backup succeeded: its schedule's retention runs in the same
    /// transaction (a savepoint: a failure of retention is logged and recorded in the
    /// job's result, and never fails the backup; the next scheduled backup prunes again).
    async fn scheduled_retention(
        &self,
        tx: &mut sqlx::PgConnection,
        job: &JobRow,
        schedule_id: uuid::Uuid,
        backup_id: &str,
    ) -> anyhow::Result<()> {
        let Some(source_id) = job.source_id else {
            return Ok(());
        };
        let created_at: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT created_at FROM backups WHERE id = $1")
                .bind(backup_id)
                .fetch_one(&mut *tx)
                .await?;
        let mut sp = sqlx::Connection::begin(&mut *tx).await?;
        let applied = strata_shared::prune::after_scheduled_backup(
            &mut sp,
            schedule_id,
            source_id,
            created_at,
            job.max_attempts,
        )
        .await;
        let value = match applied {
            Ok(None) => {
                sp.commit().await?;
                return Ok(());
            }
            Ok(Some(r)) => {
                sp.commit().await?;
                tracing::info!(%schedule_id, deleted = r.deleted.len(), kept = r.kept.len(), prune_job = ?r.job_id, "schedule retention applied");
                serde_json::to_value(&r)?
            }
            Err(e) => {
                sp.rollback().await?;
                tracing::error!(%schedule_id, error = %format!("{e:#}"), "schedule retention failed; the backup stands");
                serde_json::json!({"error": {"code": "retention_failed", "message": format!("{e:#}")}})
            }
        };
        sqlx::query(
            "UPDATE jobs SET result = jsonb_set(COALESCE(result, '{}'::jsonb), '{retention}', $2) WHERE id = $1",
        )
        .bind(job.id)
        .bind(sqlx::types::Json(value))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn conclude(
        &self,
        job: &JobRow,
        progress: &DbProgress,
        result: anyhow::Result<Outcome>,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        db::jobs::set_progress(&mut tx, job.id, &self.worker_id, progress).await?;
        // A cancel requested after the last look (or while the worker stops) still wins
        // over a retry or a hand-back: the job must not run again.
        let result = match result {
            Err(e)
                if !e.is::<Cancelled>() && db::jobs::cancel_requested(&mut tx, job.id).await? =>
            {
                tracing::info!(error = %format!("{e:#}"), "the job stopped after its cancel was requested");
                Err(Cancelled.into())
            }
            other => other,
        };
        // The final status and result, once committed (None: the job runs again).
        let ended = match result {
            Ok(outcome) => {
                let done = db::jobs::finish(
                    &mut tx,
                    job.id,
                    &self.worker_id,
                    JobStatus::Succeeded,
                    Some(&outcome.result),
                    None,
                    &outcome.warnings,
                )
                .await?;
                if !done {
                    tracing::warn!("the job was taken from this worker before it finished; its result is dropped");
                    return Ok(());
                }
                if let Some((backup_id, completion)) = &outcome.backup {
                    db::backups::mark_complete(&mut tx, backup_id, completion).await?;
                    if let Some(schedule_id) = job.schedule_id {
                        self.scheduled_retention(&mut tx, job, schedule_id, backup_id)
                            .await?;
                    }
                }
                tx.commit().await?;
                tracing::Span::current().record("status", "succeeded");
                tracing::info!(warnings = outcome.warnings.len(), "job succeeded");
                Some((JobStatus::Succeeded, Some(outcome.result)))
            }
            Err(e) if e.is::<Cancelled>() => {
                // A client asked the job to stop; it stopped at a checkpoint, having
                // written nothing that a reader could mistake for a result.
                let error = serde_json::json!({"code": "cancelled", "message": "cancelled at the client's request"});
                self.end_unfinished(&mut tx, job, JobStatus::Cancelled, None, &error)
                    .await?;
                tx.commit().await?;
                tracing::Span::current().record("status", "cancelled");
                tracing::info!("job cancelled");
                Some((JobStatus::Cancelled, None))
            }
            Err(e) if e.is::<Stopped>() => {
                // Shutdown: hand the job back without spending an attempt.
                let error = serde_json::json!({"code": "released", "message": "the worker stopped; the job will run again"});
                if db::jobs::requeue(&mut tx, job.id, &self.worker_id, &error).await? {
                    sqlx::query(
                        "UPDATE jobs SET attempts = GREATEST(attempts - 1, 0) WHERE id = $1",
                    )
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                    db::outbox::insert(&mut tx, job.id, 0.0).await?;
                }
                tx.commit().await?;
                tracing::Span::current().record("status", "released");
                tracing::info!("job released for another worker");
                None
            }
            Err(e) => {
                let permanent = e.downcast_ref::<Permanent>();
                let code = match permanent {
                    Some(p) => p.code,
                    None if StorageError::is_unavailable(&e) => "storage_unavailable",
                    None => "job_failed",
                };
                let message = format!("{e:#}");
                let error = serde_json::json!({ "code": code, "message": message });
                let retry = permanent.is_none() && job.attempts < job.max_attempts;
                if retry {
                    let delay = 2f64.powi(job.attempts.min(8));
                    if db::jobs::requeue(&mut tx, job.id, &self.worker_id, &error).await? {
                        db::outbox::insert(&mut tx, job.id, delay).await?;
                    }
                    tx.commit().await?;
                    let span = tracing::Span::current();
                    span.record("status", "retrying");
                    span.record("error_code", code);
                    tracing::warn!(error = %message, retry_in_secs = delay, "job failed; will retry");
                    None
                } else {
                    let details = permanent.and_then(|p| p.details.as_ref());
                    self.end_unfinished(&mut tx, job, JobStatus::Failed, details, &error)
                        .await?;
                    tx.commit().await?;
                    let span = tracing::Span::current();
                    span.record("status", "failed");
                    span.record("error_code", code);
                    span.record("otel.status_code", "ERROR");
                    tracing::error!(error = %message, "job failed");
                    Some((JobStatus::Failed, None))
                }
            }
        };
        if let Some((status, _)) = &ended {
            if *status != JobStatus::Succeeded {
                delete_upload(&self.storage, job).await;
            }
        }
        if let Some((status, result)) = ended {
            let elapsed = chrono::Utc::now() - job.started_at.unwrap_or(job.created_at);
            strata_shared::metrics::job_finished(
                &job.kind,
                status.as_str(),
                elapsed.to_std().unwrap_or_default(),
                result.as_ref(),
            );
        }
        Ok(())
    }

    /// Ends a job that did not finish its work (failed or cancelled), fenced by this
    /// worker's id; the backup a backup or import job was writing becomes `failed`.
    async fn end_unfinished(
        &self,
        tx: &mut sqlx::PgConnection,
        job: &JobRow,
        status: JobStatus,
        details: Option<&serde_json::Value>,
        error: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let done = db::jobs::finish(
            &mut *tx,
            job.id,
            &self.worker_id,
            status,
            details,
            Some(error),
            &[],
        )
        .await?;
        let writes_a_backup =
            job.kind == JobKind::Backup.as_str() || job.kind == JobKind::Import.as_str();
        if let (true, true, Some(backup_id)) = (done, writes_a_backup, &job.backup_id) {
            db::backups::mark_failed(tx, backup_id).await?;
        }
        Ok(())
    }
}

/// A job stopped because a client cancelled it (not because the worker shuts down).
#[derive(Debug, thiserror::Error)]
#[error("cancelled at the client's request")]
struct Cancelled;

/// The live counters, as the row stores them.
fn snapshot(p: &Progress) -> DbProgress {
    DbProgress {
        phase: p.phase().to_string(),
        bytes_done: p.bytes_done.load(Ordering::Relaxed) as i64,
        bytes_total: Some(p.bytes_total.load(Ordering::Relaxed) as i64),
        files_done: p.files_done.load(Ordering::Relaxed) as i64,
        files_total: Some(p.files_total.load(Ordering::Relaxed) as i64),
    }
}

/// An import that ended without a backup (failed, cancelled) no longer needs its
/// uploaded archive: it is deleted (garbage collection removes any left behind).
async fn delete_upload(storage: &DynStorage, job: &JobRow) {
    if job.kind != JobKind::Import.as_str() {
        return;
    }
    let Ok(payload) = serde_json::from_value::<ImportPayload>(job.payload.0.clone()) else {
        return;
    };
    match storage.delete(&payload.upload_key).await {
        Ok(()) => {
            tracing::info!(key = %payload.upload_key, "deleted the upload of an import that did not succeed")
        }
        Err(e) => {
            tracing::warn!(key = %payload.upload_key, error = %e, "could not delete the upload; garbage collection will")
        }
    }
}

/// Re-queues jobs whose worker stopped heartbeating; fails those out of attempts, and
/// ends `cancelled` those a client asked to stop (they never run again).
pub async fn sweep_once(pool: &sqlx::PgPool, storage: &DynStorage) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let expired = db::jobs::sweep_expired(&mut tx).await?;
    for job in &expired {
        if job.status == JobStatus::Queued.as_str() {
            db::outbox::insert(&mut tx, job.id, 0.0).await?;
        } else if job.kind == JobKind::Backup.as_str() || job.kind == JobKind::Import.as_str() {
            if let Some(b) = &job.backup_id {
                db::backups::mark_failed(&mut tx, b).await?;
            }
        }
    }
    tx.commit().await.context("committing the sweep")?;
    for job in &expired {
        tracing::warn!(job_id = %job.id, status = %job.status, "job lease expired");
        if job.status != JobStatus::Queued.as_str() && job.kind == JobKind::Import.as_str() {
            if let Some(key) = &job.upload_key {
                if let Err(e) = storage.delete(key).await {
                    tracing::warn!(%key, error = %e, "could not delete the upload; garbage collection will");
                }
            }
        }
    }
    Ok(expired.len())
}

/// Runs the sweeper until shutdown.
pub async fn sweeper(
    pool: sqlx::PgPool,
    storage: DynStorage,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = sweep_once(&pool, &storage).await {
            tracing::warn!(error = %format!("{e:#}"), "sweep failed");
        }
    }
}

/// A worker id unique across hosts and restarts.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}
