//! Garbage collection: delete the packs no snapshot needs.
//!
//! Under the repository lock held exclusively (no backup, import or restore runs), the
//! referenced chunks are gathered from EVERY manifest listed in storage under
//! `snapshots/` — not from the catalog, so a manifest the catalog does not know is
//! still protected: each manifest's entry-list segments and the data chunks of every
//! entry in them. A pack with no referenced chunk is then deleted: first its `chunks`
//! and `packs` rows (one transaction), then the object, so a crash in between leaves
//! a harmless orphan object, never an index entry pointing to nothing. Pack objects the
//! index does not know (orphans of crashed backups) are deleted when their trailer
//! lists no referenced chunk. Packs partly referenced are kept whole (repacking them is
//! future work) and counted.
//!
//! Any manifest or entry list that cannot be read stops the collection before anything
//! is deleted: what it references is unknown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;

use super::format::ChunkId;
use super::manifest::manifest_key;
use super::pack::{pack_key, read_trailer};
use super::tree::parse_segment;
use super::writer::{CancelFlag, Progress, Stopped};
use super::Repository;
use crate::db;

/// Storage prefix of the manifests.
const SNAPSHOTS_PREFIX: &str = "snapshots/";
/// Storage prefix of the packs.
const PACKS_PREFIX: &str = "packs/";
/// Packs removed from the index per transaction.
const DELETE_BATCH: usize = 100;

/// What a collection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub manifests_scanned: u64,
    pub chunks_referenced: u64,
    pub packs_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Packs holding both referenced and unreferenced chunks: kept whole.
    pub packs_kept_partially_used: u64,
    /// Pack objects the index did not know, deleted.
    pub orphan_packs_deleted: u64,
    /// Pack objects the index did not know that hold a referenced chunk: kept.
    pub orphan_packs_kept: u64,
    /// Pack objects whose trailer could not be read: kept.
    pub packs_unreadable: u64,
    /// Seconds spent waiting for running backups to release the repository.
    pub waited_secs: f64,
}

