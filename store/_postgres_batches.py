"""Postgres: batches and their legs (write-ahead records, idempotency keys, recovery)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._rows import batch_from_row, leg_from_row, leg_values
from ._sql import BATCH_BY_ID, BATCH_BY_KEY, DISCARD_BATCH, INSERT_BATCH, INSERT_LEG
from .base import (
    FINAL_BATCH_STATUSES,
    BatchRecord,
    BatchWithLegs,
    IdempotencyConflict,
    LegRecord,
    NotFound,
    StoreError,
)

_FINAL = sorted(FINAL_BATCH_STATUSES)


async def _batches_with_legs(
    conn: asyncpg.Connection, rows: list[asyncpg.Record]
) -> list[BatchWithLegs]:
    if not rows:
        return []
    legs: dict[str, list[LegRecord]] = {r["batch_id"]: [] for r in rows}
    for leg in await conn.fetch(
        "SELECT * FROM batch_legs WHERE batch_id = ANY($1::text[]) ORDER BY batch_id, idx",
        list(legs),
    ):
        legs[leg["batch_id"]].append(leg_from_row(leg))
    return [(batch_from_row(r), legs[r["batch_id"]]) for r in rows]


class PostgresBatches(PostgresPart):
    """The batch methods of the `Store` (the updates are `SharedQueries`)."""

    async def create_batch(self, batch: BatchRecord, legs: Sequence[LegRecord]) -> None:
        """Write the batch and its legs; `IdempotencyConflict` if its key is already taken."""

        async def q(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    INSERT_BATCH.postgres,
                    batch.batch_id,
                    batch.account,
                    batch.idempotency_key,
                    batch.request_hash,
                    batch.request,
                    batch.status,
                    batch.result,
                    batch.created_at,
                    batch.updated_at,
                )
                if inserted is None:
                    row = await conn.fetchrow(
                        BATCH_BY_KEY.postgres, batch.account, batch.idempotency_key
                    )
                    if row is None:  # purged between the two statements: let the caller retry
                        raise StoreError("idempotency conflict with a batch that vanished")
                    [(existing, existing_legs)] = await _batches_with_legs(conn, [row])
                    raise IdempotencyConflict(existing, existing_legs)
                await conn.executemany(
                    INSERT_LEG.postgres, [leg_values(leg, batch.created_at) for leg in legs]
                )

        await self._call(q)

    async def discard_batch(self, batch_id: str) -> None:
        """Delete a stored batch that placed nothing (refused before its first POST): its
        idempotency key is free again, as if it had never been stored."""

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(DISCARD_BATCH.postgres, batch_id)

        await self._call(q)

    async def add_leg(self, leg: LegRecord) -> None:
        """Add a leg to an existing batch (a reverse or retry order, with its own index/tag)."""

        async def q(conn: asyncpg.Connection) -> None:
            try:
                await conn.execute(INSERT_LEG.postgres, *leg_values(leg, time.time()))
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound(f"no batch {leg.batch_id}") from exc

        await self._call(q)

    async def get_batch(self, batch_id: str) -> BatchWithLegs | None:
        """The batch and its legs (by index), or None."""

        async def q(conn: asyncpg.Connection) -> BatchWithLegs | None:
            row = await conn.fetchrow(BATCH_BY_ID.postgres, batch_id)
            found = await _batches_with_legs(conn, [row] if row else [])
            return found[0] if found else None

        return await self._call(q)

    async def find_batch(self, account: str, idempotency_key: str) -> BatchWithLegs | None:
        """The batch that holds this idempotency key, or None."""

        async def q(conn: asyncpg.Connection) -> BatchWithLegs | None:
            row = await conn.fetchrow(BATCH_BY_KEY.postgres, account, idempotency_key)
            found = await _batches_with_legs(conn, [row] if row else [])
            return found[0] if found else None

        return await self._call(q)

    async def unfinished_batches(self) -> list[BatchWithLegs]:
        """Batches not in a final status, oldest first: what recovery must reconcile."""

        async def q(conn: asyncpg.Connection) -> list[BatchWithLegs]:
            rows = await conn.fetch(
                "SELECT * FROM batches WHERE status <> ALL($1::text[]) ORDER BY created_at",
                _FINAL,
            )
            return await _batches_with_legs(conn, list(rows))

        return await self._call(q)

    async def purge_idempotency_keys(self, older_than: float) -> int:
        """Free the keys of finished batches created before `older_than`; returns how many."""

        async def q(conn: asyncpg.Connection) -> int:
            done = await conn.execute(
                "UPDATE batches SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL"
                " AND created_at < $1 AND status = ANY($2::text[])",
                older_than,
                _FINAL,
            )
            return int(done.split()[-1])

        return await self._call(q)
