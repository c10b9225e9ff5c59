//! `/api/v1/keys`: API keys. The secret is shown once, at creation, and stored only
//! as a hash.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_shared::auth::{keys, Role};
use strata_shared::db;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub role: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
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

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateKey>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let role = Role::parse(&body.role)?;
    if body.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(ApiError::bad_request(
            "invalid_expiry",
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
    let mut view = serde_json::to_value(KeyView::from(row)).map_err(anyhow::Error::from)?;
    // The only time the secret is ever returned.
    view["key"] = serde_json::Value::String(generated.token.clone());
    Ok(HttpResponse::Created().json(view))
}

pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let items: Vec<KeyView> = db::keys::list(&mut conn)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

pub async fn revoke(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    if !db::keys::revoke(&mut conn, &path).await? {
        return Err(ApiError::not_found(
            "key_not_found",
            format!("no key {:?}", path.as_str()),
        ));
    }
    let row = db::keys::get(&mut conn, &path).await?.ok_or_else(|| {
        ApiError::not_found("key_not_found", format!("no key {:?}", path.as_str()))
    })?;
    Ok(HttpResponse::Ok().json(KeyView::from(row)))
}
