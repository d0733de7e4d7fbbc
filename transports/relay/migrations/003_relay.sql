-- The relay transport's task queue (Cloud Tasks semantics) and its OIDC signing keys.
-- Only transports/relay/queue/tasks.py reads or writes these tables; jobs and
-- job_events stay the Store's.

CREATE TABLE relay_tasks (
    name            text        PRIMARY KEY,   -- short task id; unique like a Cloud Tasks task name
    queue           text        NOT NULL,
    job_id          uuid        REFERENCES jobs (id) ON DELETE CASCADE,
    url             text        NOT NULL,      -- HttpRequest.url (the push target)
    audience        text        NOT NULL,      -- OidcToken.audience
    body            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state           text        NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'dispatching', 'succeeded', 'failed')),
    schedule_time   timestamptz NOT NULL DEFAULT clock_timestamp(),  -- the ETA of the next attempt
    lease_until     timestamptz,              -- an attempt in flight; reclaimed after it
    dispatch_count  integer     NOT NULL DEFAULT 0,  -- attempts started (X-CloudTasks-TaskRetryCount)
    response_count  integer     NOT NULL DEFAULT 0,  -- non-5xx responses (TaskExecutionCount)
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    first_attempt_at timestamptz,
    finished_at     timestamptz
);

CREATE INDEX relay_tasks_due_idx ON relay_tasks (schedule_time) WHERE state IN ('queued', 'dispatching');

-- RS256 keys the queue signs OIDC tokens with; the JWKS it serves lists the live ones.
CREATE TABLE relay_signing_keys (
    kid          text        PRIMARY KEY,
    private_pem  text        NOT NULL,
    public_jwk   jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
