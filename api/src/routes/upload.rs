//! `POST /api/v1/backup/upload`: import a tar or zip archive as a new full backup.
//!
//! The body (raw, or the `file` field of a multipart form) is streamed to a temp file
//! while counted against `STRATA_UPLOAD_MAX_BYTES`, inspected entry by entry (paths,
//! symlinks, sizes, compression ratio), copied to storage under `uploads/<job_id>.<ext>`,
//! and an `import` job turns it into a backup. The temp file is removed in every case.

use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_core::errors::ErrorCode;

use actix_multipart::{Field, Multipart};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use strata_catalog as db;
use strata_core::model::{ArchiveFormat, BackupId, BackupType, ImportPayload};
use strata_engine::archive::{self, ArchiveError, Summary};
use strata_jobs::enqueue::JobRequest;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::backups::{enqueue, explain_conflict, name_taken};
use super::jobs::status_url;
use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas::{ArchiveFormatName, ArchiveSummary, BackupTypeName};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// Where the archive goes; unknown parameters are refused. The same fields may come
/// as form fields of a multipart upload (the query wins).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Source id or name; may be left out when exactly one source exists.
    pub source: Option<String>,
    /// The new backup's name; generated when absent.
    pub name: Option<String>,
}

/// A multipart upload (documentation only: the form is read field by field).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The archive (tar or zip); its file name, less `.tar` / `.zip`, names the backup
    /// when no `name` is given.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    file: Vec<u8>,
    /// Source id or name; may be left out when exactly one source exists.
    source: Option<String>,
    /// The new backup's name.
    name: Option<String>,
}

/// An upload was accepted: the `import` job turns it into a backup; poll `status_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadAccepted {
    pub job_id: Uuid,
    #[schema(value_type = String)]
    pub backup_id: BackupId,
    pub source_id: Uuid,
    /// Always `full`.
    #[serde(rename = "type")]
    #[schema(value_type = BackupTypeName)]
    pub backup_type: BackupType,
    /// The archive's format, detected from its content.
    #[schema(value_type = ArchiveFormatName)]
    pub format: ArchiveFormat,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    pub status_url: String,
    #[schema(value_type = ArchiveSummary)]
    pub archive: Summary,
}

/// Raw body types accepted besides `multipart/form-data`.
const RAW_TYPES: &[&str] = &[
    "application/zip",
    "application/x-zip-compressed",
    "application/x-tar",
    "application/tar",
    "application/octet-stream",
];

/// Longest text field of a multipart form.
const FIELD_LIMIT: usize = 1024;

/// A temp file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the request carried.
struct Received {
    file: TempFile,
    source: Option<String>,
    name: Option<String>,
    /// The uploaded file's name, for deriving a backup name.
    filename: Option<String>,
}

