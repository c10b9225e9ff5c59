//! The snapshot repository in the object store: chunking, packing, manifests, reading
//! and writing. The format is described in docs/FORMAT.md.

pub mod browse;
pub mod cancel;
pub mod chain;
pub mod crypto;
pub mod export;
pub mod format;
pub mod gc;
pub mod identity;
pub mod index;
pub mod manifest;
pub mod pack;
pub mod progress;
pub mod reader;
pub mod rebuild;
pub mod restore;
pub mod session;
pub mod tree;
pub mod verify;
pub mod writer;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crypto::{open_any, Cipher, DataKeys, KeySlot, MasterKey};
use format::{
    BlobCodec, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, FORMAT_VERSION, FORMAT_VERSION_ENCRYPTED,
};
use manifest::{manifest_key, Manifest};
use strata_storage::DynStorage;

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
    /// The BLAKE3 key chunk ids are computed with (hex); empty in an encrypted
    /// repository, whose id key is wrapped in the key slots with the data key.
    #[serde(default)]
    pub id_key: String,
    /// Present when the repository is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionConfig>,
}

/// How an encrypted repository's keys are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptionConfig {
    /// `xchacha20poly1305`.
    pub cipher: String,
    /// The data keys wrapped by each master key that may open the repository.
    pub key_slots: Vec<KeySlot>,
}

impl std::fmt::Debug for RepoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoConfig")
            .field("format_version", &self.format_version)
            .field("repository_id", &self.repository_id)
            .field("chunker", &self.chunker)
            .field("encrypted", &self.encryption.is_some())
            .finish_non_exhaustive()
    }
}

/// Prefix of a sealed manifest (a plain one is JSON and starts with `{`).
const SEALED_MANIFEST: &[u8] = b"STRATA-SEALED-1\n";

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    pub storage: DynStorage,
    pub config: RepoConfig,
    codec: BlobCodec,
}

impl Repository {
    /// Writes a new repository's `config` (encrypted when a master key is given) and
    /// returns it. The caller makes sure none exists (see [`identity::reconcile`], which
    /// serialises creation with a PostgreSQL advisory lock and reads the object back).
    pub async fn create(
        storage: &DynStorage,
        master: Option<&MasterKey>,
    ) -> anyhow::Result<RepoConfig> {
        let keys = DataKeys::generate();
        let chunker = ChunkerParams {
            min: CHUNK_MIN,
            avg: CHUNK_AVG,
            max: CHUNK_MAX,
        };
        let config = match master {
            Some(master) => RepoConfig {
                format_version: FORMAT_VERSION_ENCRYPTED,
                repository_id: Uuid::new_v4(),
                created_at: Utc::now(),
                chunker,
                id_key: String::new(),
                encryption: Some(EncryptionConfig {
                    cipher: "xchacha20poly1305".into(),
                    key_slots: vec![KeySlot::create(master, &keys)?],
                }),
            },
            None => RepoConfig {
                format_version: FORMAT_VERSION,
                repository_id: Uuid::new_v4(),
                created_at: Utc::now(),
                chunker,
                id_key: hex::encode(keys.id_key),
                encryption: None,
            },
        };
        storage
            .put(CONFIG_KEY, serde_json::to_vec_pretty(&config)?.into())
            .await
            .context("writing the repository config")?;
        tracing::info!(
            repository = %config.repository_id,
            storage = %storage.describe(),
            encrypted = config.encryption.is_some(),
            "created repository"
        );
        Ok(config)
    }

    /// Reads the repository's config.
    pub async fn read_config(storage: &DynStorage) -> anyhow::Result<RepoConfig> {
        let raw = storage.get(CONFIG_KEY).await?;
        let config: RepoConfig =
            serde_json::from_slice(&raw).context("the repository config is not valid JSON")?;
        if config.format_version > FORMAT_VERSION_ENCRYPTED {
            bail!(
                "the repository has format version {}, newer than this build reads ({FORMAT_VERSION_ENCRYPTED}); upgrade Strata",
                config.format_version
            );
        }
        Ok(config)
    }

    /// Opens an existing repository. An encrypted one needs its master key; a key given
    /// for a plain repository is refused rather than silently ignored.
    pub async fn open(storage: DynStorage, master: Option<&MasterKey>) -> anyhow::Result<Self> {
        let config = Self::read_config(&storage).await?;
        let codec = match (&config.encryption, master) {
            (Some(enc), Some(master)) => {
                let keys = open_any(&enc.key_slots, master)?;
                BlobCodec::new(keys.id_key, Some(Cipher::new(&keys)))
            }
            (Some(_), None) => bail!(
                "the repository at {} is encrypted: set STRATA_ENCRYPTION_KEY",
                storage.describe()
            ),
            (None, Some(_)) => bail!(
                "STRATA_ENCRYPTION_KEY is set but the repository at {} is not encrypted; unset it or use a new repository",
                storage.describe()
            ),
            (None, None) => {
                let mut id_key = [0u8; 32];
                hex::decode_to_slice(&config.id_key, &mut id_key)
                    .context("the repository config has a bad id key")?;
                BlobCodec::new(id_key, None)
            }
        };
        Ok(Self {
            storage,
            config,
            codec,
        })
    }

    /// Encoding and sealing of blobs.
    pub fn codec(&self) -> &BlobCodec {
        &self.codec
    }

    /// Writes a manifest: the last step of a backup.
    pub async fn put_manifest(&self, manifest: &Manifest) -> anyhow::Result<String> {
        let key = manifest_key(&manifest.backup_id);
        let json = serde_json::to_vec(manifest)?;
        let body = match self.codec.cipher() {
            Some(c) => {
                let mut out = SEALED_MANIFEST.to_vec();
                out.extend_from_slice(&c.seal(key.as_bytes(), &json));
                out
            }
            None => json,
        };
        self.storage
            .put(&key, body.into())
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
        let json = match (raw.strip_prefix(SEALED_MANIFEST), self.codec.cipher()) {
            (Some(sealed), Some(c)) => c
                .open(key.as_bytes(), sealed)
                .with_context(|| format!("manifest {key} is damaged"))?,
            (Some(_), None) => bail!("manifest {key} is encrypted but the repository is not"),
            (None, _) => raw.to_vec(),
        };
        let manifest: Manifest =
            serde_json::from_slice(&json).with_context(|| format!("manifest {key} is damaged"))?;
        if manifest.format_version > FORMAT_VERSION_ENCRYPTED {
            bail!(
                "backup {backup_id} was written by a newer Strata (format {})",
                manifest.format_version
            );
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests;
