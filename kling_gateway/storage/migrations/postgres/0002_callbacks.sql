-- The durable callback outbox: a row is written in the same transaction as the state it reports.
CREATE TABLE callbacks (
    id               TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             BYTEA NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',   -- pending, delivered, failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION,                  -- NULL once delivered or failed
    lease_owner      TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     DOUBLE PRECISION,
    created_at       DOUBLE PRECISION NOT NULL
);
-- The deliverer's claim, by next attempt time.
CREATE INDEX callbacks_due ON callbacks(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- Operators' listing by task.
CREATE INDEX callbacks_task ON callbacks(task_id);
