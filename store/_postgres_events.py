"""Postgres: the order-event log and the latest payload per order.

A group-commit round writes every event of the round with one statement per table (unnest, not
executemany), in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._postgres_fencing import check_epochs
from ._rows import event_rows
from ._sql import ORDERS_UPSERT_TAIL
from .base import Json
from .group_commit import assign_seqs


class PostgresEvents(PostgresPart):
    """`_write_round` for the committer (the event reads are `SharedQueries`)."""

    async def _write_round(
        self, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        return await self._call(self._write_round_aio, requests, known, self._fences)

    @staticmethod
    async def _write_round_aio(
        conn: asyncpg.Connection, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int],
        fences: dict[str, int] | None,
    ) -> list[list[int]]:
        async with conn.transaction():
            if fences is not None:  # [cluster]: FencedOut names the accounts refused
                await check_epochs(conn, fences, [a for a, _ in requests])
            missing = sorted({a for a, _ in requests} - known.keys())
            if missing:
                known.update(dict.fromkeys(missing, 0))
                for row in await conn.fetch(
                    "SELECT account, max(seq) AS seq FROM order_events"
                    " WHERE account = ANY($1::text[]) GROUP BY account",
                    missing,
                ):
                    known[row["account"]] = row["seq"]
            per_request, numbered = assign_seqs(requests, known)
            events, latest = event_rows(numbered)
            now = time.time()
            # one statement per table whatever the round size (unnest, not executemany)
            await conn.execute(
                "INSERT INTO order_events (account, seq, order_id, payload, created_at)"
                " SELECT a, s, o, p, $5 FROM unnest($1::text[], $2::bigint[], $3::text[],"
                " $4::jsonb[]) AS x(a, s, o, p)",
                *zip(*events, strict=True),
                now,
            )
            await conn.execute(
                "INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
                " SELECT a, o, p, st, t, s, $7 FROM unnest($1::text[], $2::text[], $3::jsonb[],"
                " $4::text[], $5::text[], $6::bigint[]) AS x(a, o, p, st, t, s)"
                + ORDERS_UPSERT_TAIL,
                *zip(*latest, strict=True),
                now,
            )
        return per_request
