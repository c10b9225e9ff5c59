//! `GET /api/v1/backup/{id}/download`: a backup's content (its chain resolved) as a tar
//! (default) or zip stream, built while it is sent, in constant memory.
//! Authorised by a bearer credential or a file token (`?token=`, checked by the
//! authorization middleware).

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use strata_core::errors::ErrorCode;
use strata_core::model::{ArchiveFormat, BackupStatus};
use strata_engine::repo::chain::load_chain;
use strata_engine::repo::export::{export, ArchiveStream};
use strata_engine::repo::session::Session;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas::ArchiveFormatName;
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// How to download; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `tar` (default) or `zip`.
    #[param(value_type = Option<ArchiveFormatName>)]
    pub format: Option<String>,
    /// A file token from `POST /api/v1/files/token`, instead of a bearer header; the
    /// middleware has already checked it.
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// A complete backup's content, its chain resolved, as a tar (default) or zip archive
/// streamed while it is built.
#[utoipa::path(
    get,
    path = "/api/v1/backup/{backup_id}/download",
    tag = "backups",
    params(
        ("backup_id" = String, Path, description = "The backup's id"),
        DownloadQuery,
    ),
    responses(
        (status = 200, description = "The archive",
            content(("application/x-tar"), ("application/zip")),
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=\"<backup id>_<completed, YYYYmmdd_HHMMSS>.<tar|zip>\"`"))),
        (status = 400, description = "A parameter is invalid or unknown (`invalid_query`, `invalid_archive_format`); `field` names it", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`)", body = ErrorBody),
        (status = 409, description = "The backup is not complete (`backup_not_complete`)", body = ErrorBody),
        (status = 429, description = "`STRATA_MAX_DOWNLOADS` downloads are streaming already \
            (`too_many_downloads`); see `Retry-After`", body = ErrorBody),
    ),
)]
pub async fn download(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DownloadQuery>,
) -> ApiResult<HttpResponse> {
    let format = match query.format.as_deref() {
        None => ArchiveFormat::Tar,
        Some(f) => ArchiveFormat::parse(f)?,
    };
    // Held by the response body: released when the archive ends or the client goes away.
    let permit = state
        .downloads
        .clone()
        .try_acquire_owned()
        .map_err(|_| too_many_downloads(state.config.max_downloads))?;
    let backup = {
        let mut conn = state.pool.acquire().await?;
        super::backups::find_backup(&mut conn, &path)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BackupNotFound,
                    format!("no backup {:?}", path.as_str()),
                )
            })?
    };
    if backup.status != BackupStatus::Complete.as_str() {
        return Err(ApiError::new(
            ErrorCode::BackupNotComplete,
            format!(
                "backup {:?} is {}; only complete backups can be downloaded",
                backup.id, backup.status
            ),
        ));
    }
    let repo = state.repo().await?;
    // Held until the stream ends: garbage collection keeps what the export may still read.
    let session = Session::start(&state.pool, "download", None, None).await?;
    let manifest = repo.get_manifest(&backup.id).await?;
    let chain = load_chain(repo, manifest).await?;
    let completed = backup.completed_at.unwrap_or(backup.created_at);
    let filename = format!(
        "{}_{}.{}",
        backup.id,
        completed.format("%Y%m%d_%H%M%S"),
        format.as_str()
    );
    let content_type = match format {
        ArchiveFormat::Tar => "application/x-tar",
        ArchiveFormat::Zip => "application/zip",
    };
    let blocks = export(
        repo.clone(),
        strata_engine::repo::index::PgIndex::shared(state.pool.clone()),
        chain,
        format,
        state.config.body_idle_timeout,
        permit,
    );
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .streaming(body(blocks, session)))
}

/// How long a client refused for too many downloads is asked to wait.
const RETRY_AFTER_SECS: u64 = 5;

pub(crate) fn too_many_downloads(max: usize) -> ApiError {
    let mut e = ApiError::new(
ErrorCode::TooManyDownloads,
        format!(
            "{max} downloads are already being streamed (STRATA_MAX_DOWNLOADS); try again in a few seconds"
        ),
    );
    e.retry_after = Some(RETRY_AFTER_SECS);
    e
}

/// The channel as a body stream; dropping it (client gone) stops the export (which
/// gives the download's permit back) and ends the repository session.
fn body(
    blocks: ArchiveStream,
    session: Session,
) -> impl futures::Stream<Item = std::io::Result<actix_web::web::Bytes>> {
    futures::stream::unfold(
        (blocks, Some(session)),
        |(mut rx, mut session)| async move {
            match rx.recv().await {
                Some(block) => Some((block, (rx, session))),
                None => {
                    if let Some(s) = session.take() {
                        s.end().await;
                    }
                    None
                }
            }
        },
    )
}
