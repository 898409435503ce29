-- orderdesk schema v2 (Postgres): how far each account's order events are in the webhook outbox.
-- Every order_events row of `account` with seq <= `seq` has its order.updated outbox rows; the
-- cursor is written in the same transaction as those rows and never moves back. Only accounts
-- with webhooks have a row.
CREATE TABLE webhook_cursors (
    account     TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
