//! `strata-worker`: consumes jobs and runs backups, restores and verifications.
//!
//! `strata-worker` runs the worker; `strata-worker rotate-key` re-wraps an encrypted
//! repository's data keys with a new master key (see docs/FORMAT.md);
//! `strata-worker rebuild-catalog` rebuilds a lost PostgreSQL catalog from storage.

mod config;
mod databases;
mod jobs;
mod metrics;
mod runner;

use std::sync::Arc;

use crate::config::Config;
use anyhow::{bail, Context};
use strata_catalog as db;
use strata_engine::paths::PathPolicy;
use strata_engine::repo::crypto::{open_any, KeySlot, MasterKey};
use strata_engine::repo::{identity, Repository, CONFIG_KEY};
use strata_storage as storage;
use strata_telemetry as telemetry;
use tokio::sync::watch;

/// Chunk buffers are 0.5–8 MiB and are made and freed by many threads (compression,
/// decoding); glibc gives each thread an arena that keeps its freed buffers resident, so
/// peak memory grows with the number of threads. Two arenas keep the reuse (fast) and
/// bound the memory.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() {
    tune_allocator();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(async_main()));
    if let Err(e) = result {
        // The cause chain on one line, without a backtrace dump: it is for operators.
        eprintln!("strata-worker: {e:#}");
        std::process::exit(1);
    }
}

async fn async_main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let telemetry = telemetry::init("strata-worker", &config.common.log_format);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["run"] => run(config).await,
        ["rotate-key"] => rotate_key(config, false).await,
        ["rotate-key", "--keep-old"] => rotate_key(config, true).await,
        ["rebuild-catalog"] => rebuild_catalog(config, false).await,
        ["rebuild-catalog", "--new-repository"] => rebuild_catalog(config, true).await,
        _ => Err(anyhow::anyhow!(
            "usage: strata-worker [run] | strata-worker rotate-key [--keep-old] | strata-worker rebuild-catalog [--new-repository]"
        )),
    };
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "strata-worker stopped");
    }
    // Spans still buffered leave before the process does.
    telemetry.shutdown();
    result
}

