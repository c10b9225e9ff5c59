//! Garbage collection, concurrent with backups: condemn the packs no snapshot needs,
//! repack the packs mostly dead, and delete condemned packs once no running job can
//! still need them. The protocol, and why each step is safe, is in docs/FORMAT.md
//! ("Garbage collection and concurrent backups"). In short:
//!
//! 1. `h0` = the start of the oldest live repository session (or now).
//! 2. References: every chunk some manifest under `snapshots/` needs (not the catalog).
//! 3. Condemn, under the `repo_gc_state` row lock held for milliseconds, the indexed
//!    packs with no referenced chunk created before `h0`, and the pack objects the index
//!    does not know (recorded as condemned packs without chunks).
//! 4. Repack the packs whose dead fraction reaches the threshold: their live chunks are
//!    copied (still encoded) into new packs, their index rows moved, the old packs
//!    condemned — in one transaction.
//! 5. `h1` = the start of the oldest live session, taken *before* the manifests are
//!    listed again; the manifests written since step 2 are added to the references.
//! 6. A condemned pack holding a referenced chunk is un-condemned; the others condemned
//!    before `h1` are deleted (index rows, then the object); the rest wait for the
//!    sessions older than their condemnation to end.
//!
//! Any manifest or entry list that cannot be read stops the collection before anything
//! is deleted: what it references is unknown. One collection runs at a time (an advisory
//! lock only collections take); backups never wait for one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::format::{BlobKind, ChunkId, PACK_TARGET};
use super::index::{DynIndex, Index, PackRow, PgIndex};
use super::manifest::manifest_key;
use super::pack::{pack_key, PackBuilder};
use super::progress::{CancelFlag, Progress, Stopped};
use super::tree::parse_segment;
use super::writer::{lock_stored_pack, put_pack};
use super::Repository;
use strata_catalog as db;
use strata_storage::StorageError;

/// Storage prefix of the manifests.
const SNAPSHOTS_PREFIX: &str = "snapshots/";
/// Storage prefix of the packs.
const PACKS_PREFIX: &str = "packs/";
/// Storage prefix of uploaded archives waiting for their import job.
const UPLOADS_PREFIX: &str = "uploads/";
/// An upload no queued or running import needs is deleted once it is this old (the API
/// stores an upload a moment before it records its job).
pub const UPLOAD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How a collection behaves (`STRATA_GC_*`).
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// `STRATA_GC_REPACK_THRESHOLD`: a pack whose dead bytes are at least this fraction
    /// of its size is repacked (default 0.5; 1 only repacks packs with no live byte,
    /// which are deleted anyway, so it disables repacking).
    pub repack_threshold: f64,
    /// `STRATA_GC_SESSION_STALE_SECS`: a session not heartbeated for this long belongs
    /// to a dead process and no longer holds anything back (default 120).
    pub session_stale: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            repack_threshold: 0.5,
            session_stale: Duration::from_secs(120),
        }
    }
}

impl GcOptions {
    /// Reads the `STRATA_GC_*` variables.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let threshold: f64 =
            strata_core::config::parse_var("STRATA_GC_REPACK_THRESHOLD", d.repack_threshold)?;
        if !(threshold > 0.0 && threshold <= 1.0) {
            anyhow::bail!(
                "STRATA_GC_REPACK_THRESHOLD: must be a fraction in (0, 1], got {threshold}"
            );
        }
        let stale: u64 = strata_core::config::parse_var("STRATA_GC_SESSION_STALE_SECS", 120)?;
        if stale < 3 * super::session::HEARTBEAT.as_secs() {
            anyhow::bail!(
                "STRATA_GC_SESSION_STALE_SECS: must be at least {} (three heartbeats)",
                3 * super::session::HEARTBEAT.as_secs()
            );
        }
        Ok(Self {
            repack_threshold: threshold,
            session_stale: Duration::from_secs(stale),
        })
    }
}

