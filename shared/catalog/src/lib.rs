//! PostgreSQL: connection, migrations, and one module of queries per table group.
//!
//! Queries use sqlx's runtime-checked API; the integration tests exercise every one.

pub mod audit;
pub mod backups;
pub mod chunks;
pub mod housekeeping;
pub mod keys;
pub mod repo_lock;
pub mod repo_sessions;
pub mod schedules;
pub mod settings;
pub mod sources;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use strata_core::config::SecretUrl;

/// The migrations in `shared/migrations/`, embedded in both binaries.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database named in `url` when it does not exist yet (a convenience for
/// local runs; in production the database is provisioned and this is a no-op).
pub async fn ensure_database(url: &SecretUrl) -> anyhow::Result<()> {
    let opts = PgConnectOptions::from_str(&strata_core::config::for_driver(url.expose()))
        .with_context(|| format!("parsing database URL {}", url.redacted()))?;
    let Some(name) = opts.get_database().map(str::to_string) else {
        return Ok(());
    };
    if opts.clone().connect().await.is_ok() {
        return Ok(());
    }
    let mut admin = opts
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("connecting to {}", url.redacted()))?;
    // The name comes from the operator's own configuration; quoting keeps it one identifier.
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created database"),
        // Another replica created it at the same moment (42P04, or 23505 when the two
        // CREATE DATABASE statements race inside the catalog).
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
        Err(e) => return Err(e).with_context(|| format!("creating database {name}")),
    }
    admin.close().await.ok();
    Ok(())
}

/// Connects a pool. Connections are checked before use, so a connection the server
/// dropped is replaced instead of failing a request.
pub async fn connect(url: &SecretUrl, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(&strata_core::config::for_driver(url.expose()))
        .with_context(|| format!("parsing database URL {}", url.redacted()))?
        .application_name("strata");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(true)
        .connect_with(opts)
        .await
        .with_context(|| format!("connecting to {}", url.redacted()))
}

/// Runs pending migrations. sqlx holds an advisory lock meanwhile, so replicas starting
/// together apply each migration once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")
}

/// Whether an error is PostgreSQL's unique violation on the named constraint or index.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(e) => {
            e.code().as_deref() == Some("23505") && e.constraint() == Some(constraint)
        }
        _ => false,
    }
}
