//! Object storage for repositories: one trait, two implementations (local directory and S3),
//! and an in-memory one for tests ([`MemStorage`]).
//!
//! Keys are '/'-separated relative paths such as `packs/ab/abcdef...`, `snapshots/<backup id>`
//! or `config`. Both implementations accept exactly the same set of keys (see [`validate_key`]),
//! so a repository that works on one backend works on the other.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub mod local;
pub mod mem;
pub mod metered;
pub mod s3;
pub mod throttle;

pub use local::LocalStorage;
pub use mem::MemStorage;
pub use s3::S3Storage;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("invalid storage URL: {0}")]
    InvalidUrl(String),
    /// The store could not be reached, did not answer in time, or answered a server error,
    /// after every retry: a fault of the store, not of the request or the repository.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StorageError {
    /// Whether `e` (anywhere in its chain) is a [`StorageError::Unavailable`].
    pub fn is_unavailable(e: &anyhow::Error) -> bool {
        e.chain()
            .any(|cause| match cause.downcast_ref::<StorageError>() {
                Some(StorageError::Unavailable(_)) => true,
                // Transparent: the wrapped error's own head is not part of the outer chain.
                Some(StorageError::Other(inner)) => Self::is_unavailable(inner),
                _ => false,
            })
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Writes the whole object atomically: a reader sees the old object, the new one, or nothing — never a partial one.
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()>;
    /// Reads the whole object; NotFound when absent.
    async fn get(&self, key: &str) -> StorageResult<Bytes>;
    /// Reads `len` bytes at `offset`; NotFound when absent; an error if the range is past the end.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes>;
    /// The object's size, or None when absent.
    async fn head(&self, key: &str) -> StorageResult<Option<u64>>;
    /// Every object whose key starts with `prefix` (recursive, any depth), keys relative to the storage root, sorted by key. Complete (paginated).
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>>;
    /// Deletes; deleting an absent object is Ok.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// A cheap reachability/permission check for health endpoints.
    async fn check(&self) -> StorageResult<()>;
    /// The storage location for humans and logs, with no secret in it.
    fn describe(&self) -> String;
    /// Writes the object from a local file, atomically like [`Storage::put`]. The default
    /// reads the file into memory; backends override it to stream.
    async fn put_file(&self, key: &str, path: &std::path::Path) -> StorageResult<()> {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        self.put(key, Bytes::from(data)).await
    }
    /// Copies the object into a new local file at `path`. The default holds the object
    /// in memory; backends override it to stream.
    async fn get_to_file(&self, key: &str, path: &std::path::Path) -> StorageResult<u64> {
        let data = self.get(key).await?;
        tokio::fs::write(path, &data)
            .await
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(data.len() as u64)
    }
}

pub type DynStorage = Arc<dyn Storage>;

/// S3 options that do not fit in the URL (filled from STRATA_S3_* env vars).
#[derive(Clone, Default)]
pub struct S3Options {
    /// Custom endpoint, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region; when None, the AWS environment/profile is consulted, then "us-east-1".
    pub region: Option<String>,
    /// Static credentials are used when both this and `secret_access_key` are set;
    /// otherwise the default AWS credential chain.
    pub access_key_id: Option<String>,
    /// SECRET: never printed by Debug.
    pub secret_access_key: Option<String>,
    pub force_path_style: bool,
    /// Retries and timeouts of every S3 request.
    pub limits: S3Limits,
}

/// How hard and how long an S3 request is tried before it fails (`STRATA_S3_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Limits {
    /// `STRATA_S3_MAX_ATTEMPTS`: tries per request, the first included (exponential
    /// back-off with jitter between them).
    pub max_attempts: u32,
    /// `STRATA_S3_CONNECT_TIMEOUT_SECS`: to open a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// `STRATA_S3_ATTEMPT_TIMEOUT_SECS`: one try, from sending the request to the end of
    /// the response's head; also the longest a response body may stall between two reads.
    pub attempt_timeout: Duration,
    /// `STRATA_S3_OPERATION_TIMEOUT_SECS`: one request with all its tries and back-off.
    pub operation_timeout: Duration,
}

impl Default for S3Limits {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            connect_timeout: Duration::from_secs(10),
            // Long enough to send a multi-MiB pack over a slow uplink.
            attempt_timeout: Duration::from_secs(120),
            operation_timeout: Duration::from_secs(600),
        }
    }
}

