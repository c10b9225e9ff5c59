//! `/api/v1/sources`: what gets backed up.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_shared::db;
use strata_shared::model::{parse_absolute_path, parse_source_name, FilesSpec, SourceSpec};
use strata_shared::repo::writer::compile_excludes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    pub name: String,
    pub files: Option<CreateFiles>,
    pub database: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFiles {
    pub path: String,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A source as clients see it (a later issue adds database parts, whose secrets are never shown).
#[derive(Debug, Serialize)]
pub struct SourceView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub files: Option<FilesSpec>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<db::sources::SourceRow> for SourceView {
    fn from(r: db::sources::SourceRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            kind: r.kind,
            files: r.spec.0.files,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Parses a request into a name and a spec, naming the field of the first problem.
fn parse(req: CreateSource) -> Result<(String, SourceSpec), ApiError> {
    let name = parse_source_name(&req.name)?;
    if req.database.is_some() {
        return Err(ApiError::bad_request(
            "unsupported_source_kind",
            "database",
            "database sources are not supported by this version yet; back up a directory with `files`",
        ));
    }
    let Some(files) = req.files else {
        return Err(ApiError::bad_request(
            "missing_field",
            "files",
            "a source needs `files` (a directory to back up)",
        ));
    };
    let path = parse_absolute_path(&files.path, "files.path")?;
    compile_excludes(&files.exclude)?;
    Ok((
        name,
        SourceSpec {
            files: Some(FilesSpec {
                path,
                exclude: files.exclude,
            }),
        },
    ))
}

pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<CreateSource>,
) -> ApiResult<HttpResponse> {
    let (name, spec) = parse(body.into_inner())?;
    let mut conn = state.pool.acquire().await?;
    match db::sources::insert(&mut conn, Uuid::new_v4(), &name, "directory", &spec).await {
        Ok(row) => Ok(HttpResponse::Created().json(SourceView::from(row))),
        Err(e) if db::is_unique_violation(&e, db::sources::NAME_UNIQUE) => Err(ApiError::conflict(
            "source_name_taken",
            format!("a source named {name:?} already exists"),
        )
        .with("field", "name")),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let items: Vec<SourceView> = db::sources::list(&mut conn)
        .await?
        .into_iter()
        .map(SourceView::from)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let row = db::sources::find(&mut conn, &path).await?.ok_or_else(|| {
        ApiError::not_found("source_not_found", format!("no source {:?}", path.as_str()))
    })?;
    Ok(HttpResponse::Ok().json(SourceView::from(row)))
}
