"""SQLite: the order-event log and the latest payload per order."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from ._rows import event_rows
from ._sql import LAST_SEQ, ORDERS_UPSERT_TAIL
from ._sqlite_jobs import SqlitePart, write_tx
from .base import Json
from .group_commit import assign_seqs


class SqliteEvents(SqlitePart):
    """`_write_round` for the committer (the event reads are `SharedQueries`)."""

    async def _write_round(
        self, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        def write(conn: sqlite3.Connection) -> list[list[int]]:
            def body() -> list[list[int]]:
                for account in {a for a, _ in requests} - known.keys():
                    known[account] = conn.execute(LAST_SEQ.sqlite, (account,)).fetchone()[0]
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
                    " VALUES (?, ?, ?, ?, ?, ?, ?)" + ORDERS_UPSERT_TAIL,
                    [(*row, now) for row in latest],
                )
                return per_request

            return write_tx(conn, body)

        return await self._run(write)
