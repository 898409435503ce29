"""Postgres: the webhook outbox (leased claims, FOR UPDATE SKIP LOCKED) and the audit log."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._rows import audit_from_row, delivery_from_row
from .base import AuditEntry, WebhookDelivery


class PostgresOutbox(PostgresPart):
    """The webhook and audit methods of the `Store`."""

    # ----------------------------------------------------------------------------- webhooks

    async def enqueue_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> int:
        """Add deliveries to the outbox, skipping (event_id, url) pairs already there."""

        async def q(conn: asyncpg.Connection) -> int:
            now = time.time()
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

        return await self._call(q) if deliveries else 0

    async def claim_webhooks(self, limit: int, now: float, lease_s: float) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries until now+lease_s; claimers never overlap."""

        async def q(conn: asyncpg.Connection) -> list[WebhookDelivery]:
            rows = await conn.fetch(
                "UPDATE webhook_outbox SET leased_until = $2 + $3, attempts = attempts + 1,"
                " updated_at = $2 WHERE id IN ("
                "  SELECT id FROM webhook_outbox WHERE status = 'pending'"
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
