-- orderdesk schema v1 (Postgres). Times are epoch seconds (double precision) on both engines.
CREATE TABLE order_events (
    account     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    order_id    TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, seq)
);

CREATE TABLE orders (
    account     TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    payload     JSONB NOT NULL,
    status      TEXT,
    tag         TEXT,
    seq         BIGINT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, order_id)
);
CREATE INDEX orders_tag ON orders (account, tag) WHERE tag IS NOT NULL;

CREATE TABLE batches (
    batch_id         TEXT PRIMARY KEY,
    account          TEXT NOT NULL,
    idempotency_key  TEXT,
    request_hash     TEXT NOT NULL,
    request          JSONB NOT NULL,
    status           TEXT NOT NULL,
    result           JSONB,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
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
    request     JSONB NOT NULL,
    detail      JSONB NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (batch_id, idx)
);

CREATE TABLE webhook_outbox (
    id               BIGSERIAL PRIMARY KEY,
    event_id         TEXT NOT NULL,
    account          TEXT NOT NULL,
    url              TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          JSONB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION NOT NULL,
    leased_until     DOUBLE PRECISION,
    last_error       TEXT,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    UNIQUE (event_id, url)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    account     TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    order_id    TEXT,
    detail      JSONB NOT NULL,
    at          DOUBLE PRECISION NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (account, id);
