-- Per-user weights of the fair queue (issue 14): a user with weight 2 gets twice the slots of
-- a user with weight 1 while both have tasks waiting. No row: weight 1.
CREATE TABLE fairness_weights (
    user_id     TEXT PRIMARY KEY,
    weight      DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
