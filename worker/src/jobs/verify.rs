//! The verify job: read every pack a backup's chain needs and check every chunk.

use strata_catalog as db;
use strata_core::errors::ErrorCode;
use strata_core::model::{DatabaseSpec, VerifyMode, VerifyPayload};
use strata_engine::repo::manifest::Manifest;
use strata_engine::repo::restore::restore_into;

use crate::databases::postgres;
use strata_engine::repo::chain::load_chain;
use strata_engine::repo::verify::verify;

use strata_jobs::results::{JobOutput, VerifyResult};

use super::{JobContext, JobError, JobResult, Outcome};

#[tracing::instrument(skip_all, fields(job_id = %ctx.job_id, backup_id = %payload.backup_id))]
pub async fn run(ctx: &JobContext, payload: VerifyPayload) -> JobResult<Outcome> {
    let backup = super::complete_backup(ctx, &payload.backup_id).await?;
    let manifest = match ctx.repo.get_manifest(&backup.id).await {
        Ok(m) => m,
        Err(e) => {
            return Err(JobError::permanent_with(
                ErrorCode::BackupDamaged,
                format!("the manifest of backup {} cannot be read: {e:#}", backup.id),
                serde_json::json!({ "backup_id": backup.id, "ok": false }),
            ))
        }
    };
    let chain = load_chain(&ctx.repo, manifest).await?;
    if payload.mode == VerifyMode::Restore {
        return drill(ctx, &backup.source_id, chain).await;
    }
    let report = verify(
        &ctx.repo,
        &ctx.index,
        &chain,
        ctx.progress.clone(),
        ctx.cancel.clone(),
    )
    .await?;
    let json = serde_json::to_value(&report)?;
    if !report.ok {
        let files: usize = report.problems.iter().map(|p| p.files_affected).sum();
        return Err(JobError::permanent_with(ErrorCode::BackupDamaged,
            format!(
                "backup {} is damaged: {} problem(s) affecting {files} file(s); see the job's result",
                backup.id,
                report.problems.len()
            ),
            json,
        ));
    }
    Ok(Outcome::of(JobOutput::Verify(VerifyResult(json))))
}

/// A restore drill: the backup restored into scratch targets (a temporary directory, a
/// temporary SQLite file, a temporary PostgreSQL database on the source's server), each
/// checked, then removed. Nothing live is touched.
async fn drill(
    ctx: &JobContext,
    source_id: &uuid::Uuid,
    chain: Vec<Manifest>,
) -> JobResult<Outcome> {
    let started = std::time::Instant::now();
    let last = chain.last().expect("a chain has its backup").clone();
    let mut ok = true;
    let mut report = serde_json::json!({
        "mode": "restore",
        "backup_id": last.backup_id,
        "chain": chain.iter().map(|m| m.backup_id.clone()).collect::<Vec<_>>(),
    });
    let scratch = tempfile::Builder::new()
        .prefix("strata-drill-")
        .tempdir()
        .map_err(|e| anyhow::anyhow!("creating the drill's scratch directory: {e}"))?;

    if last.has_files {
        let dir = scratch.path().join("files");
        let stats = restore_into(
            &ctx.repo,
            &ctx.index,
            &chain,
            &[],
            &dir,
            false,
            ctx.progress.clone(),
            ctx.cancel.clone(),
        )
        .await;
        let files_ok;
        report["files"] = match stats {
            Ok(stats) => {
                let expected_bytes =
                    last.stats.logical_size - last.database.as_ref().map_or(0, |d| d.size);
                files_ok = stats.files == last.stats.files && stats.bytes == expected_bytes;
                serde_json::json!({
                    "ok": files_ok,
                    "files": stats.files,
                    "expected_files": last.stats.files,
                    "bytes": stats.bytes,
                    "expected_bytes": expected_bytes,
                    "dirs": stats.dirs,
                    "symlinks": stats.symlinks,
                })
            }
            Err(e) if e.is::<strata_engine::repo::progress::Stopped>() => return Err(e.into()),
            Err(e) => {
                files_ok = false;
                serde_json::json!({ "ok": false, "error": format!("{e:#}") })
            }
        };
        ok &= files_ok;
        let _ = strata_engine::repo::restore::remove_all(&dir);
    }

    if let Some(part) = &last.database {
        let db_report = match part.engine.as_str() {
            "sqlite" => {
                let path = scratch.path().join("drill.db");
                match super::restore::write_sqlite(ctx, part, &path).await {
                    Ok(check) => serde_json::json!({
                        "ok": true,
                        "engine": "sqlite",
                        "integrity_check": check.integrity,
                        "tables": check.tables,
                    }),
                    Err(e) => failure_report("sqlite", &e),
                }
            }
            "postgres" => {
                let mut conn = ctx.pool.acquire().await?;
                let source = db::sources::get(&mut conn, *source_id).await?;
                drop(conn);
                let pg = source.as_ref().and_then(|s| match &s.spec.0.database {
                    Some(DatabaseSpec::Postgres(pg)) => Some((pg.clone(), s.secrets())),
                    _ => None,
                });
                match pg {
                    None => serde_json::json!({
                        "ok": false,
                        "engine": "postgres",
                        "error": "the source no longer has a PostgreSQL connection to restore through",
                    }),
                    Some((pg, secret)) => {
                        let server = postgres::Target::of_source(&pg, &secret)?;
                        let job = ctx.job_id.simple().to_string();
                        let name = postgres::derived_name("strata_drill_", &job[..16]);
                        let loaded = super::restore::load_postgres(ctx, &server, part, &name).await;
                        // The scratch database goes whatever happened.
                        let dropped = postgres::drop_database(&server, &name).await;
                        match loaded {
                            Ok(mut r) => {
                                r["ok"] = serde_json::json!(true);
                                r["scratch_database"] = serde_json::json!(name);
                                r["scratch_dropped"] = serde_json::json!(dropped.is_ok());
                                r
                            }
                            Err(e) => failure_report("postgres", &e),
                        }
                    }
                }
            }
            other => {
                serde_json::json!({ "ok": false, "engine": other, "error": "unsupported engine" })
            }
        };
        ok &= db_report["ok"] == serde_json::json!(true);
        report["database"] = db_report;
    }
    report["ok"] = serde_json::json!(ok);
    report["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    drop(scratch);
    if !ok {
        return Err(JobError::permanent_with(
            ErrorCode::RestoreDrillFailed,
            format!(
                "the restore drill of backup {} failed; see the job's result",
                last.backup_id
            ),
            report,
        ));
    }
    Ok(Outcome::of(JobOutput::Verify(VerifyResult(report))))
}

fn failure_report(engine: &str, e: &JobError) -> serde_json::Value {
    let mut r = serde_json::json!({ "ok": false, "engine": engine, "error": e.to_string() });
    if let JobError::Permanent { code, details, .. } = e {
        r["code"] = serde_json::json!(code);
        if let Some(d) = details {
            r["details"] = d.clone();
        }
    }
    r
}
