//! `GET /api/v1/config/export` and `POST /api/v1/config/import`: Strata's own
//! configuration (sources with their retention policies, installation settings) as one
//! JSON document. Every secret is exported as `[REDACTED]`; on import a redacted value
//! is skipped, so the live secret stays.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use strata_catalog as db;
use strata_core::errors::ErrorCode;
use strata_core::model::{
    parse_absolute_path, parse_source_name, DatabaseSpec, FilesSpec, PostgresSecrets, PostgresUrl,
    SourceSpec,
};
use strata_core::retention::Policy;
use strata_engine::repo::writer::compile_excludes;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas::RetentionPolicy;
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// What a secret looks like in an export.
pub const REDACTED: &str = "[REDACTED]";
/// The export format's version; import accepts this one.
pub const VERSION: i64 = 1;
/// Installation settings an export carries; all of them are secrets.
const SETTINGS: &[&str] = &["file_token_secret"];

/// Whether a field holds a secret, by its name.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['-', '_'], "");
    [
        "password",
        "secret",
        "token",
        "apikey",
        "credential",
        "privatekey",
        "accesskey",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Replaces every secret in `value` with [`REDACTED`]: fields named like secrets, and
/// URLs that carry a password or a secret query parameter.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) if strata_core::config::url_has_secret(s) => {
            *s = REDACTED.into();
        }
        _ => {}
    }
}

/// Strata's configuration: sources by name, installation settings. On import, unknown
/// sections and settings are reported as failed; a `[REDACTED]` value keeps the live one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConfigDocument {
    sources: Option<std::collections::BTreeMap<String, ConfigSource>>,
    /// `file_token_secret` (64 hexadecimal characters); exported as `[REDACTED]`.
    #[schema(value_type = Option<Object>)]
    settings: Option<std::collections::BTreeMap<String, String>>,
}

/// A source in a configuration document (documentation only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConfigSource {
    /// `directory` (the default on import).
    #[schema(example = "directory")]
    kind: Option<String>,
    files: Option<super::sources::FilesView>,
    /// `{"postgres": url, "schemas": […], "password": "[REDACTED]", "sslpassword": "[REDACTED]"}`
    /// or `{"sqlite": path}`.
    database: Option<super::sources::DatabaseView>,
    retention: Option<RetentionPolicy>,
}

/// A configuration export.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigExport {
    /// Every secret is `[REDACTED]`.
    #[schema(value_type = ConfigDocument)]
    pub config: Value,
    /// RFC 3339, milliseconds, UTC.
    #[serde(rename = "exportedAt")]
    pub exported_at: String,
    /// The format's version.
    #[schema(example = 1)]
    pub version: i64,
}

/// `GET /api/v1/config/export` → a JSON attachment `{config, exportedAt, version}`.
#[utoipa::path(
    get,
    path = "/api/v1/config/export",
    tag = "config",
    responses(
        (status = 200, description = "The configuration, every secret redacted", body = ConfigExport,
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=\"strata-config-<YYYYmmddTHHMMSSZ>.json\"`"))),
    ),
)]
pub async fn export(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let mut sources = Map::new();
    for s in db::sources::list(&mut conn).await? {
        sources.insert(
            s.name.clone(),
            json!({
                "kind": s.kind,
                "files": s.spec.0.files,
                "database": s.spec.0.database.as_ref().map(|d| database_json(d, &redacted(&all_secrets(d, &s.secrets())))),
                "retention": s.retention.map(|r| r.0),
            }),
        );
    }
    let mut settings = Map::new();
    for key in SETTINGS {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(v) = value {
            settings.insert((*key).to_string(), Value::String(v));
        }
    }
    let mut config = json!({ "sources": sources, "settings": settings });
    redact(&mut config);
    let now = Utc::now();
    let filename = format!("strata-config-{}.json", now.format("%Y%m%dT%H%M%SZ"));
    Ok(HttpResponse::Ok()
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{filename}\""),
        ))
        .json(ConfigExport {
            config,
            exported_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            version: VERSION,
        }))
}

/// A configuration to import: an export, possibly edited.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    #[schema(value_type = ConfigDocument)]
    pub config: Map<String, Value>,
    /// Informative.
    #[serde(rename = "exportedAt")]
    pub exported_at: Option<String>,
    /// Must be 1 when given.
    #[schema(example = 1)]
    pub version: Option<i64>,
}

