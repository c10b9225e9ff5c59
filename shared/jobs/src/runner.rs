//! Runs jobs from the queue: claim in PostgreSQL (a duplicate delivery claims nothing),
//! ack, heartbeat the lease, report progress, watch for stalls, and commit how the job
//! ended. What a job *does* is the [`Handler`]'s; everything about its lifecycle is here.
//!
//! How a job ends is decided from values, never by inspecting an error's type: the job
//! returns a [`JobResult`], and when the runner itself asked the job to stop it knows
//! why ([`StopReason`]), whatever error the stop surfaced as.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::errors::ErrorCode;

use anyhow::Context;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use sqlx::PgConnection;
use strata_catalog as db;
use strata_catalog::backups::Completion;
use strata_core::model::{JobKind, JobMessage, JobStatus};
use strata_engine::repo::progress::{CancelFlag, Progress};
use strata_telemetry as telemetry;
use strata_telemetry::metrics::BackupBytes;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use crate::enqueue::JobRequest;
use crate::error::{JobError, JobResult};
use crate::queue::{self, Topology};
use crate::results::JobOutput;
use crate::store::{self, JobRow, Progress as DbProgress};
use crate::JobsConfig;

/// How long a stalled job's work gets to return after it was told to stop, before the
/// runner abandons it and hands the job back anyway.
pub const STALL_GRACE: Duration = Duration::from_secs(10);

/// How a job ended well.
#[derive(Debug)]
pub struct Outcome {
    /// The job's result, as clients read it (its byte counters feed the metrics).
    pub result: JobOutput,
    pub warnings: Vec<serde_json::Value>,
    /// A backup job's catalog entry, committed together with the job's final status.
    pub backup: Option<(String, Completion)>,
}

impl Outcome {
    /// A result without warnings or a backup to complete.
    pub fn of(result: JobOutput) -> Self {
        Self {
            result,
            warnings: Vec::new(),
            backup: None,
        }
    }
}

/// What a job gets to run with.
pub struct RunContext {
    pub job: JobRow,
    /// The job's kind and payload, typed.
    pub request: JobRequest,
    pub progress: Arc<Progress>,
    /// Set when the job must stop at its next checkpoint.
    pub cancel: CancelFlag,
}

/// A job that ended without succeeding, for [`Handler::ended_unfinished`].
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub id: Uuid,
    pub kind: String,
    /// An import's uploaded archive, no longer needed.
    pub upload_key: Option<String>,
}

/// What runs the jobs of each kind.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one job to its end, or until `ctx.cancel` is set.
    async fn run(&self, ctx: &RunContext) -> JobResult<Outcome>;

    /// A job ended failed or cancelled (here or by the sweeper): free what it held.
    async fn ended_unfinished(&self, job: &Unfinished);
}

/// Why the runner asked a job to stop. The first reason wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A client cancelled the job: it ends `cancelled`.
    Cancel,
    /// The worker shuts down: the job is handed back without spending an attempt.
    Shutdown,
    /// The job's progress did not move for `STRATA_JOB_STALL_SECS`: a transient failure.
    Stalled,
    /// Another worker or the sweeper took the job: nothing more is written.
    LeaseLost,
}

/// The runner's settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub jobs: JobsConfig,
    /// How many jobs run at once.
    pub concurrency: u16,
    /// `STRATA_JOB_STALL_SECS`: a running job whose progress has not moved this long is
    /// stopped and handed back as a transient failure.
    pub stall: Duration,
    pub worker_id: String,
}

/// Takes jobs from the queue and runs them with `handler`.
pub struct Runner<H> {
    pub config: RunnerConfig,
    pub pool: sqlx::PgPool,
    pub handler: Arc<H>,
}

struct Stop {
    flag: CancelFlag,
    reason: Mutex<Option<StopReason>>,
}

impl Stop {
    fn set(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.flag.store(true, Ordering::Relaxed);
    }

    fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<H: Handler> Runner<H> {
    /// Consumes until `shutdown` turns true, reconnecting to RabbitMQ as needed; then
    /// waits for running jobs, which stop at their next checkpoint and are released.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let jobs = &self.config.jobs;
        let topo = Topology::new(&jobs.queue_name);
        let slots = Arc::new(Semaphore::new(self.config.concurrency as usize));
        let mut running = JoinSet::new();
        let mut backoff = Duration::from_millis(200);
        'connect: while !*shutdown.borrow() {
            let name = format!(
                "strata-worker {} {}",
                self.config.worker_id, jobs.queue_name
            );
            let conn = match queue::connect(&jobs.amqp_url, &name).await {
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
            let consumer = queue::consume(
                &conn,
                &topo,
                self.config.concurrency,
                &self.config.worker_id,
            )
            .await;
            let (_channel, mut consumer) = match consumer {
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
        // Jobs that ended are still in the set until joined: count only those running.
        while running.try_join_next().is_some() {}
        if running.is_empty() {
            tracing::info!("stopping: no job is running");
        } else {
            tracing::info!(
                jobs = running.len(),
                "stopping: waiting for running jobs to stop"
            );
        }
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
            worker_id = %self.config.worker_id,
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
            let claimed = store::claim(
                &mut conn,
                job_id,
                &self.config.worker_id,
                self.config.jobs.job_lease,
            )
            .await?;
            let exists = match &claimed {
                Some(_) => true,
                None => store::get(&mut conn, job_id).await?.is_some(),
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
        let stop = Stop {
            flag: Arc::new(AtomicBool::new(false)),
            reason: Mutex::new(None),
        };
        let request = JobRequest::from_row(&job);
        let ctx = request.map(|request| RunContext {
            job: job.clone(),
            request,
            progress: progress.clone(),
            cancel: stop.flag.clone(),
        });
        let work = async {
            match &ctx {
                Ok(ctx) => self.handler.run(ctx).await,
                Err(message) => Err(JobError::permanent(ErrorCode::BadPayload, message.clone())),
            }
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // A client's cancel is looked for more often than progress is written, so a job
        // stops within about 0.1 s of the request.
        let mut cancel_tick = tokio::time::interval(Duration::from_millis(100));
        let beat_every = self.config.jobs.job_lease / 3;
        let mut last_beat = tokio::time::Instant::now();
        let mut last_progress = DbProgress::default();
        // The stall watchdog: when the counters or the phase last moved.
        let mut last_moved = (snapshot(&progress), tokio::time::Instant::now());
        let mut abandon_at: Option<tokio::time::Instant> = None;
        let worker_id = &self.config.worker_id;
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = shutdown.changed(), if stop.reason().is_none() => {
                    tracing::info!("shutting down: stopping the job at its next checkpoint");
                    stop.set(StopReason::Shutdown);
                }
                _ = cancel_tick.tick(), if stop.reason().is_none() => {
                    let asked = async {
                        let mut conn = self.pool.acquire().await?;
                        store::cancel_requested(&mut conn, job.id).await
                    }.await;
                    if let Ok(true) = asked {
                        tracing::info!("cancel requested: stopping the job at its next checkpoint");
                        stop.set(StopReason::Cancel);
                    }
                }
                _ = tick.tick() => {
                    let now = snapshot(&progress);
                    if now != last_moved.0 {
                        last_moved = (now.clone(), tokio::time::Instant::now());
                    } else if stop.reason().is_none() && last_moved.1.elapsed() >= self.config.stall {
                        let waits: Vec<String> = progress
                            .waits()
                            .into_iter()
                            .map(|(what, d)| format!("{what} (for {:.0} s)", d.as_secs_f64()))
                            .collect();
                        tracing::error!(
                            phase = %now.phase,
                            stalled_secs = last_moved.1.elapsed().as_secs(),
                            waiting_on = %if waits.is_empty() { "nothing recorded".to_string() } else { waits.join("; ") },
                            "the job made no progress for STRATA_JOB_STALL_SECS; stopping it and handing it back"
                        );
                        stop.set(StopReason::Stalled);
                        abandon_at = Some(tokio::time::Instant::now() + STALL_GRACE);
                    }
                    if abandon_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                        tracing::error!("the stalled job did not stop within {} s; abandoning it", STALL_GRACE.as_secs());
                        break Err(JobError::Stopped);
                    }
                    let beat = last_beat.elapsed() >= beat_every;
                    if now == last_progress && !beat {
                        continue;
                    }
                    let kept = async {
                        let mut conn = self.pool.acquire().await?;
                        let ok = store::set_progress(&mut conn, job.id, worker_id, &now).await?
                            && (!beat || store::heartbeat(&mut conn, job.id, worker_id, self.config.jobs.job_lease).await?);
                        Ok::<bool, sqlx::Error>(ok)
                    }.await;
                    match kept {
                        Ok(true) => {
                            last_progress = now;
                            if beat { last_beat = tokio::time::Instant::now(); }
                        }
                        Ok(false) => {
                            tracing::warn!("lost the job's lease; stopping");
                            stop.set(StopReason::LeaseLost);
                        }
                        // PostgreSQL briefly unreachable: keep working, the lease has slack.
                        Err(e) => tracing::warn!(error = %e, "could not record progress"),
                    }
                }
            }
        };
        progress.end_phase();
        // Whatever error a stop surfaced as (a storage request abandoned, a half-written
        // file…), the reason the runner stopped the job decides how it ends.
        let result = match (result, stop.reason()) {
            (Ok(outcome), _) => Ok(outcome),
            (Err(_), Some(StopReason::LeaseLost)) => {
                tracing::Span::current().record("status", "lease_lost");
                return;
            }
            (Err(_), Some(StopReason::Cancel)) => Err(JobError::Cancelled),
            (Err(_), Some(StopReason::Shutdown)) => Err(JobError::Stopped),
            // Whether the work returned or was abandoned after STALL_GRACE.
            (Err(e), Some(StopReason::Stalled)) => Err(JobError::Transient(anyhow::anyhow!(
                "the job made no progress for {} s and was stopped (last error: {e})",
                self.config.stall.as_secs()
            ))),
            (Err(e), None) => Err(e),
        };
        let stalled = stop.reason() == Some(StopReason::Stalled);
        let last = snapshot(&progress);
        if let Err(e) = self.conclude(&job, &last, result, stalled).await {
            tracing::error!(error = %format!("{e:#}"), "could not record the job's end; the sweeper will retry it");
        }
    }

    /// Commits how the job ended, fenced by this worker's id.
    async fn conclude(
        &self,
        job: &JobRow,
        progress: &DbProgress,
        result: JobResult<Outcome>,
        stalled: bool,
    ) -> anyhow::Result<()> {
        let worker_id = &self.config.worker_id;
        let mut tx = self.pool.begin().await?;
        store::set_progress(&mut tx, job.id, worker_id, progress).await?;
        // A cancel requested after the last look (or while the worker stops) still wins
        // over a retry or a hand-back: the job must not run again.
        let result = match result {
            Err(e)
                if !matches!(e, JobError::Cancelled)
                    && store::cancel_requested(&mut tx, job.id).await? =>
            {
                tracing::info!(error = %e, "the job stopped after its cancel was requested");
                Err(JobError::Cancelled)
            }
            other => other,
        };
        let span = tracing::Span::current();
        // The final status once committed (None: the job runs again), with the bytes.
        let ended: Option<(JobStatus, Option<BackupBytes>)> = match result {
            Ok(outcome) => {
                let done = store::finish(
                    &mut tx,
                    job.id,
                    worker_id,
                    JobStatus::Succeeded,
                    Some(&outcome.result.to_value()),
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
                        scheduled_retention(&mut tx, job, schedule_id, backup_id).await?;
                    }
                }
                tx.commit().await?;
                span.record("status", "succeeded");
                tracing::info!(warnings = outcome.warnings.len(), "job succeeded");
                Some((JobStatus::Succeeded, outcome.result.bytes()))
            }
            Err(JobError::Cancelled) => {
                // A client asked the job to stop; it stopped at a checkpoint, having
                // written nothing that a reader could mistake for a result.
                let error = serde_json::json!({"code": ErrorCode::Cancelled, "message": "cancelled at the client's request"});
                end_unfinished(&mut tx, job, worker_id, JobStatus::Cancelled, None, &error).await?;
                tx.commit().await?;
                span.record("status", "cancelled");
                tracing::info!("job cancelled");
                Some((JobStatus::Cancelled, None))
            }
            Err(JobError::Stopped) => {
                // Shutdown: hand the job back without spending an attempt.
                let error = serde_json::json!({"code": ErrorCode::Released, "message": "the worker stopped; the job will run again"});
                store::release(&mut tx, job.id, worker_id, &error).await?;
                tx.commit().await?;
                span.record("status", "released");
                tracing::info!("job released for another worker");
                None
            }
            Err(e) => {
                let code = if stalled {
                    ErrorCode::JobStalled
                } else {
                    e.code()
                };
                let message = e.to_string();
                let error = serde_json::json!({ "code": code, "message": message });
                let permanent = matches!(e, JobError::Permanent { .. });
                if !permanent && job.attempts < job.max_attempts {
                    let delay = 2f64.powi(job.attempts.min(8));
                    store::retry(&mut tx, job.id, worker_id, &error, delay).await?;
                    tx.commit().await?;
                    span.record("status", "retrying");
                    span.record("error_code", code.as_str());
                    tracing::warn!(error = %message, retry_in_secs = delay, "job failed; will retry");
                    None
                } else {
                    let details = match &e {
                        JobError::Permanent { details, .. } => details.as_ref(),
                        _ => None,
                    };
                    end_unfinished(&mut tx, job, worker_id, JobStatus::Failed, details, &error)
                        .await?;
                    tx.commit().await?;
                    span.record("status", "failed");
                    span.record("error_code", code.as_str());
                    span.record("otel.status_code", "ERROR");
                    tracing::error!(error = %message, "job failed");
                    Some((JobStatus::Failed, None))
                }
            }
        };
        if let Some((status, bytes)) = ended {
            if status != JobStatus::Succeeded {
                self.handler.ended_unfinished(&unfinished(job)).await;
            }
            count_end(job, status.as_str(), bytes.as_ref());
        }
        Ok(())
    }
}