/// What a collection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub manifests_scanned: u64,
    pub chunks_referenced: u64,
    /// Live repository sessions when the collection started.
    pub live_sessions: i64,
    /// Stale sessions (dead processes) removed.
    pub stale_sessions_removed: u64,
    /// Indexed packs with no referenced chunk, condemned by this run.
    pub packs_condemned: u64,
    /// Pack objects the index did not know, condemned by this run.
    pub orphan_packs_condemned: u64,
    /// Condemned packs found referenced again, un-condemned.
    pub packs_uncondemned: u64,
    /// Packs whose live chunks were copied into new packs (and which were condemned).
    pub packs_repacked: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Bytes of the packs written by repacking.
    pub bytes_rewritten: u64,
    pub chunks_moved: u64,
    /// Packs (indexed or orphan) deleted, index rows then object.
    pub packs_deleted: u64,
    pub orphan_packs_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Condemned packs kept because a session that started before their condemnation
    /// is still live; a later collection deletes them.
    pub packs_kept_for_sessions: u64,
    /// Packs holding both referenced and unreferenced chunks, below the repack threshold.
    pub packs_kept_partially_used: u64,
    /// Seconds spent waiting for another collection to finish.
    pub waited_secs: f64,
    /// Uploaded archives older than a day that no queued or running import needed.
    pub uploads_deleted: u64,
    pub upload_bytes_reclaimed: u64,
}

/// Collects garbage; waits only for another collection. Checks `cancel` between steps.
pub async fn collect(
    repo: &Repository,
    pool: &PgPool,
    options: &GcOptions,
    progress: &Progress,
    cancel: &CancelFlag,
) -> anyhow::Result<GcReport> {
    let started = std::time::Instant::now();
    let lock = loop {
        check(cancel)?;
        if let Some(lock) = db::repo_lock::try_collection(pool).await? {
            break lock;
        }
        progress.set_phase("waiting_for_another_collection");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut report = GcReport {
        waited_secs: started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let result = Collection {
        repo,
        pool,
        index: PgIndex::shared(pool.clone()),
        options,
        progress,
        cancel,
        report: &mut report,
    }
    .run()
    .await;
    lock.release().await;
    result.map(|()| report)
}

/// Every chunk the manifests in storage reference: what a collection keeps (tests and
/// tools check a repository against it).
pub async fn referenced_chunks(
    repo: &Repository,
    index: &dyn Index,
) -> anyhow::Result<HashSet<ChunkId>> {
    let (mut seen, mut refs) = (HashSet::new(), HashSet::new());
    scan_manifests(
        repo,
        index,
        &mut seen,
        &mut refs,
        &Progress::default(),
        &CancelFlag::default(),
    )
    .await?;
    Ok(refs)
}

fn check(cancel: &CancelFlag) -> anyhow::Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Stopped.into());
    }
    Ok(())
}

/// How much of a pack the references use, from the index.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    rows: u64,
    live_rows: u64,
    live_bytes: u64,
}

struct Collection<'a> {
    repo: &'a Repository,
    pool: &'a PgPool,
    /// The chunk index in `pool`.
    index: DynIndex,
    options: &'a GcOptions,
    progress: &'a Progress,
    cancel: &'a CancelFlag,
    report: &'a mut GcReport,
}

