//! The PocketBase-compatible surface (`/api/…` beside `/api/v1`): the Backups API of
//! seeds 003 / 004 and of PocketBase itself, so that programs written against the
//! PocketBase SDKs (npm, PyPI, Dart, Go) talk to Strata unchanged.
//!
//! Everything here is Strata underneath: each handler calls the `/api/v1` handler that
//! does the same thing (the same jobs, roles, audit log, metrics and traces) and
//! translates the answer: `204` where PocketBase answers nothing, and errors in
//! PocketBase's shape `{status, message, data}`. These routes serve one source (see
//! [`served_source`]); a backup's `key` is its id with `.zip`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use strata_auth::Role;
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use utoipa::ToSchema;

use super::login::log_in;
use crate::auth::Principal;
use crate::body::RawBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The collection id PocketBase gives `_superusers` (its SDKs fall back to it).
const SUPERUSERS_COLLECTION_ID: &str = "pbc_3142635823";

/// Whether a route path belongs to this surface: under `/api/` but not `/api/v1/`.
pub fn is_pocketbase_path(path: &str) -> bool {
    path.starts_with("/api/") && !path.starts_with("/api/v1/")
}

/// An error in PocketBase's shape (see [`error_response`]).
#[derive(Debug)]
pub struct PbError(pub ApiError);

impl From<ApiError> for PbError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for PbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PbError {
    fn status_code(&self) -> StatusCode {
        pb_status(&self.0)
    }

    fn error_response(&self) -> HttpResponse {
        error_response(&self.0)
    }
}

type PbResult<T> = Result<T, PbError>;

/// A body read as [`RawBody`] reads it (at most 1 MiB, stalls refused), its errors in
/// PocketBase's shape.
pub struct PbBody(pub web::Bytes);

impl actix_web::FromRequest for PbBody {
    type Error = PbError;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, PbError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let body = RawBody::from_request(req, payload);
        Box::pin(async move { body.await.map(|RawBody(b)| PbBody(b)).map_err(PbError) })
    }
}

/// The body of a PocketBase error (`ClientResponseError.response` in the SDKs).
#[derive(Debug, Serialize, ToSchema)]
pub struct PbErrorBody {
    /// The HTTP status again.
    pub status: u16,
    /// A sentence for people.
    pub message: String,
    /// Per field: `{"name": {"code": "validation_invalid_name", "message": …}}`; `{}`
    /// when no field is at fault.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

/// PocketBase answers `400` where Strata says `409` (a job in the way, a backup not
/// complete): its SDKs' callers expect that.
fn pb_status(e: &ApiError) -> StatusCode {
    match e.code {
        ErrorCode::JobInProgress | ErrorCode::BackupNotComplete | ErrorCode::LoginFailed => {
            StatusCode::BAD_REQUEST
        }
        _ => e.status,
    }
}

/// The validation code PocketBase's SDK users see for a field.
fn pb_code(code: ErrorCode) -> String {
    match code {
        ErrorCode::InvalidBackupName => "validation_invalid_name".into(),
        ErrorCode::BackupNameTaken => "validation_backup_name_exists".into(),
        other => format!("validation_{}", other.as_str()),
    }
}

/// A PocketBase-style message: a capitalised sentence with a full stop.
fn sentence(msg: &str) -> String {
    let mut out: String = msg
        .chars()
        .take(1)
        .flat_map(char::to_uppercase)
        .chain(msg.chars().skip(1))
        .collect();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Renders a Strata error as PocketBase does: `{status, message, data}`. Internal causes
/// are logged, never shown, as on every route.
pub fn error_response(e: &ApiError) -> HttpResponse {
    if let Some(source) = &e.source {
        tracing::error!(error = %format!("{source:#}"), code = e.code.as_str(), "request failed");
    }
    let status = pb_status(e);
    let message = match e.code {
        ErrorCode::JobInProgress => {
            "Try again later - another backup/restore process has already been started.".into()
        }
        ErrorCode::LoginFailed => "Failed to authenticate.".into(),
        ErrorCode::Unauthorized => "The request requires valid authorization token.".into(),
        ErrorCode::BackupNotFound | ErrorCode::NotFound => {
            "The requested resource wasn't found.".into()
        }
        _ => sentence(&e.message),
    };
    let mut data = Map::new();
    if let Some(field) = &e.field {
        data.insert(
            field.clone(),
            json!({"code": pb_code(e.code), "message": sentence(&e.message)}),
        );
    }
    let mut res = HttpResponse::build(status);
    if let Some(secs) = e.retry_after {
        res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
    }
    res.json(PbErrorBody {
        status: status.as_u16(),
        message,
        data,
    })
}

/// The source these routes serve: `STRATA_POCKETBASE_SOURCE` (a name or id), or the
/// only source; otherwise `400 pocketbase_source_required` saying how to choose.
pub async fn served_source(state: &AppState) -> ApiResult<db::sources::SourceRow> {
    let mut conn = state.pool.acquire().await?;
    if let Some(name) = &state.config.pocketbase_source {
        return db::sources::find(&mut conn, name).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::PocketbaseSourceRequired,
                format!(
                    "STRATA_POCKETBASE_SOURCE names {name:?}, but no source has that name or id"
                ),
            )
        });
    }
    let mut all = db::sources::list(&mut conn).await?;
    if all.len() == 1 {
        return Ok(all.remove(0));
    }
    Err(ApiError::new(
        ErrorCode::PocketbaseSourceRequired,
        format!(
            "{} sources exist; these routes serve one: set STRATA_POCKETBASE_SOURCE to its name",
            all.len()
        ),
    ))
}

