//! `/api/v1/sources`: what gets backed up.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use strata_core::model::{
    parse_absolute_path, parse_pg_identifier, parse_postgres_url, parse_source_name, DatabaseSpec,
    FieldError, FilesSpec, PostgresSecrets, PostgresSpec, PostgresUrl, SourceSpec, SqliteSpec,
};
use strata_engine::paths::PathPolicy;
use strata_engine::repo::writer::compile_excludes;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{reject_nul, ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// A new source: a directory (`files`), a database (`database`), or both, captured
/// together by each backup.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    /// Unique; letters, digits, `.`, `_` or `-`.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9._-]+$",
        example = "web-data"
    )]
    pub name: String,
    pub files: Option<CreateFiles>,
    pub database: Option<CreateDatabase>,
}

/// A database to back up: exactly one of `postgres` (a connection URL) or `sqlite` (a
/// file path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabase {
    /// `postgres://user:password@host:5432/database?sslmode=…`; every secret (the password,
    /// in the user part or as `password=`, and `sslpassword=`) is stored apart and never
    /// returned. Query parameters are libpq's; key and certificate parameters name files.
    #[schema(example = "postgres://app:secret@db.internal:5432/app")]
    pub postgres: Option<String>,
    /// Schemas to back up (PostgreSQL); all when absent.
    pub schemas: Option<Vec<String>>,
    /// The absolute path of an SQLite database file.
    #[schema(example = "/srv/app/pb_data/data.db")]
    pub sqlite: Option<String>,
}

/// A directory to back up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFiles {
    /// An absolute path, not `/`, without `..`.
    #[schema(example = "/srv/data", pattern = "^/.")]
    pub path: String,
    /// Glob patterns matched against paths relative to `path` and against base names.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The files part of a source.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilesView {
    pub path: String,
    pub exclude: Vec<String>,
}

impl From<FilesSpec> for FilesView {
    fn from(f: FilesSpec) -> Self {
        Self {
            path: f.path.to_string_lossy().into_owned(),
            exclude: f.exclude,
        }
    }
}

/// The database part of a source as clients see it: never its password.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseView {
    /// The connection URL without any secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Vec<String>>,
    /// Whether a password is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_set: Option<bool>,
    /// Whether a client key passphrase (`sslpassword`) is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslpassword_set: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<String>,
}

impl DatabaseView {
    pub fn new(spec: &DatabaseSpec, secrets: &PostgresSecrets) -> Self {
        match spec {
            DatabaseSpec::Postgres(pg) => {
                // A URL stored by an older version may still hold a secret in its query.
                let (url, in_url) = match PostgresUrl::stored(&pg.url) {
                    Ok(u) => (u.url, u.secrets),
                    Err(_) => ("[REDACTED]".to_string(), PostgresSecrets::default()),
                };
                let all = secrets.clone().or(in_url);
                Self {
                    postgres: Some(url),
                    schemas: Some(pg.schemas.clone()),
                    password_set: Some(all.password.is_some()),
                    sslpassword_set: Some(all.sslpassword.is_some()),
                    sqlite: None,
                }
            }
            DatabaseSpec::Sqlite(s) => Self {
                postgres: None,
                schemas: None,
                password_set: None,
                sslpassword_set: None,
                sqlite: Some(s.path.to_string_lossy().into_owned()),
            },
        }
    }
}

/// A source as clients see it (database passwords are never shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    pub id: Uuid,
    pub name: String,
    /// What the source is: `directory`, `postgres`, `sqlite`, `directory+postgres` or
    /// `directory+sqlite`.
    #[schema(example = "directory")]
    pub kind: String,
    pub files: Option<FilesView>,
    pub database: Option<DatabaseView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every source, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub items: Vec<SourceView>,
}