impl S3Limits {
    /// Reads the `STRATA_S3_*` retry and timeout variables.
    pub fn from_env() -> anyhow::Result<Self> {
        use strata_core::config::parse_var;
        let d = Self::default();
        let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            let n: u64 = parse_var(name, default.as_secs())?;
            anyhow::ensure!(n >= 1, "{name}: must be at least 1 second");
            Ok(Duration::from_secs(n))
        };
        let max_attempts: u32 = parse_var("STRATA_S3_MAX_ATTEMPTS", d.max_attempts)?;
        anyhow::ensure!(
            max_attempts >= 1,
            "STRATA_S3_MAX_ATTEMPTS: must be at least 1"
        );
        Ok(Self {
            max_attempts,
            connect_timeout: secs("STRATA_S3_CONNECT_TIMEOUT_SECS", d.connect_timeout)?,
            attempt_timeout: secs("STRATA_S3_ATTEMPT_TIMEOUT_SECS", d.attempt_timeout)?,
            operation_timeout: secs("STRATA_S3_OPERATION_TIMEOUT_SECS", d.operation_timeout)?,
        })
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("force_path_style", &self.force_path_style)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Where the repository lives and how it is reached (`STRATA_STORAGE`, `STRATA_S3_*`,
/// `STRATA_LIMIT_*_KIB`, `STRATA_ENCRYPTION_KEY`).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `file:///…` or `s3://bucket/prefix`; by default `<STRATA_DATA_DIR>/repo`.
    pub url: String,
    pub s3: S3Options,
    /// `STRATA_LIMIT_UPLOAD_KIB` / `STRATA_LIMIT_DOWNLOAD_KIB`: bandwidth limits on the
    /// object store, per process.
    pub transfer_limits: throttle::Limits,
    /// Master key of an encrypted repository (`STRATA_ENCRYPTION_KEY`); a repository
    /// created while it is set is encrypted.
    pub encryption_key: Option<strata_core::config::Secret>,
}

impl StorageConfig {
    /// Reads the storage variables; without `STRATA_STORAGE` the repository is
    /// `repo/` in `data_dir` (created).
    pub fn from_env(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        use strata_core::config::{absolute_data_dir, parse_var, var, Secret};
        let url = match var("STRATA_STORAGE") {
            Some(s) => s,
            None => format!(
                "file://{}",
                absolute_data_dir(data_dir)?.join("repo").display()
            ),
        };
        Ok(Self {
            url,
            s3: S3Options {
                endpoint: var("STRATA_S3_ENDPOINT"),
                region: var("STRATA_S3_REGION"),
                access_key_id: var("STRATA_S3_ACCESS_KEY_ID"),
                secret_access_key: var("STRATA_S3_SECRET_ACCESS_KEY"),
                force_path_style: parse_var("STRATA_S3_FORCE_PATH_STYLE", false)?,
                limits: S3Limits::from_env()?,
            },
            transfer_limits: throttle::Limits::from_env()?,
            encryption_key: std::env::var("STRATA_ENCRYPTION_KEY")
                .ok()
                .filter(|k| !k.is_empty())
                .map(Secret::new),
        })
    }

    /// Opens the store, metered and throttled as configured.
    pub async fn open(&self) -> StorageResult<DynStorage> {
        Ok(throttle::wrap(
            open(&self.url, &self.s3).await?,
            self.transfer_limits,
        ))
    }
}

const ACCEPTED_SCHEMES: &str = "accepted: file:///absolute/path or s3://bucket[/prefix]";

/// Opens storage from a URL: `file:///abs/path` (a [`LocalStorage`]; the directory is created if
/// missing) or `s3://bucket/optional/prefix` (an [`S3Storage`]). Its requests are counted
/// in the process's metrics ([`metered`]).
pub async fn open(url: &str, s3: &S3Options) -> StorageResult<DynStorage> {
    open_unmetered(url, s3).await.map(metered::wrap)
}

async fn open_unmetered(url: &str, s3: &S3Options) -> StorageResult<DynStorage> {
    let url = url.trim();
    let (scheme, _) = url.split_once("://").ok_or_else(|| {
        StorageError::InvalidUrl(format!("{url:?} has no scheme; {ACCEPTED_SCHEMES}"))
    })?;
    match scheme.to_ascii_lowercase().as_str() {
        "file" => {
            let parsed = url::Url::parse(url).map_err(|e| {
                StorageError::InvalidUrl(format!("{url:?}: {e}; {ACCEPTED_SCHEMES}"))
            })?;
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(StorageError::InvalidUrl(format!(
                    "{url:?}: a file URL takes no query or fragment; {ACCEPTED_SCHEMES}"
                )));
            }
            let root = parsed.to_file_path().map_err(|()| {
                StorageError::InvalidUrl(format!(
                    "{url:?} is not an absolute local path (use file:///absolute/path); {ACCEPTED_SCHEMES}"
                ))
            })?;
            let storage = LocalStorage::new(root);
            storage.create_root().await?;
            Ok(Arc::new(storage))
        }
        "s3" => {
            let (bucket, prefix) = parse_s3_url(url)?;
            Ok(Arc::new(S3Storage::new(&bucket, &prefix, s3).await?))
        }
        _ => Err(StorageError::InvalidUrl(format!(
            "unsupported scheme {scheme:?} in {url:?}; {ACCEPTED_SCHEMES}"
        ))),
    }
}

