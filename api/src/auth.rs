//! Authentication and authorization, in one place. Every route of the route table is
//! registered behind [`authorize`] with its own [`RouteSpec`]: the check runs on the
//! resource the router actually picked (whatever the spelling of the path), identifies
//! the caller (API key, JWT or file token), checks the role, and writes the audit log.
//! A request that matches no route reaches no handler: the default service answers 404.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_core::errors::ErrorCode;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use chrono::{DateTime, Utc};
use strata_auth::file_token::FileTokenSigner;
use strata_auth::jwt::{self, JwtConfig};
use strata_auth::limiter::FailureLimiter;
use strata_auth::session::{self, SessionSigner};
use strata_auth::{keys, Role};
use strata_catalog as db;

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::routes::{Access, RouteSpec};
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `key:<id>`, `jwt:<subject>`, `user:<id>` (a login session) or
    /// `file-token:<subject>`.
    pub actor: String,
    pub role: Role,
    /// When the credential stops working (a key's or a JWT's expiry), if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// A file token issued for one backup may download only that one.
    pub backup: Option<String>,
    /// The user and session, for a login session (and a file token issued to one).
    pub session: Option<SessionRef>,
}

/// The user behind a login session.
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub session_id: String,
    pub user_id: String,
    pub email: String,
}

impl Principal {
    /// What a file token issued to this caller names as its subject: the session for a
    /// login (so the token dies with it), the actor otherwise.
    pub fn token_subject(&self) -> String {
        match &self.session {
            Some(s) => format!("session:{}", s.session_id),
            None => self.actor.clone(),
        }
    }
}

/// Everything authentication needs at run time.
pub struct AuthState {
    pub jwt: JwtConfig,
    pub sessions: SessionSigner,
    pub session_ttl: Duration,
    pub file_tokens: FileTokenSigner,
    pub file_token_ttl: Duration,
    pub limiter: FailureLimiter,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

fn unauthorized() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "missing or invalid credentials")
}

fn forbidden(need: Role) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("this operation needs the {need} role"),
    )
}

/// The credential a request carries.
enum Credential {
    Bearer(String),
    FileToken(String),
}

