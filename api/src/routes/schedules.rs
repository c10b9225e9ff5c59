//! `/api/v1/backup/schedule…`: backups that run themselves. The API stores schedules
//! and computes their next fire; every API replica's ticker fires them, and PostgreSQL
//! makes each fire happen once (`strata_jobs::schedule`).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_catalog as db;
use strata_catalog::schedules::{FireRow, ScheduleFields, ScheduleRow, ScheduleView};
use strata_core::errors::ErrorCode;
use strata_core::model::BackupType;
use strata_core::retention::Policy;
use strata_jobs::schedule::When;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{reject_nul, ApiError, ApiResult};
use crate::openapi::schemas::{BackupTypeName, RetentionPolicy};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// A schedule to create, or the fields to change (`PUT`: a field left out keeps its
/// value). A bad value is a `400` naming its field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ScheduleBody {
    /// Source id or name; may be left out when exactly one source exists.
    source: Option<String>,
    /// `full` (default), `incremental` or `differential`.
    #[serde(rename = "type")]
    #[schema(value_type = Option<BackupTypeName>)]
    backup_type: Option<String>,
    /// Five fields (`minute hour day-of-month month day-of-week`, e.g. `"0 2 * * *"`) or
    /// six with seconds first. Required on create.
    #[schema(example = "0 2 * * *")]
    cron: Option<String>,
    /// IANA time zone whose wall clock the cron fields follow (default `UTC`); DST
    /// changes are handled (a time skipped by the change runs right after it, a time
    /// repeated runs once).
    #[schema(example = "Europe/Paris")]
    timezone: Option<String>,
    /// Applied after each successful backup of this schedule, chain-aware as
    /// `POST /api/v1/backup/prune`; `null` for none.
    retention: Option<RetentionPolicy>,
    /// Shorthand for `retention.retention_days` (the seed's field).
    retention_days: Option<u32>,
    /// After downtime, run a missed fire once (`true`, default) or skip it.
    catch_up: Option<bool>,
    /// Default `true`.
    enabled: Option<bool>,
}

/// One recorded fire.
#[derive(Debug, Serialize, ToSchema)]
pub struct FireView {
    pub fire_at: DateTime<Utc>,
    /// `queued` (a job was created), `skipped_busy` (a backup or restore of the source
    /// was queued or running), `missed` (downtime with `catch_up` off), `failed`.
    pub outcome: String,
    /// How many fire times this record stands for (a catch-up or a skip after downtime
    /// covers every missed one).
    pub covers: i32,
    pub job_id: Option<Uuid>,
    pub error: Option<Value>,
    pub recorded_at: DateTime<Utc>,
    /// The API replica (host:pid) that recorded it.
    pub recorded_by: String,
}

impl From<FireRow> for FireView {
    fn from(f: FireRow) -> Self {
        Self {
            fire_at: f.fire_at,
            outcome: f.outcome,
            covers: f.covers,
            job_id: f.job_id,
            error: f.error.map(|e| e.0),
            recorded_at: f.recorded_at,
            recorded_by: f.recorded_by,
        }
    }
}

/// A schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    pub id: Uuid,
    pub source_id: Uuid,
    /// The source's name.
    pub source: String,
    #[serde(rename = "type")]
    #[schema(value_type = BackupTypeName)]
    pub backup_type: String,
    pub cron: String,
    pub timezone: String,
    #[schema(value_type = Option<RetentionPolicy>)]
    pub retention: Option<Value>,
    pub catch_up: bool,
    pub enabled: bool,
    /// Null while disabled.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The newest fire's time.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The newest fire's job status (`queued`, `running`, `succeeded`, `failed`,
    /// `cancelled`), or its outcome when it made no job (`skipped_busy`, `missed`,
    /// `failed`).
    pub last_status: Option<String>,
    pub last_job_id: Option<Uuid>,
    /// When the newest successful backup of this schedule finished.
    pub last_success_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The newest fires, newest first (only on `GET /api/v1/backup/schedule/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_fires: Option<Vec<FireView>>,
}

impl From<ScheduleView> for ScheduleOut {
    fn from(v: ScheduleView) -> Self {
        let s = v.schedule;
        let last_status = match v.last_outcome.as_deref() {
            Some("queued") => v.last_job_status.or(Some("queued".into())),
            other => other.map(str::to_string),
        };
        Self {
            id: s.id,
            source_id: s.source_id,
            source: v.source_name,
            backup_type: s.backup_type,
            cron: s.cron,
            timezone: s.timezone,
            retention: s.retention.map(|r| r.0),
            catch_up: s.catch_up,
            enabled: s.enabled,
            next_run_at: s.next_run_at,
            last_run_at: v.last_run_at,
            last_status,
            last_job_id: v.last_job_id,
            last_success_at: v.last_success_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
            recent_fires: None,
        }
    }
}

/// The schedules.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub items: Vec<ScheduleOut>,
    pub count: usize,
}

/// List filters; unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the schedules of this source (id or name).
    pub source: Option<String>,
}

/// A schedule's body as sent, parsed like every JSON body (typed, unknown fields
/// refused: a wrong type, a missing or unknown field is `400 invalid_body` naming it);
/// `null` is the same as leaving a field out, except for `retention`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    source: Option<String>,
    #[serde(rename = "type")]
    backup_type: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    retention: Option<Option<Policy>>,
    retention_days: Option<u32>,
    catch_up: Option<bool>,
    enabled: Option<bool>,
}

/// A field that was given, even as `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A parsed body: `None` = not given.
#[derive(Debug, Default)]
struct Input {
    source: Option<String>,
    backup_type: Option<BackupType>,
    cron: Option<String>,
    timezone: Option<String>,
    /// `Some(None)`: cleared with `null`.
    retention: Option<Option<Policy>>,
    retention_days: Option<u32>,
    catch_up: Option<bool>,
    enabled: Option<bool>,
}

fn bad(code: ErrorCode, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, field, message)
}

