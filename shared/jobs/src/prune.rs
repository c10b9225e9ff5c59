//! Pruning against the catalog: which backups jobs need (so no prune deletes them), and
//! the retention a schedule applies after each of its successful backups — the same
//! chain-aware [`decide`] as `POST /api/v1/backup/prune`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::enqueue::{enqueue, EnqueueOptions, JobRequest};
use strata_catalog as db;
use strata_catalog::backups::BackupRow;
use strata_core::model::{BackupId, DeletePayload, JobKind};
use strata_core::retention::{decide, Item, Policy, State};

/// Backups that queued or running jobs need, with one such job (id, kind): the backups
/// jobs are about (restore, verify…), and each source's newest complete backup (newest
/// full one for a differential) while a backup or restore of that source may build on it.
pub async fn pinned(
    conn: &mut PgConnection,
    backup_ids: &[String],
) -> Result<HashMap<String, (Uuid, String)>, sqlx::Error> {
    let mut out = HashMap::new();
    for job in crate::store::active_for_backups(&mut *conn, backup_ids).await? {
        if let Some(b) = job.backup_id {
            out.entry(b).or_insert((job.id, job.kind));
        }
    }
    for job in crate::store::active_writers(&mut *conn).await? {
        let Some(source_id) = job.source_id else {
            continue;
        };
        let requested = job.payload.0.get("type").and_then(Value::as_str);
        if job.kind == JobKind::Backup.as_str() && requested == Some("full") {
            continue;
        }
        let full_only = requested == Some("differential");
        if let Some(p) = db::backups::latest_complete(&mut *conn, source_id, full_only).await? {
            out.entry(p.id).or_insert((job.id, job.kind.clone()));
        }
    }
    Ok(out)
}

/// A catalog backup as the retention decision sees it.
pub fn item(b: &BackupRow) -> Item {
    Item {
        id: b.id.clone(),
        parent_id: b.parent_id.clone(),
        state: State::from_status(&b.status),
        created_at: b.created_at,
    }
}

/// What a schedule's retention did after one of its backups.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledRetention {
    pub policy: Policy,
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
    pub skipped: Vec<String>,
    /// The prune job removing `deleted`; `None` when nothing is deleted.
    pub job_id: Option<Uuid>,
}

/// Applies schedule `schedule_id`'s retention policy to `source_id`'s backups as of `now`
/// (the new backup's creation time), in the caller's transaction: the backups to delete
/// are marked `deleting` and a prune job is queued. `None` when the schedule has no
/// policy (or is gone).
pub async fn after_scheduled_backup(
    tx: &mut PgConnection,
    schedule_id: Uuid,
    source_id: Uuid,
    now: DateTime<Utc>,
    max_attempts: i32,
) -> anyhow::Result<Option<ScheduledRetention>> {
    let Some(raw) = db::schedules::retention(tx, schedule_id).await? else {
        return Ok(None);
    };
    let policy: Policy = serde_json::from_value(raw)?;
    if policy.is_unset() || policy.keeps_nothing() {
        return Ok(None);
    }
    // Locks the source's backups: a concurrent prune or delete waits, then sees `deleting`.
    let backups = db::backups::of_sources(tx, &[source_id], true).await?;
    let ids: Vec<String> = backups.iter().map(|b| b.id.clone()).collect();
    let pinned: HashSet<String> = pinned(tx, &ids).await?.into_keys().collect();
    let items: Vec<Item> = backups.iter().map(item).collect();
    let d = decide(&items, &policy, now, &pinned);
    let mut job_id = None;
    if !d.delete.is_empty() {
        db::backups::mark_deleting(tx, &d.delete).await?;
        let id = Uuid::now_v7();
        let backup_ids = d
            .delete
            .iter()
            .map(|i| BackupId::parse(i, "backup_id").map_err(|e| anyhow::anyhow!(e.message)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let request = JobRequest::Prune {
            source_id: Some(source_id),
            payload: DeletePayload { backup_ids },
        };
        let options = EnqueueOptions {
            id,
            max_attempts,
            schedule_id: Some(schedule_id),
        };
        enqueue(tx, &request, options).await?;
        job_id = Some(id);
    }
    Ok(Some(ScheduledRetention {
        policy,
        deleted: d.delete,
        kept: d.keep,
        skipped: d.skipped,
        job_id,
    }))
}
