//! `/api/v1/backup…`: create, list, show and restore backups.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use strata_core::model::{
    parse_absolute_path, parse_relative_path, BackupId, BackupPayload, BackupStatus, BackupType,
    DatabaseSpec, PostgresUrl, RestorePayload, SourceSpec, VerifyMode, VerifyPayload,
};
use strata_engine::paths::{resolve, PathPolicy};
use strata_jobs::enqueue::{EnqueueError, EnqueueOptions, JobRequest};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::jobs::status_url;
use crate::error::{reject_nul, ApiError, ApiResult};
use crate::idempotency;
use crate::openapi::schemas::{BackupStatusName, BackupTypeName};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// A backup to make. Every field is optional, and so is the body itself.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// Source id or name; may be left out when exactly one source exists.
    pub source: Option<String>,
    /// `full` (default), `incremental` or `differential`.
    #[serde(rename = "type")]
    #[schema(value_type = Option<BackupTypeName>)]
    pub backup_type: Option<String>,
    /// `[a-z0-9_-]`, at most 150 characters, unique; a trailing `.zip` is dropped.
    /// Generated from the source's name and the time when absent or empty.
    #[schema(example = "web-data-before-upgrade")]
    pub name: Option<String>,
    /// Back up the source's directory (default: when it has one).
    pub include_files: Option<bool>,
    /// Back up the source's database (default: when it has one). Both parts of a combined
    /// source are captured by one backup, the database's snapshot first.
    pub include_database: Option<bool>,
}

/// A backup job was accepted: poll `status_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupAccepted {
    pub job_id: Uuid,
    #[schema(value_type = String)]
    pub backup_id: BackupId,
    pub source_id: Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = BackupTypeName)]
    pub backup_type: BackupType,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    /// Where to poll the job.
    pub status_url: String,
}

/// Records a job and its outbox message in the caller's transaction (the jobs crate's
/// [`strata_jobs::enqueue::enqueue`]). A second active backup or restore of the same
/// source violates a unique index: `409` with its id.
pub(crate) async fn enqueue(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    request: JobRequest,
) -> ApiResult<()> {
    let options = EnqueueOptions {
        id: job_id,
        ..EnqueueOptions::new(state.config.jobs.job_max_attempts)
    };
    match strata_jobs::enqueue::enqueue(tx, &request, options).await {
        Ok(_) => Ok(()),
        Err(e @ EnqueueError::SourceBusy) => {
            Err(ApiError::new(ErrorCode::JobInProgress, e.to_string()))
        }
        Err(EnqueueError::Database(e)) => Err(e.into()),
    }
}

/// Adds the id of the job in the way to a `job_in_progress` conflict (read after the
/// failed transaction ended, so the answer names the job that won).
pub(crate) async fn explain_conflict(state: &AppState, source_id: Uuid, err: ApiError) -> ApiError {
    if err.code != ErrorCode::JobInProgress {
        return err;
    }
    let Ok(mut conn) = state.pool.acquire().await else {
        return err;
    };
    match strata_jobs::store::active_for_source(&mut conn, source_id).await {
        Ok(Some(job)) => err
            .with("job_id", job.id.to_string())
            .with("job_kind", job.kind),
        _ => err,
    }
}

