//! `GET /api/v1/backup/{id}/download`: a backup's content (its chain resolved) as a tar
//! (default) or zip stream, or its database part as the database's own file (an SQLite
//! database, or `pg_dump`'s plain SQL), built while it is sent, in constant memory.
//! Authorised by a bearer credential or a file token (`?token=`, checked by the
//! authorization middleware).

use actix_web::http::header::{
    ContentDisposition, DispositionParam, DispositionType, ETag, EntityTag,
};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use strata_core::errors::ErrorCode;
use strata_core::model::{ArchiveFormat, BackupStatus, DownloadPart};
use strata_engine::repo::chain::load_chain;
use strata_engine::repo::export::{export_content, ArchiveStream, Content};
use strata_engine::repo::manifest::DatabasePart;
use strata_engine::repo::session::Session;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas::{ArchiveFormatName, DownloadPartName};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// How to download; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The archive: `tar` (default) or `zip`. Not with `part=database` (a database
    /// downloads as its own file: `format_not_applicable`). Given for a backup that
    /// holds only a database, it asks for an archive holding that database's file.
    #[param(value_type = Option<ArchiveFormatName>)]
    pub format: Option<String>,
    /// `files`: an archive of the files part alone. `database`: the database part as its
    /// own file (`.db`, `application/x-sqlite3`; PostgreSQL: plain SQL for `psql`,
    /// `.sql`, `application/sql`). Absent: the whole backup as an archive (the database
    /// inside it, see docs/DATABASES.md), or, for a backup that holds only a database,
    /// that database's file.
    #[param(value_type = Option<DownloadPartName>, inline)]
    pub part: Option<String>,
    /// Only this path of the backup (a file or a directory, relative to its root), with
    /// the directories leading to it, in the archive; a path the backup does not hold is
    /// `404 path_not_found`.
    pub include: Option<String>,
    /// A file token from `POST /api/v1/files/token`, instead of a bearer header; the
    /// middleware has already checked it.
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// What a download sends, from its query and what the backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Archive {
        format: ArchiveFormat,
        files: bool,
        database: bool,
    },
    Database,
}

impl DownloadQuery {
    /// What to send of a backup holding `parts`; a `400` names the parameter at fault.
    fn wanted(&self, has_files: bool, has_database: bool) -> ApiResult<Wanted> {
        let part = self.part.as_deref().map(DownloadPart::parse).transpose()?;
        let format = self
            .format
            .as_deref()
            .map(ArchiveFormat::parse)
            .transpose()?;
        match part {
            Some(DownloadPart::Database) => {
                if format.is_some() {
                    return Err(ApiError::bad_request(
                        ErrorCode::FormatNotApplicable,
                        "format",
                        "a database part downloads as its own file, not an archive; leave out `format`, or leave out `part` for an archive of the whole backup",
                    ));
                }
                if !has_database {
                    return Err(ApiError::bad_request(
                        ErrorCode::BackupHasNoDatabase,
                        "part",
                        "this backup holds no database part",
                    ));
                }
                Ok(Wanted::Database)
            }
            Some(DownloadPart::Files) => {
                if !has_files {
                    return Err(ApiError::bad_request(
                        ErrorCode::BackupHasNoFiles,
                        "part",
                        "this backup holds no files part",
                    ));
                }
                Ok(Wanted::Archive {
                    format: format.unwrap_or(ArchiveFormat::Tar),
                    files: true,
                    database: false,
                })
            }
            None => match format {
                None if has_database && !has_files => Ok(Wanted::Database),
                format => Ok(Wanted::Archive {
                    format: format.unwrap_or(ArchiveFormat::Tar),
                    files: has_files,
                    database: has_database,
                }),
            },
        }
    }
}

