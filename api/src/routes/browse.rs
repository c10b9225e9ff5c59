//! Looking inside backups without restoring them: a directory's entries (`tree`), one
//! file's bytes (`file`, with `Range`), what changed between two backups (`diff`), and
//! which backups hold a path matching a glob (`search`). Everything is read from the
//! manifests with the chain resolved, streaming (`strata_engine::repo::browse`): memory
//! stays bounded whatever the size of the tree.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use strata_core::model::parse_relative_path;
use strata_engine::repo::browse::{self, Change, Listing, PathGlob, SearchFilter};
use strata_engine::repo::chain::{load_chain, resolve_from};
use strata_engine::repo::manifest::Manifest;
use strata_engine::repo::reader::ChunkReader;
use strata_engine::repo::session::Session;
use strata_engine::repo::tree::{Entry, EntryKind};
use utoipa::{IntoParams, ToSchema};

use super::cursor::{decode_path, encode_path};
use crate::error::{ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// The most entries one page holds.
const MAX_LIMIT: usize = 1000;
/// Entries a search may read in one request before it answers with `next`.
const SEARCH_BUDGET: u64 = 2_000_000;

/// One file, directory or symlink as it was in the backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct TreeEntry {
    /// The last component (lossy UTF-8 when the name is not UTF-8; see `name_raw`).
    pub name: String,
    /// Relative to the backup's root, `/`-separated.
    pub path: String,
    /// The name's bytes (standard base64) when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name_raw: Option<String>,
    #[serde(rename = "type")]
    #[schema(value_type = EntryType)]
    pub kind: &'static str,
    /// Bytes (files).
    pub size: u64,
    /// Permission bits, e.g. `420` (`0o644`).
    pub mode: u32,
    pub mtime: DateTime<Utc>,
    /// A symlink's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub target: Option<String>,
}

/// The entry types.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Deleted => "deleted",
    }
}

fn mtime(e: &Entry) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(e.mtime_ns)
}

fn view(path: &Path, e: &Entry) -> TreeEntry {
    let name = path.file_name().unwrap_or_default();
    TreeEntry {
        name: name.to_string_lossy().into_owned(),
        path: browse::shown(path),
        name_raw: browse::raw_if_not_utf8(name)
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        kind: kind_name(e.kind),
        size: e.size,
        mode: e.mode,
        mtime: mtime(e),
        target: e.target.as_ref().map(|t| t.display()),
    }
}

/// A page size: `1..=1000`, default `default`.
fn page_limit(limit: Option<i64>, default: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::bad_request(
            ErrorCode::InvalidLimit,
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// A path parameter: relative to the backup's root; empty or `/` is the root.
fn backup_path(value: Option<&str>, field: &str) -> ApiResult<PathBuf> {
    let v = value.unwrap_or("").trim_matches('/');
    if v.is_empty() || v == "." {
        return Ok(PathBuf::new());
    }
    Ok(parse_relative_path(v, field)?)
}

fn path_not_found(path: &Path, field: &str) -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::PathNotFound,
        format!("{:?} was not in this backup", browse::shown(path)),
    );
    e.field = Some(field.into());
    e
}

/// A complete backup, with its chain's manifests (full first), and a repository session
/// that keeps garbage collection away from what is read.
struct Opened {
    backup: db::backups::BackupRow,
    chain: Vec<Manifest>,
    session: Session,
}

async fn open(state: &AppState, id: &str, field: &str) -> ApiResult<Opened> {
    let backup = super::backups::complete_backup(state, id, "looked into")
        .await
        .map_err(|mut e| {
            if e.code == ErrorCode::BackupNotFound {
                e.field = Some(field.into());
            }
            e
        })?;
    let session = Session::start(&state.pool, "browse", None, None).await?;
    let repo = state.repo().await?;
    let manifest = repo.get_manifest(&backup.id).await?;
    let chain = load_chain(repo, manifest).await?;
    Ok(Opened {
        backup,
        chain,
        session,
    })
}

/// A reader for walking trees: ranged reads, no pack cache (many requests may walk at
/// once in one API process).
pub(crate) async fn tree_reader(state: &AppState) -> ApiResult<Arc<ChunkReader>> {
    let repo = state.repo().await?.clone();
    Ok(Arc::new(ChunkReader::ranged(
        repo,
        strata_engine::repo::index::PgIndex::shared(state.pool.clone()),
    )))
}

