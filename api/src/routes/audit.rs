//! `/api/v1/audit`: who did what, newest first, with filters and a cursor.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use strata_shared::db;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub outcome: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub from: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit",
            "must be between 1 and 1000",
        ));
    }
    if let Some(o) = &q.outcome {
        if !["allowed", "denied", "failed"].contains(&o.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_outcome",
                "outcome",
                "expected one of: allowed, denied, failed",
            ));
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
    let items: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next = if has_more {
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(
        HttpResponse::Ok()
            .json(serde_json::json!({ "items": items, "limit": limit, "next": next })),
    )
}