fn parse_body(body: &[u8]) -> ApiResult<Input> {
    let b: Body = crate::body::parse_json(body)?;
    for (field, value) in [
        ("source", &b.source),
        ("type", &b.backup_type),
        ("cron", &b.cron),
        ("timezone", &b.timezone),
    ] {
        if let Some(v) = value {
            reject_nul(v, field)?;
        }
    }
    let input = Input {
        backup_type: b
            .backup_type
            .as_deref()
            .map(BackupType::parse)
            .transpose()?,
        source: b.source,
        cron: b.cron,
        timezone: b.timezone,
        retention: b.retention,
        retention_days: b.retention_days,
        catch_up: b.catch_up,
        enabled: b.enabled,
    };
    if let Some(t) = &input.timezone {
        When::parse("0 0 * * *", t)?;
    }
    if let Some(c) = &input.cron {
        strata_jobs::schedule::parse_cron(c)?;
    }
    Ok(input)
}

/// The policy to store: `retention` merged with the `retention_days` shorthand.
fn merged_policy(current: Option<Policy>, input: &Input) -> ApiResult<Option<Policy>> {
    let mut policy = match input.retention {
        Some(p) => p,
        None => current,
    };
    if let Some(days) = input.retention_days {
        let mut p = policy.unwrap_or_default();
        p.retention_days = Some(days);
        policy = Some(p);
    }
    match policy {
        Some(p) if p.is_unset() => Ok(None),
        Some(p) if p.keeps_nothing() => Err(bad(
            ErrorCode::PolicyKeepsNothing,
            if input.retention_days.is_some() {
                "retention_days"
            } else {
                "retention"
            },
            "this policy would delete every backup after each scheduled backup",
        )),
        other => Ok(other),
    }
}

/// The next fire after now, or `None` while disabled.
fn next_run(fields: &ScheduleFields) -> ApiResult<Option<DateTime<Utc>>> {
    if !fields.enabled {
        return Ok(None);
    }
    let when = When::parse(&fields.cron, &fields.timezone)?;
    Ok(when.next_after(Utc::now()))
}

async fn view(conn: &mut sqlx::PgConnection, id: Uuid, fires: bool) -> ApiResult<ScheduleOut> {
    let row = db::schedules::get(conn, id)
        .await?
        .ok_or_else(|| not_found(&id.to_string()))?;
    let mut out = ScheduleOut::from(row);
    if fires {
        out.recent_fires = Some(
            db::schedules::recent_fires(conn, id, 20)
                .await?
                .into_iter()
                .map(FireView::from)
                .collect(),
        );
    }
    Ok(out)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::ScheduleNotFound, format!("no schedule {id:?}"))
}

fn parse_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| not_found(raw))
}

/// `POST /api/v1/backup/schedule` → `201` with the schedule.
#[utoipa::path(
    post,
    path = "/api/v1/backup/schedule",
    tag = "schedules",
    request_body(content = ScheduleBody, description = "`cron` is required; everything else has a default"),
    responses(
        (status = 201, description = "Created; `next_run_at` says when it fires first", body = ScheduleOut),
        (status = 400, description = "Invalid body: `malformed_json`, `invalid_body` (a wrong type, an unknown field), \
            `cron_required`, `invalid_cron`, `invalid_timezone`, `invalid_backup_type`, `policy_keeps_nothing`, \
            `source_required`; `field` names it", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    let input = parse_body(&body)?;
    let Some(cron) = input.cron.clone() else {
        return Err(bad(
            ErrorCode::CronRequired,
            "cron",
            "a schedule needs a cron expression, e.g. \"0 2 * * *\"",
        ));
    };
    let mut tx = state.pool.begin().await?;
    let source =
        super::sources::named_or_only(&mut tx, input.source.as_deref(), "to schedule").await?;
    let mut fields = ScheduleFields {
        source_id: source.id,
        backup_type: input
            .backup_type
            .unwrap_or(BackupType::Full)
            .as_str()
            .into(),
        cron,
        timezone: input.timezone.clone().unwrap_or_else(|| "UTC".into()),
        retention: None,
        catch_up: input.catch_up.unwrap_or(true),
        enabled: input.enabled.unwrap_or(true),
        next_run_at: None,
    };
    fields.retention = merged_policy(None, &input)?
        .map(|p| serde_json::to_value(p).map_err(anyhow::Error::from))
        .transpose()?;
    fields.next_run_at = next_run(&fields)?;
    let id = Uuid::now_v7();
    db::schedules::insert(&mut tx, id, &fields).await?;
    let out = view(&mut tx, id, false).await?;
    tx.commit().await?;
    tracing::info!(schedule_id = %id, source = %source.name, cron = %fields.cron, "schedule created");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/backup/schedule/{id}")))
        .json(out))
}