/// A path that could not be imported, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportFailure {
    /// E.g. `sources.web`, `settings.x`.
    pub path: String,
    pub error: String,
}

/// What an import did, path by path (`sources.<name>.files.path`…).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub applied: Vec<String>,
    /// Redacted values, left as they were.
    pub skipped: Vec<String>,
    pub failed: Vec<ImportFailure>,
}

/// What an import did, path by path.
#[derive(Debug, Default)]
struct Report {
    applied: Vec<String>,
    skipped: Vec<String>,
    failed: Vec<ImportFailure>,
}

impl Report {
    fn fail(&mut self, path: &str, error: impl Into<String>) {
        self.failed.push(ImportFailure {
            path: path.to_string(),
            error: error.into(),
        });
    }
}

/// `POST /api/v1/config/import` → `{applied, skipped, failed}`. Each source is applied
/// in its own transaction: one bad source does not stop the others.
#[utoipa::path(
    post,
    path = "/api/v1/config/import",
    tag = "config",
    request_body = ImportRequest,
    responses(
        (status = 200, description = "What was applied, skipped (redacted) and failed, path by path", body = ImportReport),
        (status = 400, description = "Invalid body (`invalid_body`…) or another format version \
            (`unsupported_config_version`); `field` names it", body = ErrorBody),
    ),
)]
pub async fn import(
    state: web::Data<AppState>,
    body: crate::body::JsonBody<ImportRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.into_inner();
    if let Some(v) = req.version {
        if v != VERSION {
            return Err(ApiError::bad_request(
                ErrorCode::UnsupportedConfigVersion,
                "version",
                format!("this Strata imports configuration version {VERSION}, not {v}"),
            ));
        }
    }
    let mut report = Report::default();
    for (section, value) in &req.config {
        match section.as_str() {
            "sources" => match value.as_object() {
                Some(sources) => {
                    for (name, entry) in sources {
                        import_source(&state, name, entry, &mut report).await?;
                    }
                }
                None => report.fail("sources", "must be an object keyed by source name"),
            },
            "settings" => match value.as_object() {
                Some(settings) => import_settings(&state, settings, &mut report).await?,
                None => report.fail("settings", "must be an object"),
            },
            other => report.fail(other, "unknown configuration section"),
        }
    }
    tracing::info!(
        applied = report.applied.len(),
        skipped = report.skipped.len(),
        failed = report.failed.len(),
        exported_at = ?req.exported_at,
        "configuration imported"
    );
    Ok(HttpResponse::Ok().json(ImportReport {
        applied: report.applied,
        skipped: report.skipped,
        failed: report.failed,
    }))
}

