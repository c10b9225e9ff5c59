//! Strata's job lifecycle, above the engine: how a job is recorded ([`enqueue`], the
//! only writer of `jobs` and `outbox` rows), relayed to RabbitMQ ([`relay`]), claimed,
//! heartbeated, retried, released and swept ([`runner`]), and how it ends
//! ([`JobError`]); schedules that turn into jobs, and retention pruning.

pub mod enqueue;
pub mod error;
pub mod outbox;
pub mod prune;
pub mod queue;
pub mod relay;
pub mod results;
pub mod runner;
pub mod schedule;
pub mod store;

pub use error::{JobError, JobResult};

use std::time::Duration;

use strata_core::config::{parse_var, var, SecretUrl};

/// How jobs are queued and tried (`STRATA_AMQP_URL`, `STRATA_QUEUE`, `STRATA_JOB_*`,
/// `STRATA_SWEEP_INTERVAL_MS`).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    pub amqp_url: SecretUrl,
    /// Name of the job queue; the dead-letter exchange and queue derive from it.
    pub queue_name: String,
    /// How long a worker's claim on a job lasts without a heartbeat.
    pub job_lease: Duration,
    /// How many times a job is tried before it ends `failed`.
    pub job_max_attempts: i32,
    /// How often the sweeper looks for expired leases.
    pub sweep_interval: Duration,
}

impl JobsConfig {
    /// Reads the job variables.
    pub fn from_env() -> anyhow::Result<Self> {
        let lease_secs: u64 = parse_var("STRATA_JOB_LEASE_SECS", 60)?;
        anyhow::ensure!(
            lease_secs >= 2,
            "STRATA_JOB_LEASE_SECS: must be at least 2 seconds"
        );
        let max_attempts: i32 = parse_var("STRATA_JOB_MAX_ATTEMPTS", 3)?;
        anyhow::ensure!(
            max_attempts >= 1,
            "STRATA_JOB_MAX_ATTEMPTS: must be at least 1"
        );
        Ok(Self {
            amqp_url: SecretUrl::new(
                var("STRATA_AMQP_URL")
                    .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            ),
            queue_name: var("STRATA_QUEUE").unwrap_or_else(|| "strata.jobs".into()),
            job_lease: Duration::from_secs(lease_secs),
            job_max_attempts: max_attempts,
            sweep_interval: Duration::from_millis(parse_var("STRATA_SWEEP_INTERVAL_MS", 5000)?),
        })
    }
}
