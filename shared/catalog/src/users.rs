//! The `users` and `user_sessions` tables: accounts that log in with a password, and the
//! sessions their logins opened.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The unique index on the lower-cased email.
pub const EMAIL_UNIQUE: &str = "users_email_key_key";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub email_key: String,
    pub role: String,
    pub password_hash: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub password_hash: &'a str,
    pub created_by: Option<&'a str>,
}

/// The key an email is unique under: trimmed and lower-cased.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

pub async fn insert(conn: &mut PgConnection, u: &NewUser<'_>) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO users (id, email, email_key, role, password_hash, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .bind(u.id)
    .bind(u.email.trim())
    .bind(email_key(u.email))
    .bind(u.role)
    .bind(u.password_hash)
    .bind(u.created_by)
    .fetch_one(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn by_email(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM users WHERE email_key = $1")
        .bind(email_key(email))
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM users ORDER BY email_key")
        .fetch_all(conn)
        .await
}

/// Deletes a user and (by cascade) every session of theirs. `false`: no such user.
pub async fn delete(conn: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a new password hash and revokes every session of the user except `keep`.
pub async fn set_password(
    conn: &mut PgConnection,
    id: &str,
    password_hash: &str,
    keep: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE user_sessions SET revoked_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Opens a session for a user who just logged in, and records the login.
pub async fn open_session(
    conn: &mut PgConnection,
    id: &str,
    user_id: &str,
    expires_at: DateTime<Utc>,
    client: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_sessions (id, user_id, expires_at, client) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(user_id)
    .bind(expires_at)
    .bind(client)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE users SET last_login_at = now() WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A live session (not revoked, not expired) with its user, or `None`.
pub async fn live_session(
    conn: &mut PgConnection,
    session_id: &str,
) -> Result<Option<(SessionRow, UserRow)>, sqlx::Error> {
    let Some(session) = sqlx::query_as::<_, SessionRow>(
        "SELECT id, user_id, created_at, expires_at, revoked_at FROM user_sessions
          WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let user = get(conn, &session.user_id).await?;
    Ok(user.map(|u| (session, u)))
}

/// Revokes a session. `false`: it was not live.
pub async fn revoke_session(
    conn: &mut PgConnection,
    session_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE user_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many users exist.
pub async fn count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(conn)
        .await
}
