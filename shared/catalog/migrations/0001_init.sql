-- Strata's catalog. PostgreSQL is the source of truth for jobs; the object store is the
-- source of truth for backup data (the catalog can be rebuilt from it).

CREATE TABLE sources (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL,
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backups (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z0-9_-]{1,150}$'),
    source_id       uuid NOT NULL REFERENCES sources (id),
    requested_type  text NOT NULL CHECK (requested_type IN ('full', 'incremental', 'differential')),
    type            text NOT NULL CHECK (type IN ('full', 'incremental', 'differential')),
    parent_id       text REFERENCES backups (id),
    status          text NOT NULL CHECK (status IN ('pending', 'complete', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    logical_size    bigint NOT NULL DEFAULT 0,
    stored_size     bigint NOT NULL DEFAULT 0,
    file_count      bigint NOT NULL DEFAULT 0,
    dir_count       bigint NOT NULL DEFAULT 0,
    manifest_key    text,
    warnings        jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX backups_source_created ON backups (source_id, created_at DESC);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('backup', 'restore', 'delete', 'prune', 'verify', 'import')),
    status            text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    source_id         uuid REFERENCES sources (id),
    backup_id         text REFERENCES backups (id),
    payload           jsonb NOT NULL,
    phase             text,
    bytes_done        bigint NOT NULL DEFAULT 0,
    bytes_total       bigint,
    files_done        bigint NOT NULL DEFAULT 0,
    files_total       bigint,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    worker_id         text,
    lease_expires_at  timestamptz,
    error             jsonb,
    warnings          jsonb NOT NULL DEFAULT '[]',
    result            jsonb,
    trace_id          text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_created ON jobs (created_at DESC);
CREATE INDEX jobs_expired_leases ON jobs (lease_expires_at) WHERE status = 'running';
-- At most one backup or restore of a source queued or running at a time: the database,
-- not a check-then-insert in the API, enforces it.
CREATE UNIQUE INDEX jobs_one_active_per_source ON jobs (source_id)
    WHERE status IN ('queued', 'running') AND kind IN ('backup', 'restore');

-- Messages to publish to RabbitMQ, written in the same transaction as the job.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    job_id        uuid NOT NULL REFERENCES jobs (id),
    payload       jsonb NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}',
    available_at  timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX outbox_unsent ON outbox (available_at, id) WHERE sent_at IS NULL;

-- The chunk index: where each stored chunk lives. Rebuildable from the packs' trailers.
CREATE TABLE packs (
    id          text PRIMARY KEY,
    size        bigint NOT NULL,
    chunk_count integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chunks (
    id          bytea PRIMARY KEY,
    pack_id     text NOT NULL REFERENCES packs (id),
    kind        smallint NOT NULL,
    "offset"    bigint NOT NULL,
    length      integer NOT NULL,
    raw_length  integer NOT NULL
);
CREATE INDEX chunks_pack ON chunks (pack_id);
