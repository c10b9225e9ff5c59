//! The chunk index: which pack holds each chunk. The engine reads and writes it only
//! through the [`Index`] trait: [`PgIndex`] keeps it in PostgreSQL (the `chunks` and
//! `packs` tables, `strata_catalog::chunks`), [`MemIndex`] in memory, so the writer,
//! the reader and the marking part of garbage collection run in unit tests on
//! [`strata_storage::MemStorage`] with no database.
//!
//! Garbage collection's condemn / repack / sweep steps stay on PostgreSQL
//! ([`super::gc`]): they need its transactions, row locks and session horizons.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::Utc;
use sqlx::PgPool;

use super::format::ChunkId;
use strata_catalog as db;
pub use strata_catalog::chunks::{ChunkRow, PackRow};

/// Where a chunk lives.
#[derive(Debug, Clone)]
pub struct Location {
    pub pack_id: String,
    pub offset: usize,
    pub length: usize,
    pub raw_length: usize,
}

/// A shared index, as the engine holds it.
pub type DynIndex = Arc<dyn Index>;

/// The chunk index, as the engine uses it.
#[async_trait::async_trait]
pub trait Index: Send + Sync + std::fmt::Debug {
    /// The chunk ids a writer may deduplicate against: every chunk whose pack is not
    /// condemned. (Read after the writer's repository session is registered: a pack
    /// condemned later is not deleted while the session lives.)
    async fn known_ids(&self) -> anyhow::Result<HashSet<ChunkId>>;

    /// The locations of the given chunks; a chunk the index does not hold is absent.
    async fn locate(&self, ids: &[ChunkId]) -> anyhow::Result<HashMap<ChunkId, Location>>;

    /// Takes pack `pack_id`'s lock for recording it: while the returned [`PackWrite`]
    /// lives, garbage collection cannot sweep a pack of that id, so the writer can make
    /// sure the object is in storage and then [`PackWrite::commit`] its rows.
    async fn lock_pack(&self, pack_id: &str) -> anyhow::Result<Box<dyn PackWrite>>;

    /// Every pack of the index, by id.
    async fn packs(&self) -> anyhow::Result<Vec<PackRow>>;

    /// Every chunk of the index: (pack, chunk id, stored length).
    async fn locations(&self) -> anyhow::Result<Vec<(String, Vec<u8>, i32)>>;
}

/// A pack being recorded, its lock held (see [`Index::lock_pack`]). Dropped without
/// [`PackWrite::commit`], nothing is recorded.
#[async_trait::async_trait]
pub trait PackWrite: Send {
    /// Records the pack and its chunks and releases the lock. Idempotent: a pack
    /// recorded again, or a chunk another pack holds, is left as it is — except where
    /// garbage collection condemned it: a condemned pack recorded again is un-condemned,
    /// and a chunk whose row points to a condemned pack moves to this pack.
    async fn commit(self: Box<Self>, size: u64, rows: &[ChunkRow]) -> anyhow::Result<()>;
}

fn to_location(row: &ChunkRow) -> Location {
    Location {
        pack_id: row.pack_id.clone(),
        offset: row.offset as usize,
        length: row.length as usize,
        raw_length: row.raw_length as usize,
    }
}

/// The index in PostgreSQL: a thin adapter over `strata_catalog::chunks` and the pack
/// locks of `strata_catalog::repo_lock`.
#[derive(Debug, Clone)]
pub struct PgIndex {
    pool: PgPool,
}

impl PgIndex {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The index as the engine's functions take it.
    pub fn shared(pool: PgPool) -> DynIndex {
        Arc::new(Self::new(pool))
    }
}

#[async_trait::async_trait]
impl Index for PgIndex {
    async fn known_ids(&self) -> anyhow::Result<HashSet<ChunkId>> {
        let mut conn = self.pool.acquire().await?;
        Ok(db::chunks::known_ids(&mut conn)
            .await?
            .iter()
            .filter_map(|b| ChunkId::from_slice(b).ok())
            .collect())
    }

    async fn locate(&self, ids: &[ChunkId]) -> anyhow::Result<HashMap<ChunkId, Location>> {
        let raw: Vec<Vec<u8>> = ids.iter().map(|i| i.0.to_vec()).collect();
        let mut conn = self.pool.acquire().await?;
        let rows = db::chunks::locate(&mut conn, &raw).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            out.insert(ChunkId::from_slice(&r.id)?, to_location(r));
        }
        Ok(out)
    }

    async fn lock_pack(&self, pack_id: &str) -> anyhow::Result<Box<dyn PackWrite>> {
        let mut tx = self.pool.begin().await?;
        db::repo_lock::pack_xact(&mut tx, pack_id).await?;
        Ok(Box::new(PgPackWrite {
            tx,
            pack_id: pack_id.to_string(),
        }))
    }

    async fn packs(&self) -> anyhow::Result<Vec<PackRow>> {
        let mut conn = self.pool.acquire().await?;
        Ok(db::chunks::all_packs(&mut conn).await?)
    }

    async fn locations(&self) -> anyhow::Result<Vec<(String, Vec<u8>, i32)>> {
        let mut conn = self.pool.acquire().await?;
        Ok(db::chunks::all_locations(&mut conn).await?)
    }
}

