//! The worker process's settings: each layer's own, read from the environment, plus
//! its own (one table in the README).

use std::time::Duration;

use anyhow::bail;
use strata_core::config::{parse_var, Common, WORKER_METRICS_BIND};
use strata_engine::repo::gc::GcOptions;
use strata_jobs::JobsConfig;
use strata_storage::StorageConfig;

/// Everything `strata-worker` reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    pub storage: StorageConfig,
    pub jobs: JobsConfig,
    /// `STRATA_WORKER_CONCURRENCY` (default 2): how many jobs one worker runs at once.
    pub concurrency: u16,
    /// Garbage collection (`STRATA_GC_*`).
    pub gc: GcOptions,
    /// `STRATA_JOB_STALL_SECS` (default 600): a running job whose progress has not moved
    /// this long is stopped and handed back as a transient failure (it is retried).
    pub stall: Duration,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let common = Common::from_env(WORKER_METRICS_BIND)?;
        let concurrency: u16 = parse_var("STRATA_WORKER_CONCURRENCY", 2)?;
        if concurrency == 0 {
            bail!("STRATA_WORKER_CONCURRENCY: must be at least 1");
        }
        let stall: u64 = parse_var("STRATA_JOB_STALL_SECS", 600)?;
        if stall < 2 {
            bail!("STRATA_JOB_STALL_SECS: must be at least 2 seconds");
        }
        Ok(Self {
            stall: Duration::from_secs(stall),
            storage: StorageConfig::from_env(&common.data_dir)?,
            common,
            jobs: JobsConfig::from_env()?,
            concurrency,
            gc: GcOptions::from_env()?,
        })
    }
}
