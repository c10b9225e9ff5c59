//! One module per resource, and the route table: every route with the access it needs.
//! Registration and permissions come from the same list, so a route cannot exist
//! without a permission entry.

pub mod audit;
pub mod backups;
pub mod browse;
pub mod config;
pub mod cursor;
pub mod download;
pub mod files;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod login;
pub mod pocketbase;
pub mod repository;
pub mod retention;
pub mod schedules;
pub mod sources;
pub mod upload;
pub mod users;

use actix_web::web;
use strata_auth::Role;
use strata_core::errors::ErrorCode;

use crate::error::ApiError;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential (Kubernetes probes).
    Public,
    /// A bearer credential (API key or JWT) with at least this role.
    Role(Role),
    /// A bearer credential with at least this role, or a file token issued to one.
    Download(Role),
    /// No credential: the handler checks a password (a login). Audited, with the user
    /// who logged in; failures count for the limiter.
    Login,
    /// No credential needed; a valid one lets the handler answer more.
    Optional,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

impl RouteSpec {
    /// A route of the PocketBase-compatible surface (`/api/…` outside `/api/v1`): its
    /// errors take PocketBase's shape and it accepts a bare `Authorization: <token>`.
    pub fn pocketbase(&self) -> bool {
        pocketbase::is_pocketbase_path(self.path)
    }
}

macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path, $access:expr; )*) => {
        /// Every route, with the access it needs (the README's table says the same).
        pub const ROUTES: &[RouteSpec] = &[
            $( RouteSpec { method: stringify!($method), path: $path, access: $access }, )*
        ];

        /// Registers every route of [`ROUTES`], each behind its own authorization: the
        /// check is attached to the resource the router actually picked, so no spelling
        /// of a path (percent-encoded letters, odd case in escapes…) can reach a handler
        /// without the check its route demands.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( {
                static SPEC: RouteSpec = RouteSpec { method: stringify!($method), path: $path, access: $access };
                cfg.service(
                    web::resource($path)
                        .guard(route_table!(@guard $method))
                        .route(route_table!(@method $method).to($handler))
                        .wrap(actix_web::middleware::from_fn(
                            |req, next| crate::auth::authorize(&SPEC, req, next),
                        )),
                );
            } )*
        }
    };
    (@method GET) => { web::get() };
    (@method POST) => { web::post() };
    (@method PUT) => { web::put() };
    (@method DELETE) => { web::delete() };
    (@guard GET) => { actix_web::guard::Get() };
    (@guard POST) => { actix_web::guard::Post() };
    (@guard PUT) => { actix_web::guard::Put() };
    (@guard DELETE) => { actix_web::guard::Delete() };
}

use Access::{Download as D, Login, Optional, Public, Role as R};
use Role::{Admin, BackupOperator, Viewer};

