//! `strata-worker`: consumes jobs and runs backups and restores.

mod jobs;
mod runner;

use std::sync::Arc;

use anyhow::Context;
use strata_shared::config::Config;
use strata_shared::repo::Repository;
use strata_shared::{db, storage, telemetry};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init("strata-worker", &config.log_format);
    if let Err(e) = run(config).await {
        tracing::error!(error = %format!("{e:#}"), "strata-worker stopped");
        return Err(e);
    }
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    db::ensure_database(&config.database_url).await?;
    let pool = db::connect(
        &config.database_url,
        (config.worker_concurrency as u32 * 3).max(5),
    )
    .await?;
    db::migrate(&pool).await?;
    let storage = storage::open(&config.storage_url, &config.s3)
        .await
        .context("opening storage")?;
    let repo = Repository::open_or_init(storage, &pool).await?;
    let worker_id = runner::worker_id();
    tracing::info!(%worker_id, storage = %repo.storage.describe(), queue = %config.queue_name, "worker ready");

    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(runner::sweeper(
        pool.clone(),
        config.sweep_interval,
        stop_rx.clone(),
    ));
    let runner = Arc::new(runner::Runner {
        config,
        pool,
        repo,
        worker_id,
    });
    let consuming = tokio::spawn(runner.run(stop_rx));
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    let _ = stop_tx.send(true);
    let _ = consuming.await;
    let _ = sweeper.await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
