//! Configuration from `STRATA_*` environment variables (one table in the README).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::storage::S3Options;

/// A value that must never reach logs, traces or responses.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself: call only where it is handed to the library that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A URL whose password, if any, is hidden when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    /// The URL with its password replaced by `[REDACTED]`, safe to log.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// Whether a URL query parameter holds a secret, by its (percent-decoded) name:
/// libpq's `password` and `sslpassword`, and anything named like a password, secret or
/// token, in any case.
pub fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|s| n.contains(s))
}

/// Replaces the password of a URL, and the value of every query parameter that holds a
/// secret, with `[REDACTED]`; an unparsable URL is hidden whole.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("[REDACTED]"));
            }
            if let Some(query) = u.query().map(str::to_string) {
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if is_secret_param(&percent_decoded(k)) => {
                            format!("{k}=[REDACTED]")
                        }
                        _ => pair.to_string(),
                    })
                    .collect();
                u.set_query(Some(&pairs.join("&")));
            }
            u.to_string()
        }
        Err(_) => "[REDACTED]".to_string(),
    }
}

/// Whether a URL carries a secret (a password, or a secret query parameter).
pub fn url_has_secret(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|u| {
        u.password().is_some()
            || u.query().is_some_and(|q| {
                q.split('&').any(|pair| {
                    is_secret_param(&percent_decoded(pair.split('=').next().unwrap_or("")))
                })
            })
    })
}

fn percent_decoded(s: &str) -> String {
    url::form_urlencoded::parse(format!("{s}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// The catalog's connection URL as the PostgreSQL driver gets it: without `sslpassword`
/// (the driver cannot use an encrypted client key, and would log the unknown parameter
/// with its value).
pub fn for_driver(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return raw.to_string();
    };
    let Some(query) = u.query().map(str::to_string) else {
        return raw.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            let drop = percent_decoded(key).eq_ignore_ascii_case("sslpassword");
            if drop {
                tracing::warn!("STRATA_DATABASE_URL: sslpassword is ignored (the PostgreSQL driver cannot use an encrypted client key)");
            }
            !drop
        })
        .collect();
    u.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    u.to_string()
}

/// Everything both binaries read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// API listen address (`STRATA_BIND`).
    pub bind: String,
    /// When set, the API writes the address it actually bound to this file (tests bind port 0).
    pub addr_file: Option<PathBuf>,
    pub database_url: SecretUrl,
    pub amqp_url: SecretUrl,
    /// Name of the job queue; the dead-letter exchange and queue derive from it.
    pub queue_name: String,
    pub data_dir: PathBuf,
    /// `file:///…` or `s3://bucket/prefix`.
    pub storage_url: String,
    pub s3: S3Options,
    /// Master key of an encrypted repository (`STRATA_ENCRYPTION_KEY`); a repository
    /// created while it is set is encrypted.
    pub encryption_key: Option<Secret>,
    /// How long a worker's claim on a job lasts without a heartbeat.
    pub job_lease: Duration,
    /// How many times a job is tried before it ends `failed`.
    pub job_max_attempts: i32,
    /// How many jobs one worker runs at once.
    pub worker_concurrency: u16,
    /// How often the sweeper looks for expired leases.
    pub sweep_interval: Duration,
    /// `STRATA_SCHEDULER` (`on` | `off`, default on): whether this API process fires
    /// schedules (every replica may; PostgreSQL makes each fire happen once).
    pub scheduler: bool,
    /// `STRATA_SCHEDULE_MISFIRE_GRACE_SECS` (default 60): a fire seen later than this
    /// was missed (downtime): it runs once or is skipped, per the schedule's `catch_up`.
    pub schedule_misfire_grace: Duration,
    /// `STRATA_METRICS_BIND` (`off` disables): the Prometheus listener. The default is
    /// the API's, [`API_METRICS_BIND`]; the worker applies its own,
    /// [`WORKER_METRICS_BIND`], with [`Config::metrics_bind_or`].
    pub metrics_bind: Option<String>,
    /// When set, the process writes its metrics listener's bound address to this file.
    pub metrics_addr_file: Option<PathBuf>,
    /// `STRATA_LIMIT_UPLOAD_KIB` / `STRATA_LIMIT_DOWNLOAD_KIB`: bandwidth limits on the
    /// object store, per process.
    pub transfer_limits: crate::storage::throttle::Limits,
    /// `json` or `text`.
    pub log_format: String,
    pub auth: AuthConfig,
    /// Limits of `POST /api/v1/backup/upload`.
    pub upload: UploadLimits,
    /// Garbage collection (`STRATA_GC_*`).
    pub gc: crate::repo::gc::GcOptions,
    /// `STRATA_RESTORE_ALLOW_PATHS`: directories (`:`-separated, absolute) that restores
    /// may write into although they lie in a system directory (see [`crate::paths`]).
    pub restore_allow_paths: Vec<PathBuf>,
    /// `STRATA_BODY_IDLE_TIMEOUT_SECS` (default 60): a request body that sends nothing
    /// for this long is refused with `408` (an upload, a JSON body).
    pub body_idle_timeout: Duration,
    /// `STRATA_MAX_DOWNLOADS` (default 8): archive downloads one API process streams at
    /// once; more get `429` with `Retry-After`.
    pub max_downloads: usize,
}