fn credential(
    req: &ServiceRequest,
    allow_file_token: bool,
    bare_token: bool,
) -> Result<Option<Credential>, ()> {
    if let Some(h) = req.headers().get("authorization") {
        let v = h.to_str().map_err(|_| ())?;
        let token = match v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            Some(t) => t,
            // The PocketBase SDKs send their token bare: `Authorization: <token>`.
            None if bare_token && !v.contains(' ') => v,
            None => return Err(()),
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(());
        }
        return Ok(Some(Credential::Bearer(token.to_string())));
    }
    // `x-api-secret` is seed 001's name for the same header.
    if let Some(h) = req
        .headers()
        .get("x-api-key")
        .or_else(|| req.headers().get("x-api-secret"))
    {
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

/// The live API key `id`, or `None` when it is unknown, revoked or expired.
async fn live_key(
    conn: &mut sqlx::PgConnection,
    id: &str,
) -> Result<Option<db::keys::KeyRow>, ApiError> {
    let Some(row) = db::keys::get(conn, id).await? else {
        return Ok(None);
    };
    let live = row.revoked_at.is_none() && row.expires_at.is_none_or(|e| e > Utc::now());
    Ok(live.then_some(row))
}

async fn identify(state: &AppState, cred: Credential) -> Result<Principal, ApiError> {
    let auth = &state.auth;
    let now = Utc::now().timestamp();
    match cred {
        Credential::FileToken(t) => {
            let claims = auth
                .file_tokens
                .verify(&t, now)
                .map_err(|_| unauthorized())?;
            // A file token is worth no more than the credential that asked for it: a
            // key's token dies with the key (revoked or expired); a JWT's expires with
            // the JWT (its expiry was capped when it was issued).
            let mut role = claims.role;
            if let Some(key_id) = claims.subject.strip_prefix("key:") {
                let mut conn = state.pool.acquire().await?;
                let key = live_key(&mut conn, key_id)
                    .await?
                    .ok_or_else(unauthorized)?;
                let now_role = Role::parse(&key.role).map_err(|e| ApiError::internal(e.into()))?;
                role = role.min(now_role);
            } else if let Some(session_id) = claims.subject.strip_prefix("session:") {
                // A login's token dies with the session, and is worth the user's role now.
                let mut conn = state.pool.acquire().await?;
                let (_, user) = db::users::live_session(&mut conn, session_id)
                    .await?
                    .ok_or_else(unauthorized)?;
                let now_role = Role::parse(&user.role).map_err(|e| ApiError::internal(e.into()))?;
                role = role.min(now_role);
            } else if !claims.subject.starts_with("jwt:") {
                return Err(unauthorized());
            }
            Ok(Principal {
                actor: format!("file-token:{}", claims.subject),
                role,
                expires_at: Some(claims.expires_at),
                backup: claims.backup,
                session: None,
            })
        }
        Credential::Bearer(t) if session::looks_like_session(&t) => {
            let claims = auth.sessions.verify(&t, now).map_err(|e| {
                tracing::debug!(reason = ?e, "session token refused");
                unauthorized()
            })?;
            let mut conn = state.pool.acquire().await?;
            let (session, user) = db::users::live_session(&mut conn, &claims.session_id)
                .await?
                .ok_or_else(unauthorized)?;
            if user.id != claims.user_id {
                return Err(unauthorized());
            }
            let role = Role::parse(&user.role).map_err(|e| ApiError::internal(e.into()))?;
            Ok(Principal {
                actor: format!("user:{}", user.id),
                role,
                expires_at: Some(session.expires_at),
                backup: None,
                session: Some(SessionRef {
                    session_id: session.id,
                    user_id: user.id,
                    email: user.email,
                }),
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
                expires_at: Some(claims.expires_at),
                backup: None,
                session: None,
            })
        }
        Credential::Bearer(t) => {
            let parsed = keys::parse(&t).ok_or_else(unauthorized)?;
            let mut conn = state.pool.acquire().await?;
            let row = db::keys::get(&mut conn, &parsed.id)
                .await?
                .ok_or_else(unauthorized)?;
            let live = row.revoked_at.is_none() && row.expires_at.is_none_or(|e| e > Utc::now());
            // Hash check first and always, so a revoked key costs the same time.
            if !keys::verify(&parsed, &row.hash) || !live {
                return Err(unauthorized());
            }
            let role = Role::parse(&row.role).map_err(|e| ApiError::internal(e.into()))?;
            db::keys::touch(&mut conn, &row.id).await?;
            Ok(Principal {
                actor: format!("key:{}", row.id),
                role,
                expires_at: row.expires_at,
                backup: None,
                session: None,
            })
        }
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the address
/// its `X-Forwarded-For` names (read from the right, skipping trusted proxies, so a
/// client cannot choose its own address by sending the header itself).
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[ipnet::IpNet],
) -> String {
    let Some(mut client) = peer else {
        return "unknown".into();
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&client) {
        return client.to_string();
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A hop that is not an address ends what can be believed.
            None => break,
        }
    }
    client.to_string()
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

fn client_of(req: &ServiceRequest, trusted: &[ipnet::IpNet]) -> String {
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_address(req.peer_addr().map(|a| a.ip()), &forwarded, trusted)
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
    /// The context of a request that reached `spec`'s route.
    fn new(spec: &RouteSpec, req: &ServiceRequest, client: String) -> Self {
        Self {
            request_id: req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            method: spec.method.to_string(),
            action: format!("{} {}", spec.method, spec.path),
            target: req.path().to_string(),
            client,
        }
    }

    /// The outcome the audit log records for a response's status.
    fn outcome(status: u16) -> &'static str {
        match status {
            200..=399 => "allowed",
            400..=499 => "denied",
            _ => "failed",
        }
    }

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

/// The authorization of one route, run on the resource the router matched: nothing
/// reaches the handler unless the check for this exact route said yes. Every request
/// that is refused here or reaches the handler of a non-public route is audited, with
/// the route's pattern as its action.
pub async fn authorize<B: MessageBody + 'static>(
    spec: &'static RouteSpec,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let span = tracing::Span::current();
    span.record("http.route", spec.path);
    strata_telemetry::rename(&span, format!("{} {}", spec.method, spec.path));
    let need = match spec.access {
        Access::Public => return Ok(next.call(req).await?.map_into_left_body()),
        Access::Role(need) | Access::Download(need) => Some(need),
        Access::Login | Access::Optional => None,
    };
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone()
        .into_inner();
    let client = client_of(&req, &state.auth.trusted_proxies);
    req.extensions_mut().insert(ClientAddr(client.clone()));
    let pocketbase = spec.pocketbase();
    let Some(need) = need else {
        return credential_optional(spec, &state, req, next, client).await;
    };
    let ctx = AuditContext::new(spec, &req, client);
    let allow_file_token = matches!(spec.access, Access::Download(_));
    let checked = match check(
        &state,
        &req,
        &ctx.client,
        need,
        allow_file_token,
        pocketbase,
    )
    .await
    {
        Ok(p) => in_scope(&req, p),
        Err(e) => Err(e),
    };
    let principal = match checked {
        Ok(p) => p,
        Err(e) => {
            let status = e.status.as_u16();
            let outcome = if status == 500 { "failed" } else { "denied" };
            ctx.record(&state, None, outcome, status).await;
            let res = if pocketbase {
                crate::routes::pocketbase::error_response(&e)
            } else {
                actix_web::HttpResponse::from_error(e)
            };
            return Ok(req.into_response(res).map_into_right_body());
        }
    };
    req.extensions_mut().insert(principal.clone());
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    ctx.record(
        &state,
        Some(&principal),
        AuditContext::outcome(status),
        status,
    )
    .await;
    Ok(res.map_into_left_body())
}

/// The client's address as [`authorize`] determined it, for handlers that count
/// failures themselves (logins).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// Routes that work without a credential but do more with one: a login (the handler
/// checks the password, counts failures and puts the [`Principal`] it logged in into the
/// request; audited either way), or a public answer with more for a caller who sent a
/// valid credential (`GET /api/health`: not audited; a bad credential counts as a failure
/// and is then ignored).
async fn credential_optional<B: MessageBody + 'static>(
    spec: &'static RouteSpec,
    state: &Arc<AppState>,
    req: ServiceRequest,
    next: Next<B>,
    client: String,
) -> Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    if spec.access == Access::Optional {
        match credential(&req, false, spec.pocketbase()) {
            Ok(Some(cred)) => match identify(state, cred).await {
                Ok(p) => {
                    req.extensions_mut().insert(p);
                }
                Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                    state.auth.limiter.record_failure(&client, Instant::now());
                }
                Err(e) => tracing::warn!(error = %e.message, "could not check a credential"),
            },
            Ok(None) => {}
            Err(()) => state.auth.limiter.record_failure(&client, Instant::now()),
        }
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let ctx = AuditContext::new(spec, &req, client);
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let outcome = AuditContext::outcome(status);
    let principal = res.request().extensions().get::<Principal>().cloned();
    ctx.record(state, principal.as_ref(), outcome, status).await;
    Ok(res.map_into_left_body())
}