/// A scheduled backup succeeded: its schedule's retention runs in the same transaction
/// (a savepoint: a failure of retention is logged and recorded in the job's result, and
/// never fails the backup; the next scheduled backup prunes again).
async fn scheduled_retention(
    tx: &mut PgConnection,
    job: &JobRow,
    schedule_id: Uuid,
    backup_id: &str,
) -> anyhow::Result<()> {
    let Some(source_id) = job.source_id else {
        return Ok(());
    };
    let created_at = db::backups::get(&mut *tx, backup_id)
        .await?
        .context("the backup of a scheduled job is missing")?
        .created_at;
    let mut sp = sqlx::Connection::begin(&mut *tx).await?;
    let applied = crate::prune::after_scheduled_backup(
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
            serde_json::json!({"error": {"code": ErrorCode::RetentionFailed, "message": format!("{e:#}")}})
        }
    };
    store::set_result_field(tx, job.id, "retention", &value).await?;
    Ok(())
}

/// Ends a job that did not finish its work (failed or cancelled), fenced by the
/// worker's id: the backup a backup or import job was writing, and the pre-restore
/// backup of a restore, become `failed` (never left `pending`).
async fn end_unfinished(
    tx: &mut PgConnection,
    job: &JobRow,
    worker_id: &str,
    status: JobStatus,
    details: Option<&serde_json::Value>,
    error: &serde_json::Value,
) -> anyhow::Result<()> {
    let done = store::finish(
        &mut *tx,
        job.id,
        worker_id,
        status,
        details,
        Some(error),
        &[],
    )
    .await?;
    if done {
        for backup_id in pending_backups(job) {
            db::backups::mark_failed(&mut *tx, &backup_id).await?;
        }
    }
    Ok(())
}

