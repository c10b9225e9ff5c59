//! Rebuilding a lost catalog from storage alone (`strata-worker rebuild-catalog`).
//!
//! Storage holds everything a restore needs: every manifest (`snapshots/<backup>`: its
//! source, type, parent, chain, statistics, and since issue 8 the source's spec) and
//! every pack (`packs/<id>`, whose trailer lists its chunks). The rebuild reads them
//! and adds to the catalog what it lacks:
//!
//! 1. each source named by a manifest, from its newest manifest's spec (a manifest
//!    written before specs were recorded gives a directory source at its `root`);
//!    database passwords are never in storage, so such a source needs its password
//!    set again (the report says which);
//! 2. each backup as `complete`, parents before children;
//! 3. the chunk index, from every pack's trailer.
//!
//! It only adds: rows already present are left alone, so running it twice, or over a
//! catalog that lost only some rows, is safe. Then the catalog records the repository's
//! identity (`repo::identity`).
//!
//! A catalog that describes **another** repository (another identity recorded, or
//! backups this repository does not hold) is first made to forget it: its chunk index
//! (whose chunks are not here) and its complete backups are removed, then everything is
//! rebuilt from this repository. The forgotten backups are listed in the report; their
//! data is wherever that other repository is (rebuilding from it brings them back). It must run while no worker runs (it
//! does not register a repository session). A manifest or pack that cannot be read is
//! reported and skipped; the rest is rebuilt.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::identity;
use super::manifest::{manifest_key, Manifest};
use super::pack::{pack_key, read_trailer};
use super::Repository;
use strata_catalog as db;
use strata_core::model::{BackupId, BackupType, FilesSpec, SourceSpec};

/// What a rebuild did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    pub manifests: u64,
    pub sources_created: Vec<String>,
    pub backups_added: u64,
    pub backups_present: u64,
    pub packs_indexed: u64,
    pub packs_present: u64,
    pub chunks_indexed: u64,
    /// `{key, error}` of manifests and packs that could not be read (skipped).
    pub unreadable: Vec<serde_json::Value>,
    /// Backups that could not be added (their parent is missing), with why.
    pub skipped_backups: Vec<serde_json::Value>,
    /// What an operator should do next (database passwords to set again…).
    pub warnings: Vec<String>,
    /// The identity of the repository the catalog now describes.
    pub repository_id: Option<Uuid>,
    /// The identity the catalog described before, when it was another repository's.
    pub previous_repository_id: Option<Uuid>,
    /// Backups the catalog listed that this repository does not hold (forgotten).
    pub forgotten_backups: Vec<String>,
}

/// Rebuilds what the catalog lacks from storage.
pub async fn rebuild(repo: &Repository, pool: &PgPool) -> anyhow::Result<RebuildReport> {
    let mut report = RebuildReport::default();
    let manifests = read_manifests(repo, &mut report).await?;
    let mut conn = pool.acquire().await?;
    let described = identity::assess(&repo.storage, &mut conn).await?;
    drop(conn);
    let forgotten = match described {
        Ok(_) => Vec::new(),
        Err(other) => {
            tracing::warn!(%other, "the catalog describes another repository: forgetting it");
            report.previous_repository_id = other.catalog;
            forget_other_repository(pool).await?
        }
    };
    create_sources(pool, &manifests, &mut report).await?;
    add_backups(pool, &manifests, &mut report).await?;
    index_packs(repo, pool, &mut report).await?;
    let held: HashSet<&str> = manifests
        .iter()
        .map(|(_, m)| m.backup_id.as_str())
        .collect();
    report.forgotten_backups = forgotten
        .into_iter()
        .filter(|id| !held.contains(id.as_str()))
        .collect();
    let id = repo.config.repository_id;
    let mut conn = pool.acquire().await?;
    identity::record(&mut conn, id, &repo.storage.describe(), true).await?;
    report.repository_id = Some(id);
    tracing::info!(
        manifests = report.manifests,
        sources = report.sources_created.len(),
        backups = report.backups_added,
        packs = report.packs_indexed,
        chunks = report.chunks_indexed,
        unreadable = report.unreadable.len(),
        "catalog rebuilt from storage"
    );
    Ok(report)
}

/// Removes what the catalog knows of another repository: its chunk index and its
/// complete (or deleting) backups; returns their ids. Pending and failed rows stay
/// (they hold no data), unlinked from removed parents.
async fn forget_other_repository(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM backups WHERE status IN ('complete', 'deleting') ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE backups SET parent_id = NULL WHERE parent_id = ANY($1) AND NOT id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    db::backups::delete_rows(&mut tx, &ids).await?;
    sqlx::query("DELETE FROM chunks").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM packs").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(ids)
}

