//! An in-memory store, for tests: objects in a map, the same key rules as the real
//! backends (so a repository that works here works on them).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::{validate_key, validate_prefix, ObjectMeta, Storage, StorageError, StorageResult};

/// Objects held in memory; every operation is immediate.
#[derive(Debug, Default)]
pub struct MemStorage {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Storage for MemStorage {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        validate_key(key)?;
        self.objects().insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        validate_key(key)?;
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(key.to_string()))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes> {
        let object = self.get(key).await?;
        let size = object.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(object.slice(offset as usize..end as usize)),
            _ => Err(anyhow::anyhow!(
                "range {offset}+{len} is past the end of {key} ({size} bytes)"
            )
            .into()),
        }
    }

    async fn head(&self, key: &str) -> StorageResult<Option<u64>> {
        validate_key(key)?;
        Ok(self.objects().get(key).map(|o| o.len() as u64))
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        Ok(self
            .objects()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        validate_key(key)?;
        self.objects().remove(key);
        Ok(())
    }

    async fn check(&self) -> StorageResult<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_like_a_store() {
        let s = MemStorage::new();
        s.put("packs/ab/abc", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        s.put("packs/cd/cde", Bytes::from_static(b"x"))
            .await
            .unwrap();
        s.put("config", Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(s.get("packs/ab/abc").await.unwrap(), "hello");
        assert_eq!(s.get_range("packs/ab/abc", 1, 3).await.unwrap(), "ell");
        assert!(s.get_range("packs/ab/abc", 3, 3).await.is_err());
        assert_eq!(s.head("packs/cd/cde").await.unwrap(), Some(1));
        let keys: Vec<String> = s
            .list("packs/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["packs/ab/abc", "packs/cd/cde"]);
        s.delete("packs/ab/abc").await.unwrap();
        s.delete("packs/ab/abc").await.unwrap();
        assert!(matches!(
            s.get("packs/ab/abc").await,
            Err(StorageError::NotFound(_))
        ));
        assert_eq!(s.head("packs/ab/abc").await.unwrap(), None);
        assert!(s.put("../x", Bytes::new()).await.is_err());
    }
}
