-- Elements and voices created through POST /kling/elements and /kling/voices (docs/contract.md
-- §6.1): an asset is 'processing' until its upstream creation ends ('succeed' with its upstream
-- id, or 'failed'); account is the upstream account it lives on, job_id the upstream task of
-- its creation, spec/result/error its JSON views, idempotency_key the create's header. SQLite cannot relax NOT NULL in place, so
-- the table is rebuilt; rows registered before this (an operator's `assets add`) are ready.
CREATE TABLE assets_new (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL CHECK (kind IN ('element', 'voice')),
    upstream_id TEXT,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'succeed' CHECK (state IN ('processing', 'succeed', 'failed')),
    account TEXT,
    job_id TEXT,
    spec TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    updated_at REAL NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT
);
INSERT INTO assets_new (id, user_id, kind, upstream_id, created_at)
    SELECT id, user_id, kind, upstream_id, created_at FROM assets;
DROP TABLE assets;
ALTER TABLE assets_new RENAME TO assets;
-- list: a user's assets of a kind, newest first.
CREATE INDEX assets_user_kind ON assets(user_id, kind, created_at DESC);
-- a create repeated with the same Idempotency-Key (24 hours) answers the first asset.
CREATE UNIQUE INDEX assets_idempotency ON assets(user_id, kind, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