/// `GET /api/v1/backup/schedule` → every schedule.
#[utoipa::path(
    get,
    path = "/api/v1/backup/schedule",
    tag = "schedules",
    params(ListQuery),
    responses(
        (status = 200, description = "The schedules, oldest first", body = ScheduleList),
        (status = 400, description = "Unknown parameter (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let source_id = match &query.source {
        Some(s) => Some(super::sources::named(&mut conn, s).await?.id),
        None => None,
    };
    let items: Vec<ScheduleOut> = db::schedules::list(&mut conn, source_id)
        .await?
        .into_iter()
        .map(ScheduleOut::from)
        .collect();
    Ok(HttpResponse::Ok().json(ScheduleList {
        count: items.len(),
        items,
    }))
}

/// `GET /api/v1/backup/schedule/{schedule_id}` → the schedule and its newest fires.
#[utoipa::path(
    get,
    path = "/api/v1/backup/schedule/{schedule_id}",
    tag = "schedules",
    params(("schedule_id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule, with `recent_fires`", body = ScheduleOut),
        (status = 404, description = "No such schedule (`schedule_not_found`)", body = ErrorBody),
    ),
)]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let mut conn = state.pool.acquire().await?;
    Ok(HttpResponse::Ok().json(view(&mut conn, id, true).await?))
}

/// `PUT /api/v1/backup/schedule/{schedule_id}` → the updated schedule. Fields left out
/// keep their values; the next fire is computed again from now.
#[utoipa::path(
    put,
    path = "/api/v1/backup/schedule/{schedule_id}",
    tag = "schedules",
    params(("schedule_id" = Uuid, Path, description = "The schedule's id")),
    request_body(content = ScheduleBody, description = "The fields to change"),
    responses(
        (status = 200, description = "Updated", body = ScheduleOut),
        (status = 400, description = "Invalid body, as for create; `field` names it", body = ErrorBody),
        (status = 404, description = "No such schedule (`schedule_not_found`) or source (`source_not_found`)", body = ErrorBody),
    ),
)]
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<String>,
    crate::body::RawBody(body): crate::body::RawBody,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let input = parse_body(&body)?;
    let mut tx = state.pool.begin().await?;
    // Waits for a replica firing it: the change applies from the next fire on.
    let current: ScheduleRow = db::schedules::lock(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(&path))?;
    let source_id = match &input.source {
        Some(s) => super::sources::named(&mut tx, s).await?.id,
        None => current.source_id,
    };
    let current_policy: Option<Policy> = current
        .retention
        .as_ref()
        .and_then(|r| serde_json::from_value(r.0.clone()).ok());
    let mut fields = ScheduleFields {
        source_id,
        backup_type: input
            .backup_type
            .map(|t| t.as_str().to_string())
            .unwrap_or(current.backup_type),
        cron: input.cron.clone().unwrap_or(current.cron),
        timezone: input.timezone.clone().unwrap_or(current.timezone),
        retention: None,
        catch_up: input.catch_up.unwrap_or(current.catch_up),
        enabled: input.enabled.unwrap_or(current.enabled),
        next_run_at: None,
    };
    fields.retention = merged_policy(current_policy, &input)?
        .map(|p| serde_json::to_value(p).map_err(anyhow::Error::from))
        .transpose()?;
    fields.next_run_at = next_run(&fields)?;
    db::schedules::update(&mut tx, id, &fields).await?;
    let out = view(&mut tx, id, false).await?;
    tx.commit().await?;
    tracing::info!(schedule_id = %id, "schedule updated");
    Ok(HttpResponse::Ok().json(out))
}

/// `DELETE /api/v1/backup/schedule/{schedule_id}` → `204`. Its backups stay; a job it
/// started runs to its end.
#[utoipa::path(
    delete,
    path = "/api/v1/backup/schedule/{schedule_id}",
    tag = "schedules",
    params(("schedule_id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule (`schedule_not_found`)", body = ErrorBody),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let mut tx = state.pool.begin().await?;
    if db::schedules::lock(&mut tx, id).await?.is_none() {
        return Err(not_found(&path));
    }
    db::schedules::delete(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(schedule_id = %id, "schedule deleted");
    Ok(HttpResponse::NoContent().finish())
}
