//! `/api/v1/files/token`: short-lived tokens that authorise a download link
//! (`?token=`), so a browser can fetch a backup without a bearer header.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "token": token,
        "expires_at": expires_at,
        "usage": "append ?token=<token> to a download URL",
    })))
}