impl From<db::sources::SourceRow> for SourceView {
    fn from(r: db::sources::SourceRow) -> Self {
        let secrets = r.secrets();
        Self {
            id: r.id,
            name: r.name,
            kind: r.kind,
            database: r
                .spec
                .0
                .database
                .as_ref()
                .map(|d| DatabaseView::new(d, &secrets)),
            files: r.spec.0.files.map(FilesView::from),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Parses a request into a name, a spec and the database's secrets, naming the field
/// of the first problem.
fn parse(req: CreateSource) -> Result<(String, SourceSpec, PostgresSecrets), ApiError> {
    let name = parse_source_name(&req.name)?;
    if req.files.is_none() && req.database.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::MissingField,
            "files",
            "a source needs `files` (a directory to back up), `database`, or both",
        ));
    }
    let files = match req.files {
        Some(files) => {
            reject_nul(&files.path, "files.path")?;
            let path = parse_absolute_path(&files.path, "files.path")?;
            for pattern in &files.exclude {
                reject_nul(pattern, "files.exclude")?;
            }
            compile_excludes(&files.exclude)?;
            Some(FilesSpec {
                path,
                exclude: files.exclude,
            })
        }
        None => None,
    };
    let (database, secret) = match req.database {
        Some(db) => {
            let (spec, secret) = parse_database(db)?;
            (Some(spec), secret)
        }
        None => (None, PostgresSecrets::default()),
    };
    Ok((name, SourceSpec { files, database }, secret))
}

/// Refuses a source whose directory or SQLite file lands (every symlink followed) in
/// `/proc`, `/sys`, `/dev` or Strata's own storage: `source_not_allowed`, naming the field.
pub(crate) fn check_paths(policy: &PathPolicy, spec: &SourceSpec) -> Result<(), FieldError> {
    if let Some(files) = &spec.files {
        policy.source(&files.path, "files.path")?;
    }
    if let Some(DatabaseSpec::Sqlite(db)) = &spec.database {
        policy.source(&db.path, "database.sqlite")?;
    }
    Ok(())
}

/// A database part: exactly one engine.
pub(crate) fn parse_database(
    db: CreateDatabase,
) -> Result<(DatabaseSpec, PostgresSecrets), ApiError> {
    match (db.postgres, db.sqlite) {
        (Some(url), None) => {
            reject_nul(&url, "database.postgres")?;
            let parsed = parse_postgres_url(&url, "database.postgres")?;
            let mut schemas = Vec::new();
            for (i, schema) in db.schemas.unwrap_or_default().iter().enumerate() {
                schemas.push(parse_pg_identifier(
                    schema,
                    &format!("database.schemas[{i}]"),
                )?);
            }
            Ok((
                DatabaseSpec::Postgres(PostgresSpec {
                    url: parsed.url,
                    schemas,
                }),
                parsed.secrets,
            ))
        }
        (None, Some(path)) => {
            if db.schemas.is_some() {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidField,
                    "database.schemas",
                    "schemas apply to PostgreSQL databases only",
                ));
            }
            reject_nul(&path, "database.sqlite")?;
            let path = parse_absolute_path(&path, "database.sqlite")?;
            Ok((
                DatabaseSpec::Sqlite(SqliteSpec { path }),
                PostgresSecrets::default(),
            ))
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            ErrorCode::InvalidDatabase,
            "database",
            "give either `postgres` or `sqlite`, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            ErrorCode::InvalidDatabase,
            "database",
            "give `postgres` (a connection URL) or `sqlite` (a file path)",
        )),
    }
}

/// Creates a source.
#[utoipa::path(
    post,
    path = "/api/v1/sources",
    tag = "sources",
    request_body = CreateSource,
    responses(
        (status = 201, description = "Created", body = SourceView),
        (status = 400, description = "Invalid body (`invalid_source_name`, `invalid_path`, `invalid_exclude`, \
            `invalid_database_url`…), or a path where no source may be: `source_not_allowed` (it lands, every \
            symlink followed, in /proc, /sys, /dev or Strata's own storage); `field` names it", body = ErrorBody),
        (status = 409, description = "A source has this name (`source_name_taken`)", body = ErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    body: crate::body::JsonBody<CreateSource>,
) -> ApiResult<HttpResponse> {
    let (name, spec, secret) = parse(body.into_inner())?;
    check_paths(&state.paths, &spec)?;
    let mut conn = state.pool.acquire().await?;
    match db::sources::insert(&mut conn, Uuid::new_v4(), &name, &spec, Some(&secret)).await {
        Ok(row) => Ok(HttpResponse::Created().json(SourceView::from(row))),
        Err(e) if db::is_unique_violation(&e, db::sources::NAME_UNIQUE) => Err(ApiError::new(
            ErrorCode::SourceNameTaken,
            format!("a source named {name:?} already exists"),
        )
        .with("field", "name")),
        Err(e) => Err(e.into()),
    }
}

/// Lists every source.
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "sources",
    responses((status = 200, description = "The sources, by name", body = SourceList)),
)]
pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let items: Vec<SourceView> = db::sources::list(&mut conn)
        .await?
        .into_iter()
        .map(SourceView::from)
        .collect();
    Ok(HttpResponse::Ok().json(SourceList { items }))
}

