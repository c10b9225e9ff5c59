//! Health: `/api/v1/health` with details, `/livez` and `/readyz` for Kubernetes.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;
use strata_shared::db;

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

/// Error texts from drivers can be long; the health page shows their first line.
fn short(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn check_json(r: &Result<(), String>) -> serde_json::Value {
    match r {
        Ok(()) => json!({ "status": "ok" }),
        Err(e) => json!({ "status": "error", "error": e }),
    }
}

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (database, storage) = tokio::join!(check_database(&state), check_storage(&state));
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
            Ok(mut conn) => db::jobs::any_active(&mut conn).await.unwrap_or(true),
            Err(_) => true,
        },
        Err(_) => true,
    };
    let all_ok = database.is_ok() && storage.is_ok() && queue.is_ok();
    HttpResponse::Ok().json(json!({
        "status": if all_ok { "ok" } else { "degraded" },
        "canBackup": all_ok && !busy,
        "backupInProgress": busy,
        "checks": {
            "database": check_json(&database),
            "queue": check_json(&queue),
            "storage": check_json(&storage),
        },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The process is alive.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The API can serve: PostgreSQL answers. (RabbitMQ may be down: the outbox holds jobs.)
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match check_database(&state).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ok" })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "checks": { "database": e } })),
    }
}