/// What an uploaded archive may be.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// `STRATA_UPLOAD_MAX_BYTES`: the request body (default 10 GiB).
    pub max_bytes: u64,
    /// `STRATA_UPLOAD_MAX_UNCOMPRESSED`: the archive's content once extracted (default 100 GiB).
    pub max_uncompressed: u64,
    /// `STRATA_UPLOAD_MAX_RATIO`: extracted bytes per archive byte (default 100).
    pub max_ratio: u64,
}

impl UploadLimits {
    /// Reads the `STRATA_UPLOAD_*` variables.
    pub fn from_env() -> anyhow::Result<Self> {
        let limits = Self {
            max_bytes: parse_var("STRATA_UPLOAD_MAX_BYTES", 10u64 << 30)?,
            max_uncompressed: parse_var("STRATA_UPLOAD_MAX_UNCOMPRESSED", 100u64 << 30)?,
            max_ratio: parse_var("STRATA_UPLOAD_MAX_RATIO", 100)?,
        };
        if limits.max_bytes == 0 || limits.max_uncompressed == 0 || limits.max_ratio == 0 {
            bail!("STRATA_UPLOAD_MAX_*: limits must be at least 1");
        }
        Ok(limits)
    }

    /// The limits an archive is checked against.
    pub fn archive(&self) -> crate::archive::Limits {
        crate::archive::Limits {
            max_uncompressed: self.max_uncompressed,
            max_ratio: self.max_ratio,
            ..crate::archive::Limits::default()
        }
    }
}

/// Access control settings (the API's).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `STRATA_BOOTSTRAP_ADMIN_KEY`: an admin API key valid from the first start.
    pub bootstrap_admin_key: Option<Secret>,
    /// `STRATA_JWT_HS256_KEYS`: `kid:secret,kid:secret` — several, for rotation.
    pub jwt_hs256_keys: Vec<(String, Secret)>,
    /// `STRATA_JWT_JWKS_FILE`: a JWKS document with RS256 / ES256 public keys.
    pub jwt_jwks_file: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway_secs: u64,
    /// The claim that carries the role.
    pub jwt_role_claim: String,
    pub file_token_ttl: Duration,
    /// Failed authentications from one client before it is refused for a while.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    /// `STRATA_TRUSTED_PROXIES`: reverse proxies (CIDRs) whose `X-Forwarded-For` names
    /// the client, for the failure limiter and the audit log. Empty: the peer address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AuthConfig {
    fn from_env() -> anyhow::Result<Self> {
        let mut hs = Vec::new();
        if let Some(raw) = std::env::var("STRATA_JWT_HS256_KEYS")
            .ok()
            .filter(|v| !v.is_empty())
        {
            for (i, part) in raw.split(',').enumerate() {
                let Some((kid, secret)) = part.split_once(':') else {
                    bail!(
                        "STRATA_JWT_HS256_KEYS: entry {} must be `kid:secret`",
                        i + 1
                    );
                };
                if kid.trim().is_empty() || secret.len() < 32 {
                    bail!(
                        "STRATA_JWT_HS256_KEYS: entry {} needs a kid and a secret of at least 32 bytes",
                        i + 1
                    );
                }
                hs.push((kid.trim().to_string(), Secret::new(secret)));
            }
        }
        Ok(Self {
            bootstrap_admin_key: std::env::var("STRATA_BOOTSTRAP_ADMIN_KEY")
                .ok()
                .filter(|k| !k.is_empty())
                .map(Secret::new),
            jwt_hs256_keys: hs,
            jwt_jwks_file: var("STRATA_JWT_JWKS_FILE").map(PathBuf::from),
            jwt_issuer: var("STRATA_JWT_ISSUER"),
            jwt_audience: var("STRATA_JWT_AUDIENCE"),
            jwt_leeway_secs: parse_var("STRATA_JWT_LEEWAY_SECS", 60)?,
            jwt_role_claim: var("STRATA_JWT_ROLE_CLAIM").unwrap_or_else(|| "role".into()),
            file_token_ttl: Duration::from_secs(parse_var("STRATA_FILE_TOKEN_TTL_SECS", 180)?),
            max_failures: parse_var("STRATA_AUTH_MAX_FAILURES", 10)?,
            failure_window: Duration::from_secs(parse_var("STRATA_AUTH_FAILURE_WINDOW_SECS", 60)?),
            lockout: Duration::from_secs(parse_var("STRATA_AUTH_LOCKOUT_SECS", 60)?),
            trusted_proxies: parse_cidrs(
                "STRATA_TRUSTED_PROXIES",
                &var("STRATA_TRUSTED_PROXIES").unwrap_or_default(),
            )?,
        })
    }
}

