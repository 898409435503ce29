"""The statements both engines run alike, written once.

Postgres and SQLite differ in how they spell a numbered parameter (`$1` and `?1`) and not in
what it means: SQLite binds `?N` to the Nth value of a sequence, as asyncpg binds `$N`. So a
statement here is written with `$N` and rendered for each engine once, at import, and both
engines pass the same values in the same order.

Statements where the engines really differ stay in their own modules: the group-commit writes
(unnest arrays vs executemany), array parameters (`= ANY($1::text[])` vs `IN (?, ...)`), the
webhook claim (`FOR UPDATE SKIP LOCKED` on Postgres only) and the bulk outbox insert.
"""

from __future__ import annotations

import re

import attrs

from brokers.base import FINAL_STATUSES

from ._rows import LEG_COLUMNS

_PLACEHOLDER = re.compile(r"\$(\d+)")


@attrs.frozen
class Statement:
    """One SQL statement in both engines' spelling."""

    postgres: str  # numbered parameters spelled $N
    sqlite: str  # the same spelled ?N


def sql(text: str) -> Statement:
    """Render `text` (written with $1..$N, no gap) for both engines."""
    used = {int(n) for n in _PLACEHOLDER.findall(text)}
    if used != set(range(1, len(used) + 1)):
        raise ValueError(f"placeholders must run $1..$N without a gap: {sorted(used)} in {text!r}")
    return Statement(postgres=text, sqlite=_PLACEHOLDER.sub(r"?\1", text))


def in_list(values: frozenset[str]) -> str:
    """A constant SQL list of strings, sorted: `IN (...)` alike on both engines."""
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


# ------------------------------------------------------------------------------- migrations

RECORD_MIGRATION = sql(
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"
)

# ----------------------------------------------------------------------------------- events

LAST_SEQ = sql("SELECT coalesce(max(seq), 0) FROM order_events WHERE account = $1")

READ_EVENTS = sql(
    "SELECT seq, order_id, payload FROM order_events"
    " WHERE account = $1 AND seq > $2 ORDER BY seq LIMIT $3"
)

LOAD_ORDERS = sql("SELECT payload FROM orders WHERE account = $1 ORDER BY seq")

ORDER_SEQ = sql("SELECT seq FROM orders WHERE account = $1 AND order_id = $2")

#: Final orders whose last update came before seq $2, the newest first.
FINISHED_ORDERS = sql(
    "SELECT payload FROM orders WHERE account = $1 AND seq < $2"
    f" AND status IN {in_list(FINAL_STATUSES)} ORDER BY seq DESC LIMIT $3"
)

#: The tail of the `orders` upsert: the latest payload of an order replaces the one stored.
ORDERS_UPSERT_TAIL = (
    " ON CONFLICT (account, order_id) DO UPDATE SET payload = excluded.payload,"
    " status = excluded.status, tag = excluded.tag, seq = excluded.seq,"
    " updated_at = excluded.updated_at"
)

# ---------------------------------------------------------------------------------- batches

#: Returns the batch_id, or no row when (account, idempotency_key) is already taken.
INSERT_BATCH = sql(
    "INSERT INTO batches (batch_id, account, idempotency_key, request_hash,"
    " request, status, result, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT (account, idempotency_key) DO NOTHING RETURNING batch_id"
)

BATCH_BY_ID = sql("SELECT * FROM batches WHERE batch_id = $1")

BATCH_BY_KEY = sql("SELECT * FROM batches WHERE account = $1 AND idempotency_key = $2")

#: Only a batch still `running` (nothing placed yet, the coordinator's say): its legs cascade.
DISCARD_BATCH = sql("DELETE FROM batches WHERE batch_id = $1 AND status = 'running'")

UPDATE_BATCH = sql(
    "UPDATE batches SET status = $2, result = coalesce($3, result), updated_at = $4"
    " WHERE batch_id = $1"
)

