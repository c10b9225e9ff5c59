//! `DELETE /api/v1/backup/{id}` and `POST /api/v1/backup/prune`: removing backups
//! without breaking a chain a kept backup depends on; the storage is reclaimed by a job.

use actix_web::{web, HttpResponse};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn delete(
    _state: web::Data<AppState>,
    _path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "delete is not implemented yet",
    ))
}

pub async fn prune(_state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "prune is not implemented yet",
    ))
}