/// The backup a `key` names (`<id>.zip`, or the bare id), when it belongs to the served
/// source: another source's backup does not exist here.
async fn backup_of_key(state: &AppState, key: &str) -> ApiResult<(String, db::sources::SourceRow)> {
    let source = served_source(state).await?;
    let id = key.strip_suffix(".zip").unwrap_or(key);
    let mut conn = state.pool.acquire().await?;
    match super::backups::find_backup(&mut conn, id).await? {
        Some(b) if b.source_id == source.id => Ok((b.id, source)),
        _ => Err(ApiError::new(
            ErrorCode::BackupNotFound,
            format!("no backup {key:?}"),
        )),
    }
}

/// A `2xx` of the Strata handler as PocketBase's empty `204`; errors in its shape.
fn no_content(res: ApiResult<HttpResponse>) -> PbResult<HttpResponse> {
    let res = res?;
    if res.status().is_success() {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Ok(res)
    }
}

/// `{identity, password}` (other fields, as PocketBase's SDKs may send, are ignored).
/// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
pub struct PasswordAuth {
    /// The user's email.
    pub identity: String,
    #[schema(format = Password)]
    pub password: String,
}

/// A superuser as PocketBase describes its records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuperuserRecord {
    pub id: String,
    pub email: String,
    /// Always `pbc_3142635823`.
    pub collection_id: String,
    /// Always `_superusers`.
    pub collection_name: String,
    pub email_visibility: bool,
    pub verified: bool,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// `{token, record}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuperuserAuth {
    /// A session token (`Authorization: <token>`), as `POST /api/v1/auth/login` issues.
    pub token: String,
    pub record: SuperuserRecord,
}

/// The older admin as PocketBase (before 0.23) described it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminRecord {
    pub id: String,
    pub email: String,
    pub avatar: u8,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// `{token, admin}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminAuth {
    pub token: String,
    pub admin: AdminRecord,
}

fn parse_password_auth(body: &[u8]) -> ApiResult<PasswordAuth> {
    let auth: PasswordAuth = crate::body::parse_json(body)?;
    Ok(auth)
}

/// Logs in an admin user; others are refused with `403`.
async fn admin_session(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> ApiResult<super::login::LoggedIn> {
    let auth = parse_password_auth(body)?;
    log_in(
        state,
        req,
        &auth.identity,
        &auth.password,
        Some(Role::Admin),
    )
    .await
}

/// PocketBase's superuser login: a Strata user with the admin role, by email and password.
#[utoipa::path(
    post,
    path = "/api/collections/_superusers/auth-with-password",
    tag = "pocketbase",
    request_body = PasswordAuth,
    responses(
        (status = 200, description = "Logged in", body = SuperuserAuth),
        (status = 400, description = "Wrong email or password, or an invalid body", body = PbErrorBody),
        (status = 403, description = "The user is not an admin", body = PbErrorBody),
        (status = 429, description = "Too many failed attempts from this client; see `Retry-After`", body = PbErrorBody),
    ),
)]
pub async fn superuser_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    PbBody(body): PbBody,
) -> PbResult<HttpResponse> {
    let done = admin_session(&state, &req, &body).await?;
    Ok(HttpResponse::Ok().json(SuperuserAuth {
        token: done.token,
        record: SuperuserRecord {
            id: done.user.id,
            email: done.user.email,
            collection_id: SUPERUSERS_COLLECTION_ID.into(),
            collection_name: "_superusers".into(),
            email_visibility: false,
            verified: true,
            created: done.user.created_at,
            updated: done.user.password_changed_at,
        },
    }))
}

