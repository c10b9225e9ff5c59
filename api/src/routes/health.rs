//! Health: `/api/v1/health` with details, `/livez` and `/readyz` for Kubernetes.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use strata_engine::repo::identity;

use utoipa::ToSchema;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

async fn check_database(state: &AppState) -> Result<(), String> {
    let probe = async {
        let mut conn = state.pool.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok::<(), sqlx::Error>(())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("unreachable: {}", short(&e.to_string()))),
        Err(_) => Err("timed out".into()),
    }
}

async fn check_storage(state: &AppState) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, state.storage.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(short(&e.to_string())),
        Err(_) => Err("timed out".into()),
    }
}

/// Whether the catalog and the storage describe the same repository (see
/// `strata_engine::repo::identity`); a mismatch carries its code and what to do.
async fn check_repository(
    state: &AppState,
) -> Result<(), (Option<strata_core::errors::ErrorCode>, String)> {
    let probe = async {
        let mut conn = state.pool.acquire().await?;
        identity::assess(&state.storage, &mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(mismatch))) => Err((Some(identity::MISMATCH_CODE), mismatch.message)),
        Ok(Err(e)) => Err((
            None,
            format!("cannot be checked: {}", short(&format!("{e:#}"))),
        )),
        Err(_) => Err((None, "cannot be checked: timed out".into())),
    }
}

/// Error texts from drivers can be long; the health page shows their first line.
fn short(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// The state of one dependency.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Ok,
    Error,
}

/// One dependency's check: `ok`, or `error` with the first line of the error.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub status: CheckState,
    /// A machine-readable reason, when there is one (`repository_mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<crate::openapi::schemas::ErrorCodeName>)]
    pub code: Option<strata_core::errors::ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

impl From<&Result<(), String>> for Check {
    fn from(r: &Result<(), String>) -> Self {
        match r {
            Ok(()) => Self {
                status: CheckState::Ok,
                code: None,
                error: None,
            },
            Err(e) => Self {
                status: CheckState::Error,
                code: None,
                error: Some(e.clone()),
            },
        }
    }
}

/// `ok` when every dependency answers, else `degraded`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverallState {
    Ok,
    Degraded,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthChecks {
    pub database: Check,
    pub queue: Check,
    pub storage: Check,
    /// Whether the catalog describes the repository in storage: `error` with code
    /// `repository_mismatch` (and what to do) when it describes another one, or the
    /// storage holds none while the catalog lists backups. No backup, restore or garbage
    /// collection runs then.
    pub repository: Check,
}

/// The health of the API and of the services it needs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub status: OverallState,
    /// A backup started now would run at once: every check is `ok` (the repository's
    /// included) and no job is active.
    pub can_backup: bool,
    /// A job is queued or running (also `true` when that cannot be known).
    pub backup_in_progress: bool,
    pub checks: HealthChecks,
    /// The API's version.
    #[schema(example = "0.1.0")]
    pub version: String,
}

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    pub status: CheckState,
}

/// Readiness: `ok`, or `error` with the database's problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: CheckState,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub checks: Option<ReadinessChecks>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// Why the database check failed.
    pub database: String,
}

/// Details of every dependency, and whether a backup could start now.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    responses((status = 200, description = "The report (also when degraded)", body = HealthReport)),
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (database, storage, repository) = tokio::join!(
        check_database(&state),
        check_storage(&state),
        check_repository(&state)
    );
    let queue = if state.relay.is_connected() {
        Ok(())
    } else {
        Err(state
            .relay
            .last_error()
            .unwrap_or_else(|| "not connected yet".into()))
    };
    let busy = match &database {
        Ok(()) => match state.pool.acquire().await {
            Ok(mut conn) => strata_jobs::store::any_active(&mut conn)
                .await
                .unwrap_or(true),
            Err(_) => true,
        },
        Err(_) => true,
    };
    let all_ok = database.is_ok() && storage.is_ok() && queue.is_ok() && repository.is_ok();
    HttpResponse::Ok().json(HealthReport {
        status: if all_ok {
            OverallState::Ok
        } else {
            OverallState::Degraded
        },
        can_backup: all_ok && !busy,
        backup_in_progress: busy,
        checks: HealthChecks {
            database: Check::from(&database),
            queue: Check::from(&queue),
            storage: Check::from(&storage),
            repository: match repository {
                Ok(()) => Check::from(&Ok(())),
                Err((code, error)) => Check {
                    status: CheckState::Error,
                    code,
                    error: Some(error),
                },
            },
        },
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The process is alive (Kubernetes liveness probe).
#[utoipa::path(
    get,
    path = "/livez",
    tag = "health",
    responses((status = 200, description = "Alive", body = Alive)),
)]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(Alive {
        status: CheckState::Ok,
    })
}

/// The API can serve: PostgreSQL answers. (RabbitMQ may be down: the outbox holds jobs.)
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "PostgreSQL does not answer", body = Readiness),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match check_database(&state).await {
        Ok(()) => HttpResponse::Ok().json(Readiness {
            status: CheckState::Ok,
            checks: None,
        }),
        Err(e) => HttpResponse::ServiceUnavailable().json(Readiness {
            status: CheckState::Error,
            checks: Some(ReadinessChecks { database: e }),
        }),
    }
}
