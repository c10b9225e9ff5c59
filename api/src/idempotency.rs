//! `Idempotency-Key`: a client that retries a create (after a timeout, say) with the
//! same key and the same body gets the first answer again instead of a second job; the
//! same key with another body is a `422`. Keys are scoped to the caller and stored with
//! the answer in the transaction that creates the job, so a crash cannot separate them.

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use sqlx::PgConnection;
use strata_core::errors::ErrorCode;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

pub const HEADER: &str = "Idempotency-Key";
const MAX_LEN: usize = 255;
/// How long an answer is kept unless `STRATA_IDEMPOTENCY_TTL_SECS` says otherwise.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A request's idempotency key, with the fingerprint of what it asked.
#[derive(Debug, Clone)]
pub struct Key {
    actor: String,
    key: String,
    request_hash: String,
    /// How long the answer is kept (`STRATA_IDEMPOTENCY_TTL_SECS`): an older key is new.
    ttl: std::time::Duration,
}

impl Key {
    /// The key of a request, if it has one: `400` when it is empty, too long or not
    /// printable ASCII.
    pub fn from_request(req: &HttpRequest, body: &[u8]) -> ApiResult<Option<Self>> {
        let Some(value) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let bad = || {
            ApiError::bad_request(
                ErrorCode::InvalidIdempotencyKey,
                HEADER,
                format!("must be 1 to {MAX_LEN} printable ASCII characters"),
            )
        };
        let key = value.to_str().map_err(|_| bad())?;
        if key.is_empty() || key.len() > MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        let actor = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.actor.clone())
            .unwrap_or_default();
        let ttl = req
            .app_data::<actix_web::web::Data<crate::state::AppState>>()
            .map(|s| s.config.idempotency_ttl)
            .unwrap_or(DEFAULT_TTL);
        Ok(Some(Self {
            actor,
            key: key.to_string(),
            request_hash: fingerprint(req.method().as_str(), req.path(), body),
            ttl,
        }))
    }

    /// The stored answer for this key: `Some` to send again, `422` when the key was
    /// used for a different request, `None` when the key is new.
    pub async fn replay(&self, pool: &sqlx::PgPool) -> ApiResult<Option<HttpResponse>> {
        let mut conn = pool.acquire().await?;
        let row: Option<(String, i32, sqlx::types::Json<serde_json::Value>)> = sqlx::query_as(
            "SELECT request_hash, status, response FROM idempotency_keys
             WHERE actor = $1 AND key = $2 AND created_at >= now() - make_interval(secs => $3)",
        )
        .bind(&self.actor)
        .bind(&self.key)
        .bind(self.ttl.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((hash, status, response)) = row else {
            return Ok(None);
        };
        if hash != self.request_hash {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different request",
            )
            .with("field", HEADER));
        }
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        Ok(Some(
            HttpResponse::build(status)
                .insert_header(("Idempotent-Replayed", "true"))
                .json(response.0),
        ))
    }

    /// Stores the answer in the transaction that did the work. `false` when another
    /// request with the same key got there first (the caller rolls back and replays).
    pub async fn record(
        &self,
        tx: &mut PgConnection,
        status: u16,
        response: &serde_json::Value,
    ) -> ApiResult<bool> {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (actor, key, request_hash, status, response)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (actor, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
                    response = EXCLUDED.response, created_at = now()
              WHERE idempotency_keys.created_at < now() - make_interval(secs => $6)",
        )
        .bind(&self.actor)
        .bind(&self.key)
        .bind(&self.request_hash)
        .bind(i32::from(status))
        .bind(sqlx::types::Json(response))
        .bind(self.ttl.as_secs_f64())
        .execute(tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// What identifies a request: method, path and the body's JSON value (so whitespace and
/// key order do not matter); a body that is not JSON is hashed as bytes.
fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(method.as_bytes());
    h.update(b"\0");
    h.update(path.as_bytes());
    h.update(b"\0");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => h.update(v.to_string().as_bytes()),
        Err(_) => h.update(body),
    };
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn the_fingerprint_ignores_formatting_but_not_content() {
        let a = fingerprint("POST", "/b", br#"{"source":"a","type":"full"}"#);
        let b = fingerprint("POST", "/b", b"{ \"type\": \"full\",\n \"source\": \"a\" }");
        let c = fingerprint("POST", "/b", br#"{"source":"a","type":"incremental"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            a,
            fingerprint("POST", "/other", br#"{"source":"a","type":"full"}"#)
        );
    }
}
