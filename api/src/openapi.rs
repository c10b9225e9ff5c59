//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations
//! and their types' `ToSchema`, served at `/api/v1/openapi.json`, and a human-readable
//! page rendered from it at `/api/v1/docs`.
//!
//! What every route has in common is added here, in one place ([`Conventions`]), from the
//! route table: the security a route needs (from its [`Access`]), and the error
//! responses the middleware and extractors produce (401/403/429/500, and 400/408/413/415 for
//! a JSON body). A handler's annotation lists only what the handler itself returns.

mod html;
pub mod schemas;

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, PathItem, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{
    self, access_for, audit, backups, browse, config, download, files, health, jobs, keys, login,
    pocketbase, repository, retention, schedules, sources, upload, users, Access,
};

/// The body of every error response: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong. Some errors add machine-readable facts next to these fields
/// (e.g. the id of the job in the way).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_body`, `source_not_found`, `forbidden`…
    #[schema(value_type = schemas::ErrorCodeName)]
    pub code: String,
    /// For humans; names the field when one is at fault.
    pub message: String,
    /// The request field at fault (`name`, `files.path`…), for a `400`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata",
        description = "Strata's backup API. Every route under `/api/v1` except this document \
            and `/api/v1/docs` needs a bearer credential: an API key (`strata_…`) or a JWT. \
            Long operations answer `202` with a job to poll. Every error has the body \
            `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "This server")),
    paths(
        health::livez,
        health::readyz,
        health::health,
        sources::create,
        sources::list,
        sources::get,
        sources::delete,
        keys::create,
        keys::list,
        keys::revoke,
        backups::create,
        backups::list,
        backups::get,
        backups::restore,
        backups::verify,
        upload::upload,
        download::download,
        browse::tree,
        browse::file,
        browse::diff,
        browse::search,
        retention::delete,
        retention::prune,
        schedules::create,
        schedules::list,
        schedules::get,
        schedules::update,
        schedules::delete,
        jobs::list,
        jobs::get,
        jobs::events,
        jobs::cancel,
        config::export,
        config::import,
        files::token,
        audit::list,
        repository::gc,
        users::create,
        users::list,
        users::delete,
        login::login,
        login::logout,
        login::me,
        login::change_password,
        pocketbase::superuser_login,
        pocketbase::admin_login,
        pocketbase::health,
        pocketbase::file_token,
        pocketbase::list,
        pocketbase::create,
        pocketbase::upload,
        pocketbase::download,
        pocketbase::delete,
        pocketbase::restore,
        spec,
        docs,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        pocketbase::PbErrorBody,
        schemas::ErrorCodeName,
        audit::AuditOutcome,
        keys::RoleName,
        schemas::BackupTypeName,
        schemas::BackupStatusName,
        schemas::JobKindName,
        schemas::JobStatusName,
        schemas::ArchiveFormatName,
    )),
    modifiers(&Conventions),
    tags(
        (name = "health", description = "Liveness, readiness and the state of the services"),
        (name = "sources", description = "What gets backed up"),
        (name = "backups", description = "Backups: create, list, restore, verify, download, delete"),
        (name = "browse", description = "Looking inside backups: directory trees, single files, differences, search"),
        (name = "schedules", description = "Backups that run themselves: cron, time zone, retention"),
        (name = "jobs", description = "Asynchronous jobs: status, progress, cancellation"),
        (name = "keys", description = "API keys (admin)"),
        (name = "files", description = "Short-lived download tokens"),
        (name = "audit", description = "Who did what (admin)"),
        (name = "config", description = "Configuration export and import (admin)"),
        (name = "repository", description = "The repository itself: garbage collection (admin)"),
        (name = "users", description = "User accounts that log in with a password (admin)"),
        (name = "auth", description = "Logging in and out with a user account"),
        (name = "pocketbase", description = "The PocketBase-compatible Backups API (for PocketBase's SDKs): \
            one source (`STRATA_POCKETBASE_SOURCE`), keys `<backup id>.zip`, tokens accepted as a bare \
            `Authorization: <token>`, errors as `{status, message, data}`"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Adds what every route shares, from the route table (see the module doc).
pub struct Conventions;

/// Routes the route table registers at two paths with one handler (aliases for clients
/// of other backup APIs): `(method, documented path, alias path)`. The operation
/// documented at the first path is copied to the second.
const ALIASES: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/backup/create", "/api/v1/backup"),
    ("GET", "/api/v1/backup", "/api/v1/backup/list"),
    (
        "POST",
        "/api/v1/backup/{backup_id}/restore",
        "/api/v1/backup/restore/{backup_id}",
    ),
    (
        "GET",
        "/api/v1/jobs/{job_id}",
        "/api/v1/backup/restore/{job_id}/status",
    ),
];

/// Shared responses, under `components.responses`.
const COMMON_RESPONSES: &[(&str, &str)] = &[
    (
        "BadRequest",
        "The body or a parameter is invalid; `field` names it",
    ),
    (
        "Unauthorized",
        "Missing or invalid credentials (`unauthorized`)",
    ),
    (
        "Forbidden",
        "The credential's role is too low for this operation (`forbidden`)",
    ),
    (
        "TooManyRequests",
        "Too many failed authentications from this client (`too_many_failures`); see `Retry-After`",
    ),
    (
        "PayloadTooLarge",
        "The body is larger than 1 MiB (`payload_too_large`)",
    ),
    (
        "RequestTimeout",
        "The body stopped arriving for `STRATA_BODY_IDLE_TIMEOUT_SECS` (`body_timeout`)",
    ),
    (
        "UnsupportedMediaType",
        "The body is not `application/json` (`unsupported_media_type`)",
    ),
    (
        "InternalError",
        "An internal error, logged on the server (`internal_error`)",
    ),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key (strata_…) or JWT")
                    .description(Some("`Authorization: Bearer <API key or JWT>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "file_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A short-lived token from `POST /api/v1/files/token`, for download links",
            ))),
        );
        for (name, description) in COMMON_RESPONSES {
            components.responses.insert(
                (*name).to_string(),
                RefOr::T(error_response(name, description, "ErrorBody")),
            );
            components.responses.insert(
                format!("Pb{name}"),
                RefOr::T(error_response(name, description, "PbErrorBody")),
            );
        }
        add_aliases(openapi);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                qualify_operation_id(op);
                apply_route_conventions(
                    access_for(method, path),
                    pocketbase::is_pocketbase_path(path),
                    op,
                );
            }
        }
    }
}

