-- Schedules (issue 7): backups that run themselves, exactly once per fire however many
-- API replicas tick.

CREATE TABLE schedules (
    id            uuid PRIMARY KEY,
    source_id     uuid NOT NULL REFERENCES sources (id),
    backup_type   text NOT NULL CHECK (backup_type IN ('full', 'incremental', 'differential')),
    -- As given (five fields, or six with seconds first); parsed again on every use.
    cron          text NOT NULL,
    -- An IANA time zone name; the cron fields are read on that zone's wall clock.
    timezone      text NOT NULL DEFAULT 'UTC',
    -- The retention policy applied after each successful backup of this schedule
    -- (JSON object: keep_last, daily, weekly, monthly, yearly, retention_days); NULL: none.
    retention     jsonb,
    catch_up      boolean NOT NULL DEFAULT true,
    enabled       boolean NOT NULL DEFAULT true,
    -- The next fire time; NULL while disabled. The row's lock serializes replicas.
    next_run_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

-- One row per fire: the (schedule, fire time) key makes a fire happen once, whichever
-- replica records it first. `outcome`: queued (a job was created), skipped_busy (a
-- backup or restore of the source was queued or running), missed (downtime, catch_up
-- off), failed (the job could not be created; `error` says why).
CREATE TABLE schedule_fires (
    schedule_id   uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_at       timestamptz NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('queued', 'skipped_busy', 'missed', 'failed')),
    -- Fires folded into this one: a catch-up or a skip after downtime covers them all.
    covers        integer NOT NULL DEFAULT 1,
    job_id        uuid REFERENCES jobs (id) ON DELETE SET NULL,
    error         jsonb,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    -- Which replica recorded it (host and process), for operators.
    recorded_by   text NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_fires_recent ON schedule_fires (schedule_id, fire_at DESC);

-- A job a schedule created; retention runs after it succeeds.
ALTER TABLE jobs ADD COLUMN schedule_id uuid REFERENCES schedules (id) ON DELETE SET NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, finished_at DESC) WHERE schedule_id IS NOT NULL;
