//! The one way a job comes to exist: [`enqueue`] writes its `jobs` row and the outbox
//! row that wakes a worker, in the caller's transaction. Nothing else writes either.

use sqlx::PgConnection;
use uuid::Uuid;

use strata_core::model::{
    BackupPayload, DeletePayload, ImportPayload, JobKind, RestorePayload, VerifyPayload,
};

use crate::store::{JobRow, ONE_ACTIVE_PER_SOURCE};

/// A job to run: its kind and what it is asked to do. Each kind carries its own
/// payload, so a job cannot be recorded with another kind's.
#[derive(Debug, Clone)]
pub enum JobRequest {
    /// Back up a source into the backup named in the payload (its row is `pending`).
    Backup(BackupPayload),
    /// Restore a backup (and first back up what it replaces, when asked).
    Restore(RestorePayload),
    /// Check a backup; `source_id` is the backup's source.
    Verify {
        source_id: Uuid,
        payload: VerifyPayload,
    },
    /// Delete backups (already marked `deleting`): `backup_id` the one asked for, the
    /// payload every backup that goes with it.
    Delete {
        source_id: Uuid,
        backup_id: String,
        payload: DeletePayload,
    },
    /// Delete the backups a retention policy let go (already marked `deleting`);
    /// `source_id` when the policy was one source's.
    Prune {
        source_id: Option<Uuid>,
        payload: DeletePayload,
    },
    /// Store an uploaded archive as a new backup.
    Import(ImportPayload),
    /// Collect the repository's garbage.
    Gc,
}

impl JobRequest {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Backup(_) => JobKind::Backup,
            Self::Restore(_) => JobKind::Restore,
            Self::Verify { .. } => JobKind::Verify,
            Self::Delete { .. } => JobKind::Delete,
            Self::Prune { .. } => JobKind::Prune,
            Self::Import(_) => JobKind::Import,
            Self::Gc => JobKind::Gc,
        }
    }

    /// The source the job is about, if one.
    pub fn source_id(&self) -> Option<Uuid> {
        match self {
            Self::Backup(p) => Some(p.source_id),
            Self::Restore(p) => Some(p.source_id),
            Self::Import(p) => Some(p.source_id),
            Self::Verify { source_id, .. } | Self::Delete { source_id, .. } => Some(*source_id),
            Self::Prune { source_id, .. } => *source_id,
            Self::Gc => None,
        }
    }

    /// The backup the job is about, if one.
    pub fn backup_id(&self) -> Option<&str> {
        match self {
            Self::Backup(p) => Some(p.backup_id.as_str()),
            Self::Restore(p) => Some(p.backup_id.as_str()),
            Self::Import(p) => Some(p.backup_id.as_str()),
            Self::Verify { payload, .. } => Some(payload.backup_id.as_str()),
            Self::Delete { backup_id, .. } => Some(backup_id),
            Self::Prune { .. } | Self::Gc => None,
        }
    }

    /// The payload as the `jobs` row stores it.
    pub fn payload(&self) -> serde_json::Value {
        let value = match self {
            Self::Backup(p) => serde_json::to_value(p),
            Self::Restore(p) => serde_json::to_value(p),
            Self::Verify { payload, .. } => serde_json::to_value(payload),
            Self::Delete { payload, .. } | Self::Prune { payload, .. } => {
                serde_json::to_value(payload)
            }
            Self::Import(p) => serde_json::to_value(p),
            Self::Gc => Ok(serde_json::json!({})),
        };
        // Plain structs of strings, ids and numbers: serializing them cannot fail.
        value.expect("job payloads serialize")
    }

    /// The request a stored job was made from; an error says what in its row is wrong.
    pub fn from_row(job: &JobRow) -> Result<Self, String> {
        fn payload<T: serde::de::DeserializeOwned>(job: &JobRow) -> Result<T, String> {
            serde_json::from_value(job.payload.0.clone())
                .map_err(|e| format!("{} payload: {e}", job.kind))
        }
        let kind = JobKind::parse(&job.kind).map_err(|e| e.message)?;
        Ok(match kind {
            JobKind::Backup => Self::Backup(payload(job)?),
            JobKind::Restore => Self::Restore(payload(job)?),
            JobKind::Verify => Self::Verify {
                source_id: job.source_id.unwrap_or_default(),
                payload: payload(job)?,
            },
            JobKind::Delete => Self::Delete {
                source_id: job.source_id.unwrap_or_default(),
                backup_id: job.backup_id.clone().unwrap_or_default(),
                payload: payload(job)?,
            },
            JobKind::Prune => Self::Prune {
                source_id: job.source_id,
                payload: payload(job)?,
            },
            JobKind::Import => Self::Import(payload(job)?),
            JobKind::Gc => Self::Gc,
        })
    }
}

