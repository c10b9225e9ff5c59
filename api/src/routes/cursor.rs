//! The list cursor (`from` / `next`): `<created_at as microseconds>.<id>` — opaque to
//! clients, one format for every list that pages by creation time.

use std::fmt::Display;
use strata_core::errors::ErrorCode;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub fn encode(at: DateTime<Utc>, id: impl Display) -> String {
    format!("{}.{id}", at.timestamp_micros())
}

fn bad() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidCursor,
        "from",
        "not a cursor returned by this API",
    )
}

/// The creation time and id a cursor points after.
pub fn decode(cursor: &str) -> ApiResult<(DateTime<Utc>, String)> {
    let (micros, id) = cursor.split_once('.').ok_or_else(bad)?;
    if id.contains('\0') {
        return Err(bad());
    }
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, id.to_string()))
}

/// [`decode`], for lists whose ids are UUIDs.
pub fn decode_uuid(cursor: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    let (at, id) = decode(cursor)?;
    Ok((at, Uuid::parse_str(&id).map_err(|_| bad())?))
}

/// A cursor naming a path inside a backup (the last one of a page): its raw bytes,
/// base64url, so names that are not UTF-8 page correctly too.
pub fn encode_path(path: &std::path::Path) -> String {
    use base64::Engine as _;
    use std::os::unix::ffi::OsStrExt;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(path.as_os_str().as_bytes())
}

/// The path an [`encode_path`] cursor names.
pub fn decode_path(cursor: &str) -> ApiResult<std::path::PathBuf> {
    use base64::Engine as _;
    use std::os::unix::ffi::OsStringExt;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    if bytes.contains(&0) || bytes.len() > 64 * 1024 {
        return Err(bad());
    }
    Ok(std::path::PathBuf::from(std::ffi::OsString::from_vec(
        bytes,
    )))
}
