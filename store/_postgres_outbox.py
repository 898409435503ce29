"""Postgres: the webhook outbox (leased claims, FOR UPDATE SKIP LOCKED) and the audit log."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._rows import HEADS_ONLY, audit_from_row, delivery_from_row
from .base import AuditEntry, WebhookDelivery


class PostgresOutbox(PostgresPart):
    """The webhook and audit methods of the `Store`."""

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

    async def webhook_cursor(self, account: str) -> int:
        """How far `account`'s order events are in the outbox (0 when it has no cursor)."""

        async def q(conn: asyncpg.Connection) -> int:
            value = await conn.fetchval(
                "SELECT seq FROM webhook_cursors WHERE account = $1", account
            )
            return int(value or 0)

        return await self._call(q)

    async def start_webhook_cursor(self, account: str, seq: int | None = None) -> int:
        """`account`'s cursor, created first if it has none: at `seq`, else at its last seq."""

        async def q(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO webhook_cursors (account, seq, updated_at)"
                    " SELECT $1::text, coalesce($2::bigint, (SELECT max(seq) FROM order_events"
                    "  WHERE account = $1::text), 0), $3::float8"
                    " ON CONFLICT (account) DO NOTHING",
                    account,
                    seq,
                    time.time(),
                )
                value = await conn.fetchval(
                    "SELECT seq FROM webhook_cursors WHERE account = $1", account
                )
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

    async def ack_webhook(self, id: int) -> None:
        """Mark a delivery as delivered."""
        await self._update_one(
            f"no webhook delivery {id}",
            "UPDATE webhook_outbox SET status = 'delivered', leased_until = NULL,"
            " updated_at = $2 WHERE id = $1",
            id,
            time.time(),
        )

    async def retry_webhook(self, id: int, next_attempt_at: float, error: str) -> None:
        """Release a delivery to be tried again at `next_attempt_at`."""
        await self._update_one(
            f"no webhook delivery {id}",
            "UPDATE webhook_outbox SET status = 'pending', leased_until = NULL,"
            " next_attempt_at = $2, last_error = $3, updated_at = $4 WHERE id = $1",
            id,
            next_attempt_at,
            error,
            time.time(),
        )

    async def fail_webhook(self, id: int, error: str) -> None:
        """Give up on a delivery for good."""
        await self._update_one(
            f"no webhook delivery {id}",
            "UPDATE webhook_outbox SET status = 'failed', leased_until = NULL,"
            " last_error = $2, updated_at = $3 WHERE id = $1",
            id,
            error,
            time.time(),
        )

    # -------------------------------------------------------------------------------- audit

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one audit entry."""

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO audit_log (account, actor_name, action, order_id, detail, at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                entry.account,
                entry.actor_name,
                entry.action,
                entry.order_id,
                entry.detail,
                entry.at,
            )

        await self._call(q)

    async def list_audit(self, account: str | None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; all accounts when `account` is None."""

        async def q(conn: asyncpg.Connection) -> list[AuditEntry]:
            rows = await conn.fetch(
                "SELECT * FROM audit_log WHERE $1::text IS NULL OR account = $1"
                " ORDER BY id DESC LIMIT $2",
                account,
                limit,
            )
            return [audit_from_row(r) for r in rows]

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