impl Collection<'_> {
    async fn run(&mut self) -> anyhow::Result<()> {
        let stale = self.options.session_stale.as_secs_f64();
        let (h0, live) = {
            let mut conn = self.pool.acquire().await?;
            self.report.stale_sessions_removed =
                db::repo_sessions::remove_stale(&mut conn, stale).await?;
            db::repo_sessions::horizon(&mut conn, stale).await?
        };
        self.report.live_sessions = live;

        self.progress.set_phase("collecting_references");
        let mut seen = HashSet::new();
        let mut referenced = HashSet::new();
        self.scan_manifests(&mut seen, &mut referenced).await?;
        check(self.cancel)?;

        self.progress.set_phase("finding_unused_packs");
        let (unused, repack, orphans) = self.classify(&referenced, h0).await?;
        check(self.cancel)?;
        {
            let mut tx = self.pool.begin().await?;
            db::repo_sessions::lock_for_condemnation(&mut tx).await?;
            let condemned = db::chunks::condemn(&mut tx, &unused, h0).await?;
            let orphans = db::chunks::condemn_orphans(&mut tx, &orphans).await?;
            tx.commit().await?;
            self.report.packs_condemned += condemned.len() as u64;
            self.report.orphan_packs_condemned += orphans.len() as u64;
        }

        if !repack.is_empty() {
            self.progress.set_phase("repacking");
            self.repack(&repack, &referenced, h0).await?;
        }
        check(self.cancel)?;

        // The horizon is taken before the manifests are listed again: a session older
        // than a condemnation is either still live now (and holds the pack back) or has
        // ended, and then its manifest is in the listing below.
        let (h1, _) = {
            let mut conn = self.pool.acquire().await?;
            db::repo_sessions::horizon(&mut conn, stale).await?
        };
        self.progress.set_phase("rechecking_references");
        self.scan_manifests(&mut seen, &mut referenced).await?;
        self.report.chunks_referenced = referenced.len() as u64;
        check(self.cancel)?;

        self.progress.set_phase("deleting_packs");
        self.sweep(&referenced, h1).await?;
        self.progress.set_phase("deleting_stale_uploads");
        self.sweep_uploads().await?;
        tracing::info!(
            packs_condemned = self.report.packs_condemned,
            packs_repacked = self.report.packs_repacked,
            packs_deleted = self.report.packs_deleted,
            bytes_reclaimed = self.report.bytes_reclaimed,
            kept_for_sessions = self.report.packs_kept_for_sessions,
            "garbage collection done"
        );
        Ok(())
    }

    /// Adds to `refs` what the manifests not in `seen` reference.
    async fn scan_manifests(
        &mut self,
        seen: &mut HashSet<String>,
        refs: &mut HashSet<ChunkId>,
    ) -> anyhow::Result<()> {
        self.report.manifests_scanned += scan_manifests(
            self.repo,
            self.index.as_ref(),
            seen,
            refs,
            self.progress,
            self.cancel,
        )
        .await?;
        Ok(())
    }

    /// The packs to condemn (no referenced chunk), to repack (dead fraction at or above
    /// the threshold), and the orphan objects (in storage, not in the index).
    #[allow(clippy::type_complexity)]
    async fn classify(
        &mut self,
        referenced: &HashSet<ChunkId>,
        h0: DateTime<Utc>,
    ) -> anyhow::Result<(Vec<String>, Vec<String>, Vec<(String, u64)>)> {
        // Storage is listed before the index is read: an object uploaded and indexed in
        // between is then known, not taken for an orphan.
        let stored: HashMap<String, u64> = self
            .repo
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
        let packs = self.index.packs().await?;
        let locations = self.index.locations().await?;

        let known: HashSet<&str> = packs.iter().map(|p| p.id.as_str()).collect();
        let orphans: Vec<(String, u64)> = stored
            .iter()
            .filter(|(id, _)| !known.contains(id.as_str()))
            .map(|(id, size)| (id.clone(), *size))
            .collect();
        let marking = mark(
            &packs,
            &locations,
            referenced,
            self.options.repack_threshold,
            h0,
        );
        let (mut unused, mut repack) = (Vec::new(), Vec::new());
        for (id, m) in marking {
            match m {
                Mark::Unused => unused.push(id),
                Mark::Repack => repack.push(id),
                Mark::Partial => self.report.packs_kept_partially_used += 1,
                Mark::Live => {}
            }
        }
        Ok((unused, repack, orphans))
    }

    /// Copies the live chunks of `packs` into new packs, moves their index rows and
    /// condemns the old packs; a new pack is closed at an old pack's boundary once it
    /// reaches the target size, so an old pack is condemned in the transaction that
    /// moves the last of its chunks.
    async fn repack(
        &mut self,
        packs: &[String],
        referenced: &HashSet<ChunkId>,
        h0: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let total = packs.len() as u64;
        self.progress.files_total.store(total, Ordering::Relaxed);
        self.progress.files_done.store(0, Ordering::Relaxed);
        let mut builder = PackBuilder::new();
        let mut moves: Vec<(ChunkId, String)> = Vec::new();
        let mut olds: Vec<String> = Vec::new();
        for (i, old) in packs.iter().enumerate() {
            check(self.cancel)?;
            let rows = {
                let mut conn = self.pool.acquire().await?;
                db::chunks::in_pack(&mut conn, old).await?
            };
            let object = self
                .repo
                .storage
                .get(&pack_key(old))
                .await
                .with_context(|| format!("reading pack {old} to repack it"))?;
            for row in rows {
                let id = ChunkId::from_slice(&row.id)?;
                if !referenced.contains(&id) {
                    continue;
                }
                let (start, end) = (
                    row.offset as usize,
                    row.offset as usize + row.length as usize,
                );
                if end > object.len() {
                    anyhow::bail!(
                        "chunk {id} lies past the end of pack {old}: the pack is damaged"
                    );
                }
                let stored = object.slice(start..end);
                // Copied encoded, but checked first: a damaged chunk is not spread.
                self.repo
                    .codec()
                    .decode(id, stored.clone(), row.raw_length as usize)
                    .with_context(|| format!("repacking pack {old}"))?;
                builder.add(
                    id,
                    BlobKind::from_u8(row.kind as u8)?,
                    &stored,
                    row.raw_length as usize,
                );
                moves.push((id, old.clone()));
            }
            olds.push(old.clone());
            if builder.len() >= PACK_TARGET || i + 1 == packs.len() {
                let full = std::mem::take(&mut builder);
                self.flush(full, &moves, &olds, h0).await?;
                moves.clear();
                olds.clear();
            }
            self.progress
                .files_done
                .store(i as u64 + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Uploads one repacked pack, then moves the chunks to it and condemns `olds` in one
    /// transaction that holds the new pack's lock.
    async fn flush(
        &mut self,
        builder: PackBuilder,
        moves: &[(ChunkId, String)],
        olds: &[String],
        h0: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let stored = if builder.is_empty() {
            None
        } else {
            Some(put_pack(self.repo, builder).await?)
        };
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = stored {
            lock_stored_pack(self.repo, &mut tx, &stored).await?;
            let (id, size, rows) = (stored.id, stored.size, stored.rows);
            if olds.contains(&id) {
                // The same bytes again (nothing was dead after all): leave it be.
                return Ok(());
            }
            let from: HashMap<ChunkId, &str> =
                moves.iter().map(|(c, p)| (*c, p.as_str())).collect();
            for old in olds {
                let mine: Vec<db::chunks::ChunkRow> = rows
                    .iter()
                    .filter(|r| {
                        ChunkId::from_slice(&r.id)
                            .is_ok_and(|c| from.get(&c).copied() == Some(old.as_str()))
                    })
                    .cloned()
                    .collect();
                self.report.chunks_moved +=
                    db::chunks::move_into_pack(&mut tx, &id, size as i64, old, &mine).await?;
            }
            self.report.packs_written += 1;
            self.report.bytes_rewritten += size;
        }
        db::repo_sessions::lock_for_condemnation(&mut tx).await?;
        let condemned = db::chunks::condemn(&mut tx, olds, h0).await?;
        tx.commit().await?;
        self.report.packs_repacked += condemned.len() as u64;
        Ok(())
    }

    /// Un-condemns the condemned packs a manifest references again, and deletes the
    /// others condemned before `h1`.
    async fn sweep(
        &mut self,
        referenced: &HashSet<ChunkId>,
        h1: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let condemned: Vec<PackRow> = self
            .index
            .packs()
            .await?
            .into_iter()
            .filter(|p| p.condemned_at.is_some())
            .collect();
        let usage = usage(&self.index.locations().await?, referenced);
        let mut revive = Vec::new();
        let mut doomed = Vec::new();
        for pack in condemned {
            if usage.get(&pack.id).is_some_and(|u| u.live_rows > 0) {
                revive.push(pack.id);
            } else if pack.condemned_at.is_some_and(|c| c < h1) {
                doomed.push(pack);
            } else {
                self.report.packs_kept_for_sessions += 1;
            }
        }
        if !revive.is_empty() {
            let mut conn = self.pool.acquire().await?;
            self.report.packs_uncondemned += db::chunks::uncondemn(&mut conn, &revive).await?;
        }
        let total: u64 = doomed.iter().map(|p| p.size as u64).sum();
        self.progress.bytes_total.store(total, Ordering::Relaxed);
        self.progress.bytes_done.store(0, Ordering::Relaxed);
        self.progress
            .files_total
            .store(doomed.len() as u64, Ordering::Relaxed);
        self.progress.files_done.store(0, Ordering::Relaxed);
        if doomed.is_empty() {
            return Ok(());
        }
        // Pack locks are session-level on their own connection: held from the index
        // rows' removal to the object's deletion, across the commit in between.
        let mut conn = self.pool.acquire().await?.detach();
        for pack in doomed {
            check(self.cancel)?;
            db::repo_lock::pack_lock(&mut conn, &pack.id).await?;
            let deleted = db::chunks::delete_condemned(&mut conn, &pack.id, h1).await;
            let deleted = match deleted {
                Ok(true) => delete_object(self.repo, &pack.id).await.map(|()| true),
                other => other.map_err(anyhow::Error::from),
            };
            db::repo_lock::pack_unlock(&mut conn, &pack.id).await?;
            if deleted? {
                self.report.packs_deleted += 1;
                if pack.chunk_count == 0 {
                    self.report.orphan_packs_deleted += 1;
                }
                self.report.bytes_reclaimed += pack.size as u64;
                self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                self.progress
                    .bytes_done
                    .fetch_add(pack.size as u64, Ordering::Relaxed);
            }
        }
        let _ = sqlx::Connection::close(conn).await;
        Ok(())
    }
}

impl Collection<'_> {
    /// Deletes the uploads (`uploads/<job id>.<zip|tar>`) older than [`UPLOAD_MAX_AGE`]
    /// that no queued or running import job needs: left by an import that failed or was
    /// cancelled while its own clean-up could not reach the store, or by an API process
    /// that stopped between storing an upload and recording its job.
    async fn sweep_uploads(&mut self) -> anyhow::Result<()> {
        let listed = self.repo.storage.list(UPLOADS_PREFIX).await?;
        if listed.is_empty() {
            return Ok(());
        }
        let needed: HashSet<String> = {
            let mut conn = self.pool.acquire().await?;
            sqlx::query_scalar(
                "SELECT payload->>'upload_key' FROM jobs
                  WHERE kind = 'import' AND status IN ('queued', 'running')
                    AND payload ? 'upload_key'",
            )
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
        };
        let now = Utc::now();
        for meta in listed {
            check(self.cancel)?;
            if needed.contains(&meta.key) {
                continue;
            }
            // Only Strata's own names: the job id (UUIDv7) tells when it was stored.
            match upload_age(&meta.key, now) {
                Some(age) if age >= UPLOAD_MAX_AGE => {}
                _ => continue,
            }
            match self.repo.storage.delete(&meta.key).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {
                    tracing::info!(key = %meta.key, "deleted an upload no import needs");
                    self.report.uploads_deleted += 1;
                    self.report.upload_bytes_reclaimed += meta.size;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!("deleting {}", meta.key)))
                }
            }
        }
        Ok(())
    }
}