/// Every leaf path of `value` under `prefix` (arrays are leaves).
fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Puts the live value back wherever `imported` holds [`REDACTED`] (dropping the field
/// when there is no live value) and records those paths as skipped.
fn unredact(imported: &mut Value, live: Option<&Value>, path: &str, skipped: &mut Vec<String>) {
    let Some(map) = imported.as_object_mut() else {
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let child_path = format!("{path}.{k}");
        let live_child = live.and_then(|l| l.get(&k));
        if map.get(&k).and_then(Value::as_str) == Some(REDACTED) {
            skipped.push(child_path);
            match live_child {
                Some(v) => {
                    map.insert(k, v.clone());
                }
                None => {
                    map.remove(&k);
                }
            }
        } else if let Some(child) = map.get_mut(&k) {
            unredact(child, live_child, &child_path, skipped);
        }
    }
}

/// A database part in a configuration document: the source API's shape, with the
/// secrets apart (`password`, `sslpassword`: `[REDACTED]` in exports; the live ones
/// are kept on import).
fn database_json(db: &DatabaseSpec, secrets: &PostgresSecrets) -> Value {
    match db {
        DatabaseSpec::Postgres(pg) => json!({
            "postgres": PostgresUrl::shown(&pg.url),
            "schemas": pg.schemas,
            "password": secrets.password,
            "sslpassword": secrets.sslpassword,
        }),
        DatabaseSpec::Sqlite(s) => json!({ "sqlite": s.path }),
    }
}

/// A source's secrets: those stored apart, and any an older version left in its URL.
fn all_secrets(db: &DatabaseSpec, stored: &PostgresSecrets) -> PostgresSecrets {
    match db {
        DatabaseSpec::Postgres(pg) => stored.clone().or(PostgresUrl::stored(&pg.url)
            .map(|u| u.secrets)
            .unwrap_or_default()),
        DatabaseSpec::Sqlite(_) => PostgresSecrets::default(),
    }
}

/// Each secret that is set, as [`REDACTED`].
fn redacted(secrets: &PostgresSecrets) -> PostgresSecrets {
    PostgresSecrets {
        password: secrets.password.as_ref().map(|_| REDACTED.to_string()),
        sslpassword: secrets.sslpassword.as_ref().map(|_| REDACTED.to_string()),
    }
}

/// A source entry of an export, validated: its spec, retention policy and database
/// secrets (`Some(None)`: none; `None`: not given, keep the live ones).
type ParsedSource = (SourceSpec, Option<Value>, Option<Option<PostgresSecrets>>);

fn parse_source(entry: &Value) -> Result<ParsedSource, String> {
    let obj = entry.as_object().ok_or("must be an object")?;
    for key in obj.keys() {
        if !["kind", "files", "database", "retention"].contains(&key.as_str()) {
            return Err(format!("unknown field `{key}`"));
        }
    }
    let files = match obj.get("files").filter(|f| !f.is_null()) {
        Some(files) => {
            let files: FilesSpec =
                serde_json::from_value(files.clone()).map_err(|e| format!("files: {e}"))?;
            let path = files.path.to_str().ok_or("files.path: not UTF-8")?;
            if path.contains('\0') || files.exclude.iter().any(|e| e.contains('\0')) {
                return Err("files: must not contain a NUL character".into());
            }
            parse_absolute_path(path, "files.path").map_err(|e| e.to_string())?;
            compile_excludes(&files.exclude).map_err(|e| e.to_string())?;
            Some(files)
        }
        None => None,
    };
    let (database, secret) = match obj.get("database").filter(|d| !d.is_null()) {
        Some(db) => {
            let mut db = db.as_object().ok_or("database: must be an object")?.clone();
            let mut secret_field = |name: &str| match db.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(p)) if p == REDACTED => Ok(None),
                Some(Value::String(p)) if p.contains('\0') => {
                    Err(format!("database.{name}: must not contain a NUL character"))
                }
                Some(Value::String(p)) => Ok(Some(p)),
                Some(_) => Err(format!("database.{name}: must be a string")),
            };
            let given = PostgresSecrets {
                password: secret_field("password")?,
                sslpassword: secret_field("sslpassword")?,
            };
            if given
                .sslpassword
                .as_ref()
                .is_some_and(|p| p.contains(['\n', '\r']) || p.ends_with(char::is_whitespace))
            {
                return Err(
                    "database.sslpassword: cannot hold a line break or end with white space".into(),
                );
            }
            let request: super::sources::CreateDatabase =
                serde_json::from_value(Value::Object(db)).map_err(|e| format!("database: {e}"))?;
            let (spec, from_url) =
                super::sources::parse_database(request).map_err(|e| e.to_string())?;
            let secrets = given.or(from_url);
            let secret = match &spec {
                DatabaseSpec::Postgres(_) if !secrets.is_empty() => Some(Some(secrets)),
                DatabaseSpec::Postgres(_) => None,
                DatabaseSpec::Sqlite(_) => Some(None),
            };
            (Some(spec), secret)
        }
        None => (None, Some(None)),
    };
    if files.is_none() && database.is_none() {
        return Err("a source needs `files` (a directory to back up), `database`, or both".into());
    }
    let retention = match obj.get("retention") {
        None | Some(Value::Null) => None,
        Some(Value::Object(policy)) => {
            for (k, v) in policy {
                if !Policy::FIELDS.contains(&k.as_str()) {
                    return Err(format!(
                        "retention.{k}: unknown rule; expected one of: {}",
                        Policy::FIELDS.join(", ")
                    ));
                }
                if !v.is_null() && v.as_u64().is_none() {
                    return Err(format!("retention.{k}: must be a non-negative integer"));
                }
            }
            Some(Value::Object(policy.clone()))
        }
        Some(_) => return Err("retention: must be an object".into()),
    };
    Ok((SourceSpec { files, database }, retention, secret))
}

