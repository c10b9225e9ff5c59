//! `DELETE /api/v1/backup/{id}` and `POST /api/v1/backup/prune`: removing backups
//! without breaking a chain a kept backup depends on; the storage is reclaimed by a job.
//!
//! Both mark the backups `deleting` and record a job in one transaction; the worker
//! deletes manifests and catalog rows, then collects the packs nobody needs.

use std::collections::{HashMap, HashSet};

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use strata_shared::db;
use strata_shared::db::backups::BackupRow;
use strata_shared::db::jobs::NewJob;
use strata_shared::model::{BackupId, DeletePayload, JobKind};
use strata_shared::retention::{decide, Item, Policy, State};
use uuid::Uuid;

use super::backups::enqueue;
use super::jobs::status_url;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// `true`: delete the backups that depend on this one too.
    pub cascade: Option<String>,
}

/// `DELETE /api/v1/backup/{id}[?cascade=true]` → `202` with the delete job.
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> ApiResult<HttpResponse> {
    let cascade = match query.cascade.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "cascade",
                format!("{other:?} is not valid; expected true or false"),
            ))
        }
    };
    let id = path.into_inner();
    let mut tx = state.pool.begin().await?;
    let target = db::backups::lock(&mut tx, std::slice::from_ref(&id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("backup_not_found", format!("no backup {id:?}")))?;
    check_deletable(&target)?;
    let dependents = db::backups::dependents(&mut tx, &id).await?;
    if !dependents.is_empty() && !cascade {
        return Err(ApiError::conflict(
            "backup_has_dependents",
            format!(
                "{} backup(s) need backup {id:?} to be restored; delete with ?cascade=true to delete them too",
                dependents.len()
            ),
        )
        .with("dependents", dependents));
    }
    let mut set = vec![id.clone()];
    set.extend(dependents);
    // Re-check under the row locks: nothing can start using them until we commit.
    let rows = db::backups::lock(&mut tx, &set).await?;
    for row in &rows {
        if row.status == "pending" {
            return Err(ApiError::conflict(
                "backup_not_complete",
                format!("backup {:?} is still being written", row.id),
            )
            .with("backup_id", row.id.clone()));
        }
    }
    let set: Vec<String> = rows
        .into_iter()
        .filter(|r| r.status != "deleting")
        .map(|r| r.id)
        .collect();
    let in_use = in_use(&mut tx, &set).await?;
    if let Some((backup_id, job)) = set.iter().find_map(|b| in_use.get(b).map(|j| (b, j))) {
        return Err(ApiError::conflict(
            "job_in_progress",
            format!(
                "a {} job queued or running needs backup {backup_id:?}; wait for it or cancel it",
                job.1
            ),
        )
        .with("job_id", job.0.to_string())
        .with("job_kind", job.1.clone())
        .with("backup_id", backup_id.clone()));
    }
    db::backups::mark_deleting(&mut tx, &set).await?;
    let job_id = Uuid::now_v7();
    let payload = payload(&set)?;
    enqueue(
        &mut tx,
        NewJob {
            id: job_id,
            kind: JobKind::Delete,
            source_id: Some(target.source_id),
            backup_id: Some(&id),
            payload,
            max_attempts: state.config.job_max_attempts,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%job_id, backup_id = %id, count = set.len(), "delete accepted");
    Ok(HttpResponse::Accepted().json(json!({
        "job_id": job_id,
        "status": "queued",
        "status_url": status_url(job_id),
        "deleted": set,
        "count": set.len(),
    })))
}

/// A backup being deleted or still being written cannot be deleted (again).
fn check_deletable(b: &BackupRow) -> ApiResult<()> {
    match b.status.as_str() {
        "deleting" => Err(ApiError::conflict(
            "backup_being_deleted",
            format!("backup {:?} is already being deleted", b.id),
        )),
        "pending" => Err(ApiError::conflict(
            "backup_not_complete",
            format!(
                "backup {:?} is still being written; cancel its job first",
                b.id
            ),
        )
        .with("backup_id", b.id.clone())),
        _ => Ok(()),
    }
}

/// Backups that queued or running jobs need, with one such job (id, kind): the backups
/// jobs are about (restore, verify…), and each source's newest complete backup (newest
/// full one for a differential) while a backup or restore of that source may build on it.
async fn in_use(
    conn: &mut sqlx::PgConnection,
    backup_ids: &[String],
) -> ApiResult<HashMap<String, (Uuid, String)>> {
    let mut out = HashMap::new();
    for job in db::jobs::active_for_backups(&mut *conn, backup_ids).await? {
        if let Some(b) = job.backup_id {
            out.entry(b).or_insert((job.id, job.kind));
        }
    }
    for job in db::jobs::active_writers(&mut *conn).await? {
        let Some(source_id) = job.source_id else {
            continue;
        };
        let requested = job.payload.0.get("type").and_then(Value::as_str);
        if job.kind == JobKind::Backup.as_str() && requested == Some("full") {
            continue;
        }
        let full_only = requested == Some("differential");
        if let Some(p) = db::backups::latest_complete(&mut *conn, source_id, full_only).await? {
            out.entry(p.id).or_insert((job.id, job.kind.clone()));
        }
    }
    Ok(out)
}

fn payload(ids: &[String]) -> ApiResult<Value> {
    let backup_ids = ids
        .iter()
        .map(|i| BackupId::parse(i, "backup_id"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::to_value(DeletePayload { backup_ids }).map_err(anyhow::Error::from)?)
}

/// The policy fields of a prune request.
const POLICY_FIELDS: [&str; 6] = [
    "keep_last",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "retention_days",
];

/// A parsed prune request.
#[derive(Debug, Default)]
struct PruneRequest {
    source: Option<String>,
    policy: Policy,
    dry_run: bool,
}

/// Parses the body by hand, so a bad value is a `400` naming its field.
fn parse_prune(body: &[u8]) -> ApiResult<PruneRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PruneRequest::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    let mut req = PruneRequest::default();
    let mut policy = Map::new();
    for (key, v) in map {
        match key.as_str() {
            "source" => match v {
                Value::Null => {}
                Value::String(s) => req.source = Some(s),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_source",
                        "source",
                        "must be a source id or name",
                    ))
                }
            },
            "dry_run" => match v {
                Value::Null => {}
                Value::Bool(b) => req.dry_run = b,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_dry_run",
                        "dry_run",
                        "must be true or false",
                    ))
                }
            },
            k if POLICY_FIELDS.contains(&k) => {
                if v.is_null() {
                    continue;
                }
                let n = v.as_u64().filter(|n| *n <= u64::from(u32::MAX));
                let Some(n) = n else {
                    return Err(ApiError::bad_request(
                        "invalid_policy",
                        k,
                        format!("{k} must be a non-negative integer"),
                    ));
                };
                policy.insert(k.to_string(), json!(n));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "unknown_field",
                    &key,
                    format!(
                    "unknown field {key:?}; expected source, dry_run or one of {POLICY_FIELDS:?}"
                ),
                ))
            }
        }
    }
    req.policy = serde_json::from_value(Value::Object(policy)).map_err(anyhow::Error::from)?;
    if !req.policy.is_unset() && req.policy.keeps_nothing() {
        let field = POLICY_FIELDS
            .iter()
            .find(|f| policy_field(&req.policy, f).is_some())
            .copied()
            .unwrap_or("keep_last");
        return Err(ApiError::bad_request(
            "policy_keeps_nothing",
            field,
            "this policy would delete every backup; to delete backups one by one use DELETE /api/v1/backup/{id}",
        ));
    }
    Ok(req)
}

