"""Postgres: the webhook outbox (bulk insert, leased claims with FOR UPDATE SKIP LOCKED).
The cursor reads, acks and the audit log are `SharedQueries`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._rows import delivery_from_row
from ._sql import HEADS_ONLY, START_WEBHOOK_CURSOR, WEBHOOK_CURSOR
from .base import WebhookDelivery


class PostgresOutbox(PostgresPart):
    """The webhook methods of the `Store` where Postgres has its own way."""

    # ----------------------------------------------------------------------------- webhooks

    async def enqueue_webhooks(
        self, deliveries: Sequence[WebhookDelivery], cursors: Mapping[str, int] | None = None
    ) -> int:
        """Add deliveries to the outbox, skipping (event_id, url) pairs already there, and move
        `cursors` forward in the same transaction; returns the rows added."""
        cursors = dict(cursors or {})

        async def q(conn: asyncpg.Connection) -> int:
            now = time.time()
            async with conn.transaction():
                added = await _insert_deliveries(conn, deliveries, now) if deliveries else 0
                if cursors:
                    await conn.execute(
                        "INSERT INTO webhook_cursors (account, seq, updated_at)"
                        " SELECT a, s, $3 FROM unnest($1::text[], $2::bigint[]) AS x(a, s)"
                        " ON CONFLICT (account) DO UPDATE"
                        " SET seq = greatest(webhook_cursors.seq, EXCLUDED.seq),"
                        " updated_at = EXCLUDED.updated_at",
                        list(cursors),
                        list(cursors.values()),
                        now,
                    )
            return added

        return await self._call(q) if deliveries or cursors else 0

    async def start_webhook_cursor(self, account: str, seq: int | None = None) -> int:
        """`account`'s cursor, created first if it has none: at `seq`, else at its last seq."""

        async def q(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                await conn.execute(START_WEBHOOK_CURSOR.postgres, account, seq, time.time())
                value = await conn.fetchval(WEBHOOK_CURSOR.postgres, account)
            return int(value)

        return await self._call(q)

    async def claim_webhooks(
        self, limit: int, now: float, lease_s: float, *, in_order: bool = False
    ) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries until now+lease_s; claimers never overlap.
        `in_order`: only the oldest pending row of each (account, url) is claimable (a head
        another claimer holds locked is skipped, and the rows after it wait for it)."""
        heads = HEADS_ONLY if in_order else ""

        async def q(conn: asyncpg.Connection) -> list[WebhookDelivery]:
            rows = await conn.fetch(
                "UPDATE webhook_outbox SET leased_until = $2 + $3, attempts = attempts + 1,"
                " updated_at = $2 WHERE id IN ("
                f"  SELECT id FROM webhook_outbox WHERE status = 'pending' {heads}"
                "  AND next_attempt_at <= $2 AND (leased_until IS NULL OR leased_until <= $2)"
                "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " RETURNING *",
                limit,
                now,
                lease_s,
            )
            return sorted((delivery_from_row(r) for r in rows), key=lambda d: d.id or 0)

        return await self._call(q)


async def _insert_deliveries(
    conn: asyncpg.Connection, deliveries: Sequence[WebhookDelivery], now: float
) -> int:
    """One statement for every row (unnest); returns how many were new."""
    rows = await conn.fetch(
        "INSERT INTO webhook_outbox (event_id, account, url, event_type, payload,"
        " next_attempt_at, created_at, updated_at)"
        " SELECT e, a, u, t, p, $6, $6, $6"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])"
        " AS x(e, a, u, t, p)"
        " ON CONFLICT (event_id, url) DO NOTHING RETURNING id",
        [d.event_id for d in deliveries],
        [d.account for d in deliveries],
        [d.url for d in deliveries],
        [d.event_type for d in deliveries],
        [d.payload for d in deliveries],
        now,
    )
    return len(rows)
