//! PostgreSQL helpers for the database tests: unique names, connections, raw SQL and
//! dropping a test's own databases.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// `prefix_` and 12 random hexadecimal characters: a database or role name no other
/// test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub async fn connect(url: &str) -> PgConnection {
    PgConnectOptions::from_str(url)
        .expect("URL")
        .connect()
        .await
        .expect("connecting to the test database")
}

/// Runs SQL (several statements allowed); panics naming it on failure.
pub async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Drops a database, closing its connections first.
pub async fn drop_db(name: &str) {
    let mut admin = connect(&crate::admin_database_url()).await;
    exec(
        &mut admin,
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    )
    .await;
}
