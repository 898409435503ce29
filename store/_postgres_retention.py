"""Postgres: `Store.prune` (what it deletes: `_retention.py`)."""

from __future__ import annotations

import asyncpg

from ._postgres_bridge import PostgresPart
from ._retention import PRUNE
from .base import Pruned

__all__ = ["PostgresRetention"]


class PostgresRetention(PostgresPart):
    """`prune` on Postgres: one transaction."""

    async def prune(self, before: float) -> Pruned:
        """Delete what is older than `before` (Unix time) and no longer needed; the counts."""

        async def run(conn: asyncpg.Connection) -> Pruned:
            counts = {}
            async with conn.transaction():
                for table, statement in PRUNE.items():
                    done = await conn.execute(statement.postgres, before)
                    counts[table] = int(done.split()[-1])
            return Pruned(**counts)

        return await self._call(run)