/// `POST /api/v1/backup/create` (and `POST /api/v1/backup`) → `202` with the job.
/// With an `Idempotency-Key` header, a repeated request with the same body gets the
/// first answer again; the same key with another body is a `422`.
#[utoipa::path(
    post,
    path = "/api/v1/backup/create",
    tag = "backups",
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 printable ASCII characters. A repeated request with the same key \
                and body gets the first answer again (with `Idempotent-Replayed: true`)"),
    ),
    request_body(content = Option<CreateBackup>, description = "Optional: an empty body backs up the only source, in full"),
    responses(
        (status = 202, description = "Accepted: the backup job is queued", body = BackupAccepted,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`"))),
        (status = 400, description = "Invalid body or header: `malformed_json`, `invalid_body`, `invalid_backup_type`, \
            `invalid_backup_name`, `backup_name_taken`, `source_required` (several sources, none named), \
            `source_has_no_database`, `nothing_to_back_up`, `invalid_idempotency_key`; `field` names it", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
        (status = 409, description = "A backup or restore of this source is already queued or running \
            (`job_in_progress`, with `job_id` and `job_kind`)", body = ErrorBody),
        (status = 422, description = "This `Idempotency-Key` was used for a different request (`idempotency_key_reused`)", body = ErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    let create: CreateBackup = parse_optional_body(&body)?;
    let idem = idempotency::Key::from_request(&req, &body)?;
    if let Some(key) = &idem {
        if let Some(replay) = key.replay(&state.pool).await? {
            return Ok(replay);
        }
    }
    let backup_type = match &create.backup_type {
        Some(t) => BackupType::parse(t)?,
        None => BackupType::Full,
    };
    let mut conn = state.pool.acquire().await?;
    let source =
        super::sources::named_or_only(&mut conn, create.source.as_deref(), "to back up").await?;
    drop(conn);
    let spec = &source.spec.0;
    if create.include_database == Some(true) && spec.database.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::SourceHasNoDatabase,
            "include_database",
            "this source has no database part",
        ));
    }
    if create.include_files == Some(true) && spec.files.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::SourceHasNoFiles,
            "include_files",
            "this source has no files part",
        ));
    }
    let with_files = spec.files.is_some() && create.include_files != Some(false);
    let with_database = spec.database.is_some() && create.include_database != Some(false);
    if !with_files && !with_database {
        let field = if create.include_files == Some(false) {
            "include_files"
        } else {
            "include_database"
        };
        return Err(ApiError::bad_request(
            ErrorCode::NothingToBackUp,
            field,
            "excluding this part leaves nothing of the source to back up",
        ));
    }
    let backup_id = match &create.name {
        Some(name) if !name.is_empty() => {
            BackupId::parse_new(name.strip_suffix(".zip").unwrap_or(name), "name")?
        }
        _ => BackupId::generate(&source.name, Utc::now()),
    };
    let job_id = Uuid::now_v7();
    let payload = BackupPayload {
        backup_id: backup_id.clone(),
        source_id: source.id,
        backup_type,
        include_files: Some(with_files),
        include_database: Some(with_database),
    };

    let mut tx = state.pool.begin().await?;
    if let Err(e) = db::backups::insert_pending(&mut tx, &backup_id, source.id, backup_type).await {
        if db::is_unique_violation(&e, db::backups::ID_UNIQUE) {
            return Err(name_taken(&backup_id));
        }
        return Err(e.into());
    }
    if let Err(e) = enqueue(&state, &mut tx, job_id, JobRequest::Backup(payload)).await {
        drop(tx);
        return Err(explain_conflict(&state, source.id, e).await);
    }
    let answer = serde_json::to_value(BackupAccepted {
        job_id,
        backup_id: backup_id.clone(),
        source_id: source.id,
        backup_type,
        status: "queued".into(),
        status_url: status_url(job_id),
    })
    .map_err(anyhow::Error::from)?;
    if let Some(key) = &idem {
        if !key.record(&mut tx, 202, &answer).await? {
            // The same key arrived concurrently and won: answer as it did.
            drop(tx);
            return key.replay(&state.pool).await?.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("idempotency key vanished during a race"))
            });
        }
    }
    tx.commit().await?;
    tracing::info!(%job_id, backup_id = %backup_id, source = %source.name, "backup accepted");
    Ok(HttpResponse::Accepted().json(answer))
}

/// A backup name in use: `400`, as the PocketBase-style API answers.
pub(crate) fn name_taken(id: &BackupId) -> ApiError {
    ApiError::bad_request(
        ErrorCode::BackupNameTaken,
        "name",
        format!("a backup named {:?} already exists", id.as_str()),
    )
}

/// A backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupView {
    pub id: String,
    pub source_id: Uuid,
    /// What was made: an incremental with no parent to build on is made `full`.
    #[serde(rename = "type")]
    #[schema(value_type = BackupTypeName)]
    pub backup_type: String,
    /// What was asked for.
    #[schema(value_type = BackupTypeName)]
    pub requested_type: String,
    /// The backup this one builds on (incremental and differential backups).
    pub parent_id: Option<String>,
    #[schema(value_type = BackupStatusName)]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Logical size: the bytes of file content the backup represents.
    pub size: i64,
    /// Bytes this backup added to the repository.
    pub stored_size: i64,
    pub file_count: i64,
    pub dir_count: i64,
    /// What could not be backed up (unreadable files…); empty when nothing went wrong.
    pub warnings: Vec<serde_json::Value>,
    /// What the backup holds: `files` and / or `database`.
    pub parts: Vec<String>,
    /// The PocketBase-style API's names: `key` is the id, `modified` when it completed
    /// (or was created, while pending), `filename` what a download is saved as
    /// (`<id>.db` / `<id>.sql` for a backup holding only a database, else `<id>.tar`);
    /// every path that takes the id takes the filename too.
    pub key: String,
    pub modified: DateTime<Utc>,
    pub filename: String,
}

impl BackupView {
    /// The view of a backup of a source of `kind` (`sqlite`, `directory+postgres`…; the
    /// source's now, which names the engine its database backups were taken with).
    fn of(b: db::backups::BackupRow, kind: Option<&str>) -> Self {
        Self {
            key: b.id.clone(),
            modified: b.completed_at.unwrap_or(b.created_at),
            filename: download_name(&b, kind),
            id: b.id,
            source_id: b.source_id,
            backup_type: b.backup_type,
            requested_type: b.requested_type,
            parent_id: b.parent_id,
            status: b.status,
            created_at: b.created_at,
            completed_at: b.completed_at,
            size: b.logical_size,
            stored_size: b.stored_size,
            file_count: b.file_count,
            dir_count: b.dir_count,
            warnings: b.warnings.0,
            parts: b.parts,
        }
    }
}

/// What a default download of the backup is saved as: a backup holding only a database
/// downloads as that database's file (`<id>.db`, `<id>.sql`), any other as a tar.
fn download_name(b: &db::backups::BackupRow, kind: Option<&str>) -> String {
    let database_only = b.has_part("database") && !b.has_part("files");
    let ext = match kind.and_then(|k| k.rsplit('+').next()) {
        Some("sqlite") if database_only => "db",
        Some("postgres") if database_only => "sql",
        _ => "tar",
    };
    format!("{}.{ext}", b.id)
}

/// Filters of the backup list; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Source id or name.
    pub source: Option<String>,
    #[param(value_type = Option<BackupStatusName>)]
    pub status: Option<String>,
    #[serde(rename = "type")]
    #[param(value_type = Option<BackupTypeName>)]
    pub backup_type: Option<String>,
    /// RFC 3339; backups created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// RFC 3339; backups created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub from: Option<String>,
}

/// One page of backups, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupPage {
    pub items: Vec<BackupView>,
    pub limit: i64,
    /// Pass as `from` for the next page; null on the last page.
    pub next: Option<String>,
}

/// Lists backups, newest first, with filters and a cursor (also at `GET /api/v1/backup/list`).
#[utoipa::path(
    get,
    path = "/api/v1/backup",
    tag = "backups",
    params(ListQuery),
    responses(
        (status = 200, description = "One page", body = BackupPage),
        (status = 400, description = "A parameter is invalid or unknown (`invalid_query`, `invalid_limit`, \
            `invalid_backup_status`, `invalid_backup_type`, `invalid_cursor`); `field` names it", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidLimit,
            "limit",
            "must be between 1 and 1000",
        ));
    }
    let status = match &q.status {
        Some(s) => Some(BackupStatus::parse(s)?.as_str().to_string()),
        None => None,
    };
    let backup_type = q
        .backup_type
        .as_deref()
        .map(BackupType::parse)
        .transpose()?
        .map(|t| t.as_str().to_string());
    let mut conn = state.pool.acquire().await?;
    let source_id = match &q.source {
        Some(s) => Some(super::sources::named(&mut conn, s).await?.id),
        None => None,
    };
    let before = match &q.from {
        Some(cursor) => Some(super::cursor::decode(cursor)?),
        None => None,
    };
    let rows = db::backups::list(
        &mut conn,
        &db::backups::ListFilter {
            source_id,
            status,
            backup_type,
            created_after: q.created_after,
            created_before: q.created_before,
            limit: limit + 1,
            before,
        },
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let kinds: std::collections::HashMap<uuid::Uuid, String> = db::sources::list(&mut conn)
        .await?
        .into_iter()
        .map(|s| (s.id, s.kind))
        .collect();
    let items: Vec<BackupView> = rows
        .into_iter()
        .take(limit as usize)
        .map(|b| {
            let kind = kinds.get(&b.source_id).map(String::as_str);
            BackupView::of(b, kind)
        })
        .collect();
    let next = has_more
        .then(|| {
            items
                .last()
                .map(|b| super::cursor::encode(b.created_at, &b.id))
        })
        .flatten();
    Ok(HttpResponse::Ok().json(BackupPage { items, limit, next }))
}

/// A backup with the chain a restore of it needs.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupDetail {
    #[serde(flatten)]
    pub backup: BackupView,
    /// The ids a restore reads, from this backup back to its full backup.
    pub chain: Vec<String>,
}

/// One backup, with its chain.
#[utoipa::path(
    get,
    path = "/api/v1/backup/{backup_id}",
    tag = "backups",
    params(("backup_id" = String, Path, description = "The backup's id (its name)")),
    responses(
        (status = 200, description = "The backup", body = BackupDetail),
        (status = 404, description = "No such backup (`backup_not_found`)", body = ErrorBody),
    ),
)]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let backup = find_backup(&mut conn, &path).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::BackupNotFound,
            format!("no backup {:?}", path.as_str()),
        )
    })?;
    let chain = db::backups::chain(&mut conn, &backup.id).await?;
    let kind = db::sources::get(&mut conn, backup.source_id)
        .await?
        .map(|s| s.kind);
    Ok(HttpResponse::Ok().json(BackupDetail {
        backup: BackupView::of(backup, kind.as_deref()),
        chain,
    }))
}

/// What to restore, and where. Every field is optional, and so is the body itself.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Another directory to restore into: an absolute path, or a name (`[a-z0-9_-]`, at
    /// most 64 characters) meaning a directory beside the source's (`/srv/app.<name>`).
    /// The source's own path when absent.
    ///
    /// For a database-only restore: the PostgreSQL database to restore into (created, or
    /// replaced atomically), or the SQLite file (an absolute path, or a name: beside the
    /// source's file). For both parts: an object `{"files": …, "database": …}`; a bare
    /// name then applies to both (`/srv/app.staging` and database `app_staging`).
    #[schema(value_type = Option<crate::openapi::schemas::RestoreTarget>, example = "/srv/restore")]
    pub target: Option<serde_json::Value>,
    /// Relative paths to restore, each with everything below it; everything when absent.
    #[serde(default)]
    pub include: Vec<String>,
    /// Back up the current state first (default `true`) when restoring over the source.
    pub pre_restore_backup: Option<bool>,
    /// Restore the files part (default: when the backup has one).
    pub include_files: Option<bool>,
    /// Restore the database part (default: when the backup has one).
    pub include_database: Option<bool>,
    /// Keep the PostgreSQL database a restore replaces, renamed
    /// `<name>_before_<timestamp>` (default `false`: dropped once the job succeeds).
    pub keep_previous_database: Option<bool>,
}

/// A restore job was accepted: poll `status_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreAccepted {
    pub job_id: Uuid,
    pub backup_id: String,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    pub status_url: String,
    /// The backup of the current state made first, when restoring over the source.
    #[schema(value_type = Option<String>)]
    pub pre_restore_backup_id: Option<BackupId>,
}

/// Restores a complete backup (its chain resolved) into the source's directory or another
/// one (also at `POST /api/v1/backup/restore/{backup_id}`).
#[utoipa::path(
    post,
    path = "/api/v1/backup/{backup_id}/restore",
    tag = "backups",
    params(("backup_id" = String, Path, description = "The backup's id")),
    request_body(content = Option<RestoreRequest>, description = "Optional: an empty body restores everything over the source"),
    responses(
        (status = 202, description = "Accepted: the restore job is queued", body = RestoreAccepted),
        (status = 400, description = "Invalid body: `malformed_json`, `invalid_body`, `invalid_target`, \
            `invalid_path` (target or include); or `target_not_allowed`: the target (or the source's own path, \
            without one) is, contains or lies inside Strata's data directory or repository, is `/`, or lies in \
            (or contains) a system directory not listed in STRATA_RESTORE_ALLOW_PATHS, every symlink followed; \
            `field` names it", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`) or its source is gone (`source_not_found`)", body = ErrorBody),
        (status = 409, description = "The backup is not complete (`backup_not_complete`), or a backup or restore \
            of its source is queued or running (`job_in_progress`, with `job_id`)", body = ErrorBody),
    ),
)]
pub async fn restore(
    state: web::Data<AppState>,
    path: web::Path<String>,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    // The body is optional, but a body that does not parse is an error, never "no target".
    let req: RestoreRequest = parse_optional_body(&body)?;
    let include = req
        .include
        .iter()
        .enumerate()
        .map(|(i, p)| parse_relative_path(p, &format!("include[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let backup = complete_backup(&state, &path, "restored").await?;
    let job_id = Uuid::now_v7();
    // Restoring over the source replaces live data: keep a backup of it first. A restore
    // into another directory overwrites nothing of the source's.
    let mut conn = state.pool.acquire().await?;
    let source = db::sources::get(&mut conn, backup.source_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SourceNotFound, "the backup's source is gone"))?;
    drop(conn);
    let plan = plan_restore(&req, &backup, &source, &state.paths)?;
    let over_source = plan.over_source(&source.spec.0);
    let (target, database_target) = (plan.files, plan.database);
    let pre_restore = if req.pre_restore_backup.unwrap_or(true) && over_source {
        Some(BackupId::generate(
            &format!("{}-pre-restore", source.name),
            Utc::now(),
        ))
    } else {
        None
    };
    let payload = RestorePayload {
        backup_id: BackupId::parse(&backup.id, "backup_id")?,
        source_id: backup.source_id,
        target,
        include,
        pre_restore_backup_id: pre_restore.clone(),
        database_target,
        include_files: Some(plan.do_files),
        include_database: Some(plan.do_database),
        keep_previous_database: req.keep_previous_database.unwrap_or(false),
    };
    let mut tx = state.pool.begin().await?;
    if let Some(id) = &pre_restore {
        db::backups::insert_pending(&mut tx, id, backup.source_id, BackupType::Full).await?;
    }
    if let Err(e) = enqueue(&state, &mut tx, job_id, JobRequest::Restore(payload)).await {
        drop(tx);
        return Err(explain_conflict(&state, backup.source_id, e).await);
    }
    tx.commit().await?;
    tracing::info!(%job_id, backup_id = %backup.id, "restore accepted");
    Ok(HttpResponse::Accepted().json(RestoreAccepted {
        job_id,
        backup_id: backup.id,
        status: "queued".into(),
        status_url: status_url(job_id),
        pre_restore_backup_id: pre_restore,
    }))
}

/// How to verify. The body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// `data` (default): read every pack the backup needs and check every chunk.
    /// `restore`: a restore drill — the backup restored into scratch targets (a temporary
    /// directory, SQLite file or PostgreSQL database), checked (`PRAGMA
    /// integrity_check`, tables and row counts against the backup's record, file counts
    /// and bytes), reported in the job's result, and removed.
    #[schema(example = "restore")]
    pub mode: Option<String>,
}

/// A verify job was accepted: poll `status_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyAccepted {
    pub job_id: Uuid,
    pub backup_id: String,
    pub status_url: String,
}

/// `POST /api/v1/backup/{id}/verify` → `202` with the verify job.
#[utoipa::path(
    post,
    path = "/api/v1/backup/{backup_id}/verify",
    tag = "backups",
    params(("backup_id" = String, Path, description = "The backup's id")),
    request_body(content = Option<VerifyRequest>, description = "Optional"),
    responses(
        (status = 202, description = "Accepted: the verify job is queued", body = VerifyAccepted),
        (status = 400, description = "Invalid body: `malformed_json`, `invalid_body`, `invalid_verify_mode`; `field` names it", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`)", body = ErrorBody),
        (status = 409, description = "The backup is not complete (`backup_not_complete`)", body = ErrorBody),
    ),
)]
pub async fn verify(
    state: web::Data<AppState>,
    path: web::Path<String>,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    let req: VerifyRequest = parse_optional_body(&body)?;
    let mode = match req.mode.as_deref() {
        None => VerifyMode::Data,
        Some(m) => VerifyMode::parse(m)?,
    };
    let backup = complete_backup(&state, &path, "verified").await?;
    let job_id = Uuid::now_v7();
    let payload = VerifyPayload {
        backup_id: BackupId::parse(&backup.id, "backup_id")?,
        mode,
    };
    let mut tx = state.pool.begin().await?;
    let request = JobRequest::Verify {
        source_id: backup.source_id,
        payload,
    };
    enqueue(&state, &mut tx, job_id, request).await?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted().json(VerifyAccepted {
        job_id,
        backup_id: backup.id,
        status_url: status_url(job_id),
    }))
}

/// The backup named `id`, which must be complete: `404` when there is none, `409`
/// when it is pending or failed.
pub(crate) async fn complete_backup(
    state: &AppState,
    id: &str,
    purpose: &str,
) -> ApiResult<db::backups::BackupRow> {
    let mut conn = state.pool.acquire().await?;
    let backup = find_backup(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::BackupNotFound, format!("no backup {id:?}")))?;
    if backup.status != BackupStatus::Complete.as_str() {
        return Err(ApiError::new(
            ErrorCode::BackupNotComplete,
            format!(
                "backup {:?} is {}; only complete backups can be {purpose}",
                backup.id, backup.status
            ),
        ));
    }
    Ok(backup)
}

/// The backup with this id; none for an id that cannot exist (a NUL, which PostgreSQL
/// text cannot hold, would be a `500`).
pub(crate) async fn find_backup(
    conn: &mut sqlx::PgConnection,
    id: &str,
) -> ApiResult<Option<db::backups::BackupRow>> {
    if id.contains('\0') {
        return Ok(None);
    }
    Ok(db::backups::get(conn, BackupId::from_file_name(id)).await?)
}

/// An optional JSON body: empty means defaults; a body that does not parse is a `400`,
/// never silently the defaults.
pub(crate) fn parse_optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::body::parse_json(body)
}

/// Which parts a restore writes, and where (`None`: over the source's own).
struct RestorePlan {
    do_files: bool,
    do_database: bool,
    files: Option<std::path::PathBuf>,
    database: Option<String>,
}

impl RestorePlan {
    /// Whether some part is restored over the source's live data.
    fn over_source(&self, spec: &SourceSpec) -> bool {
        let files = self.do_files
            && match (&self.files, &spec.files) {
                (None, _) => true,
                // The same directory under any name (a symlink, a trailing slash).
                (Some(t), Some(f)) => same_place(t, &f.path),
                (Some(_), None) => false,
            };
        let database = self.do_database
            && match (&self.database, &spec.database) {
                (None, _) => true,
                (Some(t), Some(DatabaseSpec::Sqlite(s))) => {
                    same_place(std::path::Path::new(t), &s.path)
                }
                (Some(t), Some(DatabaseSpec::Postgres(pg))) => PostgresUrl::stored(&pg.url)
                    .map(|u| u.database == *t)
                    .unwrap_or(false),
                (Some(_), None) => false,
            };
        files || database
    }
}

/// Whether two paths land on the same place (every symlink followed).
fn same_place(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (resolve(a), resolve(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn plan_restore(
    req: &RestoreRequest,
    backup: &db::backups::BackupRow,
    source: &db::sources::SourceRow,
    policy: &PathPolicy,
) -> ApiResult<RestorePlan> {
    let spec = &source.spec.0;
    let part = |wanted: Option<bool>, has: bool, field: &str, code: ErrorCode| match (wanted, has) {
        (Some(true), false) => Err(ApiError::bad_request(
            code,
            field,
            format!(
                "backup {} holds no {} part",
                backup.id,
                &field["include_".len()..]
            ),
        )),
        (wanted, has) => Ok(has && wanted != Some(false)),
    };
    let do_files = part(
        req.include_files,
        backup.has_part("files"),
        "include_files",
        ErrorCode::BackupHasNoFiles,
    )?;
    let do_database = part(
        req.include_database,
        backup.has_part("database"),
        "include_database",
        ErrorCode::BackupHasNoDatabase,
    )?;
    if !do_files && !do_database {
        return Err(ApiError::bad_request(
            ErrorCode::NothingToRestore,
            "include_files",
            "the restore would include neither files nor a database",
        ));
    }
    // An SQLite file inside the directory travels with the files.
    let db_with_files = do_files && spec.sqlite_inside_files().is_some();
    let separate_db = do_database && !db_with_files;
    // The field a refusal names: `target`, or its part in the object form.
    let object = matches!(req.target, Some(serde_json::Value::Object(_)));
    let (files_field, db_field) = if object {
        ("target.files", "target.database")
    } else {
        ("target", "target")
    };
    let (files_text, db_text): (Option<String>, Option<String>) = match &req.target {
        None | Some(serde_json::Value::Null) => (None, None),
        Some(serde_json::Value::String(t)) => {
            reject_nul(t, "target")?;
            match (do_files, separate_db) {
                (true, false) => (Some(t.clone()), None),
                (false, true) => (None, Some(t.clone())),
                _ if !t.starts_with('/') => {
                    check_target_name(t)?;
                    let db = match &spec.database {
                        Some(DatabaseSpec::Postgres(pg)) => PostgresUrl::stored(&pg.url)
                            .map(|u| format!("{}_{t}", u.database))
                            .unwrap_or_else(|_| t.clone()),
                        _ => t.clone(),
                    };
                    (Some(t.clone()), Some(db))
                }
                _ => {
                    return Err(ApiError::bad_request(ErrorCode::AmbiguousTarget,
                        "target",
                        "this restore writes files and a database: give {\"files\": \"/path\", \"database\": \"name\"} (or a bare name for both)",
                    ))
                }
            }
        }
        Some(serde_json::Value::Object(map)) => {
            let mut files = None;
            let mut database = None;
            for (key, value) in map {
                let text = match value {
                    serde_json::Value::String(v) => {
                        reject_nul(v, &format!("target.{key}"))?;
                        v.clone()
                    }
                    _ => {
                        return Err(ApiError::bad_request(
                            ErrorCode::InvalidTarget,
                            &format!("target.{key}"),
                            "must be a string",
                        ))
                    }
                };
                match key.as_str() {
                    "files" => files = Some(text),
                    "database" => database = Some(text),
                    _ => {
                        return Err(ApiError::bad_request(
                            ErrorCode::InvalidTarget,
                            &format!("target.{key}"),
                            "unknown part; expected `files` or `database`",
                        ))
                    }
                }
            }
            (files, database)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidTarget,
                "target",
                "must be a string or an object {\"files\", \"database\"}",
            ))
        }
    };
    let files = match files_text.filter(|_| do_files) {
        Some(t) => Some(resolve_target(&t, source, files_field)?),
        None => None,
    };
    let database = match db_text.filter(|_| separate_db) {
        Some(t) => Some(resolve_database_target(&t, spec)?),
        None => None,
    };
    // Where the files and an SQLite file would be written (the source's own places when
    // no target is given) must be places a restore may replace.
    if do_files {
        let written = files
            .clone()
            .or_else(|| spec.files.as_ref().map(|f| f.path.clone()));
        if let Some(path) = written {
            policy.restore_target(&path, files_field)?;
        }
    }
    if separate_db {
        if let Some(DatabaseSpec::Sqlite(s)) = &spec.database {
            let written = database
                .as_ref()
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| s.path.clone());
            policy.restore_target(&written, db_field)?;
        }
    }
    Ok(RestorePlan {
        do_files,
        do_database,
        files,
        database,
    })
}

/// A database target: a PostgreSQL database name (a bare name given for both parts
/// becomes `<database>_<name>`), or an SQLite file (an absolute path, or a name: beside
/// the source's file).
fn resolve_database_target(target: &str, spec: &SourceSpec) -> ApiResult<String> {
    let field = "target";
    match &spec.database {
        Some(DatabaseSpec::Postgres(_)) => {
            Ok(strata_core::model::parse_pg_identifier(target, field)?)
        }
        Some(DatabaseSpec::Sqlite(s)) => {
            if target.starts_with('/') {
                return Ok(parse_absolute_path(target, field)?
                    .to_string_lossy()
                    .into_owned());
            }
            check_target_name(target)?;
            let mut sibling = s.path.clone().into_os_string();
            sibling.push(".");
            sibling.push(target);
            Ok(std::path::PathBuf::from(sibling)
                .to_string_lossy()
                .into_owned())
        }
        None => Err(ApiError::bad_request(
            ErrorCode::InvalidTarget,
            field,
            "the source no longer has a database to restore through",
        )),
    }
}

fn check_target_name(target: &str) -> ApiResult<()> {
    let named = !target.is_empty()
        && target.len() <= 64
        && target
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !named {
        return Err(ApiError::bad_request(ErrorCode::InvalidTarget,
            "target",
            "must be an absolute path, or a name of a-z, 0-9, `_` and `-` (restored beside the source)",
        ));
    }
    Ok(())
}

/// Where a restore goes: an absolute path, or a name (`[a-z0-9_-]`, at most 64
/// characters, as the bot platform's `"target": "staging"`) meaning a directory beside
/// the source's own: `/srv/app` restored to `staging` lands in `/srv/app.staging`.
fn resolve_target(
    target: &str,
    source: &db::sources::SourceRow,
    field: &str,
) -> ApiResult<std::path::PathBuf> {
    if target.starts_with('/') {
        return Ok(parse_absolute_path(target, field)?);
    }
    check_target_name(target)?;
    let files = source.spec.0.files.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidTarget,
            "target",
            "this source has no directory to restore beside; give an absolute path",
        )
    })?;
    let mut sibling = files.path.clone().into_os_string();
    sibling.push(".");
    sibling.push(target);
    Ok(std::path::PathBuf::from(sibling))
}
