-- orderdesk schema v1 (SQLite). Times are epoch seconds (double precision) on both engines.
CREATE TABLE order_events (
    account     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    order_id    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (account, seq)
);

CREATE TABLE orders (
    account     TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT,
    tag         TEXT,
    seq         INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (account, order_id)
);
CREATE INDEX orders_tag ON orders (account, tag) WHERE tag IS NOT NULL;

CREATE TABLE batches (
    batch_id         TEXT PRIMARY KEY,
    account          TEXT NOT NULL,
    idempotency_key  TEXT,
    request_hash     TEXT NOT NULL,
    request          TEXT NOT NULL,
    status           TEXT NOT NULL,
    result           TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    UNIQUE (account, idempotency_key)
);
CREATE INDEX batches_status ON batches (status);

CREATE TABLE batch_legs (
    batch_id    TEXT NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'leg',
    tag         TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    order_id    TEXT,
    request     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (batch_id, idx)
);

CREATE TABLE webhook_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL,
    account          TEXT NOT NULL,
    url              TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    leased_until     REAL,
    last_error       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    UNIQUE (event_id, url)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account     TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    order_id    TEXT,
    detail      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (account, id);
