//! Domain types, parsed once at the boundary so the rest of the code cannot hold an invalid one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A validation failure that names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Machine-readable code, e.g. `invalid_backup_type`.
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $code:literal, $field:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
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
                        $code,
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
    BackupType, "invalid_backup_type", "type", {
        Full => "full",
        Incremental => "incremental",
        Differential => "differential",
    }
);

string_enum!(
    /// What a job does.
    JobKind, "invalid_job_kind", "kind", {
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
    JobStatus, "invalid_job_status", "status", {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// Whether a backup's data and manifest are all in storage.
    BackupStatus, "invalid_backup_status", "status", {
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
                "invalid_backup_name",
                field,
                format!("must be 1 to {} characters long", Self::MAX_LEN),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(FieldError::new(
                "invalid_backup_name",
                field,
                "may contain only lowercase letters a-z, digits 0-9, `_` and `-`",
            ));
        }
        Ok(Self(value.to_string()))
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
                "invalid_backup_name",
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
            "invalid_source_name",
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
            "invalid_path",
            field,
            "must be an absolute path",
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(FieldError::new(
            "invalid_path",
            field,
            "must not contain `..`",
        ));
    }
    if path == Path::new("/") {
        return Err(FieldError::new(
            "invalid_path",
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

/// A PostgreSQL connection URL split into what may be shown and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL without its password.
    pub url: String,
    pub password: Option<String>,
    pub database: String,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("database", &self.database)
            .finish()
    }
}

/// Parses a `postgres://` URL: a host and a database name are required; the password
/// (if any) is split off.
pub fn parse_postgres_url(value: &str, field: &str) -> Result<PostgresUrl, FieldError> {
    let invalid = |message: &str| FieldError::new("invalid_database_url", field, message);
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
    let password = url.password().map(percent_decode);
    let _ = url.set_password(None);
    Ok(PostgresUrl {
        url: url.to_string(),
        password,
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
            "invalid_identifier",
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
    VerifyMode, "invalid_verify_mode", "mode", {
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
    ArchiveFormat, "invalid_archive_format", "format", {
        Tar => "tar",
        Zip => "zip",
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
            "invalid_character",
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
            "invalid_path",
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
    fn relative_paths_refuse_nul_and_escapes() {
        assert!(parse_relative_path("sub/x", "include[0]").is_ok());
        let e = parse_relative_path("sub\0x", "include[0]").unwrap_err();
        assert_eq!(
            (e.code, e.field.as_str()),
            ("invalid_character", "include[0]")
        );
        for bad in ["", "/etc", "../x", "a/../../b", "./"] {
            assert!(parse_relative_path(bad, "include[0]").is_err(), "{bad}");
        }
    }
}
