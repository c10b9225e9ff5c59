//! The schedule ticker: tokio-cron-scheduler calls [`tick`] every second in each API
//! replica; PostgreSQL decides which replica fires what (`strata_jobs::schedule`).

use std::sync::Arc;

use crate::config::Config;
use anyhow::Context;
use chrono::Utc;
use sqlx::PgPool;
use strata_jobs::schedule::{fire_due, FireOptions};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

/// A running ticker; [`Ticker::stop`] ends it.
pub struct Ticker {
    scheduler: JobScheduler,
}

impl Ticker {
    pub async fn stop(mut self) {
        if let Err(e) = self.scheduler.shutdown().await {
            tracing::warn!(error = %e, "stopping the schedule ticker");
        }
    }
}

/// Starts ticking every second.
pub async fn start(pool: PgPool, config: &Config) -> anyhow::Result<Ticker> {
    let opts = Arc::new(FireOptions {
        misfire_grace: chrono::Duration::from_std(config.schedule_misfire_grace)
            .context("STRATA_SCHEDULE_MISFIRE_GRACE_SECS is too large")?,
        max_attempts: config.jobs.job_max_attempts,
        replica: replica_name(),
    });
    // One tick at a time per process: a slow tick makes the next one wait its turn
    // instead of piling up (other replicas keep firing meanwhile).
    let busy = Arc::new(Mutex::new(()));
    let scheduler = JobScheduler::new()
        .await
        .context("creating the schedule ticker")?;
    let job = Job::new_async("* * * * * *", move |_, _| {
        let (pool, opts, busy) = (pool.clone(), opts.clone(), busy.clone());
        Box::pin(async move {
            let Ok(_guard) = busy.try_lock() else {
                return;
            };
            tick(&pool, &opts).await;
        })
    })
    .context("creating the schedule tick")?;
    scheduler
        .add(job)
        .await
        .context("adding the schedule tick")?;
    scheduler
        .start()
        .await
        .context("starting the schedule ticker")?;
    tracing::info!("schedule ticker started");
    Ok(Ticker { scheduler })
}

/// Fires whatever is due now.
pub async fn tick(pool: &PgPool, opts: &FireOptions) {
    match fire_due(pool, Utc::now(), opts).await {
        Ok(r) if r.queued + r.skipped_busy + r.missed + r.failed > 0 => {
            tracing::debug!(
                queued = r.queued,
                skipped_busy = r.skipped_busy,
                missed = r.missed,
                failed = r.failed,
                "schedules fired"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "schedule tick failed; the next tick retries")
        }
    }
}

/// Host name and process id: which replica recorded a fire.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}:{}", std::process::id())
}
