-- Upstream (Kling) accounts, and the account each task holds a slot on (issue 14).
-- A task holds a slot on upstream_account from the moment it is assigned until it finishes
-- (next_check_at NULL): the slot count is a count of rows, so it never drifts.
CREATE TABLE upstream_accounts (
    name              TEXT PRIMARY KEY,
    access_key        TEXT NOT NULL,
    secret_key        TEXT NOT NULL,     -- sealed under the server key (storage/crypto.py)
    max_concurrency   INTEGER NOT NULL,
    models            TEXT NOT NULL DEFAULT '',  -- comma-separated; empty: every model
    weight            REAL NOT NULL DEFAULT 1,
    base_url          TEXT,
    state             TEXT NOT NULL DEFAULT 'enabled',
    full_until        REAL NOT NULL DEFAULT 0,   -- full after 1302/1303 until then
    full_streak       INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    packs_remaining   REAL,
    packs_run_out     INTEGER NOT NULL DEFAULT 0,
    packs_checked_at  REAL,
    created_at        REAL NOT NULL
);
ALTER TABLE tasks ADD COLUMN upstream_account TEXT;
CREATE INDEX tasks_slots ON tasks(upstream_account)
    WHERE upstream_account IS NOT NULL AND next_check_at IS NOT NULL;
