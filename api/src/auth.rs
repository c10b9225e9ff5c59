//! Authentication and authorization, in one place: every request passes through
//! [`authorize`], which finds the route's access in the route table, identifies the
//! caller (API key, JWT or file token), checks the role, and writes the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use strata_shared::auth::file_token::FileTokenSigner;
use strata_shared::auth::jwt::{self, JwtConfig};
use strata_shared::auth::limiter::FailureLimiter;
use strata_shared::auth::{keys, Role};
use strata_shared::db;

use crate::error::ApiError;
use crate::routes::{access_for, Access};
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `key:<id>`, `jwt:<subject>` or `file-token:<subject>`.
    pub actor: String,
    pub role: Role,
}

/// The request's id, for logs and the audit log.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Everything authentication needs at run time.
pub struct AuthState {
    pub jwt: JwtConfig,
    pub file_tokens: FileTokenSigner,
    pub file_token_ttl: Duration,
    pub limiter: FailureLimiter,
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid credentials",
    )
}

fn forbidden(need: Role) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this operation needs the {need} role"),
    )
}

/// The credential a request carries.
enum Credential {
    Bearer(String),
    FileToken(String),
}

fn credential(req: &ServiceRequest, allow_file_token: bool) -> Result<Option<Credential>, ()> {
    if let Some(h) = req.headers().get("authorization") {
        let v = h.to_str().map_err(|_| ())?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .ok_or(())?;
        let token = token.trim();
        if token.is_empty() {
            return Err(());
        }
        return Ok(Some(Credential::Bearer(token.to_string())));
    }
    if let Some(h) = req.headers().get("x-api-key") {
        let v = h.to_str().map_err(|_| ())?.trim();
        if v.is_empty() {
            return Err(());
        }
        return Ok(Some(Credential::Bearer(v.to_string())));
    }
    let token =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("token").cloned());
    match token {
        Some(t) if allow_file_token => Ok(Some(Credential::FileToken(t))),
        // A file token where none is accepted is a bad credential, not an anonymous call.
        Some(_) => Err(()),
        None => Ok(None),
    }
}

async fn identify(state: &AppState, cred: Credential) -> Result<Principal, ApiError> {
    let auth = &state.auth;
    let now = chrono::Utc::now().timestamp();
    match cred {
        Credential::FileToken(t) => {
            let claims = auth
                .file_tokens
                .verify(&t, now)
                .map_err(|_| unauthorized())?;
            Ok(Principal {
                actor: format!("file-token:{}", claims.subject),
                role: claims.role,
            })
        }
        Credential::Bearer(t) if jwt::looks_like_jwt(&t) => {
            let claims = jwt::verify(&t, &auth.jwt, now).map_err(|e| {
                tracing::debug!(reason = ?e, "JWT refused");
                unauthorized()
            })?;
            Ok(Principal {
                actor: format!("jwt:{}", claims.subject),
                role: claims.role,
            })
        }
        Credential::Bearer(t) => {
            let parsed = keys::parse(&t).ok_or_else(unauthorized)?;
            let mut conn = state.pool.acquire().await?;
            let row = db::keys::get(&mut conn, &parsed.id)
                .await?
                .ok_or_else(unauthorized)?;
            let live =
                row.revoked_at.is_none() && row.expires_at.is_none_or(|e| e > chrono::Utc::now());
            // Hash check first and always, so a revoked key costs the same time.
            if !keys::verify(&parsed, &row.hash) || !live {
                return Err(unauthorized());
            }
            let role = Role::parse(&row.role).map_err(|e| ApiError::internal(e.into()))?;
            db::keys::touch(&mut conn, &row.id).await?;
            Ok(Principal {
                actor: format!("key:{}", row.id),
                role,
            })
        }
    }
}