async fn read_manifests(
    repo: &Repository,
    report: &mut RebuildReport,
) -> anyhow::Result<Vec<(String, Manifest)>> {
    let mut out = Vec::new();
    for meta in repo.storage.list("snapshots/").await? {
        let Some(id) = meta.key.strip_prefix("snapshots/") else {
            continue;
        };
        match repo.get_manifest(id).await {
            Ok(m) => out.push((manifest_key(id), m)),
            Err(e) => report.unreadable.push(serde_json::json!({
                "key": meta.key, "error": format!("{e:#}"),
            })),
        }
    }
    report.manifests = out.len() as u64;
    // Parents first: a chain lists the full first and the backup itself last.
    out.sort_by(|a, b| {
        (a.1.chain.len(), a.1.created_at, &a.1.backup_id).cmp(&(
            b.1.chain.len(),
            b.1.created_at,
            &b.1.backup_id,
        ))
    });
    Ok(out)
}

/// Creates each missing source from its newest manifest.
async fn create_sources(
    pool: &PgPool,
    manifests: &[(String, Manifest)],
    report: &mut RebuildReport,
) -> anyhow::Result<()> {
    let mut newest: HashMap<Uuid, &Manifest> = HashMap::new();
    for (_, m) in manifests {
        let e = newest.entry(m.source_id).or_insert(m);
        if m.created_at > e.created_at {
            *e = m;
        }
    }
    let mut ids: Vec<&Uuid> = newest.keys().collect();
    ids.sort();
    let mut conn = pool.acquire().await?;
    for id in ids {
        let m = newest[id];
        if db::sources::get(&mut conn, *id).await?.is_some() {
            continue;
        }
        let spec = m.source_spec.clone().unwrap_or_else(|| SourceSpec {
            files: Some(FilesSpec {
                path: m.root.clone().into(),
                exclude: Vec::new(),
            }),
            database: None,
        });
        let mut name = m.source_name.clone();
        if db::sources::find(&mut conn, &name).await?.is_some() {
            name = format!("{name}-{}", &id.simple().to_string()[..8]);
            report.warnings.push(format!(
                "source {:?} ({id}) was created as {name:?}: another source has its name",
                m.source_name
            ));
        }
        db::sources::insert(&mut conn, *id, &name, &spec, None)
            .await
            .with_context(|| format!("creating source {name:?}"))?;
        if m.source_spec.is_none() {
            report.warnings.push(format!(
                "source {name:?} was re-created as a directory source at {:?} (its backups predate recorded specs); check it",
                m.root
            ));
        }
        if spec.database.is_some() {
            report.warnings.push(format!(
                "source {name:?} backs up a database: storage holds no password; set it again (POST /api/v1/config/import) before its next backup"
            ));
        }
        report.sources_created.push(name);
    }
    Ok(())
}

/// Adds each missing backup as complete, parents first.
async fn add_backups(
    pool: &PgPool,
    manifests: &[(String, Manifest)],
    report: &mut RebuildReport,
) -> anyhow::Result<()> {
    let mut present: HashSet<String> = HashSet::new();
    for (key, m) in manifests {
        let mut tx = pool.begin().await?;
        if db::backups::get(&mut tx, &m.backup_id).await?.is_some() {
            report.backups_present += 1;
            present.insert(m.backup_id.clone());
            continue;
        }
        if let Some(parent) = m.parent.as_ref().filter(|p| !present.contains(*p)) {
            report.skipped_backups.push(serde_json::json!({
                "backup_id": m.backup_id,
                "error": format!("its parent {parent} is not in storage or could not be read"),
            }));
            continue;
        }
        let id = BackupId::parse(&m.backup_id, "backup_id")
            .map_err(|e| anyhow::anyhow!("manifest {key}: {}", e.message))?;
        let requested = BackupType::parse(&m.requested_type)
            .map_err(|e| anyhow::anyhow!("manifest {key}: {}", e.message))?;
        db::backups::insert_pending(&mut tx, &id, m.source_id, requested).await?;
        db::backups::mark_complete(&mut tx, &m.backup_id, &m.completion(key.clone())?).await?;
        sqlx::query("UPDATE backups SET created_at = $2, completed_at = $3 WHERE id = $1")
            .bind(&m.backup_id)
            .bind(m.created_at)
            .bind(m.completed_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        present.insert(m.backup_id.clone());
        report.backups_added += 1;
    }
    Ok(())
}

/// Indexes every pack the index lacks, from its trailer.
async fn index_packs(
    repo: &Repository,
    pool: &PgPool,
    report: &mut RebuildReport,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let known: HashSet<String> = db::chunks::all_packs(&mut conn)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    drop(conn);
    for meta in repo.storage.list("packs/").await? {
        let Some(id) = meta.key.rsplit('/').next().map(str::to_string) else {
            continue;
        };
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if known.contains(&id) {
            report.packs_present += 1;
            continue;
        }
        let entries = match repo.storage.get(&pack_key(&id)).await {
            Ok(bytes) => read_trailer(&bytes, repo.codec().cipher()),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                report.unreadable.push(serde_json::json!({
                    "key": meta.key, "error": format!("{e:#}"),
                }));
                continue;
            }
        };
        let rows: Vec<_> = entries.iter().map(|e| e.row(&id)).collect();
        let mut conn = pool.acquire().await?;
        db::chunks::insert_pack(&mut conn, &id, meta.size as i64, &rows).await?;
        report.packs_indexed += 1;
        report.chunks_indexed += rows.len() as u64;
    }
    Ok(())
}