fn master_key(config: &Config) -> anyhow::Result<Option<MasterKey>> {
    config
        .storage
        .encryption_key
        .as_ref()
        .map(|k| MasterKey::new(k.expose()))
        .transpose()
        .map_err(anyhow::Error::from)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let master = master_key(&config)?;
    db::ensure_database(&config.common.database_url).await?;
    let pool = db::connect(
        &config.common.database_url,
        (config.concurrency as u32 * 3).max(5),
    )
    .await?;
    db::migrate(&pool).await?;
    let storage = config.storage.open().await.context("opening storage")?;
    // The catalog and the storage must describe one repository (created here on first
    // use). When they do, a worker that cannot open it (wrong key, missing key) refuses
    // to start, so it never claims a job it cannot run. When they disagree, it runs and
    // fails every job that needs the repository with `repository_mismatch`, saying what
    // to do, and looks again before each job.
    let repo = match identity::reconcile(&storage, &pool, master.as_ref()).await? {
        Ok(_) => Some(Repository::open(storage.clone(), master.as_ref()).await?),
        Err(mismatch) => {
            tracing::error!(
                code = identity::MISMATCH_CODE.as_str(),
                error = %mismatch,
                "the catalog and the repository disagree: jobs that need the repository will be refused"
            );
            None
        }
    };
    let metrics = metrics::start(&config)?;
    let metrics_handle = metrics.as_ref().map(|m| m.handle());
    let metrics_task = metrics.map(tokio::spawn);
    let worker_id = strata_jobs::runner::worker_id();
    tracing::info!(
        %worker_id,
        storage = %storage.describe(),
        repository = ?repo.as_ref().map(|r| r.config.repository_id),
        encrypted = repo.as_ref().is_some_and(|r| r.config.encryption.is_some()),
        queue = %config.jobs.queue_name,
        "worker ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let handler = Arc::new(runner::Worker {
        paths: Arc::new(PathPolicy::from_env(
            &config.common.data_dir,
            &config.storage.url,
        )?),
        config: config.clone(),
        pool: pool.clone(),
        storage,
        master,
        repo: tokio::sync::Mutex::new(repo),
    });
    // The worker relays the outbox too: a retry, a release or a sweep it writes reaches
    // RabbitMQ with no API process running. It stops after the jobs do, so a job handed
    // back while stopping is published first.
    let (relay_stop_tx, relay_stop_rx) = watch::channel(false);
    let relay = tokio::spawn(strata_jobs::relay::run(
        pool.clone(),
        config.jobs.clone(),
        "strata-worker",
        Arc::new(strata_jobs::relay::RelayState::default()),
        relay_stop_rx,
    ));
    let sweeper = tokio::spawn(strata_jobs::runner::sweeper(
        pool.clone(),
        handler.clone(),
        config.jobs.sweep_interval,
        stop_rx.clone(),
    ));
    let runner = Arc::new(strata_jobs::runner::Runner {
        config: strata_jobs::runner::RunnerConfig {
            jobs: config.jobs.clone(),
            concurrency: config.concurrency,
            stall: config.stall,
            worker_id,
        },
        pool,
        handler,
    });
    let consuming = tokio::spawn(runner.run(stop_rx));
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    let _ = stop_tx.send(true);
    let _ = consuming.await;
    let _ = sweeper.await;
    let _ = relay_stop_tx.send(true);
    let _ = relay.await;
    if let Some(handle) = metrics_handle {
        handle.stop(true).await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Adds a key slot for `STRATA_NEW_ENCRYPTION_KEY`, opened with the current
/// `STRATA_ENCRYPTION_KEY`, and (unless `keep_old`) removes the slots of every other key.
/// No data is re-encrypted: the slots wrap the same data keys.
/// Rebuilds a lost catalog (sources, backups, chunk index) from storage alone; prints
/// the report as JSON. Run it with every worker stopped. The catalog then describes
/// this repository (its identity is recorded; a catalog of another repository forgets
/// that one's backups and chunk index). With `new_repository`, a storage that holds no
/// repository gets a new, empty one first (the way out when a repository's data is lost).
async fn rebuild_catalog(config: Config, new_repository: bool) -> anyhow::Result<()> {
    let master = master_key(&config)?;
    db::ensure_database(&config.common.database_url).await?;
    let pool = db::connect(&config.common.database_url, 4).await?;
    db::migrate(&pool).await?;
    let storage = storage::open(&config.storage.url, &config.storage.s3)
        .await
        .context("opening storage")?;
    match (identity::read_stored(&storage).await?, new_repository) {
        (identity::Stored::Missing, true) => {
            Repository::create(&storage, master.as_ref()).await?;
        }
        (identity::Stored::Missing, false) => bail!(
            "{} holds no repository (no `config` object): there is nothing to rebuild from. Point \
             STRATA_STORAGE at the repository; if its data is lost for good, `strata-worker \
             rebuild-catalog --new-repository` starts a new, empty one there",
            storage.describe()
        ),
        (_, true) => bail!(
            "{} already holds a repository: run `strata-worker rebuild-catalog` without --new-repository",
            storage.describe()
        ),
        (_, false) => {}
    }
    let repo = Repository::open(storage, master.as_ref())
        .await
        .context("opening the repository (is STRATA_ENCRYPTION_KEY set for an encrypted one?)")?;
    let report = strata_engine::repo::rebuild::rebuild(&repo, &pool).await?;
    let json = serde_json::to_string_pretty(&report)?;
    tracing::info!(report = %serde_json::to_string(&report)?, "rebuild-catalog done");
    println!("{json}");
    Ok(())
}

async fn rotate_key(config: Config, keep_old: bool) -> anyhow::Result<()> {
    let Some(current) = master_key(&config)? else {
        bail!("set STRATA_ENCRYPTION_KEY to the current master key");
    };
    let new = std::env::var("STRATA_NEW_ENCRYPTION_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .context("set STRATA_NEW_ENCRYPTION_KEY to the new master key")?;
    let new = MasterKey::new(&new)?;
    let storage = storage::open(&config.storage.url, &config.storage.s3)
        .await
        .context("opening storage")?;
    let mut repo_config = Repository::read_config(&storage).await?;
    let Some(enc) = repo_config.encryption.as_mut() else {
        bail!("the repository at {} is not encrypted", storage.describe());
    };
    let keys = open_any(&enc.key_slots, &current)?;
    let slot = KeySlot::create(&new, &keys)?;
    if keep_old {
        enc.key_slots.push(slot);
    } else {
        enc.key_slots = vec![slot];
    }
    storage
        .put(CONFIG_KEY, serde_json::to_vec_pretty(&repo_config)?.into())
        .await
        .context("writing the repository config")?;
    // Prove the new key opens it before telling the operator to switch.
    Repository::open(storage, Some(&new)).await?;
    tracing::info!(
        keep_old,
        "master key rotated: set STRATA_ENCRYPTION_KEY to the new key everywhere"
    );
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
