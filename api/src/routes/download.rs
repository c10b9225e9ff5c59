//! `GET /api/v1/backup/{id}/download`: a backup's content as a tar or zip stream.

use actix_web::{web, HttpResponse};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn download(
    _state: web::Data<AppState>,
    _path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "download is not implemented yet",
    ))
}