/// PocketBase's admin login before 0.23 (`pb.admins.authWithPassword`).
#[utoipa::path(
    post,
    path = "/api/admins/auth-with-password",
    tag = "pocketbase",
    request_body = PasswordAuth,
    responses(
        (status = 200, description = "Logged in", body = AdminAuth),
        (status = 400, description = "Wrong email or password, or an invalid body", body = PbErrorBody),
        (status = 403, description = "The user is not an admin", body = PbErrorBody),
        (status = 429, description = "Too many failed attempts from this client; see `Retry-After`", body = PbErrorBody),
    ),
)]
pub async fn admin_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    PbBody(body): PbBody,
) -> PbResult<HttpResponse> {
    let done = admin_session(&state, &req, &body).await?;
    Ok(HttpResponse::Ok().json(AdminAuth {
        token: done.token,
        admin: AdminRecord {
            id: done.user.id,
            email: done.user.email,
            avatar: 0,
            created: done.user.created_at,
            updated: done.user.password_changed_at,
        },
    }))
}

/// `{code, message, data}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PbHealth {
    pub code: u16,
    pub message: String,
    pub data: PbHealthData,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbHealthData {
    /// For an admin caller only: no backup or restore of the served source is queued or
    /// running, and the database answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub can_backup: Option<bool>,
}

/// PocketBase's health check: public; an admin caller also learns `canBackup`.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "pocketbase",
    responses((status = 200, description = "Healthy", body = PbHealth)),
)]
pub async fn health(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let admin = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| p.role >= Role::Admin);
    let can_backup = if admin {
        Some(can_backup(&state).await)
    } else {
        None
    };
    HttpResponse::Ok().json(PbHealth {
        code: 200,
        message: "API is healthy.".into(),
        data: PbHealthData { can_backup },
    })
}

async fn can_backup(state: &AppState) -> bool {
    let Ok(source) = served_source(state).await else {
        return false;
    };
    let Ok(mut conn) = state.pool.acquire().await else {
        return false;
    };
    matches!(
        strata_jobs::store::active_for_source(&mut conn, source.id).await,
        Ok(None)
    )
}

/// `{token}` (and Strata's `expires_at`).
#[utoipa::path(
    post,
    path = "/api/files/token",
    tag = "pocketbase",
    responses((status = 200, description = "A file token for `GET /api/backups/{key}?token=`", body = super::files::FileToken)),
)]
pub async fn file_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    PbBody(body): PbBody,
) -> PbResult<HttpResponse> {
    Ok(super::files::token(state, req, RawBody(body)).await?)
}

/// One backup as PocketBase lists its backup files.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupFileInfo {
    /// `<backup id>.zip`.
    pub key: String,
    /// The backup's size (bytes of content).
    pub size: i64,
    /// When it completed.
    pub modified: DateTime<Utc>,
}

/// The served source's complete backups, newest first.
#[utoipa::path(
    get,
    path = "/api/backups",
    tag = "pocketbase",
    responses(
        (status = 200, description = "The backups", body = Vec<BackupFileInfo>),
        (status = 400, description = "No source or several (`STRATA_POCKETBASE_SOURCE`)", body = PbErrorBody),
    ),
)]
pub async fn list(state: web::Data<AppState>) -> PbResult<HttpResponse> {
    let source = served_source(&state).await?;
    let mut conn = state.pool.acquire().await.map_err(ApiError::from)?;
    let out: Vec<BackupFileInfo> = db::backups::complete_of_source(&mut conn, source.id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|b| BackupFileInfo {
            key: format!("{}.zip", b.id),
            size: b.logical_size,
            modified: b.completed_at.unwrap_or(b.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// `{name}`: optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PbCreate {
    /// `[a-z0-9_-]+.zip`; empty or absent: `pb_backup_YYYYMMDDHHMMSS.zip`.
    #[schema(example = "nightly.zip")]
    pub name: Option<String>,
}

/// Starts a full backup of the served source under `name`; `204` at once (the backup is
/// a Strata job: it appears in `GET /api/backups` when complete).
#[utoipa::path(
    post,
    path = "/api/backups",
    tag = "pocketbase",
    request_body(content = Option<PbCreate>, description = "Optional"),
    responses(
        (status = 204, description = "The backup started"),
        (status = 400, description = "Invalid or taken name (`data.name`), or a backup or restore is in progress", body = PbErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    PbBody(body): PbBody,
) -> PbResult<HttpResponse> {
    let ask: PbCreate = super::backups::parse_optional_body(&body)?;
    let name = match ask.name.as_deref().map(str::trim) {
        None | Some("") => format!("pb_backup_{}.zip", Utc::now().format("%Y%m%d%H%M%S")),
        Some(n) => n.to_string(),
    };
    let Some(stem) = name.strip_suffix(".zip").filter(|s| s.len() <= 150) else {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBackupName,
            "name",
            "must be a name of lower-case letters, digits, `_` and `-` ending in .zip",
        )
        .into());
    };
    let source = served_source(&state).await?;
    let v1 = json!({"name": stem, "source": source.id, "type": "full"});
    let v1 = web::Bytes::from(serde_json::to_vec(&v1).map_err(|e| ApiError::internal(e.into()))?);
    no_content(super::backups::create(state, req, RawBody(v1)).await)
}

/// Imports a zip (multipart field `file`) as a backup of the served source, named after
/// the file; `204` once received (the import is a Strata job).
#[utoipa::path(
    post,
    path = "/api/backups/upload",
    tag = "pocketbase",
    request_body(content = super::upload::UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 204, description = "Received; the import runs"),
        (status = 400, description = "Not an archive, a bad name, or a backup or restore in progress", body = PbErrorBody),
        (status = 413, description = "Too large", body = PbErrorBody),
    ),
)]
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> PbResult<HttpResponse> {
    let source = served_source(&state).await?;
    let query =
        web::Query::<super::upload::UploadQuery>::from_query(&format!("source={}", source.id))
            .map_err(|e| ApiError::internal(anyhow::anyhow!("building the upload query: {e}")))?;
    no_content(super::upload::upload(state, req, query, payload).await)
}

