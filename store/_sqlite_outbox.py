"""SQLite: the webhook outbox (leased claims, one writer so no overlap). The cursor reads,
acks and the audit log are `SharedQueries`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence

from ._rows import delivery_from_row
from ._sql import HEADS_ONLY, START_WEBHOOK_CURSOR, WEBHOOK_CURSOR
from ._sqlite_jobs import SqlitePart, loads, write_tx
from .base import WebhookDelivery


class SqliteOutbox(SqlitePart):
    """The webhook methods of the `Store` where SQLite has its own way."""

    # ----------------------------------------------------------------------------- webhooks

    async def enqueue_webhooks(
        self, deliveries: Sequence[WebhookDelivery], cursors: Mapping[str, int] | None = None
    ) -> int:
        """Add deliveries to the outbox, skipping (event_id, url) pairs already there, and move
        `cursors` forward in the same transaction; returns the rows added."""
        cursors = dict(cursors or {})

        def q(conn: sqlite3.Connection) -> int:
            now = time.time()

            def body() -> int:
                added = 0
                for d in deliveries:
                    added += conn.execute(
                        "INSERT INTO webhook_outbox (event_id, account, url, event_type, payload,"
                        " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (event_id, url) DO NOTHING",
                        (
                            d.event_id,
                            d.account,
                            d.url,
                            d.event_type,
                            json.dumps(d.payload),
                            now,
                            now,
                            now,
                        ),
                    ).rowcount
                conn.executemany(
                    "INSERT INTO webhook_cursors (account, seq, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (account) DO UPDATE SET seq = max(seq, excluded.seq),"
                    " updated_at = excluded.updated_at",
                    [(account, seq, now) for account, seq in cursors.items()],
                )
                return added

            return write_tx(conn, body)

        return await self._run(q) if deliveries or cursors else 0

    async def start_webhook_cursor(self, account: str, seq: int | None = None) -> int:
        """`account`'s cursor, created first if it has none: at `seq`, else at its last seq."""

        def q(conn: sqlite3.Connection) -> int:
            def body() -> int:
                conn.execute(START_WEBHOOK_CURSOR.sqlite, (account, seq, time.time()))
                row = conn.execute(WEBHOOK_CURSOR.sqlite, (account,)).fetchone()
                return int(row[0])

            return write_tx(conn, body)

        return await self._run(q)

    async def claim_webhooks(
        self, limit: int, now: float, lease_s: float, *, in_order: bool = False
    ) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries until now+lease_s; claimers never overlap.
        `in_order`: only the oldest pending row of each (account, url) is claimable."""
        heads = HEADS_ONLY if in_order else ""

        def q(conn: sqlite3.Connection) -> list[WebhookDelivery]:
            def body() -> list[WebhookDelivery]:
                rows = conn.execute(
                    "UPDATE webhook_outbox SET leased_until = ? + ?, attempts = attempts + 1,"
                    " updated_at = ? WHERE id IN ("
                    f"  SELECT id FROM webhook_outbox WHERE status = 'pending' {heads}"
                    "  AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)"
                    "  ORDER BY next_attempt_at, id LIMIT ?)"
                    " RETURNING id, event_id, account, url, event_type, payload, attempts",
                    (now, lease_s, now, now, now, limit),
                ).fetchall()
                return [delivery_from_row(r, loads) for r in rows]

            return sorted(write_tx(conn, body), key=lambda d: d.id or 0)

        return await self._run(q)