/// How the job is recorded.
#[derive(Debug, Clone, Copy)]
pub struct EnqueueOptions {
    pub id: Uuid,
    /// How many times it is tried before it ends `failed` (`STRATA_JOB_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    /// The schedule whose fire made it.
    pub schedule_id: Option<Uuid>,
}

impl EnqueueOptions {
    /// A new job id, no schedule.
    pub fn new(max_attempts: i32) -> Self {
        Self {
            id: Uuid::now_v7(),
            max_attempts,
            schedule_id: None,
        }
    }
}

/// Why a job was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// Another backup or restore of the source is queued or running.
    #[error("a backup or restore of this source is already queued or running")]
    SourceBusy,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records a queued job and its outbox message in the caller's transaction. The job
/// joins the trace of the current span (the HTTP request, the schedule's fire, or the
/// job that made it): its trace id and W3C headers are stored. A second active backup
/// or restore of one source is [`EnqueueError::SourceBusy`] (a unique index).
pub async fn enqueue(
    tx: &mut PgConnection,
    request: &JobRequest,
    options: EnqueueOptions,
) -> Result<Uuid, EnqueueError> {
    let (trace_id, trace_context) = strata_telemetry::current_trace();
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, status, source_id, backup_id, payload, max_attempts, phase,
                           trace_id, trace_context, schedule_id)
         VALUES ($1, $2, 'queued', $3, $4, $5, $6, 'queued', $7, $8, $9)",
    )
    .bind(options.id)
    .bind(request.kind().as_str())
    .bind(request.source_id())
    .bind(request.backup_id())
    .bind(sqlx::types::Json(request.payload()))
    .bind(options.max_attempts)
    .bind(trace_id)
    .bind(sqlx::types::Json(trace_context))
    .bind(options.schedule_id)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if strata_catalog::is_unique_violation(&e, ONE_ACTIVE_PER_SOURCE) => {
            return Err(EnqueueError::SourceBusy)
        }
        other => other?,
    };
    crate::outbox::insert(tx, options.id, 0.0).await?;
    Ok(options.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::model::{BackupId, BackupType, VerifyMode};

    fn row(kind: &str, payload: serde_json::Value) -> JobRow {
        JobRow {
            id: Uuid::nil(),
            kind: kind.into(),
            status: "queued".into(),
            source_id: Some(Uuid::nil()),
            backup_id: Some("b".into()),
            payload: sqlx::types::Json(payload),
            phase: None,
            bytes_done: 0,
            bytes_total: None,
            files_done: 0,
            files_total: None,
            attempts: 0,
            max_attempts: 3,
            worker_id: None,
            lease_expires_at: None,
            error: None,
            warnings: sqlx::types::Json(vec![]),
            result: None,
            trace_id: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            updated_at: chrono::Utc::now(),
            cancel_requested_at: None,
            schedule_id: None,
        }
    }

    #[test]
    fn a_stored_request_reads_back_as_its_kind() {
        let backup = JobRequest::Backup(BackupPayload {
            backup_id: BackupId::parse("web-1", "backup_id").unwrap(),
            source_id: Uuid::nil(),
            backup_type: BackupType::Full,
            include_files: Some(true),
            include_database: None,
        });
        let back = JobRequest::from_row(&row("backup", backup.payload())).unwrap();
        assert!(matches!(back, JobRequest::Backup(p) if p.backup_id.as_str() == "web-1"));
        let verify = JobRequest::Verify {
            source_id: Uuid::nil(),
            payload: VerifyPayload {
                backup_id: BackupId::parse("web-1", "backup_id").unwrap(),
                mode: VerifyMode::Restore,
            },
        };
        assert_eq!(verify.backup_id(), Some("web-1"));
        assert!(matches!(
            JobRequest::from_row(&row("gc", serde_json::json!({}))),
            Ok(JobRequest::Gc)
        ));
    }

    #[test]
    fn a_payload_of_another_kind_is_refused() {
        // A restore's payload stored as a backup: the backup type is missing.
        let err = JobRequest::from_row(&row(
            "backup",
            serde_json::json!({"backup_id": "web-1", "source_id": Uuid::nil()}),
        ))
        .unwrap_err();
        assert!(err.starts_with("backup payload: "), "{err}");
        assert!(JobRequest::from_row(&row("explode", serde_json::json!({}))).is_err());
    }
}