/// The `pending` backups a job creates: the backup of a backup or import job, the
/// pre-restore backup of a restore.
fn pending_backups(job: &JobRow) -> Vec<String> {
    match JobKind::parse(&job.kind) {
        Ok(JobKind::Backup | JobKind::Import) => job.backup_id.iter().cloned().collect(),
        Ok(JobKind::Restore) => job
            .payload
            .0
            .get("pre_restore_backup_id")
            .and_then(|v| v.as_str())
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn unfinished(job: &JobRow) -> Unfinished {
    Unfinished {
        id: job.id,
        kind: job.kind.clone(),
        upload_key: job
            .payload
            .0
            .get("upload_key")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    }
}

/// Counts a job's end in `strata_job_duration_seconds` (from its first start).
fn count_end(job: &JobRow, status: &str, bytes: Option<&BackupBytes>) {
    let elapsed = chrono::Utc::now() - job.started_at.unwrap_or(job.created_at);
    telemetry::metrics::job_finished(
        &job.kind,
        status,
        elapsed.to_std().unwrap_or_default(),
        bytes,
    );
}

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

/// Re-queues jobs whose worker stopped heartbeating; fails those out of attempts, and
/// ends `cancelled` those a client asked to stop (they never run again). A job it ends
/// is counted in `strata_job_duration_seconds` and its handler frees what it held.
pub async fn sweep_once<H: Handler>(pool: &sqlx::PgPool, handler: &H) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let expired = store::sweep_expired(&mut tx).await?;
    for job in &expired {
        if job.status == JobStatus::Queued.as_str() {
            store::wake(&mut tx, job.id).await?;
        } else {
            for backup_id in pending_backups(job) {
                db::backups::mark_failed(&mut tx, &backup_id).await?;
            }
        }
    }
    tx.commit().await.context("committing the sweep")?;
    for job in &expired {
        tracing::warn!(job_id = %job.id, status = %job.status, "job lease expired");
        if job.status != JobStatus::Queued.as_str() {
            handler.ended_unfinished(&unfinished(job)).await;
            count_end(job, &job.status, None);
        }
    }
    Ok(expired.len())
}

/// Runs the sweeper until shutdown.
pub async fn sweeper<H: Handler>(
    pool: sqlx::PgPool,
    handler: Arc<H>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = sweep_once(&pool, handler.as_ref()).await {
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
