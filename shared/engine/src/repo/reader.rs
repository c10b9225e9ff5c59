//! Reading a snapshot back: resolve chunks through the index, fetch packs (each once,
//! while it is needed), verify every chunk's hash, and write the tree into a staging
//! directory that is swapped into place only when complete.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::format::ChunkId;
use super::index::DynIndex;
pub use super::index::Location;
use super::pack::pack_key;
use super::Repository;

/// How many packs stay in memory while a restore reads them.
const PACK_CACHE: usize = 4;
/// Chunks up to this stored size are decoded on the async task that fetched them.
const INLINE_DECODE: usize = 128 * 1024;
/// How many chunks are fetched and verified at once.
pub(super) const PARALLEL_CHUNKS: usize = 8;

/// Packs being read or recently read, with their order of arrival (oldest first).
#[derive(Default)]
struct PackCache {
    packs: HashMap<String, Arc<OnceCell<Bytes>>>,
    order: VecDeque<String>,
}

/// Fetches and verifies chunks, keeping the last few packs in memory — or, when
/// [`ChunkReader::ranged`], reading each chunk alone.
pub struct ChunkReader {
    repo: Repository,
    index: DynIndex,
    cache: Mutex<PackCache>,
    ranged: bool,
}

impl ChunkReader {
    pub fn new(repo: Repository, index: DynIndex) -> Self {
        Self {
            repo,
            index,
            cache: Mutex::new(PackCache::default()),
            ranged: false,
        }
    }

    /// A reader that fetches each chunk with a ranged read and keeps no pack: a few
    /// chunks in memory instead of up to [`PACK_CACHE`] packs of 16 MiB — for downloads,
    /// many of which may run at once in the API process.
    pub fn ranged(repo: Repository, index: DynIndex) -> Self {
        Self {
            ranged: true,
            ..Self::new(repo, index)
        }
    }

    pub async fn locate(&self, ids: &[ChunkId]) -> anyhow::Result<HashMap<ChunkId, Location>> {
        self.index.locate(ids).await
    }

    async fn pack(&self, pack_id: &str) -> anyhow::Result<Bytes> {
        let cell = {
            let mut guard = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let cache = &mut *guard;
            if let Some(cell) = cache.packs.get(pack_id) {
                cell.clone()
            } else {
                let cell = Arc::new(OnceCell::new());
                cache.packs.insert(pack_id.to_string(), cell.clone());
                cache.order.push_back(pack_id.to_string());
                while cache.order.len() > PACK_CACHE {
                    if let Some(old) = cache.order.pop_front() {
                        cache.packs.remove(&old);
                    }
                }
                cell
            }
        };
        let key = pack_key(pack_id);
        cell.get_or_try_init(|| async {
            self.repo
                .storage
                .get(&key)
                .await
                .with_context(|| format!("reading pack {key}"))
        })
        .await
        .cloned()
    }

    pub async fn fetch(&self, id: ChunkId, loc: &Location) -> anyhow::Result<Bytes> {
        let end = loc.offset + loc.length;
        let stored = if self.ranged {
            let key = pack_key(&loc.pack_id);
            let stored = self
                .repo
                .storage
                .get_range(&key, loc.offset as u64, loc.length as u64)
                .await
                .with_context(|| format!("reading chunk {id} from pack {key}"))?;
            if stored.len() != loc.length {
                bail!(
                    "chunk {id} lies past the end of pack {}: the pack is damaged",
                    loc.pack_id
                );
            }
            stored
        } else {
            let pack = self.pack(&loc.pack_id).await?;
            if end > pack.len() {
                bail!(
                    "chunk {id} lies past the end of pack {}: the pack is damaged",
                    loc.pack_id
                );
            }
            pack.slice(loc.offset..end)
        };
        let raw_length = loc.raw_length;
        // Small chunks (most small files) are decoded here: a hand-off to a blocking
        // thread per chunk cost more than the work. Large ones go to the blocking pool.
        let decoded = if loc.length <= INLINE_DECODE {
            self.repo.codec().decode(id, stored, raw_length)
        } else {
            let codec = self.repo.codec().clone();
            tokio::task::spawn_blocking(move || codec.decode(id, stored, raw_length)).await?
        };
        decoded.with_context(|| format!("in pack {}", loc.pack_id))
    }

    /// Fetches one chunk by id.
    pub async fn get(&self, id: ChunkId) -> anyhow::Result<Bytes> {
        let locs = self.locate(&[id]).await?;
        let loc = locs
            .get(&id)
            .ok_or_else(|| anyhow!("chunk {id} is not in the chunk index"))?;
        self.fetch(id, loc).await
    }
}

/// The content of a list of chunks, in order: located in batches, fetched and verified
/// a few at a time (a database dump on its way back into the database).
pub fn stream_chunks(
    repo: &Repository,
    index: &DynIndex,
    ids: Vec<ChunkId>,
) -> impl futures::Stream<Item = anyhow::Result<Bytes>> + Send + 'static {
    let reader = Arc::new(ChunkReader::new(repo.clone(), index.clone()));
    let batches: Vec<Vec<ChunkId>> = ids.chunks(1024).map(<[ChunkId]>::to_vec).collect();
    let locator = reader.clone();
    futures::stream::iter(batches)
        .then(move |batch| {
            let reader = locator.clone();
            async move {
                let found = reader.locate(&batch).await?;
                batch
                    .into_iter()
                    .map(|id| {
                        let loc = found
                            .get(&id)
                            .cloned()
                            .ok_or_else(|| anyhow!("chunk {id} is not in the chunk index"))?;
                        Ok((id, loc))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            }
        })
        .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
        .try_flatten()
        .map_ok(move |(id, loc)| {
            let reader = reader.clone();
            async move { reader.fetch(id, &loc).await }
        })
        .try_buffered(PARALLEL_CHUNKS)
}
