//! The Prometheus listener (`STRATA_METRICS_BIND`, its own port, no credentials):
//! `GET /metrics`. Schedule, job, queue and per-source figures are read from PostgreSQL
//! at each scrape, so every replica reports the same truth and an alert on "no successful backup in 26 h" works
//! whichever replica Prometheus reaches. The process's own metrics follow (HTTP requests
//! it served, its requests to storage: `strata_telemetry::metrics`).

use std::net::TcpListener;
use std::sync::atomic::AtomicU64;

use crate::config::Config;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use strata_catalog as db;
use strata_telemetry::metrics::{JobLabels, SourceLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    schedule_id: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FireLabels {
    schedule_id: String,
    source: String,
    outcome: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Binds the listener; `None` when metrics are off. The server runs until `stop`.
pub fn bind(config: &Config, pool: PgPool) -> anyhow::Result<Option<actix_web::dev::Server>> {
    let Some(bind) = &config.common.metrics_bind else {
        return Ok(None);
    };
    let listener =
        TcpListener::bind(bind).with_context(|| format!("binding STRATA_METRICS_BIND={bind}"))?;
    let addr = listener.local_addr()?;
    if let Some(file) = &config.common.metrics_addr_file {
        std::fs::write(file, addr.to_string())
            .with_context(|| format!("writing STRATA_METRICS_ADDR_FILE {}", file.display()))?;
    }
    let pool = web::Data::new(pool);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(Some(server))
}

async fn metrics(pool: web::Data<PgPool>) -> HttpResponse {
    match render(&pool).await {
        Ok(body) => HttpResponse::Ok()
            .content_type(strata_telemetry::metrics::CONTENT_TYPE)
            .body(body),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "rendering metrics failed");
            HttpResponse::ServiceUnavailable()
                .body("metrics unavailable: the database cannot be read\n")
        }
    }
}

async fn render(pool: &PgPool) -> anyhow::Result<String> {
    let mut conn = pool.acquire().await?;
    let rows = db::schedules::metrics(&mut conn).await?;
    let jobs = strata_jobs::store::metrics(&mut conn).await?;
    drop(conn);

    let mut registry = Registry::with_prefix("strata");
    let last_success = Family::<ScheduleLabels, F64Gauge>::default();
    let next_run = Family::<ScheduleLabels, F64Gauge>::default();
    let enabled = Family::<ScheduleLabels, Gauge>::default();
    let fires = Family::<FireLabels, Gauge>::default();
    registry.register(
        "schedule_last_success_timestamp_seconds",
        "When the schedule's newest successful backup finished (Unix time; absent before the first)",
        last_success.clone(),
    );
    registry.register(
        "schedule_next_run_timestamp_seconds",
        "When the schedule fires next (Unix time; absent while disabled)",
        next_run.clone(),
    );
    registry.register(
        "schedule_enabled",
        "1 when the schedule is enabled",
        enabled.clone(),
    );
    registry.register(
        "schedule_fires",
        "Recorded fires of the schedule by outcome (queued, skipped_busy, missed, failed)",
        fires.clone(),
    );
    for r in rows {
        let labels = ScheduleLabels {
            schedule_id: r.id.to_string(),
            source: r.source_name.clone(),
        };
        if let Some(t) = r.last_success_at {
            last_success
                .get_or_create(&labels)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(t) = r.next_run_at.filter(|_| r.enabled) {
            next_run
                .get_or_create(&labels)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
        enabled.get_or_create(&labels).set(i64::from(r.enabled));
        for (outcome, n) in [
            ("queued", r.fires_queued),
            ("skipped_busy", r.fires_skipped_busy),
            ("missed", r.fires_missed),
            ("failed", r.fires_failed),
        ] {
            fires
                .get_or_create(&FireLabels {
                    schedule_id: labels.schedule_id.clone(),
                    source: labels.source.clone(),
                    outcome: outcome.into(),
                })
                .set(n);
        }
    }
    register_jobs(&mut registry, &jobs);
    // One exposition: both registries, then a single `# EOF`.
    let mut out = String::new();
    encode_registry(&mut out, &registry)?;
    strata_telemetry::metrics::encode_into(&mut out)?;
    encode_eof(&mut out)?;
    Ok(out)
}

/// Jobs by kind and status, the queue, and each source's last successful backup.
fn register_jobs(registry: &mut Registry, m: &strata_jobs::store::JobMetrics) {
    let jobs = Family::<JobLabels, Gauge>::default();
    let depth = Gauge::<i64>::default();
    let oldest = F64Gauge::default();
    let last_backup = Family::<SourceLabels, F64Gauge>::default();
    registry.register(
        "jobs",
        "Jobs in the catalog by kind and status (queued, running, succeeded, failed, cancelled)",
        jobs.clone(),
    );
    registry.register(
        "queue_depth",
        "Jobs queued, not yet claimed by a worker",
        depth.clone(),
    );
    registry.register(
        "queue_oldest_age_seconds",
        "How long the oldest queued job has waited (0 when none waits)",
        oldest.clone(),
    );
    registry.register(
        "source_last_success_timestamp_seconds",
        "When the source's newest complete backup finished (Unix time)",
        last_backup.clone(),
    );
    for (kind, status, n) in &m.by_kind_status {
        jobs.get_or_create(&JobLabels {
            kind: kind.clone(),
            status: status.clone(),
        })
        .set(*n);
        if status == "queued" {
            depth.inc_by(*n);
        }
    }
    oldest.set(m.oldest_queued_secs.unwrap_or(0.0).max(0.0));
    for (source, at) in &m.last_backup_by_source {
        last_backup
            .get_or_create(&SourceLabels {
                source: source.clone(),
            })
            .set(at.timestamp_millis() as f64 / 1000.0);
    }
}
