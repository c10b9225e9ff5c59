//! Verifying a backup: read every pack its chain needs, check every chunk, and report a
//! damaged or missing pack with the files it affects.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use strata_core::errors::ErrorCode;

use anyhow::Context;
use serde::Serialize;

use super::format::ChunkId;
use super::index::DynIndex;
use super::manifest::Manifest;
use super::pack::pack_key;
use super::progress::{CancelFlag, Progress, Stopped};
use super::reader::{ChunkReader, Location};
use super::tree::EntryKind;
use super::Repository;
use strata_storage::StorageError;

/// How many file names a problem lists (the count is always exact).
const FILES_PER_PROBLEM: usize = 100;

/// One thing found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `pack_missing`, `pack_damaged`, `chunk_missing`, `entry_list_damaged`.
    pub code: ErrorCode,
    pub pack: Option<String>,
    pub message: String,
    pub chunks: usize,
    pub files_affected: usize,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub backup_id: String,
    pub chain: Vec<String>,
    pub ok: bool,
    pub files: u64,
    pub chunks_checked: u64,
    pub packs_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem>,
}

/// Checks the last backup of `chain`.
#[tracing::instrument(skip_all, fields(backup_id = %chain.last().map(|m| m.backup_id.as_str()).unwrap_or_default()))]
pub async fn verify(
    repo: &Repository,
    index: &DynIndex,
    chain: &[Manifest],
    progress: Arc<Progress>,
    cancel: CancelFlag,
) -> anyhow::Result<VerifyReport> {
    let last = chain.last().context("empty backup chain")?;
    let mut report = VerifyReport {
        backup_id: last.backup_id.clone(),
        chain: chain.iter().map(|m| m.backup_id.clone()).collect(),
        ok: true,
        files: 0,
        chunks_checked: 0,
        packs_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
    };
    progress.set_phase("reading entry lists");
    let reader = Arc::new(ChunkReader::new(repo.clone(), index.clone()));
    // Which files need which chunk. Reading the entry lists also checks them.
    let entries = super::chain::resolve(reader.clone(), tokio::runtime::Handle::current(), chain);
    let resolve_cancel = cancel.clone();
    let database = last.database.clone();
    let (needed, files, list_error) = tokio::task::spawn_blocking(move || {
        let mut needed: HashMap<ChunkId, Vec<String>> = HashMap::new();
        if let Some(db) = &database {
            let name = format!("database {} ({})", db.name, db.engine);
            for c in &db.chunks {
                needed.entry(*c).or_default().push(name.clone());
            }
        }
        let mut files = 0u64;
        for item in entries {
            if resolve_cancel.load(Ordering::Relaxed) {
                break;
            }
            match item {
                Ok((_, e)) if e.kind == EntryKind::File => {
                    files += 1;
                    let name = e.path.display();
                    for c in &e.chunks {
                        needed.entry(*c).or_default().push(name.clone());
                    }
                }
                Ok(_) => {}
                Err(e) => return (needed, files, Some(format!("{e:#}"))),
            }
        }
        (needed, files, None)
    })
    .await?;
    if cancel.load(Ordering::Relaxed) {
        return Err(Stopped.into());
    }
    report.files = files;
    if let Some(message) = list_error {
        report.problems.push(Problem {
            code: ErrorCode::EntryListDamaged,
            pack: None,
            message: format!("the backup's list of files cannot be read, so no file of it can be restored: {message}"),
            chunks: 0,
            files_affected: 0,
            files: Vec::new(),
        });
    }

    // Where every chunk lives, grouped by pack.
    let ids: Vec<ChunkId> = needed.keys().copied().collect();
    let mut by_pack: BTreeMap<String, Vec<(ChunkId, Location)>> = BTreeMap::new();
    let mut unindexed = Vec::new();
    for batch in ids.chunks(5000) {
        let found = reader.locate(batch).await?;
        for id in batch {
            match found.get(id) {
                Some(loc) => by_pack
                    .entry(loc.pack_id.clone())
                    .or_default()
                    .push((*id, loc.clone())),
                None => unindexed.push(*id),
            }
        }
    }
    let affected = |chunks: &[ChunkId]| {
        let mut names: Vec<String> = chunks
            .iter()
            .flat_map(|c| needed.get(c).into_iter().flatten().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    if !unindexed.is_empty() {
        let names = affected(&unindexed);
        report.problems.push(Problem {
            code: ErrorCode::ChunkMissing,
            pack: None,
            message: format!("{} chunks are in no pack of the index", unindexed.len()),
            chunks: unindexed.len(),
            files_affected: names.len(),
            files: names.into_iter().take(FILES_PER_PROBLEM).collect(),
        });
    }

    progress.set_phase("checking packs");
    let total: u64 = by_pack
        .values()
        .flatten()
        .map(|(_, l)| l.length as u64)
        .sum();
    progress.bytes_total.store(total, Ordering::Relaxed);
    progress.files_total.store(files, Ordering::Relaxed);
    let codec = repo.codec().clone();
    for (pack_id, chunks) in by_pack {
        if cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        let pack = match repo.storage.get(&pack_key(&pack_id)).await {
            Ok(p) => p,
            Err(StorageError::NotFound(_)) => {
                let ids: Vec<ChunkId> = chunks.iter().map(|(c, _)| *c).collect();
                let names = affected(&ids);
                report.problems.push(Problem {
                    code: ErrorCode::PackMissing,
                    pack: Some(pack_id.clone()),
                    message: format!("pack {pack_id} is missing from storage"),
                    chunks: ids.len(),
                    files_affected: names.len(),
                    files: names.into_iter().take(FILES_PER_PROBLEM).collect(),
                });
                continue;
            }
            Err(e) => return Err(anyhow::Error::from(e).context(format!("reading pack {pack_id}"))),
        };
        report.packs_checked += 1;
        let checked = {
            let pack = pack.clone();
            let chunks = chunks.clone();
            let codec = codec.clone();
            tokio::task::spawn_blocking(move || {
                let mut bad = Vec::new();
                for (id, loc) in &chunks {
                    let end = loc.offset + loc.length;
                    let ok = end <= pack.len()
                        && codec
                            .decode(*id, pack.slice(loc.offset..end), loc.raw_length)
                            .is_ok();
                    if !ok {
                        bad.push(*id);
                    }
                }
                bad
            })
            .await?
        };
        report.chunks_checked += chunks.len() as u64;
        let bytes: u64 = chunks.iter().map(|(_, l)| l.length as u64).sum();
        report.bytes_checked += bytes;
        progress.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        if !checked.is_empty() {
            let names = affected(&checked);
            report.problems.push(Problem {
                code: ErrorCode::PackDamaged,
                pack: Some(pack_id.clone()),
                message: format!(
                    "{} of the {} chunks this backup needs in pack {pack_id} fail their hash check",
                    checked.len(),
                    chunks.len()
                ),
                chunks: checked.len(),
                files_affected: names.len(),
                files: names.into_iter().take(FILES_PER_PROBLEM).collect(),
            });
        }
    }
    progress.files_done.store(files, Ordering::Relaxed);
    report.ok = report.problems.is_empty();
    Ok(report)
}
