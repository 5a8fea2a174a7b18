-- Accounts and tasks.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL
);

CREATE TABLE applications (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id),
    disabled         INTEGER NOT NULL DEFAULT 0,
    quota_remaining  INTEGER,            -- NULL: unlimited
    created_at       REAL NOT NULL
);
CREATE INDEX applications_user ON applications(user_id);

-- Tokens are kept only as SHA-256 hashes; token_prefix lets an operator name one.
CREATE TABLE credentials (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    token_hash      TEXT NOT NULL UNIQUE,
    token_prefix    TEXT NOT NULL,
    apis            TEXT NOT NULL,       -- comma-separated API names
    created_at      REAL NOT NULL,
    expires_at      REAL,
    revoked_at      REAL
);

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
    request          TEXT NOT NULL,      -- JSON, the creating request as sent
    response         TEXT,               -- JSON, §3 body once there is a status
    provider_data    TEXT NOT NULL DEFAULT '{}',
    callback         TEXT,               -- JSON, delivery state shown in the record
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    record           BLOB NOT NULL,      -- the rendered record, returned as stored bytes
    version          INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_check_at    REAL,               -- NULL once finished
    deadline_at      REAL NOT NULL,
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
