"""Postgres: the order-event log and the latest payload per order.

A group-commit round is one statement, so one round trip: both inserts in one data-modifying
CTE (atomic as any statement is, no BEGIN/COMMIT round trips), each table fed by unnest arrays
whatever the round size, every payload encoded once (as text, cast to jsonb by the server).
Under [cluster] the same one statement first locks and checks the accounts' epochs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._rows import event_rows
from ._sql import ORDERS_UPSERT_TAIL
from .base import FencedOut, Json
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

#: [cluster]: the same round in one statement that first locks the owner rows of its accounts
#: (shared, in account order) and inserts only if every epoch is still this node's. The lock is
#: the statement's own transaction's: a claim racing the round either waits for its commit or,
#: having committed first, is the row version the lock sees (read committed re-reads it), and
#: then nothing is written. Returns the epochs it saw, so the caller names the stale accounts.
_FENCED_APPEND = (
    "WITH fence AS (SELECT account, epoch FROM account_owner"
    " WHERE account = ANY($12::text[]) ORDER BY account FOR SHARE),"
    " ok AS (SELECT count(*) = cardinality($12::text[]) AS ok FROM fence"
    " JOIN unnest($12::text[], $13::bigint[]) AS w(a, e) ON fence.account = w.a"
    " AND fence.epoch = w.e),"
    " events AS (INSERT INTO order_events (account, seq, order_id, payload, created_at)"
    " SELECT a, s, o, p::jsonb, $5 FROM unnest($1::text[], $2::bigint[], $3::text[],"
    " $4::text[]) AS x(a, s, o, p) WHERE (SELECT ok FROM ok)),"
    " latest AS (INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
    " SELECT a, o, p::jsonb, st, t, s, $5 FROM unnest($6::text[], $7::text[], $8::text[],"
    " $9::text[], $10::text[], $11::bigint[]) AS x(a, o, p, st, t, s) WHERE (SELECT ok FROM ok)"
    + ORDERS_UPSERT_TAIL + ")"
    " SELECT account, epoch FROM fence"
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
        return await _append_round(conn, requests, known, fences)


async def _append_round(
    conn: asyncpg.Connection, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int],
    fences: dict[str, int] | None,
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
    columns = (*zip(*events, strict=True), now, *zip(*latest, strict=True))
    if fences is None:
        await conn.execute(_APPEND, *columns)
        return per_request
    accounts = sorted({a for a, _ in requests})
    held = [fences.get(a, -1) for a in accounts]  # -1: never claimed here, never current
    seen = {r["account"]: r["epoch"] for r in await conn.fetch(_FENCED_APPEND, *columns,
                                                                 accounts, held)}
    stale = [a for a, epoch in zip(accounts, held, strict=True) if seen.get(a) != epoch]
    if stale:  # nothing of the round was written
        raise FencedOut(stale)
    return per_request
