//! `POST /api/v1/backup/upload`: import a tar or zip archive as a new full backup.

use actix_web::{web, HttpResponse};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn upload(_state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "upload is not implemented yet",
    ))
}
