//! What a succeeded job produced, one type per kind: the worker fills them, the job's
//! `result` stores them, the API documents them (each a schema of the OpenAPI
//! document, with the `openapi` feature) and the metrics read their fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_telemetry::metrics::BackupBytes;

/// The database part of a backup, summarised.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseSummary {
    /// `postgres` or `sqlite`.
    pub engine: String,
    pub name: String,
    /// Bytes of the dump or copy.
    pub size: u64,
    pub tables: usize,
    pub rows: u64,
    /// When the database's snapshot was taken.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub snapshot_at: chrono::DateTime<chrono::Utc>,
    pub server_version: Option<String>,
}

/// What the files of a backup or import read and stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stored {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of the tree as restored.
    pub logical_size: u64,
    /// Bytes read from the source (unchanged files of an incremental are not read).
    pub read_bytes: u64,
    /// Bytes written to storage (compressed, encrypted, deduplicated).
    pub stored_size: u64,
    /// Bytes found already stored.
    pub reused_bytes: u64,
    pub new_chunks: u64,
    pub reused_chunks: u64,
}

/// A `backup` job's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupResult {
    pub backup_id: String,
    /// The source's name.
    pub source: String,
    /// `full`, `incremental` or `differential`: what was made.
    #[serde(rename = "type")]
    pub backup_type: String,
    /// What was asked (a first incremental is made full).
    pub requested_type: String,
    pub parent: Option<String>,
    /// The backups a restore of this one reads, oldest first.
    pub chain: Vec<String>,
    pub changed_files: u64,
    pub unchanged_files: u64,
    /// Paths of the parent that are gone.
    pub deleted: u64,
    #[serde(flatten)]
    pub stored: Stored,
    /// `files` and / or `database`.
    pub parts: Vec<String>,
    pub database: Option<DatabaseSummary>,
    /// A scheduled backup's retention, applied when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub retention: Option<Value>,
}

/// An `import` job's result: the uploaded archive, stored as a full backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportResult {
    pub backup_id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub backup_type: String,
    /// `tar` or `zip`.
    pub format: String,
    /// What the archive held (`entries`, `files`, `uncompressed_size`, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub archive: Value,
    #[serde(flatten)]
    pub stored: Stored,
}

/// A `restore` job's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreResult {
    pub backup_id: String,
    pub chain: Vec<String>,
    /// The relative paths restored; everything when empty.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub include: Vec<std::path::PathBuf>,
    /// Where the files were written (where the target really lands).
    pub target: Option<String>,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// The database part's restore (`engine`, `database` or `path`, checks, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub database: Value,
    pub pre_restore_backup_id: Option<String>,
    /// What the target held that no backup does and was kept (excluded paths, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub kept: Value,
    /// Paths the pre-restore backup holds that the restored backup does not.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub removed: Value,
}

/// A `verify` job's result: the data check's report (`ok`, `chunks_checked`,
/// `problems`, …) or the restore drill's (`ok`, `files`, `database`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = Object))]
#[serde(transparent)]
pub struct VerifyResult(pub Value);

/// A `delete`, `prune` or `gc` job's result: the garbage collection's report
/// (`packs_deleted`, `bytes_reclaimed`, …), with the backups removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectResult {
    /// The backups whose manifests were deleted (delete and prune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_backups: Option<Vec<String>>,
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub report: Value,
}

/// A job's result, by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobOutput {
    Backup(BackupResult),
    Import(ImportResult),
    Restore(RestoreResult),
    Verify(VerifyResult),
    Collect(CollectResult),
}

impl JobOutput {
    /// The byte counters of a backup or import (the metrics read these fields).
    pub fn bytes(&self) -> Option<BackupBytes> {
        let (source, stored) = match self {
            Self::Backup(b) => (&b.source, &b.stored),
            Self::Import(i) => (&i.source, &i.stored),
            _ => return None,
        };
        Some(BackupBytes {
            source: source.clone(),
            read: stored.read_bytes,
            stored: stored.stored_size,
            deduplicated: stored.reused_bytes,
        })
    }

    /// As the job's `result` column stores it.
    pub fn to_value(&self) -> Value {
        // Plain structs of strings, numbers and JSON values: this cannot fail.
        serde_json::to_value(self).expect("job results serialize")
    }
}

/// `anyOf` the kinds' results (not `oneOf`: a result of one kind may also fit a
/// looser schema of another, e.g. `VerifyResult`, which is any object).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for JobOutput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, Ref};
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("BackupResult"))
            .item(Ref::from_schema_name("ImportResult"))
            .item(Ref::from_schema_name("RestoreResult"))
            .item(Ref::from_schema_name("VerifyResult"))
            .item(Ref::from_schema_name("CollectResult"))
            .description(Some(
                "A job's result, by kind: backup → BackupResult, import → ImportResult, \
                 restore → RestoreResult, verify → VerifyResult, delete / prune / gc → \
                 CollectResult",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for JobOutput {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        fn add<T: utoipa::ToSchema>(
            schemas: &mut Vec<(
                String,
                utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
            )>,
        ) {
            schemas.push((T::name().into_owned(), T::schema()));
            T::schemas(schemas);
        }
        add::<BackupResult>(schemas);
        add::<ImportResult>(schemas);
        add::<RestoreResult>(schemas);
        add::<VerifyResult>(schemas);
        add::<CollectResult>(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_result_keeps_its_wire_names_and_gives_its_bytes() {
        let r = JobOutput::Backup(BackupResult {
            backup_id: "web-1".into(),
            source: "web".into(),
            backup_type: "full".into(),
            requested_type: "incremental".into(),
            parent: None,
            chain: vec!["web-1".into()],
            changed_files: 0,
            unchanged_files: 0,
            deleted: 0,
            stored: Stored {
                files: 2,
                read_bytes: 300,
                stored_size: 100,
                reused_bytes: 200,
                ..Stored::default()
            },
            parts: vec!["files".into()],
            database: None,
            retention: None,
        });
        let v = r.to_value();
        assert_eq!(v["type"], "full");
        assert_eq!(v["read_bytes"], 300);
        assert_eq!(v["files"], 2);
        assert!(v.get("stored").is_none(), "flattened: {v}");
        let bytes = r.bytes().unwrap();
        assert_eq!(
            (bytes.read, bytes.stored, bytes.deduplicated),
            (300, 100, 200)
        );
        assert_eq!(bytes.source, "web");
        let gc = JobOutput::Collect(CollectResult {
            deleted_backups: None,
            report: serde_json::json!({"packs_deleted": 1}),
        });
        assert_eq!(gc.to_value(), serde_json::json!({"packs_deleted": 1}));
        assert!(gc.bytes().is_none());
    }
}
