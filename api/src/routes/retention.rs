//! `DELETE /api/v1/backup/{id}` and `POST /api/v1/backup/prune`: removing backups
//! without breaking a chain a kept backup depends on; the storage is reclaimed by a job.
//!
//! Both mark the backups `deleting` and record a job in one transaction; the worker
//! deletes manifests and catalog rows, then collects the packs nobody needs.

use std::collections::{HashMap, HashSet};
use strata_core::errors::ErrorCode;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use strata_catalog as db;
use strata_catalog::backups::BackupRow;
use strata_core::model::{BackupId, DeletePayload};
use strata_core::retention::{decide, Item, Policy};
use strata_jobs::enqueue::JobRequest;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::backups::enqueue;
use super::jobs::status_url;
use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas::RetentionPolicy;
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// How to delete; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// `true`: delete the backups that depend on this one too (default `false`).
    #[param(value_type = Option<bool>)]
    pub cascade: Option<String>,
}

/// A delete job was accepted: poll `status_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteAccepted {
    pub job_id: Uuid,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    pub status_url: String,
    /// The backups being deleted (marked `deleting` already): this one and, with
    /// `cascade`, those depending on it.
    pub deleted: Vec<String>,
    pub count: usize,
}

/// `DELETE /api/v1/backup/{id}[?cascade=true]` → `202` with the delete job.
#[utoipa::path(
    delete,
    path = "/api/v1/backup/{backup_id}",
    tag = "backups",
    params(
        ("backup_id" = String, Path, description = "The backup's id"),
        DeleteQuery,
    ),
    responses(
        (status = 202, description = "Accepted: the backups are marked `deleting` and the delete job is queued", body = DeleteAccepted),
        (status = 400, description = "A parameter is invalid or unknown (`invalid_query`); `field` names it", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`)", body = ErrorBody),
        (status = 409, description = "Other backups need this one (`backup_has_dependents`, with `dependents`: \
            use `cascade=true`), it is being written (`backup_not_complete`) or deleted already \
            (`backup_being_deleted`), or a queued or running job needs it (`job_in_progress`, with `job_id`)", body = ErrorBody),
    ),
)]
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
                ErrorCode::InvalidQuery,
                "cascade",
                format!("{other:?} is not valid; expected true or false"),
            ))
        }
    };
    let id = BackupId::from_file_name(&path).to_string();
    let not_found = || ApiError::new(ErrorCode::BackupNotFound, format!("no backup {id:?}"));
    if id.contains('\0') {
        return Err(not_found());
    }
    let mut tx = state.pool.begin().await?;
    let target = db::backups::lock(&mut tx, std::slice::from_ref(&id))
        .await?
        .pop()
        .ok_or_else(not_found)?;
    check_deletable(&target)?;
    let dependents = db::backups::dependents(&mut tx, &id).await?;
    if !dependents.is_empty() && !cascade {
        return Err(ApiError::new(ErrorCode::BackupHasDependents,
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
            return Err(ApiError::new(
                ErrorCode::BackupNotComplete,
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
        return Err(ApiError::new(
            ErrorCode::JobInProgress,
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
    let request = JobRequest::Delete {
        source_id: target.source_id,
        backup_id: id.clone(),
        payload: payload(&set)?,
    };
    enqueue(&state, &mut tx, job_id, request).await?;
    tx.commit().await?;
    tracing::info!(%job_id, backup_id = %id, count = set.len(), "delete accepted");
    Ok(HttpResponse::Accepted().json(DeleteAccepted {
        job_id,
        status: "queued".into(),
        status_url: status_url(job_id),
        count: set.len(),
        deleted: set,
    }))
}

/// A backup being deleted or still being written cannot be deleted (again).
fn check_deletable(b: &BackupRow) -> ApiResult<()> {
    match b.status.as_str() {
        "deleting" => Err(ApiError::new(
            ErrorCode::BackupBeingDeleted,
            format!("backup {:?} is already being deleted", b.id),
        )),
        "pending" => Err(ApiError::new(
            ErrorCode::BackupNotComplete,
            format!(
                "backup {:?} is still being written; cancel its job first",
                b.id
            ),
        )
        .with("backup_id", b.id.clone())),
        _ => Ok(()),
    }
}

/// Backups that queued or running jobs need, with one such job (id, kind).
async fn in_use(
    conn: &mut sqlx::PgConnection,
    backup_ids: &[String],
) -> ApiResult<HashMap<String, (Uuid, String)>> {
    Ok(strata_jobs::prune::pinned(conn, backup_ids).await?)
}

fn payload(ids: &[String]) -> ApiResult<DeletePayload> {
    let backup_ids = ids
        .iter()
        .map(|i| BackupId::parse(i, "backup_id"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeletePayload { backup_ids })
}

/// A prune request. Every field is optional, and so is the body itself; the policy
/// fields, when any is given, replace each source's stored policy. A bad value is a
/// `400` naming its field.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    /// Source id or name; every source when absent.
    source: Option<String>,
    /// Only say what would be deleted (`200`), delete nothing.
    dry_run: Option<bool>,
    /// The newest N backups.
    keep_last: Option<u32>,
    /// The newest backup of each of the last N days.
    daily: Option<u32>,
    /// The newest backup of each of the last N weeks.
    weekly: Option<u32>,
    /// The newest backup of each of the last N months.
    monthly: Option<u32>,
    /// The newest backup of each of the last N years.
    yearly: Option<u32>,
    /// Every backup younger than N days.
    retention_days: Option<u32>,
}

/// What a prune did (or would do) to one source.
#[derive(Debug, Serialize, ToSchema)]
pub struct PruneSource {
    pub source_id: Uuid,
    /// The source's name.
    pub source: String,
    /// The policy applied: the request's, the source's stored one, or 7 daily and 4 weekly.
    #[schema(value_type = RetentionPolicy)]
    pub policy: Policy,
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
    pub skipped: Vec<String>,
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Serialize, ToSchema)]
pub struct PruneResult {
    /// The backups deleted (marked `deleting`; the job removes them).
    pub deleted: Vec<String>,
    pub count: usize,
    pub kept: Vec<String>,
    /// Backups the policy would delete but that are kept because a queued or running
    /// job needs them (or a backup that depends on them).
    pub skipped: Vec<String>,
    pub dry_run: bool,
    pub sources: Vec<PruneSource>,
    /// The prune job; null when there was nothing to delete; absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Uuid>)]
    pub job_id: Option<Option<Uuid>>,
    /// Where to poll the job; null when there was nothing to delete; absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub status_url: Option<Option<String>>,
}

/// A parsed prune request.
#[derive(Debug, Default)]
struct PruneRequest {
    source: Option<String>,
    policy: Policy,
    dry_run: bool,
}

/// Parses the body like every JSON body (typed, unknown fields refused); an empty body
/// prunes every source by its stored policy.
fn parse_prune(body: &[u8]) -> ApiResult<PruneRequest> {
    let b: PruneBody = super::backups::parse_optional_body(body)?;
    if let Some(s) = &b.source {
        crate::error::reject_nul(s, "source")?;
    }
    let req = PruneRequest {
        source: b.source,
        dry_run: b.dry_run.unwrap_or(false),
        policy: Policy {
            keep_last: b.keep_last,
            daily: b.daily,
            weekly: b.weekly,
            monthly: b.monthly,
            yearly: b.yearly,
            retention_days: b.retention_days,
        },
    };
    if !req.policy.is_unset() && req.policy.keeps_nothing() {
        let field = Policy::FIELDS
            .iter()
            .find(|f| policy_field(&req.policy, f).is_some())
            .copied()
            .unwrap_or("keep_last");
        return Err(ApiError::bad_request(ErrorCode::PolicyKeepsNothing,
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
        ApiError::new(ErrorCode::InvalidStoredPolicy,
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
        return Err(ApiError::new(ErrorCode::InvalidStoredPolicy,
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
#[utoipa::path(
    post,
    path = "/api/v1/backup/prune",
    tag = "backups",
    request_body(content = Option<PruneBody>, description = "Optional: an empty body prunes every source by its stored policy"),
    responses(
        (status = 200, description = "A dry run, or nothing to delete (then `job_id` and `status_url` are null)", body = PruneResult),
        (status = 202, description = "Accepted: the backups are marked `deleting` and the prune job is queued", body = PruneResult),
        (status = 400, description = "Invalid body: `malformed_json`, `invalid_body` (a wrong type, an unknown field), \
            `policy_keeps_nothing`; `field` names it", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
        (status = 409, description = "A source's stored policy is invalid (`invalid_stored_policy`), or a job is in the way (`job_in_progress`)", body = ErrorBody),
    ),
)]
pub async fn prune(
    state: web::Data<AppState>,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    let req = parse_prune(&body)?;
    let mut tx = state.pool.begin().await?;
    let sources = match &req.source {
        Some(s) => vec![super::sources::named(&mut tx, s).await?],
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
            .map(strata_jobs::prune::item)
            .collect();
        let d = decide(&items, &policy, now, &pinned);
        deleted.extend(d.delete.iter().cloned());
        kept.extend(d.keep.iter().cloned());
        skipped.extend(d.skipped.iter().cloned());
        per_source.push(PruneSource {
            source_id: source.id,
            source: source.name.clone(),
            policy,
            deleted: d.delete,
            kept: d.keep,
            skipped: d.skipped,
        });
    }
    let mut answer = PruneResult {
        count: deleted.len(),
        deleted,
        kept,
        skipped,
        dry_run: req.dry_run,
        sources: per_source,
        job_id: None,
        status_url: None,
    };
    if req.dry_run || answer.deleted.is_empty() {
        drop(tx);
        if !req.dry_run {
            answer.job_id = Some(None);
            answer.status_url = Some(None);
        }
        return Ok(HttpResponse::Ok().json(answer));
    }
    let deleted = &answer.deleted;
    db::backups::mark_deleting(&mut tx, deleted).await?;
    let job_id = Uuid::now_v7();
    let request = JobRequest::Prune {
        source_id: match (&req.source, sources.as_slice()) {
            (Some(_), [only]) => Some(only.id),
            _ => None,
        },
        payload: payload(deleted)?,
    };
    enqueue(&state, &mut tx, job_id, request).await?;
    tx.commit().await?;
    tracing::info!(%job_id, count = deleted.len(), "prune accepted");
    answer.job_id = Some(Some(job_id));
    answer.status_url = Some(Some(status_url(job_id)));
    Ok(HttpResponse::Accepted().json(answer))
}