/// How old an upload is, from the UUIDv7 job id in its key; `None` for a key that is not
/// `uploads/<job id>.<extension>`.
fn upload_age(key: &str, now: DateTime<Utc>) -> Option<Duration> {
    let name = key.strip_prefix(UPLOADS_PREFIX)?;
    let (stem, _) = name.split_once('.')?;
    let id = uuid::Uuid::parse_str(stem).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let stored = DateTime::from_timestamp(secs as i64, nanos)?;
    (now - stored).to_std().ok()
}

/// Adds to `refs` what the manifests in storage not in `seen` reference (a manifest
/// never changes once written, so one already read need not be read again); returns
/// how many manifests it read. A manifest or entry list that cannot be read is an error.
async fn scan_manifests(
    repo: &Repository,
    index: &dyn Index,
    seen: &mut HashSet<String>,
    refs: &mut HashSet<ChunkId>,
    progress: &Progress,
    cancel: &CancelFlag,
) -> anyhow::Result<u64> {
    let listed = repo.storage.list(SNAPSHOTS_PREFIX).await?;
    let fresh: Vec<_> = listed
        .into_iter()
        .filter(|m| !seen.contains(&m.key))
        .collect();
    progress
        .files_total
        .store(fresh.len() as u64, Ordering::Relaxed);
    progress.files_done.store(0, Ordering::Relaxed);
    let mut scanned = 0;
    for meta in fresh {
        check(cancel)?;
        let Some(backup_id) = meta.key.strip_prefix(SNAPSHOTS_PREFIX) else {
            continue;
        };
        debug_assert_eq!(manifest_key(backup_id), meta.key);
        let manifest = match repo.get_manifest(backup_id).await {
            Ok(m) => m,
            // Deleted since it was listed (a delete job runs): it references nothing.
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(e.context(format!(
                    "garbage collection stopped: cannot read manifest {}; nothing more was deleted",
                    meta.key
                )))
            }
        };
        for segment in &manifest.tree {
            refs.insert(*segment);
            let raw = read_blob(repo, index, *segment).await.with_context(|| {
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
        seen.insert(meta.key);
        scanned += 1;
        progress.files_done.fetch_add(1, Ordering::Relaxed);
    }
    progress.files_done.store(0, Ordering::Relaxed);
    Ok(scanned)
}

/// What marking decides for a pack of the index that is not condemned yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Every chunk of it is referenced: kept.
    Live,
    /// Some chunks are referenced, some not, below the repack threshold (or the pack is
    /// younger than the horizon): kept as it is.
    Partial,
    /// Some chunks are referenced and the dead fraction reaches the threshold: its live
    /// chunks are copied into new packs and it is condemned.
    Repack,
    /// No referenced chunk: condemned (if created before the horizon).
    Unused,
}

/// Marking, the pure part of a collection: given the index's packs and its
/// pack → chunks listing ([`Index::packs`], [`Index::locations`]) and the chunks the
/// manifests reference ([`referenced_chunks`]), what becomes of each pack not condemned
/// yet. Packs created at or after `h0` are never repacked (a running writer may still
/// be recording them).
pub fn mark(
    packs: &[PackRow],
    locations: &[(String, Vec<u8>, i32)],
    referenced: &HashSet<ChunkId>,
    repack_threshold: f64,
    h0: DateTime<Utc>,
) -> BTreeMap<String, Mark> {
    let usage = usage(locations, referenced);
    let mut out = BTreeMap::new();
    for pack in packs.iter().filter(|p| p.condemned_at.is_none()) {
        let u = usage.get(&pack.id).copied().unwrap_or_default();
        let m = if u.live_rows == 0 {
            Mark::Unused
        } else if u.live_rows < u.rows || u.live_rows < pack.chunk_count as u64 {
            // Some chunk is dead (or moved away): the pack would shrink.
            let dead = (pack.size as u64).saturating_sub(u.live_bytes) as f64;
            if pack.size > 0 && dead / pack.size as f64 >= repack_threshold && pack.created_at < h0
            {
                Mark::Repack
            } else {
                Mark::Partial
            }
        } else {
            Mark::Live
        };
        out.insert(pack.id.clone(), m);
    }
    out
}

/// Per pack: its chunk rows, and those referenced with their bytes.
fn usage(
    locations: &[(String, Vec<u8>, i32)],
    referenced: &HashSet<ChunkId>,
) -> HashMap<String, Usage> {
    let mut out: HashMap<String, Usage> = HashMap::new();
    for (pack_id, id, length) in locations {
        let e = out.entry(pack_id.clone()).or_default();
        e.rows += 1;
        if ChunkId::from_slice(id).is_ok_and(|c| referenced.contains(&c)) {
            e.live_rows += 1;
            e.live_bytes += *length as u64;
        }
    }
    out
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<StorageError>(),
            Some(StorageError::NotFound(_))
        )
    })
}