/// Splits `s3://bucket/some/prefix/` into ("bucket", "some/prefix").
fn parse_s3_url(url: &str) -> StorageResult<(String, String)> {
    let invalid =
        |why: &str| StorageError::InvalidUrl(format!("{url:?}: {why}; {ACCEPTED_SCHEMES}"));
    let rest = &url[url.find("://").map(|i| i + 3).unwrap_or(0)..];
    if rest.contains(['?', '#']) {
        return Err(invalid("an s3 URL takes no query or fragment"));
    }
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains('@') || bucket.contains(':') {
        return Err(invalid(
            "credentials or ports do not belong in an s3 URL (use the STRATA_S3_* settings)",
        ));
    }
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if !bucket_ok {
        return Err(invalid(
            "the bucket name must be 3-63 characters of lowercase letters, digits, '-' and '.'",
        ));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(invalid(
            "the prefix must not contain '.' or '..' components",
        ));
    }
    Ok((bucket.to_string(), parts.join("/")))
}

/// File-name prefix of temporary files; keys with a component starting with it are refused and
/// such files never show up in listings.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Checks that `key` is a relative '/'-separated path that cannot escape the storage root.
/// Both backends apply the same rules so they accept the same keys.
pub(crate) fn validate_key(key: &str) -> StorageResult<()> {
    let bad =
        |why: &str| StorageError::Other(anyhow::anyhow!("invalid storage key {key:?}: {why}"));
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.starts_with('/') {
        return Err(bad("absolute"));
    }
    if key.contains('\0') || key.contains('\\') {
        return Err(bad("contains a NUL or backslash"));
    }
    for part in key.split('/') {
        match part {
            "" => return Err(bad("empty path component")),
            "." | ".." => return Err(bad("'.' or '..' component")),
            p if p.starts_with(TMP_PREFIX) => return Err(bad("reserved temporary-file name")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty, or a key-like string that may end with '/' or stop in the
/// middle of a component (`packs/a` matches `packs/ab/...`). Everything before the last '/'
/// must be a valid key path, so a prefix cannot escape the root either.
pub(crate) fn validate_prefix(prefix: &str) -> StorageResult<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let bad = |why: String| {
        StorageError::Other(anyhow::anyhow!("invalid storage prefix {prefix:?}: {why}"))
    };
    if prefix.starts_with('/') {
        return Err(bad("absolute".into()));
    }
    if prefix.contains('\0') || prefix.contains('\\') {
        return Err(bad("contains a NUL or backslash".into()));
    }
    if let Some((dir, _partial)) = prefix.rsplit_once('/') {
        validate_key(dir).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "config",
            "packs/ab/abcdef",
            "snapshots/x/manifest",
            "a..b",
            ".hidden",
        ] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            ".tmp-1",
            "a/.tmp-x",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["", "packs", "packs/", "packs/a", "snapshots/x/", "p"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/", "/packs", "../", "a/../", "a//", "a//b", "a/../b", ".tmp-x/",
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://bucket").unwrap(),
            ("bucket".to_string(), String::new())
        );
        assert_eq!(
            parse_s3_url("s3://my-bucket/some//prefix/").unwrap(),
            ("my-bucket".to_string(), "some/prefix".to_string())
        );
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Bucket",
            "s3://k:s@bucket/x",
            "s3://bucket/../x",
            "s3://bucket?x=1",
        ] {
            assert!(
                matches!(parse_s3_url(bad), Err(StorageError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unavailable_is_found_under_context() {
        use anyhow::Context;
        let down: StorageResult<()> = Err(StorageError::Unavailable("down".into()));
        let e = down.context("uploading a pack").unwrap_err();
        assert!(StorageError::is_unavailable(&e), "{e:#}");
        let wrapped =
            StorageError::Other(anyhow::Error::new(StorageError::Unavailable("down".into())));
        assert!(StorageError::is_unavailable(&anyhow::Error::new(wrapped)));
        let other = anyhow::Error::new(StorageError::NotFound("config".into()));
        assert!(!StorageError::is_unavailable(&other));
    }

    #[test]
    fn options_debug_redacts_secret() {
        let o = S3Options {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("supersecret".into()),
            ..Default::default()
        };
        let s = format!("{o:?}");
        assert!(!s.contains("supersecret"), "{s}");
        assert!(s.contains("[REDACTED]") && s.contains("AKID"), "{s}");
    }
}
