//! Every machine-readable code Strata answers (`{"error": {"code", …}}`) or records (a
//! job's `error.code`, a warning or a problem in a job's result, a schedule fire's
//! error), declared once with its wire string, its HTTP status and its meaning.
//!
//! The wire strings never change: clients match on them. `docs/ERRORS.md` is generated
//! from this table (see the `errors_md_is_current` test) and the OpenAPI document lists
//! [`ErrorCode::ALL`] as the values of an error's `code`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an HTTP status of `None` means: the code is only ever recorded by a job (its
/// `error`, a warning or a problem in its result, a schedule fire's error), never the
/// answer to a request.
pub const JOB_ONLY: Option<u16> = None;

macro_rules! error_codes {
    ($( $variant:ident = $wire:literal, $status:tt, $meaning:literal; )+) => {
        /// A machine-readable code (see the module documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(
                #[doc = $meaning]
                $variant,
            )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The wire string, e.g. `job_in_progress`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire),+ }
            }

            /// The HTTP status the API answers this code with; `None` for a code only
            /// jobs record.
            pub const fn status(self) -> Option<u16> {
                match self { $(ErrorCode::$variant => error_codes!(@status $status)),+ }
            }

            /// What the code means, in one line.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning),+ }
            }
        }
    };
    (@status JOB_ONLY) => { JOB_ONLY };
    (@status $n:literal) => { Some($n) };
}

