//! The administrative commands of `strata-api`, run where the database is reachable, for
//! the first login and the way back in after a lock-out: `create-key` registers an API
//! key, `create-user` a user with a password. Each is audited as `CLI <command>`.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use strata_auth::{keys, password, Role};
use strata_catalog as db;

use crate::config::Config;

/// How `strata-api create-key` is called.
pub const CREATE_KEY_USAGE: &str =
    "strata-api create-key --role viewer|backup_operator|admin [--name NAME] [--expires-at RFC3339]";

/// How `strata-api create-user` is called.
pub const CREATE_USER_USAGE: &str =
    "strata-api create-user --email EMAIL --role viewer|backup_operator|admin  (the password is read from stdin)";

/// `--flag value` and `--flag=value` pairs, each flag one of `known`.
fn flags(args: &[String], known: &[&str], usage: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) => (f, v.to_string()),
            None => (
                arg.as_str(),
                it.next()
                    .cloned()
                    .with_context(|| format!("{arg} needs a value; usage: {usage}"))?,
            ),
        };
        if !known.contains(&flag) {
            bail!("unknown argument {flag:?}; usage: {usage}");
        }
        out.insert(flag.to_string(), value);
    }
    Ok(out)
}

fn role_flag(flags: &HashMap<String, String>, usage: &str) -> anyhow::Result<Role> {
    let v = flags
        .get("--role")
        .with_context(|| format!("--role is required; usage: {usage}"))?;
    Role::parse(v).map_err(|e| anyhow::anyhow!("--role: {}", e.message))
}

async fn open_catalog(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    db::ensure_database(&config.common.database_url).await?;
    let pool = db::connect(&config.common.database_url, 2).await?;
    db::migrate(&pool).await?;
    Ok(pool)
}

async fn audit_cli(
    conn: &mut sqlx::PgConnection,
    command: &str,
    target: &str,
) -> Result<(), sqlx::Error> {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    db::audit::insert(
        conn,
        &db::audit::NewAudit {
            request_id: &uuid::Uuid::now_v7().to_string(),
            actor: Some(&format!("cli:{user}")),
            role: None,
            method: "CLI",
            action: &format!("CLI {command}"),
            target: Some(target),
            outcome: "allowed",
            status: 201,
            client: Some("local"),
        },
    )
    .await
}

/// `strata-api create-key --role ROLE [--name NAME] [--expires-at RFC3339]`: registers a
/// new API key straight in the database and returns it (printed once on stdout).
pub async fn create_key(config: &Config, args: &[String]) -> anyhow::Result<String> {
    let f = flags(
        args,
        &["--role", "--name", "--expires-at"],
        CREATE_KEY_USAGE,
    )?;
    let role = role_flag(&f, CREATE_KEY_USAGE)?;
    let name = f
        .get("--name")
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| "created by strata-api create-key".into());
    if name.is_empty() || name.len() > 100 || name.contains('\0') {
        bail!("--name: must be 1 to 100 characters");
    }
    let expires_at = match f.get("--expires-at") {
        None => None,
        Some(v) => {
            let at = chrono::DateTime::parse_from_rfc3339(v)
                .with_context(|| format!("--expires-at: {v:?} is not an RFC 3339 time"))?
                .with_timezone(&chrono::Utc);
            if at <= chrono::Utc::now() {
                bail!("--expires-at: must be in the future");
            }
            Some(at)
        }
    };
    let pool = open_catalog(config).await?;
    let generated = keys::generate();
    let mut tx = pool.begin().await?;
    db::keys::insert(
        &mut tx,
        &db::keys::NewKey {
            id: &generated.id,
            name: &name,
            role: role.as_str(),
            hash: &generated.hash,
            created_by: Some("strata-api create-key"),
            expires_at,
        },
    )
    .await?;
    audit_cli(&mut tx, "create-key", &format!("key:{}", generated.id)).await?;
    tx.commit().await?;
    tracing::warn!(key_id = %generated.id, role = %role, "an API key was created with strata-api create-key");
    pool.close().await;
    Ok(generated.token)
}

/// The password for `create-user`: asked twice without echo on a terminal, otherwise the
/// first line of stdin (`printf '%s\n' "$PW" | strata-api create-user …`).
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password (at least 12 characters): ")?;
        let again = rpassword::prompt_password("Repeat the password: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `strata-api create-user --email EMAIL --role ROLE`: registers a user whose password
/// is read from stdin, for the first login without an API key. Returns the user's id.
pub async fn create_user(config: &Config, args: &[String]) -> anyhow::Result<String> {
    let f = flags(args, &["--email", "--role"], CREATE_USER_USAGE)?;
    let role = role_flag(&f, CREATE_USER_USAGE)?;
    let email = f
        .get("--email")
        .with_context(|| format!("--email is required; usage: {CREATE_USER_USAGE}"))?;
    crate::routes::users::check_email(email, "--email")
        .map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
    let pw = read_password()?;
    password::check_policy(&pw).map_err(|why| anyhow::anyhow!("the password {why}"))?;
    let hash = password::hash(&pw)?;
    let pool = open_catalog(config).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = pool.begin().await?;
    let inserted = db::users::insert(
        &mut tx,
        &db::users::NewUser {
            id: &id,
            email,
            role: role.as_str(),
            password_hash: &hash,
            created_by: Some("strata-api create-user"),
        },
    )
    .await;
    match inserted {
        Err(e) if db::is_unique_violation(&e, db::users::EMAIL_UNIQUE) => {
            bail!("a user with the email {:?} exists already", email.trim())
        }
        other => other?,
    };
    audit_cli(&mut tx, "create-user", &format!("user:{id}")).await?;
    tx.commit().await?;
    tracing::warn!(user_id = %id, role = %role, "a user was created with strata-api create-user");
    pool.close().await;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_take_both_spellings_and_name_what_is_wrong() {
        let f = flags(
            &args(&["--role", "admin", "--name=ci"]),
            &["--role", "--name"],
            "u",
        )
        .unwrap();
        assert_eq!(f["--role"], "admin");
        assert_eq!(f["--name"], "ci");
        let e = flags(&args(&["--rol", "admin"]), &["--role"], "u").unwrap_err();
        assert!(e.to_string().contains("--rol"), "{e}");
        let e = flags(&args(&["--role"]), &["--role"], "u").unwrap_err();
        assert!(e.to_string().contains("needs a value"), "{e}");
    }
}