/// The backup as a zip, authorised by `?token=` (from `POST /api/files/token`) or a
/// credential.
#[utoipa::path(
    get,
    path = "/api/backups/{key}",
    tag = "pocketbase",
    params(
        ("key" = String, Path, description = "`<backup id>.zip`"),
        ("token" = Option<String>, Query, description = "A file token"),
    ),
    responses(
        (status = 200, description = "The zip", content_type = "application/zip"),
        (status = 400, description = "No source or several (`STRATA_POCKETBASE_SOURCE`), or the backup is not complete", body = PbErrorBody),
        (status = 404, description = "No such backup of the served source", body = PbErrorBody),
    ),
)]
pub async fn download(
    state: web::Data<AppState>,
    key: web::Path<String>,
) -> PbResult<HttpResponse> {
    let (id, _) = backup_of_key(&state, &key).await?;
    let query = web::Query::<super::download::DownloadQuery>::from_query("format=zip")
        .map_err(|e| ApiError::internal(anyhow::anyhow!("building the download query: {e}")))?;
    Ok(super::download::download(state, web::Path::from(id), query).await?)
}

/// Deletes a backup of the served source (as `DELETE /api/v1/backup/{id}`).
#[utoipa::path(
    delete,
    path = "/api/backups/{key}",
    tag = "pocketbase",
    params(("key" = String, Path, description = "`<backup id>.zip`")),
    responses(
        (status = 204, description = "Deleting (a Strata job)"),
        (status = 400, description = "Other backups need it, or a job needs it", body = PbErrorBody),
        (status = 404, description = "No such backup of the served source", body = PbErrorBody),
    ),
)]
pub async fn delete(state: web::Data<AppState>, key: web::Path<String>) -> PbResult<HttpResponse> {
    let (id, _) = backup_of_key(&state, &key).await?;
    let query = web::Query::<super::retention::DeleteQuery>::from_query("")
        .map_err(|e| ApiError::internal(anyhow::anyhow!("building the delete query: {e}")))?;
    no_content(super::retention::delete(state, web::Path::from(id), query).await)
}

/// Restores a backup over the served source (a backup of the current state is made
/// first, as `POST /api/v1/backup/{id}/restore` does); `204` at once.
#[utoipa::path(
    post,
    path = "/api/backups/{key}/restore",
    tag = "pocketbase",
    params(("key" = String, Path, description = "`<backup id>.zip`")),
    responses(
        (status = 204, description = "The restore started (a Strata job)"),
        (status = 400, description = "A backup or restore is in progress, or the backup is not complete", body = PbErrorBody),
        (status = 404, description = "No such backup of the served source", body = PbErrorBody),
    ),
)]
pub async fn restore(state: web::Data<AppState>, key: web::Path<String>) -> PbResult<HttpResponse> {
    let (id, _) = backup_of_key(&state, &key).await?;
    no_content(
        super::backups::restore(state, web::Path::from(id), RawBody(web::Bytes::new())).await,
    )
}
