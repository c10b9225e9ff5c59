-- The W3C trace context (traceparent, tracestate) of the request that created a job.
-- Every outbox row of the job (its first message and every retry) carries it, so all
-- of a job's attempts join the trace of that request. jobs.trace_id (0001) holds its
-- trace id for clients.
ALTER TABLE jobs ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
