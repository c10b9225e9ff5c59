//! The one error type on the wire: `{ "error": { "code", "message", "field"? … } }`.
//! Internal errors are logged with their context and shown as an opaque 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};
use strata_core::errors::ErrorCode;
use strata_core::model::FieldError;

#[derive(Debug)]
pub struct ApiError {
    /// The answer's status: the code's own ([`ErrorCode::status`]) unless overridden.
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// Extra machine-readable facts (e.g. the id of the job in the way).
    pub details: Map<String, Value>,
    /// The cause of a 5xx, logged and never shown.
    pub source: Option<anyhow::Error>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

/// The HTTP status of `code`; a code only jobs record is a bug here, answered as a 500.
pub fn status_of(code: ErrorCode) -> StatusCode {
    debug_assert!(code.status().is_some(), "{code} is recorded by jobs only");
    code.status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ApiError {
    /// An error answered with `code`'s own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: status_of(code),
            code,
            message: message.into(),
            field: None,
            details: Map::new(),
            source: None,
            retry_after: None,
        }
    }

    /// The same error answered with another status (a code whose status varies).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A `400` naming the offending field.
    pub fn bad_request(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        debug_assert_eq!(code.status(), Some(400), "{code}");
        let mut e = Self::new(code, message);
        e.field = Some(field.to_string());
        e
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn internal(err: anyhow::Error) -> Self {
        let mut e = Self::new(
            ErrorCode::InternalError,
            "an internal error occurred; it has been logged",
        );
        e.source = Some(err);
        e
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            tracing::error!(error = %format!("{source:#}"), code = self.code.as_str(), "request failed");
        }
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        if let Some(field) = &self.field {
            body.insert("field".into(), json!(field));
        }
        for (k, v) in &self.details {
            body.insert(k.clone(), v.clone());
        }
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({ "error": body }))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        let mut err = Self::new(e.code, e.message);
        err.field = Some(e.field);
        err
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Turns actix's JSON body errors into the wire type: malformed JSON, a wrong type or a
/// missing or unknown field is the client's `400`, with serde's message naming the field.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let e = match &err {
        J::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON with `Content-Type: application/json`",
        ),
        J::Overflow { .. } | J::OverflowKnownLength { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        }
        J::Deserialize(d) if d.is_data() => {
            let mut e = ApiError::new(ErrorCode::InvalidBody, d.to_string());
            if let Some(field) = field_in_serde_message(&d.to_string()) {
                e.field = Some(field);
            }
            e
        }
        J::Deserialize(d) => ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {d}"),
        ),
        other => ApiError::new(ErrorCode::InvalidBody, other.to_string()),
    };
    e.into()
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`" messages.
pub(crate) fn field_in_serde_message(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = start + msg[start..].find('`')?;
    Some(msg[start..end].to_string())
}

/// Query-string errors, as the wire type.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let msg = err.to_string();
    let mut e = ApiError::new(ErrorCode::InvalidQuery, msg.clone());
    e.field = field_in_serde_message(&msg);
    e.into()
}

/// Path errors (e.g. a job id that is not a UUID), as the wire type.
pub fn path_error(
    err: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(ErrorCode::NotFound, format!("no such resource: {err}")).into()
}

/// PostgreSQL text cannot hold a NUL character: a request string with one is the
/// client's `400` (naming the field), never a failed query.
pub fn reject_nul(value: &str, field: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidCharacter,
            field,
            "must not contain a NUL character",
        ));
    }
    Ok(())
}

/// The safety net of [`actix_web::middleware::ErrorHandlers`]: an error answer that is not
/// JSON (one actix made itself: a payload error of an extractor, an overflow…) becomes the
/// wire error with the same status, so no client ever parses `text/plain`.
pub fn json_error_responses<B: actix_web::body::MessageBody + 'static>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::http::header;
    use actix_web::middleware::ErrorHandlerResponse;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::BodyTimeout,
        411 => ErrorCode::LengthRequired,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        431 => ErrorCode::HeadersTooLarge,
        s if s >= 500 => ErrorCode::InternalError,
        _ => ErrorCode::RequestRefused,
    };
    let message = match status.canonical_reason() {
        Some(reason) => format!("the request was refused: {}", reason.to_lowercase()),
        None => format!("the request was refused with status {}", status.as_u16()),
    };
    let (req, old) = res.into_parts();
    tracing::debug!(status = %status, code = code.as_str(), "a non-JSON error answer was rewritten into the wire shape");
    let mut new = ApiError::new(code, message)
        .with_status(status)
        .error_response();
    for name in [header::RETRY_AFTER, header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(v) = old.headers().get(&name) {
            new.headers_mut().insert(name.clone(), v.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, new).map_into_right_body(),
    ))
}
