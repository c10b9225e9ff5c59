//! The worker's Prometheus listener (`STRATA_METRICS_BIND`, default `127.0.0.1:9465`,
//! no credentials): `GET /metrics` serves what this process did since it started — the
//! jobs it finished, the bytes it backed up, its requests to storage
//! (see `strata_telemetry::metrics`).

use std::net::TcpListener;

use crate::config::Config;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;

/// Binds the listener and starts serving on the current Tokio runtime; `None` when
/// metrics are off. The server runs until its handle's `stop`.
pub fn start(config: &Config) -> anyhow::Result<Option<actix_web::dev::Server>> {
    let Some(bind) = &config.common.metrics_bind else {
        return Ok(None);
    };
    let listener =
        TcpListener::bind(bind).with_context(|| format!("binding STRATA_METRICS_BIND={bind}"))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(|| App::new().route("/metrics", web::get().to(metrics)))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
    if let Some(file) = &config.common.metrics_addr_file {
        std::fs::write(file, addr.to_string())
            .with_context(|| format!("writing STRATA_METRICS_ADDR_FILE {}", file.display()))?;
    }
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(Some(server))
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(strata_telemetry::metrics::CONTENT_TYPE)
        .body(strata_telemetry::metrics::render())
}
