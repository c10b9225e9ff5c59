//! `/api/v1/users`: accounts that log in with an email and a password (admin). Passwords
//! are stored as argon2id hashes only, and never logged or returned.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_auth::{password, Role};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use utoipa::ToSchema;

use super::keys::RoleName;
use crate::auth::Principal;
use crate::error::{reject_nul, ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// A new user. (No `Debug`: it holds a password.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// `name@domain`, at most 254 characters; unique whatever its letter case.
    #[schema(example = "ops@example.com", max_length = 254)]
    pub email: String,
    /// At least 12 characters.
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub password: String,
    #[schema(value_type = RoleName)]
    pub role: String,
}

/// A user as shown: never their password or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    pub created_at: DateTime<Utc>,
    /// Who created it (`key:<id>`, `user:<id>`, `cli:<login>`).
    pub created_by: Option<String>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub password_changed_at: DateTime<Utc>,
}

impl From<db::users::UserRow> for UserView {
    fn from(u: db::users::UserRow) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            created_at: u.created_at,
            created_by: u.created_by,
            last_login_at: u.last_login_at,
            password_changed_at: u.password_changed_at,
        }
    }
}

/// Every user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserView>,
}

/// Checks an email's shape: `local@domain`, no spaces or control characters, at most
/// 254 characters. (Whether it receives mail is not Strata's business.)
pub fn check_email(email: &str, field: &str) -> ApiResult<()> {
    reject_nul(email, field)?;
    let bad = |why: &str| Err(ApiError::bad_request(ErrorCode::InvalidEmail, field, why));
    let email = email.trim();
    if email.is_empty() || email.len() > 254 {
        return bad("must be an email address of at most 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => bad("must be an email address (name@domain)"),
    }
}

/// Checks a new password against the policy (`weak_password`, naming `field`).
pub fn check_password(pw: &str, field: &str) -> ApiResult<()> {
    password::check_policy(pw)
        .map_err(|why| ApiError::bad_request(ErrorCode::WeakPassword, field, why))
}

/// Hashes a password off the async threads (argon2id takes tens of milliseconds).
pub async fn hash_password(pw: String) -> ApiResult<String> {
    web::block(move || password::hash(&pw))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing task failed: {e}")))?
        .map_err(ApiError::internal)
}

/// Creates a user who can log in with `POST /api/v1/auth/login`.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "`invalid_email`, `weak_password` (under 12 characters), `invalid_role`, \
            `invalid_body`; `field` names it", body = ErrorBody),
        (status = 409, description = "A user with this email exists (`email_taken`)", body = ErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::body::JsonBody<CreateUser>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    check_email(&body.email, "email")?;
    check_password(&body.password, "password")?;
    let role = Role::parse(&body.role)?;
    let creator = req.extensions().get::<Principal>().map(|p| p.actor.clone());
    let hash = hash_password(body.password).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut conn = state.pool.acquire().await?;
    let row = db::users::insert(
        &mut conn,
        &db::users::NewUser {
            id: &id,
            email: &body.email,
            role: role.as_str(),
            password_hash: &hash,
            created_by: creator.as_deref(),
        },
    )
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e, db::users::EMAIL_UNIQUE) {
            let mut err = ApiError::new(
                ErrorCode::EmailTaken,
                format!(
                    "a user with the email {:?} exists already",
                    body.email.trim()
                ),
            );
            err.field = Some("email".into());
            err
        } else {
            e.into()
        }
    })?;
    tracing::info!(user_id = %row.id, role = %row.role, "user created");
    Ok(HttpResponse::Created().json(UserView::from(row)))
}

/// Lists every user.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses((status = 200, description = "The users, by email", body = UserList)),
)]
pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let items = db::users::list(&mut conn)
        .await?
        .into_iter()
        .map(UserView::from)
        .collect();
    Ok(HttpResponse::Ok().json(UserList { items }))
}

/// Deletes a user; every session of theirs ends at once.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user (`user_not_found`)", body = ErrorBody),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let not_found = || {
        ApiError::new(
            ErrorCode::UserNotFound,
            format!("no user {:?}", path.as_str()),
        )
    };
    if path.contains('\0') || path.len() > 64 {
        return Err(not_found());
    }
    let mut conn = state.pool.acquire().await?;
    if !db::users::delete(&mut conn, &path).await? {
        return Err(not_found());
    }
    tracing::info!(user_id = %path.as_str(), "user deleted");
    Ok(HttpResponse::NoContent().finish())
}