// Order matters where paths overlap: literal segments before `{parameters}`.
route_table! {
    GET "/livez" => health::livez, Public;
    GET "/readyz" => health::readyz, Public;
    GET "/api/v1/health" => health::health, R(Viewer);
    POST "/api/v1/sources" => sources::create, R(Admin);
    GET "/api/v1/sources" => sources::list, R(Viewer);
    GET "/api/v1/sources/{id}" => sources::get, R(Viewer);
    DELETE "/api/v1/sources/{id}" => sources::delete, R(Admin);
    POST "/api/v1/backup/create" => backups::create, R(BackupOperator);
    POST "/api/v1/backup" => backups::create, R(BackupOperator);
    GET "/api/v1/backup" => backups::list, R(Viewer);
    GET "/api/v1/backup/list" => backups::list, R(Viewer);
    POST "/api/v1/backup/upload" => upload::upload, R(Admin);
    POST "/api/v1/backup/prune" => retention::prune, R(Admin);
    POST "/api/v1/backup/schedule" => schedules::create, R(Admin);
    GET "/api/v1/backup/schedule" => schedules::list, R(Viewer);
    GET "/api/v1/backup/schedule/{schedule_id}" => schedules::get, R(Viewer);
    PUT "/api/v1/backup/schedule/{schedule_id}" => schedules::update, R(Admin);
    DELETE "/api/v1/backup/schedule/{schedule_id}" => schedules::delete, R(Admin);
    GET "/api/v1/backup/restore/{job_id}/status" => jobs::get, R(Viewer);
    POST "/api/v1/backup/restore/{backup_id}" => backups::restore, R(Admin);
    POST "/api/v1/backup/{backup_id}/restore" => backups::restore, R(Admin);
    POST "/api/v1/backup/{backup_id}/verify" => backups::verify, R(BackupOperator);
    GET "/api/v1/backup/{backup_id}/download" => download::download, D(BackupOperator);
    GET "/api/v1/backup/{backup_id}/tree" => browse::tree, R(Viewer);
    GET "/api/v1/backup/{backup_id}/file" => browse::file, D(BackupOperator);
    GET "/api/v1/backup/{backup_id}/diff" => browse::diff, R(Viewer);
    GET "/api/v1/backup/{backup_id}" => backups::get, R(Viewer);
    DELETE "/api/v1/backup/{backup_id}" => retention::delete, R(Admin);
    GET "/api/v1/search" => browse::search, R(Viewer);
    GET "/api/v1/jobs" => jobs::list, R(Viewer);
    GET "/api/v1/jobs/{job_id}" => jobs::get, R(Viewer);
    GET "/api/v1/jobs/{job_id}/events" => jobs::events, R(Viewer);
    POST "/api/v1/jobs/{job_id}/cancel" => jobs::cancel, R(BackupOperator);
    GET "/api/v1/config/export" => config::export, R(Admin);
    POST "/api/v1/config/import" => config::import, R(Admin);
    POST "/api/v1/keys" => keys::create, R(Admin);
    GET "/api/v1/keys" => keys::list, R(Admin);
    DELETE "/api/v1/keys/{id}" => keys::revoke, R(Admin);
    POST "/api/v1/files/token" => files::token, R(Viewer);
    GET "/api/v1/audit" => audit::list, R(Admin);
    POST "/api/v1/users" => users::create, R(Admin);
    GET "/api/v1/users" => users::list, R(Admin);
    DELETE "/api/v1/users/{user_id}" => users::delete, R(Admin);
    POST "/api/v1/auth/login" => login::login, Login;
    POST "/api/v1/auth/logout" => login::logout, R(Viewer);
    GET "/api/v1/auth/me" => login::me, R(Viewer);
    POST "/api/v1/auth/password" => login::change_password, R(Viewer);
    // The PocketBase-compatible surface (seeds 003 / 004 and PocketBase's own SDKs).
    POST "/api/collections/_superusers/auth-with-password" => pocketbase::superuser_login, Login;
    POST "/api/admins/auth-with-password" => pocketbase::admin_login, Login;
    GET "/api/health" => pocketbase::health, Optional;
    POST "/api/files/token" => pocketbase::file_token, R(Viewer);
    GET "/api/backups" => pocketbase::list, R(Viewer);
    POST "/api/backups" => pocketbase::create, R(BackupOperator);
    POST "/api/backups/upload" => pocketbase::upload, R(Admin);
    GET "/api/backups/{key}" => pocketbase::download, D(BackupOperator);
    DELETE "/api/backups/{key}" => pocketbase::delete, R(Admin);
    POST "/api/backups/{key}/restore" => pocketbase::restore, R(Admin);
    POST "/api/v1/repository/gc" => repository::gc, R(Admin);
    GET "/api/v1/openapi.json" => crate::openapi::spec, Public;
    GET "/api/v1/docs" => crate::openapi::docs, Public;
}

/// The access a request needs: by method and matched route pattern. `None` for a path
/// no route matches (it will be a 404).
pub fn access_for(method: &str, pattern: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == pattern)
        .map(|r| r.access)
}

/// Unknown routes answer with the wire error type.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::RouteNotFound, "no such route"))
}