/// One source, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    params(("id" = String, Path, description = "The source's id (UUID) or name")),
    responses(
        (status = 200, description = "The source", body = SourceView),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let row = at_path(&mut conn, &path).await?;
    Ok(HttpResponse::Ok().json(SourceView::from(row)))
}

fn not_found_at(path: &str) -> ApiError {
    ApiError::new(ErrorCode::SourceNotFound, format!("no source {path:?}"))
}

/// The source a path parameter names (id or name): `404 source_not_found` otherwise.
async fn at_path(conn: &mut sqlx::PgConnection, path: &str) -> ApiResult<db::sources::SourceRow> {
    // No name or id holds a NUL (and PostgreSQL text cannot).
    if path.contains('\0') {
        return Err(not_found_at(path));
    }
    db::sources::find(conn, path)
        .await?
        .ok_or_else(|| not_found_at(path))
}

/// Deletes a source (by id or name) that has no backups left and no job queued or
/// running; its schedules go with it, its finished jobs stay (without a source).
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    params(("id" = String, Path, description = "The source's id or name")),
    responses(
        (status = 204, description = "Deleted, with its schedules"),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
        (status = 409, description = "It still has backups (`source_has_backups`, with `backups`), \
            or a job of it is queued or running (`job_in_progress`, with `job_id`)", body = ErrorBody),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let row = at_path(&mut conn, &path).await?;
    match db::sources::delete(&mut conn, row.id).await? {
        db::sources::DeleteOutcome::Deleted => {
            tracing::info!(source_id = %row.id, source = %row.name, "source deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        db::sources::DeleteOutcome::NotFound => Err(not_found_at(&path)),
        db::sources::DeleteOutcome::HasBackups(n) => Err(ApiError::new(
            ErrorCode::SourceHasBackups,
            format!(
                "source {:?} still has {n} backup(s); delete them first (DELETE /api/v1/backup/{{id}})",
                row.name
            ),
        )
        .with("backups", n)),
        db::sources::DeleteOutcome::JobActive { job_id, kind } => Err(ApiError::new(
            ErrorCode::JobInProgress,
            format!("a {kind} job of source {:?} is queued or running", row.name),
        )
        .with("job_id", job_id.to_string())
        .with("job_kind", kind)),
    }
}

/// The source a request's `source` field names (id or name): `404 source_not_found`
/// naming the field when there is none.
pub(crate) async fn named(
    conn: &mut sqlx::PgConnection,
    source: &str,
) -> ApiResult<db::sources::SourceRow> {
    reject_nul(source, "source")?;
    db::sources::find(conn, source).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::SourceNotFound, format!("no source {source:?}"))
            .with("field", "source")
    })
}

/// The source a request names, or the only one when it names none (`400
/// source_required` when there are several); `purpose` ends the message.
pub(crate) async fn named_or_only(
    conn: &mut sqlx::PgConnection,
    source: Option<&str>,
    purpose: &str,
) -> ApiResult<db::sources::SourceRow> {
    if let Some(s) = source {
        return named(conn, s).await;
    }
    let mut all = db::sources::list(conn).await?;
    if all.len() == 1 {
        return Ok(all.remove(0));
    }
    Err(ApiError::bad_request(
        ErrorCode::SourceRequired,
        "source",
        format!("{} sources exist; name the one {purpose}", all.len()),
    ))
}