/// Runs a walk on a blocking thread.
pub(crate) async fn walk<T: Send + 'static>(
    f: impl FnOnce(tokio::runtime::Handle) -> anyhow::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || f(handle))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("a tree walk failed: {e}")))?
        .map_err(ApiError::internal)
}

/// Which part of a backup's tree to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// A directory, relative to the backup's root (empty or `/`: the root).
    pub path: Option<String>,
    /// `true`: the whole subtree, depth first; default `false` (the directory's children).
    pub recursive: Option<bool>,
    /// 1 to 1000 (default 1000).
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    pub from: Option<String>,
}

/// One page of a directory's entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct TreePage {
    pub path: String,
    pub entries: Vec<TreeEntry>,
    /// Pass as `from` for the next page; null on the last.
    pub next: Option<String>,
}

/// A directory as it was at this backup (its chain resolved): its children, names
/// sorted by their bytes, or with `recursive=true` its whole subtree, depth first.
#[utoipa::path(
    get,
    path = "/api/v1/backup/{backup_id}/tree",
    tag = "browse",
    params(("backup_id" = String, Path, description = "The backup's id"), TreeQuery),
    responses(
        (status = 200, description = "A page of entries", body = TreePage),
        (status = 400, description = "`invalid_path`, `invalid_limit`, `invalid_cursor`, `invalid_query`, or \
            `not_a_directory` (the path is a file); `field` names the parameter", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`), or the path was not in it (`path_not_found`)", body = ErrorBody),
        (status = 409, description = "The backup is not complete (`backup_not_complete`)", body = ErrorBody),
    ),
)]
pub async fn tree(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<TreeQuery>,
) -> ApiResult<HttpResponse> {
    let dir = backup_path(q.path.as_deref(), "path")?;
    let limit = page_limit(q.limit, MAX_LIMIT)?;
    let from = q.from.as_deref().map(decode_path).transpose()?;
    let recursive = q.recursive.unwrap_or(false);
    let opened = open(&state, &id, "backup_id").await?;
    let reader = tree_reader(&state).await?;
    let (chain, walk_dir) = (opened.chain, dir.clone());
    let listing = walk(move |handle| {
        // Read from the directory, or from the cursor when it is further on.
        let start = match &from {
            Some(f) if f > &walk_dir => f.clone(),
            _ => walk_dir.clone(),
        };
        let entries = resolve_from(reader, handle, &chain, Some(&start));
        browse::list_dir(entries, &walk_dir, recursive, from.as_deref(), limit)
    })
    .await;
    opened.session.end().await;
    match listing? {
        Listing::NotFound => Err(path_not_found(&dir, "path")),
        Listing::NotADirectory(e) => Err(ApiError::bad_request(
            ErrorCode::NotADirectory,
            "path",
            format!(
                "{:?} is a {} in this backup, not a directory",
                browse::shown(&dir),
                kind_name(e.kind)
            ),
        )),
        Listing::Entries(page) => Ok(HttpResponse::Ok().json(TreePage {
            path: browse::shown(&dir),
            entries: page.items.iter().map(|(p, e)| view(p, e)).collect(),
            next: page.next.as_deref().map(encode_path),
        })),
    }
}

/// Which file.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The file, relative to the backup's root.
    pub path: String,
    /// A file token, instead of a bearer header (checked by the middleware).
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// A single byte range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of `size` bytes:
/// `Ok(None)` for no (or an unusable, or a multi-range) header, which is answered with
/// the whole file as RFC 9110 allows; `Err` when it cannot be satisfied.
fn byte_range(req: &HttpRequest, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// One file's bytes as they were at this backup, streamed from the packs. `Range`
/// (one range) is answered with `206`; `ETag` is the content's hash.
#[utoipa::path(
    get,
    path = "/api/v1/backup/{backup_id}/file",
    tag = "browse",
    params(
        ("backup_id" = String, Path, description = "The backup's id"),
        FileQuery,
        ("Range" = Option<String>, Header, description = "`bytes=start-end`, `bytes=start-` or `bytes=-suffix` (one range)"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream",
            headers(("ETag" = String, description = "The content's hash"),
                ("Content-Disposition" = String, description = "`attachment; filename=\"<name>\"`"))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream",
            headers(("Content-Range" = String, description = "`bytes start-end/size`"))),
        (status = 400, description = "`invalid_path`, `invalid_query`, or `not_a_file` (a directory or a symlink); \
            `field` names the parameter", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`), or the path was not in it (`path_not_found`)", body = ErrorBody),
        (status = 409, description = "The backup is not complete (`backup_not_complete`)", body = ErrorBody),
        (status = 416, description = "The range starts past the end (`range_not_satisfiable`)", body = ErrorBody,
            headers(("Content-Range" = String, description = "`bytes */size`"))),
    ),
)]
pub async fn file(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<FileQuery>,
) -> ApiResult<HttpResponse> {
    let path = backup_path(Some(&q.path), "path")?;
    if path.as_os_str().is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::NotAFile,
            "path",
            "the root is a directory; download it with …/download",
        ));
    }
    let permit = state
        .downloads
        .clone()
        .try_acquire_owned()
        .map_err(|_| super::download::too_many_downloads(state.config.max_downloads))?;
    let opened = open(&state, &id, "backup_id").await?;
    let reader = tree_reader(&state).await?;
    let (chain, wanted, walker) = (opened.chain, path.clone(), reader.clone());
    let found = walk(move |handle| {
        browse::find_entry(resolve_from(walker, handle, &chain, Some(&wanted)), &wanted)
    })
    .await?;
    let entry = match found {
        None => {
            opened.session.end().await;
            return Err(path_not_found(&path, "path"));
        }
        Some(e) if e.kind != EntryKind::File => {
            opened.session.end().await;
            return Err(ApiError::bad_request(
                ErrorCode::NotAFile,
                "path",
                format!(
                    "{:?} is a {} in this backup; download a directory with …/download?include=",
                    browse::shown(&path),
                    kind_name(e.kind)
                ),
            ));
        }
        Some(e) => e,
    };
    let size = entry.size;
    let etag = {
        let mut h = blake3::Hasher::new();
        for c in &entry.chunks {
            h.update(&c.0);
        }
        format!("\"{}\"", h.finalize().to_hex())
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let range = match byte_range(&req, size) {
        Ok(r) => r,
        Err(()) => {
            opened.session.end().await;
            let mut e = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the file is {size} bytes"),
            );
            e.field = Some("Range".into());
            let mut res = actix_web::ResponseError::error_response(&e);
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                header::HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(res);
        }
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let locations = reader.locate(&entry.chunks).await?;
    // The chunks that hold [start, end], and how much of the first and last to skip.
    let mut parts = Vec::new();
    let mut offset = 0u64;
    for id in &entry.chunks {
        let loc = locations.get(id).cloned().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("chunk {id} is not in the chunk index"))
        })?;
        let len = loc.raw_length as u64;
        let (chunk_start, chunk_end) = (offset, offset + len);
        offset = chunk_end;
        if size == 0 || chunk_end <= start || chunk_start > end {
            continue;
        }
        let skip = start.saturating_sub(chunk_start) as usize;
        let take = (end + 1).min(chunk_end) - chunk_start.max(start);
        parts.push((*id, loc, skip, take as usize));
    }
    let body = futures::stream::iter(parts)
        .map(move |(id, loc, skip, take)| {
            let reader = reader.clone();
            async move {
                let data = reader.fetch(id, &loc).await?;
                if skip + take > data.len() {
                    anyhow::bail!("chunk {id} is shorter than the index says");
                }
                Ok::<_, anyhow::Error>(data.slice(skip..skip + take))
            }
        })
        .buffered(4)
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "a file download failed");
            std::io::Error::other(e.to_string())
        });
    // The session and the permit live as long as the body.
    let session = opened.session;
    let guarded = body.chain(futures::stream::once(async move {
        session.end().await;
        drop(permit);
        Ok(web::Bytes::new())
    }));
    let length = if size == 0 { 0 } else { end - start + 1 };
    let mut res = if range.is_some() {
        let mut r = HttpResponse::PartialContent();
        r.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")));
        r
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_LENGTH, length.to_string()))
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name.clone())],
        })
        .content_type(
            mime_guess::from_path(&name)
                .first_or_octet_stream()
                .essence_str(),
        );
    tracing::info!(backup_id = %opened.backup.id, bytes = length, "file download");
    Ok(res.streaming(guarded))
}

/// What to compare.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The backup to compare with (of the same source): the result says what changed from
    /// it to this one.
    pub against: String,
    /// 1 to 1000 changes per page (default 1000).
    pub limit: Option<i64>,
    pub from: Option<String>,
}

/// An entry's state on one side of a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Side {
    #[serde(rename = "type")]
    #[schema(value_type = EntryType)]
    pub kind: &'static str,
    pub size: u64,
    pub mtime: DateTime<Utc>,
    pub mode: u32,
}

/// A path present on both sides that changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed {
    pub path: String,
    pub before: Side,
    pub after: Side,
}

/// How many changes of each kind, over the whole comparison (not only this page).
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffCountsView {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

/// One page of differences, in path order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffPage {
    /// The backup compared with.
    pub against: String,
    pub added: Vec<TreeEntry>,
    pub removed: Vec<TreeEntry>,
    pub changed: Vec<Changed>,
    /// Over the whole comparison, on the first page (without `from`); null on later
    /// pages, which read only from their cursor on.
    pub counts: Option<DiffCountsView>,
    pub next: Option<String>,
}

fn side(e: &Entry) -> Side {
    Side {
        kind: kind_name(e.kind),
        size: e.size,
        mtime: mtime(e),
        mode: e.mode,
    }
}

/// What changed from another backup of the same source (`against`) to this one: paths
/// added, removed, and changed (a file's content, size, mtime, mode or owner; a
/// symlink's target; a directory's mode or owner — a directory's mtime follows the names
/// added or removed inside it, which are listed themselves). Computed by walking both
/// trees in order, streaming.
#[utoipa::path(
    get,
    path = "/api/v1/backup/{backup_id}/diff",
    tag = "browse",
    params(("backup_id" = String, Path, description = "The backup's id"), DiffQuery),
    responses(
        (status = 200, description = "A page of differences and the counts", body = DiffPage),
        (status = 400, description = "`different_sources` (`against`), `invalid_limit`, `invalid_cursor`, `invalid_query`", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`; `field` is `against` for the other one)", body = ErrorBody),
        (status = 409, description = "A backup is not complete (`backup_not_complete`)", body = ErrorBody),
    ),
)]
pub async fn diff(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<DiffQuery>,
) -> ApiResult<HttpResponse> {
    let limit = page_limit(q.limit, MAX_LIMIT)?;
    let from = q.from.as_deref().map(decode_path).transpose()?;
    let this = open(&state, &id, "backup_id").await?;
    let other = match open(&state, &q.against, "against").await {
        Ok(o) => o,
        Err(e) => {
            this.session.end().await;
            return Err(e);
        }
    };
    if this.backup.source_id != other.backup.source_id {
        this.session.end().await;
        other.session.end().await;
        return Err(ApiError::bad_request(
            ErrorCode::DifferentSources,
            "against",
            format!(
                "{:?} is a backup of another source than {:?}",
                other.backup.id, this.backup.id
            ),
        ));
    }
    let reader = tree_reader(&state).await?;
    let (after_chain, before_chain) = (this.chain, other.chain);
    let compared = walk(move |handle| {
        let first_page = from.is_none();
        let before = resolve_from(
            reader.clone(),
            handle.clone(),
            &before_chain,
            from.as_deref(),
        );
        let after = resolve_from(reader, handle, &after_chain, from.as_deref());
        browse::diff(before, after, from.as_deref(), limit, first_page)
    })
    .await;
    this.session.end().await;
    other.session.end().await;
    let (page, counts) = compared?;
    let counts = q.from.is_none().then_some(DiffCountsView {
        added: counts.added,
        removed: counts.removed,
        changed: counts.changed,
    });
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for Change {
        path,
        before,
        after,
    } in page.items
    {
        match (before, after) {
            (None, Some(a)) => added.push(view(&path, &a)),
            (Some(b), None) => removed.push(view(&path, &b)),
            (Some(b), Some(a)) => changed.push(Changed {
                path: browse::shown(&path),
                before: side(&b),
                after: side(&a),
            }),
            (None, None) => {}
        }
    }
    Ok(HttpResponse::Ok().json(DiffPage {
        against: other.backup.id,
        added,
        removed,
        changed,
        counts,
        next: page.next.as_deref().map(encode_path),
    }))
}