async fn delete_object(repo: &Repository, pack_id: &str) -> anyhow::Result<()> {
    match repo.storage.delete(&pack_key(pack_id)).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("deleting pack {pack_id}"))),
    }
}

/// Reads one blob through the index with a ranged read (no whole-pack fetch).
async fn read_blob(
    repo: &Repository,
    index: &dyn Index,
    id: ChunkId,
) -> anyhow::Result<bytes::Bytes> {
    let loc = index
        .locate(&[id])
        .await?
        .remove(&id)
        .with_context(|| format!("chunk {id} is not in the chunk index"))?;
    let stored = repo
        .storage
        .get_range(
            &pack_key(&loc.pack_id),
            loc.offset as u64,
            loc.length as u64,
        )
        .await
        .with_context(|| format!("reading chunk {id} from pack {}", loc.pack_id))?;
    repo.codec().decode(id, stored, loc.raw_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_as_old_as_its_job_id() {
        let now = Utc::now();
        let two_days = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (now.timestamp() - 2 * 86400) as u64,
            0,
        ));
        let age = upload_age(&format!("uploads/{two_days}.zip"), now).unwrap();
        assert!(age >= UPLOAD_MAX_AGE && age < 2 * UPLOAD_MAX_AGE + Duration::from_secs(5));
        let fresh = uuid::Uuid::now_v7();
        assert!(upload_age(&format!("uploads/{fresh}.tar"), now).unwrap() < UPLOAD_MAX_AGE);
        for other in [
            "uploads/readme",
            "uploads/x.zip",
            "packs/ab/cd",
            "uploads/.zip",
        ] {
            assert_eq!(upload_age(other, now), None, "{other}");
        }
        let v4 = uuid::Uuid::new_v4();
        assert_eq!(upload_age(&format!("uploads/{v4}.zip"), now), None);
    }
}
