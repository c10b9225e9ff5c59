//! A snapshot's manifest: written last, after every pack it needs, so a backup that did
//! not finish never looks complete. Listing `snapshots/` rebuilds the backup catalog.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::format::ChunkId;
use super::tree::RelPath;

/// Figures about one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content the snapshot represents.
    pub logical_size: u64,
    /// Bytes this backup added to storage (new packs).
    pub stored_size: u64,
    pub new_chunks: u64,
    pub reused_chunks: u64,
    /// Files read because they were new or changed (every file, for a full backup).
    #[serde(default)]
    pub changed_files: u64,
    /// Files skipped because the parent's record showed them unchanged.
    #[serde(default)]
    pub unchanged_files: u64,
    /// Paths that existed in the parent and no longer do.
    #[serde(default)]
    pub deleted: u64,
    /// Bytes read from the source: the files read and the database dump (unchanged
    /// files skipped by an incremental are not read). 0 in older manifests.
    #[serde(default)]
    pub read_bytes: u64,
    /// Of `read_bytes`, those whose chunk the repository had already (not stored
    /// again). 0 in older manifests.
    #[serde(default)]
    pub reused_bytes: u64,
}

/// Something the user should know about one path: skipped, unreadable, changed while read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub path: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: String,
    pub source_id: Uuid,
    pub source_name: String,
    /// The directory that was backed up.
    pub root: String,
    #[serde(rename = "type")]
    pub backup_type: String,
    pub requested_type: String,
    pub parent: Option<String>,
    /// Backup ids from the full backup to this one; restoring needs all of them.
    #[serde(default)]
    pub chain: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub stats: SnapshotStats,
    /// The entry list's segments, in order.
    pub tree: Vec<ChunkId>,
    /// The first path of each segment of `tree`, so that a reader looking for a path (a
    /// directory listing, a page cursor) starts at the segment holding it instead of the
    /// first. Empty in manifests written before it existed: they are read from the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tree_index: Vec<RelPath>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Whether this backup holds the files part (`tree`). Older manifests always do.
    #[serde(default = "yes")]
    pub has_files: bool,
    /// The database part, when the backup holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabasePart>,
    /// The source's spec when the backup was taken (never a password): what
    /// `strata-worker rebuild-catalog` re-creates a lost source from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_spec: Option<strata_core::model::SourceSpec>,
}

fn yes() -> bool {
    true
}

impl Manifest {
    /// The catalog entry of this backup, whose manifest is in storage under `key`.
    pub fn completion(&self, key: String) -> anyhow::Result<strata_catalog::backups::Completion> {
        let s = &self.stats;
        Ok(strata_catalog::backups::Completion {
            backup_type: self.backup_type.clone(),
            parent_id: self.parent.clone(),
            logical_size: s.logical_size as i64,
            stored_size: s.stored_size as i64,
            file_count: s.files as i64,
            dir_count: s.dirs as i64,
            manifest_key: key,
            warnings: self
                .warnings
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?,
            parts: self.parts(),
        })
    }

    /// `files` and / or `database`, as the catalog records them.
    pub fn parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if self.has_files {
            parts.push("files".to_string());
        }
        if self.database.is_some() {
            parts.push("database".to_string());
        }
        parts
    }

    /// Every chunk this backup itself lists (tree segments and the database dump; the
    /// chunks of file content are listed inside the tree segments).
    pub fn own_chunks(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.tree
            .iter()
            .chain(self.database.iter().flat_map(|d| d.chunks.iter()))
            .copied()
    }
}

/// A table and its row count as the dump holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    /// `schema.table` for PostgreSQL, the table's name for SQLite.
    pub name: String,
    pub rows: u64,
}

/// A database captured by a backup: one consistent dump (PostgreSQL: `pg_dump`'s plain
/// SQL; SQLite: a copy of the database file made with the online backup API), stored
/// as content-defined chunks. Each backup lists every chunk of its dump, so restoring a
/// database never needs the rest of the chain; chunks equal to the parent's are stored
/// once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabasePart {
    /// `postgres` or `sqlite`.
    pub engine: String,
    /// `plain-sql` (pg_dump --format=plain) or `sqlite3` (a database file).
    pub format: String,
    /// The database's name (PostgreSQL) or file path (SQLite) when it was backed up.
    pub name: String,
    /// Schemas dumped (PostgreSQL); empty = all.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Where an SQLite file sits inside the files part, relative to its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_files: Option<String>,
    /// Bytes of the dump.
    pub size: u64,
    pub chunks: Vec<ChunkId>,
    /// The tables and their row counts in the dump, for the restore checks.
    pub tables: Vec<TableRecord>,
    /// The moment the database's snapshot was taken.
    pub snapshot_at: DateTime<Utc>,
    /// The server's version (PostgreSQL) or the SQLite library's.
    pub server_version: String,
    /// `pg_dump`'s version, for PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    /// Engine settings a restore recreates (PostgreSQL: encoding and locale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
}

/// The storage key of a backup's manifest.
pub fn manifest_key(backup_id: &str) -> String {
    format!("snapshots/{backup_id}")
}
