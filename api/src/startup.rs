//! Builds the application from configuration: the same way for the binary and tests.

use std::net::TcpListener;
use std::sync::Arc;

use crate::config::Config;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use strata_catalog as db;
use strata_engine::repo::crypto::MasterKey;
use tokio::sync::watch;

use crate::error::{json_error, path_error, query_error};
use crate::routes;
use crate::state::AppState;
use strata_jobs::relay::{self, RelayState};

use crate::body::JSON_LIMIT;

/// Creates the database if needed and applies every migration (`strata-api migrate`).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    db::ensure_database(&config.common.database_url).await?;
    let pool = db::connect(&config.common.database_url, 2).await?;
    db::migrate(&pool).await?;
    tracing::info!(
        migrations = db::MIGRATOR.iter().count(),
        "database migrated"
    );
    pool.close().await;
    Ok(())
}

/// Connects, migrates, binds, and serves until SIGINT / SIGTERM; in-flight requests finish.
pub async fn run(config: Config) -> anyhow::Result<()> {
    db::ensure_database(&config.common.database_url).await?;
    let pool = db::connect(&config.common.database_url, 20).await?;
    db::migrate(&pool).await?;
    let storage = config.storage.open().await.context("opening storage")?;
    // A bad key fails here, at start, rather than at the first download.
    let master_key = config
        .storage
        .encryption_key
        .as_ref()
        .map(|k| MasterKey::new(k.expose()))
        .transpose()?;

    let listener = TcpListener::bind(&config.bind)
        .with_context(|| format!("binding STRATA_BIND={}", config.bind))?;
    let addr = listener.local_addr()?;

    let relay_state = Arc::new(RelayState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let relay = tokio::spawn(relay::run(
        pool.clone(),
        config.jobs.clone(),
        "strata-api",
        relay_state.clone(),
        stop_rx.clone(),
    ));

    let metrics = crate::metrics::bind(&config, pool.clone())?;
    let metrics_handle = metrics.as_ref().map(|m| m.handle());
    let metrics_task = metrics.map(tokio::spawn);
    let ticker = if config.scheduler {
        Some(crate::scheduler::start(pool.clone(), &config).await?)
    } else {
        None
    };

    let housekeeping = tokio::spawn(housekeeping(
        pool.clone(),
        config.idempotency_ttl,
        config.schedule_fires_keep,
        stop_rx.clone(),
    ));
    let auth = crate::auth::setup(&config, &pool).await?;
    crate::auth::bootstrap_admin(&config, &pool, &format!("http://{addr}")).await?;
    // Written once the API can answer: scripts and tests wait for it.
    if let Some(file) = &config.addr_file {
        std::fs::write(file, addr.to_string())
            .with_context(|| format!("writing STRATA_ADDR_FILE {}", file.display()))?;
    }
    let downloads = Arc::new(tokio::sync::Semaphore::new(config.max_downloads));
    let state = web::Data::new(AppState {
        paths: strata_engine::paths::PathPolicy::from_env(
            &config.common.data_dir,
            &config.storage.url,
        )?,
        downloads,
        config,
        pool,
        storage,
        relay: relay_state,
        auth,
        repo: tokio::sync::OnceCell::new(),
        master_key,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(JSON_LIMIT)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::PayloadConfig::default().limit(JSON_LIMIT))
            // Innermost: an error answer actix makes itself (not an `ApiError`) is turned
            // into the wire shape before any other middleware sees it.
            .wrap(
                actix_web::middleware::ErrorHandlers::new()
                    .default_handler(crate::error::json_error_responses),
            )
            // Authorization is attached to each route (routes::configure), inside the
            // request trace, so denied requests are logged too.
            .wrap(actix_web::middleware::from_fn(
                crate::middleware::request_id,
            ))
            .wrap(actix_web::middleware::from_fn(
                crate::middleware::trace_requests,
            ))
            // Outermost: the time of the whole request, denied ones included.
            .wrap(actix_web::middleware::from_fn(crate::http_metrics::record))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .shutdown_timeout(30)
    // actix treats SIGINT (Ctrl-C) as a forced shutdown; both signals stop gracefully
    // here: requests in flight finish (up to 30 s), then the relay and housekeeping stop.
    .disable_signals()
    .listen(listener)?
    .run();
    tokio::spawn(stop_on_signal(server.handle()));
    tracing::info!(%addr, "strata-api listening on http://{addr}");
    let served = server.await.context("running the HTTP server");
    if let Some(ticker) = ticker {
        ticker.stop().await;
    }
    if let Some(handle) = metrics_handle {
        handle.stop(true).await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    served?;
    let _ = stop_tx.send(true);
    let _ = relay.await;
    let _ = housekeeping.await;
    tracing::info!("strata-api stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM, then stops the HTTP server gracefully.
async fn stop_on_signal(server: actix_web::dev::ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the API with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::info!(signal = name, "stopping: finishing the requests in flight");
    server.stop(true).await;
}

/// Deletes expired idempotency keys and old schedule fires: at start, then hourly.
async fn housekeeping(
    pool: sqlx::PgPool,
    key_ttl: std::time::Duration,
    fires_keep: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let pruned = async {
            let mut conn = pool.acquire().await?;
            db::housekeeping::prune(&mut conn, key_ttl, fires_keep).await
        }
        .await;
        match pruned {
            Ok(p) if p != Default::default() => tracing::info!(
                idempotency_keys = p.idempotency_keys,
                schedule_fires = p.schedule_fires,
                "expired rows deleted"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; it runs again in an hour"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}
