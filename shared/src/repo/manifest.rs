//! A snapshot's manifest: written last, after every pack it needs, so a backup that did
//! not finish never looks complete. Listing `snapshots/` rebuilds the backup catalog.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::format::ChunkId;

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
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// The storage key of a backup's manifest.
pub fn manifest_key(backup_id: &str) -> String {
    format!("snapshots/{backup_id}")
}