/// Imports a tar or zip archive as a new full backup of a source. The archive is
/// checked entry by entry (paths, links, sizes, compression ratio) before it is accepted.
#[utoipa::path(
    post,
    path = "/api/v1/backup/upload",
    tag = "backups",
    params(UploadQuery),
    request_body(
        description = "The archive: a raw body (`application/zip`, `application/x-zip-compressed`, \
            `application/x-tar`, `application/tar` or `application/octet-stream`; the format is detected \
            from the content), or a multipart form with the field `file`",
        content(
            (UploadForm = "multipart/form-data"),
            ("application/zip"),
            ("application/x-tar"),
            ("application/octet-stream"),
        ),
    ),
    responses(
        (status = 202, description = "Accepted: the import job is queued", body = UploadAccepted),
        (status = 400, description = "Refused: not a tar or zip archive, or an unsafe or invalid entry \
            (`field` = `file`), a bad form (`invalid_body`, `file_required`), a bad name \
            (`invalid_backup_name`, `backup_name_taken`), several sources and none named (`source_required`), \
            or an unknown parameter (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
        (status = 409, description = "A backup or restore of this source is queued or running (`job_in_progress`, with `job_id`)", body = ErrorBody),
        (status = 413, description = "The upload is larger than `STRATA_UPLOAD_MAX_BYTES` (`payload_too_large`), \
            or its content larger than allowed (`archive_too_large`, `too_many_entries`); `field` = `file`", body = ErrorBody),
        (status = 415, description = "Neither a multipart form nor an accepted raw type (`unsupported_media_type`)", body = ErrorBody),
    ),
)]
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let limits = state.config.upload;
    if content_length(&req).is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large(limits.max_bytes));
    }
    let query = query.into_inner();
    // Refuse a bad name or source before reading a large body.
    if let Some(name) = query.name.as_deref().filter(|n| !n.is_empty()) {
        backup_name(name, "name")?;
    }
    if let Some(s) = &query.source {
        let mut conn = state.pool.acquire().await?;
        super::sources::named(&mut conn, s).await?;
    }
    let idle = crate::body::idle_timeout(&req);
    let received = receive(&req, payload, limits.max_bytes, idle).await?;
    let path = received.file.0.clone();
    let archive_limits = limits.archive();
    let inspected = web::block(move || -> Result<_, ArchiveError> {
        let format = archive::detect(&path)?;
        Ok((format, archive::inspect(&path, &archive_limits)?))
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("inspection task failed: {e}")))?;
    let (format, summary) = inspected.map_err(refused)?;

    let source_arg = query.source.or(received.source);
    let mut conn = state.pool.acquire().await?;
    let source =
        super::sources::named_or_only(&mut conn, source_arg.as_deref(), "to import into").await?;
    drop(conn);
    let backup_id = match (query.name.or(received.name), &received.filename) {
        (Some(name), _) if !name.is_empty() => backup_name(&name, "name")?,
        (_, Some(file)) if !file.is_empty() => backup_name(file, "file")?,
        _ => BackupId::generate(&source.name, Utc::now()),
    };
    let job_id = Uuid::now_v7();
    let upload_key = format!("uploads/{job_id}.{format}");
    state
        .storage
        .put_file(&upload_key, &received.file.0)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("storing the upload: {e}")))?;
    drop(received.file);
    let accepted = record(&state, job_id, &backup_id, source.id, &upload_key, format).await;
    if let Err(e) = accepted {
        if let Err(del) = state.storage.delete(&upload_key).await {
            tracing::warn!(key = %upload_key, error = %del, "could not remove a refused upload");
        }
        return Err(explain_conflict(&state, source.id, e).await);
    }
    tracing::info!(%job_id, backup_id = %backup_id, source = %source.name, %format,
        bytes = summary.archive_size, "upload accepted");
    Ok(HttpResponse::Accepted().json(answer(job_id, &backup_id, source.id, format, &summary)))
}

fn answer(
    job_id: Uuid,
    backup_id: &BackupId,
    source_id: Uuid,
    format: ArchiveFormat,
    summary: &Summary,
) -> UploadAccepted {
    UploadAccepted {
        job_id,
        backup_id: backup_id.clone(),
        source_id,
        backup_type: BackupType::Full,
        format,
        status: "queued".into(),
        status_url: status_url(job_id),
        archive: summary.clone(),
    }
}

/// In one transaction: the pending backup, the import job and its outbox message.
async fn record(
    state: &AppState,
    job_id: Uuid,
    backup_id: &BackupId,
    source_id: Uuid,
    upload_key: &str,
    format: ArchiveFormat,
) -> ApiResult<()> {
    let payload = ImportPayload {
        backup_id: backup_id.clone(),
        source_id,
        upload_key: upload_key.to_string(),
        format,
    };
    let mut tx = state.pool.begin().await?;
    if let Err(e) =
        db::backups::insert_pending(&mut tx, backup_id, source_id, BackupType::Full).await
    {
        if db::is_unique_violation(&e, db::backups::ID_UNIQUE) {
            return Err(name_taken(backup_id));
        }
        return Err(e.into());
    }
    enqueue(state, &mut tx, job_id, JobRequest::Import(payload)).await?;
    tx.commit().await?;
    Ok(())
}

/// A backup name from the request; a file name loses a trailing `.zip` or `.tar`.
fn backup_name(raw: &str, field: &str) -> ApiResult<BackupId> {
    let stem = raw
        .strip_suffix(".zip")
        .or_else(|| raw.strip_suffix(".tar"))
        .unwrap_or(raw);
    Ok(BackupId::parse_new(stem, field)?)
}

