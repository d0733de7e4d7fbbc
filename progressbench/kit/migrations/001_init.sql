-- The progress store: jobs, their events, and every step execution.
-- job_events is the ground truth every client is measured against; its
-- primary key (job_id, seq) is what makes retried and resumed jobs converge.

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    owner             text        NOT NULL,
    transport         text        NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'interrupted', 'done', 'failed')),
    total_steps       integer     NOT NULL CHECK (total_steps > 0),
    current_step      integer     NOT NULL DEFAULT 0,
    attempt           integer     NOT NULL DEFAULT 0,
    execution_context jsonb,
    spec              jsonb       NOT NULL,
    result            jsonb,
    error             text,
    lease_owner       text,
    heartbeat_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX jobs_takeover_idx ON jobs (status, heartbeat_at)
    WHERE status IN ('running', 'interrupted');

CREATE TABLE job_events (
    job_id       uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq          integer     NOT NULL CHECK (seq > 0),
    owner        text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('step', 'done', 'failed')),
    message      text        NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, seq)
);

-- One row each time a step's work ran to completion, whoever ran it. Two rows
-- for the same (job_id, seq) mean the work was done twice: a duplicate execution.
CREATE TABLE step_runs (
    id          bigserial   PRIMARY KEY,
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         integer     NOT NULL,
    attempt     integer     NOT NULL,
    instance    text        NOT NULL,
    context     jsonb       NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX step_runs_job_idx ON step_runs (job_id, seq);
