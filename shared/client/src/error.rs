//! One error type for every call: what the API said (`code`, `message`, `field`, HTTP
//! status), or why no answer came.

use std::fmt;

/// Why a call failed.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// The HTTP status, when the server answered.
    status: Option<u16>,
    /// The API's machine-readable code (`source_not_found`…), or one of this crate's
    /// own for failures without an answer: `network`, `invalid_response`, `invalid_url`, `io`.
    code: String,
    message: String,
    field: Option<String>,
    /// The whole error body as the server sent it (extra facts such as `job_id`).
    body: Option<serde_json::Value>,
}

/// The class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server answered with an error status.
    Api,
    /// No answer: the connection failed or timed out.
    Network,
    /// An answer this client cannot read.
    InvalidResponse,
    /// A base URL or argument this client cannot use.
    InvalidInput,
    /// Reading or writing a local file.
    Io,
}

impl Error {
    pub(crate) fn api(status: u16, body: &[u8]) -> Self {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        // `/api/v1`: {"error": {"code", "message", "field"?}}; PocketBase's surface:
        // {"status", "message", "data"}.
        let (code, message, field) = match &json {
            Some(v) if v["error"].is_object() => (
                v["error"]["code"].as_str().unwrap_or("unknown").to_string(),
                v["error"]["message"].as_str().unwrap_or("").to_string(),
                v["error"]["field"].as_str().map(str::to_string),
            ),
            Some(v) if v["message"].is_string() => {
                let data = v["data"].as_object();
                let field = data.and_then(|d| d.keys().next().cloned());
                let code = field
                    .as_ref()
                    .and_then(|f| v["data"][f]["code"].as_str())
                    .unwrap_or("pocketbase_error")
                    .to_string();
                (code, v["message"].as_str().unwrap_or("").to_string(), field)
            }
            _ => (
                format!("http_{status}"),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                None,
            ),
        };
        Self {
            kind: ErrorKind::Api,
            status: Some(status),
            code,
            message,
            field,
            body: json,
        }
    }

    pub(crate) fn network(e: impl fmt::Display) -> Self {
        Self::local(ErrorKind::Network, "network", e.to_string())
    }

    pub(crate) fn invalid_response(e: impl fmt::Display) -> Self {
        Self::local(
            ErrorKind::InvalidResponse,
            "invalid_response",
            e.to_string(),
        )
    }

    pub(crate) fn invalid_input(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::local(ErrorKind::InvalidInput, "invalid_input", message.into());
        e.field = Some(field.to_string());
        e
    }

    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Self::local(ErrorKind::Io, "io", format!("{}: {e}", path.display()))
    }

    fn local(kind: ErrorKind, code: &str, message: String) -> Self {
        Self {
            kind,
            status: None,
            code: code.to_string(),
            message,
            field: None,
            body: None,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_decode() {
            Self::invalid_response(e)
        } else {
            // Show the cause chain (connection refused, DNS…), not just "error sending request".
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            Self::network(msg)
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The API's machine-readable code (docs/ERRORS.md), e.g. `source_not_found`.
    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, when the API named one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The error body as sent, for facts beyond code and message (`job_id` of a
    /// conflicting job…).
    pub fn body(&self) -> Option<&serde_json::Value> {
        self.body.as_ref()
    }

    /// Worth sending again: no answer, a gateway or availability error, or a `429`.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ErrorKind::Network => true,
            ErrorKind::Api => matches!(self.status, Some(429 | 502 | 503 | 504)),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_error_shapes() {
        let e = Error::api(
            404,
            br#"{"error":{"code":"source_not_found","message":"no source \"x\"","field":"source"}}"#,
        );
        assert_eq!(
            (e.code(), e.field(), e.status()),
            ("source_not_found", Some("source"), Some(404))
        );
        let e = Error::api(
            400,
            br#"{"status":400,"message":"Failed.","data":{"name":{"code":"validation_invalid_name","message":"bad"}}}"#,
        );
        assert_eq!(
            (e.code(), e.field()),
            ("validation_invalid_name", Some("name"))
        );
        let e = Error::api(502, b"<html>bad gateway</html>");
        assert_eq!(e.code(), "http_502");
        assert!(e.is_transient());
        assert!(!Error::api(409, b"{}").is_transient());
    }
}
