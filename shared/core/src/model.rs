//! Domain types, parsed once at the boundary so the rest of the code cannot hold an invalid one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::errors::ErrorCode;

/// A validation failure that names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Machine-readable code, e.g. [`ErrorCode::InvalidBackupType`].
    pub code: ErrorCode,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $code:ident, $field:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses the wire form; the error lists the valid values.
            pub fn parse(value: &str) -> Result<Self, FieldError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(FieldError::new(
                        ErrorCode::$code,
                        $field,
                        format!(
                            "{other:?} is not valid; expected one of: {}",
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What a backup contains relative to earlier ones.
    BackupType, InvalidBackupType, "type", {
        Full => "full",
        Incremental => "incremental",
        Differential => "differential",
    }
);

string_enum!(
    /// What a job does.
    JobKind, InvalidJobKind, "kind", {
        Backup => "backup",
        Restore => "restore",
        Delete => "delete",
        Prune => "prune",
        Verify => "verify",
        Import => "import",
        Gc => "gc",
    }
);

string_enum!(
    /// Where a job is in its life.
    JobStatus, InvalidJobStatus, "status", {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// Whether a backup's data and manifest are all in storage.
    BackupStatus, InvalidBackupStatus, "status", {
        Pending => "pending",
        Complete => "complete",
        Failed => "failed",
        Deleting => "deleting",
    }
);

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A backup's readable key: `[a-z0-9_-]`, 1 to 150 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(String);

impl BackupId {
    pub const MAX_LEN: usize = 150;

    pub fn parse(value: &str, field: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                ErrorCode::InvalidBackupName,
                field,
                format!("must be 1 to {} characters long", Self::MAX_LEN),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(FieldError::new(
                ErrorCode::InvalidBackupName,
                field,
                "may contain only lowercase letters a-z, digits 0-9, `_` and `-`",
            ));
        }
        Ok(Self(value.to_string()))
    }

    /// The id a path segment names: a trailing `.db`, `.sql`, `.tar` or `.zip` (the name
    /// a download is saved as: seed 002's `filename`, seed 003's `key`) is a way of
    /// writing the id. Ids never hold a `.`, so this is never ambiguous.
    pub fn from_file_name(value: &str) -> &str {
        [".db", ".sql", ".tar", ".zip"]
            .iter()
            .find_map(|ext| value.strip_suffix(ext).filter(|id| !id.is_empty()))
            .unwrap_or(value)
    }

    /// Path segments of `/api/v1/backup/…` routes: a backup with one of these names
    /// could not be reached at `/api/v1/backup/{id}`.
    pub const RESERVED: [&'static str; 6] =
        ["create", "list", "prune", "restore", "schedule", "upload"];

    /// A name a client chooses for a new backup: [`BackupId::parse`], and not one of
    /// [`BackupId::RESERVED`].
    pub fn parse_new(value: &str, field: &str) -> Result<Self, FieldError> {
        let id = Self::parse(value, field)?;
        if Self::RESERVED.contains(&value) {
            return Err(FieldError::new(
                ErrorCode::InvalidBackupName,
                field,
                format!(
                    "{value:?} is a path of the API (/api/v1/backup/{value}); choose another name"
                ),
            ));
        }
        Ok(id)
    }

    /// A fresh key: the source's name, a UTC timestamp and a random suffix.
    pub fn generate(source_name: &str, now: chrono::DateTime<chrono::Utc>) -> Self {
        let mut stem: String = source_name
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        stem.truncate(100);
        let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
        Self(format!(
            "{stem}_{}_{suffix:06x}",
            now.format("%Y%m%d_%H%M%S")
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A source's name: letters, digits, `.`, `_`, `-`, 1 to 100 characters.
pub fn parse_source_name(value: &str) -> Result<String, FieldError> {
    let ok_len = !value.is_empty() && value.len() <= 100;
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok_len || !ok_chars {
        return Err(FieldError::new(
            ErrorCode::InvalidSourceName,
            "name",
            "must be 1 to 100 characters of letters, digits, `.`, `_` or `-`",
        ));
    }
    Ok(value.to_string())
}

/// An absolute path with no `..` component.
pub fn parse_absolute_path(value: &str, field: &str) -> Result<PathBuf, FieldError> {
    reject_nul(value, field)?;
    let path = Path::new(value);
    if value.is_empty() || !path.is_absolute() {
        return Err(FieldError::new(
            ErrorCode::InvalidPath,
            field,
            "must be an absolute path",
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(FieldError::new(
            ErrorCode::InvalidPath,
            field,
            "must not contain `..`",
        ));
    }
    if path == Path::new("/") {
        return Err(FieldError::new(
            ErrorCode::InvalidPath,
            field,
            "must not be the root directory",
        ));
    }
    Ok(path.to_path_buf())
}

/// The files part of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSpec {
    pub path: PathBuf,
    /// Glob patterns matched against paths relative to `path` and against base names.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A PostgreSQL database to back up. The URL's password is not kept here: it is stored
/// apart (`sources.secret`) and never returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresSpec {
    /// `postgres://user@host:port/database?sslmode=…`, without its password.
    pub url: String,
    /// Schemas to dump (`pg_dump --schema`); every schema when empty.
    #[serde(default)]
    pub schemas: Vec<String>,
}

/// An SQLite database file to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqliteSpec {
    pub path: PathBuf,
}

/// An SQLite database file and the files SQLite keeps beside it (`-wal`, `-shm`,
/// `-journal`), the database itself first.
pub fn sqlite_files(path: &Path) -> [PathBuf; 4] {
    ["", "-wal", "-shm", "-journal"].map(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    })
}

/// The database part of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseSpec {
    Postgres(PostgresSpec),
    Sqlite(SqliteSpec),
}

impl DatabaseSpec {
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// What a source backs up: a directory, a database, or both (captured by one backup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    pub files: Option<FilesSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
}

impl SourceSpec {
    /// `directory`, `postgres`, `sqlite`, `directory+postgres` or `directory+sqlite`.
    pub fn kind(&self) -> String {
        match (&self.files, &self.database) {
            (Some(_), Some(db)) => format!("directory+{}", db.engine()),
            (None, Some(db)) => db.engine().to_string(),
            _ => "directory".to_string(),
        }
    }

    /// The spec with no secret in it (a URL stored by an older version may hold one in
    /// its query): what goes into a manifest or a log line.
    pub fn without_secrets(&self) -> SourceSpec {
        let mut spec = self.clone();
        if let Some(DatabaseSpec::Postgres(pg)) = &mut spec.database {
            pg.url = PostgresUrl::shown(&pg.url);
        }
        spec
    }

    /// The SQLite file's path relative to the files part, when it lies inside it (as
    /// PocketBase's `pb_data/data.db`): the files walk skips it and its journals, and a
    /// restore puts the consistent copy back at that place in the tree.
    pub fn sqlite_inside_files(&self) -> Option<PathBuf> {
        match (&self.files, &self.database) {
            (Some(files), Some(DatabaseSpec::Sqlite(db))) => db
                .path
                .strip_prefix(&files.path)
                .ok()
                .filter(|rel| !rel.as_os_str().is_empty())
                .map(Path::to_path_buf),
            _ => None,
        }
    }
}

/// The secret parameters of a PostgreSQL connection, kept apart from its URL (stored in
/// `sources.secret`), never returned, logged or exported, and never put on a command
/// line: `password` (the userinfo password or `?password=`) and `sslpassword` (the
/// passphrase of an encrypted client key).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslpassword: Option<String>,
}

impl PostgresSecrets {
    pub fn is_empty(&self) -> bool {
        self.password.is_none() && self.sslpassword.is_none()
    }

    /// Each secret of `self`, else `other`'s.
    pub fn or(self, other: PostgresSecrets) -> PostgresSecrets {
        PostgresSecrets {
            password: self.password.or(other.password),
            sslpassword: self.sslpassword.or(other.sslpassword),
        }
    }

    /// Every secret value, to scrub from messages.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [&self.password, &self.sslpassword]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for PostgresSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSecrets")
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field(
                "sslpassword",
                &self.sslpassword.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// A PostgreSQL connection URL split into what may be shown and its secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL without any secret.
    pub url: String,
    pub secrets: PostgresSecrets,
    pub database: String,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.url)
            .field("secrets", &self.secrets)
            .field("database", &self.database)
            .finish()
    }
}

/// The libpq connection parameters a source's URL may carry in its query
/// (PostgreSQL 17's list, less `dbname`, which would contradict the database the path
/// names and Strata restores into). Any other key — a typo, another case, a driver's
/// own spelling — is refused: libpq would refuse it too, and a misspelt secret would
/// otherwise be kept in the URL, shown, and logged.
const LIBPQ_PARAMS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Parameters that name a file holding key material or certificates: their value must
/// be a path, never the material itself.
const FILE_PARAMS: &[&str] = &["sslcert", "sslkey", "sslrootcert", "sslcrl", "sslcrldir"];

/// Parses a `postgres://` URL a client gives: a host and a database name are required;
/// the secrets (the userinfo password, `password=` and `sslpassword=` in the query) are
/// split off; unknown query parameters, a secret given twice and inline key material
/// are refused. No message quotes a value.
pub fn parse_postgres_url(value: &str, field: &str) -> Result<PostgresUrl, FieldError> {
    split_postgres_url(value, field, true)
}

impl PostgresUrl {
    /// Splits a URL already stored (possibly by an older version that kept secrets in its
    /// query): secrets are split off, other parameters kept as they are.
    pub fn stored(value: &str) -> Result<PostgresUrl, FieldError> {
        split_postgres_url(value, "database.postgres", false)
    }

    /// A stored URL as it may be shown: without any secret (hidden whole when it does
    /// not parse).
    pub fn shown(value: &str) -> String {
        Self::stored(value)
            .map(|u| u.url)
            .unwrap_or_else(|_| "[REDACTED]".to_string())
    }
}

fn split_postgres_url(value: &str, field: &str, strict: bool) -> Result<PostgresUrl, FieldError> {
    let invalid = |message: &str| FieldError::new(ErrorCode::InvalidDatabaseUrl, field, message);
    if value.contains('\0') {
        return Err(invalid("must not contain a NUL character"));
    }
    let mut url = url::Url::parse(value).map_err(|e| {
        // The parser's message never contains the input, so no password leaks.
        invalid(&format!("not a valid URL ({e})"))
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(invalid("must start with postgres:// or postgresql://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "must name a host, as postgres://user@host:5432/database",
        ));
    }
    let database = url.path().trim_start_matches('/').to_string();
    let database = percent_decode(&database);
    if database.is_empty() || database.contains('/') {
        return Err(invalid(
            "must name one database, as postgres://user@host:5432/database",
        ));
    }
    if database.len() > 63 {
        return Err(invalid(
            "the database name is longer than PostgreSQL's 63 bytes",
        ));
    }
    let mut secrets = PostgresSecrets {
        password: url.password().map(percent_decode),
        ..PostgresSecrets::default()
    };
    let _ = url.set_password(None);
    // The query is split by hand: keys are percent-decoded as libpq decodes them
    // (`pass%77ord` is `password`), and the parameters kept stay exactly as written.
    let mut kept: Vec<&str> = Vec::new();
    let query = url.query().map(str::to_string).unwrap_or_default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key);
        let value = percent_decode(raw_value);
        // Stored URLs are read leniently, but a secret in any case is still a secret.
        let secret_key = if strict {
            key.clone()
        } else {
            key.to_ascii_lowercase()
        };
        let slot = match secret_key.as_str() {
            "password" => Some(&mut secrets.password),
            "sslpassword" => Some(&mut secrets.sslpassword),
            _ => None,
        };
        if let Some(slot) = slot {
            if strict && slot.is_some() {
                return Err(invalid(&format!(
                    "gives the {key} more than once (in the user part or the query): give it once"
                )));
            }
            if strict
                && key == "sslpassword"
                && (value.contains(['\n', '\r']) || value.ends_with(char::is_whitespace))
            {
                return Err(invalid(
                    "the sslpassword cannot hold a line break or end with white space",
                ));
            }
            *slot = Some(value);
            continue;
        }
        if strict {
            if !LIBPQ_PARAMS.contains(&key.as_str()) {
                let shown: String = key
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(40)
                    .collect();
                let hint = if key == "dbname" {
                    " (name the database in the path)".to_string()
                } else if key.eq_ignore_ascii_case("password")
                    || key.eq_ignore_ascii_case("sslpassword")
                {
                    format!(
                        " (parameter names are lower case: {})",
                        key.to_ascii_lowercase()
                    )
                } else {
                    String::new()
                };
                return Err(invalid(&format!(
                    "the query parameter {shown:?} is not a libpq connection parameter Strata accepts{hint}"
                )));
            }
            if FILE_PARAMS.contains(&key.as_str())
                && (value.contains("-----BEGIN") || value.chars().any(char::is_control))
            {
                return Err(invalid(&format!(
                    "{key} must be the path of a file on the worker, not the key or certificate itself"
                )));
            }
        }
        kept.push(pair);
    }
    if strict
        && secrets.sslpassword.is_some()
        && query
            .split('&')
            .any(|p| percent_decode(p.split('=').next().unwrap_or("")) == "service")
    {
        return Err(invalid(
            "an sslpassword cannot be combined with a service: put it in the service file",
        ));
    }
    url.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    Ok(PostgresUrl {
        url: url.to_string(),
        secrets,
        database,
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PostgreSQL identifier given by a user (a schema or database name): 1 to 63 bytes,
/// no NUL.
pub fn parse_pg_identifier(value: &str, field: &str) -> Result<String, FieldError> {
    if value.is_empty() || value.len() > 63 || value.contains('\0') {
        return Err(FieldError::new(
            ErrorCode::InvalidIdentifier,
            field,
            "must be 1 to 63 bytes without a NUL character",
        ));
    }
    Ok(value.to_string())
}

/// The job message that travels through RabbitMQ: a wake-up naming a job; PostgreSQL holds the rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: uuid::Uuid,
}

/// What a backup job is asked to do (stored in `jobs.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupPayload {
    pub backup_id: BackupId,
    pub source_id: uuid::Uuid,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// Whether to back up the files part; every part the source has when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_files: Option<bool>,
    /// Whether to back up the database part; every part the source has when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_database: Option<bool>,
}

/// What a restore job is asked to do (stored in `jobs.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestorePayload {
    pub backup_id: BackupId,
    pub source_id: uuid::Uuid,
    /// Where to restore; the source's own path when absent.
    pub target: Option<PathBuf>,
    /// Relative paths to restore (with everything below them); everything when empty.
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// A backup of the current state to take before anything is overwritten (its
    /// catalog row is created `pending` with the job).
    #[serde(default)]
    pub pre_restore_backup_id: Option<BackupId>,
    /// Where the database part goes: a PostgreSQL database name, or an SQLite file path;
    /// the source's own database when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_target: Option<String>,
    /// Restore the files part (default: when the backup has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_files: Option<bool>,
    /// Restore the database part (default: when the backup has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_database: Option<bool>,
    /// Keep the PostgreSQL database that a restore replaced (renamed
    /// `<name>_before_<timestamp>`) instead of dropping it once the job succeeds.
    #[serde(default)]
    pub keep_previous_database: bool,
}

/// What a verify job is asked to do (stored in `jobs.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyPayload {
    pub backup_id: BackupId,
    /// `data` (read and check every chunk) or `restore` (a restore drill into a scratch
    /// target, with the database's own checks).
    #[serde(default)]
    pub mode: VerifyMode,
}

string_enum!(
    /// How a verify job checks a backup.
    VerifyMode, InvalidVerifyMode, "mode", {
        Data => "data",
        Restore => "restore",
    }
);

#[allow(clippy::derivable_impls)] // the enum is generated by string_enum!
impl Default for VerifyMode {
    fn default() -> Self {
        Self::Data
    }
}

/// What a delete job is asked to do (stored in `jobs.payload`): remove these backups
/// (already marked `deleting` by the API) and reclaim the storage nobody needs any more.
/// Prune jobs carry the same payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletePayload {
    pub backup_ids: Vec<BackupId>,
}

