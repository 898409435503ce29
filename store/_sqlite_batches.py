"""SQLite: batches and their legs (write-ahead records, idempotency keys, recovery)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ._rows import batch_from_row, leg_from_row, leg_values
from ._sql import BATCH_BY_ID, BATCH_BY_KEY, DISCARD_BATCH, INSERT_BATCH, INSERT_LEG
from ._sqlite_jobs import SqlitePart, dumps, loads, write_tx
from .base import (
    FINAL_BATCH_STATUSES,
    BatchRecord,
    BatchWithLegs,
    IdempotencyConflict,
    LegRecord,
    NotFound,
)

_FINAL = sorted(FINAL_BATCH_STATUSES)
_FINAL_IN = "(" + ", ".join("?" * len(_FINAL)) + ")"


def _with_legs(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[BatchWithLegs]:
    out = []
    for row in rows:
        legs = conn.execute(
            "SELECT * FROM batch_legs WHERE batch_id = ? ORDER BY idx", (row["batch_id"],)
        ).fetchall()
        out.append((batch_from_row(row, loads), [leg_from_row(leg, loads) for leg in legs]))
    return out


class SqliteBatches(SqlitePart):
    """The batch methods of the `Store` (the updates are `SharedQueries`)."""

    async def create_batch(self, batch: BatchRecord, legs: Sequence[LegRecord]) -> None:
        """Write the batch and its legs; `IdempotencyConflict` if its key is already taken."""

        def q(conn: sqlite3.Connection) -> None:
            def body() -> None:
                inserted = conn.execute(
                    INSERT_BATCH.sqlite,
                    (
                        batch.batch_id,
                        batch.account,
                        batch.idempotency_key,
                        batch.request_hash,
                        dumps(batch.request),
                        batch.status,
                        dumps(batch.result),
                        batch.created_at,
                        batch.updated_at,
                    ),
                ).fetchall()
                if not inserted:
                    row = conn.execute(
                        BATCH_BY_KEY.sqlite, (batch.account, batch.idempotency_key)
                    ).fetchone()
                    [(existing, existing_legs)] = _with_legs(conn, [row])
                    raise IdempotencyConflict(existing, existing_legs)
                conn.executemany(
                    INSERT_LEG.sqlite, [leg_values(leg, batch.created_at, dumps) for leg in legs]
                )

            write_tx(conn, body)

        await self._run(q)

    async def discard_batch(self, batch_id: str) -> None:
        """Delete a stored batch that placed nothing (refused before its first POST): its
        idempotency key is free again, as if it had never been stored."""

        def q(conn: sqlite3.Connection) -> None:
            write_tx(conn, lambda: conn.execute(DISCARD_BATCH.sqlite, (batch_id,)))

        await self._run(q)

    async def add_leg(self, leg: LegRecord) -> None:
        """Add a leg to an existing batch (a reverse or retry order, with its own index/tag)."""

        def q(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(INSERT_LEG.sqlite, leg_values(leg, time.time(), dumps))
            except sqlite3.IntegrityError as exc:
                if "FOREIGN KEY" in str(exc):
                    raise NotFound(f"no batch {leg.batch_id}") from exc
                raise

        await self._run(q)

    async def get_batch(self, batch_id: str) -> BatchWithLegs | None:
        """The batch and its legs (by index), or None."""

        def q(conn: sqlite3.Connection) -> BatchWithLegs | None:
            rows = conn.execute(BATCH_BY_ID.sqlite, (batch_id,)).fetchall()
            found = _with_legs(conn, rows)
            return found[0] if found else None

        return await self._run(q)

    async def find_batch(self, account: str, idempotency_key: str) -> BatchWithLegs | None:
        """The batch that holds this idempotency key, or None."""

        def q(conn: sqlite3.Connection) -> BatchWithLegs | None:
            rows = conn.execute(BATCH_BY_KEY.sqlite, (account, idempotency_key)).fetchall()
            found = _with_legs(conn, rows)
            return found[0] if found else None

        return await self._run(q)

    async def unfinished_batches(self) -> list[BatchWithLegs]:
        """Batches not in a final status, oldest first: what recovery must reconcile."""
        return await self._run(
            lambda c: _with_legs(
                c,
                c.execute(
                    f"SELECT * FROM batches WHERE status NOT IN {_FINAL_IN} ORDER BY created_at",
                    _FINAL,
                ).fetchall(),
            )
        )

    async def purge_idempotency_keys(self, older_than: float) -> int:
        """Free the keys of finished batches created before `older_than`; returns how many."""
        return await self._run(
            lambda c: (
                c.execute(
                    "UPDATE batches SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL"
                    f" AND created_at < ? AND status IN {_FINAL_IN}",
                    (older_than, *_FINAL),
                ).rowcount
            )
        )
