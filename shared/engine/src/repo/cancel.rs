//! Cancellation inside storage requests. A job's stop flag is looked at between steps
//! (checkpoints), but one object-store request can last minutes on a slow or stalled
//! store (every try up to `STRATA_S3_ATTEMPT_TIMEOUT_SECS`, all of them up to
//! `STRATA_S3_OPERATION_TIMEOUT_SECS`). A job's repository therefore races each request
//! against its stop flag: when the flag is set, the request is abandoned and fails with
//! [`Stopped`] within [`POLL`], whatever the store does.
//!
//! Abandoning a request is safe: a `put` is atomic (the object is written whole or not
//! at all), and the callers already handle a failed request at that point.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::progress::{CancelFlag, Stopped};
use super::Repository;
use strata_storage::{DynStorage, ObjectMeta, Storage, StorageError, StorageResult};

/// How often a request in flight looks at the stop flag.
pub const POLL: Duration = Duration::from_millis(50);

/// Runs `op` until it completes or `cancel` is set, whichever comes first; `Err(Stopped)`
/// in the second case (also when the flag is already set: `op` does not start).
pub async fn until_stopped<T>(
    cancel: &CancelFlag,
    op: impl Future<Output = T>,
) -> Result<T, Stopped> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Stopped);
    }
    tokio::pin!(op);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            done = &mut op => return Ok(done),
            _ = tick.tick() => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Stopped);
                }
            }
        }
    }
}

impl Repository {
    /// The same repository, with every storage request abandoned as soon as `cancel`
    /// is set (it then fails with [`Stopped`], see [`super::progress::is_stopped`]).
    pub fn stopping_on(&self, cancel: CancelFlag) -> Repository {
        let mut repo = self.clone();
        repo.storage = Arc::new(Cancellable {
            inner: self.storage.clone(),
            cancel,
        });
        repo
    }
}

/// A store whose requests give up when the job stops.
#[derive(Debug)]
struct Cancellable {
    inner: DynStorage,
    cancel: CancelFlag,
}

impl Cancellable {
    async fn race<T>(&self, op: impl Future<Output = StorageResult<T>>) -> StorageResult<T> {
        until_stopped(&self.cancel, op)
            .await
            .unwrap_or_else(|Stopped| Err(StorageError::Other(anyhow::Error::new(Stopped))))
    }
}

#[async_trait::async_trait]
impl Storage for Cancellable {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        self.race(self.inner.put(key, data)).await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.race(self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes> {
        self.race(self.inner.get_range(key, offset, len)).await
    }

    async fn head(&self, key: &str) -> StorageResult<Option<u64>> {
        self.race(self.inner.head(key)).await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.race(self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.race(self.inner.delete(key)).await
    }

    async fn check(&self) -> StorageResult<()> {
        self.race(self.inner.check()).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        self.race(self.inner.put_file(key, path)).await
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        self.race(self.inner.get_to_file(key, path)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use super::*;
    use crate::repo::progress::is_stopped;

    /// A store whose every request never ends.
    #[derive(Debug)]
    struct Stalled;

    #[async_trait::async_trait]
    impl Storage for Stalled {
        async fn put(&self, _: &str, _: Bytes) -> StorageResult<()> {
            std::future::pending().await
        }
        async fn get(&self, _: &str) -> StorageResult<Bytes> {
            std::future::pending().await
        }
        async fn get_range(&self, _: &str, _: u64, _: u64) -> StorageResult<Bytes> {
            std::future::pending().await
        }
        async fn head(&self, _: &str) -> StorageResult<Option<u64>> {
            std::future::pending().await
        }
        async fn list(&self, _: &str) -> StorageResult<Vec<ObjectMeta>> {
            std::future::pending().await
        }
        async fn delete(&self, _: &str) -> StorageResult<()> {
            std::future::pending().await
        }
        async fn check(&self) -> StorageResult<()> {
            std::future::pending().await
        }
        fn describe(&self) -> String {
            "stalled".into()
        }
    }

    #[tokio::test]
    async fn a_stalled_request_gives_up_soon_after_the_flag_is_set() {
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        let store = Cancellable {
            inner: Arc::new(Stalled),
            cancel: cancel.clone(),
        };
        let flag = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            flag.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let err = store.get("packs/ab/x").await.unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(200) + 3 * POLL, "{took:?}");
        // Found under any context a caller adds.
        let e = anyhow::Error::from(err).context("reading pack x");
        assert!(is_stopped(&e), "{e:#}");
        // Once stopped, nothing starts.
        let started = Instant::now();
        assert!(store.put("config", Bytes::new()).await.is_err());
        assert!(started.elapsed() < POLL);
    }

    #[tokio::test]
    async fn requests_that_finish_are_untouched() {
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        assert_eq!(until_stopped(&cancel, async { 7 }).await.unwrap(), 7);
        cancel.store(true, Ordering::Relaxed);
        assert!(until_stopped(&cancel, async { 7 }).await.is_err());
    }
}
