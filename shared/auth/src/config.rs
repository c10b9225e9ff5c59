//! The API's access-control settings, from the environment.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use strata_core::config::{parse_cidrs, parse_var, var, Secret};

/// `STRATA_SESSION_TTL_SECS`, bounded: a session that never ends is an API key.
fn session_ttl() -> anyhow::Result<Duration> {
    let secs: u64 = parse_var(
        "STRATA_SESSION_TTL_SECS",
        crate::session::DEFAULT_TTL.as_secs(),
    )?;
    if !(60..=30 * 24 * 3600).contains(&secs) {
        bail!("STRATA_SESSION_TTL_SECS: must be between 60 and 2592000 (30 days), got {secs}");
    }
    Ok(Duration::from_secs(secs))
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
    /// `STRATA_SESSION_TTL_SECS`: how long a user's login lasts (60 s to 30 days).
    pub session_ttl: Duration,
    /// Failed authentications from one client before it is refused for a while.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    /// `STRATA_TRUSTED_PROXIES`: reverse proxies (CIDRs) whose `X-Forwarded-For` names
    /// the client, for the failure limiter and the audit log. Empty: the peer address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AuthConfig {
    /// Reads the `STRATA_JWT_*`, `STRATA_AUTH_*`, `STRATA_FILE_TOKEN_TTL_SECS`,
    /// `STRATA_SESSION_TTL_SECS`, `STRATA_BOOTSTRAP_ADMIN_KEY` and `STRATA_TRUSTED_PROXIES`
    /// variables.
    pub fn from_env() -> anyhow::Result<Self> {
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
            session_ttl: session_ttl()?,
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
