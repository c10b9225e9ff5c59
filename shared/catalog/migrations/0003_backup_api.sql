-- The whole Backup API: deletion as a job, cancellation, idempotent creates,
-- per-source retention policies.

-- A backup being deleted is hidden from restore / download and reclaimed by a job.
ALTER TABLE backups DROP CONSTRAINT backups_status_check;
ALTER TABLE backups ADD CONSTRAINT backups_status_check
    CHECK (status IN ('pending', 'complete', 'failed', 'deleting'));
CREATE INDEX backups_parent ON backups (parent_id) WHERE parent_id IS NOT NULL;

-- Jobs keep the id of the backup they were about after it is deleted (history).
ALTER TABLE jobs DROP CONSTRAINT jobs_backup_id_fkey;
CREATE INDEX jobs_backup ON jobs (backup_id) WHERE status IN ('queued', 'running');

-- A client asked for the job to stop: a queued job never starts, a running one stops
-- at its next checkpoint.
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;

-- `Idempotency-Key`: the same key and body return the same answer.
CREATE TABLE idempotency_keys (
    actor         text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        integer NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);

-- The retention policy prune applies to a source when the request names none.
ALTER TABLE sources ADD COLUMN retention jsonb;
