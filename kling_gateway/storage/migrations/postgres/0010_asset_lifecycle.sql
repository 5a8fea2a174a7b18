-- Elements and voices created through POST /kling/elements and /kling/voices (docs/contract.md
-- §6.1): an asset is 'processing' until its upstream creation ends ('succeed' with its upstream
-- id, or 'failed'); account is the upstream account it lives on, job_id the upstream task of
-- its creation, spec/result/error its JSON views, idempotency_key the create's header. Rows registered before this (an operator's
-- `assets add`) are ready.
ALTER TABLE assets ALTER COLUMN upstream_id DROP NOT NULL;
ALTER TABLE assets ADD COLUMN state TEXT NOT NULL DEFAULT 'succeed'
    CHECK (state IN ('processing', 'succeed', 'failed'));
ALTER TABLE assets ADD COLUMN account TEXT;
ALTER TABLE assets ADD COLUMN job_id TEXT;
ALTER TABLE assets ADD COLUMN spec TEXT NOT NULL DEFAULT '{}';
ALTER TABLE assets ADD COLUMN result TEXT NOT NULL DEFAULT '{}';
ALTER TABLE assets ADD COLUMN error TEXT;
ALTER TABLE assets ADD COLUMN updated_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN idempotency_key TEXT;
-- list: a user's assets of a kind, newest first.
DROP INDEX assets_user_kind;
CREATE INDEX assets_user_kind ON assets(user_id, kind, created_at DESC);
-- a create repeated with the same Idempotency-Key (24 hours) answers the first asset.
CREATE UNIQUE INDEX assets_idempotency ON assets(user_id, kind, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