/// A comma-separated list of CIDRs (`10.0.0.0/8`) or single addresses (`::1`).
pub fn parse_cidrs(name: &str, raw: &str) -> anyhow::Result<Vec<ipnet::IpNet>> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{name}: {p:?} is neither a CIDR (10.0.0.0/8) nor an IP address"
                    )
                })
        })
        .collect()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn parse_var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}: invalid value {v:?}: {e}")),
    }
}

/// The API's metrics listener when `STRATA_METRICS_BIND` is unset.
pub const API_METRICS_BIND: &str = "127.0.0.1:9464";
/// The worker's metrics listener when `STRATA_METRICS_BIND` is unset.
pub const WORKER_METRICS_BIND: &str = "127.0.0.1:9465";

impl Config {
    /// `STRATA_METRICS_BIND`, or `default` when it is unset; `None` when it is `off`.
    pub fn metrics_bind_or(default: &str) -> Option<String> {
        match var("STRATA_METRICS_BIND") {
            None => Some(default.to_string()),
            Some(v) if v.trim() == "off" => None,
            Some(v) => Some(v.trim().to_string()),
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let data_dir = PathBuf::from(var("STRATA_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let storage_url = match var("STRATA_STORAGE") {
            Some(s) => s,
            None => {
                std::fs::create_dir_all(&data_dir)
                    .with_context(|| format!("creating STRATA_DATA_DIR {}", data_dir.display()))?;
                let abs = std::fs::canonicalize(&data_dir)
                    .with_context(|| format!("resolving STRATA_DATA_DIR {}", data_dir.display()))?;
                format!("file://{}", abs.join("repo").display())
            }
        };
        let lease_secs: u64 = parse_var("STRATA_JOB_LEASE_SECS", 60)?;
        if lease_secs < 2 {
            bail!("STRATA_JOB_LEASE_SECS: must be at least 2 seconds");
        }
        let max_attempts: i32 = parse_var("STRATA_JOB_MAX_ATTEMPTS", 3)?;
        if max_attempts < 1 {
            bail!("STRATA_JOB_MAX_ATTEMPTS: must be at least 1");
        }
        let concurrency: u16 = parse_var("STRATA_WORKER_CONCURRENCY", 2)?;
        if concurrency == 0 {
            bail!("STRATA_WORKER_CONCURRENCY: must be at least 1");
        }
        let body_idle_secs: u64 = parse_var("STRATA_BODY_IDLE_TIMEOUT_SECS", 60)?;
        if body_idle_secs == 0 {
            bail!("STRATA_BODY_IDLE_TIMEOUT_SECS: must be at least 1 second");
        }
        let max_downloads: usize = parse_var("STRATA_MAX_DOWNLOADS", 8)?;
        if max_downloads == 0 {
            bail!("STRATA_MAX_DOWNLOADS: must be at least 1");
        }
        let log_format = var("STRATA_LOG_FORMAT").unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            bail!("STRATA_LOG_FORMAT: must be `text` or `json`, got {log_format:?}");
        }
        Ok(Self {
            bind: var("STRATA_BIND").unwrap_or_else(|| "127.0.0.1:8080".into()),
            addr_file: var("STRATA_ADDR_FILE").map(PathBuf::from),
            database_url: SecretUrl::new(
                var("STRATA_DATABASE_URL")
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/strata".into()),
            ),
            amqp_url: SecretUrl::new(
                var("STRATA_AMQP_URL")
                    .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            ),
            queue_name: var("STRATA_QUEUE").unwrap_or_else(|| "strata.jobs".into()),
            data_dir,
            storage_url,
            s3: S3Options {
                endpoint: var("STRATA_S3_ENDPOINT"),
                region: var("STRATA_S3_REGION"),
                access_key_id: var("STRATA_S3_ACCESS_KEY_ID"),
                secret_access_key: var("STRATA_S3_SECRET_ACCESS_KEY"),
                force_path_style: parse_var("STRATA_S3_FORCE_PATH_STYLE", false)?,
                limits: crate::storage::S3Limits::from_env()?,
            },
            encryption_key: std::env::var("STRATA_ENCRYPTION_KEY")
                .ok()
                .filter(|k| !k.is_empty())
                .map(Secret::new),
            job_lease: Duration::from_secs(lease_secs),
            job_max_attempts: max_attempts,
            worker_concurrency: concurrency,
            sweep_interval: Duration::from_millis(parse_var("STRATA_SWEEP_INTERVAL_MS", 5000)?),
            scheduler: match var("STRATA_SCHEDULER").as_deref() {
                None | Some("on") | Some("true") => true,
                Some("off") | Some("false") => false,
                Some(other) => bail!("STRATA_SCHEDULER: must be `on` or `off`, got {other:?}"),
            },
            schedule_misfire_grace: Duration::from_secs(parse_var(
                "STRATA_SCHEDULE_MISFIRE_GRACE_SECS",
                60,
            )?),
            metrics_bind: Self::metrics_bind_or(API_METRICS_BIND),
            metrics_addr_file: var("STRATA_METRICS_ADDR_FILE").map(PathBuf::from),
            transfer_limits: crate::storage::throttle::Limits::from_env()?,
            log_format,
            auth: AuthConfig::from_env()?,
            upload: UploadLimits::from_env()?,
            gc: crate::repo::gc::GcOptions::from_env()?,
            restore_allow_paths: crate::paths::parse_allow_paths(
                &var("STRATA_RESTORE_ALLOW_PATHS").unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("STRATA_RESTORE_ALLOW_PATHS: {e}"))?,
            body_idle_timeout: Duration::from_secs(body_idle_secs),
            max_downloads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_passwords() {
        let url = SecretUrl::new("postgres://app:hunter2@db:5432/strata");
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app"), "{shown}");
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[REDACTED]");
        assert_eq!(redact_url("not a url hunter2"), "[REDACTED]");
    }

    #[test]
    fn query_secrets_are_redacted_and_kept_from_the_driver() {
        let url = "postgres://app@db/strata?sslmode=require&password=hunter2&SSLPassword=k3y&pass%77ord=x";
        let shown = redact_url(url);
        assert!(
            !shown.contains("hunter2") && !shown.contains("k3y") && !shown.contains("=x"),
            "{shown}"
        );
        assert!(shown.contains("sslmode=require"), "{shown}");
        assert!(url_has_secret(url));
        assert!(!url_has_secret("postgres://app@db/strata?sslmode=require"));
        assert!(!url_has_secret("/srv/a") && !url_has_secret("HTTPS://Example.com"));
        let driver = for_driver("postgres://app@db/strata?sslpassword=k3y&sslmode=require");
        assert_eq!(driver, "postgres://app@db/strata?sslmode=require");
        assert_eq!(
            for_driver("postgres://app@db/strata"),
            "postgres://app@db/strata"
        );
    }
}
