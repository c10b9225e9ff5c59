//! The backup job: snapshot a source into the repository, then write its manifest.

use anyhow::Context;
use chrono::Utc;
use std::sync::Arc;
use strata_catalog as db;
use strata_core::errors::ErrorCode;

use strata_core::model::{BackupPayload, BackupType};
use strata_core::model::{DatabaseSpec, SourceSpec};
use strata_engine::repo::chain::{load_chain, resolve};
use strata_engine::repo::format::FORMAT_VERSION;
use strata_engine::repo::manifest::DatabasePart;
use strata_engine::repo::manifest::Manifest;
use strata_engine::repo::reader::ChunkReader;
use strata_engine::repo::writer::{write_snapshot, SnapshotInput, StreamInput, StreamOutput};

use super::{JobContext, JobError, JobResult, Outcome};
use crate::databases::{postgres, sqlite};
use strata_jobs::results::{BackupResult, DatabaseSummary, JobOutput, Stored};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: BackupPayload) -> JobResult<Outcome> {
    let (source, backup) =
        super::source_and_backup(ctx, payload.source_id, &payload.backup_id, "backup").await?;
    let spec = &source.spec.0;
    let files = spec
        .files
        .clone()
        .filter(|_| payload.include_files != Some(false));
    let database = spec
        .database
        .clone()
        .filter(|_| payload.include_database != Some(false));
    if files.is_none() && database.is_none() {
        return Err(JobError::permanent(
            ErrorCode::NothingToBackUp,
            "the backup includes neither the source's files nor its database",
        ));
    }
    // Checked again here: a symlink on the way may have changed since the source was
    // registered, and a walk of /proc would never end.
    if let Some(files) = &files {
        ctx.allowed_source(&files.path, "files.path")?;
        check_directory(&files.path)?;
    }
    if let Some(DatabaseSpec::Sqlite(db)) = &database {
        ctx.allowed_source(&db.path, "database.sqlite")?;
    }

    // The parent: the newest complete backup of any type for an incremental, the newest
    // full for a differential. Without one the backup runs as a full, and says so.
    let mut conn = ctx.pool.acquire().await?;
    let parent_row = match payload.backup_type {
        BackupType::Full => None,
        BackupType::Incremental => {
            db::backups::latest_complete(&mut conn, source.id, false).await?
        }
        BackupType::Differential => {
            db::backups::latest_complete(&mut conn, source.id, true).await?
        }
    };
    drop(conn);
    let parent_chain = match &parent_row {
        Some(row) => {
            let manifest = ctx
                .repo
                .get_manifest(&row.id)
                .await
                .with_context(|| format!("reading the parent backup {}", row.id))?;
            Some(load_chain(&ctx.repo, manifest).await?)
        }
        None => None,
    };
    let effective_type = match parent_chain {
        Some(_) => payload.backup_type,
        None => BackupType::Full,
    };
    let parent_stream = parent_chain
        .as_ref()
        .filter(|_| files.is_some())
        .map(|chain| {
            let reader = Arc::new(ChunkReader::new(ctx.repo.clone(), ctx.index.clone()));
            resolve(reader, tokio::runtime::Handle::current(), chain)
        });
    let mut chain: Vec<String> = parent_chain
        .iter()
        .flatten()
        .map(|m| m.backup_id.clone())
        .collect();
    chain.push(backup.id.clone());

    // The database first: its snapshot is the backup's moment, and the files are read
    // right after it.
    let snapshot_at = Utc::now();
    let (stream, pending) = match &database {
        Some(db) => {
            let (stream, pending) = start_database(ctx, db, &source.secrets()).await?;
            (Some(stream), Some(pending))
        }
        None => (None, None),
    };
    let output = write_snapshot(
        &ctx.repo,
        &ctx.index,
        SnapshotInput {
            root: files.as_ref().map(|f| f.path.clone()),
            exclude: files
                .as_ref()
                .map(|f| f.exclude.clone())
                .unwrap_or_default(),
            // An SQLite file inside the directory is backed up consistently as the
            // database part, never as a file copied while it is written.
            skip: spec.sqlite_inside_files().into_iter().collect(),
            parent: parent_stream,
            stream,
        },
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await?;
    let database_part = match (pending, &output.stream) {
        (Some(pending), Some(dump)) => {
            Some(finish_database(pending, dump, snapshot_at, spec).await?)
        }
        _ => None,
    };

    ctx.progress.set_phase("manifest");
    let parent_id = parent_row.map(|r| r.id);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: backup.id.clone(),
        source_id: source.id,
        source_name: source.name.clone(),
        root: files
            .as_ref()
            .map(|f| f.path.display().to_string())
            .unwrap_or_default(),
        backup_type: effective_type.to_string(),
        requested_type: payload.backup_type.to_string(),
        parent: parent_id.clone(),
        chain: chain.clone(),
        created_at: backup.created_at,
        completed_at: Utc::now(),
        stats: output.stats.clone(),
        tree: output.tree.clone(),
        tree_index: output.tree_index.clone(),
        warnings: output.warnings.clone(),
        has_files: files.is_some(),
        database: database_part.clone(),
        source_spec: Some(spec.without_secrets()),
    };
    // Last checkpoint: a job whose repository session was lost (removed as stale) must
    // not publish a manifest, as garbage collection may have deleted what it references.
    if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(strata_engine::repo::progress::Stopped.into());
    }
    let manifest_key = ctx
        .repo
        .put_manifest(&manifest)
        .await
        .context("writing the manifest")?;
    let completion = manifest.completion(manifest_key)?;
    let s = &output.stats;
    Ok(Outcome {
        result: JobOutput::Backup(BackupResult {
            backup_id: backup.id.clone(),
            source: source.name.clone(),
            backup_type: manifest.backup_type.clone(),
            requested_type: manifest.requested_type.clone(),
            parent: parent_id,
            chain,
            changed_files: s.changed_files,
            unchanged_files: s.unchanged_files,
            deleted: s.deleted,
            stored: stored(s),
            parts: manifest.parts(),
            database: database_part.as_ref().map(|d| DatabaseSummary {
                engine: d.engine.to_string(),
                name: d.name.clone(),
                size: d.size,
                tables: d.tables.len(),
                rows: d.tables.iter().map(|t| t.rows).sum::<u64>(),
                snapshot_at: d.snapshot_at,
                server_version: Some(d.server_version.clone()),
            }),
            retention: None,
        }),
        warnings: completion.warnings.clone(),
        backup: Some((backup.id.clone(), completion)),
    })
}

