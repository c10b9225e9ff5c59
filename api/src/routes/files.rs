//! `/api/v1/files/token`: short-lived tokens that authorise a download link
//! (`?token=`), so a browser can fetch a backup without a bearer header.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A download token and how to use it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileToken {
    /// Append as `?token=<token>` to a download URL.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub usage: String,
}

/// Issues a short-lived token for download links, with the caller's identity and role.
#[utoipa::path(
    post,
    path = "/api/v1/files/token",
    tag = "files",
    responses((status = 200, description = "The token", body = FileToken)),
)]
pub async fn token(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("no principal on an authenticated route"))
        })?;
    let (token, expires_at) = state.auth.file_tokens.issue(
        &principal.actor,
        principal.role,
        state.auth.file_token_ttl,
        chrono::Utc::now().timestamp(),
    );
    Ok(HttpResponse::Ok().json(FileToken {
        token,
        expires_at,
        usage: "append ?token=<token> to a download URL".into(),
    }))
}
