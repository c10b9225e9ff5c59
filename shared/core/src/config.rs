//! Configuration from `STRATA_*` environment variables (one table in the README).

use std::fmt;
use std::path::PathBuf;

use anyhow::Context;

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

/// A variable's value, `None` when unset or blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A variable parsed as `T`, `default` when unset; the error names the variable.
pub fn parse_var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
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

/// What every Strata process reads: the catalog, the data directory, logs and metrics.
#[derive(Debug, Clone)]
pub struct Common {
    /// `STRATA_DATABASE_URL`: the catalog (PostgreSQL).
    pub database_url: SecretUrl,
    /// `STRATA_DATA_DIR` (default `./data`): local state, and the repository when
    /// `STRATA_STORAGE` is unset.
    pub data_dir: PathBuf,
    /// `STRATA_LOG_FORMAT`: `json` or `text`.
    pub log_format: String,
    /// `STRATA_METRICS_BIND` (`off` disables): the Prometheus listener; each process
    /// has its own default ([`API_METRICS_BIND`], [`WORKER_METRICS_BIND`]).
    pub metrics_bind: Option<String>,
    /// When set, the process writes its metrics listener's bound address to this file.
    pub metrics_addr_file: Option<PathBuf>,
}

impl Common {
    /// Reads the common variables; `metrics_default` is the process's own listener.
    pub fn from_env(metrics_default: &str) -> anyhow::Result<Self> {
        let log_format = var("STRATA_LOG_FORMAT").unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            anyhow::bail!("STRATA_LOG_FORMAT: must be `text` or `json`, got {log_format:?}");
        }
        Ok(Self {
            database_url: SecretUrl::new(
                var("STRATA_DATABASE_URL")
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/strata".into()),
            ),
            data_dir: PathBuf::from(var("STRATA_DATA_DIR").unwrap_or_else(|| "./data".into())),
            log_format,
            metrics_bind: metrics_bind_or(metrics_default),
            metrics_addr_file: var("STRATA_METRICS_ADDR_FILE").map(PathBuf::from),
        })
    }
}

/// `STRATA_METRICS_BIND`, or `default` when it is unset; `None` when it is `off`.
pub fn metrics_bind_or(default: &str) -> Option<String> {
    match var("STRATA_METRICS_BIND") {
        None => Some(default.to_string()),
        Some(v) if v.trim() == "off" => None,
        Some(v) => Some(v.trim().to_string()),
    }
}

/// Creates `data_dir` and gives its absolute path (the default repository lives in it).
pub fn absolute_data_dir(data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating STRATA_DATA_DIR {}", data_dir.display()))?;
    std::fs::canonicalize(data_dir)
        .with_context(|| format!("resolving STRATA_DATA_DIR {}", data_dir.display()))
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
