//! `/api/v1/auth`: logging in with an email and a password (a session token, accepted as
//! `Authorization: Bearer …` like an API key), logging out, who am I, and changing one's
//! own password.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_auth::{password, Role};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use utoipa::ToSchema;

use super::keys::RoleName;
use super::users::{check_password, hash_password, UserView};
use crate::auth::{login_allowed, login_outcome, ClientAddr, Principal, SessionRef};
use crate::error::{ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// An email and a password. (No `Debug`: it holds a password.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "ops@example.com")]
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>` until `expires_at` or logout.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserView,
}

/// The caller, as the API sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `key:<id>`, `jwt:<subject>` or `user:<id>` (as the audit log records it).
    pub actor: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    /// When the credential stops working, if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// The user, for a login session.
    pub user: Option<MeUser>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeUser {
    pub id: String,
    pub email: String,
}

/// A password change. (No `Debug`: it holds passwords.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(format = Password)]
    pub current_password: String,
    /// At least 12 characters.
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub new_password: String,
}

/// A session just opened, and the user it belongs to.
pub struct LoggedIn {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: db::users::UserRow,
}

fn client_of(req: &HttpRequest) -> String {
    req.extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| "unknown".into())
}

fn principal_of(req: &HttpRequest) -> ApiResult<Principal> {
    req.extensions().get::<Principal>().cloned().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("no principal on an authenticated route"))
    })
}

fn session_of(p: &Principal) -> ApiResult<SessionRef> {
    p.session.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::SessionRequired,
            "this is about a login session: call it with the token from POST /api/v1/auth/login, not an API key",
        )
    })
}

/// Whether `password` is the user's (off the async threads; an unknown user costs the
/// same time as a known one).
async fn password_matches(user: Option<&db::users::UserRow>, pw: &str) -> ApiResult<bool> {
    let hash = user.map(|u| u.password_hash.clone());
    let pw = pw.to_string();
    web::block(move || match hash {
        Some(h) => password::verify(&pw, &h),
        None => {
            password::verify_nothing(&pw);
            false
        }
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("password check failed: {e}")))
}

/// Checks an email and a password and opens a session: `429` while the client is locked
/// out, `401 login_failed` for a wrong pair (counted by the limiter), `403` when the user's
/// role is below `need`. The logged-in user is put into the request for the audit log.
pub async fn log_in(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    pw: &str,
    need: Option<Role>,
) -> ApiResult<LoggedIn> {
    let client = client_of(req);
    login_allowed(state, &client)?;
    let user = if email.len() <= 254 && !email.contains('\0') {
        let mut conn = state.pool.acquire().await?;
        db::users::by_email(&mut conn, email).await?
    } else {
        None
    };
    let ok = password_matches(user.as_ref(), pw).await?;
    login_outcome(state, &client, ok);
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(client = %client, "login failed");
        return Err(ApiError::new(
            ErrorCode::LoginFailed,
            "wrong email or password",
        ));
    };
    let role = Role::parse(&user.role).map_err(|e| ApiError::internal(e.into()))?;
    let now = Utc::now();
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let expires_at = now
        + chrono::Duration::from_std(state.auth.session_ttl)
            .map_err(|e| ApiError::internal(e.into()))?;
    req.extensions_mut().insert(Principal {
        actor: format!("user:{}", user.id),
        role,
        expires_at: Some(expires_at),
        backup: None,
        session: Some(SessionRef {
            session_id: session_id.clone(),
            user_id: user.id.clone(),
            email: user.email.clone(),
        }),
    });
    if let Some(need) = need.filter(|n| role < *n) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only users with the {need} role can log in here"),
        ));
    }
    let mut conn = state.pool.acquire().await?;
    db::users::open_session(&mut conn, &session_id, &user.id, expires_at, &client).await?;
    let token = state.auth.sessions.issue(
        &user.id,
        &session_id,
        now.timestamp(),
        expires_at.timestamp(),
    );
    tracing::info!(user_id = %user.id, %session_id, "user logged in");
    Ok(LoggedIn {
        token,
        expires_at,
        user,
    })
}

/// Logs in with an email and a password: a session token, valid for
/// `STRATA_SESSION_TTL_SECS` (default 1 h) or until logout, with the user's role.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong email or password (`login_failed`)", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this client (`too_many_failures`); see `Retry-After`", body = ErrorBody),
    ),
)]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::body::JsonBody<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let done = log_in(&state, &req, &body.email, &body.password, None).await?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        token: done.token,
        expires_at: done.expires_at,
        user: UserView::from(done.user),
    }))
}

/// Ends the caller's session: its token stops working at once.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "The credential is not a login session (`session_required`)", body = ErrorBody),
    ),
)]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let session = session_of(&principal_of(&req)?)?;
    let mut conn = state.pool.acquire().await?;
    db::users::revoke_session(&mut conn, &session.session_id).await?;
    tracing::info!(user_id = %session.user_id, session_id = %session.session_id, "user logged out");
    Ok(HttpResponse::NoContent().finish())
}

/// Who the caller is: their actor, role and, for a login, the user.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    responses((status = 200, description = "The caller", body = Me)),
)]
pub async fn me(req: HttpRequest) -> ApiResult<HttpResponse> {
    let p = principal_of(&req)?;
    Ok(HttpResponse::Ok().json(Me {
        actor: p.actor,
        role: p.role.as_str().into(),
        expires_at: p.expires_at,
        user: p.session.map(|s| MeUser {
            id: s.user_id,
            email: s.email,
        }),
    }))
}

/// Changes the logged-in user's own password; their other sessions end.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session of the user is logged out"),
        (status = 400, description = "`wrong_password` (`current_password`), `weak_password` (`new_password`), \
            `session_required` (an API key has no password), `invalid_body`", body = ErrorBody),
    ),
)]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::body::JsonBody<PasswordChange>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let session = session_of(&principal_of(&req)?)?;
    let client = client_of(&req);
    login_allowed(&state, &client)?;
    let mut conn = state.pool.acquire().await?;
    let user = db::users::get(&mut conn, &session.user_id).await?;
    drop(conn);
    let ok = password_matches(user.as_ref(), &body.current_password).await?;
    login_outcome(&state, &client, ok);
    if !ok {
        return Err(ApiError::bad_request(
            ErrorCode::WrongPassword,
            "current_password",
            "is not your password",
        ));
    }
    check_password(&body.new_password, "new_password")?;
    let hash = hash_password(body.new_password).await?;
    let mut conn = state.pool.acquire().await?;
    db::users::set_password(
        &mut conn,
        &session.user_id,
        &hash,
        Some(&session.session_id),
    )
    .await?;
    tracing::info!(user_id = %session.user_id, "password changed; other sessions logged out");
    Ok(HttpResponse::NoContent().finish())
}