/// A transaction holding a pack's lock (`pg_advisory_xact_lock`) until it commits.
struct PgPackWrite {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pack_id: String,
}

#[async_trait::async_trait]
impl PackWrite for PgPackWrite {
    async fn commit(mut self: Box<Self>, size: u64, rows: &[ChunkRow]) -> anyhow::Result<()> {
        let id = self.pack_id.clone();
        db::chunks::insert_pack(&mut self.tx, &id, size as i64, rows)
            .await
            .with_context(|| format!("indexing pack {id}"))?;
        self.tx
            .commit()
            .await
            .with_context(|| format!("indexing pack {id}"))?;
        Ok(())
    }
}

/// The index in memory, for tests: the same rules as [`PgIndex`] (what is known, what
/// a pack recorded again does), no locks to speak of (one process, one map).
#[derive(Debug, Default)]
pub struct MemIndex {
    state: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    packs: BTreeMap<String, PackRow>,
    chunks: HashMap<Vec<u8>, ChunkRow>,
}

impl MemIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty index as the engine's functions take it.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks packs condemned (what a collection's condemn step records), for tests of
    /// what a writer does next.
    pub fn condemn(&self, pack_ids: &[String]) {
        let mut state = self.state();
        for id in pack_ids {
            if let Some(p) = state.packs.get_mut(id) {
                p.condemned_at.get_or_insert_with(Utc::now);
            }
        }
    }
}

#[async_trait::async_trait]
impl Index for MemIndex {
    async fn known_ids(&self) -> anyhow::Result<HashSet<ChunkId>> {
        let state = self.state();
        Ok(state
            .chunks
            .values()
            .filter(|c| {
                state
                    .packs
                    .get(&c.pack_id)
                    .is_some_and(|p| p.condemned_at.is_none())
            })
            .filter_map(|c| ChunkId::from_slice(&c.id).ok())
            .collect())
    }

    async fn locate(&self, ids: &[ChunkId]) -> anyhow::Result<HashMap<ChunkId, Location>> {
        let state = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| {
                state
                    .chunks
                    .get(id.0.as_slice())
                    .map(|r| (*id, to_location(r)))
            })
            .collect())
    }

    async fn lock_pack(&self, pack_id: &str) -> anyhow::Result<Box<dyn PackWrite>> {
        Ok(Box::new(MemPackWrite {
            state: self.state.clone(),
            pack_id: pack_id.to_string(),
        }))
    }

    async fn packs(&self) -> anyhow::Result<Vec<PackRow>> {
        Ok(self.state().packs.values().cloned().collect())
    }

    async fn locations(&self) -> anyhow::Result<Vec<(String, Vec<u8>, i32)>> {
        Ok(self
            .state()
            .chunks
            .values()
            .map(|c| (c.pack_id.clone(), c.id.clone(), c.length))
            .collect())
    }
}

struct MemPackWrite {
    state: Arc<Mutex<MemState>>,
    pack_id: String,
}

#[async_trait::async_trait]
impl PackWrite for MemPackWrite {
    async fn commit(self: Box<Self>, size: u64, rows: &[ChunkRow]) -> anyhow::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let fresh = PackRow {
            id: self.pack_id.clone(),
            size: size as i64,
            chunk_count: rows.len() as i32,
            created_at: Utc::now(),
            condemned_at: None,
        };
        match state.packs.get_mut(&self.pack_id) {
            None => {
                state.packs.insert(self.pack_id.clone(), fresh);
            }
            Some(p) if p.condemned_at.is_some() => {
                p.condemned_at = None;
                p.size = fresh.size;
                p.chunk_count = fresh.chunk_count;
            }
            Some(_) => {}
        }
        for row in rows {
            let condemned = |pack: &str| {
                state
                    .packs
                    .get(pack)
                    .is_some_and(|p| p.condemned_at.is_some())
            };
            let replace = match state.chunks.get(&row.id) {
                None => true,
                Some(old) => condemned(&old.pack_id),
            };
            if replace {
                let mut row = row.clone();
                row.pack_id = self.pack_id.clone();
                state.chunks.insert(row.id.clone(), row);
            }
        }
        Ok(())
    }
}