/// What to look for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Source id or name; may be left out when only one source exists.
    pub source: Option<String>,
    /// `*.conf` (a name anywhere), `etc/nginx/*`, `**/*.conf` (paths): `*` and `?` stay
    /// within a name, `**` crosses directories.
    pub glob: String,
    /// Only entries modified at or after this time (RFC 3339).
    pub newer_than: Option<String>,
    /// Only entries modified before this time (RFC 3339).
    pub older_than: Option<String>,
    /// 1 to 1000 results (default 100).
    pub limit: Option<i64>,
    pub from: Option<String>,
}

/// A path found in a backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    pub backup_id: String,
    /// When that backup was taken.
    pub backup_created_at: DateTime<Utc>,
    pub path: String,
    #[serde(rename = "type")]
    #[schema(value_type = EntryType)]
    pub kind: &'static str,
    pub size: u64,
    pub mtime: DateTime<Utc>,
}

/// Results, newest backup first, paths in order within a backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    /// Entries read by this request.
    pub scanned: u64,
    /// Pass as `from` to go on: more results may follow (the page or the request's work
    /// budget ran out). Null when every backup was searched.
    pub next: Option<String>,
}

fn time_param(value: Option<&str>, field: &str) -> ApiResult<Option<i64>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidTime,
                        field,
                        format!("{v:?} is not an RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

/// `<backup id>.<path cursor>`.
fn decode_search_cursor(c: &str) -> ApiResult<(String, Option<PathBuf>)> {
    let (id, path) = c.split_once('.').ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidCursor,
            "from",
            "not a cursor returned by this API",
        )
    })?;
    let path = if path.is_empty() {
        None
    } else {
        Some(decode_path(path)?)
    };
    Ok((id.to_string(), path))
}

