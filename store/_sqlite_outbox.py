"""SQLite: the webhook outbox (leased claims, one writer so no overlap) and the audit log."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence

from ._rows import HEADS_ONLY, audit_from_row, delivery_from_row
from ._sqlite_jobs import SqlitePart, loads, write_tx
from .base import AuditEntry, WebhookDelivery


class SqliteOutbox(SqlitePart):
    """The webhook and audit methods of the `Store`."""

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

    async def webhook_cursor(self, account: str) -> int:
        """How far `account`'s order events are in the outbox (0 when it has no cursor)."""

        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT seq FROM webhook_cursors WHERE account = ?", (account,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(q)

    async def start_webhook_cursor(self, account: str, seq: int | None = None) -> int:
        """`account`'s cursor, created first if it has none: at `seq`, else at its last seq."""

        def q(conn: sqlite3.Connection) -> int:
            def body() -> int:
                conn.execute(
                    "INSERT INTO webhook_cursors (account, seq, updated_at)"
                    " SELECT ?, coalesce(?, (SELECT max(seq) FROM order_events"
                    "  WHERE account = ?), 0), ?"
                    " WHERE true ON CONFLICT (account) DO NOTHING",
                    (account, seq, account, time.time()),
                )
                row = conn.execute(
                    "SELECT seq FROM webhook_cursors WHERE account = ?", (account,)
                ).fetchone()
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

    async def ack_webhook(self, id: int) -> None:
        """Mark a delivery as delivered."""
        await self._update_one(
            f"no webhook delivery {id}",
            "UPDATE webhook_outbox SET status = 'delivered', leased_until = NULL,"
            " updated_at = ? WHERE id = ?",
            (time.time(), id),
        )

    async def retry_webhook(self, id: int, next_attempt_at: float, error: str) -> None:
        """Release a delivery to be tried again at `next_attempt_at`."""
        await self._update_one(
            f"no webhook delivery {id}",
            "UPDATE webhook_outbox SET status = 'pending', leased_until = NULL,"
            " next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (next_attempt_at, error, time.time(), id),
        )

    async def fail_webhook(self, id: int, error: str) -> None:
        """Give up on a delivery for good."""
        await self._update_one(
            f"no webhook delivery {id}",
            "UPDATE webhook_outbox SET status = 'failed', leased_until = NULL,"
            " last_error = ?, updated_at = ? WHERE id = ?",
            (error, time.time(), id),
        )

    # -------------------------------------------------------------------------------- audit

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one audit entry."""
        await self._run(
            lambda c: c.execute(
                "INSERT INTO audit_log (account, actor_name, action, order_id, detail, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.account,
                    entry.actor_name,
                    entry.action,
                    entry.order_id,
                    json.dumps(entry.detail),
                    entry.at,
                ),
            )
        )

    async def list_audit(self, account: str | None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; all accounts when `account` is None."""

        def q(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                "SELECT account, actor_name, action, order_id, detail, at FROM audit_log"
                " WHERE ? IS NULL OR account = ? ORDER BY id DESC LIMIT ?",
                (account, account, limit),
            )
            return [audit_from_row(r, loads) for r in rows]

        return await self._run(q)