fn client_of(req: &ServiceRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// What the audit log records about one request, whatever its outcome.
struct AuditContext {
    request_id: String,
    method: String,
    /// Method and route pattern, e.g. `POST /api/v1/keys`.
    action: String,
    target: String,
    client: String,
}

impl AuditContext {
    /// Records an audit entry; an audit failure is logged, never hidden.
    async fn record(
        &self,
        state: &AppState,
        principal: Option<&Principal>,
        outcome: &str,
        status: u16,
    ) {
        let entry = db::audit::NewAudit {
            request_id: &self.request_id,
            actor: principal.map(|p| p.actor.as_str()),
            role: principal.map(|p| p.role.as_str()),
            method: &self.method,
            action: &self.action,
            target: Some(&self.target),
            outcome,
            status: status as i32,
            client: Some(&self.client),
        };
        let written = async {
            let mut conn = state.pool.acquire().await?;
            db::audit::insert(&mut conn, &entry).await
        }
        .await;
        if let Err(e) = written {
            tracing::error!(error = %e, request_id = %self.request_id, "could not write the audit log");
        }
    }
}

fn set_request_id(headers: &mut actix_web::http::header::HeaderMap, id: &str) {
    headers.insert(
        actix_web::http::header::HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(id).expect("a uuid is a header value"),
    );
}

/// The middleware.
pub async fn authorize<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let request_id = uuid::Uuid::now_v7().to_string();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone()
        .into_inner();
    let method = req.method().to_string();
    let pattern = req.match_pattern();
    let access = pattern.as_deref().and_then(|p| access_for(&method, p));
    let ctx = AuditContext {
        request_id: request_id.clone(),
        action: format!(
            "{method} {}",
            pattern.as_deref().unwrap_or("(unknown route)")
        ),
        method,
        target: req.path().to_string(),
        client: client_of(&req),
    };

    let principal = match access {
        // No such route: the default service answers 404.
        None => None,
        Some(Access::Public) => None,
        Some(Access::Role(need)) | Some(Access::Download(need)) => {
            let allow_file_token = matches!(access, Some(Access::Download(_)));
            match check(&state, &req, &ctx.client, need, allow_file_token).await {
                Ok(p) => Some(p),
                Err(e) => {
                    let status = e.status.as_u16();
                    let outcome = if status == 500 { "failed" } else { "denied" };
                    ctx.record(&state, None, outcome, status).await;
                    let mut res = actix_web::HttpResponse::from_error(e);
                    set_request_id(res.headers_mut(), &request_id);
                    return Ok(req.into_response(res).map_into_right_body());
                }
            }
        }
    };
    if let Some(p) = &principal {
        req.extensions_mut().insert(p.clone());
    }
    let mut res = next.call(req).await?;
    set_request_id(res.headers_mut(), &request_id);
    if access.is_some() && ctx.method != "GET" && ctx.method != "HEAD" {
        let status = res.status().as_u16();
        let outcome = match status {
            200..=399 => "allowed",
            400..=499 => "denied",
            _ => "failed",
        };
        ctx.record(&state, principal.as_ref(), outcome, status)
            .await;
    }
    Ok(res.map_into_left_body())
}

/// Identifies the caller and checks the role; 401 / 403 / 429 as the wire error.
async fn check(
    state: &Arc<AppState>,
    req: &ServiceRequest,
    client: &str,
    need: Role,
    allow_file_token: bool,
) -> Result<Principal, ApiError> {
    if let Err(wait) = state.auth.limiter.check(client, Instant::now()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            "too many failed authentications from this client; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let cred = match credential(req, allow_file_token) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(unauthorized()),
        Err(()) => {
            state.auth.limiter.record_failure(client, Instant::now());
            return Err(unauthorized());
        }
    };
    let principal = match identify(state, cred).await {
        Ok(p) => p,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                state.auth.limiter.record_failure(client, Instant::now());
            }
            return Err(e);
        }
    };
    state.auth.limiter.record_success(client);
    if principal.role < need {
        return Err(forbidden(need));
    }
    Ok(principal)
}

