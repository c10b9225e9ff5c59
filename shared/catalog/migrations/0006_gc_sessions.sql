-- Garbage collection concurrent with backups (docs/FORMAT.md, "Garbage collection and
-- concurrent backups").

-- Every job or request that reads or writes the repository registers here before it
-- looks anything up, heartbeats, and removes its row at the end. A row whose heartbeat
-- is older than the stale limit belongs to a dead process and is ignored.
CREATE TABLE repo_sessions (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL,
    job_id        uuid,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row, locked for a few milliseconds: FOR SHARE by a session registering, FOR
-- UPDATE by garbage collection condemning packs. It orders every registration before
-- or after every condemnation.
CREATE TABLE repo_gc_state (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_run_at  timestamptz
);
INSERT INTO repo_gc_state (id) VALUES (true);

-- A condemned pack is no longer offered for deduplication and is deleted once no
-- session that started before its condemnation is alive.
ALTER TABLE packs ADD COLUMN condemned_at timestamptz;
CREATE INDEX packs_condemned ON packs (condemned_at) WHERE condemned_at IS NOT NULL;

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('backup', 'restore', 'delete', 'prune', 'verify', 'import', 'gc'));