#: The parameters are `_rows.leg_values` in its order.
INSERT_LEG = sql(
    f"INSERT INTO batch_legs ({LEG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)

UPDATE_LEG = sql(
    "UPDATE batch_legs SET status = $3, order_id = coalesce($4, order_id),"
    " detail = coalesce($5, detail), updated_at = $6"
    " WHERE batch_id = $1 AND idx = $2"
)

# ---------------------------------------------------------------------------------- webhooks

WEBHOOK_CURSOR = sql("SELECT seq FROM webhook_cursors WHERE account = $1")

#: Creates `account`'s cursor at `seq`, else at its last seq, unless it has one. The casts give
#: Postgres the parameter types; `WHERE true` lets SQLite parse ON CONFLICT after a SELECT.
START_WEBHOOK_CURSOR = sql(
    "INSERT INTO webhook_cursors (account, seq, updated_at)"
    " SELECT CAST($1 AS TEXT), coalesce(CAST($2 AS BIGINT), (SELECT max(seq) FROM order_events"
    "  WHERE account = CAST($1 AS TEXT)), 0), CAST($3 AS DOUBLE PRECISION)"
    " WHERE true ON CONFLICT (account) DO NOTHING"
)

#: The condition that makes a webhook claim in order: a row is claimable only while it is the
#: oldest pending row of its (account, url).
HEADS_ONLY = (
    "AND id IN (SELECT min(id) FROM webhook_outbox WHERE status = 'pending' GROUP BY account, url)"
)

ACK_WEBHOOK = sql(
    "UPDATE webhook_outbox SET status = 'delivered', leased_until = NULL,"
    " updated_at = $2 WHERE id = $1"
)

RETRY_WEBHOOK = sql(
    "UPDATE webhook_outbox SET status = 'pending', leased_until = NULL,"
    " next_attempt_at = $2, last_error = $3, updated_at = $4 WHERE id = $1"
)

FAIL_WEBHOOK = sql(
    "UPDATE webhook_outbox SET status = 'failed', leased_until = NULL,"
    " last_error = $2, updated_at = $3 WHERE id = $1"
)

# ------------------------------------------------------------------------------------- audit

RECORD_AUDIT = sql(
    "INSERT INTO audit_log (account, actor_name, action, order_id, detail, at)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)

#: Newest first; every account when $1 is NULL.
LIST_AUDIT = sql(
    "SELECT * FROM audit_log WHERE CAST($1 AS TEXT) IS NULL OR account = $1"
    " ORDER BY id DESC LIMIT $2"
)

# ------------------------------------------------------------------------------ saved baskets

#: Creates or replaces (account $1, name $2); a new name only while the account keeps fewer
#: than $5 baskets (no row comes back otherwise). A replace keeps `created_at`.
SAVE_BASKET = sql(
    "INSERT INTO saved_baskets (account, name, legs, created_at, updated_at)"
    " SELECT $1, $2, $3, $4, $4"
    " WHERE (SELECT count(*) FROM saved_baskets WHERE account = $1) < $5"
    " OR EXISTS (SELECT 1 FROM saved_baskets WHERE account = $1 AND name = $2)"
    " ON CONFLICT (account, name) DO UPDATE SET legs = excluded.legs,"
    " updated_at = excluded.updated_at"
    " RETURNING account, name, legs, created_at, updated_at"
)

LOAD_BASKET = sql("SELECT * FROM saved_baskets WHERE account = $1 AND name = $2")

LIST_BASKETS = sql("SELECT * FROM saved_baskets WHERE account = $1 ORDER BY name")

DELETE_BASKET = sql(
    "DELETE FROM saved_baskets WHERE account = $1 AND name = $2 RETURNING name"
)

# The first rotation records the configured value it replaced; later ones keep that.
SAVE_TOKEN_ROTATION = sql(
    "INSERT INTO token_rotations (account, name, digest, replaced, rotated_at)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (account, name) DO UPDATE SET digest = excluded.digest,"
    " rotated_at = excluded.rotated_at"
)

LIST_TOKEN_ROTATIONS = sql(
    "SELECT account, name, digest, replaced, rotated_at FROM token_rotations"
    " ORDER BY account, name"
)
