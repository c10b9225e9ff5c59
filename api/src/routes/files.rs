//! `/api/v1/files/token`: short-lived tokens that authorise a download link
//! (`?token=`), so a browser can fetch a backup without a bearer header.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_auth::file_token::Scope;
use strata_core::errors::ErrorCode;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// What a token may download. The body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Bind the token to this backup: it then downloads that backup only.
    pub backup_id: Option<String>,
}

/// A download token and how to use it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileToken {
    /// Append as `?token=<token>` to a download URL.
    pub token: String,
    /// The token's expiry: its lifetime, or the expiry of the credential that asked for
    /// it, whichever comes first.
    pub expires_at: DateTime<Utc>,
    /// The one backup the token opens, when it was asked for one.
    pub backup_id: Option<String>,
    pub usage: String,
}

/// Issues a short-lived token for download links, with the caller's identity and role.
/// The token works only as long as the credential that asked for it: revoking that API
/// key (or its expiry, or the JWT's) ends the token too.
#[utoipa::path(
    post,
    path = "/api/v1/files/token",
    tag = "files",
    request_body(content = Option<TokenRequest>, description = "Optional: `{\"backup_id\": …}` binds the token to one backup"),
    responses(
        (status = 200, description = "The token", body = FileToken),
        (status = 400, description = "Invalid body (`malformed_json`, `invalid_body`); `field` names it", body = ErrorBody),
        (status = 404, description = "No such backup (`backup_not_found`)", body = ErrorBody),
    ),
)]
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    let ask: TokenRequest = super::backups::parse_optional_body(&body)?;
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("no principal on an authenticated route"))
        })?;
    // The backup's own id (`x.db` names backup `x`): the id download routes compare with.
    let mut backup_id = None;
    if let Some(id) = &ask.backup_id {
        let mut conn = state.pool.acquire().await?;
        match super::backups::find_backup(&mut conn, id).await? {
            Some(found) => backup_id = Some(found.id),
            None => {
                let mut e = ApiError::new(ErrorCode::BackupNotFound, format!("no backup {id:?}"));
                e.field = Some("backup_id".into());
                return Err(e);
            }
        }
    }
    let scope = Scope {
        backup: backup_id.clone(),
        not_after: principal.expires_at.map(|e| e.timestamp()),
    };
    let (token, expires_at) = state.auth.file_tokens.issue_scoped(
        &principal.token_subject(),
        principal.role,
        state.auth.file_token_ttl,
        chrono::Utc::now().timestamp(),
        &scope,
    );
    Ok(HttpResponse::Ok().json(FileToken {
        token,
        expires_at,
        backup_id,
        usage: "append ?token=<token> to a download URL".into(),
    }))
}