fn check_directory(path: &std::path::Path) -> JobResult<()> {
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(JobError::permanent(
            ErrorCode::SourceNotADirectory,
            format!("the source path {} is not a directory", path.display()),
        )),
        Err(e) => Err(JobError::permanent(
            ErrorCode::SourceUnreadable,
            format!("the source path {} cannot be read: {e}", path.display()),
        )),
    }
}

/// A database snapshot under way.
enum PendingDatabase {
    Postgres {
        dump: Box<postgres::Dump>,
        target: postgres::Target,
        schemas: Vec<String>,
    },
    Sqlite {
        snapshot: sqlite::Snapshot,
        path: std::path::PathBuf,
        /// Holds the consistent copy while it is read; removed when dropped.
        _scratch: tempfile::TempDir,
    },
}

/// Starts the database's snapshot: `pg_dump` running, or the SQLite copy made.
async fn start_database(
    ctx: &JobContext,
    db: &DatabaseSpec,
    secrets: &strata_core::model::PostgresSecrets,
) -> JobResult<(StreamInput, PendingDatabase)> {
    match db {
        DatabaseSpec::Postgres(pg) => {
            ctx.progress.set_phase("connecting to the database");
            let target = postgres::Target::of_source(pg, secrets)?;
            let (dump, reader) = postgres::start_dump(&target, &pg.schemas).await?;
            let stream = StreamInput {
                reader,
                size_hint: dump.size_hint,
            };
            Ok((
                stream,
                PendingDatabase::Postgres {
                    dump: Box::new(dump),
                    target,
                    schemas: pg.schemas.clone(),
                },
            ))
        }
        DatabaseSpec::Sqlite(spec) => {
            ctx.progress.set_phase("copying the database");
            let scratch = tempfile::Builder::new()
                .prefix("strata-sqlite-")
                .tempdir()
                .context("creating a scratch directory for the SQLite copy")?;
            let copy = scratch.path().join("copy.db");
            let source = spec.path.clone();
            let to = copy.clone();
            let snapshot =
                tokio::task::spawn_blocking(move || sqlite::snapshot(&source, &to)).await??;
            tracing::info!(
                path = %spec.path.display(),
                bytes = snapshot.size,
                took_ms = snapshot.took.as_millis() as u64,
                "SQLite copy made"
            );
            let file = std::fs::File::open(&copy).context("opening the SQLite copy")?;
            Ok((
                StreamInput {
                    reader: Box::new(file),
                    size_hint: snapshot.size,
                },
                PendingDatabase::Sqlite {
                    snapshot,
                    path: spec.path.clone(),
                    _scratch: scratch,
                },
            ))
        }
    }
}

/// Completes the database part once its stream is stored (waits for `pg_dump`).
async fn finish_database(
    pending: PendingDatabase,
    dump: &StreamOutput,
    snapshot_at: chrono::DateTime<Utc>,
    spec: &SourceSpec,
) -> JobResult<DatabasePart> {
    Ok(match pending {
        PendingDatabase::Postgres {
            dump: running,
            target,
            schemas,
        } => {
            let server = running.server.clone();
            let tool = running.tool.clone();
            let settings = running.settings.clone();
            let tables = running.finish().await?;
            DatabasePart {
                engine: "postgres".into(),
                format: "plain-sql".into(),
                name: target.database.clone(),
                schemas,
                inside_files: None,
                size: dump.size,
                chunks: dump.chunks.clone(),
                tables,
                snapshot_at,
                server_version: server.text,
                tool_version: Some(tool.text),
                settings: Some(serde_json::to_value(settings)?),
            }
        }
        PendingDatabase::Sqlite { snapshot, path, .. } => DatabasePart {
            engine: "sqlite".into(),
            format: "sqlite3".into(),
            name: path.display().to_string(),
            schemas: Vec::new(),
            inside_files: spec.sqlite_inside_files().map(|p| p.display().to_string()),
            size: dump.size,
            chunks: dump.chunks.clone(),
            tables: snapshot.tables,
            snapshot_at,
            server_version: sqlite::version(),
            tool_version: None,
            settings: None,
        },
    })
}

/// The figures of a snapshot, as results report them.
pub(super) fn stored(s: &strata_engine::repo::manifest::SnapshotStats) -> Stored {
    Stored {
        files: s.files,
        dirs: s.dirs,
        symlinks: s.symlinks,
        logical_size: s.logical_size,
        read_bytes: s.read_bytes,
        stored_size: s.stored_size,
        reused_bytes: s.reused_bytes,
        new_chunks: s.new_chunks,
        reused_chunks: s.reused_chunks,
    }
}
