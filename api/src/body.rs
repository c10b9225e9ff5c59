//! Request bodies, read within limits and parsed so that every refusal is the wire
//! error: `413 payload_too_large` past [`JSON_LIMIT`] (announced or streamed), `408
//! body_timeout` when the client stops sending for `STRATA_BODY_IDLE_TIMEOUT_SECS`,
//! `415` for a JSON body of another type, and `400` naming the field by its path
//! (`files.exclude[1]`) for a wrong type, a missing or an unknown field.
//!
//! actix's own `Bytes` and `Json` extractors answer a too-large body in `text/plain`
//! and serde's messages name the value, not the field; these replace them.

use std::time::Duration;
use strata_core::errors::ErrorCode;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Largest JSON body the API accepts.
pub const JSON_LIMIT: usize = 1024 * 1024;

/// How long a body may stall when the app's configuration is not at hand (unit tests).
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// A body's raw bytes (at most [`JSON_LIMIT`]), for handlers that parse it themselves
/// (an optional body, an idempotency fingerprint).
pub struct RawBody(pub web::Bytes);

/// A JSON body parsed into `T`; the request must say `Content-Type: application/json`.
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// `408 body_timeout`: the client stopped sending its body.
pub fn body_timeout(idle: Duration, field: Option<&str>) -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::BodyTimeout,
        format!(
            "the request body stalled: nothing arrived for {} s (STRATA_BODY_IDLE_TIMEOUT_SECS)",
            idle.as_secs()
        ),
    );
    e.field = field.map(str::to_string);
    e
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// How long this app lets a body stall.
pub fn idle_timeout(req: &HttpRequest) -> Duration {
    req.app_data::<web::Data<AppState>>()
        .map(|s| s.config.body_idle_timeout)
        .unwrap_or(DEFAULT_IDLE)
}

/// The length the request announces, if any.
pub fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the whole body, refusing it as soon as it passes `limit` and when it stalls.
async fn read(
    mut payload: Payload,
    limit: usize,
    announced: Option<u64>,
    idle: Duration,
) -> ApiResult<web::Bytes> {
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::new();
    loop {
        let next = tokio::time::timeout(idle, payload.next())
            .await
            .map_err(|_| body_timeout(idle, None))?;
        match next {
            None => return Ok(body.freeze()),
            Some(Ok(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidBody,
                    format!("the request body could not be read: {e}"),
                ))
            }
        }
    }
}

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (announced, idle) = (content_length(req), idle_timeout(req));
        let payload = payload.take();
        Box::pin(async move {
            read(payload, JSON_LIMIT, announced, idle)
                .await
                .map(RawBody)
        })
    }
}

/// Whether the request says its body is JSON (`application/json`, `…+json`).
fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let (announced, idle) = (content_length(req), idle_timeout(req));
        let payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "the body must be JSON with `Content-Type: application/json`",
                ));
            }
            let body = read(payload, JSON_LIMIT, announced, idle).await?;
            parse_json(&body).map(JsonBody)
        })
    }
}

/// Parses a JSON document into `T`: `malformed_json` when it is not JSON, `invalid_body`
/// naming the field by its path when a value does not fit.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Ok(value) => match de.end() {
            Ok(()) => Ok(value),
            Err(e) => Err(malformed(&e)),
        },
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if !inner.is_data() {
                return Err(malformed(&inner));
            }
            let field = field_of(&path, &inner.to_string());
            let message = match &field {
                Some(f) => format!("{f}: {inner}"),
                None => inner.to_string(),
            };
            let mut err = ApiError::new(ErrorCode::InvalidBody, message);
            err.field = field;
            Err(err)
        }
    }
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        ErrorCode::MalformedJson,
        format!("the body is not valid JSON: {e}"),
    )
}

/// The field a data error is about: the path where it happened, completed with the
/// name serde quotes for a missing or unknown field (reported at the object that lacks
/// or holds it). `None` for the document itself.
fn field_of(path: &str, message: &str) -> Option<String> {
    let at = (path != ".").then(|| path.to_string());
    let quoted = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    match (at, quoted) {
        // serde_path_to_error already ends the path with an unknown key.
        (Some(at), Some(name)) if at == name || at.ends_with(&format!(".{name}")) => Some(at),
        (Some(at), Some(name)) => Some(format!("{at}.{name}")),
        (None, Some(name)) => Some(name),
        (at, None) => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Files {
        path: String,
        #[serde(default)]
        exclude: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Source {
        name: String,
        files: Option<Files>,
    }

    fn field(body: &str) -> (String, Option<String>, String) {
        let e = parse_json::<Source>(body.as_bytes()).unwrap_err();
        (e.code.to_string(), e.field, e.message)
    }

    #[test]
    fn errors_name_the_field_by_its_path() {
        assert_eq!(field(r#"{"name": 123}"#).1.as_deref(), Some("name"));
        assert_eq!(
            field(r#"{"name": "x", "files": {"path": 5}}"#).1.as_deref(),
            Some("files.path")
        );
        assert_eq!(
            field(r#"{"name": "x", "files": {"path": "/a", "exclude": ["a", 7]}}"#)
                .1
                .as_deref(),
            Some("files.exclude[1]")
        );
        assert_eq!(field(r#"{"files": null}"#).1.as_deref(), Some("name"));
        assert_eq!(
            field(r#"{"name": "x", "files": {"exclude": []}}"#)
                .1
                .as_deref(),
            Some("files.path")
        );
        assert_eq!(field(r#"{"name": "x", "zz": 1}"#).1.as_deref(), Some("zz"));
        assert_eq!(
            field(r#"{"name": "x", "files": {"path": "/a", "zz": 1}}"#)
                .1
                .as_deref(),
            Some("files.zz")
        );
        let (code, f, message) = field(r#"{"name": 123}"#);
        assert_eq!(code, "invalid_body");
        assert!(message.starts_with("name: "), "{message} {f:?}");
        assert_eq!(field(r#"{"name": "#).0, "malformed_json");
        assert_eq!(field(r#"{"name": "x"} trailing"#).0, "malformed_json");
        assert_eq!(field("[]").1, None);
    }
}
