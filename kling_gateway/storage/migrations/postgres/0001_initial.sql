-- Accounts and tasks (PostgreSQL). Times are epoch seconds in DOUBLE PRECISION, as in SQLite,
-- so both backends hand the same floats to the same Python code.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE applications (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id),
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    quota_remaining  BIGINT,             -- NULL: unlimited
    created_at       DOUBLE PRECISION NOT NULL
);
CREATE INDEX applications_user ON applications(user_id);

-- Tokens are kept only as SHA-256 hashes; token_prefix lets an operator name one.
CREATE TABLE credentials (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    token_hash      TEXT NOT NULL UNIQUE,
    token_prefix    TEXT NOT NULL,
    apis            TEXT NOT NULL,       -- comma-separated API names, as in SQLite
    created_at      DOUBLE PRECISION NOT NULL,
    expires_at      DOUBLE PRECISION,
    revoked_at      DOUBLE PRECISION
);

-- JSON columns are JSON, not JSONB: JSONB reorders object keys, and the record is re-rendered
-- from these columns on every save, so JSONB would change the key order clients see.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    object_id        TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    application_id   TEXT NOT NULL,
    credential_id    TEXT NOT NULL,
    type             TEXT NOT NULL,
    state            TEXT NOT NULL,
    trace_id         TEXT NOT NULL,
    job_id           TEXT,
    request          JSON NOT NULL,      -- the creating request as sent
    response         JSON,               -- §3 body once there is a status
    provider_data    JSON NOT NULL DEFAULT '{}',
    callback         JSON,               -- delivery state shown in the record
    created_at       DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    record           BYTEA NOT NULL,     -- the rendered record; asyncpg returns bytes as is
    version          BIGINT NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_check_at    DOUBLE PRECISION,   -- NULL once finished
    deadline_at      DOUBLE PRECISION NOT NULL,
    lease_owner      TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT
);
-- retrieve_batch with filters: a user's tasks, newest first.
CREATE INDEX tasks_user_created ON tasks(user_id, created_at DESC);
-- The worker's claim: unfinished tasks by next check time (finished ones have NULL).
CREATE INDEX tasks_due ON tasks(next_check_at) WHERE next_check_at IS NOT NULL;
-- Idempotent create: one task per (user, key).
CREATE UNIQUE INDEX tasks_idempotency ON tasks(user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