fn policy_field(p: &Policy, name: &str) -> Option<u32> {
    match name {
        "keep_last" => p.keep_last,
        "daily" => p.daily,
        "weekly" => p.weekly,
        "monthly" => p.monthly,
        "yearly" => p.yearly,
        "retention_days" => p.retention_days,
        _ => None,
    }
}

/// The policy a source is pruned with: the request's, else the source's stored one,
/// else 7 daily and 4 weekly.
fn effective_policy(request: &Policy, source: &db::sources::SourceRow) -> ApiResult<Policy> {
    if !request.is_unset() {
        return Ok(*request);
    }
    let Some(stored) = &source.retention else {
        return Ok(Policy::DEFAULT);
    };
    let stored: Policy = serde_json::from_value(stored.0.clone()).map_err(|e| {
        ApiError::conflict(
            "invalid_stored_policy",
            format!(
                "the retention policy stored for source {:?} is not valid ({e}); name a policy in the request",
                source.name
            ),
        )
    })?;
    if stored.is_unset() {
        return Ok(Policy::DEFAULT);
    }
    if stored.keeps_nothing() {
        return Err(ApiError::conflict(
            "invalid_stored_policy",
            format!(
                "the retention policy stored for source {:?} would delete every backup; name a policy in the request",
                source.name
            ),
        ));
    }
    Ok(stored)
}

