//! One module per resource.

pub mod backups;
pub mod health;
pub mod jobs;
pub mod sources;

use actix_web::web;

use crate::error::ApiError;

/// Every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/livez", web::get().to(health::livez))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::scope("/api/v1")
                .route("/health", web::get().to(health::health))
                .route("/sources", web::post().to(sources::create))
                .route("/sources", web::get().to(sources::list))
                .route("/sources/{id}", web::get().to(sources::get))
                .route("/backup/create", web::post().to(backups::create))
                .route("/backup", web::post().to(backups::create))
                .route("/backup/list", web::get().to(backups::list))
                .route("/backup/restore/{job_id}/status", web::get().to(jobs::get))
                .route(
                    "/backup/restore/{backup_id}",
                    web::post().to(backups::restore),
                )
                .route(
                    "/backup/{backup_id}/verify",
                    web::post().to(backups::verify),
                )
                .route("/backup/{backup_id}", web::get().to(backups::get))
                .route("/jobs/{job_id}", web::get().to(jobs::get)),
        );
}

/// Unknown routes answer with the wire error type.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("route_not_found", "no such route"))
}
