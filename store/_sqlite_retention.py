"""SQLite: `Store.prune` (what it deletes: `_retention.py`)."""

from __future__ import annotations

import sqlite3

from ._retention import PRUNE
from ._sqlite_jobs import SqlitePart, write_tx
from .base import Pruned

__all__ = ["SqliteRetention"]


class SqliteRetention(SqlitePart):
    """`prune` on SQLite: one write transaction."""

    async def prune(self, before: float) -> Pruned:
        """Delete what is older than `before` (Unix time) and no longer needed; the counts."""

        def run(conn: sqlite3.Connection) -> Pruned:
            return write_tx(conn, lambda: Pruned(**{
                table: conn.execute(statement.sqlite, (before,)).rowcount
                for table, statement in PRUNE.items()}))

        return await self._run(run)