/// Every complete backup of a source holding a path that matches a glob, newest backup
/// first. One request reads at most 2,000,000 entries: when it stops early it answers
/// `next`, and the search goes on from there.
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "browse",
    params(SearchQuery),
    responses(
        (status = 200, description = "Matches", body = SearchPage),
        (status = 400, description = "`invalid_glob`, `invalid_time`, `invalid_limit`, `invalid_cursor`, `source_required`, \
            `invalid_query`; `field` names the parameter", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn search(
    state: web::Data<AppState>,
    q: web::Query<SearchQuery>,
) -> ApiResult<HttpResponse> {
    let limit = page_limit(q.limit, 100)?;
    let glob = PathGlob::new(&q.glob)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidGlob, "glob", format!("{e:#}")))?;
    let filter = SearchFilter {
        newer_than_ns: time_param(q.newer_than.as_deref(), "newer_than")?,
        older_than_ns: time_param(q.older_than.as_deref(), "older_than")?,
    };
    let (mut resume_backup, mut resume_path) = match q.from.as_deref() {
        Some(c) => {
            let (id, p) = decode_search_cursor(c)?;
            (Some(id), p)
        }
        None => (None, None),
    };
    let mut conn = state.pool.acquire().await?;
    let source = super::sources::named_or_only(&mut conn, q.source.as_deref(), "to search").await?;
    // Newest first; a cursor's backup must be one of this source's.
    let backups: Vec<(String, DateTime<Utc>)> =
        db::backups::complete_of_source(&mut conn, source.id)
            .await?
            .into_iter()
            .map(|b| (b.id, b.created_at))
            .collect();
    drop(conn);
    if let Some(id) = &resume_backup {
        if !backups.iter().any(|(b, _)| b == id) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidCursor,
                "from",
                "not a cursor of this search (its backup is gone or another source's)",
            ));
        }
    }
    let glob = Arc::new(glob);
    let mut items = Vec::new();
    let mut scanned = 0u64;
    let mut next = None;
    for (backup_id, created_at) in backups {
        if let Some(id) = &resume_backup {
            if *id != backup_id {
                continue;
            }
            resume_backup = None;
        }
        if items.len() == limit || scanned >= SEARCH_BUDGET {
            next = Some(format!("{backup_id}."));
            break;
        }
        let opened = match open(&state, &backup_id, "backup_id").await {
            Ok(o) => o,
            // Deleted meanwhile: nothing of it to find.
            Err(e)
                if e.code == ErrorCode::BackupNotFound
                    || e.code == ErrorCode::BackupNotComplete =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let reader = tree_reader(&state).await?;
        let (chain, g, from) = (opened.chain, glob.clone(), resume_path.take());
        let (want, budget) = (limit - items.len(), SEARCH_BUDGET - scanned);
        let found = walk(move |handle| {
            browse::search_tree(
                resolve_from(reader, handle, &chain, from.as_deref()),
                &g,
                filter,
                from.as_deref(),
                want,
                budget,
            )
        })
        .await;
        opened.session.end().await;
        let found = found?;
        scanned += found.scanned;
        items.extend(found.hits.iter().map(|(p, e)| SearchHit {
            backup_id: backup_id.clone(),
            backup_created_at: created_at,
            path: browse::shown(p),
            kind: kind_name(e.kind),
            size: e.size,
            mtime: mtime(e),
        }));
        if let Some(p) = found.resume_after {
            next = Some(format!("{backup_id}.{}", encode_path(&p)));
            break;
        }
    }
    Ok(HttpResponse::Ok().json(SearchPage {
        items,
        scanned,
        next,
    }))
}
