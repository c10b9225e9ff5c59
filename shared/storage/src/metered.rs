//! Counts and times every request to the object store
//! (`strata_storage_requests_total{operation,outcome}`,
//! `strata_storage_request_duration_seconds{operation}`; see [`strata_telemetry::metrics`]).
//! [`super::open`] wraps every store it opens, so the API and the worker both report.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{DynStorage, ObjectMeta, Storage, StorageError, StorageResult};
use strata_telemetry::metrics::{storage_request, StorageOutcome};

/// `storage` with its requests counted and timed.
pub fn wrap(storage: DynStorage) -> DynStorage {
    Arc::new(Metered { inner: storage })
}

#[derive(Debug)]
struct Metered {
    inner: DynStorage,
}

fn outcome<T>(r: &StorageResult<T>) -> StorageOutcome {
    match r {
        Ok(_) => StorageOutcome::Ok,
        Err(StorageError::NotFound(_)) => StorageOutcome::NotFound,
        Err(_) => StorageOutcome::Error,
    }
}

/// Runs one request, then records it with the outcome `judge` reads from its result.
async fn measure<T>(
    operation: &'static str,
    request: impl Future<Output = StorageResult<T>>,
    judge: impl FnOnce(&StorageResult<T>) -> StorageOutcome,
) -> StorageResult<T> {
    let started = Instant::now();
    let result = request.await;
    storage_request(operation, judge(&result), started.elapsed());
    result
}

#[async_trait::async_trait]
impl Storage for Metered {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        measure("put", self.inner.put(key, data), outcome).await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        measure("get", self.inner.get(key), outcome).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes> {
        measure("get_range", self.inner.get_range(key, offset, len), outcome).await
    }

    async fn head(&self, key: &str) -> StorageResult<Option<u64>> {
        // An absent object is an answer, not an error: counted as `not_found`.
        measure("head", self.inner.head(key), |r| match r {
            Ok(None) => StorageOutcome::NotFound,
            other => outcome(other),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        measure("list", self.inner.list(prefix), outcome).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        measure("delete", self.inner.delete(key), outcome).await
    }

    async fn check(&self) -> StorageResult<()> {
        measure("check", self.inner.check(), outcome).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        measure("put_file", self.inner.put_file(key, path), outcome).await
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        measure("get_to_file", self.inner.get_to_file(key, path), outcome).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_operation_and_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let local = super::super::LocalStorage::new(dir.path().to_path_buf());
        local.create_root().await.unwrap();
        let storage = wrap(Arc::new(local));
        storage
            .put("metered/a", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(storage.get("metered/a").await.unwrap(), "abc");
        assert!(storage.get("metered/absent").await.is_err());
        assert_eq!(storage.head("metered/absent").await.unwrap(), None);
        assert!(storage.put("../escape", Bytes::new()).await.is_err());
        let text = strata_telemetry::metrics::render();
        for expected in [
            r#"strata_storage_requests_total{operation="put",outcome="ok"}"#,
            r#"strata_storage_requests_total{operation="get",outcome="ok"}"#,
            r#"strata_storage_requests_total{operation="get",outcome="not_found"}"#,
            r#"strata_storage_requests_total{operation="head",outcome="not_found"}"#,
            r#"strata_storage_requests_total{operation="put",outcome="error"}"#,
            r#"strata_storage_request_duration_seconds_count{operation="get"}"#,
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
    }
}