string_enum!(
    /// Archive formats for download and upload.
    ArchiveFormat, InvalidArchiveFormat, "format", {
        Tar => "tar",
        Zip => "zip",
    }
);

string_enum!(
    /// Which part of a backup a download selects (`?part=`).
    DownloadPart, InvalidDownloadPart, "part", {
        Files => "files",
        Database => "database",
    }
);

/// What an import job is asked to do (stored in `jobs.payload`): read the uploaded
/// archive from storage and store its content as a new full backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportPayload {
    pub backup_id: BackupId,
    pub source_id: uuid::Uuid,
    /// The storage key the API wrote the (already validated) archive to.
    pub upload_key: String,
    pub format: ArchiveFormat,
}

/// No path, name or PostgreSQL text holds a NUL character: one in a request is the
/// client's error, never a failed query or system call.
fn reject_nul(value: &str, field: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(FieldError::new(
            ErrorCode::InvalidCharacter,
            field,
            "must not contain a NUL character",
        ));
    }
    Ok(())
}

/// A relative path inside a backup, for `include`: no leading `/`, no `..`, no NUL.
pub fn parse_relative_path(value: &str, field: &str) -> Result<PathBuf, FieldError> {
    reject_nul(value, field)?;
    let trimmed = value.trim_start_matches("./");
    let path = Path::new(trimmed);
    let plain = path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if trimmed.is_empty() || !plain {
        return Err(FieldError::new(
            ErrorCode::InvalidPath,
            field,
            "must be a relative path inside the backup, without `..`",
        ));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_type_error_names_the_valid_values() {
        let err = BackupType::parse("weekly").unwrap_err();
        assert_eq!(err.field, "type");
        assert!(err.message.contains("full, incremental, differential"));
        assert_eq!(BackupType::parse("full").unwrap(), BackupType::Full);
    }

    #[test]
    fn a_file_name_names_its_backup_and_nothing_else() {
        for (written, id) in [
            ("app_1.db", "app_1"),
            ("app_1.sql", "app_1"),
            ("app_1.tar", "app_1"),
            ("app_1.zip", "app_1"),
            ("app_1", "app_1"),
            ("app_1.db.db", "app_1.db"),
            ("app_1.DB", "app_1.DB"),
            (".db", ".db"),
            ("", ""),
        ] {
            assert_eq!(BackupId::from_file_name(written), id, "{written}");
        }
    }

    #[test]
    fn download_parts_are_spelt_exactly() {
        assert_eq!(
            DownloadPart::parse("database").unwrap(),
            DownloadPart::Database
        );
        assert_eq!(DownloadPart::parse("files").unwrap(), DownloadPart::Files);
        for bad in ["DATABASE", "Database", " database", "../database", "", "db"] {
            let err = DownloadPart::parse(bad).unwrap_err();
            assert_eq!(
                (err.code, err.field.as_str()),
                (ErrorCode::InvalidDownloadPart, "part")
            );
        }
    }

    #[test]
    fn backup_ids_follow_the_naming_rule() {
        assert!(BackupId::parse("nightly_2026-01-01", "name").is_ok());
        assert!(BackupId::parse("Nightly", "name").is_err());
        assert!(BackupId::parse("a/b", "name").is_err());
        assert!(BackupId::parse(&"a".repeat(151), "name").is_err());
        let generated = BackupId::generate("My App!", chrono::Utc::now());
        assert!(
            BackupId::parse(generated.as_str(), "name").is_ok(),
            "{generated}"
        );
        assert!(generated.as_str().starts_with("my-app-_"));
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        assert!(parse_absolute_path("/srv/app", "path").is_ok());
        assert_eq!(
            parse_absolute_path("srv", "path").unwrap_err().field,
            "path"
        );
        assert!(parse_absolute_path("/srv/../etc", "path").is_err());
        assert!(parse_absolute_path("/", "path").is_err());
        assert_eq!(
            parse_absolute_path("/srv/a\0b", "target").unwrap_err().code,
            "invalid_character"
        );
    }

    #[test]
    fn every_secret_of_a_database_url_is_split_off() {
        let u = parse_postgres_url(
            "postgres://app:pw%40x@db:5432/app?sslmode=require&password=q&sslpassword=k",
            "f",
        );
        assert_eq!(
            u.unwrap_err().code,
            "invalid_database_url",
            "password twice"
        );
        let u = parse_postgres_url(
            "postgres://app@db:5432/app?sslmode=require&pass%77ord=q%26r&sslpassword=k&connect_timeout=5",
            "f",
        )
        .unwrap();
        assert_eq!(
            u.url,
            "postgres://app@db:5432/app?sslmode=require&connect_timeout=5"
        );
        assert_eq!(u.secrets.password.as_deref(), Some("q&r"));
        assert_eq!(u.secrets.sslpassword.as_deref(), Some("k"));
        assert_eq!(u.database, "app");
        let u = parse_postgres_url("postgres://app:pw@db/app", "f").unwrap();
        assert_eq!(u.url, "postgres://app@db/app");
        assert_eq!(u.secrets.password.as_deref(), Some("pw"));
        let shown = format!("{u:?}");
        assert!(!shown.contains("pw\""), "{shown}");
        for bad in [
            "postgres://a@h/d?PASSWORD=x",
            "postgres://a@h/d?Password=x",
            "postgres://a@h/d?passwrod=x",
            "postgres://a@h/d?dbname=x",
            "postgres://a@h/d?sslkey=-----BEGIN%20KEY-----",
            "postgres://a@h/d?sslrootcert=%0Ax",
            "postgres://a@h/d?sslpassword=x%0A",
            "postgres://a@h/d?sslpassword=x&service=s",
            "postgres://a@h/d?statement-cache-capacity=3",
        ] {
            let e = parse_postgres_url(bad, "database.postgres").unwrap_err();
            assert_eq!(e.field, "database.postgres", "{bad}");
            assert!(!e.message.contains("=x"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn stored_urls_of_older_versions_are_shown_without_their_secrets() {
        let old = "postgres://a@h/d?PASSWORD=kept&password=p&sslpassword=s&x=1";
        let u = PostgresUrl::stored(old).unwrap();
        assert_eq!(u.url, "postgres://a@h/d?x=1");
        assert_eq!(u.secrets.password.as_deref(), Some("p"));
        assert_eq!(u.secrets.sslpassword.as_deref(), Some("s"));
        assert_eq!(PostgresUrl::shown("postgres://a:b@h/d"), "postgres://a@h/d");
        assert_eq!(PostgresUrl::shown("not a url"), "[REDACTED]");
    }

    #[test]
    fn relative_paths_refuse_nul_and_escapes() {
        assert!(parse_relative_path("sub/x", "include[0]").is_ok());
        let e = parse_relative_path("sub\0x", "include[0]").unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.field.as_str()),
            ("invalid_character", "include[0]")
        );
        for bad in ["", "/etc", "../x", "a/../../b", "./"] {
            assert!(parse_relative_path(bad, "include[0]").is_err(), "{bad}");
        }
    }
}