/// A complete backup's content, its chain resolved, as a tar (default) or zip archive
/// streamed while it is built; or its database part as the database's own file.
#[utoipa::path(
    get,
    path = "/api/v1/backup/{backup_id}/download",
    tag = "backups",
    params(
        ("backup_id" = String, Path, description = "The backup's id; a trailing `.db`, `.sql`, `.tar` or `.zip` \
            (the `filename` the backup list gives) names the same backup"),
        DownloadQuery,
    ),
    responses(
        (status = 200, description = "The archive, or the database's own file",
            content(("application/x-tar"), ("application/zip"), ("application/x-sqlite3"), ("application/sql")),
            headers(("Content-Disposition" = String,
                description = "An archive: `attachment; filename=\"<backup id>_<completed, YYYYmmdd_HHMMSS>.<tar|zip>\"`; \
                    a database: `attachment; filename=\"<backup id>.<db|sql>\"`"),
                ("Content-Length" = u64, description = "A database download's size (archives are chunked)"),
                ("ETag" = String, description = "A database download's: the same for the same content"))),
        (status = 400, description = "A parameter is invalid or unknown (`invalid_query`, `invalid_archive_format`, \
            `invalid_download_part`, `format_not_applicable`), or the part asked for is not in the backup \
            (`backup_has_no_database`, `backup_has_no_files`); `field` names it", body = ErrorBody),
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
    // The parameters are checked before anything is looked up: a bad one is a `400`
    // whatever the backup.
    query.wanted(true, true)?;
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
    let wanted = query.wanted(backup.has_part("files"), backup.has_part("database"))?;
    let repo = state.repo().await?;
    // Held until the stream ends: garbage collection keeps what the export may still read.
    let session = Session::start(&state.pool, "download", None, None).await?;
    let manifest = repo.get_manifest(&backup.id).await?;
    let mut response = HttpResponse::Ok();
    let (filename, content) = match wanted {
        Wanted::Database => {
            let part = manifest.database.as_ref().ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!(
                    "backup {} lists a database part its manifest does not hold",
                    backup.id
                ))
            })?;
            let (ext, content_type) = database_file(part);
            response
                .content_type(content_type)
                .insert_header(ETag(etag(part)))
                .no_chunking(part.size);
            (format!("{}.{ext}", backup.id), Content::Database)
        }
        Wanted::Archive {
            format,
            files,
            database,
        } => {
            let completed = backup.completed_at.unwrap_or(backup.created_at);
            response.content_type(match format {
                ArchiveFormat::Tar => "application/x-tar",
                ArchiveFormat::Zip => "application/zip",
            });
            (
                format!(
                    "{}_{}.{}",
                    backup.id,
                    completed.format("%Y%m%d_%H%M%S"),
                    format.as_str()
                ),
                Content::Archive {
                    format,
                    files,
                    database,
                },
            )
        }
    };
    // The database part is read from this backup's own manifest; only files need the chain.
    let chain = match content {
        Content::Archive { files: true, .. } => load_chain(repo, manifest).await?,
        _ => vec![manifest],
    };
    let include = checked_include(&state, query.include.as_deref(), &chain, content).await?;
    let blocks = export_content(
        repo.clone(),
        strata_engine::repo::index::PgIndex::shared(state.pool.clone()),
        chain,
        content,
        include,
        state.config.body_idle_timeout,
        permit,
    );
    Ok(response
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .streaming(body(blocks, session)))
}

/// The extension and media type of a database part downloaded as its own file.
fn database_file(part: &DatabasePart) -> (&'static str, &'static str) {
    match part.engine.as_str() {
        "sqlite" => ("db", "application/x-sqlite3"),
        _ => ("sql", "application/sql"),
    }
}

/// A database download's entity tag: its chunk ids name its content.
fn etag(part: &DatabasePart) -> EntityTag {
    let mut hasher = blake3::Hasher::new();
    for chunk in &part.chunks {
        hasher.update(&chunk.0);
    }
    EntityTag::new_strong(hex::encode(&hasher.finalize().as_bytes()[..16]))
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

/// The `include` path of an archive download, checked to be in the backup (a walk of
/// its tree, streaming): a typo is a `404`, never an empty archive.
async fn checked_include(
    state: &AppState,
    include: Option<&str>,
    chain: &[strata_engine::repo::manifest::Manifest],
    content: Content,
) -> ApiResult<Vec<std::path::PathBuf>> {
    let Some(include) = include else {
        return Ok(Vec::new());
    };
    if !matches!(content, Content::Archive { files: true, .. }) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "include",
            "selects a path of the files part: ask for an archive of the files",
        ));
    }
    let path = strata_core::model::parse_relative_path(include.trim_matches('/'), "include")?;
    let reader = super::browse::tree_reader(state).await?;
    let (chain, wanted) = (chain.to_vec(), path.clone());
    let found = super::browse::walk(move |handle| {
        strata_engine::repo::browse::find_entry(
            strata_engine::repo::chain::resolve_from(reader, handle, &chain, Some(&wanted)),
            &wanted,
        )
    })
    .await?;
    if found.is_none() {
        let mut e = ApiError::new(
            ErrorCode::PathNotFound,
            format!("{include:?} is not in this backup"),
        );
        e.field = Some("include".into());
        return Err(e);
    }
    Ok(vec![path])
}
