//! The restore job: rebuild a backup's tree in a staging directory beside the target,
//! then swap it in. A failed restore leaves the live target as it was.

use std::path::{Path, PathBuf};
use strata_core::errors::ErrorCode;

use anyhow::Context;
use chrono::Utc;
use futures::TryStreamExt;
use std::sync::Arc;
use strata_catalog as db;
use strata_core::model::{
    sqlite_files, BackupId, BackupPayload, BackupType, DatabaseSpec, RestorePayload, SourceSpec,
};

use strata_engine::paths::resolve;
use strata_engine::repo::chain::{load_chain, removed_between, resolve as resolve_chain, Removed};
use strata_engine::repo::manifest::DatabasePart;
use strata_engine::repo::reader::{stream_chunks, ChunkReader};
use strata_engine::repo::restore::{
    included, remove_all, restore_into, staging_path, swap_into_place, sync_filesystem,
};
use strata_engine::repo::writer::compile_excludes;
use tokio::io::AsyncWriteExt;

use strata_jobs::results::{JobOutput, RestoreResult};

use super::{JobContext, JobError, JobResult, Outcome};
use crate::databases::{postgres, sqlite};

mod keep;

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: RestorePayload) -> JobResult<Outcome> {
    let backup = super::complete_backup(ctx, &payload.backup_id).await?;
    let mut conn = ctx.pool.acquire().await?;
    let source = db::sources::get(&mut conn, payload.source_id)
        .await?
        .ok_or_else(|| {
            JobError::permanent(ErrorCode::SourceNotFound, "the source no longer exists")
        })?;
    drop(conn);
    let manifest = ctx.repo.get_manifest(&backup.id).await?;
    let do_files = manifest.has_files && payload.include_files != Some(false);
    let database = manifest
        .database
        .clone()
        .filter(|_| payload.include_database != Some(false));
    if !do_files && database.is_none() {
        return Err(JobError::permanent(
            ErrorCode::NothingToRestore,
            "the restore includes neither files nor a database this backup holds",
        ));
    }
    // An SQLite file that lives inside the directory travels with it.
    let inside = database
        .as_ref()
        .and_then(|d| d.inside_files.clone())
        .filter(|_| do_files && payload.database_target.is_none())
        .map(PathBuf::from);

    // Where the files go, judged where it really lands (every symlink followed): never
    // Strata's own storage or a system directory. `given` is what was asked for.
    let files_target = if do_files {
        let given = match payload.target.clone() {
            Some(t) => t,
            None => source
                .spec
                .0
                .files
                .as_ref()
                .map(|f| f.path.clone())
                .ok_or_else(|| {
                    JobError::permanent(ErrorCode::NoTarget, "the source has no path to restore to")
                })?,
        };
        let real = ctx.allowed_target(&given)?;
        check_parent(&real)?;
        Some((given, real))
    } else {
        None
    };
    // A restore into the live source's directory (under any name) keeps what backups
    // leave out.
    let over_source = match (&files_target, &source.spec.0.files) {
        (Some((_, real)), Some(f)) => {
            payload.target.is_none() || resolve(&f.path).is_ok_and(|p| p == *real)
        }
        _ => false,
    };

    let mut warnings = Vec::new();
    if let Some(id) = &payload.pre_restore_backup_id {
        let live = files_target
            .as_ref()
            .map(|(_, real)| real.clone())
            .or_else(|| sqlite_target(&source.spec.0, &payload, database.as_ref()));
        if let Some(w) = pre_restore_backup(ctx, &payload, id, live.as_deref()).await? {
            warnings.push(w);
        }
    }

    // 1. Prepare every part beside its target; nothing live is touched yet.
    let mut staging = None;
    let mut files_stats = None;
    let mut chain_ids = vec![backup.id.clone()];
    let mut chain = Vec::new();
    if let Some((given, real)) = &files_target {
        // Checked again right before anything is written beside it.
        recheck_target(ctx, given, real)?;
        let target = real;
        let dir = staging_path(target, &ctx.job_id.to_string())?;
        // A previous attempt of this job may have left its staging directory behind.
        remove_all(&dir).context("clearing an earlier attempt's staging directory")?;
        chain = load_chain(&ctx.repo, manifest.clone()).await?;
        chain_ids = chain.iter().map(|m| m.backup_id.clone()).collect();
        if payload.include.is_empty() {
            check_free_space(target, manifest.stats.logical_size)?;
        }
        // Replacing live data (deleted after the swap) needs the new tree on disk first;
        // a restore into a new directory destroys nothing, so it skips the flush.
        let replaces_live_data = std::fs::symlink_metadata(target).is_ok();
        let restored = restore_into(
            &ctx.repo,
            &ctx.index,
            &chain,
            &payload.include,
            &dir,
            replaces_live_data,
            ctx.progress.clone(),
            ctx.cancel.clone(),
        )
        .await;
        match restored {
            Ok(stats) => files_stats = Some(stats),
            Err(e) => {
                clean_dir(&dir);
                return Err(disk_full(e, target));
            }
        }
        staging = Some(dir);
    }
    let prepared = match &database {
        Some(part) => {
            let place = match (&inside, &staging) {
                (Some(rel), Some(dir)) => DbPlace::Inside(dir.join(rel)),
                _ => DbPlace::Own,
            };
            match prepare_database(
                ctx,
                &source.spec.0,
                &source.secrets(),
                &payload,
                part,
                place,
            )
            .await
            {
                Ok(p) => Some(p),
                Err(e) => {
                    if let Some(dir) = &staging {
                        clean_dir(dir);
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    // Over the live source: what no backup holds is carried into the staging tree, and
    // what the pre-restore backup holds but this restore does not is listed.
    let mut kept = serde_json::Value::Null;
    let mut removed = serde_json::Value::Null;
    if let (Some(dir), Some((_, target)), true) = (&staging, &files_target, over_source) {
        let carried = async {
            // A files-only restore over a directory that holds the live SQLite database
            // keeps that database (hard links: the same files, whatever is written
            // meanwhile).
            let sqlite_rel = source.spec.0.sqlite_inside_files();
            if let (Some(rel), None) = (&sqlite_rel, &database) {
                carry_over(&target.join(rel), &dir.join(rel))?;
            }
            if std::fs::symlink_metadata(target).is_err() {
                return Ok(());
            }
            let excludes = compile_excludes(
                &source
                    .spec
                    .0
                    .files
                    .as_ref()
                    .map(|f| f.exclude.clone())
                    .unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("the source's exclude patterns: {e}"))?;
            let skip: Vec<PathBuf> = sqlite_rel
                .iter()
                .flat_map(|rel| sqlite_files(rel))
                .collect();
            let (live, staged) = (target.clone(), dir.clone());
            let k = tokio::task::spawn_blocking(move || {
                keep::keep_unbacked(&live, &staged, &excludes, &skip)
            })
            .await??;
            if k.count > 0 {
                sync_filesystem(dir)?;
                warnings.push(serde_json::json!({
                    "code": ErrorCode::KeptUnbacked,
                    "message": format!(
                        "{} path(s) of the live directory that no backup holds (excluded by the source's \
                         patterns, or special files) were kept; see the result's `kept`",
                        k.count
                    ),
                }));
            }
            warnings.extend(k.warnings.iter().cloned());
            kept = serde_json::json!({
                "count": k.count,
                "paths": k.paths,
                "truncated": k.truncated,
            });
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if let Err(e) = carried {
            clean_dir(dir);
            if let Some(p) = &prepared {
                p.discard().await;
            }
            return Err(e
                .context("keeping what no backup holds; nothing was changed")
                .into());
        }
        if let Some(pre) = &payload.pre_restore_backup_id {
            match removed_since(ctx, pre, &chain, &payload.include).await {
                Ok(Some(r)) => {
                    removed = serde_json::json!({
                        "count": r.count,
                        "paths": r.paths,
                        "truncated": r.truncated,
                        "pre_restore_backup_id": pre,
                    })
                }
                Ok(None) => {}
                Err(e) => warnings.push(serde_json::json!({
                    "code": ErrorCode::RemovedUnknown,
                    "message": format!(
                        "could not list what this restore removes (the pre-restore backup {pre} holds it): {e:#}"
                    ),
                })),
            }
        }
    }
    // Last check before the swap: the target must still land where it was judged to.
    if let Some((given, real)) = &files_target {
        if let Err(e) = recheck_target(ctx, given, real) {
            if let Some(dir) = &staging {
                clean_dir(dir);
            }
            if let Some(p) = &prepared {
                p.discard().await;
            }
            return Err(e);
        }
    }

    // The last moment a cancel (or a stopping worker) can leave everything as it was.
    if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(p) = &prepared {
            p.discard().await;
        }
        if let Some(dir) = &staging {
            clean_dir(dir);
        }
        return Err(strata_engine::repo::progress::Stopped.into());
    }
    // 2. Swap: the database first (it can be refused), then the directory.
    ctx.progress.set_phase("swapping");
    let mut database_result = serde_json::Value::Null;
    let mut previous = None;
    if let Some(p) = &prepared {
        match p.swap(ctx).await {
            Ok((report, prev)) => {
                database_result = report;
                previous = prev;
            }
            Err(e) => {
                p.discard().await;
                if let Some(dir) = &staging {
                    clean_dir(dir);
                }
                return Err(e);
            }
        }
    }
    if let (Some(dir), Some((_, target))) = (&staging, &files_target) {
        swap_into_place(dir, target)?;
    }
    // 3. The replaced database goes last, when everything else has succeeded.
    if let (Some(p), Some(prev)) = (&prepared, previous) {
        if let Some(w) = p
            .finish_previous(&prev, payload.keep_previous_database)
            .await
        {
            warnings.push(w);
        }
        if payload.keep_previous_database {
            database_result["previous_database"] = serde_json::json!(prev);
        }
    }
    let stats = files_stats.unwrap_or_default();
    Ok(Outcome {
        result: JobOutput::Restore(RestoreResult {
            backup_id: backup.id,
            chain: chain_ids,
            include: payload.include,
            target: files_target.map(|(_, real)| real.display().to_string()),
            files: stats.files,
            dirs: stats.dirs,
            symlinks: stats.symlinks,
            bytes: stats.bytes,
            database: database_result,
            pre_restore_backup_id: payload.pre_restore_backup_id.map(|b| b.to_string()),
            kept,
            removed: serde_json::to_value(removed)?,
        }),
        warnings,
        backup: None,
    })
}

/// Judges the target again: it must still land where it did (a symlink on the way may
/// have been changed meanwhile).
fn recheck_target(ctx: &JobContext, given: &Path, real: &Path) -> JobResult<()> {
    let now = ctx.allowed_target(given)?;
    if now != real {
        return Err(JobError::permanent(
            ErrorCode::TargetChanged,
            format!(
                "the target {} resolved to {} when the job started and now to {}: a symlink on the \
                 way changed; nothing was restored",
                given.display(),
                real.display(),
                now.display()
            ),
        ));
    }
    Ok(())
}

/// What the pre-restore backup `pre` holds that the restored tree (`chain`, limited to
/// `include`) does not: what the swap removes. `None` when there is no such backup.
async fn removed_since(
    ctx: &JobContext,
    pre: &BackupId,
    chain: &[strata_engine::repo::manifest::Manifest],
    include: &[PathBuf],
) -> anyhow::Result<Option<Removed>> {
    let mut conn = ctx.pool.acquire().await?;
    let row = db::backups::get(&mut conn, pre.as_str()).await?;
    drop(conn);
    if row.is_none_or(|r| r.status != "complete") {
        return Ok(None);
    }
    let before = load_chain(&ctx.repo, ctx.repo.get_manifest(pre.as_str()).await?).await?;
    let reader = Arc::new(ChunkReader::new(ctx.repo.clone(), ctx.index.clone()));
    let handle = tokio::runtime::Handle::current();
    let before = resolve_chain(reader.clone(), handle.clone(), &before);
    let include = include.to_vec();
    let after = resolve_chain(reader, handle, chain).filter(move |item| match item {
        Ok((path, _)) => included(path, &include),
        Err(_) => true,
    });
    let removed =
        tokio::task::spawn_blocking(move || removed_between(before, after, LISTED_PATHS)).await??;
    Ok(Some(removed))
}

/// How many paths a result lists (with a count and `truncated` for the rest).
const LISTED_PATHS: usize = 100;

fn check_parent(target: &Path) -> JobResult<()> {
    let parent = target.parent().ok_or_else(|| {
        JobError::permanent(
            ErrorCode::InvalidTarget,
            "the target has no parent directory",
        )
    })?;
    if !parent.is_dir() {
        return Err(JobError::permanent(
            ErrorCode::TargetParentMissing,
            format!(
                "the target's parent directory {} does not exist",
                parent.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a restore that cannot fit: the new tree is written beside the target before
/// it replaces the old one, so its whole size must be free there.
fn check_free_space(target: &Path, needed: u64) -> JobResult<()> {
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let Some(free) = free_bytes(parent) else {
        return Ok(());
    };
    if needed > free {
        return Err(JobError::permanent(
            ErrorCode::TargetDiskFull,
            format!(
                "the restore needs {needed} bytes free beside {} (the new tree is written there \
                 before it replaces the old one) but {} has {free}; nothing was changed",
                target.display(),
                parent.display()
            ),
        ));
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// A write that failed for lack of space (or quota) is a permanent, clearly named
/// failure: trying again cannot help, and the target was not touched.
fn disk_full(e: anyhow::Error, target: &Path) -> JobError {
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
    });
    if !full {
        return e.into();
    }
    JobError::permanent(
        ErrorCode::TargetDiskFull,
        format!(
            "the disk beside {} filled up while the backup was restored there; the target \
             was not changed and the partial copy was removed ({e:#})",
            target.display()
        ),
    )
}

fn clean_dir(dir: &Path) {
    if let Err(clean) = remove_all(dir) {
        tracing::warn!(error = %format!("{clean:#}"), "could not remove the staging directory");
    }
}

/// Hard-links a live SQLite database (and its journals) into the staging tree.
fn carry_over(live: &Path, staged: &Path) -> anyhow::Result<()> {
    for (from, to) in sqlite_files(live).iter().zip(sqlite_files(staged)) {
        match std::fs::hard_link(from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("keeping the live database {}", from.display()))
            }
        }
    }
    Ok(())
}

/// Where an SQLite database part is restored: `database_target`, else the source's file,
/// else where it was.
fn sqlite_target(
    spec: &SourceSpec,
    payload: &RestorePayload,
    part: Option<&DatabasePart>,
) -> Option<PathBuf> {
    let part = part.filter(|p| p.engine == "sqlite")?;
    if let Some(t) = &payload.database_target {
        return Some(PathBuf::from(t));
    }
    match &spec.database {
        Some(DatabaseSpec::Sqlite(s)) => Some(s.path.clone()),
        _ => Some(PathBuf::from(&part.name)),
    }
}

/// Where an SQLite file is written: inside the files' staging tree, or beside its own
/// target.
enum DbPlace {
    Inside(PathBuf),
    Own,
}

/// A database part restored beside its target and checked, waiting for the swap.
enum Prepared {
    /// Written into the files' staging tree: the directory swap puts it in place.
    SqliteInside { report: serde_json::Value },
    Sqlite {
        temp: PathBuf,
        target: PathBuf,
        report: serde_json::Value,
    },
    Postgres {
        server: postgres::Target,
        restored: String,
        live: String,
        report: serde_json::Value,
    },
}

async fn prepare_database(
    ctx: &JobContext,
    spec: &SourceSpec,
    secrets: &strata_core::model::PostgresSecrets,
    payload: &RestorePayload,
    part: &DatabasePart,
    place: DbPlace,
) -> JobResult<Prepared> {
    ctx.progress.set_phase("restoring the database");
    let job = ctx.job_id.simple().to_string();
    match part.engine.as_str() {
        "sqlite" => {
            let (temp, target) = match place {
                DbPlace::Inside(path) => (path, None),
                DbPlace::Own => {
                    let target =
                        sqlite_target(spec, payload, Some(part)).context("no SQLite target")?;
                    let target = ctx.allowed_target(&target)?;
                    check_parent(&target)?;
                    (staging_path(&target, &job)?, Some(target))
                }
            };
            // Writing the file inside the restored tree must not change its directory's
            // recorded time.
            let dir_time = target
                .is_none()
                .then(|| temp.parent().and_then(|d| std::fs::metadata(d).ok()))
                .flatten()
                .map(|md| filetime::FileTime::from_last_modification_time(&md));
            let check = write_sqlite(ctx, part, &temp).await?;
            if let (Some(t), Some(dir)) = (dir_time, temp.parent()) {
                filetime::set_file_mtime(dir, t)
                    .with_context(|| format!("setting the time of {}", dir.display()))?;
            }
            let report = serde_json::json!({
                "engine": "sqlite",
                "target": target.as_ref().map(|t| t.display().to_string()),
                "integrity_check": check.integrity,
                "tables": check.tables,
            });
            Ok(match target {
                None => Prepared::SqliteInside { report },
                Some(target) => Prepared::Sqlite {
                    temp,
                    target,
                    report,
                },
            })
        }
        "postgres" => {
            let Some(DatabaseSpec::Postgres(pg)) = &spec.database else {
                return Err(JobError::permanent(
                    ErrorCode::NoDatabaseConnection,
                    "the source no longer has a PostgreSQL connection to restore through",
                ));
            };
            let server = postgres::Target::of_source(pg, secrets)?;
            let live = payload
                .database_target
                .clone()
                .unwrap_or_else(|| server.database.clone());
            let restored = postgres::derived_name("strata_restore_", &job[..16]);
            let report = load_postgres(ctx, &server, part, &restored).await?;
            Ok(Prepared::Postgres {
                server,
                restored,
                live,
                report,
            })
        }
        other => Err(JobError::permanent(
            ErrorCode::UnsupportedDatabase,
            format!("this worker cannot restore a {other} database"),
        )),
    }
}

/// Writes an SQLite database part to `path` and checks it; removes it if it fails.
pub(super) async fn write_sqlite(
    ctx: &JobContext,
    part: &DatabasePart,
    path: &Path,
) -> JobResult<sqlite::Check> {
    let written = async {
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        let chunks = stream_chunks(&ctx.repo, &ctx.index, part.chunks.clone());
        futures::pin_mut!(chunks);
        let mut size = 0u64;
        while let Some(block) = chunks.try_next().await? {
            if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(strata_engine::repo::progress::Stopped.into());
            }
            file.write_all(&block)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            size += block.len() as u64;
            ctx.progress
                .bytes_done
                .fetch_add(block.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        file.sync_all().await?;
        if size != part.size {
            anyhow::bail!(
                "restored {size} bytes of the database but the backup recorded {}",
                part.size
            );
        }
        let (p, tables) = (path.to_path_buf(), part.tables.clone());
        tokio::task::spawn_blocking(move || sqlite::check(&p, &tables)).await?
    }
    .await;
    match written {
        Ok(check) if check.ok => Ok(check),
        Ok(check) => {
            remove_sqlite(path);
            Err(JobError::permanent_with(ErrorCode::RestoreCheckFailed,
                format!(
                    "the restored SQLite database fails its checks (integrity_check: {}); nothing was replaced",
                    check.integrity
                ),
                serde_json::to_value(&check)?,
            ))
        }
        Err(e) => {
            remove_sqlite(path);
            Err(e.into())
        }
    }
}

fn remove_sqlite(path: &Path) {
    for p in sqlite_files(path) {
        let _ = std::fs::remove_file(p);
    }
}

/// Loads a PostgreSQL dump into a new database `name` and checks its tables; drops it
/// again if anything fails.
pub(super) async fn load_postgres(
    ctx: &JobContext,
    server: &postgres::Target,
    part: &DatabasePart,
    name: &str,
) -> JobResult<serde_json::Value> {
    let settings: Option<postgres::DatabaseSettings> = part
        .settings
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    ctx.progress
        .bytes_total
        .fetch_add(part.size, std::sync::atomic::Ordering::Relaxed);
    let chunks = stream_chunks(&ctx.repo, &ctx.index, part.chunks.clone());
    let started = std::time::Instant::now();
    let loaded = postgres::load(server, name, settings.as_ref(), chunks, &ctx.progress).await;
    let checked = match loaded {
        Ok(()) => postgres::check_tables(&server.with_database(name), &part.tables).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok((true, tables)) => Ok(serde_json::json!({
            "engine": "postgres",
            "tables": tables,
            "load_seconds": started.elapsed().as_secs_f64(),
        })),
        Ok((false, tables)) => {
            let _ = postgres::drop_database(server, name).await;
            Err(JobError::permanent_with(ErrorCode::RestoreCheckFailed,
                "the restored database's tables do not match the backup's record; nothing was replaced",
                serde_json::json!({ "engine": "postgres", "tables": tables }),
            ))
        }
        Err(e) => {
            let _ = postgres::drop_database(server, name).await;
            Err(e)
        }
    }
}

impl Prepared {
    /// Puts the prepared database in place; returns its report and, for PostgreSQL, the
    /// name the replaced database now has.
    async fn swap(&self, _ctx: &JobContext) -> JobResult<(serde_json::Value, Option<String>)> {
        match self {
            Prepared::SqliteInside { report } => Ok((report.clone(), None)),
            Prepared::Sqlite {
                temp,
                target,
                report,
            } => {
                let (t, g) = (temp.clone(), target.clone());
                tokio::task::spawn_blocking(move || sqlite::replace(&t, &g)).await??;
                Ok((report.clone(), None))
            }
            Prepared::Postgres {
                server,
                restored,
                live,
                report,
            } => {
                let mut report = report.clone();
                report["database"] = serde_json::json!(live);
                if postgres::exists(server, live).await? {
                    let stamp = Utc::now().format("%Y%m%d_%H%M%S").to_string();
                    let previous = postgres::derived_name(live, &format!("_before_{stamp}"));
                    postgres::swap(server, restored, live, &previous).await?;
                    Ok((report, Some(previous)))
                } else {
                    postgres::swap_into_new(server, restored, live).await?;
                    Ok((report, None))
                }
            }
        }
    }

    /// Removes what a failed swap left beside the target.
    async fn discard(&self) {
        match self {
            Prepared::SqliteInside { .. } => {}
            Prepared::Sqlite { temp, .. } => remove_sqlite(temp),
            Prepared::Postgres {
                server, restored, ..
            } => {
                if let Err(e) = postgres::drop_database(server, restored).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not drop the restored database");
                }
            }
        }
    }

    /// Drops the replaced PostgreSQL database, or opens it again when it is kept.
    async fn finish_previous(&self, previous: &str, keep: bool) -> Option<serde_json::Value> {
        let Prepared::Postgres { server, .. } = self else {
            return None;
        };
        let done = if keep {
            postgres::reopen(server, previous).await
        } else {
            postgres::drop_database(server, previous).await
        };
        done.err().map(|e| {
            serde_json::json!({
                "code": ErrorCode::PreviousDatabaseLeft,
                "message": format!("the replaced database is kept as {previous}: {e:#}"),
            })
        })
    }
}

/// Backs up the source's current state before the restore overwrites it, and records
/// that backup complete at once (its manifest is in storage): it stays even when the
/// restore then fails. A target that does not exist has nothing to keep: the pending
/// row is removed and a warning says so. If the backup fails, the restore does not run.
async fn pre_restore_backup(
    ctx: &JobContext,
    payload: &RestorePayload,
    id: &BackupId,
    target: Option<&Path>,
) -> JobResult<Option<serde_json::Value>> {
    let mut conn = ctx.pool.acquire().await?;
    let row = db::backups::get(&mut conn, id.as_str()).await?;
    match row.as_ref().map(|r| r.status.as_str()) {
        // An earlier attempt of this job already took it (or it is gone).
        Some("complete") | None => return Ok(None),
        _ => {}
    }
    // A PostgreSQL database is backed up whatever the files target (`None` here).
    if let Some(target) = target.filter(|t| std::fs::symlink_metadata(t).is_err()) {
        sqlx::query("DELETE FROM backups WHERE id = $1 AND status = 'pending'")
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
        return Ok(Some(serde_json::json!({
            "code": ErrorCode::NoPreRestoreBackup,
            "message": format!("{} does not exist: there was nothing to back up before restoring", target.display()),
        })));
    }
    drop(conn);
    ctx.progress.set_phase("pre_restore_backup");
    let backup = BackupPayload {
        backup_id: id.clone(),
        source_id: payload.source_id,
        // A full: the safety net must not depend on backups a later delete could remove.
        backup_type: BackupType::Full,
        include_files: None,
        include_database: None,
    };
    match super::backup::run(ctx, backup).await {
        Ok(outcome) => {
            let mut conn = ctx.pool.acquire().await?;
            if let Some((backup_id, completion)) = &outcome.backup {
                db::backups::mark_complete(&mut conn, backup_id, completion).await?;
            }
            tracing::info!(backup_id = %id, "pre-restore backup complete");
            Ok(None)
        }
        Err(e) => {
            if !e.is_stopped() {
                let mut conn = ctx.pool.acquire().await?;
                db::backups::mark_failed(&mut conn, id.as_str()).await?;
            }
            Err(e.context("the pre-restore backup failed; nothing was restored"))
        }
    }
}
