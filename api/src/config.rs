//! The API process's settings: each layer's own, read from the environment, plus the
//! HTTP server's (one table in the README).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use strata_auth::config::AuthConfig;
use strata_core::config::{parse_var, var, Common, API_METRICS_BIND};
use strata_engine::archive::UploadLimits;
use strata_jobs::JobsConfig;
use strata_storage::StorageConfig;

/// Everything `strata-api` reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// API listen address (`STRATA_BIND`).
    pub bind: String,
    /// When set, the API writes the address it actually bound to this file (tests bind port 0).
    pub addr_file: Option<PathBuf>,
    pub common: Common,
    pub storage: StorageConfig,
    pub jobs: JobsConfig,
    pub auth: AuthConfig,
    /// Limits of `POST /api/v1/backup/upload`.
    pub upload: UploadLimits,
    /// `STRATA_SCHEDULER` (`on` | `off`, default on): whether this API process fires
    /// schedules (every replica may; PostgreSQL makes each fire happen once).
    pub scheduler: bool,
    /// `STRATA_SCHEDULE_MISFIRE_GRACE_SECS` (default 60): a fire seen later than this
    /// was missed (downtime): it runs once or is skipped, per the schedule's `catch_up`.
    pub schedule_misfire_grace: Duration,
    /// `STRATA_BODY_IDLE_TIMEOUT_SECS` (default 60): a request body that sends nothing
    /// for this long is refused with `408` (an upload, a JSON body).
    pub body_idle_timeout: Duration,
    /// `STRATA_MAX_DOWNLOADS` (default 8): archive downloads one API process streams at
    /// once; more get `429` with `Retry-After`.
    pub max_downloads: usize,
    /// `STRATA_IDEMPOTENCY_TTL_SECS` (default 86400): how long a create's answer is
    /// replayed for its `Idempotency-Key`; an older key is a new request.
    pub idempotency_ttl: Duration,
    /// `STRATA_SCHEDULE_FIRES_KEEP_DAYS` (default 90): how long the history of schedule
    /// fires is kept (each schedule's newest fire always is).
    pub schedule_fires_keep: Duration,
    /// `STRATA_POCKETBASE_SOURCE`: the source (name or id) the PocketBase-compatible
    /// routes serve; unset, the only source.
    pub pocketbase_source: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let common = Common::from_env(API_METRICS_BIND)?;
        let body_idle_secs: u64 = parse_var("STRATA_BODY_IDLE_TIMEOUT_SECS", 60)?;
        if body_idle_secs == 0 {
            bail!("STRATA_BODY_IDLE_TIMEOUT_SECS: must be at least 1 second");
        }
        let max_downloads: usize = parse_var("STRATA_MAX_DOWNLOADS", 8)?;
        if max_downloads == 0 {
            bail!("STRATA_MAX_DOWNLOADS: must be at least 1");
        }
        Ok(Self {
            bind: var("STRATA_BIND").unwrap_or_else(|| "127.0.0.1:8080".into()),
            addr_file: var("STRATA_ADDR_FILE").map(PathBuf::from),
            storage: StorageConfig::from_env(&common.data_dir)?,
            common,
            jobs: JobsConfig::from_env()?,
            auth: AuthConfig::from_env()?,
            upload: UploadLimits::from_env()?,
            scheduler: match var("STRATA_SCHEDULER").as_deref() {
                None | Some("on") | Some("true") => true,
                Some("off") | Some("false") => false,
                Some(other) => bail!("STRATA_SCHEDULER: must be `on` or `off`, got {other:?}"),
            },
            schedule_misfire_grace: Duration::from_secs(parse_var(
                "STRATA_SCHEDULE_MISFIRE_GRACE_SECS",
                60,
            )?),
            body_idle_timeout: Duration::from_secs(body_idle_secs),
            max_downloads,
            pocketbase_source: var("STRATA_POCKETBASE_SOURCE"),
            idempotency_ttl: Duration::from_secs(parse_var("STRATA_IDEMPOTENCY_TTL_SECS", 86_400)?),
            schedule_fires_keep: Duration::from_secs(
                parse_var::<u64>("STRATA_SCHEDULE_FIRES_KEEP_DAYS", 90)?.saturating_mul(86_400),
            ),
        })
    }
}
