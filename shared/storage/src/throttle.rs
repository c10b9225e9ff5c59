//! Bandwidth limits on the object store, per process: `STRATA_LIMIT_UPLOAD_KIB` and
//! `STRATA_LIMIT_DOWNLOAD_KIB` (KiB/s, like restic's `--limit-upload` and
//! `--limit-download`), so that backups do not saturate a shared uplink.
//!
//! Every transfer reserves its bytes' share of time on a per-direction clock: the
//! process's transfers together stay within the rate, however many jobs run. Listing,
//! `head` and deletes are not limited.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{DynStorage, ObjectMeta, Storage, StorageResult};

/// Bytes per second in each direction; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub upload: Option<u64>,
    pub download: Option<u64>,
}

impl Limits {
    /// Reads `STRATA_LIMIT_UPLOAD_KIB` and `STRATA_LIMIT_DOWNLOAD_KIB` (unset or 0: no
    /// limit).
    pub fn from_env() -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<Option<u64>> {
            match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => {
                    let kib: u64 = v.trim().parse().map_err(|e| {
                        anyhow::anyhow!("{name}: {v:?} is not a number of KiB/s: {e}")
                    })?;
                    Ok((kib > 0).then(|| kib.saturating_mul(1024)))
                }
            }
        };
        Ok(Self {
            upload: read("STRATA_LIMIT_UPLOAD_KIB")?,
            download: read("STRATA_LIMIT_DOWNLOAD_KIB")?,
        })
    }
}

/// `storage` with `limits` applied (itself when both are unlimited).
pub fn wrap(storage: DynStorage, limits: Limits) -> DynStorage {
    if limits == Limits::default() {
        return storage;
    }
    Arc::new(Throttled {
        inner: storage,
        up: limits.upload.map(Clock::new),
        down: limits.download.map(Clock::new),
    })
}

/// When the next transfer in one direction may end.
#[derive(Debug)]
struct Clock {
    bytes_per_sec: u64,
    busy_until: Mutex<Option<Instant>>,
}

impl Clock {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            busy_until: Mutex::new(None),
        }
    }

    /// Waits until `bytes` fit in the rate after every transfer reserved before.
    async fn take(&self, bytes: u64) {
        let share = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let until = {
            let mut busy = self.busy_until.lock().await;
            let now = Instant::now();
            let start = busy.filter(|b| *b > now).unwrap_or(now);
            let until = start + share;
            *busy = Some(until);
            until
        };
        tokio::time::sleep_until(until).await;
    }
}

async fn take(clock: &Option<Clock>, bytes: u64) {
    if let Some(c) = clock {
        c.take(bytes).await;
    }
}

#[derive(Debug)]
struct Throttled {
    inner: DynStorage,
    up: Option<Clock>,
    down: Option<Clock>,
}

#[async_trait::async_trait]
impl Storage for Throttled {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        take(&self.up, data.len() as u64).await;
        self.inner.put(key, data).await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let data = self.inner.get(key).await?;
        take(&self.down, data.len() as u64).await;
        Ok(data)
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes> {
        let data = self.inner.get_range(key, offset, len).await?;
        take(&self.down, data.len() as u64).await;
        Ok(data)
    }

    async fn head(&self, key: &str) -> StorageResult<Option<u64>> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key).await
    }

    async fn check(&self) -> StorageResult<()> {
        self.inner.check().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        take(&self.up, size).await;
        self.inner.put_file(key, path).await
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        let n = self.inner.get_to_file(key, path).await?;
        take(&self.down, n).await;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transfers_share_the_rate() {
        let clock = Clock::new(10_000);
        let start = std::time::Instant::now();
        clock.take(1_000).await;
        clock.take(2_000).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        // Idle time is not saved up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = std::time::Instant::now();
        clock.take(1_000).await;
        assert!(
            again.elapsed() >= Duration::from_millis(100),
            "{:?}",
            again.elapsed()
        );
    }
}