/// An archive refusal on the wire: the code's status (`413` for size, `400` otherwise),
/// field `file`.
fn refused(e: ArchiveError) -> ApiError {
    let mut err = ApiError::new(e.code, e.message);
    err.field = Some("file".into());
    err
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the upload is larger than {limit} bytes (STRATA_UPLOAD_MAX_BYTES)"),
    )
    .with("field", "file")
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The media type of the request, lowercased, without parameters.
fn media_type(req: &HttpRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads the archive (raw body or multipart field `file`) into a temp file.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    max: u64,
    idle: Duration,
) -> ApiResult<Received> {
    let media = media_type(req);
    let file = TempFile(
        std::env::temp_dir().join(format!("strata-upload-{}.part", Uuid::new_v4().simple())),
    );
    if media == "multipart/form-data" {
        return receive_multipart(Multipart::new(req.headers(), payload), file, max, idle).await;
    }
    if !RAW_TYPES.contains(&media.as_str()) {
        return Err(ApiError::new(
ErrorCode::UnsupportedMediaType,
            format!(
                "send the archive as multipart/form-data (field `file`) or as a raw body of type {}",
                RAW_TYPES.join(", ")
            ),
        ));
    }
    write_stream(payload, &file.0, max, idle).await?;
    Ok(Received {
        file,
        source: None,
        name: None,
        filename: None,
    })
}

async fn receive_multipart(
    mut form: Multipart,
    file: TempFile,
    max: u64,
    idle: Duration,
) -> ApiResult<Received> {
    let mut got = Received {
        file,
        source: None,
        name: None,
        filename: None,
    };
    let mut has_file = false;
    while let Some(field) = next_within(&mut form, idle).await? {
        let mut field = field.map_err(bad_form)?;
        match field.name().unwrap_or("") {
            "file" if has_file => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    "file",
                    "send one file per upload",
                ))
            }
            "file" => {
                got.filename = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .and_then(|f| f.rsplit(['/', '\\']).next())
                    .map(str::to_string);
                write_stream(&mut field, &got.file.0, max, idle).await?;
                has_file = true;
            }
            "source" => got.source = Some(text_field(&mut field, "source").await?),
            "name" => got.name = Some(text_field(&mut field, "name").await?),
            other => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    other,
                    format!("unknown form field {other:?}; expected file, source, name"),
                ))
            }
        }
    }
    if !has_file {
        return Err(ApiError::bad_request(
            ErrorCode::FileRequired,
            "file",
            "the form has no `file` field",
        ));
    }
    Ok(got)
}

async fn text_field(field: &mut Field, name: &str) -> ApiResult<String> {
    let bytes = field
        .bytes(FIELD_LIMIT)
        .await
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidBody, name, "the field is too long"))?
        .map_err(bad_form)?;
    String::from_utf8(bytes.to_vec())
        .map(|s| s.trim().to_string())
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidBody, name, "the field is not UTF-8"))
}

fn bad_form(e: actix_multipart::MultipartError) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidBody,
        format!("the multipart form cannot be read: {e}"),
    )
}

/// The stream's next item, or `408 body_timeout` when nothing arrives for `idle` (a
/// client that stalls must not hold a connection and a temp file forever).
async fn next_within<S: Stream + Unpin>(
    stream: &mut S,
    idle: Duration,
) -> ApiResult<Option<S::Item>> {
    tokio::time::timeout(idle, stream.next())
        .await
        .map_err(|_| crate::body::body_timeout(idle, Some("file")))
}

/// Writes a body stream to `path`, stopping with `413` as soon as it exceeds `max`, and
/// with `408` when it stalls for `idle`.
async fn write_stream<S, E>(mut stream: S, path: &Path, max: u64, idle: Duration) -> ApiResult<u64>
where
    S: Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("creating {}: {e}", path.display())))?;
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, out);
    let mut n: u64 = 0;
    while let Some(chunk) = next_within(&mut stream, idle).await? {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("the upload was interrupted: {e}"),
            )
        })?;
        n += chunk.len() as u64;
        if n > max {
            return Err(too_large(max));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!("writing the upload: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("writing the upload: {e}")))?;
    Ok(n)
}
