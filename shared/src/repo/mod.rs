//! The snapshot repository in the object store: chunking, packing, manifests, reading
//! and writing. The format is described in docs/FORMAT.md.

pub mod chain;
pub mod crypto;
pub mod format;
pub mod manifest;
pub mod pack;
pub mod reader;
pub mod tree;
pub mod verify;
pub mod writer;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::storage::{DynStorage, StorageError};
use format::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, FORMAT_VERSION};
use manifest::{manifest_key, Manifest};

/// The storage key of the repository's description.
pub const CONFIG_KEY: &str = "config";

/// Chunker parameters, fixed when the repository is created (changing them would stop
/// new chunks from matching old ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// The repository's description, stored at `config`.
#[derive(Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format_version: u32,
    pub repository_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub chunker: ChunkerParams,
    /// The BLAKE3 key chunk ids are computed with (hex).
    pub id_key: String,
}

impl std::fmt::Debug for RepoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoConfig")
            .field("format_version", &self.format_version)
            .field("repository_id", &self.repository_id)
            .field("chunker", &self.chunker)
            .finish_non_exhaustive()
    }
}

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    pub storage: DynStorage,
    pub config: RepoConfig,
    id_key: [u8; 32],
}

impl Repository {
    /// Opens the repository, creating it on first use. Creation is serialised through a
    /// PostgreSQL advisory lock so that two workers starting at once create one repository.
    pub async fn open_or_init(storage: DynStorage, pool: &PgPool) -> anyhow::Result<Self> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7355608001)")
            .execute(&mut *tx)
            .await?;
        let repo = match Self::open(storage.clone()).await {
            Ok(repo) => repo,
            Err(e)
                if e.downcast_ref::<StorageError>()
                    .is_some_and(|e| matches!(e, StorageError::NotFound(_))) =>
            {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                let config = RepoConfig {
                    format_version: FORMAT_VERSION,
                    repository_id: Uuid::new_v4(),
                    created_at: Utc::now(),
                    chunker: ChunkerParams {
                        min: CHUNK_MIN,
                        avg: CHUNK_AVG,
                        max: CHUNK_MAX,
                    },
                    id_key: hex::encode(key),
                };
                storage
                    .put(CONFIG_KEY, serde_json::to_vec_pretty(&config)?.into())
                    .await
                    .context("writing the repository config")?;
                tracing::info!(repository = %config.repository_id, storage = %storage.describe(), "created repository");
                Self {
                    storage,
                    config,
                    id_key: key,
                }
            }
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        Ok(repo)
    }

    /// Opens an existing repository.
    pub async fn open(storage: DynStorage) -> anyhow::Result<Self> {
        let raw = storage.get(CONFIG_KEY).await?;
        let config: RepoConfig =
            serde_json::from_slice(&raw).context("the repository config is not valid JSON")?;
        if config.format_version > FORMAT_VERSION {
            bail!(
                "the repository has format version {}, newer than this build reads ({FORMAT_VERSION}); upgrade Strata",
                config.format_version
            );
        }
        let mut id_key = [0u8; 32];
        hex::decode_to_slice(&config.id_key, &mut id_key)
            .context("the repository config has a bad id key")?;
        Ok(Self {
            storage,
            config,
            id_key,
        })
    }

    pub fn id_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    /// Writes a manifest: the last step of a backup.
    pub async fn put_manifest(&self, manifest: &Manifest) -> anyhow::Result<String> {
        let key = manifest_key(&manifest.backup_id);
        self.storage
            .put(&key, serde_json::to_vec(manifest)?.into())
            .await
            .with_context(|| format!("writing manifest {key}"))?;
        Ok(key)
    }

    pub async fn get_manifest(&self, backup_id: &str) -> anyhow::Result<Manifest> {
        let key = manifest_key(backup_id);
        let raw = self
            .storage
            .get(&key)
            .await
            .with_context(|| format!("reading manifest {key}"))?;
        let manifest: Manifest =
            serde_json::from_slice(&raw).with_context(|| format!("manifest {key} is damaged"))?;
        if manifest.format_version > FORMAT_VERSION {
            bail!(
                "backup {backup_id} was written by a newer Strata (format {})",
                manifest.format_version
            );
        }
        Ok(manifest)
    }
}
