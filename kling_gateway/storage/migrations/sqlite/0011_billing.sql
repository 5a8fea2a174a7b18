-- Credits (docs/billing.md, issue 15): a price per task, an append-only ledger per
-- application, and a limit on tasks in flight. The old task-count quota becomes credits,
-- one credit per task left, as a grant: no balance is lost.
CREATE TABLE ledger (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications(id),
    entry           TEXT NOT NULL
        CHECK (entry IN ('grant', 'hold', 'settle', 'release', 'refund', 'adjustment')),
    credits         INTEGER NOT NULL,    -- change of the balance
    held            INTEGER NOT NULL,    -- change of the credits held by unfinished tasks
    task_id         TEXT,
    model           TEXT,
    note            TEXT,
    created_at      REAL NOT NULL
);
-- The balance is a sum over an application's entries: an index-only scan.
CREATE INDEX ledger_application ON ledger(application_id, created_at, credits, held);
CREATE INDEX ledger_created ON ledger(created_at);
-- A task's entries (the model of its hold, the charge a refund gives back).
CREATE INDEX ledger_task ON ledger(task_id) WHERE task_id IS NOT NULL;

ALTER TABLE applications ADD COLUMN metered INTEGER NOT NULL DEFAULT 0;
-- NULL: no limit
ALTER TABLE applications ADD COLUMN max_in_flight INTEGER;
INSERT INTO ledger (id, application_id, entry, credits, held, note, created_at)
    SELECT 'quota-' || id, id, 'grant', quota_remaining, 0,
           'the task-count quota left, one credit per task', CAST(strftime('%s', 'now') AS REAL)
    FROM applications WHERE quota_remaining IS NOT NULL;
UPDATE applications SET metered = 1 WHERE quota_remaining IS NOT NULL;
ALTER TABLE applications DROP COLUMN quota_remaining;

-- A task's price (shown as its usage), what it holds and its billing state, the
-- compare-and-set column that makes a settle or a release happen once.
-- JSON {credits, duration}
ALTER TABLE tasks ADD COLUMN usage TEXT;
ALTER TABLE tasks ADD COLUMN held_credits INTEGER;
-- NULL: never held; held, settled, ...
ALTER TABLE tasks ADD COLUMN billing TEXT;
-- max_in_flight: an application's unfinished tasks.
CREATE INDEX tasks_application_open ON tasks(application_id) WHERE next_check_at IS NOT NULL;
