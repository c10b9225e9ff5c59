//! `/api/v1/audit`: who did what, newest first, with filters and a cursor.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use crate::error::{reject_nul, ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// Filters of the audit log; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this caller (`key:<id>`, `jwt:<subject>`, `file-token:<subject>`).
    pub actor: Option<String>,
    #[param(value_type = Option<AuditOutcome>)]
    pub outcome: Option<String>,
    /// Only this action (e.g. `POST /api/v1/keys`).
    pub action: Option<String>,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub from: Option<i64>,
}

/// How a request ended (documentation only: the handler checks the string, naming the field).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum AuditOutcome {
    Allowed,
    Denied,
    Failed,
}

/// One request, as the audit log recorded it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Also the cursor: pages go from newest to oldest id.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub request_id: String,
    /// Who called, if known.
    pub actor: Option<String>,
    pub role: Option<String>,
    pub method: String,
    /// Method and route pattern, e.g. `DELETE /api/v1/keys/{id}`.
    pub action: String,
    /// The path requested.
    pub target: Option<String>,
    #[schema(value_type = AuditOutcome)]
    pub outcome: String,
    /// The HTTP status answered.
    pub status: i32,
    /// The client's address.
    pub client: Option<String>,
}

impl From<db::audit::AuditRow> for AuditEntry {
    fn from(r: db::audit::AuditRow) -> Self {
        Self {
            id: r.id,
            at: r.at,
            request_id: r.request_id,
            actor: r.actor,
            role: r.role,
            method: r.method,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            status: r.status,
            client: r.client,
        }
    }
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub limit: i64,
    /// Pass as `from` for the next page; null on the last page.
    pub next: Option<i64>,
}

/// The audit log, newest first, with filters and a cursor.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page", body = AuditPage),
        (status = 400, description = "A parameter is invalid or unknown", body = ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidLimit,
            "limit",
            "must be between 1 and 1000",
        ));
    }
    if let Some(o) = &q.outcome {
        if !["allowed", "denied", "failed"].contains(&o.as_str()) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidOutcome,
                "outcome",
                "expected one of: allowed, denied, failed",
            ));
        }
    }
    for (value, field) in [(&q.actor, "actor"), (&q.action, "action")] {
        if let Some(v) = value {
            reject_nul(v, field)?;
        }
    }
    let mut conn = state.pool.acquire().await?;
    let rows = db::audit::list(
        &mut conn,
        &db::audit::AuditFilter {
            actor: q.actor,
            outcome: q.outcome,
            action: q.action,
            since: q.since,
            until: q.until,
            before_id: q.from,
            limit: limit + 1,
        },
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<AuditEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(AuditEntry::from)
        .collect();
    let next = if has_more {
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage { items, limit, next }))
}