/// `POST /api/v1/backup/prune` → `200` (dry run, or nothing to delete) or `202` with the
/// prune job.
pub async fn prune(state: web::Data<AppState>, body: web::Bytes) -> ApiResult<HttpResponse> {
    let req = parse_prune(&body)?;
    let mut tx = state.pool.begin().await?;
    let sources = match &req.source {
        Some(s) => vec![db::sources::find(&mut tx, s).await?.ok_or_else(|| {
            ApiError::not_found("source_not_found", format!("no source {s:?}"))
                .with("field", "source")
        })?],
        None => db::sources::list(&mut tx).await?,
    };
    let source_ids: Vec<Uuid> = sources.iter().map(|s| s.id).collect();
    let backups = db::backups::of_sources(&mut tx, &source_ids, !req.dry_run).await?;
    let all_ids: Vec<String> = backups.iter().map(|b| b.id.clone()).collect();
    let pinned: HashSet<String> = in_use(&mut tx, &all_ids).await?.into_keys().collect();
    let now = Utc::now();

    let (mut deleted, mut kept, mut skipped, mut per_source) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for source in &sources {
        let policy = effective_policy(&req.policy, source)?;
        let items: Vec<Item> = backups
            .iter()
            .filter(|b| b.source_id == source.id)
            .map(|b| Item {
                id: b.id.clone(),
                parent_id: b.parent_id.clone(),
                state: State::from_status(&b.status),
                created_at: b.created_at,
            })
            .collect();
        let d = decide(&items, &policy, now, &pinned);
        per_source.push(json!({
            "source_id": source.id,
            "source": source.name,
            "policy": policy,
            "deleted": d.delete,
            "kept": d.keep,
            "skipped": d.skipped,
        }));
        deleted.extend(d.delete);
        kept.extend(d.keep);
        skipped.extend(d.skipped);
    }
    let mut answer = json!({
        "deleted": deleted,
        "count": deleted.len(),
        "kept": kept,
        "skipped": skipped,
        "dry_run": req.dry_run,
        "sources": per_source,
    });
    if req.dry_run || deleted.is_empty() {
        drop(tx);
        if !req.dry_run {
            answer["job_id"] = Value::Null;
            answer["status_url"] = Value::Null;
        }
        return Ok(HttpResponse::Ok().json(answer));
    }
    db::backups::mark_deleting(&mut tx, &deleted).await?;
    let job_id = Uuid::now_v7();
    enqueue(
        &mut tx,
        NewJob {
            id: job_id,
            kind: JobKind::Prune,
            source_id: match (&req.source, sources.as_slice()) {
                (Some(_), [only]) => Some(only.id),
                _ => None,
            },
            backup_id: None,
            payload: payload(&deleted)?,
            max_attempts: state.config.job_max_attempts,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%job_id, count = deleted.len(), "prune accepted");
    answer["job_id"] = json!(job_id);
    answer["status_url"] = json!(status_url(job_id));
    Ok(HttpResponse::Accepted().json(answer))
}