/// A file token issued for one backup opens that backup's routes only (on the
/// PocketBase-compatible routes, `{key}` is the backup's id with `.zip`).
fn in_scope(req: &ServiceRequest, p: Principal) -> Result<Principal, ApiError> {
    let Some(scope) = &p.backup else {
        return Ok(p);
    };
    let id = req
        .match_info()
        .get("backup_id")
        .or_else(|| req.match_info().get("key"))
        .map(strata_core::model::BackupId::from_file_name);
    match id {
        Some(id) if id == scope => Ok(p),
        _ => Err(ApiError::new(
            ErrorCode::TokenScope,
            "this file token was issued for another backup",
        )),
    }
}

/// `429` while this client is locked out for failed attempts (a login's first step).
pub fn login_allowed(state: &AppState, client: &str) -> Result<(), ApiError> {
    state
        .auth
        .limiter
        .check(client, Instant::now())
        .map_err(|wait| {
            let mut e = ApiError::new(
                ErrorCode::TooManyFailures,
                "too many failed authentications from this client; try again later",
            );
            e.retry_after = Some(wait.as_secs().max(1));
            e
        })
}

/// A login's outcome, for the failure limiter.
pub fn login_outcome(state: &AppState, client: &str, succeeded: bool) {
    if succeeded {
        state.auth.limiter.record_success(client);
    } else {
        state.auth.limiter.record_failure(client, Instant::now());
    }
}

/// Identifies the caller and checks the role; 401 / 403 / 429 as the wire error. A valid
/// credential is never refused because of failures from the same client: the limiter
/// counts and refuses failed attempts only.
async fn check(
    state: &Arc<AppState>,
    req: &ServiceRequest,
    client: &str,
    need: Role,
    allow_file_token: bool,
    bare_token: bool,
) -> Result<Principal, ApiError> {
    let limiter = &state.auth.limiter;
    let failed = |record: bool| {
        if let Err(e) = login_allowed(state, client) {
            return e;
        }
        if record {
            limiter.record_failure(client, Instant::now());
        }
        unauthorized()
    };
    let cred = match credential(req, allow_file_token, bare_token) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(failed(false)),
        Err(()) => return Err(failed(true)),
    };
    let principal = match identify(state, cred).await {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return Err(failed(true)),
        Err(e) => return Err(e),
    };
    limiter.record_success(client);
    if principal.role < need {
        return Err(forbidden(need));
    }
    Ok(principal)
}