/// Waits until no job holds the repository lock shared, then collects. Checks `cancel`
/// while waiting and between steps.
pub async fn collect(
    repo: &Repository,
    pool: &PgPool,
    progress: &Progress,
    cancel: &CancelFlag,
) -> anyhow::Result<GcReport> {
    let started = std::time::Instant::now();
    let lock = loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        if let Some(lock) = db::repo_lock::try_exclusive(pool).await? {
            break lock;
        }
        progress.set_phase("waiting_for_running_backups");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut report = GcReport {
        waited_secs: started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let result = collect_locked(repo, pool, progress, cancel, &mut report).await;
    lock.release().await;
    result.map(|()| report)
}

async fn collect_locked(
    repo: &Repository,
    pool: &PgPool,
    progress: &Progress,
    cancel: &CancelFlag,
    report: &mut GcReport,
) -> anyhow::Result<()> {
    progress.set_phase("collecting_references");
    let referenced = referenced_chunks(repo, pool, progress, cancel, report).await?;
    report.chunks_referenced = referenced.len() as u64;
    if cancel.load(Ordering::Relaxed) {
        return Err(Stopped.into());
    }

    progress.set_phase("finding_unused_packs");
    let mut conn = pool.acquire().await?;
    let index_packs = db::chunks::all_packs(&mut conn).await?;
    let mut usage: HashMap<String, (u64, u64)> = HashMap::new();
    for (pack_id, id) in db::chunks::all_locations(&mut conn).await? {
        let used = ChunkId::from_slice(&id).is_ok_and(|c| referenced.contains(&c));
        let e = usage.entry(pack_id).or_default();
        e.0 += 1;
        e.1 += u64::from(used);
    }
    drop(conn);
    let stored: HashMap<String, u64> = repo
        .storage
        .list(PACKS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|m| {
            let id = m.key.rsplit('/').next()?.to_string();
            let is_pack = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
            is_pack.then_some((id, m.size))
        })
        .collect();

    let mut unused: Vec<(String, u64)> = Vec::new();
    let known: HashSet<&str> = index_packs.iter().map(|p| p.id.as_str()).collect();
    for pack in &index_packs {
        let (total, used) = usage.get(&pack.id).copied().unwrap_or((0, 0));
        if used == 0 {
            let size = stored.get(&pack.id).copied().unwrap_or(pack.size as u64);
            unused.push((pack.id.clone(), size));
        } else if used < total {
            report.packs_kept_partially_used += 1;
        }
    }
    let mut orphans: Vec<(String, u64)> = Vec::new();
    for (id, size) in &stored {
        if known.contains(id.as_str()) {
            continue;
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        match orphan_is_unused(repo, id, &referenced).await {
            Ok(true) => orphans.push((id.clone(), *size)),
            Ok(false) => report.orphan_packs_kept += 1,
            Err(e) => {
                tracing::warn!(pack = %id, error = %format!("{e:#}"), "an unindexed pack cannot be read; keeping it");
                report.packs_unreadable += 1;
            }
        }
    }

    progress.set_phase("deleting_packs");
    let total: u64 = unused.iter().chain(&orphans).map(|(_, s)| s).sum();
    progress.bytes_total.store(total, Ordering::Relaxed);
    progress
        .files_total
        .store((unused.len() + orphans.len()) as u64, Ordering::Relaxed);
    for batch in unused.chunks(DELETE_BATCH) {
        if cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let mut tx = pool.begin().await?;
        db::chunks::delete_packs(&mut tx, &ids).await?;
        tx.commit().await?;
        for (id, size) in batch {
            delete_object(repo, id).await?;
            report.packs_deleted += 1;
            report.bytes_reclaimed += size;
            progress.files_done.fetch_add(1, Ordering::Relaxed);
            progress.bytes_done.fetch_add(*size, Ordering::Relaxed);
        }
    }
    for (id, size) in &orphans {
        if cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        delete_object(repo, id).await?;
        report.packs_deleted += 1;
        report.orphan_packs_deleted += 1;
        report.bytes_reclaimed += size;
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        progress.bytes_done.fetch_add(*size, Ordering::Relaxed);
    }
    tracing::info!(
        packs_deleted = report.packs_deleted,
        bytes_reclaimed = report.bytes_reclaimed,
        partially_used = report.packs_kept_partially_used,
        "garbage collection done"
    );
    Ok(())
}

async fn delete_object(repo: &Repository, pack_id: &str) -> anyhow::Result<()> {
    repo.storage
        .delete(&pack_key(pack_id))
        .await
        .with_context(|| format!("deleting pack {pack_id}"))
}

/// Every chunk some manifest in storage needs: its entry-list segments and the data
/// chunks of the entries in them (a delta's segments list what it adds; its parents'
/// manifests, also in storage, list the rest).
async fn referenced_chunks(
    repo: &Repository,
    pool: &PgPool,
    progress: &Progress,
    cancel: &CancelFlag,
    report: &mut GcReport,
) -> anyhow::Result<HashSet<ChunkId>> {
    let listed = repo.storage.list(SNAPSHOTS_PREFIX).await?;
    progress
        .files_total
        .store(listed.len() as u64, Ordering::Relaxed);
    let mut refs = HashSet::new();
    for meta in listed {
        if cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        let Some(backup_id) = meta.key.strip_prefix(SNAPSHOTS_PREFIX) else {
            continue;
        };
        debug_assert_eq!(manifest_key(backup_id), meta.key);
        let manifest = repo.get_manifest(backup_id).await.with_context(|| {
            format!(
                "garbage collection stopped: cannot read manifest {}; nothing was deleted",
                meta.key
            )
        })?;
        for segment in &manifest.tree {
            refs.insert(*segment);
            let raw = read_blob(repo, pool, *segment).await.with_context(|| {
                format!(
                    "garbage collection stopped: cannot read the entry list of backup {backup_id}"
                )
            })?;
            for entry in parse_segment(&raw)? {
                refs.extend(entry.chunks);
            }
        }
        if let Some(db) = &manifest.database {
            refs.extend(db.chunks.iter().copied());
        }
        report.manifests_scanned += 1;
        progress.files_done.fetch_add(1, Ordering::Relaxed);
    }
    progress.files_done.store(0, Ordering::Relaxed);
    Ok(refs)
}

/// Reads one blob through the index with a ranged read (no whole-pack fetch).
async fn read_blob(repo: &Repository, pool: &PgPool, id: ChunkId) -> anyhow::Result<bytes::Bytes> {
    let mut conn = pool.acquire().await?;
    let loc = db::chunks::locate(&mut conn, &[id.0.to_vec()])
        .await?
        .pop()
        .with_context(|| format!("chunk {id} is not in the chunk index"))?;
    drop(conn);
    let stored = repo
        .storage
        .get_range(
            &pack_key(&loc.pack_id),
            loc.offset as u64,
            loc.length as u64,
        )
        .await
        .with_context(|| format!("reading chunk {id} from pack {}", loc.pack_id))?;
    repo.codec().decode(id, stored, loc.raw_length as usize)
}

/// Whether an unindexed pack holds no referenced chunk.
async fn orphan_is_unused(
    repo: &Repository,
    pack_id: &str,
    referenced: &HashSet<ChunkId>,
) -> anyhow::Result<bool> {
    let pack = repo.storage.get(&pack_key(pack_id)).await?;
    let entries = read_trailer(&pack, repo.codec().cipher())?;
    Ok(!entries.iter().any(|e| referenced.contains(&e.id)))
}