/// Copies each documented operation of [`ALIASES`] to its alias path.
fn add_aliases(openapi: &mut utoipa::openapi::OpenApi) {
    for (method, path, alias) in ALIASES {
        let Some(item) = openapi.paths.paths.get_mut(*path) else {
            continue;
        };
        let Some((_, op)) = operations_mut(item).find(|(m, _)| m == method) else {
            continue;
        };
        let mut copy = op.clone();
        copy.operation_id = copy.operation_id.map(|id| format!("{id}_alias"));
        let same = format!("The same as `{method} {path}`.");
        copy.description = Some(match copy.description.take() {
            Some(d) if !d.is_empty() => format!("{same}\n\n{d}"),
            _ => same,
        });
        let target = openapi.paths.paths.entry((*alias).to_string()).or_default();
        match *method {
            "GET" => target.get = Some(copy),
            "POST" => target.post = Some(copy),
            "PUT" => target.put = Some(copy),
            _ => target.delete = Some(copy),
        }
    }
}

/// Operation ids are the handlers' names, which repeat across modules (`create`,
/// `list`…): prefix the tag so each is unique (`sources_create`, `backups_create`…).
fn qualify_operation_id(op: &mut Operation) {
    let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
    if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
        if !id.starts_with(&format!("{tag}_")) {
            *id = format!("{tag}_{id}");
        }
    }
}

/// An error response with the `schema` body ([`ErrorBody`], or PocketBase's shape), and
/// `Retry-After` for a 429.
fn error_response(name: &str, description: &str, schema: &str) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build();
    let mut res = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if name == "TooManyRequests" {
        res = res.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    res.build()
}

/// The operations of a path item, with their method as the route table spells it.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("POST", item.post.as_mut()),
        ("PUT", item.put.as_mut()),
        ("DELETE", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

fn apply_route_conventions(access: Option<Access>, pocketbase: bool, op: &mut Operation) {
    let bearer = || SecurityRequirement::new("bearer", Vec::<String>::new());
    let prefix = if pocketbase { "Pb" } else { "" };
    let add = |op: &mut Operation, status: &str, name: &str| {
        add_response(op, status, &format!("{prefix}{name}"))
    };
    let (security, role) = match access {
        None | Some(Access::Public) | Some(Access::Optional) => (None, None),
        Some(Access::Login) => {
            add(op, "429", "TooManyRequests");
            add(op, "500", "InternalError");
            (None, None)
        }
        Some(Access::Role(r)) => (Some(vec![bearer()]), Some(r)),
        Some(Access::Download(r)) => (
            Some(vec![
                bearer(),
                SecurityRequirement::new("file_token", Vec::<String>::new()),
            ]),
            Some(r),
        ),
    };
    if let Some(role) = role {
        op.security = security;
        let note = format!("Needs the `{role}` role (or a higher one).");
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
            _ => note,
        });
        add(op, "401", "Unauthorized");
        add(op, "403", "Forbidden");
        add(op, "429", "TooManyRequests");
        add(op, "500", "InternalError");
    }
    if op.request_body.is_some() {
        add(op, "400", "BadRequest");
        add(op, "408", "RequestTimeout");
        add(op, "413", "PayloadTooLarge");
        add(op, "415", "UnsupportedMediaType");
    }
}

/// Adds a reference to a shared response unless the handler documents that status itself.
fn add_response(op: &mut Operation, status: &str, name: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
}

/// The document as served (built once).
pub fn spec_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the spec: {e}\"}}"))
    })
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)),
)]
pub async fn spec() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(spec_json())
}

/// The same document as a page for humans: routes, parameters, bodies, responses.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    tag = "meta",
    responses((status = 200, description = "A self-contained HTML page", content_type = "text/html", body = String)),
)]
pub async fn docs() -> HttpResponse {
    static PAGE: OnceLock<String> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(spec_json()).unwrap_or_default();
        html::render(&doc, routes::ROUTES)
    });
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_operation_with_a_unique_id() {
        let doc: serde_json::Value = serde_json::from_str(spec_json()).expect("JSON");
        let mut ids = std::collections::HashSet::new();
        for r in routes::ROUTES {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} repeats");
        }
    }

    #[test]
    fn an_error_code_is_one_of_every_code() {
        let doc: serde_json::Value = serde_json::from_str(spec_json()).expect("JSON");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorDetail"]["properties"]["code"]["$ref"], "#/components/schemas/ErrorCode",
            "{}",
            schemas["ErrorDetail"]
        );
        let listed: Vec<&str> = schemas["ErrorCode"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let all: Vec<&str> = strata_core::errors::ErrorCode::ALL
            .iter()
            .map(|c| c.as_str())
            .collect();
        assert_eq!(listed, all);
    }
}
