"""SQLite: the order-event log and the latest payload per order."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from ._rows import event_rows
from ._sqlite_jobs import SqlitePart, write_tx
from .base import Json, OrderEvent
from .group_commit import assign_seqs


class SqliteEvents(SqlitePart):
    """`_write_round` for the committer; `last_seq`, `read_events`, `load_orders`."""

    async def _write_round(
        self, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        def write(conn: sqlite3.Connection) -> list[list[int]]:
            def body() -> list[list[int]]:
                for account in {a for a, _ in requests} - known.keys():
                    known[account] = conn.execute(
                        "SELECT coalesce(max(seq), 0) FROM order_events WHERE account = ?",
                        (account,),
                    ).fetchone()[0]
                per_request, numbered = assign_seqs(requests, known)
                events, latest = event_rows(numbered, json.dumps)
                now = time.time()
                conn.executemany(
                    "INSERT INTO order_events (account, seq, order_id, payload, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(*row, now) for row in events],
                )
                conn.executemany(
                    "INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account, order_id) DO UPDATE SET payload = excluded.payload,"
                    " status = excluded.status, tag = excluded.tag, seq = excluded.seq,"
                    " updated_at = excluded.updated_at",
                    [(*row, now) for row in latest],
                )
                return per_request

            return write_tx(conn, body)

        return await self._run(write)

    async def last_seq(self, account: str) -> int:
        """Highest committed seq of `account`, 0 if it has none."""
        return await self._run(
            lambda c: c.execute(
                "SELECT coalesce(max(seq), 0) FROM order_events WHERE account = ?", (account,)
            ).fetchone()[0]
        )

    async def read_events(
        self, account: str, after_seq: int, limit: int = 1000
    ) -> list[OrderEvent]:
        """Events of `account` with seq > `after_seq`, oldest first (for replay)."""

        def q(conn: sqlite3.Connection) -> list[OrderEvent]:
            rows = conn.execute(
                "SELECT seq, order_id, payload FROM order_events"
                " WHERE account = ? AND seq > ? ORDER BY seq LIMIT ?",
                (account, after_seq, limit),
            )
            return [OrderEvent(account, r[0], r[1], json.loads(r[2])) for r in rows]

        return await self._run(q)

    async def load_orders(self, account: str) -> list[Json]:
        """Latest payload of every order of `account`, in the order they were last updated."""
        return await self._run(
            lambda c: [
                json.loads(r[0])
                for r in c.execute(
                    "SELECT payload FROM orders WHERE account = ? ORDER BY seq", (account,)
                )
            ]
        )