/// Builds the authentication state: JWT keys, the file-token secret every replica
/// shares (kept in the database), the failure limiter.
pub async fn setup(
    config: &strata_shared::config::Config,
    pool: &sqlx::PgPool,
) -> anyhow::Result<AuthState> {
    use anyhow::Context;
    let a = &config.auth;
    let jwks = match &a.jwt_jwks_file {
        Some(path) => {
            let raw = std::fs::read(path)
                .with_context(|| format!("STRATA_JWT_JWKS_FILE: reading {}", path.display()))?;
            Some(jwt::Jwks::parse(&raw).context("STRATA_JWT_JWKS_FILE")?)
        }
        None => None,
    };
    let jwt = JwtConfig {
        hs256_keys: a.jwt_hs256_keys.clone(),
        jwks,
        issuer: a.jwt_issuer.clone(),
        audience: a.jwt_audience.clone(),
        leeway_secs: a.jwt_leeway_secs,
        role_claim: a.jwt_role_claim.clone(),
    };
    let mut conn = pool.acquire().await?;
    let secret_hex = db::settings::get_or_create(&mut conn, "file_token_secret", || {
        let mut s = [0u8; 32];
        rand::fill(&mut s);
        hex::encode(s)
    })
    .await?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(&secret_hex, &mut secret)
        .context("the stored file-token secret is damaged")?;
    Ok(AuthState {
        jwt,
        file_tokens: FileTokenSigner::new(secret),
        file_token_ttl: a.file_token_ttl,
        limiter: FailureLimiter::new(a.max_failures, a.failure_window, a.lockout),
    })
}

/// Makes sure an admin can get in: the key from `STRATA_BOOTSTRAP_ADMIN_KEY`, or, when
/// no key exists at all and none is configured, a generated one printed once.
pub async fn bootstrap_admin(
    config: &strata_shared::config::Config,
    pool: &sqlx::PgPool,
    base_url: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut tx = pool.begin().await?;
    // Replicas starting together create one bootstrap key.
    sqlx::query("SELECT pg_advisory_xact_lock(7355608002)")
        .execute(&mut *tx)
        .await?;
    if let Some(token) = &config.auth.bootstrap_admin_key {
        let parsed = keys::parse(token.expose()).with_context(|| {
            format!(
                "STRATA_BOOTSTRAP_ADMIN_KEY: not a Strata API key ({})",
                keys::format_hint()
            )
        })?;
        if db::keys::get(&mut tx, &parsed.id).await?.is_none() {
            db::keys::insert(
                &mut tx,
                &db::keys::NewKey {
                    id: &parsed.id,
                    name: "bootstrap",
                    role: Role::Admin.as_str(),
                    hash: &keys::hash_secret(&parsed.id, &parsed.secret),
                    created_by: Some("STRATA_BOOTSTRAP_ADMIN_KEY"),
                    expires_at: None,
                },
            )
            .await?;
            tracing::info!(key_id = %parsed.id, "bootstrap admin key registered");
        }
    } else if db::keys::count(&mut tx).await? == 0 {
        let generated = keys::generate();
        db::keys::insert(
            &mut tx,
            &db::keys::NewKey {
                id: &generated.id,
                name: "bootstrap",
                role: Role::Admin.as_str(),
                hash: &generated.hash,
                created_by: Some("first start"),
                expires_at: None,
            },
        )
        .await?;
        // Printed once, on stdout only (never through the logs): it is not stored anywhere.
        println!(
            "\n  No API key exists yet. Generated an admin key (shown once — store it now):\n\n    {}\n\n  Call the API with it:\n    curl -H 'Authorization: Bearer {}' {base_url}/api/v1/health\n",
            generated.token, generated.token
        );
        tracing::warn!(key_id = %generated.id, "generated a bootstrap admin key (printed on stdout)");
    }
    tx.commit().await?;
    Ok(())
}