error_codes! {
    // Requests: bodies, queries, routes.
    MalformedJson = "malformed_json", 400, "The body is not valid JSON.";
    InvalidBody = "invalid_body", 400, "The body does not fit the request: a wrong type, a missing or an unknown field (`field` names it by its path), on every route with a JSON body; or a body that could not be read.";
    InvalidQuery = "invalid_query", 400, "The query string does not fit the request (`field` names the parameter).";
    InvalidCharacter = "invalid_character", 400, "A string holds a NUL character.";
    InvalidRequest = "invalid_request", 400, "The request could not be read (an error actix answered itself).";
    RequestRefused = "request_refused", 400, "The request was refused with a client error not listed here; the answer keeps its own status.";
    Unauthorized = "unauthorized", 401, "Missing or invalid credentials.";
    Forbidden = "forbidden", 403, "The credential's role does not allow this operation.";
    LoginFailed = "login_failed", 401, "Wrong email or password (which of the two is not said).";
    TokenScope = "token_scope", 403, "This file token was issued for another backup.";
    NotFound = "not_found", 404, "No such resource (e.g. a path parameter that is not a valid id).";
    RouteNotFound = "route_not_found", 404, "No such route.";
    MethodNotAllowed = "method_not_allowed", 405, "The route does not accept this method.";
    BodyTimeout = "body_timeout", 408, "The client stopped sending its body for `STRATA_BODY_IDLE_TIMEOUT_SECS`.";
    LengthRequired = "length_required", 411, "The request needs a `Content-Length`.";
    PayloadTooLarge = "payload_too_large", 413, "The body is larger than the route accepts.";
    UriTooLong = "uri_too_long", 414, "The URI is too long.";
    RangeNotSatisfiable = "range_not_satisfiable", 416, "The `Range` asked for starts at or past the end of the file.";
    UnsupportedMediaType = "unsupported_media_type", 415, "The body is not of the media type the route reads (JSON: `Content-Type: application/json`).";
    IdempotencyKeyReused = "idempotency_key_reused", 422, "This `Idempotency-Key` was used for a different request.";
    TooManyFailures = "too_many_failures", 429, "Too many failed authentications from this client; retry after `Retry-After`.";
    TooManyDownloads = "too_many_downloads", 429, "Too many downloads are running; retry after `Retry-After`.";
    HeadersTooLarge = "headers_too_large", 431, "The request headers are too large.";
    InternalError = "internal_error", 500, "An internal error; it was logged with its cause.";

    // Validation of request fields (each answer's `field` names the field).
    InvalidIdempotencyKey = "invalid_idempotency_key", 400, "The `Idempotency-Key` header is empty, too long, or not printable ASCII.";
    InvalidEmail = "invalid_email", 400, "Not an email address (`name@domain`, at most 254 characters, no spaces).";
    WeakPassword = "weak_password", 400, "The password is shorter than 12 characters (or longer than 1024 bytes).";
    NotADirectory = "not_a_directory", 400, "The path is a file or a symlink in that backup; list a directory (or fetch the file with `…/file`).";
    NotAFile = "not_a_file", 400, "The path is a directory or a symlink in that backup; download a directory with `…/download?include=`.";
    DifferentSources = "different_sources", 400, "The two backups compared belong to different sources.";
    InvalidGlob = "invalid_glob", 400, "The `glob` parameter is not a valid glob pattern.";
    InvalidTime = "invalid_time", 400, "A time parameter is not an RFC 3339 time.";
    WrongPassword = "wrong_password", 400, "`current_password` is not the user's password.";
    SessionRequired = "session_required", 400, "The operation is about a user's login session: call it with the session token from `POST /api/v1/auth/login`, not an API key.";
    PocketbaseSourceRequired = "pocketbase_source_required", 400, "The PocketBase-compatible routes serve one source: set `STRATA_POCKETBASE_SOURCE`, or keep exactly one source.";
    InvalidLimit = "invalid_limit", 400, "`limit` is not between 1 and 1000.";
    InvalidCursor = "invalid_cursor", 400, "A page cursor (`from`) is not one this API returned.";
    InvalidOutcome = "invalid_outcome", 400, "An audit `outcome` filter other than allowed, denied or failed.";
    InvalidName = "invalid_name", 400, "An API key's name is empty or too long.";
    InvalidExpiry = "invalid_expiry", 400, "An API key's `expires_at` is not in the future.";
    InvalidRole = "invalid_role", 400, "Not a role Strata knows.";
    InvalidSourceName = "invalid_source_name", 400, "A source name is not 1 to 100 letters, digits, `.`, `_` or `-`.";
    InvalidBackupName = "invalid_backup_name", 400, "A backup name is too long, holds characters other than a-z, 0-9, `_`, `-`, or is reserved.";
    InvalidBackupType = "invalid_backup_type", 400, "Not a backup type (full, incremental, differential).";
    InvalidBackupStatus = "invalid_backup_status", 400, "Not a backup status.";
    InvalidJobKind = "invalid_job_kind", 400, "Not a job kind.";
    InvalidJobStatus = "invalid_job_status", 400, "Not a job status.";
    InvalidVerifyMode = "invalid_verify_mode", 400, "Not a verify mode.";
    InvalidArchiveFormat = "invalid_archive_format", 400, "Not an archive format (zip, tar).";
    InvalidDownloadPart = "invalid_download_part", 400, "Not a part of a backup a download can select (files, database).";
    FormatNotApplicable = "format_not_applicable", 400, "`format` was given for a download that is not an archive (a database part downloads as its own file).";
    InvalidPath = "invalid_path", 400, "A path is not absolute, holds `..`, or is the root directory.";
    InvalidExclude = "invalid_exclude", 400, "An exclude pattern is not a valid glob.";
    InvalidIdentifier = "invalid_identifier", 400, "A database name or schema is not 1 to 63 bytes without a NUL character.";
    InvalidDatabaseUrl = "invalid_database_url", 400, "A PostgreSQL connection URL cannot be used.";
    InvalidDatabase = "invalid_database", 400, "A source's `database` names neither or both of `postgres` and `sqlite`.";
    InvalidField = "invalid_field", 400, "A field that does not apply here (e.g. schemas of an SQLite database).";
    MissingField = "missing_field", 400, "A required field is missing (e.g. a source with neither files nor a database).";
    InvalidCron = "invalid_cron", 400, "Not a valid cron expression.";
    CronRequired = "cron_required", 400, "A schedule needs a `cron` expression.";
    InvalidTimezone = "invalid_timezone", 400, "Not an IANA time zone name.";
    PolicyKeepsNothing = "policy_keeps_nothing", 400, "A retention policy that would keep no backup.";
    SourceRequired = "source_required", 400, "Several sources exist: name one.";
    InvalidTarget = "invalid_target", 400, "A restore target that cannot be used (the wrong shape, or a path with no parent directory).";
    AmbiguousTarget = "ambiguous_target", 400, "A restore of files and a database needs a target for each.";
    TargetNotAllowed = "target_not_allowed", 400, "A restore target in a protected place (Strata's own storage, a system directory, the root).";
    SourceNotAllowed = "source_not_allowed", 400, "A source path where no source may be (Strata's own storage, /proc, /sys, /dev…).";
    SourceHasNoFiles = "source_has_no_files", 400, "Files were asked for, but the source has no files part.";
    SourceHasNoDatabase = "source_has_no_database", 400, "A database was asked for, but the source has none.";
    BackupHasNoFiles = "backup_has_no_files", 400, "Files were asked for, but the backup holds none.";
    BackupHasNoDatabase = "backup_has_no_database", 400, "A database was asked for, but the backup holds none.";
    NothingToBackUp = "nothing_to_back_up", 400, "The backup would include neither files nor a database.";
    NothingToRestore = "nothing_to_restore", 400, "The restore would include neither files nor a database.";
    BackupNameTaken = "backup_name_taken", 400, "A backup with this name already exists.";
    FileRequired = "file_required", 400, "An upload needs a `file` part.";
    UnsupportedConfigVersion = "unsupported_config_version", 400, "A configuration export of a version this Strata does not import.";

    // Uploaded archives (`field` is `file`); an import job records the same codes.
    InvalidArchive = "invalid_archive", 400, "Not a readable tar or zip archive.";
    UnsupportedEntry = "unsupported_entry", 400, "An archive entry that is not a file, directory or symlink, or is encrypted.";
    DuplicateEntry = "duplicate_entry", 400, "An archive lists the same entry name more than once.";
    PathEscapesRoot = "path_escapes_root", 400, "An archive entry's path is absolute, holds `..`, or passes through a non-directory.";
    SymlinkEscapesRoot = "symlink_escapes_root", 400, "An archive symlink points outside the archive.";
    NameTooLong = "name_too_long", 400, "An archive entry's name is too long.";
    CompressionRatioTooHigh = "compression_ratio_too_high", 400, "An archive entry expands more than the allowed ratio (a zip bomb).";
    ArchiveTooLarge = "archive_too_large", 413, "The archive holds more bytes once extracted than allowed.";
    TooManyEntries = "too_many_entries", 413, "The archive holds more entries than allowed.";
    ExtractFailed = "extract_failed", JOB_ONLY, "Writing an extracted file failed (retried as a transient failure).";

    // Resources.
    SourceNotFound = "source_not_found", 404, "No such source (or the job's source is gone).";
    BackupNotFound = "backup_not_found", 404, "No such backup (or the job's backup is gone).";
    JobNotFound = "job_not_found", 404, "No such job.";
    KeyNotFound = "key_not_found", 404, "No such API key.";
    ScheduleNotFound = "schedule_not_found", 404, "No such schedule.";
    UserNotFound = "user_not_found", 404, "No such user.";
    PathNotFound = "path_not_found", 404, "The path was not in that backup (`field` names the parameter).";

    // Conflicts.
    JobInProgress = "job_in_progress", 409, "A job in the way is queued or running (`job_id`, `job_kind` name it); a schedule fire records it too.";
    SourceNameTaken = "source_name_taken", 409, "A source with this name already exists.";
    SourceHasBackups = "source_has_backups", 409, "The source still has backups (`backups` counts them): delete them first.";
    EmailTaken = "email_taken", 409, "A user with this email (in any letter case) already exists.";
    BackupNotComplete = "backup_not_complete", 409, "The backup is not `complete` (pending, failed or being deleted).";
    BackupBeingDeleted = "backup_being_deleted", 409, "The backup is already being deleted.";
    BackupHasDependents = "backup_has_dependents", 409, "Other backups need this one (their parent chain runs through it).";
    InvalidStoredPolicy = "invalid_stored_policy", 409, "The retention policy stored for the source is not valid; name one in the request.";
    JobAlreadyFinished = "job_already_finished", 409, "The job has already ended.";
    JobNotCancellable = "job_not_cancellable", 409, "A running delete or prune job cannot be cancelled (it finishes shortly).";

    // How a job ended (its `error.code`).
    Cancelled = "cancelled", JOB_ONLY, "A client cancelled the job.";
    Released = "released", JOB_ONLY, "The worker stopped (shutdown) and handed the job back; it runs again.";
    JobStalled = "job_stalled", JOB_ONLY, "The job's progress did not move for `STRATA_JOB_STALL_SECS`; it was stopped and is retried.";
    LeaseExpired = "lease_expired", JOB_ONLY, "The job's worker stopped renewing its lease and the job ran out of attempts.";
    JobFailed = "job_failed", JOB_ONLY, "A transient failure (retried with back-off while attempts remain); the message says what.";
    StorageUnavailable = "storage_unavailable", JOB_ONLY, "The repository's storage did not answer (a transient failure).";
    BadPayload = "bad_payload", JOB_ONLY, "The job's payload cannot be read.";
    RepositoryMismatch = "repository_mismatch", JOB_ONLY, "The storage holds another repository than the catalog records (also in `/health`).";
    SourceNotADirectory = "source_not_a_directory", JOB_ONLY, "The source's path is not a directory.";
    SourceUnreadable = "source_unreadable", JOB_ONLY, "The source's path cannot be read.";
    NoTarget = "no_target", JOB_ONLY, "The source has no path to restore to.";
    TargetParentMissing = "target_parent_missing", JOB_ONLY, "The restore target's parent directory does not exist.";
    TargetChanged = "target_changed", JOB_ONLY, "The restore target resolved elsewhere when written than when the job started (a symlink changed).";
    TargetDiskFull = "target_disk_full", JOB_ONLY, "The restore target's file system is full.";
    NoDatabaseConnection = "no_database_connection", JOB_ONLY, "The source no longer has a PostgreSQL connection to restore through.";
    UnsupportedDatabase = "unsupported_database", JOB_ONLY, "This worker cannot restore this kind of database.";
    RestoreCheckFailed = "restore_check_failed", JOB_ONLY, "A restored database fails its checks; nothing was replaced.";
    BackupDamaged = "backup_damaged", JOB_ONLY, "Verify found the backup damaged (the result lists the problems).";
    RestoreDrillFailed = "restore_drill_failed", JOB_ONLY, "Verify's restore drill failed (the result says how).";
    UploadMissing = "upload_missing", JOB_ONLY, "The uploaded archive of an import is no longer in storage.";
    DatabaseUnreachable = "database_unreachable", JOB_ONLY, "The source's PostgreSQL server does not answer.";
    DatabaseAuthFailed = "database_auth_failed", JOB_ONLY, "PostgreSQL refused the source's credentials.";
    DatabaseNotFound = "database_not_found", JOB_ONLY, "The source's database does not exist.";
    DatabaseError = "database_error", JOB_ONLY, "PostgreSQL refused the connection for another reason.";
    DatabasePermissionDenied = "database_permission_denied", JOB_ONLY, "The source's PostgreSQL user may not create the database (it needs CREATEDB).";
    DatabaseCreateFailed = "database_create_failed", JOB_ONLY, "Creating the database to restore into failed.";
    DatabaseDumpFailed = "database_dump_failed", JOB_ONLY, "pg_dump failed.";
    DatabaseRestoreFailed = "database_restore_failed", JOB_ONLY, "pg_restore failed.";
    DatabaseSwapFailed = "database_swap_failed", JOB_ONLY, "The live database could not be closed to new connections to be replaced.";
    DatabaseInUse = "database_in_use", JOB_ONLY, "The live database's sessions could not all be closed to replace it.";
    SchemaNotFound = "schema_not_found", JOB_ONLY, "A schema the source names does not exist.";
    PgDumpTooOld = "pg_dump_too_old", JOB_ONLY, "The worker's pg_dump is older than the server.";
    PgToolsMissing = "pg_tools_missing", JOB_ONLY, "The worker has no pg_dump / pg_restore.";
    SqliteFileMissing = "sqlite_file_missing", JOB_ONLY, "The source's SQLite file does not exist.";
    SqliteNotAFile = "sqlite_not_a_file", JOB_ONLY, "The source's SQLite path is not a regular file.";
    SqliteNotADatabase = "sqlite_not_a_database", JOB_ONLY, "The source's SQLite file is not an SQLite database.";
    SqliteUnreadable = "sqlite_unreadable", JOB_ONLY, "The source's SQLite file cannot be read.";
    SqliteBusy = "sqlite_busy", JOB_ONLY, "The source's SQLite database stayed locked.";
    RetentionFailed = "retention_failed", JOB_ONLY, "The retention pruning after a backup failed (in the backup's result; the backup itself succeeded).";
    FireFailed = "fire_failed", JOB_ONLY, "A schedule fire could not enqueue its backup (in the fire's error).";
    InvalidBootstrapKey = "invalid_bootstrap_key", JOB_ONLY, "`STRATA_BOOTSTRAP_API_KEY` is not an API key (a startup error, never an answer).";

    // Warnings and problems in a job's result (the job still succeeds unless stated).
    Unreadable = "unreadable", JOB_ONLY, "Backup warning: a path's metadata, symlink or content could not be read; it was skipped.";
    UnreadableDirectory = "unreadable_directory", JOB_ONLY, "Backup warning: a directory could not be listed; it was skipped.";
    SkippedSpecialFile = "skipped_special_file", JOB_ONLY, "Backup warning: a socket, FIFO or device was skipped.";
    ChangedWhileReading = "changed_while_reading", JOB_ONLY, "Backup warning: a file changed while it was read.";
    KeptUnbacked = "kept_unbacked", JOB_ONLY, "Restore warning: live paths that no backup holds were kept.";
    KeptOverBackup = "kept_over_backup", JOB_ONLY, "Restore warning: a live path in no backup was kept instead of the backup's copy.";
    NotKept = "not_kept", JOB_ONLY, "Restore warning: a special file could not be kept.";
    RemovedUnknown = "removed_unknown", JOB_ONLY, "Restore warning: what the restore removed could not be listed (the pre-restore backup holds it).";
    PreviousDatabaseLeft = "previous_database_left", JOB_ONLY, "Restore warning: the replaced database could not be dropped and is kept under another name.";
    NoPreRestoreBackup = "no_pre_restore_backup", JOB_ONLY, "Restore note: the target did not exist, so there was nothing to back up first.";
    PackMissing = "pack_missing", JOB_ONLY, "Verify problem: a pack file is missing from storage.";
    PackDamaged = "pack_damaged", JOB_ONLY, "Verify problem: a pack file fails its checks.";
    ChunkMissing = "chunk_missing", JOB_ONLY, "Verify problem: a chunk the backup needs is in no pack.";
    EntryListDamaged = "entry_list_damaged", JOB_ONLY, "Verify problem: the backup's list of entries cannot be read.";
}