/// Builds the authentication state: JWT keys, the file-token secret every replica
/// shares (kept in the database), the failure limiter.
pub async fn setup(
    config: &crate::config::Config,
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
    let session_hex = db::settings::get_or_create(&mut conn, "session_token_secret", || {
        let mut s = [0u8; 32];
        rand::fill(&mut s);
        hex::encode(s)
    })
    .await?;
    let mut session_secret = [0u8; 32];
    hex::decode_to_slice(&session_hex, &mut session_secret)
        .context("the stored session-token secret is damaged")?;
    Ok(AuthState {
        jwt,
        sessions: SessionSigner::new(session_secret),
        session_ttl: a.session_ttl,
        file_tokens: FileTokenSigner::new(secret),
        file_token_ttl: a.file_token_ttl,
        limiter: FailureLimiter::new(a.max_failures, a.failure_window, a.lockout),
        trusted_proxies: a.trusted_proxies.clone(),
    })
}

/// Makes sure an admin can get in: the key from `STRATA_BOOTSTRAP_ADMIN_KEY`, or, when
/// no key exists at all and none is configured, a generated one printed once.
pub async fn bootstrap_admin(
    config: &crate::config::Config,
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
        match db::keys::get(&mut tx, &parsed.id).await? {
            None => {
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
            // The key was registered before: it is never re-enabled behind an admin's
            // back, but an operator locked out must learn why and how to get back in.
            Some(row) => {
                let problem = if !keys::verify(&parsed, &row.hash) {
                    Some("does not match the key registered under its id".to_string())
                } else if let Some(at) = row.revoked_at {
                    Some(format!("was revoked at {at}"))
                } else {
                    row.expires_at
                        .filter(|e| *e <= chrono::Utc::now())
                        .map(|e| format!("expired at {e}"))
                };
                if let Some(problem) = problem {
                    tracing::error!(
                        key_id = %parsed.id,
                        "STRATA_BOOTSTRAP_ADMIN_KEY {problem}: it grants no access. To get an admin key \
                         back, run `strata-api create-key --role admin` where the database is reachable"
                    );
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &str) -> Vec<ipnet::IpNet> {
        strata_core::config::parse_cidrs("test", list).unwrap()
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let peer = Some("10.0.0.5".parse().unwrap());
        // No trusted proxy: the header is the client's own word, ignored.
        assert_eq!(client_address(peer, &["1.2.3.4"], &[]), "10.0.0.5");
        let trusted = nets("10.0.0.0/8");
        assert_eq!(client_address(peer, &["1.2.3.4"], &trusted), "1.2.3.4");
        // Read from the right: what the client wrote itself (left) is not believed.
        assert_eq!(
            client_address(peer, &["6.6.6.6, 1.2.3.4"], &trusted),
            "1.2.3.4"
        );
        // Chains of trusted proxies are skipped; several headers count as one list.
        assert_eq!(
            client_address(peer, &["1.2.3.4", "10.0.0.9"], &trusted),
            "1.2.3.4"
        );
        assert_eq!(
            client_address(peer, &["[2001:db8::1]:4711, 10.1.1.1"], &trusted),
            "2001:db8::1"
        );
        // Garbage ends what can be believed; no header means the proxy itself.
        assert_eq!(
            client_address(peer, &["1.2.3.4, nonsense"], &trusted),
            "10.0.0.5"
        );
        assert_eq!(client_address(peer, &[], &trusted), "10.0.0.5");
        assert_eq!(client_address(None, &["1.2.3.4"], &trusted), "unknown");
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses_and_name_a_bad_entry() {
        assert_eq!(nets(" 10.0.0.0/8 , ::1,192.168.1.1 ").len(), 3);
        let err = strata_core::config::parse_cidrs("STRATA_TRUSTED_PROXIES", "10.0.0.0/8,nope")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STRATA_TRUSTED_PROXIES") && err.contains("nope"),
            "{err}"
        );
    }
}