async fn import_source(
    state: &AppState,
    name: &str,
    entry: &Value,
    report: &mut Report,
) -> ApiResult<()> {
    let path = format!("sources.{name}");
    if let Err(e) = parse_source_name(name) {
        report.fail(&path, e.message);
        return Ok(());
    }
    let mut conn = state.pool.acquire().await?;
    let live = db::sources::find(&mut conn, name)
        .await?
        .filter(|s| s.name == name);
    let live_json = live.as_ref().map(|s| {
        json!({
            "kind": s.kind,
            "files": s.spec.0.files,
            "database": s.spec.0.database.as_ref().map(|d| database_json(d, &all_secrets(d, &s.secrets()))),
            "retention": s.retention.as_ref().map(|r| r.0.clone()),
        })
    });
    let mut merged = entry.clone();
    let mut skipped = Vec::new();
    unredact(&mut merged, live_json.as_ref(), &path, &mut skipped);
    let (spec, retention, secret) = match parse_source(&merged) {
        Ok(parsed) => parsed,
        Err(e) => {
            report.fail(&path, e);
            return Ok(());
        }
    };
    // The same places are refused as through `POST /sources`.
    if let Err(e) = super::sources::check_paths(&state.paths, &spec) {
        report.fail(&path, format!("{}: {}: {}", e.code, e.field, e.message));
        return Ok(());
    }
    let result = match &live {
        Some(s) => {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            db::sources::update(&mut tx, s.id, &spec, retention.as_ref()).await?;
            if let Some(secret) = &secret {
                db::sources::set_secret(&mut tx, s.id, secret.as_ref()).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        None => {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let secret = secret.clone().flatten();
            let created =
                db::sources::insert(&mut tx, Uuid::new_v4(), name, &spec, secret.as_ref())
                    .await
                    .map(|row| row.id);
            match created {
                Ok(id) => {
                    db::sources::update(&mut tx, id, &spec, retention.as_ref()).await?;
                    tx.commit().await?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => {
            let mut applied = Vec::new();
            leaves(&path, entry, &mut applied);
            report
                .applied
                .extend(applied.into_iter().filter(|p| !skipped.contains(p)));
            report.skipped.extend(skipped);
        }
        Err(e) if db::is_unique_violation(&e, db::sources::NAME_UNIQUE) => {
            report.fail(&path, "a source with this name was created concurrently")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn import_settings(
    state: &AppState,
    settings: &Map<String, Value>,
    report: &mut Report,
) -> ApiResult<()> {
    for (key, value) in settings {
        let path = format!("settings.{key}");
        if !SETTINGS.contains(&key.as_str()) {
            report.fail(&path, "unknown setting");
            continue;
        }
        match value.as_str() {
            Some(REDACTED) => report.skipped.push(path),
            Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                let mut conn = state.pool.acquire().await?;
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                )
                .bind(key)
                .bind(v)
                .execute(&mut *conn)
                .await?;
                report.applied.push(path);
            }
            _ => report.fail(&path, "must be 64 hexadecimal characters"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_by_name_and_in_urls() {
        let mut v = json!({
            "a": { "apiKey": "k", "password": "p", "path": "/srv" },
            "db": "postgres://u:pw@host/db",
            "plain_url": "https://example.com/x",
            "list": [{ "access_key": "AK" }],
        });
        redact(&mut v);
        assert_eq!(v["a"]["apiKey"], REDACTED);
        assert_eq!(v["a"]["password"], REDACTED);
        assert_eq!(v["a"]["path"], "/srv");
        assert_eq!(v["db"], REDACTED);
        assert_eq!(v["plain_url"], "https://example.com/x");
        assert_eq!(v["list"][0]["access_key"], REDACTED);
    }

    #[test]
    fn redacted_values_take_the_live_value_and_are_skipped() {
        let mut imported = json!({ "files": { "path": "/new", "token": REDACTED }, "x": REDACTED });
        let live = json!({ "files": { "path": "/old", "token": "live" } });
        let mut skipped = Vec::new();
        unredact(&mut imported, Some(&live), "s", &mut skipped);
        assert_eq!(
            imported,
            json!({ "files": { "path": "/new", "token": "live" } })
        );
        assert_eq!(
            skipped,
            vec!["s.files.token".to_string(), "s.x".to_string()]
        );
    }
}