impl ErrorCode {
    /// The code with this wire string.
    pub fn parse(wire: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == wire)
    }

    /// `docs/ERRORS.md`: the table of every code.
    pub fn markdown_table() -> String {
        let mut out = String::from(
            "# Error codes\n\n\
             <!-- Generated from `shared/core/src/errors.rs` by \
             `STRATA_WRITE_ERRORS_MD=1 cargo test -p strata-core errors`; do not edit. -->\n\n\
             Every refusal the API answers is `{\"error\": {\"code\", \"message\", \"field\"?, …}}`, \
             and every job that did not succeed records `{\"code\", \"message\"}` as its `error`. \
             `code` is one of the strings below; they never change, so clients may match on them. \
             A code whose status is *job* is only recorded by jobs (a job's `error`, a warning \
             or a problem in its result, a schedule fire's error), never answered to a request; \
             a job may also record a code that has a status (e.g. `backup_not_found` when its \
             backup is gone).\n\n\
             | Code | HTTP status | Meaning |\n|---|---|---|\n",
        );
        for code in Self::ALL {
            let status = match code.status() {
                Some(s) => s.to_string(),
                None => "job".to_string(),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                code.as_str(),
                status,
                code.meaning().replace('|', "\\|")
            ));
        }
        out
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown code {s:?}")))
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn errors_wire_strings_are_unique_snake_case_with_a_meaning() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is declared twice");
            assert!(
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !s.starts_with('_')
                    && !s.ends_with('_'),
                "{s} is not snake_case"
            );
            assert!(code.meaning().ends_with('.'), "{s}: {}", code.meaning());
            assert!(!code.meaning().contains('\n'), "{s}: one line");
            if let Some(status) = code.status() {
                assert!((400..600).contains(&status), "{s}: {status}");
            }
            assert_eq!(ErrorCode::parse(s), Some(*code));
            assert_eq!(serde_json::to_string(code).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&format!("\"{s}\"")).unwrap(),
                *code
            );
        }
    }

    /// `docs/ERRORS.md` is this table; `STRATA_WRITE_ERRORS_MD=1` rewrites it.
    #[test]
    fn errors_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ERRORS.md");
        let want = ErrorCode::markdown_table();
        if std::env::var_os("STRATA_WRITE_ERRORS_MD").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/ERRORS.md is not the table of shared/core/src/errors.rs; run \
             `STRATA_WRITE_ERRORS_MD=1 cargo test -p strata-core errors` to rewrite it"
        );
    }
}
