"""Postgres: the order-event log and the latest payload per order.

A group-commit round is one statement, so one round trip: both inserts in one data-modifying
CTE (atomic as any statement is, no BEGIN/COMMIT round trips), each table fed by unnest arrays
whatever the round size, every payload encoded once (as text, cast to jsonb by the server).
Under [cluster] the round is a transaction that first checks the accounts' epochs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._postgres_fencing import check_epochs
from ._rows import event_rows
from ._sql import ORDERS_UPSERT_TAIL
from .base import Json
from .group_commit import assign_seqs

_LAST_SEQS = (
    "SELECT account, max(seq) AS seq FROM order_events WHERE account = ANY($1::text[])"
    " GROUP BY account"
)
_APPEND = (
    "WITH events AS (INSERT INTO order_events (account, seq, order_id, payload, created_at)"
    " SELECT a, s, o, p::jsonb, $5 FROM unnest($1::text[], $2::bigint[], $3::text[],"
    " $4::text[]) AS x(a, s, o, p))"
    " INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
    " SELECT a, o, p::jsonb, st, t, s, $5 FROM unnest($6::text[], $7::text[], $8::text[],"
    " $9::text[], $10::text[], $11::bigint[]) AS x(a, o, p, st, t, s)"
    + ORDERS_UPSERT_TAIL
)


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
        if fences is None:
            return await _append_round(conn, requests, known)
        # [cluster]: the epochs checked under a row lock in the round's own transaction, so a
        # claim racing this round cannot see it commit after the claim (FencedOut names them)
        async with conn.transaction():
            await check_epochs(conn, fences, [a for a, _ in requests])
            return await _append_round(conn, requests, known)


async def _append_round(
    conn: asyncpg.Connection, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
) -> list[list[int]]:
    missing = sorted({a for a, _ in requests} - known.keys())
    if missing:  # an account's first round since start (or since a failed round)
        known.update(dict.fromkeys(missing, 0))
        for row in await conn.fetch(_LAST_SEQS, missing):
            known[row["account"]] = row["seq"]
    per_request, numbered = assign_seqs(requests, known)
    events, latest = event_rows(numbered, json.dumps)
    now = time.time()
    # A seq another writer took meanwhile fails the statement on the primary key: nothing
    # is written, and the committer re-reads the seqs.
    await conn.execute(_APPEND, *zip(*events, strict=True), now, *zip(*latest, strict=True))
    return per_request
