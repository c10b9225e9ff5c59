//! Storage in an S3 (or S3-compatible) bucket, under an optional key prefix.

use std::fmt;

use anyhow::Context;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::{
    validate_key, validate_prefix, ObjectMeta, S3Limits, S3Options, Storage, StorageError,
    StorageResult,
};

const DEFAULT_REGION: &str = "us-east-1";

#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    /// Key prefix without leading or trailing '/'; empty for the bucket root.
    prefix: String,
    /// The endpoint for error messages (`http://host:port`, or "AWS S3"), with no secret.
    endpoint: String,
    limits: S3Limits,
}

impl fmt::Debug for S3Storage {
    // By hand: the client's configuration is nobody's business in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A concise, loggable message for an SDK error: for service errors the S3 error code, message
/// and HTTP status; otherwise the cause chain (e.g. "dispatch failure: io error: ... Connection
/// refused"). SdkError's own Display is just "service error", and its Debug dumps the whole raw
/// response. The request (and so any credential) is never part of it.
fn sdk_error<E>(e: SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    anyhow::anyhow!(sdk_message(&e))
}

fn sdk_message<E>(e: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = e {
        let err = service.err();
        let status = service.raw().status().as_u16();
        let code = err.code().unwrap_or("unknown error");
        return match err.message() {
            Some(message) if !message.is_empty() => format!("{code}: {message} (HTTP {status})"),
            _ => format!("{code} (HTTP {status})"),
        };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The reason phrase of the statuses a failing store answers.
fn status_reason(status: u16) -> &'static str {
    match status {
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn http_status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl S3Storage {
    /// A client for `bucket`, storing objects under `prefix` (leading/trailing '/' are ignored).
    pub async fn new(bucket: &str, prefix: &str, opts: &S3Options) -> StorageResult<Self> {
        let region = RegionProviderChain::first_try(opts.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::new(DEFAULT_REGION));
        let limits = opts.limits;
        // Retries back off exponentially with jitter; the timeouts bound a hung or very
        // slow store, so a job fails instead of waiting forever.
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(limits.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(limits.connect_timeout)
                    .operation_attempt_timeout(limits.attempt_timeout)
                    .operation_timeout(limits.operation_timeout)
                    .build(),
            );
        match (&opts.access_key_id, &opts.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.clone(),
                    secret.clone(),
                    None,
                    None,
                    "strata-static",
                ));
            }
            (None, None) => {}
            _ => tracing::warn!(
                "only one of the S3 access key id and secret access key is set; \
                 ignoring it and using the default AWS credential chain"
            ),
        }
        if let Some(endpoint) = &opts.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk_config = loader.load().await;
        let mut builder =
            aws_sdk_s3::config::Builder::from(&sdk_config).force_path_style(opts.force_path_style);
        if opts.endpoint.is_some() {
            // S3-compatible servers often lack the newer default integrity checksums
            // (CRC32 trailers on every request); only send them where the API requires them.
            builder = builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        let client = Client::from_conf(builder.build());
        let mut storage = Self::with_client(client, bucket, prefix);
        storage.limits = limits;
        storage.endpoint = match &opts.endpoint {
            Some(url) => format!(
                "S3 endpoint {}",
                strata_core::config::redact_url(url).trim_end_matches('/')
            ),
            None => "AWS S3".to_string(),
        };
        Ok(storage)
    }

    /// Wraps an already configured client (error messages assume the default limits).
    pub fn with_client(client: Client, bucket: &str, prefix: &str) -> Self {
        let prefix = prefix
            .split('/')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Self {
            client,
            bucket: bucket.to_string(),
            prefix,
            endpoint: "S3".to_string(),
            limits: S3Limits::default(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key in the bucket for a storage key.
    fn full_key(&self, key: &str) -> StorageResult<String> {
        validate_key(key)?;
        Ok(self.join(key))
    }

    fn join(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    /// The error of a request that failed after every retry. Unreachable, timed out, cut
    /// off or answering a server error (5xx, throttling) is [`StorageError::Unavailable`],
    /// named with the endpoint and the retries spent; any other answer (access denied, no
    /// such bucket…) is the store's own message.
    fn fail<E>(&self, e: SdkError<E>, what: impl fmt::Display) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let endpoint = &self.endpoint;
        let tries = self.limits.max_attempts;
        let tried = if tries == 1 {
            "1 attempt, no retry".to_string()
        } else {
            format!("up to {tries} attempts with back-off")
        };
        let detail = sdk_message(&e);
        let detail = detail.strip_prefix("dispatch failure: ").unwrap_or(&detail);
        match &e {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                if status >= 500 || status == 429 {
                    let err = service.err();
                    let said = match (err.code(), err.message()) {
                        (Some(code), Some(m)) if !m.is_empty() => format!(": {code}: {m}"),
                        (Some(code), _) => format!(": {code}"),
                        _ => String::new(),
                    };
                    StorageError::Unavailable(format!(
                        "{what}: {endpoint} answered HTTP {status} {}{said} ({tried})",
                        status_reason(status)
                    ))
                } else {
                    anyhow::anyhow!("{detail}").context(what.to_string()).into()
                }
            }
            SdkError::TimeoutError(_) => StorageError::Unavailable(format!(
                "{what}: {endpoint} did not answer in time: {detail} (up to {tries} attempts \
                 of at most {}s each, with back-off, {}s in all)",
                self.limits.attempt_timeout.as_secs(),
                self.limits.operation_timeout.as_secs()
            )),
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => StorageError::Unavailable(
                format!("{what}: {endpoint} unreachable: {detail} ({tried})"),
            ),
            _ => anyhow::anyhow!("{detail}").context(what.to_string()).into(),
        }
    }

    /// The next piece of a response body, or an error when the connection fails or stalls
    /// longer than an attempt may last (the SDK's timeouts end with the response's head).
    async fn next_chunk(&self, body: &mut ByteStream, loc: &str) -> StorageResult<Option<Bytes>> {
        let limit = self.limits.attempt_timeout;
        match tokio::time::timeout(limit, body.next()).await {
            Err(_) => Err(StorageError::Unavailable(format!(
                "reading {loc}: {} stalled for more than {}s",
                self.endpoint,
                limit.as_secs()
            ))),
            Ok(None) => Ok(None),
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(e))) => {
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    detail.push_str(": ");
                    detail.push_str(&cause.to_string());
                    source = cause.source();
                }
                Err(StorageError::Unavailable(format!(
                    "reading {loc}: {} cut off: {detail}",
                    self.endpoint
                )))
            }
        }
    }

    /// `s3://bucket/full/key`, for error messages.
    fn location(&self, full_key: &str) -> String {
        format!("s3://{}/{}", self.bucket, full_key)
    }

    /// Creates the bucket unless it exists and is accessible already.
    pub async fn create_bucket_if_missing(&self) -> StorageResult<()> {
        let context = || format!("creating bucket s3://{}", self.bucket);
        if self.bucket_accessible().await.is_ok() {
            return Ok(());
        }
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        // Outside us-east-1 S3 wants the region spelled out again.
        if let Some(region) = self.client.config().region() {
            if region.as_ref() != DEFAULT_REGION {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region.as_ref()))
                        .build(),
                );
            }
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_bucket_already_owned_by_you()) {
                    return Ok(());
                }
                // Created concurrently by someone else, or taken: fine if we can use it.
                if service.is_some_and(|s| s.is_bucket_already_exists()) {
                    return self.bucket_accessible().await.with_context(|| {
                        format!(
                            "bucket s3://{} already exists but is not accessible to these credentials",
                            self.bucket
                        )
                    })
                    .map_err(Into::into);
                }
                Err(self.fail(e, context()))
            }
        }
    }

    async fn bucket_accessible(&self) -> anyhow::Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("checking bucket s3://{}", self.bucket))?;
        Ok(())
    }

    async fn get_object(
        &self,
        key: &str,
        full: &str,
        range: Option<String>,
    ) -> StorageResult<(Bytes, Option<String>)> {
        let loc = self.location(full);
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .set_range(range.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || http_status(&e) == Some(404)
                {
                    return Err(StorageError::NotFound(key.to_string()));
                }
                let what = match &range {
                    Some(r) if http_status(&e) == Some(416) => {
                        format!("reading {r} of {loc}: range past the end of the object")
                    }
                    Some(r) => format!("reading {r} of {loc}"),
                    None => format!("getting {loc}"),
                };
                return Err(self.fail(e, what));
            }
        };
        let content_range = resp.content_range().map(str::to_string);
        let mut body = resp.body;
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = self.next_chunk(&mut body, &loc).await? {
            data.extend_from_slice(&chunk);
        }
        Ok((data.freeze(), content_range))
    }
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key, len = data.len()))]
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        let full = self.full_key(key)?;
        // A single PutObject is atomic: S3 never exposes a partially written object.
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.fail(e, format!("putting {}", self.location(&full))))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let full = self.full_key(key)?;
        Ok(self.get_object(key, &full, None).await?.0)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key, offset = offset, len = len))]
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes> {
        let full = self.full_key(key)?;
        let loc = self.location(&full);
        let past_end = |size: u64| -> StorageError {
            anyhow::anyhow!("range {offset}+{len} is past the end of {loc} ({size} bytes)").into()
        };
        let Some(end) = offset.checked_add(len) else {
            return Err(past_end(u64::MAX));
        };
        if len == 0 {
            // An empty HTTP range cannot be expressed; check existence and bounds instead.
            return match self.head(key).await? {
                None => Err(StorageError::NotFound(key.to_string())),
                Some(size) if offset > size => Err(past_end(size)),
                Some(_) => Ok(Bytes::new()),
            };
        }
        let range = format!("bytes={}-{}", offset, end - 1);
        let (data, content_range) = self.get_object(key, &full, Some(range)).await?;
        if data.len() as u64 == len {
            return Ok(data);
        }
        // A server that ignored the Range header sent the whole object.
        if content_range.is_none() && data.len() as u64 >= end {
            return Ok(data.slice(offset as usize..end as usize));
        }
        // S3 truncates a range that overlaps the end; the caller asked for more than exists.
        let size = content_range
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(offset + data.len() as u64);
        Err(past_end(size))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn head(&self, key: &str) -> StorageResult<Option<u64>> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(resp) => {
                let size = resp
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .with_context(|| format!("no content length for {}", self.location(&full)))?;
                Ok(Some(size))
            }
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || http_status(&e) == Some(404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.fail(e, format!("reading metadata of {}", self.location(&full)))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(prefix = %prefix))]
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let full_prefix = format!("{root}{prefix}");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.fail(e, format!("listing {}", self.location(&full_prefix))))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| k.strip_prefix(&root)) else {
                    continue;
                };
                // Skip what this storage could not have written (e.g. "dir/" markers).
                if validate_key(key).is_err() {
                    continue;
                }
                let size = obj.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn delete(&self, key: &str) -> StorageResult<()> {
        let full = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if http_status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.fail(e, format!("deleting {}", self.location(&full)))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn check(&self) -> StorageResult<()> {
        // Listing at most one key proves the endpoint, the credentials and list permission.
        let prefix = if self.prefix.is_empty() {
            None
        } else {
            Some(format!("{}/", self.prefix))
        };
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.fail(e, format!("checking access to {}", self.describe())))?;
        Ok(())
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
    /// One streaming PutObject (atomic; S3 accepts up to 5 GiB in one request).
    async fn put_file(&self, key: &str, path: &std::path::Path) -> StorageResult<()> {
        let full = self.full_key(key)?;
        let body = ByteStream::from_path(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(body)
            .send()
            .await
            .map_err(|e| self.fail(e, format!("putting {}", self.location(&full))))?;
        Ok(())
    }

    async fn get_to_file(&self, key: &str, path: &std::path::Path) -> StorageResult<u64> {
        use tokio::io::AsyncWriteExt;
        let full = self.full_key(key)?;
        let loc = self.location(&full);
        let resp = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || http_status(&e) == Some(404)
                {
                    return Err(StorageError::NotFound(key.to_string()));
                }
                return Err(self.fail(e, format!("getting {loc}")));
            }
        };
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        let mut body = resp.body;
        let mut n: u64 = 0;
        while let Some(chunk) = self.next_chunk(&mut body, &loc).await? {
            out.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            n += chunk.len() as u64;
        }
        out.flush()
            .await
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(n)
    }
}
