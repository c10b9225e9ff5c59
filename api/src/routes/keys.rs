//! `/api/v1/keys`: API keys. The secret is shown once, at creation, and stored only
//! as a hash.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_auth::{keys, Role};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{reject_nul, ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// The roles, least powerful first, as the wire spells them (documentation only: the
/// handlers parse [`Role`], whose error names the field).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RoleName {
    Viewer,
    BackupOperator,
    Admin,
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 100 characters (after trimming spaces).
    #[schema(min_length = 1, max_length = 100, example = "ci-pipeline")]
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    /// When the key stops working; must be in the future. None: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The public part of the key (hex), used in the audit log as `key:<id>`.
    pub id: String,
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    /// Who created it (`key:<id>`, `jwt:<subject>`, or none for the bootstrap key).
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just created, with its secret: the only time it is ever shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    /// The secret (`strata_<id>_<secret>`), to send as `Authorization: Bearer <key>`. Shown only once.
    pub key: String,
}

/// Every key, revoked ones included.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

impl From<db::keys::KeyRow> for KeyView {
    fn from(k: db::keys::KeyRow) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: k.role,
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// Creates an API key; the answer holds its secret, shown only this once.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = CreateKey,
    responses((status = 201, description = "Created; `key` is the secret", body = CreatedKey)),
)]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::body::JsonBody<CreateKey>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let name = body.name.trim();
    reject_nul(name, "name")?;
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let role = Role::parse(&body.role)?;
    if body.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidExpiry,
            "expires_at",
            "must be in the future",
        ));
    }
    let creator = req.extensions().get::<Principal>().map(|p| p.actor.clone());
    let generated = keys::generate();
    let mut conn = state.pool.acquire().await?;
    let row = db::keys::insert(
        &mut conn,
        &db::keys::NewKey {
            id: &generated.id,
            name,
            role: role.as_str(),
            hash: &generated.hash,
            created_by: creator.as_deref(),
            expires_at: body.expires_at,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedKey {
        view: KeyView::from(row),
        key: generated.token.clone(),
    }))
}

/// Lists every key (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    responses((status = 200, description = "The keys", body = KeyList)),
)]
pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let items: Vec<KeyView> = db::keys::list(&mut conn)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(HttpResponse::Ok().json(KeyList { items }))
}

/// Revokes a key at once (revoking a revoked key changes nothing).
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (hex, the part after `strata_`)")),
    responses(
        (status = 200, description = "The key, revoked", body = KeyView),
        (status = 404, description = "No such key (`key_not_found`)", body = ErrorBody),
    ),
)]
pub async fn revoke(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let not_found = || {
        ApiError::new(
            ErrorCode::KeyNotFound,
            format!("no key {:?}", path.as_str()),
        )
    };
    // No key id holds a NUL (and PostgreSQL text cannot).
    if path.contains('\0') {
        return Err(not_found());
    }
    let mut conn = state.pool.acquire().await?;
    if !db::keys::revoke(&mut conn, &path).await? {
        return Err(not_found());
    }
    let row = db::keys::get(&mut conn, &path)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(KeyView::from(row)))
}
